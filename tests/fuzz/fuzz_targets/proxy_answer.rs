//! Answers of the application backend to every proxy kind, fed to a hub as hosts feed them:
//! whatever the body and status, no panic, the call is settled, and once the sessions are
//! gone nothing is left (no pending call, no timer).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use shared::config::Config;
use shared::hub::{Hub, NodeInfo, Output, SessionId, Transport};
use shared::protocol::Encoding;
use shared::proxy::ProxyOutcome;
use shared::Timestamp;

fn config() -> Arc<Config> {
    static C: OnceLock<Arc<Config>> = OnceLock::new();
    C.get_or_init(|| {
        let text = r#"{
            "token_hmac_secret_key": "fuzz",
            "proxy_connect_endpoint": "http://127.0.0.1:9/c",
            "proxy_refresh_endpoint": "http://127.0.0.1:9/r",
            "proxy_subscribe_endpoint": "http://127.0.0.1:9/s",
            "proxy_publish_endpoint": "http://127.0.0.1:9/p",
            "proxy_rpc_endpoint": "http://127.0.0.1:9/rpc",
            "proxy_sub_refresh_endpoint": "http://127.0.0.1:9/sr",
            "proxy_include_connection_meta": true,
            "namespaces": [{"name": "px", "proxy_subscribe": true, "proxy_publish": true, "proxy_sub_refresh": true}]
        }"#;
        Arc::new(Config::from_json_str(text, std::iter::empty()).expect("config").config)
    })
    .clone()
}

fn drain(hub: &mut Hub, calls: &mut Vec<shared::proxy::ProxyRequest>) {
    while let Some(output) = hub.poll_output() {
        if let Output::Proxy(r) = output {
            calls.push(r);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: the status class; the rest split in two answers: connect, then one command's.
    let (status, rest) = data.split_first().map(|(s, r)| (*s, r)).unwrap_or((0, &[]));
    let status = 200 + u16::from(status % 4) * 100;
    let mid = rest.len() / 2;
    let answers = [&rest[..mid], &rest[mid..]];
    let info = NodeInfo { id: "n".into(), name: "n".into(), version: "0".into() };
    let mut now = Timestamp(1_700_000_000_000);
    let mut hub = Hub::new(config(), info, 1, now).expect("hub");
    let s = SessionId(1);
    let mut calls = Vec::new();
    hub.handle_open(s, Transport::Websocket(Encoding::Json), now);
    hub.handle_frame(s, br#"{"id":1,"connect":{"data":{"a":1}}}"#, now);
    drain(&mut hub, &mut calls);
    let commands: [&[u8]; 3] = [
        br#"{"id":2,"rpc":{"method":"m","data":{}}}"#,
        br#"{"id":2,"subscribe":{"channel":"px:a"}}"#,
        br#"{"id":2,"publish":{"channel":"px:a","data":{"x":1}}}"#,
    ];
    for (i, answer) in answers.iter().enumerate() {
        let Some(call) = calls.pop() else { break };
        let outcome = ProxyOutcome::Answer { status, body: bytes::Bytes::copy_from_slice(answer) };
        hub.handle_proxy_reply(call.id, outcome, now);
        drain(&mut hub, &mut calls);
        if i == 0 {
            hub.handle_frame(s, commands[rest.len() % 3], now);
            drain(&mut hub, &mut calls);
        }
    }
    // Much later: refreshes and timeouts run out.
    for _ in 0..3 {
        now = now.after_ms(600_000);
        hub.handle_timeout(now);
        drain(&mut hub, &mut calls);
        for call in calls.drain(..) {
            hub.handle_proxy_reply(call.id, ProxyOutcome::Failed("down".into()), now);
        }
        drain(&mut hub, &mut calls);
    }
    hub.handle_closed(s, now);
    drain(&mut hub, &mut calls);
    assert_eq!(hub.num_sessions(), 0);
    assert_eq!(hub.poll_timeout(), None, "a timer outlived its session");
});
