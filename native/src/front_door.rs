//! The front door of every connection: reads the first request head and asks the endpoint
//! layer what it is. The unidirectional endpoints are served here, without hyper, so an idle
//! connection costs little: no read buffer is kept after the request, and the task sleeps
//! until the engine queues a frame or the client goes away. Every other request (and a
//! chunked upload, whose body hyper decodes) is given back with the bytes already read
//! ([`ForHyper`]); `server.rs` has hyper serve it, and the connection's later requests, from
//! the same decisions.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{BufMut, Bytes};
use shared::http::{Answer, Decision, Endpoint, FirstInput, StreamInput, StreamOpen, Upgrade};
use shared::protocol::Disconnect;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::engine::{Engine, Event};
use crate::outbox::{Out, Outbox};
use crate::wsframe::{self, ClientEvent, ClientFrames};

/// Largest request head taken, here and by hyper on later keep-alive requests.
pub use shared::http::MAX_HEAD;

/// What the request head says, owned (the head buffer is dropped before streaming).
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Values as sent: a value that is not UTF-8 reads as absent through [`Head::header`].
    pub headers: Vec<(String, Vec<u8>)>,
    /// Length of the head in the buffer it was parsed from (the body starts there).
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw_header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn raw_header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// A connection the front door does not serve itself: hyper takes it from here.
pub struct ForHyper {
    pub socket: TcpStream,
    /// What was read from the socket: a complete request head, and maybe more.
    pub read: Bytes,
}

/// Serves one accepted connection if it is a unidirectional stream; else gives it back for
/// hyper.
pub async fn serve(mut socket: TcpStream, engine: &Engine) -> Option<ForHyper> {
    // Buffers live on the heap and only while reading: an async fn's locals are part of the
    // task, and a stack array here would be paid by every idle connection.
    let mut buf = Vec::new();
    let mut end = HeadEnd::default();
    // One deadline for the whole head, however it trickles in.
    let timeouts = engine.timeouts;
    let deadline = Instant::now() + timeouts.head;
    let head = loop {
        match tokio::time::timeout_at(deadline, read_into(&mut socket, &mut buf, 2048)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            // A connection that never sent anything is closed without a word, like Go's.
            Err(_) if buf.is_empty() => return None,
            Err(_) => {
                respond(&mut socket, &Answer::head_timeout(timeouts.head.as_millis()), "", timeouts.write).await;
                return None;
            }
        }
        if !end.found(&buf) {
            if buf.len() < MAX_HEAD {
                continue;
            }
            respond(&mut socket, &Answer::head_too_large(), "", timeouts.write).await;
            return None;
        }
        // Malformed, or a head httparse reads differently: hyper answers it.
        break parse_head(&buf).ok().flatten();
    };
    let Some(head) = head else {
        return Some(ForHyper { socket, read: Bytes::from(buf) });
    };
    let routed = {
        let view = shared::http::Request {
            method: &head.method,
            path: &head.path,
            query: head.query.as_deref(),
            headers: &head.headers,
        };
        shared::http::decide(&engine.config, &engine.endpoints, &view)
    };
    let chunked = head.raw_header("transfer-encoding").is_some();
    let here = routed.endpoint.is_some_and(Endpoint::is_unidirectional)
        && !(chunked && matches!(&routed.decision, Decision::Stream(StreamOpen { input: StreamInput::Body(_), .. })));
    if !here {
        return Some(ForHyper { socket, read: Bytes::from(buf) });
    }
    let rest = buf.split_off(head.len);
    drop(buf);
    let cors = cors_headers(&routed.cors());
    match routed.decision {
        Decision::Answer(answer) => respond(&mut socket, &answer, &cors, timeouts.write).await,
        Decision::Upgrade(upgrade) => websocket(socket, head, upgrade, cors, rest, engine.clone()).await,
        Decision::Stream(open) => {
            let input = match open.input {
                StreamInput::Ready(input) => input,
                StreamInput::Body(rule) => {
                    let body = match read_body(&mut socket, &head, rest, rule, timeouts.body).await {
                        Ok(body) => body,
                        Err(Some(answer)) => {
                            respond(&mut socket, &answer, &cors, timeouts.write).await;
                            return None;
                        }
                        Err(None) => return None,
                    };
                    match FirstInput::from_body(open.transport, Bytes::from(body)) {
                        Ok(input) => input,
                        Err(answer) => {
                            respond(&mut socket, &answer, &cors, timeouts.write).await;
                            return None;
                        }
                    }
                }
            };
            drop(head);
            let session = engine.session_id();
            let outbox = Arc::new(Outbox::default());
            let headers = open.headers;
            engine.send(Event::Open { session, transport: open.transport, conn: outbox.clone(), headers }).await;
            engine.send(crate::stream::first_event(session, input, open.last_event_id)).await;
            let (content_type, prelude) = (open.content_type, open.prelude);
            // The long-lived part gets a task of its own, sized for streaming alone.
            let engine = engine.clone();
            tokio::spawn(async move {
                let write_timeout = engine.timeouts.write;
                let _ = stream(&mut socket, &outbox, content_type, &cors, &prelude, write_timeout).await;
                outbox.close();
                engine.closed(session);
            });
        }
        // Not for the unidirectional endpoints.
        Decision::Api(_)
        | Decision::Emulation(_)
        | Decision::Health
        | Decision::AdminLogin(_)
        | Decision::AdminApi(_)
        | Decision::Metrics { .. } => {}
    }
    None
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

/// Finds the empty line that ends a request head as bytes arrive, looking at each byte once
/// (parsing the whole buffer after every read would cost quadratic time on a trickled head).
/// Empty lines before the request line do not count, as httparse skips them.
#[derive(Default)]
pub struct HeadEnd {
    started: bool,
    scanned: usize,
}

impl HeadEnd {
    pub fn found(&mut self, buf: &[u8]) -> bool {
        while let Some(&b) = buf.get(self.scanned) {
            let before = &buf[..self.scanned];
            self.scanned += 1;
            if !self.started {
                self.started = b != b'\r' && b != b'\n';
            } else if b == b'\n' && (before.ends_with(b"\n") || before.ends_with(b"\n\r")) {
                return true;
            }
        }
        false
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
        headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
        len,
    }))
}

/// The request body (Content-Length), or the layer's answer to give (None: the client left).
async fn read_body(
    socket: &mut TcpStream,
    head: &Head,
    mut body: Vec<u8>,
    rule: shared::http::Body,
    timeout: Duration,
) -> Result<Vec<u8>, Option<Answer>> {
    let length = shared::http::content_length(&head.headers).map_err(Some)?.unwrap_or(0);
    if length > rule.limit as u64 {
        return Err(Some(rule.too_large()));
    }
    let length = length as usize; // at most `limit`
    if head.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| None)?;
    }
    // One deadline for the whole body, however it trickles in.
    let deadline = Instant::now() + timeout;
    while body.len() < length {
        let want = length - body.len();
        match tokio::time::timeout_at(deadline, read_into(socket, &mut body, want)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err(None),
            Err(_) => return Err(Some(Answer::body_timeout(timeout.as_millis()))),
        }
    }
    body.truncate(length);
    Ok(body)
}

/// Sends the layer's answer, and ends the connection.
async fn respond(socket: &mut TcpStream, answer: &Answer, cors: &str, write_timeout: Duration) {
    let reason = http::StatusCode::from_u16(answer.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut response = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in answer.headers.iter().filter(|(name, _)| *name != "connection") {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "{cors}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.body.len(),
        answer.body
    ));
    if write(socket, response.as_bytes(), write_timeout).await.is_ok() {
        let _ = socket.shutdown().await;
    }
}

/// The CORS header lines of a response.
fn cors_headers(cors: &[(&'static str, String)]) -> String {
    cors.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect()
}

/// Streams the session's frames as a chunked response until the engine closes it or the
/// client goes away.
async fn stream(
    socket: &mut TcpStream,
    outbox: &Outbox,
    content_type: &str,
    cors: &str,
    prelude: &[u8],
    write_timeout: Duration,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
         Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0\r\nPragma: no-cache\r\nExpires: 0\r\n\
         X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n{cors}\r\n"
    )
    .into_bytes();
    if !prelude.is_empty() {
        chunk(&mut head, &[prelude]);
    }
    write(socket, &head, write_timeout).await?;
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
                write(socket, &wire, write_timeout).await?;
                outbox.written(taken);
                if closing {
                    // The end a moment after the last push, as on every stream (see the
                    // constant's docs).
                    tokio::time::sleep(Duration::from_millis(shared::http::STREAM_END_LINGER_MS)).await;
                    write(socket, b"0\r\n\r\n", write_timeout).await?;
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

/// Writes `data`, waiting for the client at most `timeout` (then it is cut off).
async fn write(socket: &mut TcpStream, data: &[u8], timeout: Duration) -> io::Result<()> {
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
    match Box::pin(tokio::time::timeout(timeout, socket.write_all(data))).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read")),
    }
}

/// A uni WebSocket: the handshake, then the session. Only the first message is delivered (the
/// hub takes it as the connect request; later ones are dropped unread, so none is buffered).
async fn websocket(mut socket: TcpStream, head: Head, upgrade: Upgrade, cors: String, rest: Vec<u8>, engine: Engine) {
    drop(head);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(upgrade.key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{cors}\r\n"
    );
    let timeouts = engine.timeouts;
    if write(&mut socket, response.as_bytes(), timeouts.write).await.is_err() {
        return;
    }
    let session = engine.session_id();
    let outbox = Arc::new(Outbox::default());
    let headers = upgrade.headers;
    engine.send(Event::Open { session, transport: upgrade.transport, conn: outbox.clone(), headers }).await;
    let connected = upgrade.connect.is_some();
    if let Some(request) = upgrade.connect {
        engine.send(Event::Connect { session, request, last_event_id: None }).await;
    }
    let limit = upgrade.message_limit;
    tokio::spawn(async move {
        let mut frames = ClientFrames::new(limit);
        if connected {
            frames.skip_first(); // the connect request came in the URL: messages are ignored
        }
        let ending = websocket_session(&mut socket, &outbox, &engine, session, &mut frames, rest).await;
        outbox.close();
        engine.closed(session);
        if let Ok(Some(close)) = ending {
            // Bounded: a client that never reads the close, or never answers it, is dropped.
            let _ = tokio::time::timeout(timeouts.close, close_handshake(&mut socket, &mut frames, &close)).await;
        }
        // Dropping the socket closes the connection.
    });
}

/// How the server's side of a uni WebSocket ends: the close frame to send, if any.
enum Closing {
    /// The client closed: its code goes back (RFC 6455 §5.5.1), or no code if it sent none.
    Echo(Option<u16>),
    /// The server closes and waits for the client's answer.
    Server(Disconnect),
}

/// Sends the close frame; after a server close, reads until the client's close frame or EOF.
async fn close_handshake(socket: &mut TcpStream, frames: &mut ClientFrames, close: &Closing) -> io::Result<()> {
    let mut wire = Vec::new();
    match close {
        Closing::Echo(Some(code)) => wsframe::close(&Disconnect::new(u32::from(*code), ""), &mut wire),
        Closing::Echo(None) => wsframe::header(wsframe::CLOSE, 0, &mut wire),
        Closing::Server(d) => wsframe::close(d, &mut wire),
    }
    socket.write_all(&wire).await?;
    if matches!(close, Closing::Server(_)) {
        let mut events = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            socket.readable().await?;
            match socket.try_read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => frames.feed(&chunk[..n], &mut events),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            if events.drain(..).any(|e| matches!(e, ClientEvent::Close(_) | ClientEvent::ProtocolError)) {
                break;
            }
        }
    }
    socket.shutdown().await
}

/// Serves the session until it ends; the close frame still to send, if any.
async fn websocket_session(
    socket: &mut TcpStream,
    outbox: &Outbox,
    engine: &Engine,
    session: shared::hub::SessionId,
    frames: &mut ClientFrames,
    early: Vec<u8>,
) -> io::Result<Option<Closing>> {
    let write_timeout = engine.timeouts.write;
    let mut events = Vec::new();
    frames.feed(&early, &mut events);
    drop(early);
    let mut batch = VecDeque::new();
    loop {
        for event in events.drain(..) {
            match event {
                ClientEvent::Message(data) => engine.send(Event::Frame { session, data: Bytes::from(data) }).await,
                ClientEvent::Ping(payload) => {
                    let mut wire = Vec::new();
                    wsframe::header(wsframe::PONG, payload.len(), &mut wire);
                    wire.extend_from_slice(&payload);
                    write(socket, &wire, write_timeout).await?;
                }
                ClientEvent::Close(code) => return Ok(Some(Closing::Echo(code))),
                ClientEvent::TooBig => return Ok(Some(Closing::Server(Disconnect::new(1009, "message too big")))),
                ClientEvent::ProtocolError => {
                    return Ok(Some(Closing::Server(Disconnect::new(1002, "protocol error"))))
                }
            }
        }
        tokio::select! {
            _ = outbox.take(&mut batch) => {
                let mut wire = Vec::new();
                let mut taken = 0;
                let mut closing = None;
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
                            closing = Some(Closing::Server(d));
                            break;
                        }
                    }
                }
                write(socket, &wire, write_timeout).await?;
                outbox.written(taken);
                batch.shrink_to_fit();
                if closing.is_some() {
                    return Ok(closing);
                }
            }
            ready = socket.readable() => {
                ready?;
                let mut chunk = [0u8; 1024];
                match socket.try_read(&mut chunk) {
                    Ok(0) => return Ok(None),
                    Ok(n) => frames.feed(&chunk[..n], &mut events),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}
