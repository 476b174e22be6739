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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use prost::Message as _;
use shared::api::{self, ApiId};
use shared::broker::{BrokerEvent, BrokerOp, BrokerRequest};
use shared::hub::{Changes, Hub, NodeInfo, Output, SessionId};
use shared::http::{Answer, Decision};
use shared::protocol::{Disconnect, Error, StreamPosition};
use shared::Timestamp;
use worker::{
    durable_object, wasm_bindgen, wasm_bindgen_futures, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use super::http::{self, query_param, text};
use super::sql::{int, text as sql_text};
use super::{internal_request, load_config, now, random_u64, response_bytes, sql_exec, API_PATH, BROKER_PATH, CHANNELS, EMULATION_PATH, EVENTS_PATH};
use crate::batches::Batches;
use crate::channel_store::Param;
use crate::node_store::{self, Attachment, NodeWrite};
use crate::wire::{self, EventAck, EventBatch, ReplyBatch, RequestBatch, WireRequest};

mod transports;

#[durable_object]
pub struct NodeObject {
    host: Rc<NodeHost>,
}

enum Sink {
    /// A streaming response body; `queued` counts the bytes sent to it and not yet taken by
    /// the runtime; the hub bounds it by `client_queue_max_size` (`Hub::handle_backlog`).
    Stream { tx: UnboundedSender<Vec<u8>>, queued: Rc<Cell<usize>> },
    Socket { ws: WebSocket, binary: bool },
}

/// What became of a write.
enum Written {
    /// Taken; the transport now holds this many bytes the client has not read (streams
    /// only: WebSockets buffer inside the runtime, which does not say).
    Done(usize),
    /// The transport is gone.
    Gone,
}

struct NodeHost {
    state: State,
    env: Env,
    /// The node id clients see (emulation routes on it): the object's hex id.
    id: Arc<str>,
    /// Built by the first event of each life of the object, with the sessions of the
    /// WebSockets an earlier life accepted (see [`NodeHost::wake_up`]).
    hub: RefCell<Option<Hub>>,
    sinks: RefCell<HashMap<SessionId, Sink>>,
    /// Channels this node asked to hear about (a channel object is told when that ends).
    interest: RefCell<BTreeSet<String>>,
    /// Per channel object: broker requests waiting for the one batch in flight to come back.
    to_channels: RefCell<Batches<BrokerRequest>>,
    next_session: Cell<u64>,
    /// The alarm as last set; unknown (false) until this life sets or clears it.
    alarm: Cell<Option<Timestamp>>,
    alarm_known: Cell<bool>,
    /// Sessions whose snapshot is in the `sessions` table (too big for the attachment).
    in_table: RefCell<HashSet<u64>>,
    schema_ready: Cell<bool>,
    /// Channel positions to write at the next flush (see [`NodeHost::persist`]).
    positions_due: RefCell<BTreeMap<Arc<str>, Option<StreamPosition>>>,
    flush_pending: Cell<bool>,
    /// API commands run here (those acting on connections), waiting for their answers.
    api_waiters: RefCell<HashMap<ApiId, oneshot::Sender<std::result::Result<serde_json::Value, Error>>>>,
    next_api: Cell<u64>,
}


/// Channel positions are written at most this often: a busy channel costs one row write per
/// second per node, not one per publication.
const POSITION_FLUSH_MS: u64 = 1_000;

impl DurableObject for NodeObject {
    fn new(state: State, env: Env) -> Self {
        let id: Arc<str> = Arc::from(state.id().to_string());
        let host = NodeHost {
            state,
            env,
            id,
            hub: RefCell::new(None),
            sinks: RefCell::new(HashMap::new()),
            interest: RefCell::new(BTreeSet::new()),
            to_channels: RefCell::new(Batches::default()),
            // Ids from a random base per life: a socket of an earlier life never shares its
            // session id with one of this life (below 2^52: attachments are JS numbers).
            next_session: Cell::new((random_u64() >> 32) << 20),
            alarm: Cell::new(None),
            alarm_known: Cell::new(false),
            in_table: RefCell::new(HashSet::new()),
            schema_ready: Cell::new(false),
            positions_due: RefCell::new(BTreeMap::new()),
            flush_pending: Cell::new(false),
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
        if path == EMULATION_PATH {
            return host.emulation(req).await;
        }
        let loaded = load_config(&host.env).map_err(worker::Error::RustError)?;
        let routed = http::decide(&req, &loaded)?;
        let cors = routed.cors();
        let response = match routed.decision {
            Decision::Stream(open) => host.stream(req, open).await?,
            Decision::Upgrade(upgrade) => host.websocket(upgrade)?,
            Decision::Answer(a) => http::answer(a)?,
            // The Worker serves these; a node object is never asked.
            Decision::Api(_) | Decision::Emulation(_) | Decision::Health => http::answer(Answer::not_found())?,
        };
        http::with_cors(response, &cors)
    }

    async fn alarm(&self) -> Result<Response> {
        let host = &self.host;
        host.alarm.set(None);
        host.ensure_hub().map_err(worker::Error::RustError)?;
        let now = now();
        if host.with_hub(|hub| hub.handle_timeout(now)).is_some() {
            host.drain(now);
        }
        Response::ok("")
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let host = &self.host;
        host.ensure_hub().map_err(worker::Error::RustError)?;
        let Some(session) = host.session_of(&ws) else { return Ok(()) };
        let now = now();
        let data = match message {
            WebSocketIncomingMessage::String(s) => s.into_bytes(),
            WebSocketIncomingMessage::Binary(b) => b,
        };
        let Some(transport) = host.with_hub(|hub| hub.transport(session)).flatten() else { return Ok(()) };
        let config = load_config(&host.env).map_err(worker::Error::RustError)?.config;
        let limit = shared::http::message_limit(&config, transport);
        if limit > 0 && data.len() > limit {
            let _ = ws.close(Some(1009), Some("message too big"));
            host.closed(session, now);
            return Ok(());
        }
        // A uni WebSocket's first message is its connect request: the hub knows.
        host.with_hub(|hub| hub.handle_frame(session, &data, now));
        host.drain(now);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, _code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        self.host.socket_gone(&ws)?;
        let _ = ws.close(Some(1000), Some(""));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.host.socket_gone(&ws)
    }
}

impl NodeHost {
    /// Builds the hub on the first event of this life of the object. No server pings on
    /// WebSockets (an idle object must be free to hibernate; the runtime watches the
    /// sockets), and the hub reports what to store so the next life can rebuild it.
    fn ensure_hub(self: &Rc<Self>) -> std::result::Result<(), String> {
        if self.hub.borrow().is_some() {
            return Ok(());
        }
        let loaded = load_config(&self.env)?;
        let info = NodeInfo { id: self.id.clone(), name: format!("rotor-edge-{}", &self.id[..8.min(self.id.len())]), version: shared::VERSION.to_string() };
        let now = now();
        let hub = Hub::new(loaded.config, info, random_u64(), now).map_err(|e| e.to_string())?;
        *self.hub.borrow_mut() = Some(hub.without_websocket_pings().tracking_snapshots());
        if let Err(e) = self.wake_up(now) {
            // Sockets that cannot be rebuilt must not linger unpinged: clients reconnect.
            worker::console_error!("rotor: node wake-up: {e}");
            let d = Disconnect::shutdown();
            for ws in self.state.get_websockets() {
                let (code, reason) = d.websocket_close();
                let _ = ws.close(Some(code), Some(reason));
            }
        }
        Ok(())
    }

    /// Rebuilds the sessions of WebSockets an earlier life of this object accepted: the
    /// runtime kept the sockets and their attachments, SQLite the rest. Each session is
    /// connected again with its subscriptions re-made from the last positions this node
    /// received; what was published meanwhile reaches the client before anything newer.
    /// Sockets that never connected are closed with 3001 (reconnect).
    fn wake_up(self: &Rc<Self>, now: Timestamp) -> Result<()> {
        let sockets = self.state.get_websockets();
        self.ensure_schema()?;
        if sockets.is_empty() {
            // Rows an earlier life left (its sockets closed while it was away) go.
            return self.store(NodeWrite::DeleteAll);
        }
        let mut table = HashMap::new();
        for row in sql_exec(&self.state, node_store::READ_SESSIONS, vec![])?.raw() {
            let row = row?;
            table.insert(int(&row[0]), sql_text(&row[1]));
        }
        let mut rows = Vec::new();
        for row in sql_exec(&self.state, node_store::READ_POSITIONS, vec![])?.raw() {
            let row = row?;
            rows.push((sql_text(&row[0]), sql_text(&row[1]), int(&row[2])));
        }
        let positions = node_store::positions(rows);
        let mut channels = BTreeSet::new();
        let mut restored = HashSet::new();
        let mut next = self.next_session.get();
        for ws in sockets {
            let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten().unwrap_or_default();
            next = next.max(attachment.session + 1);
            let Some(snapshot) = node_store::snapshot_of(&attachment, &table) else {
                let d = Disconnect::shutdown();
                let (code, reason) = d.websocket_close();
                let _ = ws.close(Some(code), Some(reason));
                continue;
            };
            let session = SessionId(attachment.session);
            restored.insert(session.0);
            channels.extend(snapshot.subs.iter().map(|s| s.ch.clone()));
            self.sinks.borrow_mut().insert(session, Sink::Socket { ws, binary: snapshot.t == "wsp" });
            self.with_hub(|hub| hub.handle_restore(session, snapshot, &positions, now));
        }
        self.next_session.set(next);
        // Rows of sessions and channels nothing holds any more go.
        for id in table.keys().filter(|id| !restored.contains(id)) {
            self.store(NodeWrite::DeleteSession(*id))?;
        }
        *self.in_table.borrow_mut() = table.into_keys().filter(|id| restored.contains(id)).collect();
        for channel in positions.keys().filter(|c| !channels.contains(*c)) {
            self.store(NodeWrite::DeletePosition(channel.clone()))?;
        }
        self.drain(now);
        Ok(())
    }

    /// A WebSocket closed or failed. The socket closing in the event that woke the object may
    /// be missing from the wake-up's `getWebSockets()`: its session is rebuilt from its
    /// attachment first, so that it leaves its channels (presence, leave) as any other does.
    fn socket_gone(self: &Rc<Self>, ws: &WebSocket) -> Result<()> {
        self.ensure_hub().map_err(worker::Error::RustError)?;
        let Ok(Some(attachment)) = ws.deserialize_attachment::<Attachment>() else { return Ok(()) };
        let session = SessionId(attachment.session);
        let now = now();
        if self.with_hub(|hub| hub.transport(session)).flatten().is_none() {
            let mut table = HashMap::new();
            if attachment.in_table {
                let rows = sql_exec(&self.state, node_store::READ_SESSION, vec![Param::Int(session.0 as i64)]);
                for row in rows.into_iter().flat_map(|c| c.raw()).flatten() {
                    table.insert(session.0, sql_text(&row[0]));
                }
            }
            if let Some(snapshot) = node_store::snapshot_of(&attachment, &table) {
                self.with_hub(|hub| hub.handle_restore(session, snapshot, &BTreeMap::new(), now));
            }
        }
        self.closed(session, now);
        Ok(())
    }

    fn ensure_schema(&self) -> Result<()> {
        if !self.schema_ready.get() {
            for statement in node_store::SCHEMA {
                sql_exec(&self.state, statement, vec![])?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    fn store(&self, write: NodeWrite) -> Result<()> {
        self.ensure_schema()?;
        for (query, params) in write.statements() {
            sql_exec(&self.state, query, params)?;
        }
        Ok(())
    }

    /// Writes what the hub says changed: snapshots to the sockets' attachments (or the
    /// `sessions` table) at once, positions to `positions` within [`POSITION_FLUSH_MS`]. The
    /// delay is safe: a pending timer keeps the object from hibernating until it fires.
    fn persist(self: &Rc<Self>, changes: Changes) {
        let mut writes = Vec::new();
        for (session, snapshot) in changes.sessions {
            let in_table = self.in_table.borrow().contains(&session.0);
            let (attachment, write) = node_store::place(session.0, snapshot.as_ref(), in_table);
            if let Some(Sink::Socket { ws, .. }) = self.sinks.borrow().get(&session) {
                if let Err(e) = ws.serialize_attachment(&attachment) {
                    worker::console_error!("rotor: attachment of session {}: {e}", session.0);
                }
            }
            match &write {
                Some(NodeWrite::UpsertSession { .. }) => self.in_table.borrow_mut().insert(session.0),
                Some(_) => self.in_table.borrow_mut().remove(&session.0),
                None => false,
            };
            writes.extend(write);
        }
        for write in writes {
            if let Err(e) = self.store(write) {
                worker::console_error!("rotor: node storage: {e}");
            }
        }
        if changes.positions.is_empty() {
            return;
        }
        self.positions_due.borrow_mut().extend(changes.positions);
        if !self.flush_pending.replace(true) {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                worker::Delay::from(std::time::Duration::from_millis(POSITION_FLUSH_MS)).await;
                host.flush_pending.set(false);
                let due = std::mem::take(&mut *host.positions_due.borrow_mut());
                for (channel, position) in due {
                    if let Err(e) = host.store(node_store::position_write(&channel, position.as_ref())) {
                        worker::console_error!("rotor: node storage: {e}");
                    }
                }
            });
        }
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
            Ok(Some(a)) => Some(SessionId(a.session)),
            _ => None,
        }
    }

    /// The transport went away (peer closed, write failed).
    fn closed(self: &Rc<Self>, session: SessionId, now: Timestamp) {
        self.sinks.borrow_mut().remove(&session);
        self.with_hub(|hub| hub.handle_closed(session, now));
        self.drain(now);
    }

    /// Carries out every output of the hub, in order, then re-arms the alarm if the hub's
    /// next deadline moved.
    fn drain(self: &Rc<Self>, now: Timestamp) {
        loop {
            let Some(output) = self.with_hub(|hub| hub.poll_output()).flatten() else { break };
            match output {
                Output::Send { session, data } | Output::Ping { session, data } => match self.write(session, data) {
                    Written::Done(queued) => {
                        self.with_hub(|hub| hub.handle_backlog(session, queued, now));
                    }
                    Written::Gone => {
                        self.sinks.borrow_mut().remove(&session);
                        self.with_hub(|hub| hub.handle_closed(session, now));
                    }
                },
                Output::Close { session, disconnect } => {
                    match self.sinks.borrow_mut().remove(&session) {
                        Some(Sink::Socket { ws, .. }) => {
                            // Forget the session in the socket first: a wake-up during the
                            // close handshake must not bring it back.
                            let _ = ws.serialize_attachment(Attachment { session: session.0, ..Default::default() });
                            let (code, reason) = disconnect.websocket_close();
                            let _ = ws.close(Some(code), Some(reason));
                        }
                        // Dropping a stream's sender ends the response body after what it
                        // holds. A moment later, not at once: a client that gets the last
                        // push and the end of the body together may take the end first and
                        // miss the disconnect code in the push (centrifuge-js over SSE does).
                        Some(Sink::Stream { tx, .. }) => wasm_bindgen_futures::spawn_local(async move {
                            worker::Delay::from(std::time::Duration::from_millis(shared::http::STREAM_END_LINGER_MS)).await;
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
        if let Some(changes) = self.with_hub(|hub| hub.take_changes()).flatten() {
            self.persist(changes);
        }
        self.rearm();
    }

    /// Writes to a session's transport.
    fn write(&self, session: SessionId, data: Bytes) -> Written {
        let sinks = self.sinks.borrow();
        let mut backlog = 0;
        let sent = match sinks.get(&session) {
            Some(Sink::Stream { tx, queued }) => {
                backlog = queued.get().saturating_add(data.len());
                queued.set(backlog);
                tx.unbounded_send(data.to_vec()).is_ok()
            }
            Some(Sink::Socket { ws, binary: true }) => ws.send_with_bytes(&data).is_ok(),
            Some(Sink::Socket { ws, binary: false }) => match std::str::from_utf8(&data) {
                Ok(t) => ws.send_with_str(t).is_ok(),
                Err(_) => true, // the hub never sends non-UTF-8 to JSON clients
            },
            None => true, // not ours (closed already); the hub learns through handle_closed
        };
        if sent {
            Written::Done(backlog)
        } else {
            Written::Gone
        }
    }

    fn rearm(&self) {
        let next = self.with_hub(|hub| hub.poll_timeout()).flatten();
        if self.alarm_known.get() && next == self.alarm.get() {
            return;
        }
        self.alarm.set(next);
        self.alarm_known.set(true);
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
        let start = self.to_channels.borrow_mut().push(&channel, request);
        if start {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move { host.pump(channel).await });
        }
    }

    /// Sends a channel's queued requests, one batch at a time so the channel object sees
    /// them in order, until the queue is empty.
    async fn pump(self: Rc<Self>, channel: String) {
        loop {
            let Some(batch) = self.to_channels.borrow_mut().take(&channel) else { return };
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
