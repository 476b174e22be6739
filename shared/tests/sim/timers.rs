//! Server pings, pongs and the stale timeout.

use serde_json::json;
use shared::hub::Transport;
use shared::protocol::Encoding;

use crate::common::*;

const INTERVAL: u64 = 25_000;
const PONG_TIMEOUT: u64 = 8_000;

fn config() -> String {
    json!({"token_hmac_secret_key": SECRET, "allow_subscribe_for_client": true}).to_string()
}

#[test]
fn uni_sessions_get_empty_pings_first_randomized_then_every_interval() {
    let mut sim = Sim::new(&config());
    let t = token("1", sim.now, None);
    let start = sim.now;
    let sessions: Vec<_> = (0..40).map(|_| sim.connect_uni(Transport::UniHttpStream, json!({"token": t}))).collect();
    let connect = sim.take_values(sessions[0]);
    assert_eq!(connect[0]["connect"]["ping"], 25);
    assert!(connect[0]["connect"].get("pong").is_none(), "uni transports are not asked for pongs");
    for &s in &sessions[1..] {
        sim.take(s);
    }
    sim.advance(INTERVAL * 4 + 1);
    let mut firsts = std::collections::BTreeSet::new();
    for &s in &sessions {
        let frames = sim.take(s);
        assert!(frames.iter().all(|f| f.ping && f.value == json!({})), "{frames:?}");
        assert_eq!(frames[0].raw.as_ref(), b"{}\n");
        let first = start.until(frames[0].at);
        assert!((INTERVAL / 2..=INTERVAL).contains(&first), "first ping after {first} ms");
        firsts.insert(first);
        for pair in frames.windows(2) {
            assert_eq!(pair[0].at.until(pair[1].at), INTERVAL, "later pings every interval");
        }
        assert!(frames.len() >= 4);
    }
    assert!(firsts.len() > 10, "first pings spread out: {firsts:?}");
    assert!(sim.closed.is_empty(), "uni sessions never need to answer");
}

#[test]
fn uni_sse_ping_is_a_data_event() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_uni(Transport::UniSse, json!({"token": token("1", sim.now, None)}));
    sim.advance(INTERVAL);
    let frames = sim.take(s);
    let ping = frames.iter().find(|f| f.ping).expect("a ping");
    assert_eq!(ping.raw.as_ref(), b"data: {}\n\n");
}

#[test]
fn bidi_client_answering_pings_stays_connected() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("1", sim.now, None));
    let reply = sim.take_reply(s, 1);
    assert_eq!(reply["connect"]["ping"], 25);
    assert_eq!(reply["connect"]["pong"], true);
    sim.advance_answering(10 * INTERVAL, &[s]);
    assert!(!sim.is_closed(s));
    let pings = sim.take(s).into_iter().filter(|f| f.ping).count();
    assert!((9..=10).contains(&pings), "{pings} pings");
    for f in sim.peek(s) {
        assert_eq!(f.raw.as_ref(), b"{}");
    }
}

#[test]
fn bidi_client_missing_a_pong_is_closed_3012_after_pong_timeout() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("1", sim.now, None));
    sim.take(s);
    // Answer the first ping, then go silent.
    sim.advance_answering(INTERVAL, &[s]);
    let first = sim.take(s).into_iter().find(|f| f.ping).expect("first ping").at;
    let second = first.after_ms(INTERVAL);
    sim.advance(sim.now.until(second.after_ms(PONG_TIMEOUT - 1)));
    assert!(!sim.is_closed(s), "pong timeout not over yet");
    assert!(sim.take(s).iter().any(|f| f.ping), "second ping sent");
    sim.advance(1);
    assert_eq!(sim.close_code(s), Some(3012));
    assert_eq!(sim.closed[&s].reason, "no pong");
    assert!(sim.take(s).is_empty(), "bidi WebSocket: the close frame carries the disconnect, no push");
}

#[test]
fn other_commands_do_not_count_as_pongs() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("1", sim.now, None));
    sim.advance(INTERVAL);
    assert!(sim.take(s).iter().any(|f| f.ping));
    sim.frame(s, r#"{"id":5,"subscribe":{"channel":"x"}}"#);
    sim.advance(PONG_TIMEOUT);
    assert_eq!(sim.close_code(s), Some(3012));
}

#[test]
fn late_pong_is_too_late() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("1", sim.now, None));
    sim.advance(INTERVAL);
    sim.advance(PONG_TIMEOUT);
    assert_eq!(sim.close_code(s), Some(3012));
    sim.frame(s, "{}"); // the host would not deliver it; the hub must ignore it anyway
    assert_eq!(sim.closed.len(), 1);
}

#[test]
fn unsolicited_pong_closes_3501() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("1", sim.now, None));
    let other = sim.connect_ws(&token("2", sim.now, None));
    sim.frame(s, "{}");
    assert_eq!(sim.close_code(s), Some(3501));
    // A second pong for a single ping is unsolicited too.
    while !sim.peek(other).iter().any(|f| f.ping) {
        sim.advance(100);
    }
    sim.frame(other, "{}");
    assert!(!sim.is_closed(other));
    sim.frame(other, "{}");
    assert_eq!(sim.close_code(other), Some(3501));
}

#[test]
fn stale_connections_close_3502() {
    let mut sim = Sim::new(&config());
    let ws = sim.open(Transport::Websocket(Encoding::Json));
    let uni_ws = sim.open(Transport::UniWebsocket);
    let connected = sim.connect_ws(&token("1", sim.now, None));
    sim.advance(10_000 - 1);
    assert!(sim.closed.is_empty());
    sim.advance(1);
    assert_eq!(sim.close_code(ws), Some(3502));
    assert_eq!(sim.close_code(uni_ws), Some(3502));
    assert!(!sim.is_closed(connected));
    assert!(sim.take(ws).is_empty(), "bidi WebSocket: close frame only");
    assert_eq!(sim.take_values(uni_ws), vec![json!({"disconnect": {"code": 3502, "reason": "stale"}})]);
}

#[test]
fn closed_sessions_leave_no_timers_behind() {
    let mut sim = Sim::new(&config());
    let sessions: Vec<_> = (0..100).map(|i| sim.connect_ws(&token(&i.to_string(), sim.now, None))).collect();
    for s in sessions {
        sim.close(s);
    }
    assert_eq!(sim.node.hub().num_sessions(), 0);
    sim.advance(3_600_000);
    assert!(sim.closed.is_empty(), "no output for closed sessions");
    assert_eq!(sim.node.poll_timeout(), None, "stale timers fired and were dropped");
}
