//! Fan-out to many sessions: exactly once, in order, encoded once per wire format.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use shared::hub::Transport;

use crate::common::*;

fn config() -> String {
    json!({
        "token_hmac_secret_key": SECRET,
        "user_subscribe_to_personal": true,
        "allow_subscribe_for_client": true,
        "history_size": 100,
        "history_ttl": "300s",
    })
    .to_string()
}

#[test]
fn five_thousand_uni_clients_get_every_publication_once_in_order_encoded_once() {
    const CLIENTS: usize = 5_000;
    const MESSAGES: u64 = 10;
    let mut sim = Sim::new(&config());
    let mut uni = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let t = token(&format!("u{i}"), sim.now, None);
        uni.push(sim.connect_uni(Transport::UniHttpStream, json!({"token": t, "subs": {"news": {}}})));
    }
    // A few sessions on other wires: each wire gets its own encoding, shared within it.
    let mut uni_ws = Vec::new();
    for i in 0..20 {
        let t = token(&format!("w{i}"), sim.now, None);
        uni_ws.push(sim.connect_uni(Transport::UniWebsocket, json!({"token": t, "subs": {"news": {}}})));
    }
    let mut bidi = Vec::new();
    for i in 0..20 {
        let s = sim.connect_ws(&token(&format!("b{i}"), sim.now, None));
        bidi.push(s);
        sim.frame(s, r#"{"id":2,"subscribe":{"channel":"news"}}"#);
        let reply = sim.take_reply(s, 2);
        assert!(reply.get("error").is_none(), "{reply}");
    }
    assert_eq!(sim.node.hub().num_sessions(), CLIENTS + 40);
    assert!(sim.closed.is_empty(), "{:?}", sim.closed);

    for (i, &s) in uni.iter().enumerate() {
        let frames = sim.take_values(s);
        assert_eq!(frames.len(), 1, "only the connect push so far: {frames:?}");
        let subs = &frames[0]["connect"]["subs"];
        assert!(subs.get(format!("#u{i}")).is_some(), "personal channel: {subs}");
        assert!(subs.get("news").is_some(), "channel from connect subs: {subs}");
        assert_eq!(frames[0]["connect"]["session"].as_str().map(str::len), Some(36));
    }
    for &s in uni_ws.iter().chain(&bidi) {
        sim.take(s);
    }

    sim.keep_log = true;
    for n in 1..=MESSAGES {
        let result = sim.publish_ok("news", json!({"n": n}));
        assert_eq!(result["offset"], n, "{result}");
    }
    sim.keep_log = false;

    // One allocation per publication per wire: every session of a transport got the same bytes.
    let mut pointers = BTreeSet::new();
    for output in &sim.log {
        if let shared::node::Output::Send { data, .. } = output {
            pointers.insert(data.as_ptr() as usize);
        }
    }
    assert_eq!(pointers.len() as u64, MESSAGES * 3, "one encoding per publication per wire format");

    for &s in uni.iter().chain(&uni_ws).chain(&bidi) {
        let frames = sim.take(s);
        assert_eq!(frames.len() as u64, MESSAGES, "{s}: {frames:?}");
        let pubs = pubs_in(&frames, "news");
        assert_eq!(offsets(&pubs), (1..=MESSAGES).collect::<Vec<_>>(), "{s}");
        let data: Vec<u64> = pubs.iter().map(|p| p["data"]["n"].as_u64().unwrap()).collect();
        assert_eq!(data, (1..=MESSAGES).collect::<Vec<_>>());
    }
    // Same bytes on the same wire: compare two distant uni sessions directly.
    sim.publish_ok("news", json!({"n": "last"}));
    let a = sim.take(uni[0]);
    let b = sim.take(uni[CLIENTS - 1]);
    assert_eq!(a[0].raw.as_ptr(), b[0].raw.as_ptr());
    let c = sim.take(bidi[0]);
    assert_ne!(a[0].raw.as_ptr(), c[0].raw.as_ptr(), "bidi pushes are wrapped: another encoding");
    assert_eq!(c[0].value["push"]["channel"], "news");
    for &s in uni.iter().chain(&uni_ws).chain(&bidi) {
        sim.take(s);
    }

    // A personal channel reaches only its user.
    sim.publish_ok("#u4321", json!({"only": "you"}));
    for (i, &s) in uni.iter().enumerate() {
        let got = sim.take_values(s);
        if i == 4321 {
            assert_eq!(got, vec![json!({"channel": "#u4321", "pub": {"data": {"only": "you"}, "offset": 1}})]);
        } else {
            assert!(got.is_empty(), "u{i} got {got:?}");
        }
    }
}

#[test]
fn uni_transports_frame_their_pushes() {
    let mut sim = Sim::new(&config());
    let t = token("42", sim.now, None);
    let stream = sim.connect_uni(Transport::UniHttpStream, json!({"token": t}));
    let sse = sim.connect_uni(Transport::UniSse, json!({"token": t}));
    let ws = sim.connect_uni(Transport::UniWebsocket, json!({"token": t}));
    for s in [stream, sse, ws] {
        sim.take(s);
    }
    sim.publish_ok("#42", json!({"x": 1}));
    let raw = |sim: &mut Sim, s| String::from_utf8(sim.take(s)[0].raw.to_vec()).unwrap();
    assert_eq!(raw(&mut sim, stream), "{\"channel\":\"#42\",\"pub\":{\"data\":{\"x\":1},\"offset\":1}}\n");
    assert_eq!(raw(&mut sim, ws), "{\"channel\":\"#42\",\"pub\":{\"data\":{\"x\":1},\"offset\":1}}");
    let sse_text = raw(&mut sim, sse);
    assert!(
        sse_text.ends_with("data: {\"channel\":\"#42\",\"pub\":{\"data\":{\"x\":1},\"offset\":1}}\n\n"),
        "{sse_text:?}"
    );
}

#[test]
fn publications_without_history_have_no_offset_and_reach_everyone() {
    let mut sim = Sim::new(
        &json!({"token_hmac_secret_key": SECRET, "allow_subscribe_for_client": true, "namespaces": [{"name": "live", "allow_subscribe_for_client": true}]})
            .to_string(),
    );
    let clients: Vec<_> = (0..50)
        .map(|i| {
            sim.connect_uni(
                Transport::UniHttpStream,
                json!({"token": token(&format!("{i}"), sim.now, None), "subs": {"live:x": {}}}),
            )
        })
        .collect();
    let result = sim.publish_ok("live:x", json!("hello"));
    assert_eq!(result, json!({}), "no history → empty publish result");
    for s in clients {
        let frames = sim.take_values(s);
        assert_eq!(frames[1], json!({"channel": "live:x", "pub": {"data": "hello"}}));
    }
}

#[test]
fn idempotent_api_publish_delivers_once_and_returns_the_original_position() {
    let mut sim = Sim::new(&config());
    let s =
        sim.connect_uni(Transport::UniHttpStream, json!({"token": token("1", sim.now, None), "subs": {"news": {}}}));
    sim.take(s);
    let publish = |sim: &mut Sim, key: &str| {
        let req = shared::api::PublishRequest {
            channel: "news".into(),
            data: bytes::Bytes::from_static(b"{\"a\":1}"),
            idempotency_key: key.into(),
            ..Default::default()
        };
        sim.api(shared::api::ApiCommand::Publish(req)).unwrap()
    };
    let first = publish(&mut sim, "k1");
    sim.advance(60_000);
    let again = publish(&mut sim, "k1");
    assert_eq!(first, again);
    assert_eq!(first["offset"], 1);
    let other = publish(&mut sim, "k2");
    assert_eq!(other["offset"], 2);
    let pubs = sim.take_pubs(s, "news");
    assert_eq!(offsets(&pubs), vec![1, 2]);
    // After the idempotency window the key publishes again.
    sim.advance(5 * 60_000 + 1);
    let later = publish(&mut sim, "k1");
    assert_eq!(later["offset"], 3);
}

#[test]
fn api_publish_validation() {
    let mut sim = Sim::new(&config());
    assert_eq!(sim.publish("", json!({})).unwrap_err().code, 107);
    assert_eq!(sim.publish("nope:x", json!({})).unwrap_err().code, 102);
    let req = shared::api::PublishRequest { channel: "news".into(), ..Default::default() };
    assert_eq!(sim.api(shared::api::ApiCommand::Publish(req)).unwrap_err().code, 107, "data is required");
    let epoch = sim.publish_ok("news", json!(1))["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 8);
    assert_eq!(sim.publish_ok("news", json!(2))["epoch"], epoch.as_str());
}

#[test]
fn binary_payload_disconnects_json_clients_with_3506() {
    let mut sim = Sim::new(&config());
    let s =
        sim.connect_uni(Transport::UniHttpStream, json!({"token": token("1", sim.now, None), "subs": {"news": {}}}));
    let req = shared::api::PublishRequest { channel: "news".into(), b64data: "AAEC".into(), ..Default::default() };
    sim.api(shared::api::ApiCommand::Publish(req)).unwrap();
    assert_eq!(sim.close_code(s), Some(3506));
    let last: Value = sim.take_values(s).pop().unwrap();
    assert_eq!(last["disconnect"]["code"], 3506);
}

#[test]
fn connect_subs_are_filtered_by_subscribe_permissions() {
    let mut sim = Sim::new(
        &json!({
            "token_hmac_secret_key": SECRET,
            "allow_subscribe_for_client": true,
            "namespaces": [{"name": "locked"}],
        })
        .to_string(),
    );
    let s = sim.connect_uni(
        Transport::UniHttpStream,
        json!({"token": token("42", sim.now, None), "subs": {"ok": {}, "$private": {}, "#13": {}, "locked:x": {}}}),
    );
    let connect = sim.take_values(s).remove(0);
    assert_eq!(connect["connect"]["subs"], json!({"ok": {}}), "others silently ignored: {connect}");
    // An unknown namespace in subs is left out too: the connection goes on.
    let other = sim.connect_uni(
        Transport::UniHttpStream,
        json!({"token": token("42", sim.now, None), "subs": {"nope:x": {}, "ok": {}}}),
    );
    let connect = sim.take_values(other).remove(0);
    assert_eq!(connect["connect"]["subs"], json!({"ok": {}}), "{connect}");
    assert!(!sim.is_closed(other));
    assert!(!sim.is_closed(s));
}

#[test]
fn uni_clients_ignore_later_messages_and_can_close_any_time() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_uni(Transport::UniWebsocket, json!({"token": token("1", sim.now, None), "subs": {"news": {}}}));
    sim.take(s);
    sim.frame(s, "garbage that a uni client may send");
    assert!(!sim.is_closed(s), "read and discarded");
    sim.close(s);
    sim.publish_ok("news", json!(1));
    assert!(sim.take(s).is_empty());
    assert_eq!(sim.node.hub().num_channels(), 0);
}
