//! Hub unit tests with a hand-driven broker: replies and events can be delayed and
//! interleaved in ways the in-process `Node` never produces (the edge's broker is another
//! Durable Object, so they do happen there).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use super::*;
use crate::broker::{Broker, BrokerEvent, HistoryOptions, PublishOp};
use crate::protocol::{Encoding, Publication, StreamPosition};

const SECRET: &str = "hub-unit-test-secret";
const T0: Timestamp = Timestamp(1_700_000_000_000);

struct Rig {
    hub: Hub,
    broker: Broker,
    /// Broker requests the hub made and the test has not served yet.
    held: VecDeque<BrokerRequest>,
    sent: Vec<(SessionId, Value)>,
    closed: Vec<(SessionId, u32)>,
    /// Proxy calls the hub made and the test has not answered yet.
    proxied: VecDeque<crate::proxy::ProxyRequest>,
    /// Proxy failures the hub reported (kind, cause).
    proxy_failures: Vec<(crate::proxy::ProxyKind, String)>,
}

fn config(json: Value) -> Arc<Config> {
    let mut json = json;
    json["token_hmac_secret_key"] = json!(SECRET);
    Arc::new(Config::from_json_str(&json.to_string(), std::iter::empty()).expect("config").config)
}

/// The node every test hub runs as (a rebuilt hub keeps it).
fn node_info() -> NodeInfo {
    NodeInfo { id: "n1".into(), name: "n1".into(), version: "t".into() }
}

fn token(user: &str) -> String {
    crate::auth::issue_hs256(SECRET, &json!({"sub": user}))
}

impl Rig {
    fn new(config: Arc<Config>) -> Rig {
        let info = node_info();
        Rig {
            hub: Hub::new(config, info, 3, T0).unwrap(),
            broker: Broker::new(5),
            held: VecDeque::new(),
            sent: Vec::new(),
            closed: Vec::new(),
            proxied: VecDeque::new(),
            proxy_failures: Vec::new(),
        }
    }

    /// Collects hub outputs; broker requests are held for the test to serve.
    fn pump(&mut self) {
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Broker(r) => self.held.push_back(r),
                Output::Send { session, data } | Output::Ping { session, data } => {
                    // Protobuf sessions' frames are not JSON: tests look only at JSON ones.
                    let Ok(text) = std::str::from_utf8(&data) else { continue };
                    for line in text.split('\n').filter(|l| !l.is_empty()) {
                        if let Ok(value) = serde_json::from_str(line) {
                            self.sent.push((session, value));
                        }
                    }
                }
                Output::Close { session, disconnect } => self.closed.push((session, disconnect.code)),
                Output::Api { .. } => {}
                Output::Proxy(request) => self.proxied.push_back(request),
                Output::ProxyFailed { kind, cause, .. } => self.proxy_failures.push((kind, cause)),
            }
        }
    }

    /// Serves held requests (and what they cause) until the hub is quiet.
    fn serve_all(&mut self) {
        self.pump();
        while let Some(r) = self.held.pop_front() {
            self.broker.handle_request(r, T0);
            self.broker_events();
            self.pump();
        }
    }

    fn serve_one(&mut self) {
        let r = self.held.pop_front().expect("a held request");
        self.broker.handle_request(r, T0);
        self.broker_events();
        self.pump();
    }

    fn broker_events(&mut self) {
        while let Some(e) = self.broker.poll_output() {
            self.hub.handle_broker(e, T0);
        }
    }

    fn ws(&mut self, id: u64, user: &str) -> SessionId {
        let s = SessionId(id);
        self.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
        let frame = json!({"id": 1, "connect": {"token": token(user)}}).to_string();
        self.hub.handle_frame(s, frame.as_bytes(), T0);
        self.serve_all();
        s
    }

    fn frame(&mut self, s: SessionId, v: Value) {
        self.hub.handle_frame(s, v.to_string().as_bytes(), T0);
        self.pump();
    }

    /// Publishes straight into the broker (as another node would).
    fn publish(&mut self, channel: &str, n: u64, history: HistoryOptions) {
        let op = PublishOp { data: format!("{{\"n\":{n}}}").into(), history, ..Default::default() };
        self.broker.handle_request(
            BrokerRequest {
                id: crate::broker::RequestId(1_000_000 + n),
                channel: channel.into(),
                op: BrokerOp::Publish(op),
            },
            T0,
        );
        self.broker_events();
        self.pump();
    }

    fn take(&mut self, s: SessionId) -> Vec<Value> {
        let (mine, rest) = std::mem::take(&mut self.sent).into_iter().partition(|(id, _)| *id == s);
        self.sent = rest;
        mine.into_iter().map(|(_, v)| v).collect()
    }
}

fn pub_offsets(values: &[Value]) -> Vec<u64> {
    values.iter().filter_map(|v| v["push"]["pub"]["offset"].as_u64()).collect()
}

const H: HistoryOptions = HistoryOptions { size: 100, ttl_ms: 300_000, meta_ttl_ms: 3_600_000 };

fn history_config() -> Arc<Config> {
    config(
        json!({"allow_subscribe_for_client": true, "history_size": 100, "history_ttl": "300s", "force_recovery": true}),
    )
}

#[test]
fn hub_reaches_the_broker_only_through_outputs() {
    let mut rig = Rig::new(history_config());
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    rig.hub.handle_frame(s, json!({"id": 1, "connect": {"token": token("1")}}).to_string().as_bytes(), T0);
    rig.pump();
    assert!(rig.held.is_empty(), "no server-side channels: nothing to ask");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    assert_eq!(rig.held.len(), 1);
    assert!(matches!(&rig.held[0].op, BrokerOp::Subscribe { node, since: None, .. } if &**node == "n1"));
    assert!(rig.take(s).iter().all(|v| v["id"] != 2), "no subscribe reply before the broker answers");
}

#[test]
fn publications_during_a_pending_subscribe_are_delivered_after_the_reply_once() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.take(s);
    rig.publish("news", 1, H); // before subscribe: not for us
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_one(); // broker registers interest and answers: top = 1
                     // Interest is registered; now hold a second subscribe so buffering can be observed
                     // on another session.
    let t = rig.ws(2, "2");
    rig.take(t);
    rig.frame(t, json!({"id": 2, "subscribe": {"channel": "news"}}));
    assert_eq!(rig.held.len(), 1, "t's subscribe is pending");
    rig.publish("news", 2, H); // t is pending: buffered
    rig.publish("news", 3, H);
    assert!(pub_offsets(&rig.take(t)).is_empty(), "nothing before the subscribe reply");
    rig.serve_one(); // top = 3: publications 2 and 3 are covered by the position
    let got = rig.take(t);
    assert_eq!(got[0]["id"], 2);
    assert_eq!(got[0]["subscribe"]["offset"], 3);
    assert!(pub_offsets(&got).is_empty(), "buffered publications at or below the top are not re-sent: {got:?}");
    rig.publish("news", 4, H);
    assert_eq!(pub_offsets(&rig.take(t)), vec![4]);
    assert_eq!(pub_offsets(&rig.take(s)), vec![2, 3, 4]);
}

#[test]
fn publications_racing_ahead_of_a_subscribe_reply_are_sent_after_it() {
    // The broker answered (top = 1) but a later publication reaches the hub first.
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.take(s);
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    let request = rig.held.pop_front().unwrap();
    rig.broker.handle_request(request, T0);
    let reply = rig.broker.poll_output().unwrap();
    let epoch: Arc<str> = rig.broker.position("news").unwrap().epoch.into();
    let publication = Arc::new(Publication { data: "{}".into(), offset: 1, ..Default::default() });
    rig.hub.handle_broker(BrokerEvent::Publication { channel: "news".into(), epoch, publication, delta: None }, T0);
    rig.pump();
    assert!(rig.take(s).is_empty());
    rig.hub.handle_broker(reply, T0);
    rig.pump();
    let got = rig.take(s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["id"], 2, "reply first");
    assert_eq!(pub_offsets(&got[1..]), vec![1]);
}

#[test]
fn a_gap_in_a_positioned_client_subscription_unsubscribes_2500() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    rig.take(s);
    let epoch: Arc<str> = rig.broker.position("news").unwrap().epoch.into();
    let lost = Arc::new(Publication { data: "{}".into(), offset: 2, ..Default::default() });
    rig.hub
        .handle_broker(BrokerEvent::Publication { channel: "news".into(), epoch, publication: lost, delta: None }, T0);
    rig.pump();
    let got = rig.take(s);
    assert_eq!(
        got,
        vec![json!({"push": {"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}})]
    );
    assert!(rig.closed.is_empty());
    // The client resubscribes (the SDK does so on 2500).
    rig.frame(s, json!({"id": 3, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    assert!(rig.take(s)[0]["subscribe"].is_object());
}

#[test]
fn a_gap_in_a_server_side_subscription_disconnects_3010() {
    let mut rig = Rig::new(history_config());
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::UniHttpStream, T0);
    let request = crate::protocol::parse_connect_request(
        json!({"token": token("1"), "subs": {"news": {}}}).to_string().as_bytes(),
    )
    .unwrap();
    rig.hub.handle_connect(s, request, None, T0);
    rig.serve_all();
    let epoch: Arc<str> = rig.broker.position("news").unwrap().epoch.into();
    let lost = Arc::new(Publication { data: "{}".into(), offset: 5, ..Default::default() });
    rig.hub
        .handle_broker(BrokerEvent::Publication { channel: "news".into(), epoch, publication: lost, delta: None }, T0);
    rig.pump();
    assert_eq!(rig.closed, vec![(s, 3010)]);
}

#[test]
fn duplicate_publications_are_dropped_for_positioned_subscriptions() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    rig.publish("news", 1, H);
    let epoch: Arc<str> = rig.broker.position("news").unwrap().epoch.into();
    let again = Arc::new(Publication { data: "{}".into(), offset: 1, ..Default::default() });
    rig.hub
        .handle_broker(BrokerEvent::Publication { channel: "news".into(), epoch, publication: again, delta: None }, T0);
    rig.pump();
    assert_eq!(pub_offsets(&rig.take(s)), vec![1]);
    assert!(rig.closed.is_empty());
}

#[test]
fn commands_wait_for_earlier_broker_replies() {
    let mut rig = Rig::new(config(
        json!({"allow_subscribe_for_client": true, "allow_publish_for_client": true, "presence": true, "allow_presence_for_client": true}),
    ));
    let s = rig.ws(1, "1");
    rig.take(s);
    let frame = [
        json!({"id": 2, "subscribe": {"channel": "a"}}),
        json!({"id": 3, "presence_stats": {"channel": "a"}}),
        json!({"id": 4, "publish": {"channel": "a", "data": 1}}),
    ]
    .map(|c| c.to_string())
    .join("\n");
    rig.hub.handle_frame(s, frame.as_bytes(), T0);
    rig.pump();
    assert_eq!(rig.held.len(), 1, "one command at a time: the subscribe");
    rig.serve_one();
    let ids: Vec<Value> = rig.take(s).iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids, vec![json!(2)]);
    rig.serve_all();
    let got = rig.take(s);
    let ids: Vec<Value> = got.iter().filter(|v| v.get("id").is_some()).map(|v| v["id"].clone()).collect();
    assert_eq!(ids, vec![json!(3), json!(4)]);
    assert_eq!(
        got[0]["presence_stats"],
        json!({"num_clients": 1, "num_users": 1}),
        "presence added on subscribe, before the next command"
    );
}

#[test]
fn broker_errors_become_error_replies() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.take(s);
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    let request = rig.held.pop_front().unwrap();
    rig.hub.handle_broker(BrokerEvent::Reply { id: request.id, result: Err(Error::internal()) }, T0);
    rig.pump();
    let got = rig.take(s);
    assert_eq!(
        got,
        vec![json!({"id": 2, "error": {"code": 100, "message": "internal server error", "temporary": true}})]
    );
    // Not subscribed: a retry works.
    rig.frame(s, json!({"id": 3, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    assert!(rig.take(s)[0]["subscribe"].is_object());
}

#[test]
fn replies_for_forgotten_sessions_are_ignored() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.hub.handle_closed(s, T0);
    rig.serve_all();
    assert_eq!(rig.hub.num_sessions(), 0);
    assert_eq!(rig.hub.num_channels(), 0, "the channel is left when its last session goes");
    assert!(rig.take(s).iter().all(|v| v["id"] != 2));
    assert_eq!(rig.broker.nodes("news").count(), 0, "node interest withdrawn");
}

#[test]
fn uuids_are_v4() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    let reply = rig.take(s).remove(0);
    let client = reply["connect"]["client"].as_str().unwrap();
    let parts: Vec<&str> = client.split('-').collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
    assert!(parts[2].starts_with('4'));
    assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    let _ = StreamPosition::default();
}

#[test]
fn a_session_keeps_working_across_a_hub_rebuilt_from_its_snapshot() {
    let config = history_config();
    let mut rig = Rig::new(config.clone());
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    rig.publish("news", 1, H);
    rig.take(s);
    let client = rig.hub.sessions[&s].client.to_string();

    // The host keeps the snapshot (the socket attachment) and the node's last position per
    // channel (1 here), then loses the hub: a Durable Object evicted while idle.
    let snapshot = rig.hub.session_snapshot(s).expect("a WebSocket session has a snapshot");
    let attachment = serde_json::to_string(&snapshot).unwrap();
    assert!(attachment.len() < 2048, "fits a socket attachment: {attachment}");
    let positions: BTreeMap<String, StreamPosition> =
        [("news".to_string(), crate::broker::Broker::position(&rig.broker, "news").unwrap())].into();
    let info = node_info();
    rig.hub = Hub::new(config, info, 99, T0).unwrap();
    rig.held.clear();

    // Two publications while nobody listened, then the wake-up.
    rig.publish("news", 2, H);
    rig.publish("news", 3, H);
    let snapshot: SessionSnapshot = serde_json::from_str(&attachment).unwrap();
    rig.hub.handle_restore(s, snapshot, &positions, T0);
    rig.serve_all();
    rig.publish("news", 4, H);

    let got = rig.take(s);
    assert_eq!(pub_offsets(&got), vec![2, 3, 4], "missed publications, then live ones: {got:?}");
    assert!(got.iter().all(|v| v["push"]["subscribe"].is_null() && v["id"].is_null()), "nothing else: {got:?}");
    assert_eq!(rig.hub.sessions[&s].client.to_string(), client, "same client id");
    // Commands keep working on the rebuilt session.
    rig.frame(s, json!({"id": 9, "unsubscribe": {"channel": "news"}}));
    rig.serve_all();
    assert_eq!(rig.take(s), vec![json!({"id": 9, "unsubscribe": {}})]);
    rig.publish("news", 5, H);
    assert!(rig.take(s).is_empty(), "unsubscribed for real");
    assert!(rig.closed.is_empty());
}

#[test]
fn a_restored_subscription_whose_position_is_gone_is_ended() {
    let config = config(
        json!({"allow_subscribe_for_client": true, "history_size": 2, "history_ttl": "300s", "force_recovery": true}),
    );
    let small = HistoryOptions { size: 2, ttl_ms: 300_000, meta_ttl_ms: 3_600_000 };
    let mut rig = Rig::new(config.clone());
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    rig.publish("news", 1, small);
    let attachment = serde_json::to_string(&rig.hub.session_snapshot(s).unwrap()).unwrap();
    let positions: BTreeMap<String, StreamPosition> =
        [("news".to_string(), rig.broker.position("news").unwrap())].into();
    let info = node_info();
    rig.hub = Hub::new(config, info, 99, T0).unwrap();
    rig.take(s);
    for n in 2..=5 {
        rig.publish("news", n, small); // history keeps only 4 and 5: offset 2 and 3 are lost
    }
    rig.hub.handle_restore(s, serde_json::from_str(&attachment).unwrap(), &positions, T0);
    rig.serve_all();
    let got = rig.take(s);
    assert_eq!(got.last().unwrap()["push"]["unsubscribe"]["code"], json!(2500), "{got:?}");
    assert!(pub_offsets(&got).is_empty(), "no silent gap: {got:?}");
}

#[test]
fn websocket_sessions_can_go_without_server_pings() {
    let config = history_config();
    let mut rig = Rig::new(config.clone());
    let info = node_info();
    rig.hub = Hub::new(config, info, 3, T0).unwrap().without_websocket_pings();
    let s = rig.ws(1, "42");
    let reply = rig.take(s).into_iter().find(|v| v["id"] == 1).unwrap();
    assert!(reply["connect"]["ping"].is_null() && reply["connect"]["pong"].is_null(), "{reply}");
    // Streams still get pings.
    let u = SessionId(2);
    rig.hub.handle_open(u, Transport::UniHttpStream, T0);
    rig.hub.handle_connect(u, crate::protocol::ConnectRequest { token: token("7"), ..Default::default() }, None, T0);
    rig.serve_all();
    let at = rig.hub.poll_timeout().expect("a ping timer for the stream");
    rig.hub.handle_timeout(at.after_ms(30_000));
    rig.pump();
    assert!(rig.take(u).iter().any(|v| v == &json!({})), "the stream is pinged");
    assert!(rig.take(s).is_empty(), "the WebSocket is not");
}

/// Applies a tracking hub's changes the way the edge host does: snapshots to the sockets'
/// attachments, positions to a table.
fn store(
    rig: &mut Rig,
    attachments: &mut BTreeMap<SessionId, String>,
    positions: &mut BTreeMap<String, StreamPosition>,
) -> Option<Changes> {
    let changes = rig.hub.take_changes()?;
    for (session, snapshot) in &changes.sessions {
        match snapshot {
            Some(s) => attachments.insert(*session, serde_json::to_string(s).unwrap()),
            None => attachments.remove(session),
        };
    }
    for (channel, position) in &changes.positions {
        match position {
            Some(p) => positions.insert(channel.to_string(), p.clone()),
            None => positions.remove(&**channel),
        };
    }
    Some(changes)
}

#[test]
fn a_tracking_hub_reports_what_to_store_and_wakes_up_from_it() {
    let config = config(json!({
        "allow_subscribe_for_client": true, "history_size": 100, "history_ttl": "300s", "force_recovery": true,
        "join_leave": true, "force_push_join_leave": true, "presence": true,
    }));
    let info = node_info();
    let mut rig = Rig::new(config.clone());
    rig.hub = Hub::new(config.clone(), info.clone(), 3, T0).unwrap().tracking_snapshots().without_websocket_pings();
    let (mut attachments, mut positions) = (BTreeMap::new(), BTreeMap::new());
    let (a, b) = (rig.ws(1, "42"), rig.ws(2, "43"));
    let changes = store(&mut rig, &mut attachments, &mut positions).expect("connects are changes");
    assert_eq!(changes.sessions.len(), 2);
    assert!(attachments.values().all(|s| !s.contains("news")));
    for s in [a, b] {
        rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news", "join_leave": true}}));
        rig.serve_all();
    }
    assert!(rig.take(a).iter().any(|v| !v["push"]["join"].is_null()), "b's join reached a");
    store(&mut rig, &mut attachments, &mut positions);
    assert!(attachments.values().all(|s| s.contains("\"ch\":\"news\"")), "{attachments:?}");
    rig.publish("news", 1, H);
    let changes = store(&mut rig, &mut attachments, &mut positions).expect("the position moved");
    assert!(changes.sessions.is_empty(), "publications do not touch snapshots: {changes:?}");
    assert_eq!(positions["news"].offset, 1);
    rig.sent.clear();
    assert!(rig.hub.take_changes().is_none(), "nothing new");

    // The host loses the hub. A publication wakes it: it restores every session first, then
    // hands over the event, which reaches the hub before the re-subscriptions are answered.
    rig.hub = Hub::new(config, info, 99, T0).unwrap().tracking_snapshots().without_websocket_pings();
    rig.held.clear();
    for (session, attachment) in &attachments {
        rig.hub.handle_restore(*session, serde_json::from_str(attachment).unwrap(), &positions, T0);
    }
    rig.pump();
    rig.publish("news", 2, H);
    rig.serve_all();
    rig.publish("news", 3, H);
    for s in [a, b] {
        let got = rig.take(s);
        assert_eq!(pub_offsets(&got), vec![2, 3], "each publication once: {got:?}");
        assert_eq!(got.len(), 2, "no join, subscribe or other push: {got:?}");
    }
    let before = attachments.clone();
    store(&mut rig, &mut attachments, &mut positions);
    assert_eq!(attachments, before, "the same snapshots after the wake-up");
    assert_eq!(positions["news"].offset, 3);

    // Leaving: the snapshot loses the channel; the last one out forgets its position.
    rig.frame(a, json!({"id": 3, "unsubscribe": {"channel": "news"}}));
    rig.serve_all();
    store(&mut rig, &mut attachments, &mut positions);
    assert!(!attachments[&a].contains("news") && positions.contains_key("news"));
    rig.hub.handle_closed(b, T0);
    rig.serve_all();
    let changes = store(&mut rig, &mut attachments, &mut positions).unwrap();
    assert!(changes.sessions.contains(&(b, None)), "a closed session has no snapshot: {changes:?}");
    assert!(!attachments.contains_key(&b) && positions.is_empty(), "{positions:?}");
}

#[test]
fn a_restored_session_sets_no_timer_it_does_not_need() {
    // Every timer is an alarm that wakes a hibernated host: a restored WebSocket session with
    // no token expiry, no presence and no pings must leave the hub with no deadline at all.
    let config = history_config();
    let info = node_info();
    let mut rig = Rig::new(config.clone());
    rig.hub = Hub::new(config.clone(), info.clone(), 3, T0).unwrap().without_websocket_pings();
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    let snapshot = rig.hub.session_snapshot(s).unwrap();
    rig.hub = Hub::new(config, info, 4, T0).unwrap().without_websocket_pings();
    rig.held.clear();
    rig.hub.handle_restore(s, snapshot, &BTreeMap::new(), T0);
    rig.serve_all();
    assert_eq!(rig.hub.poll_timeout(), None);
}

#[test]
fn a_frame_that_goes_bad_part_way_runs_the_commands_before_it_then_disconnects() {
    // As Centrifugo: commands are decoded and run one by one; the bad one ends the connection.
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "42");
    rig.take(s);
    let frame = format!(
        "{}\n{}\nnot json\n{}",
        json!({"id": 2, "subscribe": {"channel": "news"}}),
        json!({"id": 3, "presence_stats": {"channel": "news"}}),
        json!({"id": 4, "history": {"channel": "news"}})
    );
    rig.hub.handle_frame(s, frame.as_bytes(), T0);
    rig.pump();
    assert!(rig.closed.is_empty(), "not before the subscribe is answered");
    // Frames sent meanwhile are not read.
    rig.frame(s, json!({"id": 5, "history": {"channel": "news"}}));
    rig.serve_all();
    let ids: Vec<Value> = rig.take(s).iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids, vec![json!(2), json!(3)], "the commands before the bad line were answered, in order");
    assert_eq!(rig.closed, vec![(s, 3501)]);
}

/// A WebSocket session subscribed to `news` (with join/leave), its snapshot, and the node's
/// position of `news`, then a fresh hub: the state a woken host starts from.
fn evicted(rig: &mut Rig, s: SessionId) -> (SessionSnapshot, BTreeMap<String, StreamPosition>) {
    let snapshot = rig.hub.session_snapshot(s).unwrap();
    let positions: BTreeMap<String, StreamPosition> =
        [("news".to_string(), rig.broker.position("news").unwrap())].into();
    let info = node_info();
    rig.hub = Hub::new(rig.hub.config().clone(), info, 77, T0).unwrap().without_websocket_pings();
    rig.held.clear();
    rig.sent.clear();
    (snapshot, positions)
}

fn join_leave_config() -> Arc<Config> {
    config(json!({
        "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true, "history_size": 100,
        "history_ttl": "300s", "force_recovery": true, "join_leave": true, "force_push_join_leave": true,
    }))
}

#[test]
fn commands_sent_during_a_wake_up_wait_for_the_subscriptions_to_be_back() {
    let mut rig = Rig::new(join_leave_config());
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    let (snapshot, positions) = evicted(&mut rig, s);
    rig.hub.handle_restore(s, snapshot, &positions, T0);
    rig.pump();
    // Publish (subscribers only) and unsubscribe + subscribe arrive before the re-subscribe is
    // answered: they run after it, in order, as for a session that never went away.
    rig.frame(s, json!({"id": 3, "publish": {"channel": "news", "data": {"x": 1}}}));
    rig.frame(s, json!({"id": 4, "unsubscribe": {"channel": "news"}}));
    rig.frame(s, json!({"id": 5, "subscribe": {"channel": "news"}}));
    assert!(rig.take(s).is_empty(), "nothing answered yet");
    rig.serve_all();
    let got = rig.take(s);
    let replies: Vec<&Value> = got.iter().filter(|v| v["id"].is_u64()).collect();
    assert_eq!(replies.iter().map(|v| v["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4, 5], "{got:?}");
    assert!(replies[0]["error"].is_null() && replies[2]["error"].is_null(), "{got:?}");
    assert!(got.iter().all(|v| v["push"]["subscribe"].is_null()), "no server-side subscribe push: {got:?}");
}

#[test]
fn a_session_closed_during_its_wake_up_leaves_its_channels() {
    let mut rig = Rig::new(join_leave_config());
    let (a, b) = (rig.ws(1, "42"), rig.ws(2, "43"));
    for s in [a, b] {
        rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news", "join_leave": true}}));
        rig.serve_all();
    }
    let snap_b = rig.hub.session_snapshot(b).unwrap();
    let (snap_a, positions) = evicted(&mut rig, a);
    rig.hub.handle_restore(b, snap_b, &positions, T0);
    rig.serve_all();
    rig.sent.clear();
    // a comes back too, and closes before its re-subscribe is answered.
    rig.hub.handle_restore(a, snap_a, &positions, T0);
    rig.pump();
    rig.hub.handle_closed(a, T0);
    rig.serve_all();
    let got = rig.take(b);
    assert!(got.iter().any(|v| v["push"]["leave"]["info"]["user"] == json!("42")), "b sees a leave: {got:?}");
}

#[test]
fn a_restored_subscription_without_a_stored_position_ends_rather_than_skips() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    let (snapshot, _) = evicted(&mut rig, s);
    rig.publish("news", 1, H); // missed while the node lost its memory and its position row
    rig.hub.handle_restore(s, snapshot, &BTreeMap::new(), T0);
    rig.serve_all();
    let got = rig.take(s);
    assert_eq!(got.last().unwrap()["push"]["unsubscribe"]["code"], json!(2500), "{got:?}");
    assert!(pub_offsets(&got).is_empty(), "{got:?}");
}

#[test]
fn a_restored_subscription_token_still_expires() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "42");
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    let (mut snapshot, positions) = evicted(&mut rig, s);
    snapshot.subs[0].exp = Some(T0.as_millis() + 60_000);
    rig.hub.handle_restore(s, snapshot, &positions, T0);
    rig.serve_all();
    // Earlier deadlines (position checks) pass first.
    while rig.closed.is_empty() {
        let at = rig.hub.poll_timeout().expect("the subscription's expiry is a deadline again");
        assert!(at <= T0.after_ms(120_000), "expired by then");
        rig.hub.handle_timeout(at);
        rig.serve_all();
    }
    assert_eq!(rig.closed, vec![(s, 3006)]);
}

mod channel_options;
mod delta;
mod metrics;
mod proxy;
mod untrusted;
