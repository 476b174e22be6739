//! What the hub counts for `/metrics`, after known traffic.

use super::*;
use crate::metrics::{CLIENT_METHODS, TRANSPORTS};

fn method(name: &str) -> usize {
    CLIENT_METHODS.iter().position(|m| *m == name).unwrap()
}

fn transport(name: &str) -> usize {
    TRANSPORTS.iter().position(|t| *t == name).unwrap()
}

#[test]
fn counts_follow_known_traffic() {
    let mut rig = Rig::new(config(json!({"prometheus": true, "allow_subscribe_for_client": true})));
    let (a, b, c) = (rig.ws(1, "u1"), rig.ws(2, "u2"), rig.ws(3, "u2"));
    // `a` subscribes; the broker answers 30 ms later: the command took 30 ms.
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "news"}}));
    let request = rig.held.pop_front().expect("a subscribe request");
    rig.broker.handle_request(request, T0);
    while let Some(e) = rig.broker.poll_output() {
        rig.hub.handle_broker(e, Timestamp(T0.0 + 30));
    }
    rig.serve_all();
    rig.frame(c, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    // `b` asks for a channel of a namespace that does not exist: error 102.
    rig.frame(b, json!({"id": 2, "subscribe": {"channel": "nosuch:x"}}));
    rig.serve_all();
    rig.publish("news", 1, HistoryOptions::default());

    let m = rig.hub.metrics_snapshot();
    assert_eq!((m.num_clients, m.num_users, m.num_channels, m.num_subscriptions), (3, 2, 1, 2));
    let k = &m.metrics;
    assert_eq!(k.transport_connects[transport("websocket")], 3);
    assert_eq!(k.command_durations[method("connect")].count(), 3);
    assert_eq!(k.command_durations[method("subscribe")].count(), 3);
    assert_eq!(k.reply_errors.get(method("subscribe") as u8, 102), 1);
    assert_eq!(k.messages_received[0], 1);
    // 3 connect replies, 3 subscribe replies, 2 deliveries.
    assert_eq!(k.transport_messages_sent[transport("websocket")], 8);

    // `a` goes away: the next publication is counted for `c` alone.
    rig.hub.handle_closed(a, T0);
    rig.publish("news", 2, HistoryOptions::default());
    assert_eq!(rig.hub.metrics_snapshot().metrics.transport_messages_sent[transport("websocket")], 9);

    // A disconnect the server decides is counted by its code.
    rig.hub.disconnect(b, Disconnect::force_disconnect(), T0);
    rig.pump();
    let m = rig.hub.metrics_snapshot();
    assert_eq!(m.metrics.server_disconnects.get(0, 3503), 1);
    assert_eq!(m.num_clients, 1);

    // Rendered under Centrifugo's names.
    let mut text = String::new();
    m.render(&mut text);
    assert!(text.contains("centrifugo_client_num_reply_errors{method=\"subscribe\",code=\"102\"} 1\n"), "{text}");
    assert!(text.contains("centrifugo_client_command_duration_seconds_sum{method=\"subscribe\"} 0.03\n"), "{text}");
}

#[test]
fn nothing_is_counted_with_prometheus_off() {
    let mut rig = Rig::new(config(json!({"allow_subscribe_for_client": true})));
    let a = rig.ws(1, "u1");
    rig.frame(a, json!({"id": 2, "subscribe": {"channel": "news"}}));
    rig.serve_all();
    rig.publish("news", 1, HistoryOptions::default());
    let m = rig.hub.metrics_snapshot();
    assert_eq!(m.num_clients, 1, "gauges come from the state either way");
    assert_eq!(m.metrics, crate::metrics::Metrics::default());
}

/// The subscription gauge is kept as subscriptions change (a scrape must not walk every
/// channel): it always equals the channels' active subscribers, and comes back to 0.
#[test]
fn gauges_follow_churn_and_come_back_to_zero() {
    let mut rig = Rig::new(config(json!({"prometheus": true, "allow_subscribe_for_client": true})));
    let walked = |hub: &Hub| hub.channels.values().map(|c| c.active.len() as u64).sum::<u64>();
    let sessions: Vec<SessionId> = (1..=30).map(|i| rig.ws(i, &format!("u{}", i % 7))).collect();
    for (i, &s) in sessions.iter().enumerate() {
        for ch in ["a", "b", "c"] {
            rig.frame(s, json!({"id": 2 + i, "subscribe": {"channel": ch}}));
            rig.serve_all();
        }
    }
    // Subscribing twice to the same channel is refused and counts nothing.
    rig.frame(sessions[0], json!({"id": 99, "subscribe": {"channel": "a"}}));
    rig.serve_all();
    assert_eq!(rig.hub.metrics_snapshot().num_subscriptions, 90);
    assert_eq!(walked(&rig.hub), 90);
    for (i, &s) in sessions.iter().enumerate() {
        match i % 3 {
            0 => rig.hub.handle_closed(s, T0),
            1 => rig.hub.disconnect(s, Disconnect::force_disconnect(), T0),
            _ => {
                rig.frame(s, json!({"id": 200, "unsubscribe": {"channel": "b"}}));
                rig.serve_all();
            }
        }
        rig.pump();
        assert_eq!(rig.hub.metrics_snapshot().num_subscriptions, walked(&rig.hub));
    }
    assert_eq!(rig.hub.metrics_snapshot().num_subscriptions, 20);
    for &s in &sessions {
        rig.hub.handle_closed(s, T0);
    }
    rig.pump();
    let m = rig.hub.metrics_snapshot();
    assert_eq!((m.num_clients, m.num_users, m.num_channels, m.num_subscriptions), (0, 0, 0, 0));
}

/// A command the backend answers (here an RPC through the proxy) lasts until the answer
/// comes, not until whatever event the hub saw last.
#[test]
fn a_proxied_command_lasts_until_the_backend_answers() {
    let mut rig = Rig::new(config(json!({"prometheus": true, "proxy_rpc_endpoint": "http://127.0.0.1:9/rpc"})));
    let a = rig.ws(1, "u1");
    rig.take(a);
    rig.frame(a, json!({"id": 2, "rpc": {"method": "m", "data": {}}}));
    let call = rig.proxied.pop_front().expect("an rpc proxy call");
    let answer =
        crate::proxy::ProxyOutcome::Answer { status: 200, body: json!({"result": {"data": {}}}).to_string().into() };
    rig.hub.handle_proxy_reply(call.id, answer, Timestamp(T0.0 + 500));
    rig.pump();
    assert_eq!(rig.take(a), vec![json!({"id": 2, "rpc": {"data": {}}})]);
    let mut text = String::new();
    rig.hub.metrics_snapshot().render(&mut text);
    assert!(text.contains("centrifugo_client_command_duration_seconds_sum{method=\"rpc\"} 0.5\n"), "{text}");
}

#[test]
fn a_socket_not_yet_connected_is_no_client() {
    let mut rig = Rig::new(config(json!({"prometheus": true})));
    rig.ws(1, "u1");
    // Opened, never sent its connect command (or still waiting on the connect proxy).
    rig.hub.handle_open(SessionId(2), Transport::Websocket(Encoding::Json), T0);
    rig.hub.handle_open(SessionId(3), Transport::UniHttpStream, T0);
    let m = rig.hub.metrics_snapshot();
    assert_eq!((m.num_clients, m.num_users), (1, 1));
}
