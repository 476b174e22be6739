//! Untrusted input on every path: binary payloads for JSON clients, hostile API values,
//! personal channels of other users, resources of ended sessions.

use serde_json::json;

use super::*;

/// Binary data (legal: API `b64data`, Protobuf clients) published into a channel with history.
fn publish_binary(rig: &mut Rig, channel: &str) {
    let op = PublishOp { data: Bytes::from_static(b"\xffnot json"), history: H, ..Default::default() };
    rig.broker.handle_request(
        BrokerRequest { id: crate::broker::RequestId(9_000_000), channel: channel.into(), op: BrokerOp::Publish(op) },
        T0,
    );
    rig.broker_events();
    rig.pump();
}

fn closed_with(rig: &Rig, s: SessionId) -> Vec<u32> {
    rig.closed.iter().filter(|(id, _)| *id == s).map(|(_, code)| *code).collect()
}

#[test]
fn history_with_a_binary_publication_ends_a_json_client_with_3506() {
    let mut rig =
        Rig::new(config(json!({"history_size": 100, "history_ttl": "300s", "allow_history_for_client": true})));
    let s = rig.ws(1, "1");
    publish_binary(&mut rig, "news");
    rig.frame(s, json!({"id": 2, "history": {"channel": "news", "limit": 10}}));
    rig.serve_all();
    assert_eq!(closed_with(&rig, s), vec![3506]);
    assert_eq!(rig.hub.num_sessions(), 0);
}

#[test]
fn recovery_with_a_binary_publication_ends_a_json_client_with_3506() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.publish("news", 1, H);
    let epoch = rig.broker.position("news").unwrap().epoch;
    publish_binary(&mut rig, "news");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news", "recover": true, "offset": 1, "epoch": epoch}}));
    rig.serve_all();
    assert_eq!(closed_with(&rig, s), vec![3506]);
    // Its subscription left with it: the channel is free again.
    assert_eq!(rig.hub.num_channels(), 0);
}

#[test]
fn a_live_binary_publication_ends_json_clients_but_reaches_protobuf_ones() {
    let mut rig = Rig::new(history_config());
    let json_client = rig.ws(1, "1");
    let proto = SessionId(2);
    rig.hub.handle_open(proto, Transport::Websocket(Encoding::Protobuf), T0);
    let mut frame = Vec::new();
    let connect = crate::protocol::Command {
        id: 1,
        connect: Some(ConnectRequest { token: token("2"), ..Default::default() }),
        ..Default::default()
    };
    prost::Message::encode_length_delimited(&connect, &mut frame).unwrap();
    rig.hub.handle_frame(proto, &frame, T0);
    rig.serve_all();
    rig.frame(json_client, json!({"id": 2, "subscribe": {"channel": "news"}}));
    let mut frame = Vec::new();
    let subscribe = crate::protocol::Command {
        id: 2,
        subscribe: Some(crate::protocol::SubscribeRequest { channel: "news".into(), ..Default::default() }),
        ..Default::default()
    };
    prost::Message::encode_length_delimited(&subscribe, &mut frame).unwrap();
    rig.hub.handle_frame(proto, &frame, T0);
    rig.serve_all();
    rig.closed.clear();
    let before = rig.hub.num_sessions();
    publish_binary(&mut rig, "news");
    assert_eq!(closed_with(&rig, json_client), vec![3506]);
    assert!(closed_with(&rig, proto).is_empty());
    assert_eq!(rig.hub.num_sessions(), before - 1);
}

#[test]
fn binary_connection_info_in_presence_and_join_ends_json_clients_with_3506() {
    let config = config(
        json!({"allow_subscribe_for_client": true, "presence": true, "join_leave": true, "force_push_join_leave": true,
        "allow_presence_for_client": true}),
    );
    let mut rig = Rig::new(config);
    let watcher = rig.ws(1, "1");
    rig.frame(watcher, json!({"id": 2, "subscribe": {"channel": "room"}}));
    rig.serve_all();
    // A client whose token carries binary connection info (`b64info`) joins.
    let binary = SessionId(2);
    rig.hub.handle_open(binary, Transport::Websocket(Encoding::Protobuf), T0);
    let t = crate::auth::issue_hs256(SECRET, &json!({"sub": "2", "b64info": "/w=="}));
    let mut frame = Vec::new();
    let connect = crate::protocol::Command {
        id: 1,
        connect: Some(ConnectRequest { token: t, ..Default::default() }),
        ..Default::default()
    };
    prost::Message::encode_length_delimited(&connect, &mut frame).unwrap();
    rig.hub.handle_frame(binary, &frame, T0);
    rig.serve_all();
    let mut frame = Vec::new();
    let subscribe = crate::protocol::Command {
        id: 2,
        subscribe: Some(crate::protocol::SubscribeRequest { channel: "room".into(), ..Default::default() }),
        ..Default::default()
    };
    prost::Message::encode_length_delimited(&subscribe, &mut frame).unwrap();
    rig.hub.handle_frame(binary, &frame, T0);
    rig.serve_all();
    assert_eq!(closed_with(&rig, watcher), vec![3506], "the join push carries the binary info");
    assert!(closed_with(&rig, binary).is_empty());

    // Presence asked by a JSON client: the reply carries the binary info.
    let asker = rig.ws(3, "3");
    rig.frame(asker, json!({"id": 2, "subscribe": {"channel": "room"}}));
    rig.serve_all();
    rig.frame(asker, json!({"id": 3, "presence": {"channel": "room"}}));
    rig.serve_all();
    assert_eq!(closed_with(&rig, asker), vec![3506]);
}

#[test]
fn ended_sessions_leave_no_timers_behind() {
    // Week-long tokens, pings and presence: every timer goes with its session.
    let config = config(json!({"allow_subscribe_for_client": true, "presence": true, "ping_interval": "25s"}));
    let mut rig = Rig::new(config);
    for id in 1..=200u64 {
        let s = SessionId(id);
        rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
        let t = crate::auth::issue_hs256(SECRET, &json!({"sub": id.to_string(), "exp": T0.as_secs() + 7 * 86_400}));
        rig.hub.handle_frame(s, json!({"id": 1, "connect": {"token": t}}).to_string().as_bytes(), T0);
        rig.serve_all();
        rig.frame(s, json!({"id": 2, "subscribe": {"channel": "room"}}));
        rig.serve_all();
        rig.hub.handle_closed(s, T0);
        rig.serve_all();
    }
    assert_eq!(rig.hub.num_sessions(), 0);
    assert_eq!(rig.hub.poll_timeout(), None, "no timer outlives its session");
}

#[test]
fn refreshing_a_token_replaces_its_expiry_timer() {
    let mut rig = Rig::new(config(json!({"ping_interval": "0s"})));
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    let exp = |d: u64| crate::auth::issue_hs256(SECRET, &json!({"sub": "1", "exp": T0.as_secs() + d}));
    rig.hub.handle_frame(s, json!({"id": 1, "connect": {"token": exp(100)}}).to_string().as_bytes(), T0);
    rig.serve_all();
    for i in 0..50u64 {
        rig.frame(s, json!({"id": 2 + i, "refresh": {"token": exp(200 + i)}}));
    }
    assert_eq!(rig.hub.timers.len(), 1, "one expiry timer, whatever the number of refreshes");
}

#[test]
fn a_personal_channel_refuses_every_client_command_of_other_users() {
    let config = config(json!({"history_size": 10, "history_ttl": "60s", "presence": true,
        "allow_history_for_client": true, "allow_publish_for_client": true, "allow_presence_for_client": true,
        "allow_subscribe_for_client": true, "allow_user_limited_channels": true}));
    let mut rig = Rig::new(config);
    let t1 = rig.ws(1, "t1");
    rig.take(t1);
    let commands = [
        json!({"id": 2, "subscribe": {"channel": "#t2"}}),
        json!({"id": 3, "history": {"channel": "#t2", "limit": 10}}),
        json!({"id": 4, "publish": {"channel": "#t2", "data": {"x": 1}}}),
        json!({"id": 5, "presence": {"channel": "#t2"}}),
        json!({"id": 6, "presence_stats": {"channel": "#t2"}}),
        json!({"id": 7, "history": {"channel": "dialog#t2,t3", "limit": 10}}),
    ];
    for command in commands {
        rig.frame(t1, command);
        rig.serve_all();
    }
    let got = rig.take(t1);
    assert_eq!(got.len(), 6, "{got:?}");
    for reply in &got {
        assert_eq!(reply["error"]["code"], 103, "{reply}");
    }
    // Its owner may.
    let t2 = rig.ws(2, "t2");
    rig.take(t2);
    rig.frame(t2, json!({"id": 2, "history": {"channel": "#t2", "limit": 10}}));
    rig.frame(t2, json!({"id": 3, "publish": {"channel": "#t2", "data": {"x": 1}}}));
    rig.serve_all();
    let got = rig.take(t2);
    assert!(got.iter().all(|r| r.get("error").is_none()), "{got:?}");
}

#[test]
fn api_expiry_times_near_the_end_of_time_neither_wrap_nor_panic() {
    use crate::api::{ApiCommand, ApiId};
    let mut rig = Rig::new(config(json!({"allow_subscribe_for_client": true})));
    let s = rig.ws(1, "42");
    rig.take(s);
    for (i, expire_at) in [i64::MAX, i64::MAX / 1000 + 1, i64::MIN, -1, u32::MAX as i64 * 1000].into_iter().enumerate()
    {
        let body = json!({"user": "42", "channel": format!("c{i}"), "expire_at": expire_at}).to_string();
        let command: ApiCommand = crate::api::parse("subscribe", body.as_bytes()).unwrap().unwrap();
        rig.hub.handle_api(ApiId(i as u64), command, T0);
        rig.serve_all();
        let body = json!({"user": "42", "expire_at": expire_at}).to_string();
        let command: ApiCommand = crate::api::parse("refresh", body.as_bytes()).unwrap().unwrap();
        rig.hub.handle_api(ApiId(100 + i as u64), command, T0);
        rig.serve_all();
    }
    let got = rig.take(s);
    let refresh = got.iter().find(|v| v["push"]["refresh"]["expires"] == true).expect("a refresh push");
    assert_eq!(refresh["push"]["refresh"]["ttl"], u32::MAX, "a far expiry saturates: {refresh}");
    assert_eq!(rig.hub.num_sessions(), 1, "expire_at <= 0 means no expiry, not an expired session");
}

#[test]
fn a_recovery_offset_at_the_end_of_u64_does_not_overflow() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.publish("news", 1, H);
    let epoch = rig.broker.position("news").unwrap().epoch;
    rig.frame(
        s,
        json!({"id": 2, "subscribe": {"channel": "news", "recover": true, "offset": u64::MAX, "epoch": epoch}}),
    );
    rig.serve_all();
    rig.publish("news", 2, H);
    assert_eq!(rig.hub.num_sessions(), 1);
}

#[test]
fn api_channel_names_obey_channel_max_length_and_batches_are_bounded() {
    use crate::api::{ApiCommand, ApiId};
    let mut rig = Rig::new(config(json!({})));
    let long = "x".repeat(256);
    let mut answers = Vec::new();
    for (method, body) in [
        ("publish", json!({"channel": long, "data": {}})),
        ("broadcast", json!({"channels": ["ok", long], "data": {}})),
        ("history", json!({"channel": long})),
        ("presence", json!({"channel": long})),
    ] {
        let command: ApiCommand = crate::api::parse(method, body.to_string().as_bytes()).unwrap().unwrap();
        rig.hub.handle_api(ApiId(1), command, T0);
        while let Some(output) = rig.hub.poll_output() {
            if let Output::Api { result, .. } = output {
                answers.push(result);
            }
        }
    }
    assert_eq!(answers.len(), 4);
    for answer in answers {
        let error = answer.unwrap_err();
        assert_eq!(error.code, 107);
        assert!(error.message.contains("channel_max_length"), "{}", error.message);
    }
    let commands: Vec<Value> = (0..=crate::api::MAX_BATCH).map(|_| json!({"info": {}})).collect();
    let err = crate::api::parse("batch", json!({ "commands": commands }).to_string().as_bytes()).unwrap_err();
    assert!(err.0.contains("more than the limit"), "{}", err.0);
}

#[test]
fn a_client_piling_up_commands_behind_a_slow_broker_is_cut_off() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    let bystander = rig.ws(2, "2");
    rig.take(s);
    // The subscribe waits for the broker (held), so what follows queues up.
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    let line = json!({"id": 3, "presence_stats": {"channel": "news"}}).to_string();
    let frame = vec![line.as_str(); 600].join("\n");
    rig.hub.handle_frame(s, frame.as_bytes(), T0);
    rig.pump();
    assert!(closed_with(&rig, s).is_empty(), "600 queued commands are fine");
    rig.hub.handle_frame(s, frame.as_bytes(), T0);
    rig.pump();
    assert_eq!(closed_with(&rig, s), vec![3013]);
    assert!(closed_with(&rig, bystander).is_empty());
}

#[test]
fn a_backlog_over_client_queue_max_size_is_a_slow_client() {
    let mut rig = Rig::new(config(json!({"client_queue_max_size": 1000})));
    let s = rig.ws(1, "1");
    let t = rig.ws(2, "2");
    rig.hub.handle_backlog(s, 1000, T0);
    rig.pump();
    assert!(closed_with(&rig, s).is_empty(), "at the limit is fine");
    rig.hub.handle_backlog(s, 1001, T0);
    rig.pump();
    assert_eq!(closed_with(&rig, s), vec![3008]);
    assert!(closed_with(&rig, t).is_empty());
}

#[test]
fn a_uni_websocket_connects_with_its_first_message_and_ignores_the_rest() {
    let mut rig = Rig::new(config(json!({"uni_websocket": true})));
    let (good, bad, by_url) = (SessionId(1), SessionId(2), SessionId(3));
    for s in [good, bad, by_url] {
        rig.hub.handle_open(s, Transport::UniWebsocket, T0);
    }
    let connect = json!({"token": token("u")}).to_string();
    rig.hub.handle_frame(good, connect.as_bytes(), T0);
    rig.hub.handle_frame(good, b"not a connect request", T0);
    rig.hub.handle_frame(bad, b"{", T0);
    let request = crate::protocol::parse_connect_request(connect.as_bytes()).unwrap();
    rig.hub.handle_connect(by_url, request, None, T0);
    rig.hub.handle_frame(by_url, b"{", T0);
    rig.serve_all();
    assert!(closed_with(&rig, good).is_empty() && closed_with(&rig, by_url).is_empty());
    assert_eq!(closed_with(&rig, bad), vec![3501]);
    assert!(rig.sent.iter().any(|(s, v)| *s == good && v.get("connect").is_some()), "{:?}", rig.sent);
}
