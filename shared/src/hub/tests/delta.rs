//! Fossil deltas through the hub: negotiation, one encoding per publication, chains that
//! restart whole whenever the client may not hold the base, and recovery.

use super::*;
use crate::delta::fossil;

const H: HistoryOptions = HistoryOptions { size: 100, ttl_ms: 300_000, meta_ttl_ms: 0 };

fn rig() -> Rig {
    Rig::new(config(json!({
        "allow_subscribe_for_client": true,
        "history_size": 100, "history_ttl": "300s", "force_recovery": true,
        "namespaces": [
            {"name": "dd", "allow_subscribe_for_client": true, "history_size": 100, "history_ttl": "300s",
             "force_recovery": true, "allowed_delta_types": ["fossil"], "delta_publish": true},
        ],
    })))
}

/// A 2 KB document whose `n` changes.
fn doc(n: u64) -> String {
    let items: Vec<String> =
        (0..40).map(|i| format!(r#"{{"id":{i},"name":"item number {i}","qty":{}}}"#, i * 2)).collect();
    format!(r#"{{"items":[{}],"version":{n}}}"#, items.join(","))
}

fn publish_doc(rig: &mut Rig, channel: &str, n: u64) {
    let op = PublishOp { data: doc(n).into(), history: H, delta: true, ..Default::default() };
    let id = crate::broker::RequestId(2_000_000 + n);
    rig.broker.handle_request(BrokerRequest { id, channel: channel.into(), op: BrokerOp::Publish(op) }, T0);
    rig.broker_events();
    rig.pump();
}

/// Applies what a delta client received the way the SDK does; returns the documents.
fn decode(pubs: &[Value]) -> Vec<String> {
    let mut base: Vec<u8> = Vec::new();
    let mut docs = Vec::new();
    for p in pubs {
        let data = p["data"].as_str().expect("a JSON string for a delta client").as_bytes().to_vec();
        base = if p["delta"] == json!(true) { fossil::apply(&base, &data, 1 << 20).expect("applies") } else { data };
        docs.push(String::from_utf8(base.clone()).unwrap());
    }
    docs
}

fn pubs(rig: &mut Rig, s: SessionId) -> Vec<Value> {
    rig.take(s).into_iter().filter_map(|m| m["push"]["pub"].as_object().cloned().map(Value::Object)).collect()
}

#[test]
fn negotiated_clients_get_deltas_others_get_documents() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    let b = rig.ws(2, "b");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.frame(b, json!({"id": 2, "subscribe": {"channel": "dd:doc"}}));
    rig.serve_all();
    let replies = rig.take(a);
    assert_eq!(replies.last().unwrap()["subscribe"]["delta"], json!(true), "{replies:?}");
    assert!(rig.take(b).last().unwrap()["subscribe"].get("delta").is_none());
    for n in 1..=4 {
        publish_doc(&mut rig, "dd:doc", n);
    }
    let got = pubs(&mut rig, a);
    assert_eq!(got.iter().map(|p| p["delta"] == json!(true)).collect::<Vec<_>>(), [false, true, true, true]);
    assert_eq!(decode(&got), (1..=4).map(doc).collect::<Vec<_>>());
    let sent: usize = got.iter().map(|p| p["data"].as_str().unwrap().len()).sum();
    assert!(sent < doc(1).len() + 200, "deltas are small: {sent} bytes for four documents");
    let plain = pubs(&mut rig, b);
    assert_eq!(plain.len(), 4);
    assert_eq!(plain[3]["data"], serde_json::from_str::<Value>(&doc(4)).unwrap());
}

#[test]
fn unknown_delta_types_disconnect_and_disallowed_ones_are_declined() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "plain", "delta": "fossil"}}));
    rig.serve_all();
    let reply = rig.take(a).pop().unwrap();
    assert!(reply["subscribe"].is_object() && reply["subscribe"].get("delta").is_none(), "{reply}");
    rig.publish("plain", 1, H);
    assert_eq!(pubs(&mut rig, a)[0]["data"], json!({"n": 1}), "no delta: documents as they are");
    rig.frame(a, json!({"id": 3, "subscribe": {"channel": "dd:x", "delta": "xdelta"}}));
    assert_eq!(rig.closed, vec![(a, 3501)]);
}

#[test]
fn a_gap_or_a_whole_delivery_restarts_the_chain() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.serve_all();
    rig.take(a);
    publish_doc(&mut rig, "dd:doc", 1);
    // Published without a delta (skip_history: no offset): whole, and the base is gone.
    let op = PublishOp { data: doc(7).into(), history: H, skip_history: true, delta: true, ..Default::default() };
    rig.broker.handle_request(
        BrokerRequest { id: crate::broker::RequestId(9), channel: "dd:doc".into(), op: BrokerOp::Publish(op) },
        T0,
    );
    rig.broker_events();
    rig.pump();
    publish_doc(&mut rig, "dd:doc", 2);
    publish_doc(&mut rig, "dd:doc", 3);
    let got = pubs(&mut rig, a);
    assert_eq!(got.iter().map(|p| p["delta"] == json!(true)).collect::<Vec<_>>(), [false, false, false, true]);
    assert_eq!(decode(&got), vec![doc(1), doc(7), doc(2), doc(3)]);
}

#[test]
fn recovery_with_deltas_chains_from_a_whole_first_publication() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.serve_all();
    let epoch = rig.take(a).pop().unwrap()["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        publish_doc(&mut rig, "dd:doc", n);
    }
    rig.take(a);
    rig.frame(a, json!({"id": 3, "unsubscribe": {"channel": "dd:doc"}}));
    let mut missed: Vec<String> = Vec::new();
    for n in 4..=6 {
        publish_doc(&mut rig, "dd:doc", n);
        missed.push(doc(n));
    }
    // Recover from offset 3, once with the epoch and once with an empty one (any epoch).
    for (id, epoch) in [(4, epoch.as_str()), (6, "")] {
        rig.frame(a, json!({"id": id, "subscribe": {"channel": "dd:doc", "delta": "fossil", "recover": true, "offset": 3, "epoch": epoch}}));
        rig.serve_all();
        let reply = rig.take(a).into_iter().find(|m| m["id"] == json!(id)).unwrap();
        assert_eq!(reply["subscribe"]["recovered"], json!(true), "{reply}");
        let recovered = reply["subscribe"]["publications"].as_array().unwrap().clone();
        assert_eq!(decode(&recovered), missed);
        // The next live publication continues the chain.
        publish_doc(&mut rig, "dd:doc", 7 + id);
        missed.push(doc(7 + id));
        let live = pubs(&mut rig, a);
        assert_eq!(live[0]["delta"], json!(true));
        let mut all = recovered.clone();
        all.extend(live);
        assert_eq!(decode(&all).last().unwrap(), &doc(7 + id));
        rig.frame(a, json!({"id": id + 1, "unsubscribe": {"channel": "dd:doc"}}));
    }
}

#[test]
fn delta_state_goes_with_the_subscription() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.serve_all();
    publish_doc(&mut rig, "dd:doc", 1);
    publish_doc(&mut rig, "dd:doc", 2);
    let sub = rig.hub.sessions.get(&a).unwrap().subs.get("dd:doc").unwrap();
    assert_eq!((sub.delta, sub.delta_base), (true, 2));
    // Unsubscribed and subscribed again without recovery: no base survives, the chain
    // restarts whole even though the client asks for deltas again.
    rig.frame(a, json!({"id": 3, "unsubscribe": {"channel": "dd:doc"}}));
    rig.frame(a, json!({"id": 4, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.serve_all();
    rig.take(a);
    publish_doc(&mut rig, "dd:doc", 3);
    publish_doc(&mut rig, "dd:doc", 4);
    let got = pubs(&mut rig, a);
    assert_eq!(got.iter().map(|p| p["delta"] == json!(true)).collect::<Vec<_>>(), [false, true]);
    assert_eq!(decode(&got), vec![doc(3), doc(4)]);
    // Resubscribed without asking for deltas: plain documents.
    rig.frame(a, json!({"id": 5, "unsubscribe": {"channel": "dd:doc"}}));
    rig.frame(a, json!({"id": 6, "subscribe": {"channel": "dd:doc"}}));
    rig.serve_all();
    rig.take(a);
    publish_doc(&mut rig, "dd:doc", 5);
    assert_eq!(pubs(&mut rig, a)[0]["data"], serde_json::from_str::<Value>(&doc(5)).unwrap());
    rig.hub.handle_closed(a, T0);
    assert_eq!(rig.hub.num_sessions(), 0);
    assert_eq!(rig.hub.num_channels(), 0);
}

#[test]
fn a_hibernated_delta_subscription_comes_back_with_deltas_restarting_whole() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "dd:doc", "delta": "fossil"}}));
    rig.serve_all();
    publish_doc(&mut rig, "dd:doc", 1);
    publish_doc(&mut rig, "dd:doc", 2);
    let before = pubs(&mut rig, a);
    let snapshot = rig.hub.session_snapshot(a).expect("a snapshot");
    assert_eq!(snapshot.subs[0].f & 64, 64, "the delta flag is kept: {snapshot:?}");
    // The node object loses its memory; publication 3 is missed meanwhile.
    let positions: BTreeMap<String, StreamPosition> =
        [("dd:doc".to_string(), rig.broker.position("dd:doc").unwrap())].into();
    rig.hub = Hub::new(rig.hub.config().clone(), node_info(), 77, T0).unwrap();
    rig.held.clear();
    publish_doc(&mut rig, "dd:doc", 3);
    rig.hub.handle_restore(a, snapshot, &positions, T0);
    rig.serve_all();
    publish_doc(&mut rig, "dd:doc", 4);
    let after = pubs(&mut rig, a);
    // The missed one comes whole (the base may be gone), then the chain goes on.
    assert_eq!(after.iter().map(|p| p["delta"] == json!(true)).collect::<Vec<_>>(), [false, true]);
    let mut all = before;
    all.extend(after);
    assert_eq!(decode(&all), (1..=4).map(doc).collect::<Vec<_>>());
}
