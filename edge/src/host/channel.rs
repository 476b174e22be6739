//! Channel objects: one per channel (`idFromName(channel)`), running the [`Broker`] for it
//! and keeping its stream, presence and subscribed nodes in the object's SQLite storage.
//!
//! On the first request after waking up, the object reads its tables back and restores the
//! broker ([`Broker::restore`]). After each batch of requests it writes only what changed
//! ([`crate::channel_store::diff`]); the runtime's output gate holds the replies and outgoing
//! event deliveries until those writes are durable, so no node ever sees a publication that a
//! restart could take back.
//!
//! Events (publications, join/leave) go to every subscribed node object, through one queue
//! per node with one batch in flight, so each node gets them in the broker's order.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use prost::Message as _;
use shared::broker::{Broker, BrokerEvent, BrokerOp, BrokerRequest, RequestId};
use shared::Timestamp;
use worker::{
    durable_object, wasm_bindgen, wasm_bindgen_futures, DurableObject, Env, Request, Response, Result, State,
};

use super::sql::{blob, int, opt_text, text};
use super::{internal_request, now, random_u64, response_bytes, BROKER_PATH, EVENTS_PATH, NODES};
use crate::batches::Batches;
use crate::channel_store::{self, Param, Persisted, Rows, Write};
use crate::wire::{self, EventAck, EventBatch, ReplyBatch, RequestBatch, WireEvent};

/// Expired history is trimmed on every access anyway; the alarm only collects garbage in
/// idle channels, so it need not fire more often than this.
const MIN_ALARM_GAP_MS: u64 = 60_000;

#[durable_object]
pub struct ChannelObject {
    host: Rc<ChannelHost>,
}

struct ChannelHost {
    state: State,
    env: Env,
    broker: RefCell<Broker>,
    /// The channel's name: known from storage or from the first request.
    name: RefCell<Option<String>>,
    /// What the tables hold; `None` until they were read.
    persisted: RefCell<Option<Persisted>>,
    /// Per node object: events waiting for the batch in flight.
    to_nodes: RefCell<Batches<WireEvent>>,
    /// Per node: how many subscribes it sent. A "not interested" answer to a delivery only
    /// unsubscribes the node if it did not subscribe again meanwhile.
    subscribes: RefCell<HashMap<String, u64>>,
    alarm: Cell<Option<Timestamp>>,
}

impl DurableObject for ChannelObject {
    fn new(state: State, env: Env) -> Self {
        // Installs the isolate's logger (the config is read once per isolate and cached).
        let _ = crate::host::load_config(&env);
        let host = ChannelHost {
            state,
            env,
            broker: RefCell::new(Broker::new(random_u64())),
            name: RefCell::new(None),
            persisted: RefCell::new(None),
            to_nodes: RefCell::new(Batches::default()),
            subscribes: RefCell::new(HashMap::new()),
            alarm: Cell::new(None),
        };
        ChannelObject { host: Rc::new(host) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path() != BROKER_PATH {
            return Response::error("not found", 404);
        }
        let body = req.bytes().await?;
        let batch = RequestBatch::decode(body.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let host = &self.host;
        let now = now();
        let mut replies = Vec::with_capacity(batch.requests.len());
        for request in batch.requests {
            let id = request.id;
            let request = match BrokerRequest::try_from(request) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("bad broker request: {e}");
                    replies.push(wire::reply_to(RequestId(id), &Err(shared::protocol::Error::bad_request())));
                    continue;
                }
            };
            host.load(&request.channel)?;
            if let BrokerOp::Subscribe { node, .. } = &request.op {
                *host.subscribes.borrow_mut().entry(node.to_string()).or_default() += 1;
            }
            host.broker.borrow_mut().handle_request(request, now);
            host.drain(&mut replies);
        }
        host.persist()?;
        host.rearm(now);
        Response::from_bytes(ReplyBatch { replies }.encode_to_vec())
    }

    async fn alarm(&self) -> Result<Response> {
        let host = &self.host;
        host.alarm.set(None);
        let now = now();
        if host.load_stored()? {
            host.broker.borrow_mut().handle_timeout(now);
            host.drain(&mut Vec::new());
            host.persist()?;
            host.rearm(now);
        }
        Response::ok("")
    }
}

impl ChannelHost {
    fn sql_exec(&self, query: &str, params: Vec<Param>) -> Result<worker::SqlCursor> {
        super::sql_exec(&self.state, query, params)
    }

    /// Reads the tables back into the broker, once per life of the object. Returns whether
    /// the object holds a channel.
    fn load_stored(&self) -> Result<bool> {
        if self.persisted.borrow().is_some() {
            return Ok(self.name.borrow().is_some());
        }
        for statement in channel_store::SCHEMA {
            self.sql_exec(statement, vec![])?;
        }
        let mut rows = Rows::default();
        for row in self.sql_exec(channel_store::READ_CHANNEL, vec![])?.raw() {
            let row = row?;
            rows.channel = Some((text(&row[0]), opt_text(&row[1]), int(&row[2]), int(&row[3])));
        }
        for row in self.sql_exec(channel_store::READ_PUBLICATIONS, vec![])?.raw() {
            let row = row?;
            rows.publications.push((int(&row[0]), blob(&row[1]), int(&row[2])));
        }
        for row in self.sql_exec(channel_store::READ_PRESENCE, vec![])?.raw() {
            let row = row?;
            rows.presence.push((text(&row[0]), blob(&row[1]), int(&row[2])));
        }
        for row in self.sql_exec(channel_store::READ_NODES, vec![])?.raw() {
            let row = row?;
            rows.nodes.push(text(&row[0]));
        }
        for row in self.sql_exec(channel_store::READ_IDEMPOTENCY, vec![])?.raw() {
            let row = row?;
            rows.idempotency.push((text(&row[0]), text(&row[1]), int(&row[2]), int(&row[3])));
        }
        let (snapshot, persisted) = channel_store::load(rows);
        if let Some(name) = persisted.name() {
            self.broker.borrow_mut().restore(name, snapshot);
            *self.name.borrow_mut() = Some(name.to_owned());
        }
        *self.persisted.borrow_mut() = Some(persisted);
        Ok(self.name.borrow().is_some())
    }

    fn load(&self, channel: &str) -> Result<()> {
        self.load_stored()?;
        let mut name = self.name.borrow_mut();
        match name.as_deref() {
            Some(n) if n != channel => {
                Err(worker::Error::RustError(format!("channel object of {n:?} got a request for {channel:?}")))
            }
            Some(_) => Ok(()),
            None => {
                *name = Some(channel.to_owned());
                Ok(())
            }
        }
    }

    /// Writes what changed since the last write.
    fn persist(&self) -> Result<()> {
        let Some(name) = self.name.borrow().clone() else { return Ok(()) };
        let snapshot = self.broker.borrow().snapshot(&name);
        let writes: Vec<Write> = {
            let mut persisted = self.persisted.borrow_mut();
            let persisted = persisted.get_or_insert_with(Persisted::default);
            channel_store::diff(persisted, &name, &snapshot)
        };
        for w in writes {
            let (query, params) = w.statement();
            self.sql_exec(query, params)?;
        }
        Ok(())
    }

    /// Routes the broker's outputs: replies into `replies`, channel events to the nodes.
    fn drain(self: &Rc<Self>, replies: &mut Vec<wire::WireReply>) {
        loop {
            let Some(event) = self.broker.borrow_mut().poll_output() else { break };
            match &event {
                BrokerEvent::Reply { id, result } => replies.push(wire::reply_to(*id, result)),
                BrokerEvent::Publication { channel, .. }
                | BrokerEvent::Join { channel, .. }
                | BrokerEvent::Leave { channel, .. } => {
                    let nodes: Vec<String> = self.broker.borrow().nodes(channel).map(|n| n.to_string()).collect();
                    if let Some(wire_event) = wire::event_to(&event) {
                        for node in nodes {
                            self.enqueue(node, wire_event.clone());
                        }
                    }
                }
            }
        }
    }

    fn enqueue(self: &Rc<Self>, node: String, event: WireEvent) {
        let start = self.to_nodes.borrow_mut().push(&node, event);
        if start {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move { host.deliver(node).await });
        }
    }

    /// Sends a node its queued events, one batch at a time, until the queue is empty.
    async fn deliver(self: Rc<Self>, node: String) {
        let Some(channel) = self.name.borrow().clone() else { return };
        loop {
            let Some(events) = self.to_nodes.borrow_mut().take(&node) else { return };
            let subscribes_before = self.subscribes.borrow().get(&node).copied().unwrap_or(0);
            let body = EventBatch { channel: channel.clone(), events }.encode_to_vec();
            match call_node(&self.env, &node, body).await {
                Ok(ack) if !ack.interested => {
                    let subscribes_now = self.subscribes.borrow().get(&node).copied().unwrap_or(0);
                    if subscribes_now == subscribes_before {
                        self.forget_node(&channel, &node);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("delivery to node {node} on {channel}: {e}"),
            }
        }
    }

    /// A node that lost its hub (evicted) stops getting this channel's events.
    fn forget_node(self: &Rc<Self>, channel: &str, node: &str) {
        let request = BrokerRequest {
            id: RequestId(0),
            channel: channel.to_owned(),
            op: BrokerOp::Unsubscribe { node: Arc::from(node) },
        };
        let now = now();
        self.broker.borrow_mut().handle_request(request, now);
        self.drain(&mut Vec::new());
        if let Err(e) = self.persist() {
            tracing::error!("channel {channel}: {e}");
        }
    }

    fn rearm(&self, now: Timestamp) {
        let next = self.broker.borrow().poll_timeout().map(|t| t.max(now.after_ms(MIN_ALARM_GAP_MS)));
        // Re-arm when the deadline moved earlier or there was none; a later one is caught
        // when the current alarm fires.
        let armed = self.alarm.get();
        let rearm = match (armed, next) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(n)) => n < a,
        };
        if !rearm {
            return;
        }
        self.alarm.set(next);
        let storage = self.state.storage();
        let at = next.expect("checked above");
        wasm_bindgen_futures::spawn_local(async move {
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from(at.as_millis() as f64));
            if let Err(e) = storage.set_alarm(worker::ScheduledTime::new(date)).await {
                tracing::error!("channel alarm: {e}");
            }
        });
    }
}

async fn call_node(env: &Env, node: &str, body: Vec<u8>) -> Result<EventAck> {
    let stub = env.durable_object(NODES)?.id_from_string(node)?.get_stub()?;
    let response = stub.fetch_with_request(internal_request(EVENTS_PATH, body)?).await?;
    let bytes = response_bytes(response).await?;
    EventAck::decode(bytes.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))
}
