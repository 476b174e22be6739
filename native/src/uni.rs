//! The unidirectional endpoints, served without hyper so an idle connection costs little:
//! no read buffer is kept after the request, and the task sleeps until the engine queues a
//! frame or the client goes away. Any request this path does not take (other endpoints,
//! error cases, chunked uploads, …) is handed to hyper with the bytes already read.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use shared::hub::Transport;
use shared::protocol::{parse_connect_request, Disconnect};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::engine::{Engine, Event};
use crate::outbox::{Out, Outbox};
use crate::wsframe::{self, ClientEvent, ClientFrames};

/// Largest request head read here; larger ones go to hyper, which answers them.
const MAX_HEAD: usize = 16 * 1024;
/// A client that does not take a batch of frames within this long is cut off.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const SSE_RETRY_MS: u32 = 1000;

/// What the request head says, owned (the head buffer is dropped before streaming).
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Length of the head in the buffer it was parsed from (the body starts there).
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

enum Route {
    UniHttpStream,
    UniSse,
    UniWebsocket,
}

/// Serves one accepted connection: here if it is a unidirectional stream, else through hyper.
pub async fn serve(mut socket: TcpStream, engine: Engine) {
    // Buffers live on the heap and only while reading: an async fn's locals are part of the
    // task, and a stack array here would be paid by every idle connection.
    let mut buf = Vec::new();
    let head = loop {
        match tokio::time::timeout(Duration::from_secs(30), read_into(&mut socket, &mut buf, 2048)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        match parse_head(&buf) {
            Ok(Some(head)) => break Some(head),
            Ok(None) if buf.len() < MAX_HEAD => continue,
            _ => break None,
        }
    };
    let route = head.as_ref().and_then(|h| route(h, &engine));
    let (Some(head), Some(route)) = (head, route) else {
        return crate::server::serve_hyper(socket, Bytes::from(buf), engine).await;
    };
    let rest = buf.split_off(head.len);
    drop(buf);
    match route {
        Route::UniWebsocket => {
            // Since Centrifugo v6.3 the connect request may also come in the URL.
            let request = match head.query_param("cf_connect").map(|raw| parse_connect_request(raw.as_bytes())) {
                Some(Ok(request)) => Some(request),
                Some(Err(e)) => return respond(&mut socket, "400 Bad Request", &format!("cf_connect: {e}")).await,
                None => None,
            };
            websocket(socket, head, rest, request, engine).await
        }
        Route::UniHttpStream | Route::UniSse => {
            let sse = matches!(route, Route::UniSse);
            let request = if head.method == "GET" {
                head.query_param("cf_connect").unwrap_or_default().into_bytes()
            } else {
                let limit = if sse { engine.config.uni_sse_max_request_body_size } else { engine.config.uni_http_stream_max_request_body_size };
                match read_body(&mut socket, &head, rest, limit as usize).await {
                    Ok(body) => body,
                    Err(Some((status, why))) => return respond(&mut socket, status, &why).await,
                    Err(None) => return,
                }
            };
            let request = match parse_connect_request(&request) {
                Ok(r) => r,
                Err(e) => {
                    let why = if head.method == "GET" { format!("cf_connect: {e}") } else { e };
                    return respond(&mut socket, "400 Bad Request", &why).await;
                }
            };
            let last_event_id = if sse {
                head.header("last-event-id").map(str::to_owned).or_else(|| head.query_param("last_event_id")).filter(|id| !id.is_empty())
            } else {
                None
            };
            let transport = if sse { Transport::UniSse } else { Transport::UniHttpStream };
            let session = engine.session_id();
            let outbox = Arc::new(Outbox::default());
            engine.send(Event::Open { session, transport, conn: outbox.clone() });
            engine.send(Event::Connect { session, request, last_event_id });
            let (content_type, prelude) = if sse {
                ("text/event-stream; charset=utf-8", format!("\r\nretry: {SSE_RETRY_MS}\n\n"))
            } else {
                ("application/x-ndjson", String::new())
            };
            let origin = head.header("origin").map(str::to_owned);
            drop(head);
            // The long-lived part gets a task of its own, sized for streaming alone.
            tokio::spawn(async move {
                let _ = stream(&mut socket, &outbox, content_type, origin.as_deref(), prelude.as_bytes()).await;
                outbox.close();
                engine.send(Event::Closed { session });
            });
        }
    }
}

/// Appends what the socket has (at most `max` bytes) to `buf`.
async fn read_into(socket: &mut TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    loop {
        socket.readable().await?;
        buf.reserve(max);
        let mut limited = (&mut *buf).limit(max);
        match socket.try_read_buf(&mut limited) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Parses a request head: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path,
        query,
        headers: req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        len,
    }))
}

/// Which requests are served here; None hands them to hyper.
fn route(head: &Head, engine: &Engine) -> Option<Route> {
    let c = &engine.config;
    if !shared::origin::allowed(&c.allowed_origins, head.header("origin")) || head.header("transfer-encoding").is_some() {
        return None; // hyper answers the 403, and reads chunked bodies
    }
    match (head.path.as_str(), head.method.as_str()) {
        ("/connection/uni_http_stream", "POST") if c.uni_http_stream => Some(Route::UniHttpStream),
        ("/connection/uni_sse", "GET" | "POST") if c.uni_sse => Some(Route::UniSse),
        ("/connection/uni_websocket", "GET") if c.uni_websocket => {
            let upgrade = head.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            (upgrade && head.header("sec-websocket-key").is_some()).then_some(Route::UniWebsocket)
        }
        _ => None,
    }
}

/// The request body (Content-Length), or the error response to give.
async fn read_body(
    socket: &mut TcpStream,
    head: &Head,
    mut body: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, Option<(&'static str, String)>> {
    let length: usize = match head.header("content-length") {
        Some(v) => v.trim().parse().map_err(|_| Some(("400 Bad Request", "invalid Content-Length".to_owned())))?,
        None => 0,
    };
    if length > limit {
        return Err(Some(("413 Payload Too Large", format!("request body is larger than the limit of {limit} bytes"))));
    }
    if head.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| None)?;
    }
    while body.len() < length {
        let want = length - body.len();
        match tokio::time::timeout(Duration::from_secs(30), read_into(socket, &mut body, want)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Err(None),
        }
    }
    body.truncate(length);
    Ok(body)
}

async fn respond(socket: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn cors_headers(origin: Option<&str>) -> String {
    match origin {
        Some(o) => format!("Access-Control-Allow-Origin: {o}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"),
        None => String::new(),
    }
}

/// Streams the session's frames as a chunked response until the engine closes it or the
/// client goes away.
async fn stream(socket: &mut TcpStream, outbox: &Outbox, content_type: &str, origin: Option<&str>, prelude: &[u8]) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
         Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0\r\nPragma: no-cache\r\nExpires: 0\r\n\
         X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n{}\r\n",
        cors_headers(origin)
    )
    .into_bytes();
    if !prelude.is_empty() {
        chunk(&mut head, &[prelude]);
    }
    socket.write_all(&head).await?;
    drop(head);
    let mut batch = VecDeque::new();
    loop {
        tokio::select! {
            _ = outbox.take(&mut batch) => {
                let mut parts = Vec::with_capacity(batch.len());
                let mut taken = 0;
                let mut closing = false;
                for out in batch.drain(..) {
                    taken += Outbox::frame_len(&out);
                    match out {
                        Out::Data(b) | Out::Ping(b) => parts.push(b),
                        Out::Close(_) => { closing = true; break; }
                    }
                }
                let mut wire = Vec::with_capacity(taken + 16);
                chunk(&mut wire, &parts);
                drop(parts);
                if closing {
                    wire.extend_from_slice(b"0\r\n\r\n");
                }
                write(socket, &wire).await?;
                outbox.written(taken);
                if closing {
                    return socket.shutdown().await;
                }
                batch.shrink_to_fit(); // idle connections keep no queue memory
            }
            ready = socket.readable() => {
                ready?;
                // Clients send nothing after the request: data is ignored, EOF ends the stream.
                let mut sink = [0u8; 64];
                match socket.try_read(&mut sink) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn chunk(out: &mut Vec<u8>, parts: &[impl AsRef<[u8]>]) {
    let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    if len == 0 {
        return;
    }
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
    for p in parts {
        out.extend_from_slice(p.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

async fn write(socket: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    // Most writes fit the socket buffer at once: no timer and no allocation for those.
    let mut written = 0;
    while written < data.len() {
        match socket.try_write(&data[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if written == data.len() {
        return Ok(());
    }
    let data = &data[written..];
    // Boxed: the timer exists only while a write waits, not in every idle connection's task.
    match Box::pin(tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(data))).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read")),
    }
}

/// `/connection/uni_websocket`: the handshake, then the connect request as the first message.
async fn websocket(mut socket: TcpStream, head: Head, rest: Vec<u8>, request: Option<shared::protocol::ConnectRequest>, engine: Engine) {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{}\r\n",
        cors_headers(head.header("origin"))
    );
    drop(head);
    if socket.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let session = engine.session_id();
    let outbox = Arc::new(Outbox::default());
    engine.send(Event::Open { session, transport: Transport::UniWebsocket, conn: outbox.clone() });
    let connected = request.is_some();
    if let Some(request) = request {
        engine.send(Event::Connect { session, request, last_event_id: None });
    }
    let limit = engine.config.uni_websocket_message_size_limit as usize;
    tokio::spawn(async move {
        let _ = websocket_session(&mut socket, &outbox, &engine, session, limit, rest, connected).await;
        outbox.close();
        engine.send(Event::Closed { session });
    });
}

async fn websocket_session(
    socket: &mut TcpStream,
    outbox: &Outbox,
    engine: &Engine,
    session: shared::hub::SessionId,
    limit: usize,
    early: Vec<u8>,
    connected: bool,
) -> io::Result<()> {
    let mut frames = ClientFrames::new(limit);
    if connected {
        frames.skip_first(); // the connect request came in the URL: messages are ignored
    }
    let mut events = Vec::new();
    frames.feed(&early, &mut events);
    drop(early);
    let mut batch = VecDeque::new();
    loop {
        for event in events.drain(..) {
            let mut wire = Vec::new();
            match event {
                ClientEvent::Message(data) => match parse_connect_request(&data) {
                    Ok(request) => engine.send(Event::Connect { session, request, last_event_id: None }),
                    Err(_) => {
                        let d = Disconnect::bad_request();
                        wsframe::close(d.code as u16, &d.reason, &mut wire);
                        return write(socket, &wire).await;
                    }
                },
                ClientEvent::Ping(payload) => {
                    wsframe::header(wsframe::PONG, payload.len(), &mut wire);
                    wire.extend_from_slice(&payload);
                    write(socket, &wire).await?;
                }
                ClientEvent::Close => {
                    wsframe::close(1000, "", &mut wire);
                    return write(socket, &wire).await;
                }
                ClientEvent::TooBig => {
                    wsframe::close(1009, "message too big", &mut wire);
                    return write(socket, &wire).await;
                }
                ClientEvent::ProtocolError => {
                    wsframe::close(1002, "protocol error", &mut wire);
                    return write(socket, &wire).await;
                }
            }
        }
        tokio::select! {
            _ = outbox.take(&mut batch) => {
                let mut wire = Vec::new();
                let mut taken = 0;
                let mut closing = false;
                for out in batch.drain(..) {
                    taken += Outbox::frame_len(&out);
                    match out {
                        Out::Data(b) => {
                            wsframe::header(wsframe::TEXT, b.len(), &mut wire);
                            wire.extend_from_slice(&b);
                        }
                        Out::Ping(b) => {
                            wsframe::header(wsframe::TEXT, b.len(), &mut wire);
                            wire.extend_from_slice(&b);
                            wsframe::header(wsframe::PING, 0, &mut wire);
                        }
                        Out::Close(d) => {
                            wsframe::close(d.code as u16, &d.reason, &mut wire);
                            closing = true;
                            break;
                        }
                    }
                }
                write(socket, &wire).await?;
                outbox.written(taken);
                batch.shrink_to_fit();
                if closing {
                    // Wait briefly for the client's close frame, then hang up.
                    let mut sink = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(2), read_into(socket, &mut sink, 256)).await;
                    return socket.shutdown().await;
                }
            }
            ready = socket.readable() => {
                ready?;
                let mut chunk = [0u8; 1024];
                match socket.try_read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(n) => frames.feed(&chunk[..n], &mut events),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
