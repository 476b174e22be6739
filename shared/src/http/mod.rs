//! The HTTP surface as rules, with no I/O: a host hands over a request's method, path, query
//! and headers and gets a [`Decision`] (an API call, a stream to open, a WebSocket upgrade,
//! an emulation request, health, or a ready [`Answer`]); it then only moves bytes. Paths,
//! methods, limits, content types, CORS, origin and API key checks are decided here once, so
//! the native server and the edge cannot drift apart.

mod endpoints;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::config::Config;
use crate::hub::Transport;
use crate::protocol::{
    decode_emulation, parse_connect_request, websocket_encoding, ConnectRequest, EmulationRequest, Encoding,
};

pub use endpoints::{Endpoint, Endpoints};

/// How soon browsers reconnect a dropped uni SSE stream (the `retry:` line).
pub const SSE_RETRY_MS: u32 = 1000;
/// API request bodies larger than this are refused (400, like other undecodable bodies).
pub const MAX_API_BODY: usize = 10 * 1024 * 1024;
/// Largest request head taken (Go allows 1 MiB, nginx 4 × 8 KiB lines; long tokens in
/// `cf_connect` need more than 8 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
/// After a disconnect push a stream stays open this long before it ends, so clients handle
/// the push before they see the end (Node's `eventsource` and centrifuge-js over SSE report
/// the end first otherwise).
pub const STREAM_END_LINGER_MS: u64 = 100;

const TEXT: &str = "text/plain; charset=utf-8";

/// A request's headers, however the host holds them. Names match ignoring ASCII case.
pub trait Headers {
    /// The first value of `name`.
    fn first(&self, name: &str) -> Option<&[u8]>;
    /// Every value of `name`, in order.
    fn all(&self, name: &str) -> Vec<&[u8]>;
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }
    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.iter().filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref()).collect()
    }
}

/// What the layer reads of a request.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a dyn Headers,
}

impl Request<'_> {
    /// A header's first value, if it is UTF-8 (one that is not reads as absent).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.first(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query?;
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    fn is_protobuf(&self) -> bool {
        self.header("content-type").is_some_and(|v| v.starts_with("application/octet-stream"))
    }
}

/// A response the host sends as it is (plus [`Routed::cors`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, headers: vec![("content-type", TEXT.to_owned())], body: body.into() }
    }

    pub fn empty(status: u16) -> Answer {
        Answer { status, headers: Vec::new(), body: String::new() }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    pub fn not_found() -> Answer {
        Answer::text(404, "not found")
    }

    pub fn method_not_allowed(allow: &'static str) -> Answer {
        Answer::text(405, format!("method not allowed, use {allow}")).with("allow", allow)
    }

    /// A request head that did not arrive in time (the connection closes).
    pub fn head_timeout(ms: u128) -> Answer {
        Answer::text(408, format!("request head did not arrive within {ms} ms")).with("connection", "close")
    }

    /// A request body that did not arrive in time (the connection closes: the rest of the
    /// body is not worth waiting for).
    pub fn body_timeout(ms: u128) -> Answer {
        Answer::text(408, format!("request body did not arrive within {ms} ms")).with("connection", "close")
    }

    pub fn head_too_large() -> Answer {
        Answer::text(431, format!("request head is larger than {MAX_HEAD} bytes"))
    }

    pub fn unreadable_body(why: impl std::fmt::Display) -> Answer {
        Answer::text(400, format!("could not read request body: {why}"))
    }

    /// An emulation request for a node that is not this one.
    pub fn unknown_node() -> Answer {
        Answer::text(404, "unknown node: the session lives on another node or ended")
    }

    fn preflight(req: &Request<'_>) -> Answer {
        let answer = Answer::empty(204)
            .with("access-control-allow-methods", "POST, OPTIONS")
            .with("access-control-max-age", "300");
        match req.header("access-control-request-headers") {
            Some(asked) => answer.with("access-control-allow-headers", asked),
            None => answer,
        }
    }
}

/// A request body the host reads before going on: at most `limit` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Body {
    pub limit: usize,
    /// The API answers an oversized body as an undecodable one (400), streams with 413.
    too_large_status: u16,
}

impl Body {
    fn new(limit: u64) -> Body {
        Body { limit: usize::try_from(limit).unwrap_or(usize::MAX), too_large_status: 413 }
    }

    /// The answer to a body over the limit (declared or read).
    pub fn too_large(&self) -> Answer {
        Answer::text(self.too_large_status, format!("request body is larger than the limit of {} bytes", self.limit))
    }
}

/// A server API call, authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// The method named in the path; empty for the legacy `POST <prefix>` framing
    /// (newline-separated `{"method":…,"params":…}` commands).
    pub method: String,
    /// Errors as HTTP statuses (`api_error_mode: "transport"` or `X-Centrifugo-Error-Mode`).
    pub transport_errors: bool,
    pub body: Body,
}

/// What the hub takes first for a new stream session.
#[derive(Debug)]
pub enum FirstInput {
    /// A unidirectional connect request.
    Connect(ConnectRequest),
    /// The connect command frame of a bidirectional emulation stream.
    Frame(Bytes),
}

impl FirstInput {
    /// The first input of a `transport` stream, from the request body.
    pub fn from_body(transport: Transport, body: Bytes) -> Result<FirstInput, Answer> {
        if !transport.is_unidirectional() {
            return Ok(FirstInput::Frame(body));
        }
        parse_connect_request(&body).map(FirstInput::Connect).map_err(|e| Answer::text(400, e))
    }
}

/// Where a stream's first input comes from.
#[derive(Debug)]
pub enum StreamInput {
    /// The request body: read it, then [`FirstInput::from_body`].
    Body(Body),
    /// The URL carried it (`cf_connect`).
    Ready(FirstInput),
}

/// A streaming response to open for a new session.
#[derive(Debug)]
pub struct StreamOpen {
    pub transport: Transport,
    pub content_type: &'static str,
    /// Sent first, as its own chunk: some SSE clients (the `eventsource` npm package) stall
    /// when the leading `\r\n` and the first event share one.
    pub prelude: Bytes,
    pub input: StreamInput,
    /// The `Last-Event-ID` a reconnecting uni SSE client sent: hand it to the hub before the
    /// connect request.
    pub last_event_id: Option<String>,
    /// The request headers proxies forward (`proxy_http_headers`): hand them to the hub
    /// right after opening the session (`Hub::handle_headers`).
    pub headers: Vec<(String, String)>,
}

/// A WebSocket upgrade to accept.
#[derive(Debug)]
pub struct Upgrade {
    pub transport: Transport,
    /// `Sec-WebSocket-Key`, for the host's `Sec-WebSocket-Accept`.
    pub key: String,
    /// The subprotocol to echo.
    pub protocol: Option<&'static str>,
    /// Largest message taken (then close 1009).
    pub message_limit: usize,
    /// A uni WebSocket's connect request from the URL (Centrifugo v6.3+); without it the
    /// client's first message is the connect request, which the hub reads.
    pub connect: Option<ConnectRequest>,
    /// The request headers proxies forward, as [`StreamOpen::headers`].
    pub headers: Vec<(String, String)>,
}

/// `POST <emulation prefix>`: commands for the session named in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulationCall {
    pub body: Body,
    pub protobuf: bool,
}

impl EmulationCall {
    pub fn decode(&self, body: &[u8]) -> Result<EmulationRequest, Answer> {
        decode_emulation(body, self.protobuf).map_err(|e| Answer::text(400, e))
    }
}

/// `POST <admin prefix>/admin/auth`: read the body, then
/// [`LoginGuard::login`](crate::admin::LoginGuard::login).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLogin {
    pub body: Body,
}

/// `POST <admin prefix>/admin/api`: read the body, then [`crate::admin::command`] (which
/// checks the token: that needs the time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCall {
    pub body: Body,
    /// From `Authorization: token <t>`, else `?token=`.
    pub token: Option<String>,
}

#[derive(Debug)]
pub enum Decision {
    Api(ApiCall),
    AdminLogin(AdminLogin),
    AdminApi(AdminCall),
    Stream(StreamOpen),
    Upgrade(Upgrade),
    Emulation(EmulationCall),
    /// Healthy when the host's engine answers.
    Health,
    /// The node's figures in the Prometheus text format ([`crate::metrics`]).
    /// `authorized`: the request carries the API key (or the API is insecure); the native
    /// server serves metrics to anyone who reaches the port, as Centrifugo does, while the
    /// edge, reachable from the whole Internet, asks for the key.
    Metrics {
        authorized: bool,
    },
    Answer(Answer),
}

/// A decision, the endpoint it is for, and the CORS headers every answer to it carries.
#[derive(Debug)]
pub struct Routed {
    pub endpoint: Option<Endpoint>,
    pub decision: Decision,
    /// The allowed `Origin` to echo.
    origin: Option<String>,
}

impl Routed {
    fn answer(endpoint: Option<Endpoint>, answer: Answer, origin: Option<String>) -> Routed {
        Routed { endpoint, decision: Decision::Answer(answer), origin }
    }

    /// CORS headers for any response to this request (none without an allowed `Origin`).
    pub fn cors(&self) -> Vec<(&'static str, String)> {
        match &self.origin {
            Some(origin) => vec![
                ("access-control-allow-origin", origin.clone()),
                ("access-control-allow-credentials", "true".to_owned()),
                ("vary", "Origin".to_owned()),
            ],
            None => Vec::new(),
        }
    }
}

/// Decides what `req` is. `endpoints` comes from the same `config` ([`Endpoints::new`]).
pub fn decide(config: &Config, endpoints: &Endpoints, req: &Request<'_>) -> Routed {
    let found = endpoints.find(req.path);
    let endpoint = found.map(|(e, _)| e);
    if let Some((Endpoint::Api, method)) = found {
        let decision = api(config, req, method);
        return Routed { endpoint: Some(Endpoint::Api), decision, origin: None };
    }
    let origin = match req.headers.first("origin").map(std::str::from_utf8) {
        Some(Ok(origin)) => Some(origin),
        Some(Err(_)) => return Routed::answer(endpoint, Answer::text(403, "request origin is not valid UTF-8"), None),
        None => None,
    };
    let allowed = crate::origin::allowed(&config.allowed_origins, origin) || (config.admin && same_origin(req, origin));
    if !allowed {
        return Routed::answer(endpoint, Answer::text(403, "request origin is not in allowed_origins"), None);
    }
    // Echoed only if it can be a header value as it is.
    let origin = origin.filter(|o| o.bytes().all(|b| (b' '..0x7f).contains(&b))).map(str::to_owned);
    let Some((endpoint, _)) = found else { return Routed::answer(None, Answer::not_found(), origin) };
    let decision = match endpoint {
        Endpoint::UniHttpStream | Endpoint::UniSse | Endpoint::HttpStream | Endpoint::Sse => {
            stream(config, endpoint, req)
        }
        Endpoint::Websocket | Endpoint::UniWebsocket => upgrade(config, endpoint, req),
        Endpoint::Emulation => match req.method {
            "POST" => Decision::Emulation(EmulationCall {
                body: Body::new(config.emulation_max_request_body_size),
                protobuf: req.is_protobuf(),
            }),
            "OPTIONS" => Decision::Answer(Answer::preflight(req)),
            _ => Decision::Answer(Answer::method_not_allowed("POST")),
        },
        Endpoint::Health => Decision::Health,
        Endpoint::Metrics => match req.method {
            "GET" | "HEAD" => {
                Decision::Metrics { authorized: config.api_insecure || api_key_matches(req, &config.api_key) }
            }
            _ => Decision::Answer(Answer::method_not_allowed("GET")),
        },
        Endpoint::Api => Decision::Answer(Answer::not_found()), // taken above
        Endpoint::AdminPage => match req.method {
            "GET" | "HEAD" => Decision::Answer(crate::admin::page()),
            _ => Decision::Answer(Answer::method_not_allowed("GET")),
        },
        Endpoint::AdminAuth => match req.method {
            "POST" => Decision::AdminLogin(AdminLogin { body: Body::new(crate::admin::MAX_LOGIN_BODY as u64) }),
            _ => Decision::Answer(Answer::method_not_allowed("POST")),
        },
        Endpoint::AdminApi => match req.method {
            "POST" => {
                let token = match req.header("authorization") {
                    Some(v) => v
                        .split_once(' ')
                        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("token"))
                        .map(|(_, t)| t.trim().to_owned()),
                    None => req.query_param("token"),
                };
                let body = Body { limit: MAX_API_BODY, too_large_status: 400 };
                Decision::AdminApi(AdminCall { body, token })
            }
            _ => Decision::Answer(Answer::method_not_allowed("POST")),
        },
    };
    Routed { endpoint: Some(endpoint), decision, origin }
}

/// Whether `origin` is the origin the request was sent to (its `Host`): the admin page's own
/// requests and its live view's WebSocket, which `allowed_origins` (the application's
/// origins) need not list.
fn same_origin(req: &Request<'_>, origin: Option<&str>) -> bool {
    let (Some(origin), Some(host)) = (origin, req.header("host")) else { return false };
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && authority.eq_ignore_ascii_case(host.trim())
}

fn api(config: &Config, req: &Request<'_>, method: &str) -> Decision {
    if req.method != "POST" {
        return Decision::Answer(Answer::method_not_allowed("POST"));
    }
    if !config.api_insecure && !api_key_matches(req, &config.api_key) {
        return Decision::Answer(Answer::empty(401));
    }
    let transport_errors = config.api_error_mode == "transport"
        || req.header("x-centrifugo-error-mode").is_some_and(|v| v.eq_ignore_ascii_case("transport"));
    let body = Body { limit: MAX_API_BODY, too_large_status: 400 };
    Decision::Api(ApiCall { method: method.to_owned(), transport_errors, body })
}

/// The API key from `X-API-Key`, else `Authorization: apikey <key>`, else `?api_key=`,
/// compared in constant time (an empty configured key matches nothing).
fn api_key_matches(req: &Request<'_>, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let same = |given: &str| crate::auth::same_secret(given, key);
    if let Some(given) = req.header("x-api-key") {
        return same(given);
    }
    if let Some(v) = req.header("authorization") {
        let (scheme, given) = v.split_once(' ').unwrap_or((v, ""));
        return scheme.eq_ignore_ascii_case("apikey") && same(given.trim());
    }
    req.query_param("api_key").is_some_and(|given| same(&given))
}

fn stream(config: &Config, endpoint: Endpoint, req: &Request<'_>) -> Decision {
    let (get, limit) = match endpoint {
        Endpoint::UniHttpStream => (false, config.uni_http_stream_max_request_body_size),
        Endpoint::UniSse => (true, config.uni_sse_max_request_body_size),
        Endpoint::HttpStream => (false, config.http_stream_max_request_body_size),
        _ => (true, config.sse_max_request_body_size),
    };
    let input = match req.method {
        "POST" => StreamInput::Body(Body::new(limit)),
        "GET" if get => {
            let raw = req.query_param("cf_connect");
            if endpoint == Endpoint::Sse {
                match raw {
                    Some(frame) => StreamInput::Ready(FirstInput::Frame(Bytes::from(frame))),
                    None => {
                        return Decision::Answer(Answer::text(
                            400,
                            "missing cf_connect query parameter with the connect command",
                        ))
                    }
                }
            } else {
                match parse_connect_request(raw.unwrap_or_default().as_bytes()) {
                    Ok(request) => StreamInput::Ready(FirstInput::Connect(request)),
                    Err(e) => return Decision::Answer(Answer::text(400, format!("cf_connect: {e}"))),
                }
            }
        }
        "OPTIONS" => return Decision::Answer(Answer::preflight(req)),
        _ => return Decision::Answer(Answer::method_not_allowed(if get { "GET, POST" } else { "POST" })),
    };
    let protobuf = endpoint == Endpoint::HttpStream && req.is_protobuf();
    let (transport, content_type, prelude) = match endpoint {
        Endpoint::UniHttpStream => (Transport::UniHttpStream, "application/x-ndjson", Bytes::new()),
        Endpoint::UniSse => {
            let prelude = Bytes::from(format!("\r\nretry: {SSE_RETRY_MS}\n\n"));
            (Transport::UniSse, "text/event-stream; charset=utf-8", prelude)
        }
        Endpoint::HttpStream if protobuf => {
            (Transport::HttpStream(Encoding::Protobuf), "application/octet-stream", Bytes::new())
        }
        Endpoint::HttpStream => (Transport::HttpStream(Encoding::Json), "application/json", Bytes::new()),
        _ => (Transport::Sse, "text/event-stream; charset=utf-8", Bytes::from_static(b"\r\n")),
    };
    // A reconnecting EventSource sends the last id it saw; clients that cannot set headers
    // may pass it as a query parameter.
    let last_event_id = (endpoint == Endpoint::UniSse)
        .then(|| req.header("last-event-id").map(str::to_owned).or_else(|| req.query_param("last_event_id")))
        .flatten()
        .filter(|id| !id.is_empty());
    let headers = crate::proxy::forwarded_headers(config, req.headers);
    Decision::Stream(StreamOpen { transport, content_type, prelude, input, last_event_id, headers })
}

fn upgrade(config: &Config, endpoint: Endpoint, req: &Request<'_>) -> Decision {
    if req.method != "GET" {
        return Decision::Answer(Answer::method_not_allowed("GET"));
    }
    let is_upgrade = req.header("upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let Some(key) = req.header("sec-websocket-key").filter(|k| is_upgrade && !k.trim().is_empty()) else {
        return Decision::Answer(Answer::text(400, "expected a WebSocket upgrade request"));
    };
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        // RFC 6455 §4.4: name the versions this server speaks.
        let answer = Answer::text(426, "unsupported Sec-WebSocket-Version: this server speaks 13");
        return Decision::Answer(answer.with("sec-websocket-version", "13"));
    }
    let unidirectional = endpoint == Endpoint::UniWebsocket;
    let offered = req.headers.all("sec-websocket-protocol");
    let offered = offered.iter().filter_map(|v| std::str::from_utf8(v).ok());
    let format = req.query_param("format").or_else(|| req.query_param("cf_protocol"));
    let (encoding, protocol) = websocket_encoding(offered, format.as_deref(), unidirectional);
    let connect =
        match req.query_param("cf_connect").filter(|_| unidirectional).map(|raw| parse_connect_request(raw.as_bytes()))
        {
            Some(Ok(request)) => Some(request),
            Some(Err(e)) => return Decision::Answer(Answer::text(400, format!("cf_connect: {e}"))),
            None => None,
        };
    let transport = if unidirectional { Transport::UniWebsocket } else { Transport::Websocket(encoding) };
    let message_limit = message_limit(config, transport);
    let headers = crate::proxy::forwarded_headers(config, req.headers);
    Decision::Upgrade(Upgrade { transport, key: key.trim().to_owned(), protocol, message_limit, connect, headers })
}

/// The largest message a WebSocket session takes (then close 1009), for hosts that check it
/// per message after the upgrade (the edge's hibernated sockets).
pub fn message_limit(config: &Config, transport: Transport) -> usize {
    let limit = if transport.is_unidirectional() {
        config.uni_websocket_message_size_limit
    } else {
        config.websocket_message_size_limit
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The body length a request head declares: digits only, and every `Content-Length` the
/// same (`+5`, `-1`, `5, 5` and two different values are refused: RFC 9110 §8.6 asks for
/// digits, and disagreeing lengths are how requests get smuggled).
pub fn content_length(headers: &dyn Headers) -> Result<Option<u64>, Answer> {
    let mut length = None;
    for v in headers.all("content-length") {
        let digits = v.trim_ascii();
        let parsed = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| Answer::text(400, format!("invalid Content-Length {:?}", String::from_utf8_lossy(v))))?;
        if length.is_some_and(|l| l != parsed) {
            return Err(Answer::text(400, "conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    Ok(length)
}
