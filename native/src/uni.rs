//! The unidirectional endpoints, served without hyper so an idle connection costs little:
//! no read buffer is kept after the request, and the task sleeps until the engine queues a
//! frame or the client goes away. Any request this path does not take (other endpoints,
//! error cases, chunked uploads, …) is handed to hyper with the bytes already read.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{BufMut, Bytes};
use shared::hub::Transport;
use shared::protocol::{parse_connect_request, Disconnect};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::engine::{Engine, Event};
use crate::outbox::{Out, Outbox};
use crate::wsframe::{self, ClientEvent, ClientFrames};

/// Largest request head taken, here and by hyper on later keep-alive requests (Go allows
/// 1 MiB, nginx 4 × 8 KiB lines; long tokens in `cf_connect` need more than 8 KiB).
pub const MAX_HEAD: usize = 64 * 1024;
const SSE_RETRY_MS: u32 = 1000;

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

    /// The body length the head declares: digits only, and every `Content-Length` the same
    /// (`+5`, `-1`, `5, 5` and two different values are refused: RFC 9110 §8.6 asks for
    /// digits, and disagreeing lengths are how requests get smuggled).
    pub fn content_length(&self) -> Result<u64, String> {
        let mut length = None;
        for (_, v) in self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
            let digits = v.trim_ascii();
            let parsed = (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| format!("invalid Content-Length {:?}", String::from_utf8_lossy(v)))?;
            if length.is_some_and(|l| l != parsed) {
                return Err("conflicting Content-Length headers".to_owned());
            }
            length = Some(parsed);
        }
        Ok(length.unwrap_or(0))
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
    let mut end = HeadEnd::default();
    // One deadline for the whole head, however it trickles in.
    let timeouts = engine.timeouts;
    let deadline = Instant::now() + timeouts.head;
    let head = loop {
        match tokio::time::timeout_at(deadline, read_into(&mut socket, &mut buf, 2048)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
            // A connection that never sent anything is closed without a word, like Go's.
            Err(_) if buf.is_empty() => return,
            Err(_) => {
                let why = format!("request head did not arrive within {} ms", timeouts.head.as_millis());
                return respond(&mut socket, "408 Request Timeout", &why, timeouts.write).await;
            }
        }
        if !end.found(&buf) {
            if buf.len() < MAX_HEAD {
                continue;
            }
            let why = format!("request head is larger than {MAX_HEAD} bytes");
            return respond(&mut socket, "431 Request Header Fields Too Large", &why, timeouts.write).await;
        }
        // Malformed, or a head httparse reads differently: hyper answers it.
        break parse_head(&buf).ok().flatten();
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
                Some(Err(e)) => return respond(&mut socket, "400 Bad Request", &format!("cf_connect: {e}"), timeouts.write).await,
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
                match read_body(&mut socket, &head, rest, limit as usize, timeouts.body).await {
                    Ok(body) => body,
                    Err(Some((status, why))) => return respond(&mut socket, status, &why, timeouts.write).await,
                    Err(None) => return,
                }
            };
            let request = match parse_connect_request(&request) {
                Ok(r) => r,
                Err(e) => {
                    let why = if head.method == "GET" { format!("cf_connect: {e}") } else { e };
                    return respond(&mut socket, "400 Bad Request", &why, timeouts.write).await;
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
            engine.send(Event::Open { session, transport, conn: outbox.clone() }).await;
            engine.send(Event::Connect { session, request, last_event_id }).await;
            let (content_type, prelude) = if sse {
                ("text/event-stream; charset=utf-8", format!("\r\nretry: {SSE_RETRY_MS}\n\n"))
            } else {
                ("application/x-ndjson", String::new())
            };
            let origin = head.header("origin").map(str::to_owned);
            drop(head);
            // The long-lived part gets a task of its own, sized for streaming alone.
            tokio::spawn(async move {
                let write_timeout = engine.timeouts.write;
                let _ = stream(&mut socket, &outbox, content_type, origin.as_deref(), prelude.as_bytes(), write_timeout).await;
                outbox.close();
                engine.closed(session);
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

/// Which requests are served here; None hands them to hyper.
fn route(head: &Head, engine: &Engine) -> Option<Route> {
    let c = &engine.config;
    // An Origin that is not UTF-8 is refused like a disallowed one (by hyper, with the 403).
    let origin = match head.raw_header("origin").map(std::str::from_utf8) {
        Some(Ok(origin)) => Some(origin),
        Some(Err(_)) => return None,
        None => None,
    };
    if !shared::origin::allowed(&c.allowed_origins, origin) || head.raw_header("transfer-encoding").is_some() {
        return None; // hyper answers the 403, and reads chunked bodies
    }
    match (head.path.as_str(), head.method.as_str()) {
        ("/connection/uni_http_stream", "POST") if c.uni_http_stream => Some(Route::UniHttpStream),
        ("/connection/uni_sse", "GET" | "POST") if c.uni_sse => Some(Route::UniSse),
        ("/connection/uni_websocket", "GET") if c.uni_websocket => {
            let upgrade = head.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            let version = head.header("sec-websocket-version").is_some_and(|v| v.trim() == "13");
            // Anything else gets hyper's answer (400, or 426 naming version 13).
            (upgrade && version && head.header("sec-websocket-key").is_some()).then_some(Route::UniWebsocket)
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
    timeout: Duration,
) -> Result<Vec<u8>, Option<(&'static str, String)>> {
    let length = head.content_length().map_err(|why| Some(("400 Bad Request", why)))?;
    if length > limit as u64 {
        return Err(Some(("413 Payload Too Large", format!("request body is larger than the limit of {limit} bytes"))));
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
            Err(_) => {
                return Err(Some(("408 Request Timeout", format!("request body did not arrive within {} ms", timeout.as_millis()))))
            }
        }
    }
    body.truncate(length);
    Ok(body)
}

async fn respond(socket: &mut TcpStream, status: &str, body: &str, write_timeout: Duration) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if write(socket, response.as_bytes(), write_timeout).await.is_ok() {
        let _ = socket.shutdown().await;
    }
}

fn cors_headers(origin: Option<&str>) -> String {
    match origin {
        Some(o) => format!("Access-Control-Allow-Origin: {o}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"),
        None => String::new(),
    }
}

/// Streams the session's frames as a chunked response until the engine closes it or the
/// client goes away.
async fn stream(
    socket: &mut TcpStream,
    outbox: &Outbox,
    content_type: &str,
    origin: Option<&str>,
    prelude: &[u8],
    write_timeout: Duration,
) -> io::Result<()> {
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
                if closing {
                    wire.extend_from_slice(b"0\r\n\r\n");
                }
                write(socket, &wire, write_timeout).await?;
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

/// `/connection/uni_websocket`: the handshake, then the connect request as the first message.
async fn websocket(mut socket: TcpStream, head: Head, rest: Vec<u8>, request: Option<shared::protocol::ConnectRequest>, engine: Engine) {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{}\r\n",
        cors_headers(head.header("origin"))
    );
    drop(head);
    let timeouts = engine.timeouts;
    if write(&mut socket, response.as_bytes(), timeouts.write).await.is_err() {
        return;
    }
    let session = engine.session_id();
    let outbox = Arc::new(Outbox::default());
    engine.send(Event::Open { session, transport: Transport::UniWebsocket, conn: outbox.clone() }).await;
    let connected = request.is_some();
    if let Some(request) = request {
        engine.send(Event::Connect { session, request, last_event_id: None }).await;
    }
    let limit = engine.config.uni_websocket_message_size_limit as usize;
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
                ClientEvent::Message(data) => match parse_connect_request(&data) {
                    Ok(request) => engine.send(Event::Connect { session, request, last_event_id: None }).await,
                    Err(_) => return Ok(Some(Closing::Server(Disconnect::bad_request()))),
                },
                ClientEvent::Ping(payload) => {
                    let mut wire = Vec::new();
                    wsframe::header(wsframe::PONG, payload.len(), &mut wire);
                    wire.extend_from_slice(&payload);
                    write(socket, &wire, write_timeout).await?;
                }
                ClientEvent::Close(code) => return Ok(Some(Closing::Echo(code))),
                ClientEvent::TooBig => return Ok(Some(Closing::Server(Disconnect::new(1009, "message too big")))),
                ClientEvent::ProtocolError => return Ok(Some(Closing::Server(Disconnect::new(1002, "protocol error")))),
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
