//! The engine: one task owns the [`Node`] (hub + in-process broker). Connection tasks talk to
//! it through one event queue; it answers through each connection's own outbound queue.
//! No locks around the hub: the task is the only owner.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use shared::api::{ApiCommand, ApiId};
use shared::config::Config;
use shared::hub::{NodeInfo, Output, SessionId, Transport};
use shared::node::Node;
use shared::protocol::{ConnectRequest, Disconnect, Error};
use shared::Timestamp;
use tokio::sync::{mpsc, oneshot};

pub use crate::outbox::{Out, Outbox};

/// A connection as the engine sees it: where its frames go.
pub type Conn = Arc<Outbox>;

pub enum Event {
    Open { session: SessionId, transport: Transport, conn: Conn },
    /// A unidirectional connect; `last_event_id` resumes a uni SSE client.
    Connect { session: SessionId, request: ConnectRequest, last_event_id: Option<String> },
    Frame { session: SessionId, data: Bytes },
    /// Commands for the session holding this emulation session id.
    Emulation { token: String, data: Bytes },
    Closed { session: SessionId },
    Api { command: ApiCommand, reply: oneshot::Sender<Result<Value, Error>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// The handle connection tasks hold.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Event>,
    next_session: Arc<AtomicU64>,
    pub config: Arc<Config>,
    pub node_id: Arc<str>,
}

impl Engine {
    pub fn session_id(&self) -> SessionId {
        SessionId(self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    pub fn send(&self, event: Event) {
        // The engine lives as long as the process; a failed send means shutdown is under way.
        let _ = self.tx.send(event);
    }

    pub async fn api(&self, command: ApiCommand) -> Result<Value, Error> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Api { command, reply });
        rx.await.unwrap_or_else(|_| Err(Error::internal()))
    }

    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        self.send(Event::Shutdown { done });
        let _ = rx.await;
    }
}

pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// Starts the engine task.
pub fn start(config: Arc<Config>, node_name: String) -> Result<Engine, String> {
    let seed = random_u64();
    let node_id: Arc<str> = Arc::from(format!("{:016x}", random_u64()));
    let info = NodeInfo { id: node_id.clone(), name: node_name, version: shared::VERSION.to_string() };
    let node = Node::new(config.clone(), info, seed, now()).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let queue_limit = config.client_queue_max_size as usize;
    tokio::spawn(run(node, rx, queue_limit));
    Ok(Engine { tx, next_session: Arc::new(AtomicU64::new(1)), config, node_id })
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has randomness");
    u64::from_le_bytes(b)
}

struct Loop {
    node: Node,
    conns: FxHashMap<SessionId, Conn>,
    api: HashMap<ApiId, oneshot::Sender<Result<Value, Error>>>,
    next_api: u64,
    queue_limit: usize,
}

async fn run(node: Node, mut rx: mpsc::UnboundedReceiver<Event>, queue_limit: usize) {
    let mut l = Loop { node, conns: FxHashMap::default(), api: HashMap::new(), next_api: 1, queue_limit };
    loop {
        let sleep = match l.node.poll_timeout() {
            Some(at) => Duration::from_millis(now().until(at)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { return };
                if let Event::Shutdown { done } = event {
                    l.node.shutdown(now());
                    l.drain();
                    let _ = done.send(());
                    continue;
                }
                l.handle(event);
                // Take whatever else is already queued before going back to sleep.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(Event::Shutdown { done }) => { l.node.shutdown(now()); l.drain(); let _ = done.send(()); }
                        Ok(event) => l.handle(event),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {
                l.node.handle_timeout(now());
                l.drain();
            }
        }
    }
}

impl Loop {
    fn handle(&mut self, event: Event) {
        let now = now();
        match event {
            Event::Open { session, transport, conn } => {
                self.conns.insert(session, conn);
                self.node.handle_open(session, transport, now);
            }
            Event::Connect { session, request, last_event_id } => {
                if let Some(id) = last_event_id {
                    self.node.handle_last_event_id(session, id);
                }
                self.node.handle_connect(session, request, now)
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
            Event::Api { command, reply } => {
                let id = ApiId(self.next_api);
                self.next_api += 1;
                self.api.insert(id, reply);
                self.node.handle_api(id, command, now);
            }
            Event::Shutdown { .. } => {}
        }
        self.drain();
    }

    /// Carries out every output of the node, in order.
    fn drain(&mut self) {
        let mut slow = Vec::new();
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { session, data } => self.write(session, Out::Data(data), &mut slow),
                Output::Ping { session, data } => self.write(session, Out::Ping(data), &mut slow),
                Output::Close { session, disconnect } => {
                    if let Some(conn) = self.conns.remove(&session) {
                        conn.push(Out::Close(disconnect));
                    }
                }
                Output::Api { id, result } => {
                    if let Some(reply) = self.api.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Output::Broker(_) => unreachable!("the node serves broker requests itself"),
            }
            if !slow.is_empty() {
                let now = now();
                for session in slow.drain(..) {
                    self.node.disconnect(session, Disconnect::slow(), now);
                }
            }
        }
    }

    fn write(&mut self, session: SessionId, out: Out, slow: &mut Vec<SessionId>) {
        let Some(conn) = self.conns.get(&session) else { return };
        // None: the connection task is gone; its Closed event is on the way.
        if conn.push(out).is_some_and(|queued| queued > self.queue_limit) {
            slow.push(session);
        }
    }
}
