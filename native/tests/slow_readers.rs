//! A client that stops reading cannot keep its connection: once a write has waited for it
//! longer than the write timeout (or the close handshake longer than its own), the server
//! drops the socket and its fd. One client per transport, each with a tiny receive window.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use support::{client_frame, publish_bulk, small_window_socket, token_with, upgrade_request, Rotor, FAST_TIMEOUTS};

/// Reads what is there within a moment (the upgrade answer, stream headers), then never again.
fn read_a_little(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn post(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[test]
fn clients_that_stop_reading_are_dropped_within_the_write_timeout() {
    // A queue limit far above what is published: the write deadline must end these, not 3008.
    let rotor = Rotor::start("slow-readers", json!({"client_queue_max_size": 256 * 1024 * 1024}), Some(FAST_TIMEOUTS));
    let baseline = rotor.quiet_fds();
    let token = token_with("slow", &["news"]);
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    let uni_connect = json!({"token": token}).to_string();

    let mut clients = Vec::new();
    // Bidirectional WebSocket (hyper, upgraded).
    let mut ws = small_window_socket(rotor.addr);
    ws.write_all(upgrade_request("/connection/websocket").as_bytes()).unwrap();
    assert!(read_a_little(&mut ws).starts_with("HTTP/1.1 101"));
    ws.write_all(&client_frame(0x1, connect.as_bytes())).unwrap();
    clients.push(("websocket", ws));
    // Bidirectional HTTP stream (hyper response body).
    let mut stream = small_window_socket(rotor.addr);
    stream.write_all(post("/connection/http_stream", &connect).as_bytes()).unwrap();
    clients.push(("http_stream", stream));
    // Unidirectional HTTP stream and WebSocket (the hand-served path).
    let mut uni = small_window_socket(rotor.addr);
    uni.write_all(post("/connection/uni_http_stream", &uni_connect).as_bytes()).unwrap();
    clients.push(("uni_http_stream", uni));
    let mut uni_ws = small_window_socket(rotor.addr);
    let query: String = form_urlencoded::byte_serialize(uni_connect.as_bytes()).collect();
    uni_ws.write_all(upgrade_request(&format!("/connection/uni_websocket?cf_connect={query}")).as_bytes()).unwrap();
    clients.push(("uni_websocket", uni_ws));
    for (name, client) in clients.iter_mut().skip(1) {
        assert!(read_a_little(client).starts_with("HTTP/1.1 "), "{name} answers");
    }
    let opened = rotor.wait_for(Duration::from_secs(5), |r| r.fds() >= baseline + clients.len());
    assert!(opened, "fds {} with {} clients (baseline {baseline})", rotor.fds(), clients.len());

    // Far more than the kernel buffers take (a few MB on loopback), so writes must wait.
    publish_bulk(rotor.addr, "news", 48, 256 * 1024);
    let freed = rotor.wait_for(Duration::from_secs(8), |r| r.fds() <= baseline + 1);
    assert!(freed, "fds {} (baseline {baseline}) with {} clients that do not read", rotor.fds(), clients.len());
    for (name, client) in clients.iter_mut() {
        // The server hung up: reading now drains what was buffered, then ends (or resets).
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let ended = loop {
            match client.read(&mut sink) {
                Ok(0) | Err(_) => break true,
                Ok(_) => continue,
            }
        };
        assert!(ended, "{name}: the server kept the connection");
    }
}
