//! The admin web UI's inputs (`shared::admin`): a login (client address, content type, body)
//! through one long-lived `LoginGuard`, and an admin API request (token, body) at a fuzzed
//! time. Never a panic; the guard stays within its bound; only a token signed with the secret
//! gets an API call through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

use shared::admin::{self, LoginGuard, GUARD_ENTRIES};
use shared::config::Config;
use shared::http::Endpoints;
use shared::Timestamp;

fn setup() -> &'static (Config, Endpoints, Mutex<LoginGuard>) {
    static S: OnceLock<(Config, Endpoints, Mutex<LoginGuard>)> = OnceLock::new();
    S.get_or_init(|| {
        let config = Config::from_json_str(
            r#"{"admin": true, "admin_password": "right", "admin_secret": "s", "token_hmac_secret_key": "h"}"#,
            Vec::new(),
        )
        .expect("fuzz config loads")
        .config;
        let endpoints = Endpoints::new(&config).expect("endpoints");
        (config, endpoints, Mutex::new(LoginGuard::default()))
    })
}

fuzz_target!(|data: &[u8]| {
    let (config, endpoints, guard) = setup();
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(3, |&b| b == 0xff);
    let (a, b, c) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let now = Timestamp(1_700_000_000_000u64.saturating_add(u64::from(selector) * 997));
    if selector & 1 == 0 {
        let who = String::from_utf8_lossy(a);
        let content_type = std::str::from_utf8(b).ok();
        let mut guard = guard.lock().unwrap_or_else(|p| p.into_inner());
        let answer = guard.login(config, &who, content_type, c, now);
        assert!(guard.len() <= GUARD_ENTRIES);
        assert!(matches!(answer.status, 200 | 400 | 401 | 429), "{answer:?}");
    } else {
        let token = std::str::from_utf8(a).ok();
        let step = admin::command(config, endpoints, token, b, now);
        if step.is_ok() {
            let token = token.unwrap_or_default();
            assert_eq!(admin::verify_token("s", token, now), Ok(()), "a bad token got through");
        }
    }
});
