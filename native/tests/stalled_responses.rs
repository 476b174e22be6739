//! Responses served through hyper (bidirectional HTTP stream and SSE emulation, the uni
//! streams when hyper takes them, API answers) cannot be held by a client that stopped
//! reading: a stream the server ends (here cut off with 3008) takes its connection with it,
//! even when its last bytes fit the kernel buffers and keep-alive would otherwise wait for a
//! next request; and a response the client does not take loses its connection within the
//! write timeout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{api, publish_bulk, small_window_socket, token_with, Rotor, API_KEY, FAST_TIMEOUTS};

/// The write timeout short, keep-alive far longer than any wait here: a connection the server
/// keeps alive after a stream ended would still be open when these tests look.
const LONG_KEEP_ALIVE: &str = "head=1000,body=1000,keep_alive=60000,write=1000,close=500";

/// How long past a 1 s timeout the server may take to act on it (a busy 2-core machine).
const WITHIN: Duration = Duration::from_secs(4);

fn post(path: &str, content_type: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chunked upload: the hand-served uni path leaves these to hyper.
fn post_chunked(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
}

fn query(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Opens a connection, sends `request` and reads until the connect reply is in (returned with
/// the head); then the client never reads again (until the test says so).
fn open_with_head(rotor: &Rotor, name: &str, request: &str, small_window: bool) -> (TcpStream, String) {
    let mut s = if small_window { small_window_socket(rotor.addr) } else { TcpStream::connect(rotor.addr).unwrap() };
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"connect\"") {
        assert!(Instant::now() < deadline, "{name}: no connect reply: {}", String::from_utf8_lossy(&got));
        if let Ok(n) = s.read(&mut buf) {
            assert!(n > 0, "{name}: closed before the connect reply: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{name}: {got}");
    (s, got)
}

fn open(rotor: &Rotor, name: &str, request: &str, small_window: bool) -> TcpStream {
    open_with_head(rotor, name, request, small_window).0
}

/// Reads what the kernel kept for the client, until the server's end (or `within`): the text
/// and whether the connection ended.
fn drain(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&out).into_owned(), false)
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true), // reset
        }
    }
}

#[test]
fn streams_cut_off_with_3008_close_their_connection_even_if_never_read_again() {
    // One publication larger than the queue limit: every stream is cut off at once, while its
    // last bytes (the 3008 push, the stream's end) still fit the kernel buffers.
    let rotor = Rotor::start("cut-off-streams", json!({"client_queue_max_size": 64 * 1024}), Some(LONG_KEEP_ALIVE));
    let baseline = rotor.quiet_fds();
    let token = token_with("slow", &["news"]);
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    let uni_connect = json!({"token": token}).to_string();
    let requests = [
        ("http_stream", post("/connection/http_stream", "application/json", &connect)),
        ("sse GET", get(&format!("/connection/sse?cf_connect={}", query(&connect)))),
        ("sse POST", post("/connection/sse", "application/json", &connect)),
        ("uni_http_stream (hyper)", post_chunked("/connection/uni_http_stream", &uni_connect)),
        ("uni_sse (hyper)", post_chunked("/connection/uni_sse", &uni_connect)),
    ];
    let mut clients = Vec::new();
    for (name, request) in requests {
        let (client, head) = open_with_head(&rotor, name, &request, false);
        clients.push((name, client, head));
    }
    let opened = rotor.wait_for(Duration::from_secs(5), |r| r.fds() >= baseline + clients.len());
    assert!(opened, "fds {} with {} clients (baseline {baseline})", rotor.fds(), clients.len());

    publish_bulk(rotor.addr, "news", 1, 128 * 1024);
    let started = Instant::now();
    // The server owes these clients nothing it could not hand to the kernel: their
    // connections end with their streams, not after the keep-alive timeout.
    let freed = rotor.wait_for(WITHIN, |r| r.fds() <= baseline);
    assert!(
        freed,
        "fds {} (baseline {baseline}) {:?} after cutting off {} clients that do not read",
        rotor.fds(),
        started.elapsed(),
        clients.len()
    );
    for (name, client, head) in clients.iter_mut() {
        let (text, ended) = drain(client, Duration::from_secs(5));
        assert!(ended, "{name}: the server kept the connection: {}", &text[text.len().saturating_sub(300)..]);
        assert!(
            text.contains("3008"),
            "{name}: no 3008 disconnect in what the client got: {}",
            &text[text.len().saturating_sub(300)..]
        );
        // Clients learn up front that the connection ends with the stream (no reuse).
        assert!(
            head.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
            "{name}: the stream does not say Connection: close: {head}"
        );
    }
}

#[test]
fn a_stalled_reader_of_a_hyper_response_loses_its_connection_within_the_write_timeout() {
    // A queue limit far above what is published: the write deadline must end these, not 3008.
    let config = json!({"client_queue_max_size": 256 * 1024 * 1024, "history_size": 100, "history_ttl": "300s"});
    let rotor = Rotor::start("stalled-responses", config, Some(FAST_TIMEOUTS));
    let token = token_with("slow", &["news"]);
    let connect = json!({"id": 1, "connect": {"token": token}}).to_string();
    // History far larger than the kernel buffers (a few MB on loopback) take.
    publish_bulk(rotor.addr, "archive", 32, 256 * 1024);
    let baseline = rotor.quiet_fds();

    let mut clients = vec![
        ("sse", open(&rotor, "sse", &get(&format!("/connection/sse?cf_connect={}", query(&connect))), true)),
        (
            "http_stream",
            open(&rotor, "http_stream", &post("/connection/http_stream", "application/json", &connect), true),
        ),
    ];
    // An API answer on a kept-alive connection, never read.
    let body = json!({"channel": "archive", "limit": 100}).to_string();
    let mut history = small_window_socket(rotor.addr);
    let request = format!(
        "POST /api/history HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    history.write_all(request.as_bytes()).unwrap();
    clients.push(("api history", history));
    let opened = rotor.wait_for(Duration::from_secs(5), |r| r.fds() >= baseline + clients.len());
    assert!(opened, "fds {} with {} clients (baseline {baseline})", rotor.fds(), clients.len());

    // The streams get more than the kernel buffers take, so their writes wait.
    publish_bulk(rotor.addr, "news", 32, 256 * 1024);
    let started = Instant::now();
    let freed = rotor.wait_for(WITHIN, |r| r.fds() <= baseline);
    assert!(
        freed,
        "fds {} (baseline {baseline}) {:?} after publishing to clients that do not read",
        rotor.fds(),
        started.elapsed()
    );
    let (status, _) = api(rotor.addr, "info", &json!({}), Duration::from_secs(5));
    assert!(status.contains(" 200 "), "the server still answers: {status}");
    for (name, client) in clients.iter_mut() {
        let (_, ended) = drain(client, Duration::from_secs(5));
        assert!(ended, "{name}: the server kept the connection");
    }
}
