//! Requests the HTTP layer must refuse, on the hyper path and on the hand-served
//! unidirectional path alike: an Origin that is not UTF-8 (403), a `Content-Length` that is not
//! plain digits (400), a WebSocket upgrade with another version than 13 (426 naming 13) or
//! another method than GET (405).

mod support;

use std::time::Duration;

use serde_json::json;
use support::{one_response, token, Rotor, API_KEY};

fn answer(rotor: &Rotor, request: &[u8]) -> String {
    one_response(rotor.addr, request, Duration::from_secs(5))
}

fn cf_connect() -> String {
    form_urlencoded::byte_serialize(json!({"token": token("edge")}).to_string().as_bytes()).collect()
}

#[test]
fn an_origin_that_is_not_utf8_is_refused() {
    let rotor = Rotor::start("origin-utf8", json!({}), None);
    let uni_sse = format!("GET /connection/uni_sse?cf_connect={} HTTP/1.1\r\nHost: x\r\n", cf_connect());
    for head in ["GET /health HTTP/1.1\r\nHost: x\r\n".to_owned(), uni_sse] {
        let mut request = head.into_bytes();
        request.extend_from_slice(b"Origin: http://localhost:\xff\xfe\r\nConnection: close\r\n\r\n");
        let got = answer(&rotor, &request);
        assert!(got.starts_with("HTTP/1.1 403"), "{got}");
        // An allowed origin still passes.
        let fine =
            String::from_utf8_lossy(&request).replace("http://localhost:\u{fffd}\u{fffd}", "http://localhost:3000");
        let got = answer(&rotor, fine.as_bytes());
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
}

#[test]
fn a_content_length_with_a_sign_is_refused() {
    let rotor = Rotor::start("content-length", json!({}), None);
    let body = json!({"token": token("edge")}).to_string();
    for (path, key) in [("/connection/uni_http_stream", ""), ("/api/info", API_KEY)] {
        for length in [format!("+{}", body.len()), format!("-{}", body.len())] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
            );
            let got = answer(&rotor, request.as_bytes());
            assert!(got.starts_with("HTTP/1.1 400"), "{path} with Content-Length {length}: {got}");
        }
    }
}

#[test]
fn websocket_upgrades_need_get_and_version_13() {
    let rotor = Rotor::start("ws-version", json!({}), None);
    for path in ["/connection/websocket", "/connection/uni_websocket"] {
        for version in ["Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 14\r\n", ""] {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version}\r\n"
            );
            let got = answer(&rotor, request.as_bytes());
            assert!(got.starts_with("HTTP/1.1 426"), "{path} {version:?}: {got}");
            assert!(got.to_ascii_lowercase().contains("sec-websocket-version: 13\r\n"), "{path}: {got}");
        }
        let post = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
        );
        let got = answer(&rotor, post.as_bytes());
        assert!(got.starts_with("HTTP/1.1 405"), "POST {path}: {got}");
        assert!(got.to_ascii_lowercase().contains("allow: get\r\n"), "POST {path}: {got}");
    }
}

#[test]
fn a_uni_websocket_connect_in_the_url_works_on_both_paths() {
    // Past the hand-served path's 48 headers, hyper serves the upgrade: `cf_connect` must
    // connect there too (it used to be ignored, and the client was cut off as stale).
    let rotor = Rotor::start("uni-ws-url", json!({}), None);
    let many: String = (0..60).map(|i| format!("X-Extra-{i}: y\r\n")).collect();
    for extra in [String::new(), many] {
        let request = format!(
            "GET /connection/uni_websocket?cf_connect={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            cf_connect()
        );
        let mut s = std::net::TcpStream::connect(rotor.addr).unwrap();
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\"connect\"") {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        assert!(text.contains("\"connect\""), "with {} extra header bytes: {text}", extra.len());
    }
}
