//! A hub with its broker in the same process: what the native host and the simulation tests
//! drive. Broker requests never leave it; only transport work and API answers come out.

use std::sync::Arc;

use crate::api::{ApiCommand, ApiId};
use crate::broker::Broker;
use crate::config::Config;
use bytes::Bytes;

use crate::hub::{self, Hub, HubConfigError, NodeInfo, SessionId, Transport};
use crate::protocol::{ConnectRequest, Disconnect, Error};
use crate::time::Timestamp;

/// What the host of a [`Node`] must do, in order: the hub's outputs (see [`hub::Output`]) but
/// broker requests, which the node serves itself.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum Output {
    Send { session: SessionId, data: Bytes },
    Ping { session: SessionId, data: Bytes },
    Close { session: SessionId, disconnect: Disconnect },
    Api { id: ApiId, result: Result<serde_json::Value, Error> },
    Proxy(crate::proxy::ProxyRequest),
    ProxyFailed { kind: crate::proxy::ProxyKind, endpoint: String, cause: String },
}

impl From<Output> for hub::Output {
    fn from(output: Output) -> Self {
        match output {
            Output::Send { session, data } => hub::Output::Send { session, data },
            Output::Ping { session, data } => hub::Output::Ping { session, data },
            Output::Close { session, disconnect } => hub::Output::Close { session, disconnect },
            Output::Api { id, result } => hub::Output::Api { id, result },
            Output::Proxy(request) => hub::Output::Proxy(request),
            Output::ProxyFailed { kind, endpoint, cause } => hub::Output::ProxyFailed { kind, endpoint, cause },
        }
    }
}

pub struct Node {
    hub: Hub,
    broker: Broker,
    now: Timestamp,
}

impl Node {
    pub fn new(config: Arc<Config>, info: NodeInfo, seed: u64, now: Timestamp) -> Result<Self, HubConfigError> {
        Ok(Node {
            hub: Hub::new(config, info, seed, now)?,
            broker: Broker::new(seed.rotate_left(17) ^ 0x9e37_79b9),
            now,
        })
    }

    // ---- getters

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The node's figures for `/metrics`.
    pub fn metrics_snapshot(&self) -> crate::metrics::Snapshot {
        self.hub.metrics_snapshot()
    }

    /// The counters, for figures the host measures (server API durations).
    pub fn metrics_mut(&mut self) -> &mut crate::metrics::Metrics {
        self.hub.metrics_mut()
    }

    // ---- handlers (see `Hub` for what each means)

    pub fn handle_open(&mut self, session: SessionId, transport: Transport, now: Timestamp) {
        self.now = now;
        self.hub.handle_open(session, transport, now);
    }

    pub fn handle_connect(
        &mut self,
        session: SessionId,
        request: ConnectRequest,
        last_event_id: Option<String>,
        now: Timestamp,
    ) {
        self.now = now;
        self.hub.handle_connect(session, request, last_event_id, now);
    }

    pub fn handle_frame(&mut self, session: SessionId, frame: &[u8], now: Timestamp) {
        self.now = now;
        self.hub.handle_frame(session, frame, now);
    }

    pub fn handle_backlog(&mut self, session: SessionId, queued: usize, now: Timestamp) {
        self.now = now;
        self.hub.handle_backlog(session, queued, now);
    }

    pub fn handle_closed(&mut self, session: SessionId, now: Timestamp) {
        self.now = now;
        self.hub.handle_closed(session, now);
    }

    pub fn handle_api(&mut self, id: ApiId, command: ApiCommand, now: Timestamp) {
        self.now = now;
        self.hub.handle_api(id, command, now);
    }

    pub fn handle_headers(&mut self, session: SessionId, headers: Vec<(String, String)>) {
        self.hub.handle_headers(session, headers);
    }

    pub fn handle_proxy_reply(
        &mut self,
        id: crate::proxy::ProxyId,
        outcome: crate::proxy::ProxyOutcome,
        now: Timestamp,
    ) {
        self.now = now;
        self.hub.handle_proxy_reply(id, outcome, now);
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        self.broker.handle_timeout(now);
        self.hub.handle_timeout(now);
    }

    // ---- commands

    pub fn disconnect(&mut self, session: SessionId, disconnect: crate::protocol::Disconnect, now: Timestamp) {
        self.now = now;
        self.hub.disconnect(session, disconnect, now);
    }

    pub fn shutdown(&mut self, now: Timestamp) {
        self.now = now;
        self.hub.shutdown(now);
    }

    // ---- pollers

    /// The next thing for the host to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.hub.poll_output() {
                Some(hub::Output::Broker(request)) => self.broker.handle_request(request, self.now),
                Some(hub::Output::Send { session, data }) => return Some(Output::Send { session, data }),
                Some(hub::Output::Ping { session, data }) => return Some(Output::Ping { session, data }),
                Some(hub::Output::Close { session, disconnect }) => return Some(Output::Close { session, disconnect }),
                Some(hub::Output::Api { id, result }) => return Some(Output::Api { id, result }),
                Some(hub::Output::Proxy(request)) => return Some(Output::Proxy(request)),
                Some(hub::Output::ProxyFailed { kind, endpoint, cause }) => {
                    return Some(Output::ProxyFailed { kind, endpoint, cause })
                }
                None => {
                    let event = self.broker.poll_output()?;
                    self.hub.handle_broker(event, self.now);
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.hub.poll_timeout(), self.broker.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
