//! Proxy calls: every answer, failure and timeout reaches only the session that made the
//! call, and a session that ends takes its pending calls with it.

use super::*;
use crate::proxy::{ProxyKind, ProxyOutcome};

fn proxy_config() -> Arc<Config> {
    config(json!({
        "proxy_connect_endpoint": "http://127.0.0.1:9/connect",
        "proxy_rpc_endpoint": "http://127.0.0.1:9/rpc",
        "proxy_subscribe_endpoint": "http://127.0.0.1:9/subscribe",
        "proxy_publish_endpoint": "http://127.0.0.1:9/publish",
        "proxy_refresh_endpoint": "http://127.0.0.1:9/refresh",
        "proxy_http_headers": ["Cookie"],
        "proxy_static_http_headers": {"X-Static": "1"},
        "proxy_include_connection_meta": true,
        "namespaces": [{"name": "px", "proxy_subscribe": true, "proxy_publish": true}],
    }))
}

fn ok(body: Value) -> ProxyOutcome {
    ProxyOutcome::Answer { status: 200, body: body.to_string().into() }
}

impl Rig {
    /// Opens a WebSocket session with these request headers and sends a token-less connect.
    fn ws_proxied(&mut self, id: u64, headers: Vec<(String, String)>) -> SessionId {
        let s = SessionId(id);
        self.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
        self.hub.handle_headers(s, headers);
        self.frame(s, json!({"id": 1, "connect": {"data": {"hello": 1}, "name": "js"}}));
        s
    }

    fn answer(&mut self, outcome: ProxyOutcome, now: Timestamp) -> crate::proxy::ProxyRequest {
        let request = self.proxied.pop_front().expect("a proxy call");
        self.hub.handle_proxy_reply(request.id, outcome, now);
        self.serve_all();
        request
    }
}

#[test]
fn a_token_less_connect_asks_the_backend_with_the_allowed_headers() {
    let mut rig = Rig::new(proxy_config());
    let cookie = vec![("cookie".to_owned(), "sid=1".to_owned())];
    let s = rig.ws_proxied(1, cookie);
    assert!(rig.take(s).is_empty(), "no reply before the backend answers");
    let call = &rig.proxied[0];
    assert_eq!(call.kind, ProxyKind::Connect);
    assert_eq!(call.endpoint, "http://127.0.0.1:9/connect");
    assert!(call.headers.contains(&("cookie".into(), "sid=1".into())));
    assert!(call.headers.contains(&("x-static".into(), "1".into())));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["transport"], "websocket");
    assert_eq!(body["protocol"], "json");
    assert_eq!(body["data"], json!({"hello": 1}));
    assert_eq!(body["name"], "js");
    let answer = json!({"result": {"user": "42", "info": {"n": "a"}, "data": {"welcome": true}, "meta": {"m": 1}}});
    rig.answer(ok(answer), T0);
    let got = rig.take(s);
    assert_eq!(got[0]["connect"]["data"], json!({"welcome": true}), "{got:?}");
    // Later calls carry the user and the meta.
    rig.frame(s, json!({"id": 2, "rpc": {"method": "m", "data": {"x": 1}}}));
    let call = rig.proxied.pop_front().unwrap();
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!((body["user"].as_str(), &body["meta"], &body["method"]), (Some("42"), &json!({"m": 1}), &json!("m")));
    rig.hub.handle_proxy_reply(call.id, ok(json!({"result": {"data": {"y": 2}}})), T0);
    rig.pump();
    assert_eq!(rig.take(s), vec![json!({"id": 2, "rpc": {"data": {"y": 2}}})]);
}

#[test]
fn backend_errors_disconnects_and_failures_reach_only_their_session() {
    let mut rig = Rig::new(proxy_config());
    let bystander = rig.ws(9, "9");
    rig.take(bystander);
    // error: the connect error reply.
    let a = rig.ws_proxied(1, vec![]);
    rig.answer(ok(json!({"error": {"code": 1000, "message": "nope"}})), T0);
    assert_eq!(rig.take(a), vec![json!({"id": 1, "error": {"code": 1000, "message": "nope"}})]);
    // disconnect: the close.
    let b = rig.ws_proxied(2, vec![]);
    rig.answer(ok(json!({"disconnect": {"code": 4501, "reason": "go away"}})), T0);
    assert!(rig.closed.contains(&(b, 4501)));
    // malformed, non-2xx, out-of-range codes, refused: a temporary internal error, logged.
    for (i, outcome) in [
        ok(json!([1])),
        ProxyOutcome::Answer { status: 502, body: Bytes::new() },
        ok(json!({"error": {"code": 3000, "message": "x"}})),
        ProxyOutcome::Failed("connection refused".into()),
    ]
    .into_iter()
    .enumerate()
    {
        let s = rig.ws_proxied(10 + i as u64, vec![]);
        rig.answer(outcome, T0);
        let got = rig.take(s);
        assert_eq!(got[0]["error"]["code"], 100, "{got:?}");
        assert_eq!(got[0]["error"]["temporary"], true);
    }
    assert_eq!(rig.proxy_failures.len(), 4, "{:?}", rig.proxy_failures);
    // The bystander kept going all along.
    rig.frame(bystander, json!({"id": 5, "rpc": {"method": "m"}}));
    assert_eq!(rig.proxied.len(), 1, "its rpc went to the backend");
}

#[test]
fn a_slow_backend_times_out_and_its_late_answer_is_dropped() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws_proxied(1, vec![]);
    let call = rig.proxied.pop_front().unwrap();
    assert_eq!(rig.hub.poll_timeout(), Some(T0.after_ms(1000)), "the connect timeout (1 s) is the next deadline");
    rig.hub.handle_timeout(T0.after_ms(1000));
    rig.pump();
    assert_eq!(rig.take(s)[0]["error"]["code"], 100);
    assert!(rig.proxy_failures[0].1.contains("within 1000 ms"));
    rig.hub.handle_proxy_reply(call.id, ok(json!({"result": {"user": "1"}})), T0.after_ms(2000));
    rig.pump();
    assert!(rig.take(s).is_empty(), "a late answer changes nothing");
    // A uni client gets 3004 instead (reconnect allowed).
    let u = SessionId(2);
    rig.hub.handle_open(u, Transport::UniHttpStream, T0);
    rig.hub.handle_connect(u, ConnectRequest::default(), None, T0);
    rig.pump();
    rig.answer(ProxyOutcome::Failed("refused".into()), T0);
    assert!(rig.closed.contains(&(u, 3004)));
}

#[test]
fn a_session_that_ends_while_its_call_is_pending_leaves_nothing() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws_proxied(1, vec![]);
    let call = rig.proxied.pop_front().unwrap();
    rig.hub.handle_closed(s, T0);
    assert!(rig.hub.proxies.is_empty());
    assert_eq!(rig.hub.poll_timeout(), None, "its timer is gone too");
    rig.hub.handle_proxy_reply(call.id, ok(json!({"result": {"user": "1"}})), T0);
    rig.pump();
    assert!(rig.sent.is_empty() && rig.hub.num_sessions() == 0);
}

#[test]
fn subscribe_and_publish_proxies_decide_and_may_rewrite() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws(1, "1");
    rig.take(s);
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "px:a"}}));
    rig.frame(s, json!({"id": 3, "publish": {"channel": "px:a", "data": {"v": 1}}}));
    assert_eq!(rig.proxied.len(), 1, "the publish waits for the subscribe");
    let call = rig.answer(ok(json!({"result": {"info": {"c": 1}}})), T0);
    assert_eq!(call.kind, ProxyKind::Subscribe);
    assert_eq!(rig.take(s)[0]["id"], 2);
    let call = rig.answer(ok(json!({"result": {"data": {"v": "rewritten"}}})), T0);
    assert_eq!(call.kind, ProxyKind::Publish);
    let got = rig.take(s);
    assert!(got.iter().any(|v| v["push"]["pub"]["data"] == json!({"v": "rewritten"})), "{got:?}");
    assert!(got.iter().any(|v| v["id"] == 3 && v.get("error").is_none()), "{got:?}");
    // A refused subscribe: the backend's error, the session goes on.
    rig.frame(s, json!({"id": 4, "subscribe": {"channel": "px:b"}}));
    rig.answer(ok(json!({"error": {"code": 403, "message": "forbidden"}})), T0);
    assert_eq!(rig.take(s), vec![json!({"id": 4, "error": {"code": 403, "message": "forbidden"}})]);
    // Channels outside the namespace do not ask.
    rig.frame(s, json!({"id": 5, "subscribe": {"channel": "plain"}}));
    assert!(rig.proxied.is_empty());
}

#[test]
fn rpc_without_an_rpc_proxy_is_not_available() {
    let mut rig = Rig::new(history_config());
    let s = rig.ws(1, "1");
    rig.take(s);
    rig.frame(s, json!({"id": 2, "rpc": {"method": "m"}}));
    assert_eq!(rig.take(s), vec![json!({"id": 2, "error": {"code": 108, "message": "not available"}})]);
}

#[test]
fn the_refresh_proxy_extends_or_ends_a_connection() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws_proxied(1, vec![]);
    let at = T0.as_millis() / 1000 + 10;
    rig.answer(ok(json!({"result": {"user": "7", "expire_at": at}})), T0);
    let got = rig.take(s);
    assert!(got[0]["connect"].get("expires").is_none(), "the server refreshes: {got:?}");
    let t1 = Timestamp(at * 1000);
    rig.hub.handle_timeout(t1);
    rig.pump();
    let call = rig.answer(ok(json!({"result": {"expire_at": at + 10}})), t1);
    assert_eq!(call.kind, ProxyKind::Refresh);
    assert!(rig.closed.is_empty());
    let t2 = Timestamp((at + 10) * 1000);
    rig.hub.handle_timeout(t2);
    rig.pump();
    rig.answer(ok(json!({"result": {"expired": true}})), t2);
    assert!(rig.closed.contains(&(s, 3005)));
}

#[test]
fn forwarded_headers_and_meta_survive_a_hub_rebuilt_from_its_snapshot() {
    let config = proxy_config();
    let mut rig = Rig::new(config.clone());
    let s = rig.ws_proxied(1, vec![("cookie".to_owned(), "sid=7".to_owned())]);
    rig.answer(ok(json!({"result": {"user": "7", "meta": {"m": 2}}})), T0);
    let attachment = serde_json::to_string(&rig.hub.session_snapshot(s).unwrap()).unwrap();
    rig.hub = Hub::new(config, node_info(), 99, T0).unwrap();
    rig.hub.handle_restore(s, serde_json::from_str(&attachment).unwrap(), &BTreeMap::new(), T0);
    rig.serve_all();
    rig.frame(s, json!({"id": 2, "rpc": {"method": "m"}}));
    let call = rig.proxied.pop_front().expect("the rpc goes to the backend");
    assert!(call.headers.contains(&("cookie".into(), "sid=7".into())));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["meta"], json!({"m": 2}));
}

mod untrusted_answers {
    use super::*;
    use proptest::prelude::*;

    fn answer_body(n: i64, code: u32, k: String) -> Bytes {
        let v = match code % 4 {
            0 => {
                json!({"result": {"user": k, "expire_at": n, "data": {"x": n}, "b64data": k, "info": null, "channels": [k]}})
            }
            1 => json!({"error": {"code": code, "message": k}}),
            2 => json!({"disconnect": {"code": code, "reason": k}}),
            _ => {
                json!({"result": {"expired": n % 2 == 0, "expire_at": n, "b64info": k, "skip_history": true, "tags": {"t": k}}})
            }
        };
        Bytes::from(v.to_string())
    }

    fn outcome() -> impl Strategy<Value = ProxyOutcome> {
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
            "[a-z0-9:,{}. -]{0,48}".prop_map(|s| Bytes::from(s.into_bytes())),
            (any::<i64>(), any::<u32>(), "[a-z]{0,3}").prop_map(|(n, code, k)| answer_body(n, code, k)),
        ];
        prop_oneof![
            (any::<u16>(), body).prop_map(|(status, body)| ProxyOutcome::Answer { status: 200 + status % 400, body }),
            "[a-z ]{0,20}".prop_map(ProxyOutcome::Failed),
        ]
    }

    proptest! {
        /// Whatever the backend answers, to whichever call: no panic, the command is answered
        /// or the session closed, and when every session is gone nothing is left.
        #[test]
        fn no_backend_answer_wedges_or_leaks(outcomes in proptest::collection::vec(outcome(), 1..12)) {
            let mut rig = Rig::new(proxy_config());
            let mut now = T0;
            let mut sessions = Vec::new();
            for (i, outcome) in outcomes.into_iter().enumerate() {
                let id = i as u64 + 1;
                let s = rig.ws_proxied(id, vec![]);
                sessions.push(s);
                // A connected session also asks for the other kinds.
                if let Some(other) = sessions.iter().copied().find(|o| rig.hub.sessions.get(o).is_some_and(|x| x.state == State::Connected)) {
                    let cmd = match i % 4 {
                        0 => json!({"id": 10 + id, "rpc": {"method": "m"}}),
                        1 => json!({"id": 10 + id, "subscribe": {"channel": format!("px:c{id}")}}),
                        2 => json!({"id": 10 + id, "publish": {"channel": "px:p", "data": {"a": 1}}}),
                        _ => json!({"id": 10 + id, "rpc": {"method": "n", "data": {"b": 2}}}),
                    };
                    rig.frame(other, cmd);
                }
                while let Some(call) = rig.proxied.pop_front() {
                    rig.hub.handle_proxy_reply(call.id, outcome.clone(), now);
                    rig.serve_all();
                }
                now = now.after_ms(500);
                rig.hub.handle_timeout(now);
                rig.serve_all();
            }
            // Far in the future: every timer, refresh and pending call has run out.
            for _ in 0..4 {
                now = now.after_ms(120_000);
                rig.hub.handle_timeout(now);
                while let Some(call) = rig.proxied.pop_front() {
                    rig.hub.handle_proxy_reply(call.id, ProxyOutcome::Failed("gone".into()), now);
                }
                rig.serve_all();
            }
            for s in sessions {
                rig.hub.handle_closed(s, now);
            }
            rig.serve_all();
            prop_assert!(rig.hub.proxies.is_empty());
            prop_assert_eq!(rig.hub.num_sessions(), 0);
            prop_assert_eq!(rig.hub.poll_timeout(), None);
        }
    }
}

#[test]
fn a_connect_answer_already_expired_is_error_110() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws_proxied(1, vec![]);
    rig.answer(ok(json!({"result": {"user": "1", "expire_at": T0.as_millis() / 1000 - 1}})), T0);
    assert_eq!(rig.take(s), vec![json!({"id": 1, "error": {"code": 110, "message": "expired"}})]);
}

#[test]
fn commands_behind_a_refused_proxied_connect_meet_the_refusal() {
    let mut rig = Rig::new(proxy_config());
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    rig.hub.handle_frame(s, b"{\"id\":1,\"connect\":{}}\n{\"id\":2,\"rpc\":{\"method\":\"m\"}}", T0);
    rig.pump();
    assert_eq!(rig.proxied.len(), 1, "the rpc waits for the connect");
    rig.answer(ok(json!({"error": {"code": 1000, "message": "no"}})), T0);
    assert_eq!(rig.take(s)[0]["error"]["code"], 1000);
    assert!(rig.closed.contains(&(s, 3501)), "{:?}", rig.closed);
    assert!(rig.proxied.is_empty());
}

/// A backend that keeps answering refreshes with an `expire_at` already past must not be
/// asked again every second forever: the credentials are expired, as in Centrifugo.
#[test]
fn a_refresh_answer_already_expired_ends_the_connection_instead_of_asking_again() {
    let mut rig = Rig::new(proxy_config());
    let s = rig.ws_proxied(1, vec![]);
    let at = T0.as_millis() / 1000 + 10;
    rig.answer(ok(json!({"result": {"user": "7", "expire_at": at}})), T0);
    rig.take(s);
    let t1 = Timestamp(at * 1000);
    rig.hub.handle_timeout(t1);
    rig.pump();
    let call = rig.answer(ok(json!({"result": {"expire_at": at - 5}})), t1);
    assert_eq!(call.kind, ProxyKind::Refresh);
    assert!(rig.closed.contains(&(s, 3005)), "{:?}", rig.closed);
    rig.hub.handle_timeout(t1.after_ms(60_000));
    rig.pump();
    assert!(rig.proxied.is_empty(), "no further refresh call");
}

#[test]
fn subscribe_and_sub_refresh_answers_already_expired_are_refused() {
    let mut config = (*proxy_config()).clone();
    config.proxy_sub_refresh_endpoint = "http://127.0.0.1:9/sub_refresh".into();
    config.namespaces[0].options.proxy_sub_refresh = true;
    let mut rig = Rig::new(Arc::new(config));
    let s = rig.ws(1, "1");
    rig.take(s);
    let past = T0.as_millis() / 1000 - 1;
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "px:a"}}));
    rig.answer(ok(json!({"result": {"expire_at": past}})), T0);
    assert_eq!(rig.take(s), vec![json!({"id": 2, "error": {"code": 110, "message": "expired"}})]);
    assert!(rig.proxied.is_empty(), "no sub_refresh call for a subscription never made");
    // A subscription refreshed into the past ends as expired, without a call every second.
    let at = T0.as_millis() / 1000 + 10;
    rig.frame(s, json!({"id": 3, "subscribe": {"channel": "px:b"}}));
    rig.answer(ok(json!({"result": {"expire_at": at}})), T0);
    assert_eq!(rig.take(s)[0]["id"], 3);
    let t1 = Timestamp(at * 1000);
    rig.hub.handle_timeout(t1);
    rig.pump();
    let call = rig.answer(ok(json!({"result": {"expire_at": at - 5}})), t1);
    assert_eq!(call.kind, ProxyKind::SubRefresh);
    assert!(rig.closed.contains(&(s, 3006)), "{:?}", rig.closed);
    rig.hub.handle_timeout(t1.after_ms(60_000));
    rig.pump();
    assert!(rig.proxied.is_empty(), "no further sub_refresh call");
}

/// A namespace whose subscriptions the backend decides (`proxy_subscribe`) cannot be entered
/// by naming it in the connect command's `subs`, even where it also lets clients subscribe.
#[test]
fn connect_subs_do_not_bypass_the_subscribe_proxy() {
    let mut config = (*proxy_config()).clone();
    config.namespaces[0].options.allow_subscribe_for_client = true;
    let mut rig = Rig::new(Arc::new(config));
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    let frame = json!({"id": 1, "connect": {"token": token("1"), "subs": {"px:secret": {}}}}).to_string();
    rig.hub.handle_frame(s, frame.as_bytes(), T0);
    rig.serve_all();
    let got = rig.take(s);
    assert!(got[0]["connect"].get("subs").is_none_or(|subs| subs.get("px:secret").is_none()), "{got:?}");
    // Asked for, it goes to the backend.
    rig.frame(s, json!({"id": 2, "subscribe": {"channel": "px:secret"}}));
    assert_eq!(rig.proxied.len(), 1, "the subscribe proxy decides");
}

#[test]
fn a_token_goes_to_the_backend_only_when_configured_so() {
    let mut rig = Rig::new(proxy_config());
    let s = SessionId(1);
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    rig.frame(s, json!({"id": 1, "connect": {"token": token("7")}}));
    assert!(rig.proxied.is_empty(), "a token connects without the backend");
    assert!(rig.take(s)[0]["connect"]["client"].is_string());

    let mut always = proxy_config().as_ref().clone();
    always.proxy_connect_always = true;
    let mut rig = Rig::new(Arc::new(always));
    rig.hub.handle_open(s, Transport::Websocket(Encoding::Json), T0);
    rig.frame(s, json!({"id": 1, "connect": {"token": token("7")}}));
    assert!(rig.take(s).is_empty(), "no reply before the backend answers");
    assert_eq!(rig.proxied[0].kind, ProxyKind::Connect);
    rig.answer(ok(json!({"result": {"user": "backend-user"}})), T0);
    assert!(rig.take(s)[0]["connect"]["client"].is_string());
}

#[test]
fn always_asking_needs_a_connect_endpoint() {
    let Err(err) = Config::from_json_str(r#"{"proxy_connect_always": true}"#, Vec::new()) else {
        panic!("a config asking always with no endpoint loaded");
    };
    let err = err.to_string();
    assert!(err.contains("proxy_connect_always"), "{err}");
}
