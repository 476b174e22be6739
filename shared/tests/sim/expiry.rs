//! Connection token expiry, refresh, and expired tokens at connect.

use serde_json::json;
use shared::hub::Transport;

use crate::common::*;

const GRACE: u64 = 25_000; // client_expired_close_delay

fn config() -> String {
    json!({"token_hmac_secret_key": SECRET, "user_subscribe_to_personal": true}).to_string()
}

#[test]
fn uni_session_is_disconnected_3005_after_exp_plus_grace() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_uni(Transport::UniHttpStream, json!({"token": token("42", sim.now, Some(30))}));
    let connect = sim.take_values(s).remove(0);
    assert_eq!(connect["connect"]["expires"], true);
    assert_eq!(connect["connect"]["ttl"], 30);
    sim.advance(30_000 + GRACE - 1);
    assert!(!sim.is_closed(s));
    sim.publish_ok("#42", json!("still here"));
    assert_eq!(sim.take_pubs(s, "#42").len(), 1, "delivery goes on during the grace period");
    sim.advance(1);
    assert_eq!(sim.close_code(s), Some(3005));
    let last = sim.take_values(s).pop().unwrap();
    assert_eq!(last, json!({"disconnect": {"code": 3005, "reason": "connection expired"}}));
    // Gone for good: no delivery, no presence in the hub.
    sim.publish_ok("#42", json!("gone"));
    assert!(sim.take(s).is_empty());
    assert_eq!(sim.node.hub().num_sessions(), 0);
}

#[test]
fn bidi_client_that_refreshes_in_time_stays_connected() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("42", sim.now, Some(30)));
    let reply = sim.take_reply(s, 1);
    assert_eq!(reply["connect"]["expires"], true);
    assert_eq!(reply["connect"]["ttl"], 30);
    sim.advance_answering(20_000, &[s]);
    let fresh = token("42", sim.now, Some(3600));
    let reply = sim.command(s, json!({"id": 2, "refresh": {"token": fresh}}));
    assert_eq!(reply, json!({"id": 2, "refresh": {"expires": true, "ttl": 3600}}));
    sim.advance_answering(120_000, &[s]);
    assert!(!sim.is_closed(s), "{:?}", sim.closed);
    // The new expiry applies: exp + grace after the refresh.
    sim.advance_answering(3_600_000 - 120_000 + GRACE - 1, &[s]);
    assert!(!sim.is_closed(s));
    sim.advance_answering(1, &[s]);
    assert_eq!(sim.close_code(s), Some(3005));
}

#[test]
fn bidi_client_that_does_not_refresh_is_closed_3005() {
    let mut sim = Sim::new(&config());
    let s = sim.connect_ws(&token("42", sim.now, Some(30)));
    sim.advance_answering(30_000 + GRACE, &[s]);
    assert_eq!(sim.close_code(s), Some(3005));
    assert!(sim.take(s).iter().all(|f| f.value.get("push").is_none()), "WebSocket: no disconnect push");
}

#[test]
fn refresh_failures() {
    let mut sim = Sim::new(&config());
    // Another user's token → 3500.
    let a = sim.connect_ws(&token("42", sim.now, Some(30)));
    sim.frame(a, &json!({"id": 2, "refresh": {"token": token("43", sim.now, Some(60))}}).to_string());
    assert_eq!(sim.close_code(a), Some(3500));
    // An expired token → 3005.
    let b = sim.connect_ws(&token("42", sim.now, Some(30)));
    let stale = token("42", sim.now, Some(1));
    sim.advance_answering(2_000, &[b]);
    sim.frame(b, &json!({"id": 2, "refresh": {"token": stale}}).to_string());
    assert_eq!(sim.close_code(b), Some(3005));
    // Garbage → 3500; empty → 3501.
    let c = sim.connect_ws(&token("42", sim.now, Some(30)));
    sim.frame(c, r#"{"id":2,"refresh":{"token":"not.a.jwt"}}"#);
    assert_eq!(sim.close_code(c), Some(3500));
    let d = sim.connect_ws(&token("42", sim.now, Some(30)));
    sim.frame(d, r#"{"id":2,"refresh":{"token":""}}"#);
    assert_eq!(sim.close_code(d), Some(3501));
}

#[test]
fn expired_token_at_connect_uni_gets_disconnect_3005() {
    let mut sim = Sim::new(&config());
    let expired = token("42", sim.now, Some(1));
    sim.advance(1_000);
    for transport in [Transport::UniHttpStream, Transport::UniSse, Transport::UniWebsocket] {
        let s = sim.connect_uni(transport, json!({"token": expired}));
        assert_eq!(sim.close_code(s), Some(3005), "{transport:?}");
        assert_eq!(sim.take_values(s), vec![json!({"disconnect": {"code": 3005, "reason": "connection expired"}})]);
    }
    assert_eq!(sim.node.hub().num_sessions(), 0);
}

#[test]
fn expired_token_at_connect_bidi_gets_error_109_then_next_command_3501() {
    let mut sim = Sim::new(&config());
    let expired = token("42", sim.now, Some(1));
    sim.advance(1_000);
    let s = sim.connect_ws(&expired);
    let reply = sim.take_reply(s, 1);
    assert_eq!(reply["error"]["code"], 109, "{reply}");
    assert_eq!(reply["error"]["message"], "token expired");
    assert!(!sim.is_closed(s), "the SDK fetches a new token; the transport stays");
    // The connection is unusable after a failed connect.
    sim.frame(s, &json!({"id": 2, "connect": {"token": token("42", sim.now, Some(60))}}).to_string());
    assert_eq!(sim.close_code(s), Some(3501));
}

#[test]
fn invalid_tokens_and_missing_credentials() {
    let mut sim = Sim::new(&config());
    let forged = shared::auth::issue_hs256("another-secret", &json!({"sub": "42"}));
    let s = sim.connect_ws(&forged);
    assert_eq!(sim.close_code(s), Some(3500));
    let u = sim.connect_uni(Transport::UniHttpStream, json!({"token": forged}));
    assert_eq!(sim.close_code(u), Some(3500));
    assert_eq!(sim.take_values(u)[0]["disconnect"]["code"], 3500);
    // No token and no anonymous access → 3501.
    let anon = sim.connect_uni(Transport::UniHttpStream, json!({}));
    assert_eq!(sim.close_code(anon), Some(3501));
    let anon_ws = sim.open(shared::hub::Transport::Websocket(shared::protocol::Encoding::Json));
    sim.frame(anon_ws, r#"{"id":1,"connect":{}}"#);
    assert_eq!(sim.close_code(anon_ws), Some(3501));
}

#[test]
fn token_nbf_in_the_future_is_invalid() {
    let mut sim = Sim::new(&config());
    let t = shared::auth::issue_hs256(SECRET, &json!({"sub": "1", "nbf": sim.now.as_secs() + 60}));
    let s = sim.connect_ws(&t);
    assert_eq!(sim.close_code(s), Some(3500), "a token not valid yet is invalid");
    sim.advance(60_000);
    let later = sim.connect_ws(&t);
    assert!(sim.take_reply(later, 1).get("connect").is_some());
}

fn sub_token(user: &str, channel: &str, now: shared::time::Timestamp, exp_in_secs: u64) -> String {
    shared::auth::issue_hs256(SECRET, &json!({"sub": user, "channel": channel, "exp": now.as_secs() + exp_in_secs}))
}

#[test]
fn subscription_token_expiry_closes_3006_unless_refreshed() {
    let mut sim = Sim::new(&config());
    let lazy = sim.connect_ws(&token("42", sim.now, None));
    let diligent = sim.connect_ws(&token("42", sim.now, None));
    for s in [lazy, diligent] {
        let t = sub_token("42", "$room", sim.now, 30);
        let reply = sim.command(s, json!({"id": 2, "subscribe": {"channel": "$room", "token": t}}));
        assert_eq!(reply["subscribe"], json!({"expires": true, "ttl": 30}), "{reply}");
    }
    sim.advance_answering(20_000, &[lazy, diligent]);
    let t = sub_token("42", "$room", sim.now, 600);
    let reply = sim.command(diligent, json!({"id": 3, "sub_refresh": {"channel": "$room", "token": t}}));
    assert_eq!(reply, json!({"id": 3, "sub_refresh": {"expires": true, "ttl": 600}}));
    sim.advance_answering(35_000 - 1, &[lazy, diligent]);
    assert!(!sim.is_closed(lazy));
    sim.advance_answering(1, &[lazy, diligent]);
    assert_eq!(sim.close_code(lazy), Some(3006));
    assert!(!sim.is_closed(diligent));
    // sub_refresh for a channel not subscribed → 103; a token for another channel → 3500.
    let t = sub_token("42", "$other", sim.now, 600);
    let reply = sim.command(diligent, json!({"id": 4, "sub_refresh": {"channel": "$other", "token": t}}));
    assert_eq!(reply["error"]["code"], 103);
    sim.frame(diligent, &json!({"id": 5, "sub_refresh": {"channel": "$room", "token": t}}).to_string());
    assert_eq!(sim.close_code(diligent), Some(3500));
}
