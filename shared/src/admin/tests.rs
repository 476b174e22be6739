use super::*;
use crate::http::{decide, Decision, Request};

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> Config {
    Config {
        admin: true,
        admin_password: "pass word".into(),
        admin_secret: "admin-secret".into(),
        token_hmac_secret_key: "hmac".into(),
        ..Config::default()
    }
}

fn login(guard: &mut LoginGuard, c: &Config, who: &str, body: &str, now: Timestamp) -> Answer {
    guard.login(c, who, Some("application/x-www-form-urlencoded"), body.as_bytes(), now)
}

#[test]
fn tokens_verify_until_they_expire() {
    let token = issue_token("s", NOW);
    assert_eq!(verify_token("s", &token, NOW), Ok(()));
    assert_eq!(verify_token("s", &token, NOW.after_ms(TOKEN_TTL_MS - 1000)), Ok(()));
    assert_eq!(verify_token("s", &token, NOW.after_ms(TOKEN_TTL_MS)), Err(TokenRefusal::Expired));
    assert_eq!(verify_token("other", &token, NOW), Err(TokenRefusal::BadSignature));
    assert_eq!(verify_token("", &token, NOW), Err(TokenRefusal::BadSignature));
}

#[test]
fn forged_and_garbage_tokens_are_refused() {
    let token = issue_token("s", NOW);
    let (expiry, tag) = token.split_once('.').unwrap();
    let later = format!("{}.{tag}", expiry.parse::<u64>().unwrap() + 1000);
    assert_eq!(verify_token("s", &later, NOW), Err(TokenRefusal::BadSignature));
    for bad in ["", ".", "x.y", "123", "123.", "-1.AAAA", "1.@@@", "99999999999999999999999.AA"] {
        assert!(verify_token("s", bad, NOW).is_err(), "{bad:?}");
    }
    let long = format!("1.{}", "A".repeat(10_000));
    assert_eq!(verify_token("s", &long, NOW), Err(TokenRefusal::Malformed));
}

#[test]
fn right_password_gives_a_token_wrong_one_401_then_slowed() {
    let c = config();
    let mut guard = LoginGuard::default();
    let ok = login(&mut guard, &c, "1.2.3.4", "password=pass+word", NOW);
    assert_eq!(ok.status, 200, "{ok:?}");
    let token: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(verify_token(&c.admin_secret, token["token"].as_str().unwrap(), NOW), Ok(()));
    let json = guard.login(&c, "1.2.3.4", Some("application/json"), br#"{"password":"pass word"}"#, NOW);
    assert_eq!(json.status, 200);

    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=nope", NOW).status, 401);
    // Right away again, even with the right password: wait.
    let slowed = login(&mut guard, &c, "1.2.3.4", "password=pass+word", NOW.after_ms(10));
    assert_eq!(slowed.status, 429);
    assert!(slowed.headers.contains(&("retry-after", "1".to_owned())), "{slowed:?}");
    // Another address is not slowed by it.
    assert_eq!(login(&mut guard, &c, "5.6.7.8", "password=pass+word", NOW.after_ms(10)).status, 200);
    // After the wait, the next failure doubles it.
    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=nope", NOW.after_ms(1000)).status, 401);
    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=pass+word", NOW.after_ms(2500)).status, 429);
    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=pass+word", NOW.after_ms(3000)).status, 200);
    // Success forgets the failures.
    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=nope", NOW.after_ms(3000)).status, 401);
    assert_eq!(login(&mut guard, &c, "1.2.3.4", "password=pass+word", NOW.after_ms(4000)).status, 200);
}

#[test]
fn delays_cap_and_bodies_without_password_are_400() {
    let c = config();
    let mut guard = LoginGuard::default();
    let mut now = NOW;
    for _ in 0..40 {
        assert_eq!(login(&mut guard, &c, "a", "password=x", now).status, 401);
        now = now.after_ms(MAX_DELAY_MS);
    }
    assert_eq!(login(&mut guard, &c, "a", "password=x", now.after_ms(1)).status, 401);
    for body in ["", "pass=1", "{", "{\"password\":1}", "\u{0}\u{ff}"] {
        assert_eq!(login(&mut guard, &c, "b", body, NOW).status, 400, "{body:?}");
    }
}

#[test]
fn the_guard_stays_bounded_and_many_addresses_hit_the_global_window() {
    let c = config();
    let mut guard = LoginGuard::default();
    let mut now = NOW;
    for i in 0..10_000u32 {
        // Spread out so that the global window does not stop them.
        now = now.after_ms(GLOBAL_WINDOW_MS / u64::from(GLOBAL_MAX_FAILURES) + 1);
        let who = format!("10.0.{}.{}-{}", i / 256, i % 256, "x".repeat(100));
        assert_eq!(login(&mut guard, &c, &who, "password=x", now).status, 401);
        assert!(guard.len() <= GUARD_ENTRIES);
    }
    let mut guard = LoginGuard::default();
    for i in 0..GLOBAL_MAX_FAILURES {
        assert_eq!(login(&mut guard, &c, &format!("n{i}"), "password=x", NOW).status, 401);
    }
    assert_eq!(login(&mut guard, &c, "fresh", "password=pass+word", NOW).status, 429);
    assert_eq!(login(&mut guard, &c, "fresh", "password=pass+word", NOW.after_ms(GLOBAL_WINDOW_MS)).status, 200);
}

#[test]
fn insecure_lets_anyone_in() {
    let c = Config { admin_insecure: true, admin_password: String::new(), admin_secret: String::new(), ..config() };
    let e = Endpoints::new(&c).unwrap();
    let mut guard = LoginGuard::default();
    assert_eq!(login(&mut guard, &c, "a", "password=", NOW).status, 200);
    let step = command(&c, &e, None, br#"{"method":"info","params":{}}"#, NOW).unwrap();
    assert!(matches!(step, Step::Run { ref command, .. } if matches!(**command, ApiCommand::Info)));
}

#[test]
fn the_api_needs_a_valid_token_and_a_command() {
    let c = config();
    let e = Endpoints::new(&c).unwrap();
    let token = issue_token(&c.admin_secret, NOW);
    let body = br#"{"method":"publish","params":{"channel":"news","data":{"a":1}}}"#;
    for bad in [None, Some(""), Some("junk"), Some(issue_token("other", NOW).as_str())] {
        let answer = command(&c, &e, bad, body, NOW).unwrap_err();
        assert_eq!(answer.status, 401, "{bad:?}");
    }
    assert_eq!(command(&c, &e, Some(&token), body, NOW.after_ms(TOKEN_TTL_MS)).unwrap_err().status, 401);
    let step = command(&c, &e, Some(&token), body, NOW).unwrap();
    assert!(
        matches!(step, Step::Run { ref method, ref command, .. } if method == "publish" && matches!(**command, ApiCommand::Publish(_)))
    );
    assert_eq!(command(&c, &e, Some(&token), b"nope", NOW).unwrap_err().status, 400);
    assert_eq!(command(&c, &e, Some(&token), br#"{"method":"publish","params":[1]}"#, NOW).unwrap_err().status, 400);
    let Step::Done(unknown) = command(&c, &e, Some(&token), br#"{"method":"nope"}"#, NOW).unwrap() else { panic!() };
    assert!(unknown.body.contains("\"error\""), "{unknown:?}");
}

#[test]
fn live_mints_tokens_the_hub_accepts() {
    let c = Config { token_audience: "aud".into(), ..config() };
    let e = Endpoints::new(&c).unwrap();
    let token = issue_token(&c.admin_secret, NOW);
    let Step::Done(answer) =
        command(&c, &e, Some(&token), br#"{"method":"live","params":{"channel":"news"}}"#, NOW).unwrap()
    else {
        panic!()
    };
    let v: Value = serde_json::from_str(&answer.body).unwrap();
    let r = &v["result"];
    assert_eq!(r["websocket"], "/connection/websocket");
    let keys = crate::auth::KeySet::new(&c.token_hmac_secret_key, "", "").unwrap();
    let verifier = crate::auth::TokenVerifier::new(keys, "aud", "", "");
    let claims = verifier.verify_connect(r["token"].as_str().unwrap(), NOW.as_millis()).unwrap();
    assert_eq!(claims.user, LIVE_USER);
    let sub = verifier.verify_subscribe(r["subscription_token"].as_str().unwrap(), NOW.as_millis()).unwrap();
    assert_eq!(sub.channel, "news");
    let Step::Done(bad) = command(&c, &e, Some(&token), br#"{"method":"live","params":{"channel":""}}"#, NOW).unwrap()
    else {
        panic!()
    };
    assert!(bad.body.contains("\"code\":107"), "{bad:?}");
}

fn route(c: &Config, method: &str, path: &str, headers: Vec<(&str, &str)>) -> Decision {
    let e = Endpoints::new(c).unwrap();
    decide(c, &e, &Request { method, path, query: None, headers: &headers }).decision
}

#[test]
fn endpoints_exist_only_when_admin_is_on() {
    let off = Config { admin: false, ..config() };
    for path in ["/", "/admin/auth", "/admin/api"] {
        let Decision::Answer(a) = route(&off, "POST", path, vec![]) else { panic!() };
        assert_eq!(a.status, 404, "{path}");
    }
    let on = config();
    let Decision::Answer(page) = route(&on, "GET", "/", vec![]) else { panic!() };
    assert_eq!((page.status, page.body.as_str()), (200, PAGE));
    assert!(matches!(route(&on, "POST", "/admin/auth", vec![]), Decision::AdminLogin(_)));
    let Decision::AdminApi(call) = route(&on, "POST", "/admin/api", vec![("Authorization", "token abc")]) else {
        panic!()
    };
    assert_eq!(call.token.as_deref(), Some("abc"));
    let Decision::Answer(a) = route(&on, "GET", "/admin/api", vec![]) else { panic!() };
    assert_eq!(a.status, 405);
    // Under a prefix.
    let moved = Config { admin_handler_prefix: "/ui/".into(), ..config() };
    for path in ["/ui", "/ui/"] {
        let Decision::Answer(a) = route(&moved, "GET", path, vec![]) else { panic!() };
        assert_eq!(a.status, 200, "{path}");
    }
    assert!(matches!(route(&moved, "POST", "/ui/admin/auth", vec![]), Decision::AdminLogin(_)));
    let Decision::Answer(a) = route(&moved, "GET", "/", vec![]) else { panic!() };
    assert_eq!(a.status, 404);
    let bad = Config { admin_handler_prefix: "ui".into(), ..config() };
    assert!(Endpoints::new(&bad).is_err());
    let clash = Config { health_handler_prefix: "/admin/api".into(), ..config() };
    assert!(Endpoints::new(&clash).is_err());
}

#[test]
fn the_page_origin_is_allowed_when_admin_is_on() {
    let on = config();
    let same = vec![("Origin", "http://rotor.example:8000"), ("Host", "rotor.example:8000")];
    assert!(matches!(route(&on, "POST", "/admin/auth", same.clone()), Decision::AdminLogin(_)));
    let other = vec![("Origin", "http://evil.example"), ("Host", "rotor.example:8000")];
    let Decision::Answer(a) = route(&on, "POST", "/admin/auth", other) else { panic!() };
    assert_eq!(a.status, 403);
    let off = Config { admin: false, ..config() };
    let Decision::Answer(a) = route(&off, "GET", "/connection/websocket", same) else { panic!() };
    assert_eq!(a.status, 403);
}

#[test]
fn config_needs_password_and_secret_unless_insecure() {
    let e = Config::from_json_str(r#"{"admin": true, "admin_password": "p"}"#, []).unwrap_err();
    assert!(e.to_string().contains("admin_secret"), "{e}");
    let e = Config::from_json_str(r#"{"admin": true, "admin_secret": "s"}"#, []).unwrap_err();
    assert!(e.to_string().contains("admin_password"), "{e}");
    Config::from_json_str(r#"{"admin": true, "admin_insecure": true}"#, []).unwrap();
    Config::from_json_str(r#"{"admin_password": "p"}"#, []).unwrap();
}
