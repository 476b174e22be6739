//! The client transports of a node object: streaming responses (uni HTTP stream, uni SSE,
//! HTTP-stream and SSE emulation), emulation requests, and WebSocket upgrades, as the
//! endpoint layer decided them.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_channel::mpsc::{unbounded, UnboundedReceiver};
use futures_util::Stream;
use shared::http::{FirstInput, StreamInput, StreamOpen, Upgrade};
use shared::hub::{Hub, SessionId, Transport};
use shared::protocol::{decode_emulation, Encoding};
use shared::Timestamp;
use worker::{wasm_bindgen_futures, Headers, Request, Response, Result, WebSocketPair};

use super::{Attachment, NodeHost, Sink};
use crate::host::http::{self, no_cache, read_body, text};
use crate::host::now;

impl NodeHost {
    /// Opens a session whose replies stream in a response body.
    pub(super) fn open_stream(
        self: &Rc<Self>,
        transport: Transport,
        content_type: &str,
        prelude: Option<Vec<u8>>,
        start: impl FnOnce(&mut Hub, SessionId, Timestamp),
    ) -> Result<Response> {
        let now = now();
        let session = self.new_session();
        let (tx, rx) = unbounded::<Vec<u8>>();
        let queued = Rc::new(std::cell::Cell::new(0));
        self.sinks.borrow_mut().insert(session, Sink::Stream { tx, queued: queued.clone() });
        self.with_hub(|hub| {
            hub.handle_open(session, transport, now);
            start(hub, session, now);
        });
        self.drain(now);
        let body = SessionBody { prelude, rx, queued, guard: Some(CloseGuard { host: self.clone(), session }) };
        let headers = Headers::new();
        headers.set("content-type", content_type)?;
        no_cache(&headers)?;
        // A compressing layer (workerd's, for clients that accept gzip) buffers the body
        // and breaks streaming: say it is sent as is.
        headers.set("content-encoding", "identity")?;
        Ok(Response::from_stream(body)?.with_headers(headers))
    }

    /// Opens the stream the endpoint layer decided on, once the body that carries its first
    /// input (if it does) is read.
    pub(super) async fn stream(self: &Rc<Self>, mut req: Request, open: StreamOpen) -> Result<Response> {
        let input = match open.input {
            StreamInput::Ready(input) => input,
            StreamInput::Body(rule) => {
                let body = match read_body(&mut req, rule).await {
                    Ok(b) => b,
                    Err(a) => return http::answer(a),
                };
                match FirstInput::from_body(open.transport, body.into()) {
                    Ok(input) => input,
                    Err(a) => return http::answer(a),
                }
            }
        };
        let prelude = (!open.prelude.is_empty()).then(|| open.prelude.to_vec());
        let (last_event_id, headers) = (open.last_event_id, open.headers);
        self.open_stream(open.transport, open.content_type, prelude, |hub, session, now| {
            hub.handle_headers(session, headers);
            match input {
                FirstInput::Connect(request) => hub.handle_connect(session, request, last_event_id, now),
                FirstInput::Frame(frame) => hub.handle_frame(session, &frame, now),
            }
        })
    }

    /// An emulation request the Worker checked and routed here by its `node` field.
    pub(super) async fn emulation(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let body = req.bytes().await?;
        let (token, data) = match decode_emulation(&body, true) {
            Ok(request) => (request.session, request.data),
            Err(e) => return text(400, &e),
        };
        let now = now();
        // An unknown session is dropped silently, as Centrifugo does.
        let session = self.with_hub(|hub| hub.session_by_token(&token)).flatten();
        if let Some(session) = session {
            self.with_hub(|hub| hub.handle_frame(session, &data, now));
            self.drain(now);
        }
        http::empty(204)
    }

    /// Accepts the upgrade the endpoint layer decided on (hibernatable).
    pub(super) fn websocket(self: &Rc<Self>, upgrade: Upgrade) -> Result<Response> {
        let transport = upgrade.transport;
        let now = now();
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        let session = self.new_session();
        server.serialize_attachment(Attachment { session: session.0, ..Default::default() })?;
        let binary = transport == Transport::Websocket(Encoding::Protobuf);
        self.sinks.borrow_mut().insert(session, Sink::Socket { ws: server, binary });
        self.with_hub(|hub| {
            hub.handle_open(session, transport, now);
            hub.handle_headers(session, upgrade.headers);
        });
        if let Some(request) = upgrade.connect {
            self.with_hub(|hub| hub.handle_connect(session, request, None, now));
        }
        self.drain(now);
        let headers = Headers::new();
        if let Some(p) = upgrade.protocol {
            headers.set("sec-websocket-protocol", p)?;
        }
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }
}

/// A streaming response body: the session's writes, in order. Dropped when the client goes
/// away; the guard then tells the hub.
struct SessionBody {
    /// Sent alone, as its own chunk: some SSE clients (the `eventsource` npm package) stall
    /// when the leading `\r\n` and the first event share a chunk.
    prelude: Option<Vec<u8>>,
    rx: UnboundedReceiver<Vec<u8>>,
    /// Bytes sent to `rx` and not yet handed to the runtime (see `Sink::Stream`).
    queued: Rc<std::cell::Cell<usize>>,
    guard: Option<CloseGuard>,
}

struct CloseGuard {
    host: Rc<NodeHost>,
    session: SessionId,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        // Not from inside the hub's drive (a drop may come from anywhere): on the next task.
        let (host, session) = (self.host.clone(), self.session);
        wasm_bindgen_futures::spawn_local(async move {
            if host.sinks.borrow().contains_key(&session) {
                host.closed(session, now());
            }
        });
    }
}

impl Stream for SessionBody {
    type Item = std::result::Result<Vec<u8>, worker::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(prelude) = this.prelude.take() {
            return Poll::Ready(Some(Ok(prelude)));
        }
        match Pin::new(&mut this.rx).poll_next(cx) {
            Poll::Ready(Some(mut first)) => {
                // Coalesce what is already queued into one chunk.
                while let Poll::Ready(Some(more)) = Pin::new(&mut this.rx).poll_next(cx) {
                    first.extend_from_slice(&more);
                }
                this.queued.set(this.queued.get().saturating_sub(first.len()));
                Poll::Ready(Some(Ok(first)))
            }
            Poll::Ready(None) => {
                this.guard.take();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
