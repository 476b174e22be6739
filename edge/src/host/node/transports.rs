//! The client transports of a node object: streaming responses (uni HTTP stream, uni SSE,
//! HTTP-stream and SSE emulation), `/emulation`, and WebSocket upgrades.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_channel::mpsc::{unbounded, UnboundedReceiver};
use futures_util::Stream;
use shared::hub::{Hub, SessionId, Transport};
use shared::protocol::{decode_emulation, parse_connect_request, websocket_encoding, Encoding};
use shared::Timestamp;
use worker::{wasm_bindgen_futures, Headers, Method, Request, Response, Result, WebSocketPair};

use super::{Attachment, NodeHost, Sink, SSE_RETRY_MS};
use crate::host::http::{self, method_not_allowed, no_cache, preflight, query_param, read_body, text};
use crate::host::{load_config, now};

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
        self.queue_limit.set(self.config_limit(|c| c.client_queue_max_size));
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

    pub(super) async fn uni_http_stream(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        match req.method() {
            Method::Post => {}
            Method::Options => return preflight(&req),
            _ => return method_not_allowed("POST"),
        }
        let limit = self.config_limit(|c| c.uni_http_stream_max_request_body_size);
        let body = match read_body(&mut req, limit).await {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        let request = match parse_connect_request(&body) {
            Ok(r) => r,
            Err(e) => return text(400, &e),
        };
        self.open_stream(Transport::UniHttpStream, "application/x-ndjson", None, |hub, session, now| {
            hub.handle_connect(session, request, now)
        })
    }

    pub(super) async fn uni_sse(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let last_event_id = req
            .headers()
            .get("last-event-id")?
            .or_else(|| query_param(&req, "last_event_id"))
            .filter(|id| !id.is_empty());
        let request = match req.method() {
            Method::Get => {
                let raw = query_param(&req, "cf_connect").unwrap_or_default();
                match parse_connect_request(raw.as_bytes()) {
                    Ok(r) => r,
                    Err(e) => return text(400, &format!("cf_connect: {e}")),
                }
            }
            Method::Post => {
                let limit = self.config_limit(|c| c.uni_sse_max_request_body_size);
                let body = match read_body(&mut req, limit).await {
                    Ok(b) => b,
                    Err(r) => return Ok(r),
                };
                match parse_connect_request(&body) {
                    Ok(r) => r,
                    Err(e) => return text(400, &e),
                }
            }
            Method::Options => return preflight(&req),
            _ => return method_not_allowed("GET, POST"),
        };
        let prelude = format!("\r\nretry: {SSE_RETRY_MS}\n\n").into_bytes();
        self.open_stream(Transport::UniSse, "text/event-stream; charset=utf-8", Some(prelude), |hub, session, now| {
            if let Some(id) = last_event_id {
                hub.handle_last_event_id(session, id);
            }
            hub.handle_connect(session, request, now)
        })
    }

    pub(super) async fn http_stream(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        match req.method() {
            Method::Post => {}
            Method::Options => return preflight(&req),
            _ => return method_not_allowed("POST"),
        }
        let protobuf = is_protobuf(&req);
        let limit = self.config_limit(|c| c.http_stream_max_request_body_size);
        let body = match read_body(&mut req, limit).await {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        let (encoding, content_type) =
            if protobuf { (Encoding::Protobuf, "application/octet-stream") } else { (Encoding::Json, "application/json") };
        self.open_stream(Transport::HttpStream(encoding), content_type, None, |hub, session, now| {
            hub.handle_frame(session, &body, now)
        })
    }

    pub(super) async fn sse(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let frame = match req.method() {
            Method::Get => match query_param(&req, "cf_connect") {
                Some(frame) => frame.into_bytes(),
                None => return text(400, "missing cf_connect query parameter with the connect command"),
            },
            Method::Post => {
                let limit = self.config_limit(|c| c.sse_max_request_body_size);
                match read_body(&mut req, limit).await {
                    Ok(b) => b,
                    Err(r) => return Ok(r),
                }
            }
            Method::Options => return preflight(&req),
            _ => return method_not_allowed("GET, POST"),
        };
        self.open_stream(Transport::Sse, "text/event-stream; charset=utf-8", Some(b"\r\n".to_vec()), |hub, session, now| {
            hub.handle_frame(session, &frame, now)
        })
    }

    /// `POST /emulation`, routed here by the Worker from its `node` field.
    pub(super) async fn emulation(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        match req.method() {
            Method::Post => {}
            Method::Options => return preflight(&req),
            _ => return method_not_allowed("POST"),
        }
        let protobuf = is_protobuf(&req);
        let limit = self.config_limit(|c| c.emulation_max_request_body_size);
        let body = match read_body(&mut req, limit).await {
            Ok(b) => b,
            Err(r) => return Ok(r),
        };
        let (token, data) = match decode_emulation(&body, protobuf) {
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

    pub(super) fn websocket(self: &Rc<Self>, req: Request, unidirectional: bool) -> Result<Response> {
        let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
        if !upgrade.eq_ignore_ascii_case("websocket") {
            return text(400, "expected a WebSocket upgrade request");
        }
        let offered = req.headers().get("sec-websocket-protocol")?.unwrap_or_default();
        let format = query_param(&req, "format").or_else(|| query_param(&req, "cf_protocol"));
        let (encoding, echo) = websocket_encoding([offered.as_str()], format.as_deref(), unidirectional);
        let transport = if unidirectional { Transport::UniWebsocket } else { Transport::Websocket(encoding) };
        // Centrifugo v6.3+: a uni WebSocket's connect request may come in the URL instead of
        // the first message; invalid JSON there is refused before the upgrade.
        let url_connect = match query_param(&req, "cf_connect").filter(|_| unidirectional) {
            Some(raw) => match parse_connect_request(raw.as_bytes()) {
                Ok(request) => Some(request),
                Err(e) => return text(400, &format!("cf_connect: {e}")),
            },
            None => None,
        };
        let now = now();
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        let session = self.new_session();
        server.serialize_attachment(Attachment { session: session.0, ..Default::default() })?;
        let binary = encoding == Encoding::Protobuf;
        self.sinks.borrow_mut().insert(session, Sink::Socket { ws: server, binary });
        self.with_hub(|hub| hub.handle_open(session, transport, now));
        if let Some(request) = url_connect {
            self.uni_connected.borrow_mut().insert(session);
            self.with_hub(|hub| hub.handle_connect(session, request, now));
        }
        self.drain(now);
        let headers = Headers::new();
        if let Some(p) = echo {
            headers.set("sec-websocket-protocol", p)?;
        }
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    pub(super) fn config_limit(&self, f: impl FnOnce(&shared::config::Config) -> u64) -> usize {
        load_config(&self.env).map(|l| f(&l.config) as usize).unwrap_or(65536)
    }
}

fn is_protobuf(req: &Request) -> bool {
    req.headers().get("content-type").ok().flatten().is_some_and(|v| v.starts_with("application/octet-stream"))
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
