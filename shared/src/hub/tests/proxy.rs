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
