//! Node objects: each runs a [`Hub`] for the client connections the Worker hands it (streams
//! and WebSockets), carries the hub's broker requests to channel objects, and takes channel
//! events from them.
//!
//! Every input follows the drive contract: sample `now` once, call the hub, then [`drain`]
//! its outputs (writes, closes, broker requests) and re-arm the one alarm if the hub's next
//! deadline moved. No `RefCell` borrow is held across an `.await`.
//!
//! [`drain`]: NodeHost::drain

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use shared::api::{self, ApiId};
use shared::broker::{BrokerEvent, BrokerOp, BrokerRequest};
use shared::hub::{Hub, NodeInfo, Output, SessionId};
use shared::protocol::{parse_connect_request, Disconnect, Error};
use shared::Timestamp;
use worker::{
    durable_object, wasm_bindgen, wasm_bindgen_futures, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use super::http::{self, cors, query_param, text};
use super::{internal_request, load_config, now, random_u64, response_bytes, API_PATH, BROKER_PATH, CHANNELS, EVENTS_PATH};
use crate::wire::{self, EventAck, EventBatch, ReplyBatch, RequestBatch, WireRequest};

mod transports;


/// How soon browsers reconnect a dropped uni SSE stream (`retry:`), as natively.
const SSE_RETRY_MS: u32 = 1000;

#[durable_object]
pub struct NodeObject {
    host: Rc<NodeHost>,
}

/// What a WebSocket carries through hibernation: which incarnation of the object accepted it
/// and its session there.
#[derive(Serialize, Deserialize)]
struct Attachment {
    incarnation: u64,
    session: u64,
}

enum Sink {
    Stream(UnboundedSender<Vec<u8>>),
    Socket { ws: WebSocket, binary: bool },
}

struct NodeHost {
    state: State,
    env: Env,
    /// The node id clients see (emulation routes on it): the object's hex id.
    id: Arc<str>,
    /// Tells this object's WebSockets from those of an evicted earlier life of it.
    incarnation: u64,
    hub: RefCell<Option<Hub>>,
    sinks: RefCell<HashMap<SessionId, Sink>>,
    /// Uni WebSocket sessions whose connect message came (later messages are dropped).
    uni_connected: RefCell<HashSet<SessionId>>,
    /// Channels this node asked to hear about (a channel object is told when that ends).
    interest: RefCell<BTreeSet<String>>,
    /// Per channel: requests waiting for the one batch in flight to come back.
    outbox: RefCell<HashMap<String, Vec<BrokerRequest>>>,
    next_session: Cell<u64>,
    alarm: Cell<Option<Timestamp>>,
    /// Whether the residency timer runs (see [`NodeHost::keep_resident`]).
    resident: Cell<bool>,
    /// API commands run here (those acting on connections), waiting for their answers.
    api_waiters: RefCell<HashMap<ApiId, oneshot::Sender<std::result::Result<serde_json::Value, Error>>>>,
    next_api: Cell<u64>,
}

/// How long a closed session's stream stays open after its last write.
const STREAM_END_DELAY_MS: u64 = 100;

/// How often the residency timer ticks while WebSocket sessions are held.
const RESIDENT_TICK_MS: u64 = 5_000;

impl DurableObject for NodeObject {
    fn new(state: State, env: Env) -> Self {
        // A new life: WebSockets accepted by an earlier one (before eviction) lost their
        // sessions with it. Close them with a reconnect code; clients come back and recover.
        for ws in state.get_websockets() {
            let _ = ws.close(Some(Disconnect::shutdown().code as u16), Some("shutdown"));
        }
        let id: Arc<str> = Arc::from(state.id().to_string());
        let host = NodeHost {
            state,
            env,
            id,
            incarnation: random_u64() >> 11, // fits a JavaScript number (attachments are JS values)
            hub: RefCell::new(None),
            sinks: RefCell::new(HashMap::new()),
            uni_connected: RefCell::new(HashSet::new()),
            interest: RefCell::new(BTreeSet::new()),
            outbox: RefCell::new(HashMap::new()),
            next_session: Cell::new(1),
            alarm: Cell::new(None),
            resident: Cell::new(false),
            api_waiters: RefCell::new(HashMap::new()),
            next_api: Cell::new(1),
        };
        NodeObject { host: Rc::new(host) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let host = &self.host;
        if let Err(e) = host.ensure_hub() {
            return text(500, &format!("rotor: configuration error: {e}"));
        }
        let path = req.path();
        if path == EVENTS_PATH {
            return host.events(req).await;
        }
        if path == API_PATH {
            return host.api(req).await;
        }
        let config = load_config(&host.env).map_err(worker::Error::RustError)?.config;
        let origin = req.headers().get("origin")?;
        if !shared::origin::allowed(&config.allowed_origins, origin.as_deref()) {
            return text(403, "request origin is not in allowed_origins");
        }
        let response = match path.as_str() {
            "/connection/uni_http_stream" => host.uni_http_stream(req).await,
            "/connection/uni_sse" => host.uni_sse(req).await,
            "/connection/uni_websocket" => host.websocket(req, true),
            "/connection/websocket" => host.websocket(req, false),
            "/connection/http_stream" => host.http_stream(req).await,
            "/connection/sse" => host.sse(req).await,
            "/emulation" => host.emulation(req).await,
            _ => text(404, "not found"),
        }?;
        if let Some(origin) = origin {
            if response.status_code() != 101 {
                cors(response.headers(), &origin)?;
            }
        }
        Ok(response)
    }

    async fn alarm(&self) -> Result<Response> {
        let host = &self.host;
        host.alarm.set(None);
        let now = now();
        if host.with_hub(|hub| hub.handle_timeout(now)).is_some() {
            host.drain(now);
        }
        Response::ok("")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let host = &self.host;
        let Some(session) = host.session_of(&ws) else { return Ok(()) };
        let now = now();
        let data = match message {
            WebSocketIncomingMessage::String(s) => s.into_bytes(),
            WebSocketIncomingMessage::Binary(b) => b,
        };
        let Some(transport) = host.with_hub(|hub| hub.transport(session)).flatten() else { return Ok(()) };
        let config = load_config(&host.env).map_err(worker::Error::RustError)?.config;
        let unidirectional = transport.is_unidirectional();
        let limit =
            if unidirectional { config.uni_websocket_message_size_limit } else { config.websocket_message_size_limit } as usize;
        if limit > 0 && data.len() > limit {
            let _ = ws.close(Some(1009), Some("message too big"));
            host.closed(session, now);
            return Ok(());
        }
        if !unidirectional {
            host.with_hub(|hub| hub.handle_frame(session, &data, now));
        } else if host.uni_connected.borrow_mut().insert(session) {
            match parse_connect_request(&data) {
                Ok(request) => {
                    host.with_hub(|hub| hub.handle_connect(session, request, now));
                }
                Err(_) => {
                    let d = Disconnect::bad_request();
                    let _ = ws.close(Some(d.code as u16), Some(d.reason.as_str()));
                    host.closed(session, now);
                    return Ok(());
                }
            }
        }
        host.drain(now);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        let host = &self.host;
        if let Some(session) = host.session_of(&ws) {
            host.closed(session, now());
        }
        let _ = ws.close(Some(1000), Some(""));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let host = &self.host;
        if let Some(session) = host.session_of(&ws) {
            host.closed(session, now());
        }
        Ok(())
    }
}

impl NodeHost {
    fn ensure_hub(&self) -> std::result::Result<(), String> {
        if self.hub.borrow().is_some() {
            return Ok(());
        }
        let loaded = load_config(&self.env)?;
        let info = NodeInfo { id: self.id.clone(), name: format!("rotor-edge-{}", &self.id[..8.min(self.id.len())]), version: shared::VERSION.to_string() };
        let hub = Hub::new(loaded.config, info, random_u64(), now()).map_err(|e| e.to_string())?;
        *self.hub.borrow_mut() = Some(hub);
        Ok(())
    }

    /// Runs `f` on the hub, if there is one (it exists from the first request on).
    fn with_hub<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
        let mut hub = self.hub.borrow_mut();
        hub.as_mut().map(f)
    }

    fn new_session(&self) -> SessionId {
        let id = self.next_session.get();
        self.next_session.set(id + 1);
        SessionId(id)
    }

    fn session_of(&self, ws: &WebSocket) -> Option<SessionId> {
        match ws.deserialize_attachment::<Attachment>() {
            Ok(Some(a)) if a.incarnation == self.incarnation => Some(SessionId(a.session)),
            _ => {
                // Accepted by an earlier life of this object: its session is gone.
                let _ = ws.close(Some(Disconnect::shutdown().code as u16), Some("shutdown"));
                None
            }
        }
    }

    /// The transport went away (peer closed, write failed).
    fn closed(self: &Rc<Self>, session: SessionId, now: Timestamp) {
        self.sinks.borrow_mut().remove(&session);
        self.uni_connected.borrow_mut().remove(&session);
        self.with_hub(|hub| hub.handle_closed(session, now));
        self.drain(now);
    }

    /// Carries out every output of the hub, in order, then re-arms the alarm if the hub's
    /// next deadline moved.
    fn drain(self: &Rc<Self>, now: Timestamp) {
        loop {
            let Some(output) = self.with_hub(|hub| hub.poll_output()).flatten() else { break };
            match output {
                Output::Send { session, data } | Output::Ping { session, data } => {
                    if !self.write(session, data) {
                        self.sinks.borrow_mut().remove(&session);
                        self.with_hub(|hub| hub.handle_closed(session, now));
                    }
                }
                Output::Close { session, disconnect } => {
                    self.uni_connected.borrow_mut().remove(&session);
                    match self.sinks.borrow_mut().remove(&session) {
                        Some(Sink::Socket { ws, .. }) => {
                            let _ = ws.close(Some(disconnect.code as u16), Some(disconnect.reason.as_str()));
                        }
                        // Dropping a stream's sender ends the response body after what it
                        // holds. A moment later, not at once: a client that gets the last
                        // push and the end of the body together may take the end first and
                        // miss the disconnect code in the push (centrifuge-js over SSE does).
                        Some(Sink::Stream(tx)) => wasm_bindgen_futures::spawn_local(async move {
                            worker::Delay::from(std::time::Duration::from_millis(STREAM_END_DELAY_MS)).await;
                            drop(tx);
                        }),
                        None => {}
                    }
                }
                Output::Broker(request) => self.enqueue(request),
                Output::Api { id, result } => {
                    if let Some(waiter) = self.api_waiters.borrow_mut().remove(&id) {
                        let _ = waiter.send(result);
                    }
                }
            }
        }
        self.rearm();
        self.keep_resident();
    }

    /// Hubs keep sessions in memory, and the runtime evicts an object whose only I/O is
    /// hibernatable WebSockets after a few idle seconds. Unless `edge_hibernate` allows that,
    /// a pending timer keeps the object resident while it holds WebSocket sessions (streams
    /// keep it resident by themselves).
    fn keep_resident(self: &Rc<Self>) {
        if self.resident.get() || !self.holds_sockets() {
            return;
        }
        if load_config(&self.env).map(|l| l.edge.hibernate).unwrap_or(false) {
            return;
        }
        self.resident.set(true);
        let host = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while host.holds_sockets() {
                worker::Delay::from(std::time::Duration::from_millis(RESIDENT_TICK_MS)).await;
            }
            host.resident.set(false);
        });
    }

    fn holds_sockets(&self) -> bool {
        self.sinks.borrow().values().any(|s| matches!(s, Sink::Socket { .. }))
    }

    /// Writes to a session's transport; false when the transport is gone.
    fn write(&self, session: SessionId, data: Bytes) -> bool {
        let sinks = self.sinks.borrow();
        match sinks.get(&session) {
            Some(Sink::Stream(tx)) => tx.unbounded_send(data.to_vec()).is_ok(),
            Some(Sink::Socket { ws, binary: true }) => ws.send_with_bytes(&data).is_ok(),
            Some(Sink::Socket { ws, binary: false }) => match std::str::from_utf8(&data) {
                Ok(t) => ws.send_with_str(t).is_ok(),
                Err(_) => true, // the hub never sends non-UTF-8 to JSON clients
            },
            None => true, // not ours (closed already); the hub learns through handle_closed
        }
    }

    fn rearm(&self) {
        let next = self.with_hub(|hub| hub.poll_timeout()).flatten();
        if next == self.alarm.get() {
            return;
        }
        self.alarm.set(next);
        let storage = self.state.storage();
        wasm_bindgen_futures::spawn_local(async move {
            let result = match next {
                Some(at) => {
                    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from(at.as_millis() as f64));
                    storage.set_alarm(worker::ScheduledTime::new(date)).await
                }
                None => storage.delete_alarm().await,
            };
            if let Err(e) = result {
                worker::console_error!("rotor: node alarm: {e}");
            }
        });
    }

    // ---- broker requests: node → channel objects

    fn enqueue(self: &Rc<Self>, request: BrokerRequest) {
        let channel = request.channel.clone();
        match &request.op {
            BrokerOp::Subscribe { .. } => {
                self.interest.borrow_mut().insert(channel.clone());
            }
            BrokerOp::Unsubscribe { .. } => {
                self.interest.borrow_mut().remove(&channel);
            }
            _ => {}
        }
        let start = {
            let mut outbox = self.outbox.borrow_mut();
            let start = !outbox.contains_key(&channel);
            outbox.entry(channel.clone()).or_default().push(request);
            start
        };
        if start {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move { host.pump(channel).await });
        }
    }

    /// Sends a channel's queued requests, one batch at a time so the channel object sees
    /// them in order, until the queue is empty.
    async fn pump(self: Rc<Self>, channel: String) {
        loop {
            let batch = {
                let mut outbox = self.outbox.borrow_mut();
                let queue = outbox.get_mut(&channel).expect("pump owns its queue");
                if queue.is_empty() {
                    outbox.remove(&channel);
                    return;
                }
                std::mem::take(queue)
            };
            let result = call_channel(&self.env, &channel, &batch).await;
            let now = now();
            let mut answered = HashSet::new();
            match result {
                Ok(replies) => {
                    for reply in replies.replies {
                        answered.insert(reply.id);
                        let event = wire::reply_from(reply);
                        self.with_hub(|hub| hub.handle_broker(event, now));
                    }
                }
                Err(e) => worker::console_error!("rotor: channel {channel}: {e}"),
            }
            for request in &batch {
                if !answered.contains(&request.id.0) {
                    let event = BrokerEvent::Reply { id: request.id, result: Err(Error::internal()) };
                    self.with_hub(|hub| hub.handle_broker(event, now));
                }
            }
            self.drain(now);
        }
    }

    // ---- channel events: channel objects → node

    async fn events(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let body = req.bytes().await?;
        let batch = EventBatch::decode(body.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let interested = self.interest.borrow().contains(&batch.channel);
        if interested {
            let now = now();
            let channel: Arc<str> = Arc::from(batch.channel.as_str());
            for event in batch.events {
                if let Some(event) = wire::event_from(&channel, event) {
                    self.with_hub(|hub| hub.handle_broker(event, now));
                }
            }
            self.drain(now);
        }
        Response::from_bytes(EventAck { interested }.encode_to_vec())
    }

    // ---- server API commands acting on this node's connections (sent by the Worker)

    async fn api(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let method = query_param(&req, "method").unwrap_or_default();
        let body = req.bytes().await?;
        let result = match api::parse(&method, &body) {
            Ok(Some(command)) => {
                let id = ApiId(self.next_api.get());
                self.next_api.set(id.0 + 1);
                let (tx, rx) = oneshot::channel();
                self.api_waiters.borrow_mut().insert(id, tx);
                let now = now();
                self.with_hub(|hub| hub.handle_api(id, command, now));
                self.drain(now);
                rx.await.unwrap_or_else(|_| Err(Error::internal()))
            }
            Ok(None) => Err(api::not_found()),
            Err(_) => Err(Error::bad_request()),
        };
        http::json(200, api::envelope(&result).to_string())
    }
}

async fn call_channel(env: &Env, channel: &str, batch: &[BrokerRequest]) -> Result<ReplyBatch> {
    let body = RequestBatch { requests: batch.iter().map(WireRequest::from).collect() }.encode_to_vec();
    let stub = env.durable_object(CHANNELS)?.id_from_name(channel)?.get_stub()?;
    let response = stub.fetch_with_request(internal_request(BROKER_PATH, body)?).await?;
    let bytes = response_bytes(response).await?;
    ReplyBatch::decode(bytes.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))
}
