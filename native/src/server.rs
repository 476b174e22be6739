//! Accepts connections and routes requests to the transports and the API. Every connection
//! goes through the front door (`front_door.rs`), which serves the unidirectional endpoints
//! itself; hyper serves what it gives back, routed here.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::http::Decision;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::Engine;
use crate::front_door::{self, ForHyper};
use crate::http::{answer, text, Body};
use crate::{admin, emulation, http_api, stream, ws};

pub async fn serve(listener: TcpListener, engine: Engine) {
    loop {
        let (socket, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Some(ForHyper { socket, read }) = front_door::serve(socket, &engine).await {
                serve_hyper(socket, read, engine).await;
            }
        });
    }
}

/// Serves a connection with hyper; `read` is what the front door already read from it (a
/// complete request head, and maybe more).
async fn serve_hyper(socket: TcpStream, read: Bytes, engine: Engine) {
    let timeouts = engine.timeouts;
    let peer = socket.peer_addr().ok().map(|a| a.ip());
    let service = service_fn(move |req| {
        let engine = engine.clone();
        async move { Ok::<_, Infallible>(route(req, engine, peer).await) }
    });
    let io = TokioIo::new(ClientSocket::new(socket, read, timeouts.write));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.keep_alive)
        .max_buf_size(shared::http::MAX_HEAD)
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
            Poll::Ready(()) => {
                Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read"))
            }
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

/// A hyper request's headers as the endpoint layer reads them.
pub struct HyperHeaders<'a>(pub &'a http::HeaderMap);

impl shared::http::Headers for HyperHeaders<'_> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(HeaderValue::as_bytes)
    }
    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.0.get_all(name).iter().map(HeaderValue::as_bytes).collect()
    }
}

/// Asks the endpoint layer what the request is, and does it. `peer`: the client's address.
async fn route(req: Request<Incoming>, engine: Engine, peer: Option<IpAddr>) -> Response<Body> {
    let routed = {
        let headers = HyperHeaders(req.headers());
        let (method, path, query) = (req.method().as_str(), req.uri().path(), req.uri().query());
        let view = shared::http::Request { method, path, query, headers: &headers };
        shared::http::decide(&engine.config, &engine.endpoints, &view)
    };
    let cors = routed.cors();
    let mut response = match routed.decision {
        Decision::Api(call) => http_api::handle(req, engine, call).await,
        Decision::AdminLogin(login) => admin::login(req, &engine, login, peer).await,
        Decision::AdminApi(call) => admin::api(req, &engine, call).await,
        Decision::Stream(open) => stream::serve(req, &engine, open).await,
        Decision::Upgrade(upgrade) => ws::upgrade(req, &engine, upgrade),
        Decision::Emulation(call) => emulation::emulation(req, &engine, call).await,
        // Healthy only when the engine answers: a wedged engine must not look alive.
        Decision::Health if engine.healthy(Duration::from_secs(1)).await => text(StatusCode::OK, "{}"),
        Decision::Health => {
            tracing::error!("health check: the engine did not answer within 1 s");
            text(StatusCode::SERVICE_UNAVAILABLE, "engine did not answer within 1 s")
        }
        Decision::Metrics { .. } => match engine.metrics(Duration::from_secs(1)).await {
            Some(snapshot) => {
                let mut r = Response::new(http_body_util::BodyExt::boxed(http_body_util::Full::new(Bytes::from(
                    crate::metrics::render(&snapshot),
                ))));
                r.headers_mut()
                    .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
                r
            }
            None => text(StatusCode::SERVICE_UNAVAILABLE, "engine did not answer within 1 s"),
        },
        Decision::Answer(a) => answer(a),
    };
    let h = response.headers_mut();
    for (name, value) in cors {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
    response
}
