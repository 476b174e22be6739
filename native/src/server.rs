//! Accepts connections and routes requests to the transports and the API.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::hub::Transport;
use shared::protocol::parse_connect_request;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::{Engine, Event};
use crate::{api, emulation, stream, ws};

pub type Body = BoxBody<Bytes, Infallible>;

/// How long a client may take at each step of a connection, in one place. Centrifugo leaves
/// Go's `http.Server` timeouts unset (none at all); these follow common practice for servers
/// facing the internet (Go's guidance and nginx's defaults) and Centrifugo's own write bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From accepting a connection to a complete request head.
    pub head: Duration,
    /// For a whole request body, once the head is in.
    pub body: Duration,
    /// An idle keep-alive connection waiting for its next request (hyper's header timer
    /// covers the wait and the head that follows, so this bounds both).
    pub keep_alive: Duration,
    /// For the client to take what was written to it (a batch of frames, a response
    /// chunk): a client that stops reading loses its connection after this.
    pub write: Duration,
    /// For the client's answer to a WebSocket close frame before the socket is dropped.
    pub close: Duration,
}

/// The variable that shortens the timeouts for tests (milliseconds):
/// `head=300,body=300,keep_alive=300,write=300,close=300`, any subset.
pub const TIMEOUTS_ENV: &str = "ROTOR_TEST_TIMEOUTS_MS";

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        head: Duration::from_secs(15),
        body: Duration::from_secs(30),
        keep_alive: Duration::from_secs(75),
        write: Duration::from_secs(10),
        close: Duration::from_secs(5),
    };

    /// The defaults, with what [`TIMEOUTS_ENV`] overrides.
    pub fn from_env() -> Result<Timeouts, String> {
        match std::env::var(TIMEOUTS_ENV) {
            Ok(spec) => Timeouts::DEFAULT.overridden(&spec),
            Err(_) => Ok(Timeouts::DEFAULT),
        }
    }

    fn overridden(mut self, spec: &str) -> Result<Timeouts, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("{TIMEOUTS_ENV}: expected name=milliseconds, got {part:?}");
            let (name, ms) = part.split_once('=').ok_or_else(bad)?;
            let value = Duration::from_millis(ms.trim().parse::<u64>().map_err(|_| bad())?.max(1));
            match name.trim() {
                "head" => self.head = value,
                "body" => self.body = value,
                "keep_alive" => self.keep_alive = value,
                "write" => self.write = value,
                "close" => self.close = value,
                _ => return Err(bad()),
            }
        }
        Ok(self)
    }
}

pub async fn serve(listener: TcpListener, engine: Engine) {
    loop {
        let (socket, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("rotor: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(crate::uni::serve(socket, engine.clone()));
    }
}

/// Serves a connection with hyper; `read` is what was already read from it (a complete
/// request head, and maybe more).
pub async fn serve_hyper(socket: TcpStream, read: Bytes, engine: Engine) {
    let timeouts = engine.timeouts;
    let service = service_fn(move |req| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(route(req, engine).await) }
    });
    let io = TokioIo::new(ClientSocket::new(socket, read, timeouts.write));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.keep_alive)
        .max_buf_size(crate::uni::MAX_HEAD)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

/// A client's socket as hyper (and an upgraded WebSocket) uses it: the bytes already read
/// are read again first, and a write may wait for the client at most `write_timeout`. The
/// deadline starts when a write first has to wait and ends when a flush completes, so a
/// client that stops reading fails the write (and loses the connection) instead of holding
/// it and its buffers for good.
pub struct ClientSocket {
    prefix: Bytes,
    inner: TcpStream,
    write_timeout: Duration,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ClientSocket {
    fn new(inner: TcpStream, prefix: Bytes, write_timeout: Duration) -> Self {
        ClientSocket { prefix, inner, write_timeout, write_deadline: None }
    }

    /// A write is waiting for the client: fails it once it has waited too long.
    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timeout = self.write_timeout;
        let deadline = self.write_deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read")),
            Poll::Pending => Poll::Pending,
        }
    }

    fn waited<T>(&mut self, cx: &mut Context<'_>, result: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Pending => self.poll_write_deadline(cx).map(Err),
            ready => ready,
        }
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        self.waited(cx, result)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if result.is_ready() {
            self.write_deadline = None; // everything handed over is written
        }
        self.waited(cx, result)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.waited(cx, result)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.waited(cx, result)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pub async fn bind(address: &str, port: u16) -> std::io::Result<TcpListener> {
    let host = if address.is_empty() { "0.0.0.0" } else { address };
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("cannot resolve {host}")))?,
    };
    // A deep backlog: after a restart every client reconnects at once, and the default (128)
    // drops connection attempts that then wait out their retry delay.
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn route(req: Request<Incoming>, engine: Engine) -> Response<Body> {
    let c = engine.config.clone();
    let path = req.uri().path().to_owned();
    let api_prefix = if c.api_handler_prefix.is_empty() { "/api" } else { c.api_handler_prefix.as_str() };
    if !c.api_disable && (path == api_prefix || path.starts_with(&format!("{api_prefix}/"))) {
        return api::handle(req, engine, api_prefix).await;
    }
    // An Origin that is not UTF-8 is no origin anyone allowed: refused like any other.
    let origin = match req.headers().get(header::ORIGIN).map(|v| std::str::from_utf8(v.as_bytes())) {
        Some(Ok(origin)) => Some(origin.to_owned()),
        Some(Err(_)) => return text(StatusCode::FORBIDDEN, "request origin is not valid UTF-8"),
        None => None,
    };
    if !shared::origin::allowed(&c.allowed_origins, origin.as_deref()) {
        return text(StatusCode::FORBIDDEN, "request origin is not in allowed_origins");
    }
    let mut response = match path.as_str() {
        "/connection/uni_http_stream" if c.uni_http_stream => uni_http_stream(req, &engine).await,
        "/connection/uni_sse" if c.uni_sse => uni_sse(req, &engine).await,
        "/connection/uni_websocket" if c.uni_websocket => ws::upgrade(req, &engine, true),
        "/connection/websocket" if !c.websocket_disable => ws::upgrade(req, &engine, false),
        "/connection/http_stream" if c.http_stream => emulation::http_stream(req, &engine).await,
        "/connection/sse" if c.sse => emulation::sse(req, &engine).await,
        p if (c.http_stream || c.sse) && p == emulation_prefix(&c) => emulation::emulation(req, &engine).await,
        // Healthy only when the engine answers: a wedged engine must not look alive.
        "/health" if engine.healthy(std::time::Duration::from_secs(1)).await => text(StatusCode::OK, "{}"),
        "/health" => text(StatusCode::SERVICE_UNAVAILABLE, "engine did not answer within 1 s"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    if let Some(origin) = origin {
        cors(&mut response, &origin);
    }
    response
}

fn emulation_prefix(c: &shared::config::Config) -> &str {
    if c.emulation_handler_prefix.is_empty() {
        "/emulation"
    } else {
        &c.emulation_handler_prefix
    }
}

fn cors(response: &mut Response<Body>, origin: &str) {
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The answer to a CORS preflight for a POST endpoint.
pub fn preflight(req: &Request<Incoming>) -> Response<Body> {
    let mut r = empty(StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    r
}

async fn uni_http_stream(req: Request<Incoming>, engine: &Engine) -> Response<Body> {
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return preflight(&req),
        _ => return method_not_allowed("POST"),
    }
    let limit = engine.config.uni_http_stream_max_request_body_size as usize;
    let body = match read_body(req, limit, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = match parse_connect_request(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let session = engine.session_id();
    let first = Event::Connect { session, request, last_event_id: None };
    let r = stream::open(engine, Transport::UniHttpStream, first, "application/x-ndjson", None).await;
    r.map(|b| b.boxed())
}

/// How soon browsers reconnect a dropped uni SSE stream (`retry:`).
const SSE_RETRY_MS: u32 = 1000;

async fn uni_sse(req: Request<Incoming>, engine: &Engine) -> Response<Body> {
    // A reconnecting EventSource sends the last id it saw; clients that cannot set headers
    // may pass it as a query parameter.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(&req, "last_event_id"))
        .filter(|id| !id.is_empty());
    let request = match *req.method() {
        Method::GET => {
            let raw = query_param(&req, "cf_connect").unwrap_or_default();
            match parse_connect_request(raw.as_bytes()) {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("cf_connect: {e}")),
            }
        }
        Method::POST => {
            let limit = engine.config.uni_sse_max_request_body_size as usize;
            let body = match read_body(req, limit, engine).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match parse_connect_request(&body) {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_REQUEST, &e),
            }
        }
        Method::OPTIONS => return preflight(&req),
        _ => return method_not_allowed("GET, POST"),
    };
    let session = engine.session_id();
    let prelude = Some(Bytes::from(format!("\r\nretry: {SSE_RETRY_MS}\n\n")));
    let first = Event::Connect { session, request, last_event_id };
    let r = stream::open(engine, Transport::UniSse, first, "text/event-stream; charset=utf-8", prelude).await;
    r.map(|b| b.boxed())
}

/// Reads a request body of at most `limit` bytes within `engine.timeouts.body`: 413 past
/// the limit, 408 past the time (and the connection closes: the rest of the body is not
/// worth waiting for).
pub async fn read_body(req: Request<Incoming>, limit: usize, engine: &Engine) -> Result<Bytes, Response<Body>> {
    let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body is larger than the limit of {limit} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timeout = engine.timeouts.body;
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(text(StatusCode::BAD_REQUEST, &format!("could not read request body: {e}"))),
        Err(_) => {
            let mut r = text(StatusCode::REQUEST_TIMEOUT, &format!("request body did not arrive within {} ms", timeout.as_millis()));
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("method not allowed, use {allow}"));
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
