//! The hub's side of [`crate::metrics`]: what it counts, and where. Every figure is one
//! increment where the event happens (a delivery batch counts once per batch, not per
//! subscriber); gauges come from the hub's state when a host asks for a [`Snapshot`].

use super::session::Transport;
use super::{Hub, SessionId};
use crate::broker::BrokerOp;
use crate::metrics::{MessageType, Metrics, Snapshot, CLIENT_METHODS, UNKNOWN_METHOD};
use crate::protocol::{Command, Disconnect, Reply};
use crate::time::Timestamp;

impl Transport {
    /// Index of the transport's label in [`crate::metrics::TRANSPORTS`].
    pub fn metric_index(self) -> usize {
        match self {
            Transport::Websocket(_) => 0,
            Transport::HttpStream(_) => 1,
            Transport::Sse => 2,
            Transport::UniWebsocket => 3,
            Transport::UniHttpStream => 4,
            Transport::UniSse => 5,
        }
    }
}

/// The client method a command calls, as an index into [`CLIENT_METHODS`].
pub(crate) fn method_of(c: &Command) -> u8 {
    let name = if c.connect.is_some() {
        "connect"
    } else if c.subscribe.is_some() {
        "subscribe"
    } else if c.unsubscribe.is_some() {
        "unsubscribe"
    } else if c.publish.is_some() {
        "publish"
    } else if c.presence.is_some() {
        "presence"
    } else if c.presence_stats.is_some() {
        "presence_stats"
    } else if c.history.is_some() {
        "history"
    } else if c.ping.is_some() {
        "ping"
    } else if c.send.is_some() {
        "send"
    } else if c.rpc.is_some() {
        "rpc"
    } else if c.refresh.is_some() {
        "refresh"
    } else if c.sub_refresh.is_some() {
        "sub_refresh"
    } else {
        "unknown"
    };
    CLIENT_METHODS.iter().position(|m| *m == name).unwrap_or(UNKNOWN_METHOD) as u8
}

impl Hub {
    // ---- getters

    /// The node's figures now: the counters so far and the gauges from the hub's state.
    pub fn metrics_snapshot(&self) -> Snapshot {
        Snapshot {
            // Connected clients only, as Centrifugo and `info` count them: a socket still
            // handshaking (or waiting on the connect proxy) is no client yet.
            num_clients: self.sessions.values().filter(|s| s.state == super::State::Connected).count() as u64,
            num_users: self.by_user.len() as u64,
            num_channels: self.channels.len() as u64,
            num_subscriptions: self.subscriptions,
            num_nodes: 1,
            metrics: self.metrics.clone(),
        }
    }

    /// The counters, for figures the host measures (server API durations).
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    // ---- where the hub counts

    pub(crate) fn count_open(&mut self, transport: Transport) {
        if self.counting {
            let n = &mut self.metrics.transport_connects[transport.metric_index()];
            *n = n.saturating_add(1);
        }
    }

    /// A command starts: its method and start time, for its reply.
    pub(crate) fn count_command(&mut self, session: SessionId, command: &Command, now: Timestamp) {
        if !self.counting {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.command = (method_of(command), now);
        }
        self.now = now;
    }

    /// A reply goes to a session: the duration of its command, and its error if any.
    pub(crate) fn count_reply(&mut self, session: SessionId, reply: &Reply) {
        if !self.counting || reply.id == 0 {
            return;
        }
        let Some(s) = self.sessions.get(&session) else { return };
        let (method, since) = s.command;
        let index = s.transport.metric_index();
        if let Some(e) = &reply.error {
            self.metrics.reply_errors.add(method, e.code, 1);
        }
        let micros = since.until(self.now).saturating_mul(1000);
        if let Some(d) = self.metrics.command_durations.get_mut(usize::from(method)) {
            d.observe(micros);
        }
        self.metrics.transport_messages_sent[index] = self.metrics.transport_messages_sent[index].saturating_add(1);
    }

    pub(crate) fn count_disconnect(&mut self, disconnect: &Disconnect) {
        if self.counting {
            self.metrics.server_disconnects.add(0, disconnect.code, 1);
        }
    }

    pub(crate) fn count_broker_op(&mut self, op: &BrokerOp) {
        if !self.counting {
            return;
        }
        let t = match op {
            BrokerOp::Publish(_) => MessageType::Publication,
            BrokerOp::Join { .. } => MessageType::Join,
            BrokerOp::Leave { .. } => MessageType::Leave,
            _ => return,
        };
        self.metrics.messages_sent[t as usize] = self.metrics.messages_sent[t as usize].saturating_add(1);
    }

    /// A message from the broker, and the messages it became (by transport).
    pub(crate) fn count_received(&mut self, t: MessageType, sent: &[u64; crate::metrics::TRANSPORTS.len()]) {
        if !self.counting {
            return;
        }
        self.metrics.messages_received[t as usize] = self.metrics.messages_received[t as usize].saturating_add(1);
        for (total, n) in self.metrics.transport_messages_sent.iter_mut().zip(sent) {
            *total = total.saturating_add(*n);
        }
    }
}
