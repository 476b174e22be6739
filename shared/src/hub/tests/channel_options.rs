//! Channel options acted on: `channel_regex`, `force_recovery_mode: "cache"` and the periodic
//! position check of positioned subscriptions.

use super::*;

const H: HistoryOptions = HistoryOptions { size: 10, ttl_ms: 300_000, meta_ttl_ms: 0 };

fn rig() -> Rig {
    Rig::new(config(json!({
        "allow_subscribe_for_client": true,
        "ping_interval": 0,
        "namespaces": [
            {"name": "rx", "allow_subscribe_for_client": true, "channel_regex": "^[a-z0-9]+$"},
            {"name": "words", "allow_subscribe_for_client": true, "channel_regex": "^\\p{L}+$"},
            {"name": "cc", "allow_subscribe_for_client": true, "history_size": 10, "history_ttl": "300s",
             "force_recovery": true, "force_recovery_mode": "cache"},
            {"name": "pos", "allow_subscribe_for_client": true, "history_size": 10, "history_ttl": "300s",
             "force_positioning": true},
        ],
    })))
}

fn subscribe(rig: &mut Rig, s: SessionId, id: u32, sub: Value) -> Value {
    rig.frame(s, json!({"id": id, "subscribe": sub}));
    rig.serve_all();
    rig.take(s).into_iter().find(|m| m["id"] == json!(id)).expect("a reply")
}

#[test]
fn channel_regex_checks_the_name_after_the_namespace() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    assert!(subscribe(&mut rig, a, 2, json!({"channel": "rx:abc42"}))["subscribe"].is_object());
    assert_eq!(subscribe(&mut rig, a, 3, json!({"channel": "rx:ABC"}))["error"]["code"], json!(107));
    assert_eq!(subscribe(&mut rig, a, 4, json!({"channel": "rx:a-b"}))["error"]["code"], json!(107));
    // A regex may let non-ASCII names in; without one they stay out.
    assert!(subscribe(&mut rig, a, 5, json!({"channel": "words:café"}))["subscribe"].is_object());
    assert_eq!(subscribe(&mut rig, a, 6, json!({"channel": "words:café1"}))["error"]["code"], json!(107));
    assert_eq!(subscribe(&mut rig, a, 7, json!({"channel": "café"}))["error"]["code"], json!(107));
    assert!(rig.closed.is_empty());
}

#[test]
fn oversized_channel_regexes_are_refused_at_start_up() {
    let text = json!({"namespaces": [{"name": "big", "channel_regex": "(a{1000}){1000}"}]}).to_string();
    let err = Config::from_json_str(&text, std::iter::empty()).unwrap_err().to_string();
    assert!(err.contains("namespaces[0].channel_regex") && err.contains("1048576"), "{err}");
    let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
    let text = json!({"channel_regex": deep}).to_string();
    assert!(Config::from_json_str(&text, std::iter::empty()).is_err());
}

#[test]
fn cache_recovery_gives_the_latest_publication_only() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    let first = subscribe(&mut rig, a, 2, json!({"channel": "cc:state"}));
    let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_owned();
    for n in 1..=3 {
        rig.publish("cc:state", n, H);
    }
    rig.take(a);
    rig.frame(a, json!({"id": 3, "unsubscribe": {"channel": "cc:state"}}));
    // From nothing (an empty position), from an old offset, from another epoch: the latest.
    for (id, offset, epoch) in [(4, 0, ""), (6, 1, epoch.as_str()), (8, 1, "elsewhere")] {
        let r = subscribe(
            &mut rig,
            a,
            id,
            json!({"channel": "cc:state", "recover": true, "offset": offset, "epoch": epoch}),
        );
        assert_eq!(r["subscribe"]["recovered"], json!(true), "{r}");
        assert_eq!(r["subscribe"]["publications"], json!([{"data": {"n": 3}, "offset": 3}]), "{r}");
        rig.frame(a, json!({"id": id + 1, "unsubscribe": {"channel": "cc:state"}}));
    }
    // Already at the top: recovered, nothing to send.
    let r = subscribe(&mut rig, a, 10, json!({"channel": "cc:state", "recover": true, "offset": 3, "epoch": epoch}));
    assert_eq!(r["subscribe"]["recovered"], json!(true));
    assert!(r["subscribe"].get("publications").is_none(), "{r}");
}

/// Publishes into the broker and drops the publication on its way to the hub (a lost event).
fn publish_lost(rig: &mut Rig, channel: &str, n: u64) {
    let op = PublishOp { data: format!("{{\"n\":{n}}}").into(), history: H, ..Default::default() };
    let id = crate::broker::RequestId(3_000_000 + n);
    rig.broker.handle_request(BrokerRequest { id, channel: channel.into(), op: BrokerOp::Publish(op) }, T0);
    while rig.broker.poll_output().is_some() {}
}

fn check(rig: &mut Rig, at: Timestamp) {
    rig.hub.handle_timeout(at);
    rig.serve_all();
}

#[test]
fn position_checks_end_a_subscription_that_stays_behind() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    let b = rig.ws(2, "b");
    assert_eq!(subscribe(&mut rig, a, 2, json!({"channel": "pos:x"}))["subscribe"]["positioned"], json!(true));
    assert_eq!(subscribe(&mut rig, b, 2, json!({"channel": "pos:y"}))["subscribe"]["positioned"], json!(true));
    let delay = 40_000;
    let next = rig.hub.poll_timeout().expect("a timer");
    assert!(next <= T0.after_ms(delay));
    rig.publish("pos:y", 1, H); // delivered: b stays in place
    publish_lost(&mut rig, "pos:x", 1); // a never sees it
    check(&mut rig, T0.after_ms(delay));
    assert!(rig.take(a).iter().all(|m| m["push"].get("unsubscribe").is_none()), "one check behind is no loss yet");
    check(&mut rig, T0.after_ms(2 * delay));
    let pushes = rig.take(a);
    let unsub = pushes.iter().find(|m| m["push"]["unsubscribe"].is_object()).expect("unsubscribed");
    assert_eq!(unsub["push"]["channel"], json!("pos:x"));
    assert_eq!(unsub["push"]["unsubscribe"]["code"], json!(2500));
    assert!(rig.take(b).iter().all(|m| m["push"].get("unsubscribe").is_none()));
    // a has no positioned subscription left: its check stops; b's goes on.
    check(&mut rig, T0.after_ms(3 * delay));
    let scheduled =
        |rig: &Rig, s: SessionId| rig.hub.timers.iter().any(|(_, id, t)| *id == s && *t == Timer::PositionCheck);
    assert!(!scheduled(&rig, a));
    assert!(scheduled(&rig, b));
    // Subscribing to a positioned channel again starts it again.
    subscribe(&mut rig, a, 9, json!({"channel": "pos:z"}));
    assert!(scheduled(&rig, a));
    assert!(rig.closed.is_empty());
}

#[test]
fn a_publication_in_flight_during_a_check_is_not_a_loss() {
    let mut rig = rig();
    let a = rig.ws(1, "a");
    subscribe(&mut rig, a, 2, json!({"channel": "pos:x"}));
    // The broker has it, the hub not yet, when the check's answer comes.
    let op = PublishOp { data: "{}".into(), history: H, ..Default::default() };
    let id = crate::broker::RequestId(77);
    rig.broker.handle_request(BrokerRequest { id, channel: "pos:x".into(), op: BrokerOp::Publish(op) }, T0);
    let held: Vec<_> = std::iter::from_fn(|| rig.broker.poll_output()).collect();
    check(&mut rig, T0.after_ms(40_000));
    for e in held {
        rig.hub.handle_broker(e, T0);
    }
    rig.pump();
    check(&mut rig, T0.after_ms(80_000));
    assert!(rig.take(a).iter().all(|m| m["push"].get("unsubscribe").is_none()));
    assert!(rig.hub.sessions.get(&a).unwrap().subs.contains_key("pos:x"));
}
