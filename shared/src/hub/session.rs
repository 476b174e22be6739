//! Per-connection state kept by the hub.

use std::borrow::Borrow;
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
    /// Connect refused with an error reply: the next command disconnects.
    Refused,
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
    pub subs: Subscriptions,
    /// Commands waiting while an earlier one waits for the broker: a frame's commands run in
    /// order, as if each finished before the next started.
    pub inbox: VecDeque<Command>,
    pub busy: bool,
    pub pong_deadline: Option<Timestamp>,
    /// The session's scheduled timers, at most one of each kind: a replaced or ended one is
    /// taken out of the hub's timer set at once, so nothing outlives the session.
    pub timers: Vec<(super::timers::Timer, Timestamp)>,
    /// A `PresenceRefresh` timer is scheduled for this session.
    pub presence_refresh: bool,
    /// Boxed: needed only while connecting.
    pub connect: Option<Box<PendingConnect>>,
    /// `Last-Event-ID` of a reconnecting uni SSE client, until connect decodes it.
    pub last_event_id: Option<String>,
    /// A uni SSE client resuming from its event id: recovered publications go out as events.
    pub resuming: bool,
    /// A frame went bad part-way: once the commands before it ran, the client is disconnected
    /// (3501), and nothing it sends meanwhile is read.
    pub bad_frame: bool,
    /// Rebuilt after the host lost its memory, with subscriptions still being re-made: the
    /// session is `busy` (its commands wait) until they all have answered.
    pub restoring: bool,
    /// The client method of the command being handled and when it started (metrics).
    pub command: (u8, Timestamp),
    /// What proxies to the application backend need of this connection (boxed: most
    /// deployments have no proxy).
    pub proxy: Option<Box<SessionProxy>>,
}

/// A session's part in proxy calls.
#[derive(Default)]
pub(crate) struct SessionProxy {
    /// The allow-listed headers of the client's request, forwarded on every call.
    pub headers: Vec<(String, String)>,
    /// `meta` from the connect proxy: sent back with later calls, never to clients.
    pub meta: bytes::Bytes,
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
    /// `data` for the connect result (from the connect proxy).
    pub data: Bytes,
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
    /// Re-made after the host lost its memory: missed publications go out silently.
    pub restoring: bool,
    /// The broker request that set this subscription up: a late answer to an earlier
    /// subscription of the same channel, since replaced, is not its answer.
    pub request: crate::broker::RequestId,
    /// Fossil deltas negotiated: publications go out as deltas or with data as a JSON string.
    pub delta: bool,
    /// The offset of the publication the client holds as its delta base (0: none yet), so
    /// that a delta made against offset - 1 may go to it. All the delta state there is.
    pub delta_base: u64,
    /// The stream top a position check found ahead of this subscription (see
    /// `position_check.rs`): still behind it at the next check, the subscription lost its place.
    pub behind: Option<(Arc<str>, u64)>,
}

/// A session's subscriptions, sorted by channel. A sorted vector rather than a map: sessions
/// hold a handful of channels, and an idle connection should cost little memory (a B-tree
/// node holds room for eleven).
#[derive(Default)]
pub(crate) struct Subscriptions(Vec<(Arc<str>, Subscription)>);

impl Subscriptions {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (**name).cmp(channel))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains_key(&self, channel: &str) -> bool {
        self.find(channel).is_ok()
    }

    pub fn get(&self, channel: &str) -> Option<&Subscription> {
        self.find(channel).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, channel: &str) -> Option<&mut Subscription> {
        self.find(channel).ok().map(|i| &mut self.0[i].1)
    }

    /// Looks up by the hub's shared channel name: subscriptions made here hold that same
    /// `Arc`, so fan-out finds them without comparing strings.
    pub fn get_mut_shared(&mut self, channel: &Arc<str>) -> Option<&mut Subscription> {
        match self.0.iter().position(|(name, _)| Arc::ptr_eq(name, channel)) {
            Some(i) => Some(&mut self.0[i].1),
            None => self.get_mut(channel),
        }
    }

    pub fn get_key_value(&self, channel: &str) -> Option<(&Arc<str>, &Subscription)> {
        self.find(channel).ok().map(|i| (&self.0[i].0, &self.0[i].1))
    }

    pub fn insert(&mut self, channel: Arc<str>, sub: Subscription) -> Option<Subscription> {
        match self.find(channel.borrow()) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, sub)),
            Err(i) => {
                // Exact growth: most sessions hold one or two channels for their whole life.
                self.0.reserve_exact(1);
                self.0.insert(i, (channel, sub));
                None
            }
        }
    }

    pub fn remove_entry(&mut self, channel: &str) -> Option<(Arc<str>, Subscription)> {
        let i = self.find(channel).ok()?;
        let entry = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new(); // give the memory back
        }
        Some(entry)
    }

    pub fn remove(&mut self, channel: &str) -> Option<Subscription> {
        self.remove_entry(channel).map(|(_, sub)| sub)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Subscription)> + Clone {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Subscription> {
        self.0.iter().map(|(_, v)| v)
    }
}
