//! The hand-served uni path's request head reading (`native::front_door`): `HeadEnd` finds the end of
//! a head the same however the bytes arrive, and finds it in every head httparse completes;
//! `parse_head` gives a head, "incomplete" or an error, never a panic; a parsed head lies
//! inside the buffer and parses the same from its own bytes; the lookups the server does on it
//! and the endpoint layer's decision (`shared::http::decide`, with every endpoint on, the admin
//! UI's too) do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use native::front_door::{parse_head, HeadEnd};
use shared::config::Config;
use shared::http::{content_length, decide, Endpoints, Request};

fn setup() -> &'static (Config, Endpoints) {
    static S: OnceLock<(Config, Endpoints)> = OnceLock::new();
    S.get_or_init(|| {
        let config = Config::from_json_str(
            r#"{"uni_sse": true, "uni_http_stream": true, "uni_websocket": true, "http_stream": true, "sse": true,
                "api_key": "k", "allowed_origins": ["http://*.example.com", "http://localhost:*"],
                "admin": true, "admin_password": "p", "admin_secret": "s"}"#,
            Vec::new(),
        )
        .expect("fuzz config loads")
        .config;
        let endpoints = Endpoints::new(&config).expect("default endpoints");
        (config, endpoints)
    })
}

/// The shortest prefix in which `HeadEnd` sees the end, fed one byte more at a time.
fn end_bytewise(data: &[u8]) -> Option<usize> {
    let mut end = HeadEnd::default();
    (1..=data.len()).find(|&n| end.found(&data[..n]))
}

fuzz_target!(|data: &[u8]| {
    let first_end = end_bytewise(data);
    assert_eq!(HeadEnd::default().found(data), first_end.is_some(), "HeadEnd depends on how bytes arrive");

    let Ok(Some(head)) = parse_head(data) else { return };
    assert!(head.len <= data.len(), "head longer than the buffer");
    assert!(first_end.is_some_and(|n| n <= head.len), "httparse completed a head whose end HeadEnd does not see");
    // The server splits the body off at head.len.
    let (own, _) = data.split_at(head.len);
    let again = parse_head(own).expect("the head's own bytes parse").expect("and are complete");
    assert_eq!(again.len, head.len);
    assert_eq!((&again.method, &again.path, &again.query), (&head.method, &head.path, &head.query));
    for name in ["origin", "last-event-id", "content-length", "transfer-encoding", "upgrade", "sec-websocket-key"] {
        let _ = head.header(name);
    }
    let _ = content_length(&head.headers);
    let (config, endpoints) = setup();
    let request =
        Request { method: &head.method, path: &head.path, query: head.query.as_deref(), headers: &head.headers };
    let routed = decide(config, endpoints, &request);
    let _ = routed.cors();
    for name in ["cf_connect", "last_event_id", "format"] {
        let _ = head.query_param(name);
    }
});
