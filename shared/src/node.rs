//! A hub with its broker in the same process: what the native host and the simulation tests
//! drive. Broker requests never leave it; only transport work and API answers come out.

use std::sync::Arc;

use crate::api::{ApiCommand, ApiId};
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::{Hub, HubConfigError, NodeInfo, Output, SessionId, Transport};
use crate::protocol::ConnectRequest;
use crate::time::Timestamp;

pub struct Node {
    hub: Hub,
    broker: Broker,
    now: Timestamp,
}

impl Node {
    pub fn new(config: Arc<Config>, info: NodeInfo, seed: u64, now: Timestamp) -> Result<Self, HubConfigError> {
        Ok(Node { hub: Hub::new(config, info, seed, now)?, broker: Broker::new(seed.rotate_left(17) ^ 0x9e37_79b9), now })
    }

    // ---- getters

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    // ---- handlers (see `Hub` for what each means)

    pub fn handle_open(&mut self, session: SessionId, transport: Transport, now: Timestamp) {
        self.now = now;
        self.hub.handle_open(session, transport, now);
    }

    pub fn handle_last_event_id(&mut self, session: SessionId, id: String) {
        self.hub.handle_last_event_id(session, id);
    }

    pub fn handle_connect(&mut self, session: SessionId, request: ConnectRequest, now: Timestamp) {
        self.now = now;
        self.hub.handle_connect(session, request, now);
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

    /// The next thing for the host to do. Never [`Output::Broker`]: those are served here.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            match self.hub.poll_output() {
                Some(Output::Broker(request)) => self.broker.handle_request(request, self.now),
                Some(other) => return Some(other),
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
