//! WebSocket transports served through hyper: bidirectional (JSON or Protobuf) always, and
//! unidirectional when the upgrade comes on a kept-alive connection (a connection's first
//! request is served leanly by `front_door.rs`). Both take the endpoint layer's decision.
//!
//! One task per connection reads, writes and closes; whichever way the connection ends, the
//! task ends with it and drops the socket, and the engine hears `Closed` exactly once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use shared::http::Upgrade;
use shared::hub::{SessionId, Transport};
use shared::protocol::{ConnectRequest, Disconnect, Encoding};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::engine::{Engine, Event, SessionGuard};
use crate::http::{empty, Body};
use crate::outbox::{Out, Outbox};

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Accepts an upgrade the endpoint layer decided on, and spawns the session once the
/// connection is upgraded.
pub fn upgrade(req: Request<Incoming>, engine: &Engine, upgrade: Upgrade) -> Response<Body> {
    let accept = derive_accept_key(upgrade.key.as_bytes());
    let (transport, limit, url_connect) = (upgrade.transport, upgrade.message_limit, upgrade.connect);
    let headers = upgrade.headers;
    let engine = engine.clone();
    // Ends once the upgrade fails (the connection ended before it) or the session ends.
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        run(socket, engine, transport, url_connect, headers).await;
    });
    let mut r = empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(p) = upgrade.protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    r
}

/// How a session ended, and so what is left of the close handshake.
enum Ending {
    /// The client sent a close frame: the reply tungstenite queued (its code echoed) goes out.
    ClientClosed,
    /// The server closes: this close frame goes out and the client's answer is awaited.
    Close(Disconnect),
    /// The connection is gone (EOF, reset, a write failed or timed out): nothing to send.
    Gone,
}

async fn run(
    mut socket: Socket,
    engine: Engine,
    transport: Transport,
    url_connect: Option<ConnectRequest>,
    headers: Vec<(String, String)>,
) {
    let session = engine.session_id();
    let outbox = Arc::new(Outbox::default());
    engine.send(Event::Open { session, transport, conn: outbox.clone(), headers }).await;
    // Tells the engine the session ended, on every path out of here.
    let guard = SessionGuard::new(engine.clone(), session);
    if let Some(request) = url_connect {
        engine.send(Event::Connect { session, request, last_event_id: None }).await;
    }
    let ending = serve(&mut socket, &engine, session, &outbox, transport).await;
    outbox.close();
    drop(guard); // the engine can forget the session while the handshake finishes
                 // Bounded: a client that never answers the close, or never reads it, is dropped.
    let _ = tokio::time::timeout(engine.timeouts.close, async {
        match ending {
            Ending::ClientClosed => {
                // The sink's close (not the stream's `close`, which would send a second close
                // frame and fail) flushes the reply tungstenite queued.
                let _ = SinkExt::close(&mut socket).await;
            }
            Ending::Close(disconnect) => {
                let (code, reason) = disconnect.websocket_close();
                let frame = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason.to_owned()) };
                if socket.send(Message::Close(Some(frame))).await.is_ok() {
                    // Until the client's close frame (then tungstenite ends the stream).
                    while let Some(Ok(_)) = socket.next().await {}
                }
            }
            Ending::Gone => {}
        }
    })
    .await;
    // Dropping the socket closes the connection.
}

/// Reads client frames and writes the session's until the connection ends. While the engine
/// has not taken the last frame read, nothing more is read (backpressure), but writing goes on.
/// Every message goes to the hub, which takes a uni WebSocket's first as its connect request.
async fn serve(
    socket: &mut Socket,
    engine: &Engine,
    session: SessionId,
    outbox: &Outbox,
    transport: Transport,
) -> Ending {
    let unidirectional = transport.is_unidirectional();
    let binary = matches!(transport, Transport::Websocket(Encoding::Protobuf));
    let mut batch = VecDeque::new();
    let mut admitting: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    loop {
        tokio::select! {
            () = std::future::poll_fn(|cx| match admitting.as_mut() {
                Some(send) => send.as_mut().poll(cx),
                None => Poll::Pending,
            }), if admitting.is_some() => admitting = None,
            msg = socket.next(), if admitting.is_none() => {
                let data: Bytes = match msg {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(_))) => return Ending::ClientClosed,
                    Some(Ok(_)) => continue, // pings are answered by tungstenite; pongs need nothing
                    Some(Err(tungstenite::Error::Capacity(_))) => return Ending::Close(Disconnect::new(1009, "message too big")),
                    Some(Err(tungstenite::Error::Utf8(_))) => return Ending::Close(Disconnect::new(1007, "text message is not UTF-8")),
                    Some(Err(tungstenite::Error::Protocol(_))) => return Ending::Close(Disconnect::new(1002, "protocol error")),
                    Some(Err(_)) | None => return Ending::Gone,
                };
                admitting = Some(Box::pin(engine.send(Event::Frame { session, data })));
            }
            () = outbox.take(&mut batch) => {
                if let Some(ending) = write(socket, &mut batch, outbox, binary, unidirectional).await {
                    return ending;
                }
            }
        }
    }
}

/// Writes a batch of frames in one flush; Some when the session ends with it. The socket's
/// write deadline bounds how long a client that does not read can hold this.
async fn write(
    socket: &mut Socket,
    batch: &mut VecDeque<Out>,
    outbox: &Outbox,
    binary: bool,
    unidirectional: bool,
) -> Option<Ending> {
    let mut ending = None;
    let mut taken = 0;
    while let Some(out) = batch.pop_front() {
        taken += Outbox::frame_len(&out);
        let result = match out {
            Out::Data(data) => socket.feed(message(data, binary)).await,
            Out::Ping(data) => match socket.feed(message(data, binary)).await {
                Ok(()) if unidirectional => socket.feed(Message::Ping(Bytes::new())).await,
                r => r,
            },
            Out::Close(d) => {
                ending = Some(Ending::Close(d));
                break;
            }
        };
        if result.is_err() {
            return Some(Ending::Gone);
        }
    }
    batch.clear();
    batch.shrink_to_fit(); // an idle connection keeps no queue memory
    if socket.flush().await.is_err() {
        return Some(Ending::Gone);
    }
    outbox.written(taken);
    ending
}

fn message(data: Bytes, binary: bool) -> Message {
    if binary {
        return Message::Binary(data);
    }
    match Utf8Bytes::try_from(data) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Text(Utf8Bytes::from_static("")),
    }
}
