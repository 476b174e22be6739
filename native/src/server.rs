//! Accepts connections and routes requests to the transports and the API.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shared::hub::Transport;
use shared::protocol::parse_connect_request;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::{Engine, Event};
use crate::{api, emulation, stream, ws};

pub type Body = BoxBody<Bytes, Infallible>;

pub async fn serve(listener: TcpListener, engine: Engine) {
    loop {
        let (socket, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("rotor: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(crate::uni::serve(socket, engine.clone()));
    }
}

/// Serves a connection with hyper; `read` is what was already read from it.
pub async fn serve_hyper(socket: TcpStream, read: Bytes, engine: Engine) {
    let service = service_fn(move |req| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(route(req, engine).await) }
    });
    let io = TokioIo::new(Prefixed { prefix: read, inner: socket });
    let _ = hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(io, service).with_upgrades().await;
}

/// A socket whose first bytes were already read: they are read again first.
struct Prefixed {
    prefix: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
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

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
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
        "/health" => text(StatusCode::OK, "{}"),
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
    let body = match read_body(req, limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let request = match parse_connect_request(&body) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    let session = engine.session_id();
    let first = Event::Connect { session, request, last_event_id: None };
    let r = stream::open(engine, Transport::UniHttpStream, first, "application/x-ndjson", None);
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
            let body = match read_body(req, limit).await {
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
    let r = stream::open(engine, Transport::UniSse, first, "text/event-stream; charset=utf-8", prelude);
    r.map(|b| b.boxed())
}

/// Reads a request body of at most `limit` bytes: 413 past it.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Response<Body>> {
    let too_large = || text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body is larger than the limit of {limit} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(text(StatusCode::BAD_REQUEST, &format!("could not read request body: {e}"))),
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
