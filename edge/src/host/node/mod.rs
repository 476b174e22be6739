//! Node objects: each runs a [`Hub`] for the client connections the Worker hands it (streams
//! and WebSockets), carries the hub's broker requests to channel objects, and takes channel
//! events from them.
//!
//! Every input follows the drive contract: sample `now` once, call the hub, then [`drain`]
//! its outputs (writes, closes, broker requests) and re-arm the one alarm if the hub's next
//! deadline moved. No `RefCell` borrow is held across an `.await`.
//!
//! This file holds the object and the events the runtime delivers to it; the jobs they lead
//! to have files of their own:
//!
//! - [`transports`]: streaming responses, emulation requests and WebSocket upgrades;
//! - [`outputs`]: carrying out what the hub asks for (writes, closes, the alarm);
//! - [`hibernation`]: building the hub in each life of the object, storing what the next
//!   life needs, and rebuilding the sessions of WebSockets that outlived the last one;
//! - [`channel_link`]: broker requests to channel objects and their events back;
//! - [`connection_api`]: server API commands about this node's connections.
//!
//! [`drain`]: NodeHost::drain

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use shared::api::ApiId;
use shared::broker::BrokerRequest;
use shared::http::{Answer, Decision};
use shared::hub::{Hub, SessionId};
use shared::protocol::{Error, StreamPosition};
use shared::Timestamp;
use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use super::http::{self, text};
use super::{
    load_config, now, random_u64, ADMIN_LOGIN_PATH, CONNECTION_API_PATH, EMULATION_PATH, EVENTS_PATH, HEALTH_PATH,
    METRICS_PATH,
};
use crate::batches::Batches;
use crate::node_store::Attachment;

mod channel_link;
mod connection_api;
mod hibernation;
mod outputs;
mod proxy;
mod transports;

#[durable_object]
pub struct NodeObject {
    host: Rc<NodeHost>,
}

enum Sink {
    /// A streaming response body; `queued` counts the bytes sent to it and not yet taken by
    /// the runtime; the hub bounds it by `client_queue_max_size` (`Hub::handle_backlog`).
    Stream {
        tx: UnboundedSender<Vec<u8>>,
        queued: Rc<Cell<usize>>,
    },
    Socket {
        ws: WebSocket,
        binary: bool,
    },
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
    /// Failed admin logins (`node-0` takes every login; see `super::admin`).
    admin_logins: RefCell<shared::admin::LoginGuard>,
    /// When this life of the object began (the health test hook counts from it).
    started: Timestamp,
}

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
            admin_logins: RefCell::default(),
            started: now(),
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
        if path == CONNECTION_API_PATH {
            return host.connection_api(req).await;
        }
        if path == EMULATION_PATH {
            return host.emulation(req).await;
        }
        if path == ADMIN_LOGIN_PATH {
            return super::admin::check_login(req, &host.env, &host.admin_logins).await;
        }
        if path == METRICS_PATH {
            let snapshot = host.with_hub(|hub| hub.metrics_snapshot()).unwrap_or_default();
            let body = serde_json::to_string(&snapshot).map_err(|e| worker::Error::RustError(e.to_string()))?;
            return http::json(200, body);
        }
        if path == HEALTH_PATH {
            return host.health().await;
        }
        let loaded = load_config(&host.env).map_err(worker::Error::RustError)?;
        let routed = http::decide(&req, &loaded)?;
        let cors = routed.cors();
        let response = match routed.decision {
            Decision::Stream(open) => host.stream(req, open).await?,
            Decision::Upgrade(upgrade) => host.websocket(upgrade)?,
            Decision::Answer(a) => http::answer(a)?,
            // The Worker serves these; a node object is never asked.
            Decision::Api(_)
            | Decision::Emulation(_)
            | Decision::Health
            | Decision::AdminLogin(_)
            | Decision::AdminApi(_)
            | Decision::Metrics { .. } => http::answer(Answer::not_found())?,
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
    /// Answers a health round trip. A test hook (`TEST_NODE_STALL_MS` in the environment)
    /// makes the object stop answering that long after it started, so tests can see
    /// `/health` turn 503.
    async fn health(&self) -> Result<Response> {
        let hook = self.env.var("TEST_NODE_STALL_MS").or_else(|_| self.env.secret("TEST_NODE_STALL_MS"));
        let stall_after = hook.ok().and_then(|v| v.to_string().parse::<u64>().ok());
        if stall_after.is_some_and(|ms| now().0 >= self.started.0.saturating_add(ms)) {
            tracing::warn!("test hook: the node object stops answering (TEST_NODE_STALL_MS)");
            worker::Delay::from(std::time::Duration::from_secs(30)).await;
        }
        text(200, "{}")
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
}
