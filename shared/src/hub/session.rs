//! Per-connection state kept by the hub.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{Command, Encoding, Framing, Publication, SubscribeResult, Wire};
use crate::time::Timestamp;

/// Identifies a connection. Chosen by the host (unique for the hub's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// The transports rotor serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    UniHttpStream,
    UniSse,
    UniWebsocket,
    Websocket(Encoding),
    HttpStream(Encoding),
    Sse,
}

impl Transport {
    pub fn wire(self) -> Wire {
        match self {
            Transport::UniHttpStream => Wire::new(Encoding::Json, Framing::Stream, true),
            Transport::UniSse => Wire::new(Encoding::Json, Framing::Sse, true),
            Transport::UniWebsocket => Wire::new(Encoding::Json, Framing::WebSocket, true),
            Transport::Websocket(e) => Wire::new(e, Framing::WebSocket, false),
            Transport::HttpStream(e) => Wire::new(e, Framing::Stream, false),
            Transport::Sse => Wire::new(Encoding::Json, Framing::Sse, false),
        }
    }

    pub fn is_unidirectional(self) -> bool {
        self.wire().unidirectional
    }

    /// Bidirectional emulation: commands after connect arrive through `/emulation`.
    pub fn is_emulation(self) -> bool {
        matches!(self, Transport::HttpStream(_) | Transport::Sse)
    }

    /// Whether a disconnect is told with a push before the transport closes (everything but
    /// the bidirectional WebSocket, where the close frame carries it).
    pub fn pushes_disconnect(self) -> bool {
        !matches!(self, Transport::Websocket(_))
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::UniHttpStream => "uni_http_stream",
            Transport::UniSse => "uni_sse",
            Transport::UniWebsocket => "uni_websocket",
            Transport::Websocket(_) => "websocket",
            Transport::HttpStream(_) => "http_stream",
            Transport::Sse => "sse",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Transport open, no connect command yet.
    Opened,
    /// Connect accepted, server-side subscriptions being set up.
    Connecting,
    Connected,
}

pub(crate) struct Session {
    pub transport: Transport,
    pub wire: Wire,
    pub state: State,
    pub client: Arc<str>,
    /// Session id handed to unidirectional and emulation clients.
    pub token: Arc<str>,
    pub user: Arc<str>,
    pub conn_info: Bytes,
    pub expires_at: Option<Timestamp>,
    pub subs: BTreeMap<Arc<str>, Subscription>,
    /// Commands waiting while an earlier one waits for the broker: a frame's commands run in
    /// order, as if each finished before the next started.
    pub inbox: VecDeque<Command>,
    pub busy: bool,
    /// A connect that failed with an error reply: the next command disconnects.
    pub unusable: bool,
    pub pong_deadline: Option<Timestamp>,
    pub connect: Option<PendingConnect>,
    /// `Last-Event-ID` of a reconnecting uni SSE client, until connect decodes it.
    pub last_event_id: Option<String>,
    /// A uni SSE client resuming from its event id: recovered publications go out as events.
    pub resuming: bool,
}

impl Session {
    pub fn info(&self, chan_info: &Bytes) -> crate::protocol::ClientInfo {
        crate::protocol::ClientInfo {
            user: self.user.to_string(),
            client: self.client.to_string(),
            conn_info: self.conn_info.clone(),
            chan_info: chan_info.clone(),
        }
    }

    /// Whether this session's events carry stream positions in SSE `id:` fields.
    pub fn has_event_ids(&self) -> bool {
        self.transport == Transport::UniSse
    }

    pub fn active_channels(&self) -> usize {
        self.subs.len()
    }
}

/// A connect command waiting for its server-side subscriptions.
pub(crate) struct PendingConnect {
    pub command_id: u32,
    pub waiting: usize,
    pub results: BTreeMap<String, SubscribeResult>,
    /// Per-channel recovery hints from the connect request.
    pub failed: Option<crate::protocol::Error>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubState {
    /// Waiting for the broker; publications are buffered.
    Pending,
    Active,
}

pub(crate) struct Subscription {
    pub state: SubState,
    pub server_side: bool,
    pub chan_info: Bytes,
    pub expires_at: Option<Timestamp>,
    pub recoverable: bool,
    pub positioned: bool,
    /// Stream position last delivered (epoch, offset).
    pub epoch: Arc<str>,
    pub offset: u64,
    pub push_join_leave: bool,
    pub presence: bool,
    pub emit_join_leave: bool,
    pub buffer: Vec<(Arc<str>, Arc<Publication>)>,
}
