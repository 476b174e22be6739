//! Recovery from a stream position: inside and outside the history window, wrong epochs,
//! recovery limits, and history TTL.

use serde_json::{json, Value};
use shared::hub::{SessionId, Transport};

use crate::common::*;

fn config(history_size: u64) -> String {
    json!({
        "token_hmac_secret_key": SECRET,
        "user_subscribe_to_personal": true,
        "allow_subscribe_for_client": true,
        "allow_history_for_subscriber": true,
        "history_size": history_size,
        "history_ttl": "300s",
        "force_recovery": true,
    })
    .to_string()
}

/// Connects a uni client to `news` (with a recovery hint when given) and returns its
/// session and the `news` entry of the connect push.
fn uni(sim: &mut Sim, hint: Value) -> (SessionId, Value) {
    let t = token("1", sim.now, None);
    let s = sim.connect_uni(Transport::UniHttpStream, json!({"token": t, "subs": {"news": hint}}));
    assert!(!sim.is_closed(s), "{:?}", sim.closed.get(&s));
    let connect = sim.take_values(s).remove(0);
    (s, connect["connect"]["subs"]["news"].clone())
}

fn publish_n(sim: &mut Sim, channel: &str, n: u64) {
    for _ in 0..n {
        sim.publish_ok(channel, json!({"t": sim.now.0}));
    }
}

#[test]
fn uni_connect_recovers_missed_publications_in_order() {
    let mut sim = Sim::new(&config(1000));
    let (a, news) = uni(&mut sim, json!({}));
    assert_eq!(news["recoverable"], true);
    assert_eq!(news["positioned"], true);
    let epoch = news["epoch"].as_str().unwrap().to_owned();
    assert!(news.get("offset").is_none(), "empty stream: offset 0 omitted: {news}");
    publish_n(&mut sim, "news", 3);
    assert_eq!(offsets(&sim.take_pubs(a, "news")), vec![1, 2, 3]);
    sim.close(a);
    publish_n(&mut sim, "news", 2);
    sim.advance(30_000);

    let (b, news) = uni(&mut sim, json!({"recover": true, "offset": 3, "epoch": epoch}));
    assert_eq!(news["was_recovering"], true);
    assert_eq!(news["recovered"], true);
    assert_eq!(news["epoch"], epoch.as_str());
    assert_eq!(news["offset"], 3, "offset in a recovered result is the client's");
    assert_eq!(offsets(news["publications"].as_array().unwrap()), vec![4, 5]);
    publish_n(&mut sim, "news", 1);
    assert_eq!(offsets(&sim.take_pubs(b, "news")), vec![6], "live stream continues after recovery, no duplicates");
}

#[test]
fn uni_connect_with_nothing_missed_recovers_empty() {
    let mut sim = Sim::new(&config(1000));
    let (_, news) = uni(&mut sim, json!({}));
    let epoch = news["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "news", 2);
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 2, "epoch": epoch}));
    assert_eq!(news["recovered"], true);
    assert!(news.get("publications").is_none());
    assert_eq!(news["offset"], 2);
}

#[test]
fn wrong_epoch_is_not_recovered() {
    let mut sim = Sim::new(&config(1000));
    publish_n(&mut sim, "news", 5);
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 3, "epoch": "notthis1"}));
    assert_eq!(news["was_recovering"], true);
    assert!(news.get("recovered").is_none(), "{news}");
    assert!(news.get("publications").is_none(), "{news}");
    assert_eq!(news["offset"], 5, "the stream top, so the client can reload state");
    assert_ne!(news["epoch"], "notthis1");
}

#[test]
fn offset_older_than_history_is_not_recovered() {
    let mut sim = Sim::new(&config(10));
    let (_, news) = uni(&mut sim, json!({}));
    let epoch = news["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "news", 15); // history keeps 6..=15
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 2, "epoch": epoch}));
    assert!(news.get("recovered").is_none(), "{news}");
    assert_eq!(news["offset"], 15);
    // The oldest position the window still covers recovers.
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 5, "epoch": epoch}));
    assert_eq!(news["recovered"], true, "{news}");
    assert_eq!(offsets(news["publications"].as_array().unwrap()), (6..=15).collect::<Vec<_>>());
}

#[test]
fn more_missed_than_the_recovery_limit_is_not_recovered() {
    let mut sim = Sim::new(&config(1000));
    let (_, news) = uni(&mut sim, json!({}));
    let epoch = news["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "news", 305);
    // 300 missed: exactly the limit (client_recovery_max_publication_limit).
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 5, "epoch": epoch}));
    assert_eq!(news["recovered"], true);
    assert_eq!(news["publications"].as_array().unwrap().len(), 300);
    // 301 missed.
    let (_, news) = uni(&mut sim, json!({"recover": true, "offset": 4, "epoch": epoch}));
    assert!(news.get("recovered").is_none(), "{news}");
    assert!(news.get("publications").is_none());
    assert_eq!(news["offset"], 305);
}

#[test]
fn personal_channel_takes_a_recovery_hint_from_connect_subs() {
    let mut sim = Sim::new(&config(1000));
    let t = token("1", sim.now, None);
    let a = sim.connect_uni(Transport::UniHttpStream, json!({"token": t}));
    let epoch = sim.take_values(a)[0]["connect"]["subs"]["#1"]["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "#1", 4);
    sim.close(a);
    let b = sim.connect_uni(
        Transport::UniHttpStream,
        json!({"token": t, "subs": {"#1": {"recover": true, "offset": 1, "epoch": epoch}}}),
    );
    let connect = sim.take_values(b).remove(0);
    let sub = &connect["connect"]["subs"]["#1"];
    assert_eq!(sub["recovered"], true, "{connect}");
    assert_eq!(offsets(sub["publications"].as_array().unwrap()), vec![2, 3, 4]);
}

fn subscribe(sim: &mut Sim, s: SessionId, id: u64, body: Value) -> Value {
    let mut body = body;
    body["channel"] = json!("news");
    sim.command(s, json!({"id": id, "subscribe": body}))
}

#[test]
fn bidi_subscribe_recovers_and_reports_failures() {
    let mut sim = Sim::new(&config(10));
    let s = sim.connect_ws(&token("1", sim.now, None));
    let first = subscribe(&mut sim, s, 2, json!({}));
    let epoch = first["subscribe"]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(first["subscribe"]["recoverable"], true);
    publish_n(&mut sim, "news", 4);
    assert_eq!(offsets(&sim.take_pubs(s, "news")), vec![1, 2, 3, 4]);
    sim.command(s, json!({"id": 3, "unsubscribe": {"channel": "news"}}));
    publish_n(&mut sim, "news", 3);
    assert!(sim.take_pubs(s, "news").is_empty(), "unsubscribed");

    let r = subscribe(&mut sim, s, 4, json!({"recover": true, "offset": 4, "epoch": epoch, "flag": 1}));
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    assert_eq!(r["subscribe"]["was_recovering"], true);
    assert_eq!(offsets(r["subscribe"]["publications"].as_array().unwrap()), vec![5, 6, 7]);
    assert_eq!(r["subscribe"]["offset"], 4);
    publish_n(&mut sim, "news", 1);
    assert_eq!(offsets(&sim.take_pubs(s, "news")), vec![8]);
    sim.command(s, json!({"id": 5, "unsubscribe": {"channel": "news"}}));

    // Wrong epoch without flag 2: recovered false, state reload.
    let r = subscribe(&mut sim, s, 6, json!({"recover": true, "offset": 4, "epoch": "xxxxxxxx"}));
    assert!(r["subscribe"].get("recovered").is_none(), "{r}");
    assert_eq!(r["subscribe"]["offset"], 8);
    sim.command(s, json!({"id": 7, "unsubscribe": {"channel": "news"}}));

    // Flag 2 (reject unrecovered): error 112, and the channel is not subscribed.
    let r = subscribe(&mut sim, s, 8, json!({"recover": true, "offset": 4, "epoch": "xxxxxxxx", "flag": 3}));
    assert_eq!(r["error"]["code"], 112, "{r}");
    publish_n(&mut sim, "news", 1);
    assert!(sim.take_pubs(s, "news").is_empty());
    let r = subscribe(&mut sim, s, 10, json!({"recover": true, "offset": 5, "epoch": epoch, "flag": 2}));
    assert_eq!(r["subscribe"]["recovered"], true, "{r}");
    assert_eq!(offsets(r["subscribe"]["publications"].as_array().unwrap()), vec![6, 7, 8, 9]);
    assert!(!sim.is_closed(s));
}

#[test]
fn history_ttl_expires_publications_but_keeps_the_epoch() {
    let mut sim = Sim::new(&config(100));
    let s = sim.connect_ws(&token("1", sim.now, None));
    let epoch = subscribe(&mut sim, s, 2, json!({}))["subscribe"]["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "news", 3);
    sim.advance_answering(200_000, &[s]);
    publish_n(&mut sim, "news", 2);
    let history = |sim: &mut Sim, id: u64, body: Value| {
        let mut body = body;
        body["channel"] = json!("news");
        sim.command(s, json!({"id": id, "history": body}))["history"].clone()
    };
    let h = history(&mut sim, 3, json!({"limit": -1}));
    assert_eq!(offsets(h["publications"].as_array().unwrap()), vec![1, 2, 3, 4, 5]);
    sim.advance_answering(100_000, &[s]); // the first three reach their 300 s TTL
    let h = history(&mut sim, 4, json!({"limit": -1}));
    assert_eq!(offsets(h["publications"].as_array().unwrap()), vec![4, 5]);
    assert_eq!(h["offset"], 5);
    assert_eq!(h["epoch"], epoch.as_str());
    sim.advance_answering(300_000, &[s]);
    let h = history(&mut sim, 5, json!({"limit": -1}));
    assert_eq!(
        h,
        json!({"publications": [], "epoch": epoch, "offset": 5}),
        "position survives within history_meta_ttl"
    );
    // Recovery over an expired window fails even though the epoch matches.
    sim.command(s, json!({"id": 6, "unsubscribe": {"channel": "news"}}));
    let r = subscribe(&mut sim, s, 7, json!({"recover": true, "offset": 3, "epoch": epoch}));
    assert!(r["subscribe"].get("recovered").is_none(), "{r}");
    let r = sim.command(s, json!({"id": 8, "unsubscribe": {"channel": "news"}}));
    assert_eq!(r, json!({"id": 8, "unsubscribe": {}}));
    let r = subscribe(&mut sim, s, 9, json!({"recover": true, "offset": 5, "epoch": epoch}));
    assert_eq!(r["subscribe"]["recovered"], true, "nothing missed at the top: {r}");
}

#[test]
fn history_command_limit_since_reverse() {
    let mut sim = Sim::new(&config(100));
    let s = sim.connect_ws(&token("1", sim.now, None));
    let epoch = subscribe(&mut sim, s, 2, json!({}))["subscribe"]["epoch"].as_str().unwrap().to_owned();
    publish_n(&mut sim, "news", 6);
    let mut id = 10;
    let mut history = |sim: &mut Sim, body: Value| {
        id += 1;
        let mut body = body;
        body["channel"] = json!("news");
        sim.command(s, json!({"id": id, "history": body}))
    };
    let h = history(&mut sim, json!({}));
    assert_eq!(h["history"], json!({"publications": [], "epoch": epoch, "offset": 6}), "limit 0: position only");
    let h = history(&mut sim, json!({"limit": 2}));
    assert_eq!(offsets(h["history"]["publications"].as_array().unwrap()), vec![1, 2]);
    let h = history(&mut sim, json!({"limit": 2, "since": {"offset": 3, "epoch": epoch}}));
    assert_eq!(offsets(h["history"]["publications"].as_array().unwrap()), vec![4, 5]);
    let h = history(&mut sim, json!({"limit": 2, "reverse": true}));
    assert_eq!(offsets(h["history"]["publications"].as_array().unwrap()), vec![6, 5]);
    let h = history(&mut sim, json!({"limit": -1, "reverse": true, "since": {"offset": 3, "epoch": epoch}}));
    assert_eq!(offsets(h["history"]["publications"].as_array().unwrap()), vec![2, 1]);
    let h = history(&mut sim, json!({"limit": 1, "since": {"offset": 3, "epoch": "other123"}}));
    assert_eq!(h["error"]["code"], 112, "{h}");
    assert!(!sim.is_closed(s));
}
