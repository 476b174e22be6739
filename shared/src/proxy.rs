//! Proxies to the application backend, as Centrifugo's HTTP proxies: what the hub sends
//! (`connect`, `refresh`, `subscribe`, `publish`, `rpc`, `sub_refresh` requests, JSON bodies
//! POSTed to the configured endpoints) and how it reads the answers (`{"result": …}`,
//! `{"error": {code, message}}` or `{"disconnect": {code, reason}}`).
//!
//! No I/O here: the hub emits a [`ProxyRequest`] as an output, the host POSTs it (a pooled
//! HTTP client natively, `fetch` at the edge) and hands what came back to
//! `Hub::handle_proxy_reply` as a [`ProxyOutcome`]. The hub keeps the command pending and
//! owns the timeout; an answer that comes after it is dropped.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::{OverrideClaim, SubClaim, SubscribeOverrides};
use crate::config::Config;
use crate::protocol::{Disconnect, Error};

/// Largest proxy answer body read; a longer one is a failed call (hosts stop reading here).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Most headers forwarded from a client's request (the allow-list bounds them too).
const MAX_FORWARDED_HEADERS: usize = 32;
/// Largest header value forwarded; a longer one is left out.
const MAX_FORWARDED_VALUE: usize = 8 * 1024;

/// Which proxy a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyKind {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    Rpc,
    SubRefresh,
}

impl ProxyKind {
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Connect => "connect",
            ProxyKind::Refresh => "refresh",
            ProxyKind::Subscribe => "subscribe",
            ProxyKind::Publish => "publish",
            ProxyKind::Rpc => "rpc",
            ProxyKind::SubRefresh => "sub_refresh",
        }
    }

    /// The configured endpoint (empty: this proxy is off) and timeout in milliseconds.
    pub fn endpoint(self, c: &Config) -> (&str, u64) {
        let (endpoint, timeout) = match self {
            ProxyKind::Connect => (&c.proxy_connect_endpoint, c.proxy_connect_timeout),
            ProxyKind::Refresh => (&c.proxy_refresh_endpoint, c.proxy_refresh_timeout),
            ProxyKind::Subscribe => (&c.proxy_subscribe_endpoint, c.proxy_subscribe_timeout),
            ProxyKind::Publish => (&c.proxy_publish_endpoint, c.proxy_publish_timeout),
            ProxyKind::Rpc => (&c.proxy_rpc_endpoint, c.proxy_rpc_timeout),
            ProxyKind::SubRefresh => (&c.proxy_sub_refresh_endpoint, c.proxy_sub_refresh_timeout),
        };
        (endpoint.as_str(), timeout.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn enabled(self, c: &Config) -> bool {
        !self.endpoint(c).0.is_empty()
    }
}

/// Identifies a proxy call until its answer (or its timeout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProxyId(pub u64);

/// A call for the host to make: `POST endpoint` with these headers and this JSON body, and
/// feed what comes back to `handle_proxy_reply(id, …)`. The host may give up after
/// `timeout_ms` (the hub has by then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyRequest {
    pub id: ProxyId,
    pub kind: ProxyKind,
    pub endpoint: String,
    pub timeout_ms: u64,
    /// Every header to send, `Content-Type` included.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// What the host got for a [`ProxyRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyOutcome {
    /// An HTTP answer: its status and (at most [`MAX_ANSWER_BYTES`] + 1 of) its body.
    Answer { status: u16, body: Bytes },
    /// No answer: refused, reset, unreachable, body too large. Names the cause for the log.
    Failed(String),
}

/// The headers of a client's request that proxies forward: those named in
/// `proxy_http_headers` (any case), UTF-8, bounded in number and size.
pub fn forwarded_headers(config: &Config, headers: &dyn crate::http::Headers) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in &config.proxy_http_headers {
        for value in headers.all(name) {
            if out.len() >= MAX_FORWARDED_HEADERS {
                return out;
            }
            if let Ok(value) = std::str::from_utf8(value) {
                if value.len() <= MAX_FORWARDED_VALUE {
                    out.push((name.to_ascii_lowercase(), value.to_owned()));
                }
            }
        }
    }
    out
}

/// Whether any proxy is configured (hosts then collect [`forwarded_headers`]).
pub fn any_enabled(config: &Config) -> bool {
    [
        ProxyKind::Connect,
        ProxyKind::Refresh,
        ProxyKind::Subscribe,
        ProxyKind::Publish,
        ProxyKind::Rpc,
        ProxyKind::SubRefresh,
    ]
    .iter()
    .any(|k| k.enabled(config))
}

/// Adds the client's "emulated headers" (the connect command's `headers`, for clients that
/// cannot set HTTP headers) that the allow-list names and the request did not carry.
pub(crate) fn merge_emulated(
    config: &Config,
    forwarded: &mut Vec<(String, String)>,
    emulated: &BTreeMap<String, String>,
) {
    for (name, value) in emulated {
        let allowed = config.proxy_http_headers.iter().any(|h| h.eq_ignore_ascii_case(name));
        let present = forwarded.iter().any(|(h, _)| h.eq_ignore_ascii_case(name));
        let printable = value.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
        if allowed
            && !present
            && printable
            && value.len() <= MAX_FORWARDED_VALUE
            && forwarded.len() < MAX_FORWARDED_HEADERS
        {
            forwarded.push((name.to_ascii_lowercase(), value.clone()));
        }
    }
}

/// What every request carries about the connection.
#[derive(Serialize)]
pub(crate) struct Common<'a> {
    pub client: &'a str,
    pub transport: &'static str,
    pub protocol: &'static str,
    pub encoding: &'static str,
}

/// `data` as raw JSON when it is JSON, else `b64data`.
#[derive(Serialize, Default)]
pub(crate) struct Payload<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64data: Option<String>,
}

impl<'a> Payload<'a> {
    pub fn of(bytes: &'a [u8]) -> Payload<'a> {
        if bytes.is_empty() {
            return Payload::default();
        }
        match std::str::from_utf8(bytes).ok().and_then(|t| serde_json::from_str::<&RawValue>(t).ok()) {
            Some(raw) => Payload { data: Some(raw), b64data: None },
            None => {
                use base64::Engine;
                Payload { data: None, b64data: Some(base64::engine::general_purpose::STANDARD.encode(bytes)) }
            }
        }
    }
}

/// The connection's `meta` (from the connect proxy) when `proxy_include_connection_meta`.
pub(crate) fn meta<'a>(config: &Config, meta: &'a [u8]) -> Option<&'a RawValue> {
    if !config.proxy_include_connection_meta || meta.is_empty() {
        return None;
    }
    std::str::from_utf8(meta).ok().and_then(|t| serde_json::from_str(t).ok())
}

#[derive(Serialize)]
pub(crate) struct ConnectBody<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub version: &'a str,
    #[serde(flatten)]
    pub payload: Payload<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<&'a str>,
}

/// The body of every proxy after connect: the connection, the user, its meta, and the
/// kind's own fields.
#[derive(Serialize)]
pub(crate) struct SessionBody<'a> {
    #[serde(flatten)]
    pub common: Common<'a>,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<&'a str>,
    #[serde(flatten)]
    pub payload: Payload<'a>,
}

/// A proxy answer that could not be used: the cause, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure(pub String);

/// A usable answer: the result, or the error or disconnect the backend chose.
#[derive(Debug)]
pub(crate) enum Answer<T> {
    Result(T),
    Error(Error),
    Disconnect(Disconnect),
}

#[derive(Deserialize)]
struct Envelope<T> {
    result: Option<T>,
    error: Option<ErrorAnswer>,
    disconnect: Option<DisconnectAnswer>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    code: u32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    temporary: bool,
}

#[derive(Deserialize)]
struct DisconnectAnswer {
    code: u32,
    #[serde(default)]
    reason: String,
}

/// Error codes a backend may answer with: Centrifugo's client errors (100–199) and the range
/// it leaves to applications (400–1999).
fn error_code_allowed(code: u32) -> bool {
    matches!(code, 100..=199 | 400..=1999)
}

/// Disconnect codes a backend may answer with: Centrifugo's (3000–3999) and the
/// application range (4000–4999).
fn disconnect_code_allowed(code: u32) -> bool {
    matches!(code, 3000..=4999)
}

/// Reads a proxy outcome: a 2xx answer of at most [`MAX_ANSWER_BYTES`] holding JSON with a
/// `result` (of shape `T`), an `error` or a `disconnect` with a code in the allowed ranges.
/// Anything else is a [`Failure`] naming what was wrong.
pub(crate) fn read_answer<T: serde::de::DeserializeOwned>(outcome: ProxyOutcome) -> Result<Answer<T>, Failure> {
    let body = match outcome {
        ProxyOutcome::Failed(cause) => return Err(Failure(cause)),
        ProxyOutcome::Answer { status, .. } if !(200..300).contains(&status) => {
            return Err(Failure(format!("HTTP status {status}")))
        }
        ProxyOutcome::Answer { body, .. } if body.len() > MAX_ANSWER_BYTES => {
            return Err(Failure(format!("answer larger than {MAX_ANSWER_BYTES} bytes")))
        }
        ProxyOutcome::Answer { body, .. } => body,
    };
    let envelope: Envelope<T> =
        serde_json::from_slice(&body).map_err(|e| Failure(format!("malformed answer JSON: {e}")))?;
    if let Some(d) = envelope.disconnect {
        if !disconnect_code_allowed(d.code) {
            return Err(Failure(format!("disconnect code {} outside 3000-4999", d.code)));
        }
        return Ok(Answer::Disconnect(Disconnect::new(d.code, &d.reason)));
    }
    if let Some(e) = envelope.error {
        if !error_code_allowed(e.code) {
            return Err(Failure(format!("error code {} outside 100-199 and 400-1999", e.code)));
        }
        let mut error = Error::new(e.code, &e.message);
        error.temporary = e.temporary;
        return Ok(Answer::Error(error));
    }
    match envelope.result {
        Some(result) => Ok(Answer::Result(result)),
        None => Err(Failure("answer has no result, error or disconnect".into())),
    }
}

/// `b64*` wins when non-empty, else the raw JSON value; bad base64 is a failure.
fn pick(json: Option<Box<RawValue>>, b64: Option<String>, field: &str) -> Result<Bytes, Failure> {
    crate::auth::pick_bytes(json, b64, field)
        .map(|v| v.map(Bytes::from).unwrap_or_default())
        .map_err(|e| Failure(format!("{e:?}")))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ConnectAnswer {
    user: String,
    expire_at: i64,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    channels: Vec<String>,
    subs: BTreeMap<String, SubClaim>,
    meta: Option<Box<RawValue>>,
}

/// Credentials a connect proxy granted.
pub(crate) struct Granted {
    pub user: String,
    /// Milliseconds since the epoch; None: never expires.
    pub expires_at_ms: Option<u64>,
    pub info: Bytes,
    pub data: Bytes,
    /// Server-side subscriptions with their channel info, data and overrides.
    pub channels: BTreeMap<String, (Bytes, Bytes, SubscribeOverrides)>,
    pub meta: Bytes,
}

impl ConnectAnswer {
    pub fn granted(self) -> Result<Granted, Failure> {
        let mut channels = BTreeMap::new();
        for ch in self.channels {
            channels.insert(ch, (Bytes::new(), Bytes::new(), SubscribeOverrides::default()));
        }
        for (ch, sub) in self.subs {
            let info = pick(sub.info, sub.b64info, "subs.b64info")?;
            let data = pick(sub.data, sub.b64data, "subs.b64data")?;
            let overrides = sub.override_.map(OverrideClaim::into_overrides).unwrap_or_default();
            channels.insert(ch, (info, data, overrides));
        }
        Ok(Granted {
            user: self.user,
            expires_at_ms: expire_at_ms(self.expire_at),
            info: pick(self.info, self.b64info, "b64info")?,
            data: pick(self.data, self.b64data, "b64data")?,
            channels,
            meta: self.meta.map(|m| Bytes::copy_from_slice(m.get().as_bytes())).unwrap_or_default(),
        })
    }
}

/// `expire_at` in seconds since the epoch; zero or less: never.
fn expire_at_ms(at: i64) -> Option<u64> {
    u64::try_from(at).ok().filter(|at| *at > 0).map(|at| at.saturating_mul(1000))
}

/// The answer of the refresh and sub_refresh proxies.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct RefreshAnswer {
    pub expired: bool,
    expire_at: i64,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
}

impl RefreshAnswer {
    pub fn expires_at_ms(&self) -> Option<u64> {
        expire_at_ms(self.expire_at)
    }

    /// New info, if the backend sent some.
    pub fn info(self) -> Result<Option<Bytes>, Failure> {
        if self.info.is_none() && self.b64info.as_deref().unwrap_or("").is_empty() {
            return Ok(None);
        }
        pick(self.info, self.b64info, "b64info").map(Some)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SubscribeAnswer {
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    #[serde(rename = "override")]
    override_: Option<OverrideClaim>,
    expire_at: i64,
}

/// What a subscribe proxy granted.
pub(crate) struct SubscribeGrant {
    pub info: Bytes,
    pub data: Bytes,
    pub overrides: SubscribeOverrides,
    pub expires_at_ms: Option<u64>,
}

impl SubscribeAnswer {
    pub fn grant(self) -> Result<SubscribeGrant, Failure> {
        Ok(SubscribeGrant {
            info: pick(self.info, self.b64info, "b64info")?,
            data: pick(self.data, self.b64data, "b64data")?,
            overrides: self.override_.map(OverrideClaim::into_overrides).unwrap_or_default(),
            expires_at_ms: expire_at_ms(self.expire_at),
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct PublishAnswer {
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    pub skip_history: bool,
    pub tags: BTreeMap<String, String>,
    pub idempotency_key: String,
}

impl PublishAnswer {
    /// Data that replaces the client's, if the backend sent some.
    pub fn data(&mut self) -> Result<Option<Bytes>, Failure> {
        if self.data.is_none() && self.b64data.as_deref().unwrap_or("").is_empty() {
            return Ok(None);
        }
        pick(self.data.take(), self.b64data.take(), "b64data").map(Some)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct RpcAnswer {
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
}

impl RpcAnswer {
    pub fn data(self) -> Result<Bytes, Failure> {
        pick(self.data, self.b64data, "b64data")
    }
}

/// Headers that frame or route the call (its body's length and encoding, the host it goes to,
/// the connection): the HTTP client's own, never taken from a client or the config (Go's
/// client, Centrifugo's, ignores them in a request's header map too).
const RESERVED_HEADERS: [&str; 11] = [
    "content-length",
    "content-type",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// The headers of a request: `Content-Type`, the forwarded ones, then the static ones, none
/// of them a [`RESERVED_HEADERS`] one.
pub(crate) fn request_headers(config: &Config, forwarded: &[(String, String)]) -> Vec<(String, String)> {
    let mut headers = Vec::with_capacity(1 + forwarded.len() + config.proxy_static_http_headers.len());
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let ours = |name: &str| RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name));
    headers.extend(forwarded.iter().filter(|(name, _)| !ours(name)).cloned());
    for (name, value) in &config.proxy_static_http_headers {
        if !ours(name) {
            headers.push((name.to_ascii_lowercase(), value.clone()));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> ProxyOutcome {
        ProxyOutcome::Answer { status: 200, body: Bytes::from(body.to_owned()) }
    }

    #[test]
    fn answers_are_read_or_refused_with_a_cause() {
        let ok: Answer<ConnectAnswer> = read_answer(answer(r#"{"result":{"user":"42","info":{"a":1}}}"#)).unwrap();
        let Answer::Result(r) = ok else { panic!() };
        let g = r.granted().unwrap();
        assert_eq!(g.user, "42");
        assert_eq!(&g.info[..], br#"{"a":1}"#);
        let e: Answer<ConnectAnswer> = read_answer(answer(r#"{"error":{"code":1000,"message":"no"}}"#)).unwrap();
        assert!(matches!(e, Answer::Error(e) if e.code == 1000));
        let d: Answer<ConnectAnswer> = read_answer(answer(r#"{"disconnect":{"code":4500,"reason":"x"}}"#)).unwrap();
        assert!(matches!(d, Answer::Disconnect(d) if d.code == 4500));
        for (bad, why) in [
            (answer("{"), "malformed"),
            (answer("[]"), "malformed"),
            (answer("{}"), "no result"),
            (answer(r#"{"error":{"code":3000}}"#), "outside"),
            (answer(r#"{"disconnect":{"code":1000}}"#), "outside"),
            (answer(r#"{"result":{"b64info":"!!"}}"#), ""),
            (ProxyOutcome::Answer { status: 500, body: Bytes::new() }, "HTTP status 500"),
            (ProxyOutcome::Answer { status: 200, body: Bytes::from(vec![b' '; MAX_ANSWER_BYTES + 1]) }, "larger"),
            (ProxyOutcome::Failed("connection refused".into()), "refused"),
        ] {
            let read = read_answer::<ConnectAnswer>(bad).and_then(|a| match a {
                Answer::Result(r) => r.granted().map(|_| ()),
                _ => Ok(()),
            });
            let Err(Failure(cause)) = read else { panic!("{why}: accepted") };
            assert!(cause.contains(why), "{cause} should name {why}");
        }
    }

    /// A client's Content-Length: 0 forwarded made the call's body vanish, its Host sent the
    /// call to another virtual host, an emulated Transfer-Encoding re-framed it: headers that
    /// frame or route the call are rotor's own, whatever the allow-list and static headers say.
    #[test]
    fn framing_and_routing_headers_are_never_forwarded_or_added() {
        let names = ["Content-Length", "Transfer-Encoding", "Host", "Connection", "Content-Type", "Cookie"];
        let config = Config {
            proxy_http_headers: names.iter().map(|n| n.to_string()).collect(),
            proxy_static_http_headers: BTreeMap::from([
                ("Host".to_owned(), "elsewhere".to_owned()),
                ("X-Static".to_owned(), "1".to_owned()),
            ]),
            ..Default::default()
        };
        let headers: Vec<(&str, &[u8])> = vec![
            ("content-length", b"0"),
            ("host", b"rotor.example"),
            ("content-type", b"text/plain"),
            ("connection", b"upgrade"),
            ("cookie", b"a=1"),
        ];
        let mut forwarded = forwarded_headers(&config, &headers);
        let emulated = BTreeMap::from([("Transfer-Encoding".to_owned(), "chunked".to_owned())]);
        merge_emulated(&config, &mut forwarded, &emulated);
        assert_eq!(
            request_headers(&config, &forwarded),
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("cookie".to_owned(), "a=1".to_owned()),
                ("x-static".to_owned(), "1".to_owned()),
            ]
        );
    }

    #[test]
    fn only_allow_listed_headers_are_forwarded() {
        let config = Config { proxy_http_headers: vec!["Cookie".into(), "X-Real-Ip".into()], ..Default::default() };
        let headers: Vec<(&str, &[u8])> =
            vec![("cookie", b"a=1"), ("authorization", b"secret"), ("x-real-ip", b"1.2.3.4"), ("cookie", b"\xff")];
        assert_eq!(
            forwarded_headers(&config, &headers),
            vec![("cookie".to_owned(), "a=1".to_owned()), ("x-real-ip".to_owned(), "1.2.3.4".to_owned())]
        );
        let mut forwarded = Vec::new();
        let emulated =
            BTreeMap::from([("Cookie".to_owned(), "b=2".to_owned()), ("X-Other".to_owned(), "1".to_owned())]);
        merge_emulated(&config, &mut forwarded, &emulated);
        assert_eq!(forwarded, vec![("cookie".to_owned(), "b=2".to_owned())]);
    }
}
