//! WebSocket transports: bidirectional (`/connection/websocket`, JSON or Protobuf) and
//! unidirectional (`/connection/uni_websocket`, connect request as the first message).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use shared::hub::Transport;
use shared::protocol::{parse_connect_request, websocket_encoding, Disconnect, Encoding};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::engine::{Engine, Event};
use crate::outbox::{Out, Outbox};
use crate::server::{query_param, text, Body};

/// Answers the upgrade request and spawns the session once the connection is upgraded.
pub fn upgrade(req: Request<Incoming>, engine: &Engine, unidirectional: bool) -> Response<Body> {
    let h = req.headers();
    let is_upgrade = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_upgrade) else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade request");
    };
    let accept = derive_accept_key(key.as_bytes());
    let offered = h.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
    let format = query_param(&req, "format").or_else(|| query_param(&req, "cf_protocol"));
    let (encoding, echo) = websocket_encoding(offered, format.as_deref(), unidirectional);
    let c = &engine.config;
    let limit = if unidirectional { c.uni_websocket_message_size_limit } else { c.websocket_message_size_limit } as usize;
    let transport = if unidirectional { Transport::UniWebsocket } else { Transport::Websocket(encoding) };
    let engine = engine.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        run(socket, engine, transport).await;
    });
    let mut r = crate::server::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    if let Some(p) = echo {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    r
}

async fn run(socket: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, engine: Engine, transport: Transport) {
    let session = engine.session_id();
    let outbox = Arc::new(Outbox::default());
    let local = outbox.clone();
    engine.send(Event::Open { session, transport, conn: outbox.clone() });
    let (mut sink, mut stream) = socket.split();
    let unidirectional = transport.is_unidirectional();
    let binary = matches!(transport, Transport::Websocket(Encoding::Protobuf));

    let writer = tokio::spawn(async move {
        let mut batch = VecDeque::new();
        'write: loop {
            outbox.take(&mut batch).await;
            while let Some(out) = batch.pop_front() {
                let len = Outbox::frame_len(&out);
                let result = match out {
                    Out::Data(data) => sink.feed(message(data, binary)).await,
                    Out::Ping(data) => {
                        let r = sink.feed(message(data, binary)).await;
                        if unidirectional && r.is_ok() {
                            sink.feed(Message::Ping(Bytes::new())).await
                        } else {
                            r
                        }
                    }
                    Out::Close(d) => {
                        let frame = CloseFrame { code: CloseCode::from(d.code as u16), reason: Utf8Bytes::from(d.reason) };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break 'write;
                    }
                };
                outbox.written(len);
                if result.is_err() {
                    break 'write;
                }
            }
            // Everything taken goes out in one flush.
            if sink.flush().await.is_err() {
                break;
            }
        }
        outbox.close();
        let _ = sink.close().await;
    });

    let mut connected = false;
    while let Some(msg) = stream.next().await {
        let data: Bytes = match msg {
            Ok(Message::Text(t)) => Bytes::from(t),
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue, // pings are answered by tungstenite; pongs need nothing
            Err(tungstenite::Error::Capacity(_)) => {
                local.push(Out::Close(Disconnect::new(1009, "message too big")));
                break;
            }
            Err(_) => break,
        };
        if !unidirectional {
            engine.send(Event::Frame { session, data });
        } else if !connected {
            // The first message is the connect request; later ones are read and dropped.
            connected = true;
            match parse_connect_request(&data) {
                Ok(request) => engine.send(Event::Connect { session, request, last_event_id: None }),
                Err(_) => {
                    local.push(Out::Close(Disconnect::bad_request()));
                    break;
                }
            }
        }
    }
    engine.send(Event::Closed { session });
    drop(local);
    // Let the writer send a pending close frame, but never wait forever on a dead peer.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
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
