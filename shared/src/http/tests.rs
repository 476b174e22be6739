use super::*;

fn config(json: &str) -> Config {
    let c: Config = serde_json::from_str(json).unwrap();
    c.validate().unwrap();
    c
}

fn run(c: &Config, method: &str, target: &str, headers: &[(&str, &str)]) -> Routed {
    let endpoints = Endpoints::new(c).unwrap();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    decide(c, &endpoints, &Request { method, path, query, headers: &headers })
}

fn answer(r: Routed) -> Answer {
    match r.decision {
        Decision::Answer(a) => a,
        other => panic!("expected an answer, got {other:?}"),
    }
}

const ALL: &str = r#"{"uni_sse": true, "uni_http_stream": true, "uni_websocket": true, "sse": true, "http_stream": true,
    "api_key": "secret", "allowed_origins": ["https://ok.example"]}"#;

#[test]
fn default_paths_find_every_endpoint() {
    let c = config(ALL);
    let e = Endpoints::new(&c).unwrap();
    for (path, endpoint) in [
        ("/connection/websocket", Endpoint::Websocket),
        ("/connection/http_stream", Endpoint::HttpStream),
        ("/connection/sse", Endpoint::Sse),
        ("/connection/uni_http_stream", Endpoint::UniHttpStream),
        ("/connection/uni_sse", Endpoint::UniSse),
        ("/connection/uni_websocket", Endpoint::UniWebsocket),
        ("/emulation", Endpoint::Emulation),
        ("/health", Endpoint::Health),
        ("/api/publish", Endpoint::Api),
    ] {
        assert_eq!(e.find(path).map(|(e, _)| e), Some(endpoint), "{path}");
    }
    assert_eq!(e.find("/api/publish"), Some((Endpoint::Api, "publish")));
    assert_eq!(e.find("/api"), Some((Endpoint::Api, "")));
    assert_eq!(e.find("/apix"), None);
    assert_eq!(e.find("/connection/websocket/"), None);
}

#[test]
fn moved_paths_replace_the_defaults() {
    let c = config(
        r#"{"uni_sse": true, "uni_sse_handler_prefix": "/u/sse", "websocket_handler_prefix": "/ws/",
            "api_handler_prefix": "/srv/api", "health_handler_prefix": "/up"}"#,
    );
    let e = Endpoints::new(&c).unwrap();
    assert_eq!(e.find("/u/sse").map(|f| f.0), Some(Endpoint::UniSse));
    assert_eq!(e.find("/ws").map(|f| f.0), Some(Endpoint::Websocket));
    assert_eq!(e.find("/srv/api/publish"), Some((Endpoint::Api, "publish")));
    assert_eq!(e.find("/up").map(|f| f.0), Some(Endpoint::Health));
    for old in ["/connection/uni_sse", "/connection/websocket", "/api/publish", "/health"] {
        assert_eq!(e.find(old), None, "{old}");
    }
}

#[test]
fn bad_or_shared_paths_are_refused_naming_the_key() {
    let mut c = Config { sse: true, sse_handler_prefix: "sse".into(), ..Config::default() };
    assert!(c.validate().unwrap_err().to_string().contains("sse_handler_prefix"));
    c.sse_handler_prefix = "/connection/websocket".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("sse_handler_prefix") && e.contains("websocket_handler_prefix"), "{e}");
    // A disabled endpoint may keep any well-formed path.
    c.sse = false;
    c.validate().unwrap();
    c.api_handler_prefix = "/connection".into();
    assert!(c.validate().unwrap_err().to_string().contains("api_handler_prefix"));
}

#[test]
fn api_key_checks() {
    let c = config(ALL);
    let ok = |h: &[(&str, &str)], target: &str| matches!(run(&c, "POST", target, h).decision, Decision::Api(_));
    assert!(ok(&[("X-API-Key", "secret")], "/api/info"));
    assert!(ok(&[("authorization", "apikey secret")], "/api/info"));
    assert!(ok(&[], "/api/info?api_key=secret"));
    assert!(!ok(&[("x-api-key", "secre")], "/api/info"));
    assert!(!ok(&[("authorization", "Bearer secret")], "/api/info"));
    assert!(!ok(&[], "/api/info"));
    assert_eq!(answer(run(&c, "POST", "/api/info", &[])).status, 401);
    let a = answer(run(&c, "GET", "/api/info", &[]));
    assert_eq!((a.status, a.headers[1].clone()), (405, ("allow", "POST".to_owned())));
    let Decision::Api(call) =
        run(&c, "POST", "/api", &[("x-api-key", "secret"), ("X-Centrifugo-Error-Mode", "transport")]).decision
    else {
        panic!()
    };
    assert_eq!((call.method.as_str(), call.transport_errors, call.body.too_large().status), ("", true, 400));
}

#[test]
fn origins_and_cors() {
    let c = config(ALL);
    assert_eq!(answer(run(&c, "GET", "/health", &[("origin", "https://evil.example")])).status, 403);
    let r = run(&c, "GET", "/nowhere", &[("origin", "https://ok.example")]);
    assert_eq!(r.cors()[0], ("access-control-allow-origin", "https://ok.example".to_owned()));
    assert_eq!(answer(r).status, 404);
    let r = run(
        &c,
        "OPTIONS",
        "/connection/uni_http_stream",
        &[("origin", "https://ok.example"), ("access-control-request-headers", "x-a")],
    );
    assert_eq!(r.cors().len(), 3);
    let a = answer(r);
    assert_eq!(a.status, 204);
    assert!(a.headers.contains(&("access-control-allow-headers", "x-a".to_owned())));
    assert!(run(&c, "GET", "/health", &[]).cors().is_empty());
}

#[test]
fn streams() {
    let c = config(ALL);
    let Decision::Stream(s) = run(&c, "GET", "/connection/uni_sse?cf_connect=%7B%7D&last_event_id=x", &[]).decision
    else {
        panic!()
    };
    assert_eq!((s.transport, s.last_event_id.as_deref()), (Transport::UniSse, Some("x")));
    assert_eq!(&s.prelude[..], format!("\r\nretry: {SSE_RETRY_MS}\n\n").as_bytes());
    assert!(matches!(s.input, StreamInput::Ready(FirstInput::Connect(_))));
    let a = answer(run(&c, "GET", "/connection/uni_sse?cf_connect=%7B", &[]));
    assert!(a.status == 400 && a.body.starts_with("cf_connect: "), "{a:?}");
    let Decision::Stream(s) = run(&c, "POST", "/connection/uni_http_stream", &[]).decision else { panic!() };
    let StreamInput::Body(body) = s.input else { panic!() };
    assert_eq!((body.limit, body.too_large().status), (65536, 413));
    assert_eq!(FirstInput::from_body(s.transport, Bytes::from_static(b"{")).unwrap_err().status, 400);
    assert_eq!(answer(run(&c, "GET", "/connection/uni_http_stream", &[])).status, 405);
    assert_eq!(answer(run(&c, "GET", "/connection/sse", &[])).status, 400);
    let Decision::Stream(s) =
        run(&c, "POST", "/connection/http_stream", &[("content-type", "application/octet-stream")]).decision
    else {
        panic!()
    };
    assert_eq!((s.transport, s.content_type), (Transport::HttpStream(Encoding::Protobuf), "application/octet-stream"));
}

#[test]
fn upgrades() {
    let c = config(ALL);
    let ws = [("upgrade", "websocket"), ("sec-websocket-key", "k"), ("sec-websocket-version", "13")];
    let Decision::Upgrade(u) = run(&c, "GET", "/connection/uni_websocket?cf_connect=%7B%7D", &ws).decision else {
        panic!()
    };
    assert!(u.connect.is_some() && u.transport == Transport::UniWebsocket);
    let mut proto = ws.to_vec();
    proto.push(("sec-websocket-protocol", "centrifuge-protobuf"));
    let Decision::Upgrade(u) = run(&c, "GET", "/connection/websocket", &proto).decision else { panic!() };
    assert_eq!((u.transport, u.protocol), (Transport::Websocket(Encoding::Protobuf), Some("centrifuge-protobuf")));
    let a = answer(run(&c, "GET", "/connection/websocket", &ws[..2]));
    assert_eq!((a.status, a.headers.last().cloned()), (426, Some(("sec-websocket-version", "13".to_owned()))));
    assert_eq!(answer(run(&c, "GET", "/connection/websocket", &[])).status, 400);
    assert_eq!(answer(run(&c, "POST", "/connection/websocket", &ws)).status, 405);
    assert_eq!(answer(run(&c, "GET", "/connection/uni_websocket?cf_connect=x", &ws)).status, 400);
}

#[test]
fn content_lengths() {
    let h = |v: &[&'static str]| v.iter().map(|v| ("content-length", v.as_bytes())).collect::<Vec<_>>();
    assert_eq!(content_length(&h(&[])).unwrap(), None);
    assert_eq!(content_length(&h(&["5", " 5 "])).unwrap(), Some(5));
    for bad in [&["+5"][..], &["-1"], &["5, 5"], &["5", "6"], &[""]] {
        assert_eq!(content_length(&h(bad)).unwrap_err().status, 400, "{bad:?}");
    }
}

#[test]
fn metrics_only_when_prometheus_is_on_and_say_whether_the_key_came() {
    let off = config(r#"{"api_key": "secret"}"#);
    assert_eq!(answer(run(&off, "GET", "/metrics", &[])).status, 404);
    let on = config(r#"{"api_key": "secret", "prometheus": true}"#);
    let authorized = |r: Routed| match r.decision {
        Decision::Metrics { authorized } => authorized,
        other => panic!("expected metrics, got {other:?}"),
    };
    assert!(!authorized(run(&on, "GET", "/metrics", &[])));
    assert!(!authorized(run(&on, "GET", "/metrics", &[("x-api-key", "wrong")])));
    assert!(authorized(run(&on, "GET", "/metrics", &[("x-api-key", "secret")])));
    assert!(authorized(run(&on, "GET", "/metrics?api_key=secret", &[])));
    assert_eq!(answer(run(&on, "POST", "/metrics", &[])).status, 405);
    // Its path is taken: no other endpoint may move onto it.
    let clash: Config = serde_json::from_str(r#"{"prometheus": true, "health_handler_prefix": "/metrics"}"#).unwrap();
    assert!(clash.validate().unwrap_err().to_string().contains("/metrics"));
}
