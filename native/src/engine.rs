//! The engine: one task owns the [`Node`] (hub + in-process broker). Connection tasks talk to
//! it through one event queue; it answers through each connection's own outbound queue.
//! No locks around the hub: the task is the only owner.
//!
//! The queue is bounded by bytes, not by a channel capacity: an event waits for admission
//! ([`Engine::send`]) until the engine has worked through enough of what is queued, so a
//! connection whose frames the engine cannot keep up with stops reading its socket, and the
//! client's own TCP window carries the backpressure. One queue keeps each connection's
//! events in order; `Closed` skips admission (it must never be lost or wait, and there is at
//! most one per connection) and so does `Shutdown`; `/health` and `/metrics` round trips
//! skip it too, bounded by their own count (`PROBES`).

use std::collections::HashMap;
use std::future::Future;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use shared::api::{ApiCommand, ApiId};
use shared::config::Config;
use shared::http::Endpoints;
use shared::hub::{NodeInfo, SessionId, Transport};
use shared::metrics::Snapshot;
use shared::node::{Node, Output};
use shared::protocol::{ConnectRequest, Error};
use shared::proxy::{ProxyId, ProxyOutcome};
use shared::Timestamp;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

pub use crate::outbox::{Out, Outbox};
use crate::proxy::ProxyClient;
use crate::timeouts::Timeouts;

/// A connection as the engine sees it: where its frames go.
pub type Conn = Arc<Outbox>;

/// Bytes of events queued for the engine at most. Enough for the engine never to idle while
/// clients have work for it (thousands of small events); small enough that a flood costs
/// little memory and what is queued ahead of another client's event is little work (16
/// frames of 64 KiB of commands: a few milliseconds in a release build).
const INBOX_BYTES: usize = 1024 * 1024;
/// What an event counts for at least, so the queue also holds a bounded number of events.
const MIN_EVENT_BYTES: usize = 256;
/// `/health` and `/metrics` round trips queued at most. They skip the byte bound: behind a
/// client flood (every connection waiting for admission) they would wait for all of it, and
/// a busy engine would look dead to a load balancer and lose Prometheus its figures just when
/// they matter. Queued directly, they wait only for what the inbox holds (at most
/// `INBOX_BYTES`); this bound keeps a flood of probes from growing the queue instead.
const PROBES: usize = 64;

pub enum Event {
    Open {
        session: SessionId,
        transport: Transport,
        conn: Conn,
        /// The request headers proxies forward (`shared::http::StreamOpen::headers`).
        headers: Vec<(String, String)>,
    },
    /// A unidirectional connect; `last_event_id` resumes a uni SSE client.
    Connect {
        session: SessionId,
        request: ConnectRequest,
        last_event_id: Option<String>,
    },
    Frame {
        session: SessionId,
        data: Bytes,
    },
    /// Commands for the session holding this emulation session id.
    Emulation {
        token: String,
        data: Bytes,
    },
    Closed {
        session: SessionId,
    },
    /// `size`: the request body's, as a measure of the command's.
    Api {
        command: ApiCommand,
        size: usize,
        reply: oneshot::Sender<Result<Value, Error>>,
    },
    /// Disconnects every client (3001); answers with the connections still to flush.
    Shutdown {
        done: oneshot::Sender<Vec<Weak<Outbox>>>,
    },
    /// The node's figures (`/metrics`).
    Metrics {
        reply: oneshot::Sender<Snapshot>,
    },
    /// A round trip through the engine (`/health`).
    Health {
        reply: oneshot::Sender<()>,
    },
    /// What the application backend answered to a proxy call. Skips admission: there is at
    /// most one per call the hub made, and it must not wait behind client frames.
    ProxyReply {
        id: ProxyId,
        outcome: ProxyOutcome,
    },
}

impl Event {
    /// What the event counts for in the queue's byte bound.
    fn weight(&self) -> u32 {
        let bytes = match self {
            Event::Frame { data, .. } | Event::Emulation { data, .. } => data.len(),
            Event::Api { size, .. } => *size,
            Event::Connect { request, .. } => request.token.len() + request.data.len(),
            Event::Open { .. }
            | Event::Closed { .. }
            | Event::Shutdown { .. }
            | Event::Health { .. }
            | Event::ProxyReply { .. }
            | Event::Metrics { .. } => 0,
        };
        // Clamped: a single event larger than the bound waits for an empty queue, not forever.
        bytes.clamp(MIN_EVENT_BYTES, INBOX_BYTES) as u32
    }
}

/// An event in the queue with its share of the byte bound, given back once it is handled.
struct Queued {
    event: Event,
    _admitted: Option<OwnedSemaphorePermit>,
}

/// Tells the engine a session ended when dropped: whatever way a connection's task or body
/// ends (returns, fails, is cancelled), the engine hears of it once.
pub struct SessionGuard {
    engine: Engine,
    session: SessionId,
}

impl SessionGuard {
    pub fn new(engine: Engine, session: SessionId) -> Self {
        SessionGuard { engine, session }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.engine.closed(self.session);
    }
}

/// The handle connection tasks hold.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Queued>,
    admission: Arc<Semaphore>,
    /// Places for probes (see [`PROBES`]).
    probes: Arc<Semaphore>,
    next_session: Arc<AtomicU64>,
    pub config: Arc<Config>,
    /// Which path is which endpoint (from `config`).
    pub endpoints: Arc<Endpoints>,
    pub node_id: Arc<str>,
    pub timeouts: Timeouts,
    /// Failed admin logins (bounded; see `shared::admin::LoginGuard`).
    pub admin_logins: Arc<std::sync::Mutex<shared::admin::LoginGuard>>,
}

impl Engine {
    pub fn session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues an event once the queue has room for it: the caller waits meanwhile, which is
    /// how a connection's reader stops reading while the engine is behind.
    /// The future owns what it needs, so a connection can keep it while it writes.
    pub fn send(&self, event: Event) -> impl Future<Output = ()> + Send + 'static {
        let (tx, admission) = (self.tx.clone(), self.admission.clone());
        async move {
            let weight = event.weight();
            // Fails only once the engine is gone, which means shutdown is under way.
            let Ok(admitted) = admission.acquire_many_owned(weight).await else { return };
            let _ = tx.send(Queued { event, _admitted: Some(admitted) });
        }
    }

    /// Queues a `/health` or `/metrics` round trip: past the byte bound, within [`PROBES`].
    async fn probe(&self, event: Event) {
        let Ok(place) = self.probes.clone().acquire_owned().await else { return };
        let _ = self.tx.send(Queued { event, _admitted: Some(place) });
    }

    /// Tells the engine a connection ended. Never waits and never refused: there is one per
    /// connection, so these are bounded by the connections.
    pub fn closed(&self, session: SessionId) {
        let _ = self.tx.send(Queued { event: Event::Closed { session }, _admitted: None });
    }

    pub async fn api(&self, command: ApiCommand, size: usize) -> Result<Value, Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Api { command, size, reply }).await;
        rx.await.unwrap_or_else(|_| Err(Error::internal()))
    }

    /// Whether the engine answers a round trip within `limit` (what is queued ahead included,
    /// but not the connections waiting to queue more: see `PROBES`).
    pub async fn healthy(&self, limit: std::time::Duration) -> bool {
        let (reply, rx) = oneshot::channel();
        let round_trip = async {
            self.probe(Event::Health { reply }).await;
            rx.await.is_ok()
        };
        tokio::time::timeout(limit, round_trip).await.unwrap_or(false)
    }

    /// Disconnects every client (3001) and closes every connection opened from now on.
    /// Skips admission: a full queue must not delay it. Answers with the connections that
    /// still have their disconnect to write: each is gone once its task has flushed it.
    pub async fn shutdown(&self) -> Vec<Weak<Outbox>> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(Queued { event: Event::Shutdown { done }, _admitted: None });
        rx.await.unwrap_or_default()
    }

    /// The node's figures, if the engine answers within `limit`.
    pub async fn metrics(&self, limit: Duration) -> Option<Snapshot> {
        let (reply, rx) = oneshot::channel();
        let round_trip = async {
            self.probe(Event::Metrics { reply }).await;
            rx.await.ok()
        };
        tokio::time::timeout(limit, round_trip).await.ok().flatten()
    }
}

pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// Starts the engine task.
pub fn start(config: Arc<Config>, node_name: String, timeouts: Timeouts) -> Result<Engine, String> {
    let seed = random_u64();
    let node_id: Arc<str> = Arc::from(format!("{:016x}", random_u64()));
    let info = NodeInfo { id: node_id.clone(), name: node_name, version: shared::VERSION.to_string() };
    let node = Node::new(config.clone(), info, seed, now()).map_err(|e| e.to_string())?;
    let endpoints = Arc::new(Endpoints::new(&config).map_err(|e| e.to_string())?);
    let (tx, rx) = mpsc::unbounded_channel();
    // A test hook: the engine stops answering after this many milliseconds (`/health` must
    // then say so).
    let stall_after = std::env::var("ROTOR_TEST_ENGINE_STALL_MS").ok().and_then(|v| v.parse().ok());
    tokio::spawn(run(node, rx, tx.downgrade(), stall_after.map(Duration::from_millis)));
    let admission = Arc::new(Semaphore::new(INBOX_BYTES));
    let probes = Arc::new(Semaphore::new(PROBES));
    let admin_logins = Arc::default();
    let next_session = Arc::new(AtomicU64::new(1));
    Ok(Engine { tx, admission, probes, next_session, config, endpoints, node_id, timeouts, admin_logins })
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has randomness");
    u64::from_le_bytes(b)
}

/// A waiting API call: where the answer goes, the method and when it started (metrics).
type WaitingApi = (oneshot::Sender<Result<Value, Error>>, &'static str, Instant);

struct Loop {
    node: Node,
    /// Shut down: connections that open now are closed at once (3001).
    draining: bool,
    conns: FxHashMap<SessionId, Conn>,
    api: HashMap<ApiId, WaitingApi>,
    next_api: u64,
    /// Makes the hub's proxy calls; their answers come back as [`Event::ProxyReply`]s.
    proxy: ProxyClient,
    /// Weak: the engine ends when the last [`Engine`] handle goes, calls in flight or not.
    replies: mpsc::WeakUnboundedSender<Queued>,
}

async fn run(
    node: Node,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    replies: mpsc::WeakUnboundedSender<Queued>,
    stall_after: Option<Duration>,
) {
    let proxy = ProxyClient::default();
    let mut l =
        Loop { node, draining: false, conns: FxHashMap::default(), api: HashMap::new(), next_api: 1, proxy, replies };
    let stall_at = stall_after.map(|d| tokio::time::Instant::now() + d);
    loop {
        if stall_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            tracing::warn!("test hook: the engine stops answering (ROTOR_TEST_ENGINE_STALL_MS)");
            std::future::pending::<()>().await;
        }
        let sleep = match l.node.poll_timeout() {
            Some(at) => Duration::from_millis(now().until(at)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            event = rx.recv() => {
                let Some(queued) = event else { return };
                l.handle(queued);
                // Take whatever else is already queued before going back to sleep.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(queued) => l.handle(queued),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep.min(stall_after.unwrap_or(sleep))) => {
                l.node.handle_timeout(now());
                l.drain();
            }
        }
    }
}

impl Loop {
    /// Handles one event; its share of the queue's bound is given back once it is done.
    fn handle(&mut self, queued: Queued) {
        let Queued { event, _admitted } = queued;
        let now = now();
        match event {
            Event::Open { conn, .. } if self.draining => {
                conn.push(Out::Close(shared::protocol::Disconnect::shutdown()));
            }
            Event::Open { session, transport, conn, headers } => {
                self.conns.insert(session, conn);
                self.node.handle_open(session, transport, now);
                self.node.handle_headers(session, headers);
            }
            Event::ProxyReply { id, outcome } => self.node.handle_proxy_reply(id, outcome, now),
            Event::Connect { session, request, last_event_id } => {
                self.node.handle_connect(session, request, last_event_id, now)
            }
            Event::Frame { session, data } => self.node.handle_frame(session, &data, now),
            Event::Emulation { token, data } => {
                // An unknown session is dropped silently, as Centrifugo does (the client's
                // stream is gone, or it went to another node).
                if let Some(session) = self.node.hub().session_by_token(&token) {
                    self.node.handle_frame(session, &data, now);
                }
            }
            Event::Closed { session } => {
                self.conns.remove(&session);
                self.node.handle_closed(session, now);
            }
            Event::Api { command, reply, .. } => {
                let id = ApiId(self.next_api);
                self.next_api += 1;
                self.api.insert(id, (reply, command.method(), Instant::now()));
                self.node.handle_api(id, command, now);
            }
            Event::Shutdown { done } => {
                self.draining = true;
                let open: Vec<Weak<Outbox>> = self.conns.values().map(Arc::downgrade).collect();
                self.node.shutdown(now);
                self.drain();
                let _ = done.send(open);
            }
            Event::Metrics { reply } => {
                let _ = reply.send(self.node.metrics_snapshot());
            }
            Event::Health { reply } => {
                let _ = reply.send(());
            }
        }
        self.drain();
    }

    /// Carries out every output of the node, in order.
    fn drain(&mut self) {
        // Sampled once: the backlog rule needs a time only for the disconnect it may cause.
        let now = now();
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { session, data } => self.write(session, Out::Data(data), now),
                Output::Ping { session, data } => self.write(session, Out::Ping(data), now),
                Output::Close { session, disconnect } => {
                    if let Some(conn) = self.conns.remove(&session) {
                        conn.push(Out::Close(disconnect));
                    }
                }
                Output::Api { id, result } => {
                    if let Some((reply, method, started)) = self.api.remove(&id) {
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        self.node.metrics_mut().observe_api(method, micros);
                        let _ = reply.send(result);
                    }
                }
                Output::Proxy(request) => {
                    let (client, replies) = (self.proxy.clone(), self.replies.clone());
                    // Bounded by the call's timeout (ProxyClient::call).
                    tokio::spawn(async move {
                        let id = request.id;
                        let outcome = client.call(request).await;
                        if let Some(tx) = replies.upgrade() {
                            let _ = tx.send(Queued { event: Event::ProxyReply { id, outcome }, _admitted: None });
                        }
                    });
                }
                Output::ProxyFailed { kind, endpoint, cause } => {
                    tracing::warn!(proxy = kind.name(), %endpoint, %cause, "{} proxy call to {endpoint} failed: {cause}", kind.name());
                }
            }
        }
    }

    /// Queues a frame on the connection and tells the node the connection's backlog (the
    /// node decides when a client is too slow).
    fn write(&mut self, session: SessionId, out: Out, now: Timestamp) {
        let Some(conn) = self.conns.get(&session) else { return };
        // None: the connection task is gone; its Closed event is on the way.
        if let Some(queued) = conn.push(out) {
            self.node.handle_backlog(session, queued, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let config = Arc::new(Config::default());
        start(config, "test".into(), Timeouts::DEFAULT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A client flood fills the inbox and queues behind it: the engine is busy, not wedged,
    /// so `/health` and `/metrics` must not wait for the flood's admission (a load balancer
    /// would take a busy node out, Prometheus would lose the figures when they matter).
    #[tokio::test]
    async fn probes_do_not_wait_behind_a_full_inbox() {
        let engine = engine();
        let held = engine.admission.clone().acquire_many_owned(INBOX_BYTES as u32).await;
        assert!(held.is_ok());
        assert!(engine.healthy(Duration::from_millis(500)).await, "a busy engine is healthy");
        assert!(engine.metrics(Duration::from_millis(500)).await.is_some(), "and answers a scrape");
    }
}
