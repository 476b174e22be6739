//! The admin web UI (Centrifugo's `admin` keys), decided here for both hosts:
//!
//! - the page ([`PAGE`], one self-contained HTML file) at `admin_handler_prefix` (`/` when
//!   empty);
//! - `POST <prefix>/admin/auth`: the password (form field `password`, or JSON
//!   `{"password":…}`) for an admin token ([`LoginGuard::login`]); wrong passwords are
//!   answered 401 and repeated ones slowed down;
//! - `POST <prefix>/admin/api` with `Authorization: token <admin token>` and a body
//!   `{"method":…,"params":…}`: any server API method ([`command`]), run by the host's API
//!   runner, plus the admin-only `live`, which mints the tokens the page's live view connects
//!   with.
//!
//! Admin tokens are `<expiry, Unix seconds>.<base64url HMAC-SHA256 of it keyed by
//! admin_secret>`, valid for [`TOKEN_TTL_MS`]. With `admin_insecure` no token is needed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::{self, ApiCommand};
use crate::auth::issue_hs256;
use crate::config::Config;
use crate::http::{Answer, Endpoint, Endpoints};
use crate::protocol::Error;
use crate::Timestamp;

/// The admin web UI, served as it is by both hosts.
pub const PAGE: &str = include_str!("admin/index.html");

/// How long an admin token (and so a login) lasts.
pub const TOKEN_TTL_MS: u64 = 12 * 3600 * 1000;
/// How long the tokens of the live view last; the page asks for new ones when they expire.
pub const LIVE_TOKEN_TTL_SECS: u64 = 3600;
/// The user the live view connects as.
pub const LIVE_USER: &str = "rotor-admin";
/// Largest `POST <prefix>/admin/auth` body taken.
pub const MAX_LOGIN_BODY: usize = 4096;

const TOKEN_DOMAIN: &[u8] = b"rotor-admin:";
const JSON: &str = "application/json";

/// The page's answer: HTML that may only talk to its own origin, and never in a frame.
pub fn page() -> Answer {
    let csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
               img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    Answer {
        status: 200,
        headers: vec![
            ("content-type", "text/html; charset=utf-8".to_owned()),
            ("cache-control", "no-cache".to_owned()),
            ("content-security-policy", csp.to_owned()),
            ("x-frame-options", "DENY".to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
        ],
        body: PAGE.to_owned(),
    }
}

fn json_answer(status: u16, value: &Value) -> Answer {
    Answer { status, headers: vec![("content-type", JSON.to_owned())], body: value.to_string() }
}

fn mac(secret: &str, expiry: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(TOKEN_DOMAIN);
    mac.update(expiry.as_bytes());
    mac
}

/// A new admin token, signed with `secret`, expiring [`TOKEN_TTL_MS`] after `now`.
pub fn issue_token(secret: &str, now: Timestamp) -> String {
    let expiry = now.after_ms(TOKEN_TTL_MS).as_secs().to_string();
    let tag = mac(secret, &expiry).finalize().into_bytes();
    format!("{expiry}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Why an admin token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Missing,
    Malformed,
    BadSignature,
    Expired,
}

impl TokenRefusal {
    fn message(self) -> &'static str {
        match self {
            TokenRefusal::Missing => "admin token missing: log in at POST <prefix>/admin/auth",
            TokenRefusal::Malformed => "admin token malformed",
            TokenRefusal::BadSignature => "admin token not signed with this server's admin_secret",
            TokenRefusal::Expired => "admin token expired: log in again",
        }
    }
}

/// Checks an admin token (the signature in constant time, then the expiry).
pub fn verify_token(secret: &str, token: &str, now: Timestamp) -> Result<(), TokenRefusal> {
    if token.is_empty() {
        return Err(TokenRefusal::Missing);
    }
    let (expiry, tag) = token.split_once('.').ok_or(TokenRefusal::Malformed)?;
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) || tag.len() > 64 {
        return Err(TokenRefusal::Malformed);
    }
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenRefusal::Malformed)?;
    if secret.is_empty() || mac(secret, expiry).verify_slice(&tag).is_err() {
        return Err(TokenRefusal::BadSignature);
    }
    let expiry: u64 = expiry.parse().map_err(|_| TokenRefusal::Malformed)?;
    if now.as_secs() >= expiry {
        return Err(TokenRefusal::Expired);
    }
    Ok(())
}

// ---- login, and the slow-down of repeated failures

/// Most addresses whose failures are remembered; the table never grows past it (the oldest
/// entry makes room).
pub const GUARD_ENTRIES: usize = 256;
/// Failed logins from all addresses together per [`GLOBAL_WINDOW_MS`] before every login
/// waits for the window to end: many addresses do not buy more guesses.
pub const GLOBAL_MAX_FAILURES: u32 = 60;
pub const GLOBAL_WINDOW_MS: u64 = 60_000;
const FIRST_DELAY_MS: u64 = 1000;
const MAX_DELAY_MS: u64 = 60_000;
/// An address's failures are forgotten this long after its last one.
const FORGET_MS: u64 = 15 * 60 * 1000;
/// Longest address key kept (the host's, not the client's, but kept bounded anyway).
const MAX_WHO: usize = 64;

#[derive(Clone, Debug)]
struct Failures {
    who: String,
    count: u32,
    /// No login from this address is checked before this time.
    until: Timestamp,
}

/// Failed logins, by client address: after the n-th failure in a row an address must wait
/// 2^(n-1) s (at most 60 s) before its next attempt is checked (429 with `Retry-After`
/// until then). Bounded: [`GUARD_ENTRIES`] addresses, plus one global window.
#[derive(Clone, Debug, Default)]
pub struct LoginGuard {
    entries: Vec<Failures>,
    window_start: Timestamp,
    window_failures: u32,
}

/// Why the page's login body cannot be read.
fn password_from(content_type: Option<&str>, body: &[u8]) -> Result<String, &'static str> {
    let is_json = content_type.is_some_and(|c| c.trim_start().starts_with("application/json"))
        || body.trim_ascii_start().first() == Some(&b'{');
    if is_json {
        #[derive(Deserialize)]
        struct Login {
            password: String,
        }
        return serde_json::from_slice::<Login>(body)
            .map(|l| l.password)
            .map_err(|_| "expected a JSON object with a \"password\" string");
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
        .ok_or("expected a form field \"password\" (or JSON {\"password\":…})")
}

impl LoginGuard {
    /// Answers `POST <prefix>/admin/auth` from the client at `who` (the host's idea of its
    /// address): 200 `{"token":…}`, 401 for a wrong password, 429 while `who` (or everyone)
    /// must wait, 400 for a body without a password.
    pub fn login(
        &mut self,
        config: &Config,
        who: &str,
        content_type: Option<&str>,
        body: &[u8],
        now: Timestamp,
    ) -> Answer {
        let who = truncate(who, MAX_WHO);
        if let Some(wait) = self.wait(who, now) {
            let secs = wait.div_ceil(1000).max(1);
            let answer = Answer::text(429, format!("too many failed logins: try again in {secs} s"));
            return Answer { headers: [answer.headers, vec![("retry-after", secs.to_string())]].concat(), ..answer };
        }
        let password = match password_from(content_type, body) {
            Ok(p) => p,
            Err(why) => return Answer::text(400, why),
        };
        if config.admin_insecure {
            return json_answer(200, &json!({ "token": self.token(config, now) }));
        }
        if config.admin_password.is_empty() || config.admin_secret.is_empty() {
            // Config validation refuses this; kept closed if a host skips it.
            return Answer::text(400, "admin_password and admin_secret must be set in the configuration");
        }
        if bool::from(password.as_bytes().ct_eq(config.admin_password.as_bytes())) {
            self.entries.retain(|f| f.who != who);
            return json_answer(200, &json!({ "token": self.token(config, now) }));
        }
        self.fail(who, now);
        Answer::text(401, "wrong password")
    }

    fn token(&self, config: &Config, now: Timestamp) -> String {
        if config.admin_secret.is_empty() {
            String::new()
        } else {
            issue_token(&config.admin_secret, now)
        }
    }

    /// Milliseconds `who` must still wait, if any.
    fn wait(&mut self, who: &str, now: Timestamp) -> Option<u64> {
        if now.until(self.window_start.after_ms(GLOBAL_WINDOW_MS)) == 0 {
            self.window_start = now;
            self.window_failures = 0;
        }
        if self.window_failures >= GLOBAL_MAX_FAILURES {
            return Some(now.until(self.window_start.after_ms(GLOBAL_WINDOW_MS)));
        }
        let entry = self.entries.iter().find(|f| f.who == who)?;
        let wait = now.until(entry.until);
        (wait > 0).then_some(wait)
    }

    fn fail(&mut self, who: &str, now: Timestamp) {
        self.window_failures = self.window_failures.saturating_add(1);
        self.entries.retain(|f| now.until(f.until.after_ms(FORGET_MS)) > 0);
        let index = match self.entries.iter().position(|f| f.who == who) {
            Some(i) => i,
            None => {
                if self.entries.len() >= GUARD_ENTRIES {
                    let oldest = self.entries.iter().enumerate().min_by_key(|(_, f)| f.until).map(|(i, _)| i);
                    if let Some(i) = oldest {
                        self.entries.swap_remove(i);
                    }
                }
                self.entries.push(Failures { who: who.to_owned(), count: 0, until: now });
                self.entries.len() - 1
            }
        };
        if let Some(entry) = self.entries.get_mut(index) {
            entry.count = entry.count.saturating_add(1);
            let shift = entry.count.saturating_sub(1).min(6);
            entry.until = now.after_ms((FIRST_DELAY_MS << shift).min(MAX_DELAY_MS));
        }
    }

    /// How many addresses are remembered (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---- the admin API

/// What to do with an authorized `POST <prefix>/admin/api`.
#[derive(Debug)]
pub enum Step {
    /// Run this server API command with the host's API runner (as for `POST /api/<method>`),
    /// then answer with [`api_answer`].
    Run { method: String, params: Vec<u8>, command: Box<ApiCommand> },
    /// Answer this.
    Done(Answer),
}

/// The admin API request: a token check, then the command in the body.
pub fn command(
    config: &Config,
    endpoints: &Endpoints,
    token: Option<&str>,
    body: &[u8],
    now: Timestamp,
) -> Result<Step, Answer> {
    if !config.admin_insecure {
        verify_token(&config.admin_secret, token.unwrap_or_default(), now)
            .map_err(|why| Answer::text(401, why.message()))?;
    }
    #[derive(Deserialize)]
    struct Call<'a> {
        method: String,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let call: Call<'_> = serde_json::from_slice(body)
        .map_err(|e| Answer::text(400, format!("expected {{\"method\":…,\"params\":{{…}}}}: {e}")))?;
    let method = call.method.to_ascii_lowercase();
    let params = call.params.map_or("{}", RawValue::get).as_bytes();
    if method == "live" {
        return Ok(Step::Done(api_answer(&live(config, endpoints, params, now))));
    }
    match api::parse(&method, params) {
        Ok(Some(command)) => Ok(Step::Run { method, params: params.to_vec(), command: Box::new(command) }),
        Ok(None) => Ok(Step::Done(api_answer(&Err(api::not_found())))),
        Err(e) => Err(Answer::text(400, e.0)),
    }
}

/// The admin API's answer: `{"result":…}` or `{"error":…}`, 200 either way.
pub fn api_answer(result: &Result<Value, Error>) -> Answer {
    json_answer(200, &api::envelope(result))
}

/// `live`, `{"channel":…}`: where the page's WebSocket connects and the tokens it connects and
/// subscribes with (for [`LIVE_USER`]; `null` where no HMAC secret is configured, and the
/// page then tries without).
fn live(config: &Config, endpoints: &Endpoints, params: &[u8], now: Timestamp) -> Result<Value, Error> {
    #[derive(Deserialize)]
    struct Live {
        channel: String,
    }
    let Live { channel } = serde_json::from_slice(params).map_err(|_| Error::bad_request())?;
    if channel.is_empty() || channel.len() as u64 > config.channel_max_length {
        return Err(Error::bad_request());
    }
    let Some(websocket) = endpoints.path(Endpoint::Websocket) else {
        return Err(Error::new(108, "not available: the live view needs the WebSocket endpoint"));
    };
    let exp = now.as_secs().saturating_add(LIVE_TOKEN_TTL_SECS);
    let mut claims = json!({ "sub": LIVE_USER, "exp": exp });
    if !config.token_user_id_claim.is_empty() {
        claims[config.token_user_id_claim.as_str()] = json!(LIVE_USER);
    }
    let with = |mut claims: Value, audience: &str, issuer: &str| {
        if !audience.is_empty() {
            claims["aud"] = json!(audience);
        }
        if !issuer.is_empty() {
            claims["iss"] = json!(issuer);
        }
        claims
    };
    let token = (!config.token_hmac_secret_key.is_empty()).then(|| {
        issue_hs256(&config.token_hmac_secret_key, &with(claims.clone(), &config.token_audience, &config.token_issuer))
    });
    let (secret, audience, issuer) = if config.separate_subscription_token_config {
        (
            &config.subscription_token_hmac_secret_key,
            &config.subscription_token_audience,
            &config.subscription_token_issuer,
        )
    } else {
        (&config.token_hmac_secret_key, &config.token_audience, &config.token_issuer)
    };
    let subscription_token = (!secret.is_empty()).then(|| {
        let claims = with(json!({ "sub": LIVE_USER, "channel": channel, "exp": exp }), audience, issuer);
        issue_hs256(secret, &claims)
    });
    Ok(json!({
        "websocket": websocket,
        "user": LIVE_USER,
        "token": token,
        "subscription_token": subscription_token,
    }))
}

#[cfg(test)]
mod tests;
