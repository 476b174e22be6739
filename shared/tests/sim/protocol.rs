//! The bidirectional client protocol over JSON WebSocket frames: ordering, errors, permissions.

use serde_json::{json, Value};
use shared::hub::{SessionId, Transport};
use shared::protocol::Encoding;

use crate::common::*;

fn config() -> String {
    json!({
        "token_hmac_secret_key": SECRET,
        "allow_subscribe_for_client": true,
        "namespaces": [
            {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
             "presence": true, "allow_presence_for_subscriber": true, "join_leave": true, "force_push_join_leave": true},
            {"name": "locked"},
            {"name": "dm", "allow_user_limited_channels": true},
            {"name": "open", "allow_subscribe_for_client": true, "allow_publish_for_client": true, "presence": true},
        ],
    })
    .to_string()
}

fn connected(sim: &mut Sim, user: &str) -> (SessionId, String) {
    let s = sim.connect_ws(&token(user, sim.now, None));
    let reply = sim.take_reply(s, 1);
    let client = reply["connect"]["client"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned();
    (s, client)
}

fn sub(sim: &mut Sim, s: SessionId, id: u64, channel: &str) -> Value {
    sim.command(s, json!({"id": id, "subscribe": {"channel": channel}}))
}

fn error_code(reply: &Value) -> Option<u64> {
    reply["error"]["code"].as_u64()
}

/// A uni client on `watch` that every test checks still gets publications.
struct Monitor(SessionId, u64);

impl Monitor {
    fn new(sim: &mut Sim) -> Monitor {
        let s = sim.connect_uni(
            Transport::UniHttpStream,
            json!({"token": token("monitor", sim.now, None), "subs": {"watch": {}}}),
        );
        sim.take(s);
        Monitor(s, 0)
    }

    fn check(&mut self, sim: &mut Sim) {
        self.1 += 1;
        sim.publish_ok("watch", json!({"n": self.1}));
        let pubs = sim.take_pubs(self.0, "watch");
        assert_eq!(pubs.len(), 1, "monitor still receives");
        assert_eq!(pubs[0]["data"]["n"], self.1);
    }
}

#[test]
fn batched_frame_runs_in_order() {
    let mut sim = Sim::new(&config());
    let s = sim.open(Transport::Websocket(Encoding::Json));
    let frame = format!(
        "{}\n{}\n{}\n{}",
        json!({"id": 1, "connect": {"token": token("42", sim.now, None), "name": "js"}}),
        json!({"id": 2, "subscribe": {"channel": "chat:a", "flag": 1}}),
        json!({"id": 3, "subscribe": {"channel": "chat:b", "flag": 1}}),
        json!({"id": 4, "publish": {"channel": "chat:a", "data": {"hi": 1}}}),
    );
    sim.frame(s, &frame);
    let ids: Vec<u64> = sim.take_values(s).iter().filter_map(|v| v["id"].as_u64()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert!(!sim.is_closed(s));
}

#[test]
fn replies_follow_commands_that_wait_for_the_broker() {
    let mut sim = Sim::new(&config());
    let (s, _) = connected(&mut sim, "42");
    let frame = [
        json!({"id": 2, "subscribe": {"channel": "chat:a"}}),
        json!({"id": 3, "presence_stats": {"channel": "chat:a"}}),
        json!({"id": 4, "publish": {"channel": "chat:a", "data": 1}}),
        json!({"id": 5, "unsubscribe": {"channel": "chat:a"}}),
        json!({"id": 6, "publish": {"channel": "chat:a", "data": 2}}),
    ]
    .map(|c| c.to_string())
    .join("\n");
    sim.frame(s, &frame);
    let values = sim.take_values(s);
    let ids: Vec<u64> = values.iter().filter_map(|v| v["id"].as_u64()).collect();
    assert_eq!(ids, vec![2, 3, 4, 5, 6]);
    let reply = |id: u64| values.iter().find(|v| v["id"] == id).unwrap().clone();
    assert_eq!(reply(3), json!({"id": 3, "presence_stats": {"num_clients": 1, "num_users": 1}}));
    assert_eq!(reply(4), json!({"id": 4, "publish": {}}));
    assert_eq!(error_code(&reply(6)), Some(103), "not a subscriber any more");
    let pubs: Vec<&Value> = values.iter().filter_map(push_of).filter(|p| p.get("pub").is_some()).collect();
    assert_eq!(pubs.len(), 1, "own publication delivered while subscribed: {values:?}");
}

#[test]
fn subscribe_errors() {
    let mut sim = Sim::new(&config());
    let mut monitor = Monitor::new(&mut sim);
    let (s, _) = connected(&mut sim, "42");
    assert!(sub(&mut sim, s, 2, "chat:a").get("subscribe").is_some());
    assert_eq!(error_code(&sub(&mut sim, s, 3, "chat:a")), Some(105), "already subscribed");
    assert_eq!(error_code(&sub(&mut sim, s, 4, "nope:a")), Some(102), "unknown namespace");
    assert_eq!(error_code(&sub(&mut sim, s, 5, "locked:a")), Some(103), "namespace without subscribe permission");
    assert_eq!(error_code(&sub(&mut sim, s, 6, "$secret")), Some(103), "private channel without token");
    assert_eq!(error_code(&sub(&mut sim, s, 7, "#13")), Some(103), "another user's personal channel");
    assert_eq!(error_code(&sub(&mut sim, s, 8, "#42")), Some(103), "user-limited channels are off here");
    assert_eq!(error_code(&sub(&mut sim, s, 9, "dm:#13")), Some(103));
    assert!(sub(&mut sim, s, 10, "dm:#13,42").get("subscribe").is_some(), "listed in the user-limited channel");
    assert_eq!(error_code(&sub(&mut sim, s, 11, &"x".repeat(256))), Some(107), "name over channel_max_length");
    assert_eq!(error_code(&sub(&mut sim, s, 12, "café")), Some(107), "non-ASCII without channel_regex");
    assert!(!sim.is_closed(s), "error replies keep the connection");
    monitor.check(&mut sim);
    // The subscription that did succeed still receives.
    sim.publish_ok("chat:a", json!("x"));
    assert_eq!(sim.take_pubs(s, "chat:a").len(), 1);
}

#[test]
fn private_channel_with_subscription_token() {
    let mut sim = Sim::new(&config());
    let (s, _) = connected(&mut sim, "42");
    let good = shared::auth::issue_hs256(SECRET, &json!({"sub": "42", "channel": "$secret", "info": {"role": "x"}}));
    let r = sim.command(s, json!({"id": 2, "subscribe": {"channel": "$secret", "token": good}}));
    assert_eq!(r, json!({"id": 2, "subscribe": {}}));
    sim.publish_ok("$secret", json!(1));
    assert_eq!(sim.take_pubs(s, "$secret").len(), 1);
    let expired = shared::auth::issue_hs256(SECRET, &json!({"sub": "42", "channel": "$s2", "exp": sim.now.as_secs()}));
    let r = sim.command(s, json!({"id": 3, "subscribe": {"channel": "$s2", "token": expired}}));
    assert_eq!(error_code(&r), Some(109));
    let garbage = sim.command(s, json!({"id": 4, "subscribe": {"channel": "$s2", "token": "x.y.z"}}));
    assert_eq!(error_code(&garbage), Some(103));
    // A token for another channel is a protocol violation: 3500.
    sim.frame(s, &json!({"id": 5, "subscribe": {"channel": "$s3", "token": good}}).to_string());
    assert_eq!(sim.close_code(s), Some(3500));
}

#[test]
fn empty_channel_names_close_3501() {
    let mut sim = Sim::new(&config());
    let mut monitor = Monitor::new(&mut sim);
    for command in [
        json!({"id": 2, "subscribe": {"channel": ""}}),
        json!({"id": 2, "unsubscribe": {"channel": ""}}),
        json!({"id": 2, "publish": {"channel": "", "data": {}}}),
        json!({"id": 2, "history": {"channel": ""}}),
        json!({"id": 2, "presence": {"channel": ""}}),
    ] {
        let (s, _) = connected(&mut sim, "42");
        sim.frame(s, &command.to_string());
        assert_eq!(sim.close_code(s), Some(3501), "{command}");
        assert!(sim.take(s).is_empty(), "no reply for {command}");
        monitor.check(&mut sim);
    }
}

#[test]
fn publish_permissions() {
    let mut sim = Sim::new(&config());
    let (a, client_a) = connected(&mut sim, "42");
    let (b, _) = connected(&mut sim, "43");
    sub(&mut sim, b, 2, "chat:room");
    sim.take(b);
    let publish = |sim: &mut Sim, id: u64, channel: &str| {
        sim.command(a, json!({"id": id, "publish": {"channel": channel, "data": {"text": "hi"}}}))
    };
    assert_eq!(error_code(&publish(&mut sim, 2, "chat:room")), Some(103), "subscribers only");
    assert_eq!(error_code(&publish(&mut sim, 3, "locked:x")), Some(103));
    assert_eq!(error_code(&publish(&mut sim, 4, "nope:x")), Some(102));
    assert!(sim.take_pubs(b, "chat:room").is_empty());
    sub(&mut sim, a, 5, "chat:room");
    assert_eq!(publish(&mut sim, 6, "chat:room"), json!({"id": 6, "publish": {}}));
    let pubs = sim.take_pubs(b, "chat:room");
    assert_eq!(pubs, vec![json!({"data": {"text": "hi"}, "info": {"user": "42", "client": client_a}})]);
    // allow_publish_for_client: no subscription needed.
    assert_eq!(publish(&mut sim, 7, "open:x"), json!({"id": 7, "publish": {}}));
    assert!(!sim.is_closed(a) && !sim.is_closed(b));
}

#[test]
fn presence_and_presence_stats() {
    let mut sim = Sim::new(&config());
    let (a, client_a) = connected(&mut sim, "42");
    let (b, client_b) = connected(&mut sim, "43");
    let (c, client_c) = connected(&mut sim, "42");
    let (outsider, _) = connected(&mut sim, "44");
    for s in [a, b, c] {
        sub(&mut sim, s, 2, "chat:room");
    }
    let r = sim.command(a, json!({"id": 3, "presence": {"channel": "chat:room"}}));
    let presence = r["presence"]["presence"].as_object().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(presence.len(), 3);
    assert_eq!(presence[&client_a], json!({"user": "42", "client": client_a}));
    assert_eq!(presence[&client_b]["user"], "43");
    assert_eq!(presence[&client_c]["user"], "42");
    let r = sim.command(a, json!({"id": 4, "presence_stats": {"channel": "chat:room"}}));
    assert_eq!(r, json!({"id": 4, "presence_stats": {"num_clients": 3, "num_users": 2}}));

    assert_eq!(error_code(&sim.command(outsider, json!({"id": 2, "presence": {"channel": "chat:room"}}))), Some(103));
    assert_eq!(
        error_code(&sim.command(outsider, json!({"id": 3, "presence_stats": {"channel": "chat:room"}}))),
        Some(103)
    );
    assert_eq!(
        error_code(&sim.command(a, json!({"id": 5, "presence": {"channel": "plain"}}))),
        Some(108),
        "no presence in namespace"
    );
    assert_eq!(error_code(&sim.command(a, json!({"id": 6, "presence": {"channel": "nope:x"}}))), Some(102));
    assert_eq!(
        error_code(&sim.command(a, json!({"id": 7, "presence": {"channel": "open:x"}}))),
        Some(103),
        "presence on, no permission"
    );

    // Leaving removes presence: unsubscribe and disconnect.
    sim.command(b, json!({"id": 3, "unsubscribe": {"channel": "chat:room"}}));
    sim.close(c);
    let r = sim.command(a, json!({"id": 8, "presence_stats": {"channel": "chat:room"}}));
    assert_eq!(r["presence_stats"], json!({"num_clients": 1, "num_users": 1}));
}

#[test]
fn presence_survives_past_its_ttl_while_connected_and_expires_after() {
    let mut sim = Sim::new(&config());
    let (a, _) = connected(&mut sim, "42");
    sub(&mut sim, a, 2, "chat:room");
    sim.advance_answering(5 * 60_000, &[a]);
    let r = sim.command(a, json!({"id": 3, "presence_stats": {"channel": "chat:room"}}));
    assert_eq!(r["presence_stats"]["num_clients"], 1, "refreshed every presence_update_interval");
    let (b, _) = connected(&mut sim, "43");
    sub(&mut sim, b, 2, "chat:room");
    sim.advance_answering(5 * 60_000, &[b]);
    assert!(sim.is_closed(a), "a stopped answering pings");
    let r = sim.command(b, json!({"id": 3, "presence_stats": {"channel": "chat:room"}}));
    assert_eq!(r["presence_stats"]["num_clients"], 1);
}

#[test]
fn history_permissions() {
    let mut sim = Sim::new(
        &json!({
            "token_hmac_secret_key": SECRET,
            "allow_subscribe_for_client": true,
            "allow_history_for_subscriber": true,
            "history_size": 10,
            "history_ttl": "300s",
            "namespaces": [{"name": "live", "allow_subscribe_for_client": true, "allow_history_for_client": true}],
        })
        .to_string(),
    );
    let (s, _) = connected(&mut sim, "42");
    sim.publish_ok("news", json!(1));
    let r = sim.command(s, json!({"id": 2, "history": {"channel": "news", "limit": 10}}));
    assert_eq!(error_code(&r), Some(103), "subscribers only: {r}");
    sub(&mut sim, s, 3, "news");
    let r = sim.command(s, json!({"id": 4, "history": {"channel": "news", "limit": 10}}));
    assert_eq!(offsets(r["history"]["publications"].as_array().unwrap()), vec![1]);
    let r = sim.command(s, json!({"id": 5, "history": {"channel": "live:x", "limit": 10}}));
    assert_eq!(error_code(&r), Some(108), "no history in namespace");
    let r = sim.command(s, json!({"id": 6, "history": {"channel": "nope:x"}}));
    assert_eq!(error_code(&r), Some(102));
}

#[test]
fn rpc_without_a_handler_is_not_available() {
    // No RPC proxy is configured: 108 "not available", as Centrifugo answers.
    let mut sim = Sim::new(&config());
    let (s, _) = connected(&mut sim, "42");
    let r = sim.command(s, json!({"id": 2, "rpc": {"method": "getUser", "data": {}}}));
    assert_eq!(error_code(&r), Some(108), "{r}");
    // `send` has no reply and no effect.
    sim.frame(s, r#"{"send":{"data":{"x":1}}}"#);
    assert!(sim.take(s).is_empty());
    assert!(!sim.is_closed(s));
}

#[test]
fn a_ping_command_is_not_available() {
    // Protocol v2 has no ping command; Centrifugo answers it with 108 and keeps the connection.
    let mut sim = Sim::new(&config());
    let (s, _) = connected(&mut sim, "42");
    let r = sim.command(s, json!({"id": 2, "ping": {}}));
    assert_eq!(error_code(&r), Some(108), "{r}");
    assert!(!sim.is_closed(s));
}

#[test]
fn protocol_violations_close_3501() {
    let mut sim = Sim::new(&config());
    let mut monitor = Monitor::new(&mut sim);
    let cases: Vec<(&str, bool)> = vec![
        (r#"{"id":1,"subscribe":{"channel":"chat:a"}}"#, false), // before connect
        (r#"{"id":1,"publish":{"channel":"chat:a","data":{}}}"#, false),
        ("{\"id\":1,\"connect\":{}", false), // malformed JSON
        ("not json at all", false),
        ("", false),                                                             // empty frame
        (r#"{"id":2,"publish":{"channel":"chat:a"}}"#, true),                    // publish without data
        (r#"{"id":2,"subscribe":{"channel":"chat:a","tf":{"key":"k"}}}"#, true), // tags filter
        (r#"{"id":2,"sub_refresh":{"token":"x"}}"#, true),                       // sub_refresh without a channel
        (r#"{"id":2,"connect":{}}"#, true),                                      // second connect
        (r#"{"id":2}"#, true),                                                   // a command with nothing in it
    ];
    for (frame, after_connect) in cases {
        let s =
            if after_connect { connected(&mut sim, "42").0 } else { sim.open(Transport::Websocket(Encoding::Json)) };
        sim.frame(s, frame);
        assert_eq!(sim.close_code(s), Some(3501), "{frame:?}");
        assert_eq!(sim.closed[&s].reason, "bad request");
        monitor.check(&mut sim);
    }
    // A bad line in a batch: the commands before it are not run either (the frame is refused whole).
    let (s, _) = connected(&mut sim, "42");
    sim.frame(s, "{\"id\":2,\"subscribe\":{\"channel\":\"chat:a\"}}\n{oops");
    assert_eq!(sim.close_code(s), Some(3501));
    assert_eq!(sim.node.hub().num_sessions(), 1, "only the monitor is left");
}

#[test]
fn join_and_leave_pushes() {
    let mut sim = Sim::new(&config());
    let (a, client_a) = connected(&mut sim, "42");
    sub(&mut sim, a, 2, "chat:room");
    let own = sim.take_values(a);
    assert!(own.iter().any(|v| v["push"]["join"]["info"]["client"] == client_a.as_str()), "{own:?}");
    let (b, client_b) = connected(&mut sim, "43");
    sub(&mut sim, b, 2, "chat:room");
    assert_eq!(
        sim.take_values(a),
        vec![json!({"push": {"channel": "chat:room", "join": {"info": {"user": "43", "client": client_b}}}})]
    );
    sim.command(b, json!({"id": 3, "unsubscribe": {"channel": "chat:room"}}));
    assert_eq!(
        sim.take_values(a),
        vec![json!({"push": {"channel": "chat:room", "leave": {"info": {"user": "43", "client": client_b}}}})]
    );
    sub(&mut sim, b, 4, "chat:room");
    sim.take_values(a);
    sim.close(b);
    assert_eq!(
        sim.take_values(a),
        vec![json!({"push": {"channel": "chat:room", "leave": {"info": {"user": "43", "client": client_b}}}})]
    );
    // No join_leave in the namespace: no pushes, even when asked for.
    let (c, _) = connected(&mut sim, "44");
    sim.command(c, json!({"id": 2, "subscribe": {"channel": "open:x", "join_leave": true}}));
    let (d, _) = connected(&mut sim, "45");
    sim.command(d, json!({"id": 2, "subscribe": {"channel": "open:x", "join_leave": true}}));
    assert!(sim.take_values(c).is_empty());
}

#[test]
fn channel_limit_is_106() {
    let mut sim = Sim::new(&config());
    let (s, _) = connected(&mut sim, "42");
    for i in 0..128u64 {
        let r = sub(&mut sim, s, i + 2, &format!("c{i}"));
        assert!(r.get("subscribe").is_some(), "{r}");
    }
    assert_eq!(error_code(&sub(&mut sim, s, 500, "one-too-many")), Some(106));
    assert!(!sim.is_closed(s));
}

#[test]
fn shutdown_closes_everyone_with_3001() {
    let mut sim = Sim::new(&config());
    let (ws, _) = connected(&mut sim, "42");
    let uni = sim.connect_uni(Transport::UniHttpStream, json!({"token": token("1", sim.now, None)}));
    let sse = sim.connect_uni(Transport::UniSse, json!({"token": token("1", sim.now, None)}));
    sim.take(uni);
    sim.take(sse);
    sim.node.shutdown(sim.now);
    sim.drain();
    for s in [ws, uni, sse] {
        assert_eq!(sim.close_code(s), Some(3001));
    }
    assert!(sim.take(ws).is_empty());
    assert_eq!(sim.take_values(uni), vec![json!({"disconnect": {"code": 3001, "reason": "shutdown"}})]);
    assert_eq!(sim.take_values(sse), vec![json!({"disconnect": {"code": 3001, "reason": "shutdown"}})]);
    assert_eq!(sim.node.hub().num_sessions(), 0);
}

#[test]
fn connect_result_shape() {
    let mut sim = Sim::new(&config());
    let (s, client) = connected(&mut sim, "42");
    assert_eq!(client.len(), 36);
    sim.take(s);
    let s2 = sim.connect_ws(&token("42", sim.now, None));
    let reply = sim.take_reply(s2, 1);
    let connect = reply["connect"].as_object().unwrap();
    let mut keys: Vec<&str> = connect.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, vec!["client", "ping", "pong", "version"], "WebSocket gets no session/node: {reply}");
    assert_ne!(reply["connect"]["client"], client.as_str(), "client ids are unique");
    let hs = sim.open(Transport::HttpStream(Encoding::Json));
    sim.frame(hs, &json!({"id": 1, "connect": {"token": token("42", sim.now, None)}}).to_string());
    let reply = sim.take_reply(hs, 1);
    assert_eq!(reply["connect"]["node"], "node-sim");
    let session = reply["connect"]["session"].as_str().unwrap();
    assert_eq!(sim.node.hub().session_by_token(session), Some(hs), "emulation requests route by session");
}

#[test]
fn personal_single_connection_keeps_only_the_newest() {
    let mut sim = Sim::new(
        &json!({
            "token_hmac_secret_key": SECRET,
            "user_subscribe_to_personal": true,
            "user_personal_single_connection": true,
            "presence": true,
        })
        .to_string(),
    );
    let first = sim.connect_uni(Transport::UniHttpStream, json!({"token": token("7", sim.now, None)}));
    let other = sim.connect_uni(Transport::UniHttpStream, json!({"token": token("8", sim.now, None)}));
    let second = sim.connect_uni(Transport::UniHttpStream, json!({"token": token("7", sim.now, None)}));
    assert_eq!(sim.close_code(first), Some(3504));
    assert!(!sim.is_closed(second));
    assert!(!sim.is_closed(other));
}

#[test]
fn token_subs_override_namespace_options() {
    let config = json!({
        "token_hmac_secret_key": SECRET,
        "namespaces": [{"name": "news", "history_size": 10, "history_ttl": "60s"}],
    });
    let mut sim = Sim::new(&config.to_string());
    let now = sim.now.as_secs();
    let claims = |over: Value| json!({"sub": "5", "exp": now + 3600, "subs": {"news:1": {"override": over}}});
    let plain = sim.connect_ws(&shared::auth::issue_hs256(SECRET, &claims(json!({}))));
    let reply = sim.take_reply(plain, 1);
    assert_eq!(reply["connect"]["subs"]["news:1"], json!({}), "{reply}");
    // The token turns recovery on for this subscription although the namespace does not.
    let forced =
        sim.connect_ws(&shared::auth::issue_hs256(SECRET, &claims(json!({"force_recovery": {"value": true}}))));
    let reply = sim.take_reply(forced, 1);
    assert_eq!(reply["connect"]["subs"]["news:1"]["recoverable"], json!(true), "{reply}");
}
