//! The hub: one per node. Owns client sessions, runs the client protocol, checks tokens and
//! permissions, and fans publications out to local subscribers. Channel streams, presence and
//! join/leave live in the [`Broker`](crate::broker::Broker), reached through
//! [`Output::Broker`] requests and [`Hub::handle_broker`] events.

mod api;
mod commands;
mod connect;
mod delta;
mod event_ids;
mod fanout;
mod metrics;
mod position_check;
mod proxy;
mod recovery_modes;
mod restore;
mod session;
mod timers;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use rustc_hash::FxHashMap;

pub use restore::{Changes, ProxySnapshot, SessionSnapshot, SubscriptionSnapshot};
pub use session::{SessionId, Transport};

use crate::api::{ApiCommand, ApiId};
use crate::auth::{KeySet, TokenVerifier};
use crate::broker::{BrokerEvent, BrokerOp, BrokerReply, BrokerRequest, NodeId, RequestId};
use crate::config::Config;
use crate::protocol::{decode_commands, ConnectRequest, Disconnect, Error, NotJson, Push, Reply};
use crate::time::Timestamp;
use session::{Session, State};
use timers::Timer;

/// Most commands a session may have waiting for earlier ones (see [`Hub::handle_frame`]).
pub const MAX_QUEUED_COMMANDS: usize = 1024;

/// What the host must do, in order.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
// Broker requests are rarer than sends: boxing them would cost an allocation each for little.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Write these bytes to the session's transport (already framed for it).
    Send { session: SessionId, data: Bytes },
    /// Write this server ping; hosts whose transport has its own pings (WebSocket) may send
    /// one of those too.
    Ping { session: SessionId, data: Bytes },
    /// Close the transport with this code and reason (for WebSockets, in the close frame).
    /// Whatever was sent before must be flushed first. The session is already forgotten.
    Close { session: SessionId, disconnect: Disconnect },
    /// Carry this request to the broker and feed its reply to [`Hub::handle_broker`].
    Broker(BrokerRequest),
    /// The answer to a server API command.
    Api { id: ApiId, result: Result<serde_json::Value, Error> },
    /// POST this to the application backend and feed what comes back to
    /// [`Hub::handle_proxy_reply`].
    Proxy(crate::proxy::ProxyRequest),
    /// A proxy call failed (the client got an internal error): log it.
    ProxyFailed { kind: crate::proxy::ProxyKind, endpoint: String, cause: String },
}

/// Who the node is, as told to clients and the API.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub version: String,
}

/// What a pending broker request continues into when its reply arrives.
enum Pending {
    /// A subscription being set up, from a client `subscribe` (command id) or connect (None).
    Subscribe {
        session: SessionId,
        channel: Arc<str>,
        command: Option<u32>,
        recover: Option<crate::protocol::StreamPosition>,
        reject_unrecovered: bool,
        data: Bytes,
    },
    /// A client command answered straight from the broker reply.
    Command { session: SessionId, command: u32, kind: commands::CommandKind },
    /// A server API command answered from the broker reply (to the host, or into a batch).
    Api { target: api::ApiTarget, kind: crate::api::ApiKind },
    /// Fire and forget (presence updates, join/leave, node interest).
    Ignore,
    /// A periodic position check of one subscription.
    PositionCheck { session: SessionId, channel: Arc<str> },
}

#[derive(Default)]
struct ChannelSubscribers {
    active: BTreeSet<SessionId>,
    pending: BTreeSet<SessionId>,
    /// Active subscribers by transport (`metrics::TRANSPORTS`): a publication's deliveries are
    /// counted once per batch from these, not once per subscriber.
    by_transport: [u64; crate::metrics::TRANSPORTS.len()],
}

impl ChannelSubscribers {
    /// Whether the session was not yet an active subscriber.
    fn insert_active(&mut self, session: SessionId, transport: Transport) -> bool {
        let added = self.active.insert(session);
        if let Some(n) = self.by_transport.get_mut(transport.metric_index()).filter(|_| added) {
            *n = n.saturating_add(1);
        }
        added
    }

    /// Whether the session was an active subscriber.
    fn remove_active(&mut self, session: SessionId, transport: Option<Transport>) -> bool {
        let removed = self.active.remove(&session);
        if let Some(n) = transport.and_then(|t| self.by_transport.get_mut(t.metric_index())).filter(|_| removed) {
            *n = n.saturating_sub(1);
        }
        removed
    }
}

pub struct Hub {
    config: Arc<Config>,
    node: NodeInfo,
    verifier: TokenVerifier,
    sub_verifier: TokenVerifier,
    rng: ChaCha8Rng,
    /// Boxed: a table of large inline entries would double its slack on every growth.
    /// Fx hashing: session ids are trusted small integers, looked up once per delivery.
    sessions: FxHashMap<SessionId, Box<Session>>,
    by_token: HashMap<Arc<str>, SessionId>,
    /// Sessions per user: a plain vector, as users rarely hold more than a few connections.
    by_user: BTreeMap<Arc<str>, Vec<SessionId>>,
    channels: BTreeMap<Arc<str>, ChannelSubscribers>,
    /// Active subscribers over all `channels`, kept as they change: a scrape of `/metrics`
    /// must not walk every channel.
    subscriptions: u64,
    timers: BTreeSet<(Timestamp, SessionId, Timer)>,
    pending: HashMap<RequestId, Pending>,
    next_request: u64,
    outputs: VecDeque<Output>,
    started_at: Timestamp,
    /// Whether WebSocket sessions get server pings (see [`Hub::without_websocket_pings`]).
    websocket_pings: bool,
    /// Keys the integrity tag of SSE event ids (see `protocol::event_id`).
    event_id_key: Vec<u8>,
    /// Server API batches and broadcasts waiting for their parts.
    api_groups: api::ApiGroups,
    /// What changed for hosts that store snapshots (see [`Hub::tracking_snapshots`]).
    tracking: Option<Box<restore::Tracking>>,
    /// Proxy calls waiting for the backend (each also holds a timer of its session).
    proxies: HashMap<crate::proxy::ProxyId, proxy::ProxyCall>,
    next_proxy: u64,
    /// Prometheus counters (see `metrics.rs`); kept only when `counting` (config `prometheus`).
    metrics: crate::metrics::Metrics,
    counting: bool,
    /// The time of the command being handled, for its reply's duration.
    now: Timestamp,
    /// Each namespace's compiled `channel_regex`, by pattern.
    channel_regexes: BTreeMap<String, regex::Regex>,
}

/// A configuration the hub cannot run with (bad key material).
#[derive(Debug)]
pub struct HubConfigError(pub String);

impl std::fmt::Display for HubConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HubConfigError {}

impl Hub {
    pub fn new(config: Arc<Config>, node: NodeInfo, seed: u64, now: Timestamp) -> Result<Self, HubConfigError> {
        let c = &config;
        let keys = KeySet::new(&c.token_hmac_secret_key, &c.token_rsa_public_key, &c.token_ecdsa_public_key)
            .map_err(|e| HubConfigError(e.to_string()))?;
        let verifier = TokenVerifier::new(keys, &c.token_audience, &c.token_issuer, &c.token_user_id_claim);
        let sub_verifier = if c.separate_subscription_token_config {
            let keys = KeySet::new(
                &c.subscription_token_hmac_secret_key,
                &c.subscription_token_rsa_public_key,
                &c.subscription_token_ecdsa_public_key,
            )
            .map_err(|e| HubConfigError(format!("subscription token: {e}")))?;
            TokenVerifier::new(keys, &c.subscription_token_audience, &c.subscription_token_issuer, "")
        } else {
            let keys = KeySet::new(&c.token_hmac_secret_key, &c.token_rsa_public_key, &c.token_ecdsa_public_key)
                .map_err(|e| HubConfigError(e.to_string()))?;
            TokenVerifier::new(keys, &c.token_audience, &c.token_issuer, "")
        };
        let event_id_key = event_id_key(&config);
        let config_prometheus = config.prometheus;
        let mut channel_regexes = BTreeMap::new();
        let patterns =
            std::iter::once(&c.channel.channel_regex).chain(c.namespaces.iter().map(|n| &n.options.channel_regex));
        for pattern in patterns.filter(|p| !p.is_empty()) {
            let regex = crate::config::compile_channel_regex(pattern)
                .map_err(|why| HubConfigError(format!("channel_regex {pattern:?}: {why}")))?;
            channel_regexes.insert(pattern.clone(), regex);
        }
        Ok(Hub {
            config,
            node,
            verifier,
            sub_verifier,
            rng: ChaCha8Rng::seed_from_u64(seed),
            sessions: FxHashMap::default(),
            by_token: HashMap::new(),
            by_user: BTreeMap::new(),
            channels: BTreeMap::new(),
            timers: BTreeSet::new(),
            pending: HashMap::new(),
            next_request: 1,
            outputs: VecDeque::new(),
            started_at: now,
            event_id_key,
            websocket_pings: true,
            api_groups: Default::default(),
            tracking: None,
            proxies: HashMap::new(),
            next_proxy: 1,
            metrics: Default::default(),
            subscriptions: 0,
            counting: config_prometheus,
            now,
            channel_regexes,
        })
    }

    /// No server pings on WebSocket sessions: their connect result carries no `ping`, so
    /// SDKs do not expect any, and the transport's own close detection (and WebSocket
    /// ping frames, where the runtime answers them) keeps watch instead. Hosts whose idle
    /// WebSocket sessions should cost nothing (hibernating Durable Objects) use this.
    pub fn without_websocket_pings(mut self) -> Self {
        self.websocket_pings = false;
        self
    }

    pub(crate) fn pings(&self, transport: Transport) -> bool {
        pings(self.websocket_pings, transport)
    }

    // ---- getters

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    pub fn num_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn num_users(&self) -> usize {
        self.by_user.len()
    }

    /// Seconds since the hub started.
    pub fn uptime(&self, now: Timestamp) -> u64 {
        self.started_at.until(now) / 1000
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// The session holding an emulation/unidirectional session id (`/emulation` routing).
    pub fn session_by_token(&self, token: &str) -> Option<SessionId> {
        self.by_token.get(token).copied()
    }

    /// The transport a session was opened with.
    pub fn transport(&self, session: SessionId) -> Option<Transport> {
        self.sessions.get(&session).map(|s| s.transport)
    }

    // ---- handlers

    /// A transport opened. Bidirectional and uni WebSocket clients must connect within
    /// `client_stale_close_delay`.
    pub fn handle_open(&mut self, session: SessionId, transport: Transport, now: Timestamp) {
        self.open_session(session, transport);
        self.count_open(transport);
        // WebSocket clients send their connect after the upgrade and may never do so; HTTP
        // transports carry it in the request, which the host hands over right after opening.
        if matches!(transport, Transport::Websocket(_) | Transport::UniWebsocket) {
            let stale = ms(self.config.client_stale_close_delay);
            self.schedule(now.after_ms(stale), session, Timer::Stale);
        }
    }

    /// A new session in the `Opened` state, with fresh client id and token.
    fn open_session(&mut self, session: SessionId, transport: Transport) {
        let client = self.uuid();
        let token = self.uuid();
        self.by_token.insert(token.clone(), session);
        self.sessions.insert(
            session,
            Box::new(Session {
                transport,
                wire: transport.wire(),
                state: State::Opened,
                client,
                token,
                user: Arc::from(""),
                conn_info: Bytes::new(),
                expires_at: None,
                subs: Default::default(),
                inbox: VecDeque::new(),
                busy: false,
                pong_deadline: None,
                timers: Vec::new(),
                presence_refresh: false,
                connect: None,
                last_event_id: None,
                resuming: false,
                bad_frame: false,
                restoring: false,
                proxy: None,
                command: (crate::metrics::UNKNOWN_METHOD as u8, Timestamp(0)),
            }),
        );
    }

    /// The connect request of a unidirectional transport. `last_event_id`: the
    /// `Last-Event-ID` a reconnecting uni SSE client sent; its connect resumes every channel
    /// from the positions in it.
    pub fn handle_connect(
        &mut self,
        session: SessionId,
        request: ConnectRequest,
        last_event_id: Option<String>,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.state != State::Opened {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        s.last_event_id = last_event_id;
        self.connect(session, 0, request, now);
    }

    /// A frame of commands from a bidirectional client (WebSocket message, or the body of an
    /// emulation request, or the connect frame of an emulation stream), or a uni WebSocket
    /// client's message: its first (unless the URL's `cf_connect` came first) is the connect
    /// request, and any that is not a valid one ends the session (3501).
    pub fn handle_frame(&mut self, session: SessionId, frame: &[u8], now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if matches!(s.transport, Transport::UniWebsocket) && s.state == State::Opened && !s.bad_frame {
            return match crate::protocol::parse_connect_request(frame) {
                Ok(request) => self.connect(session, 0, request, now),
                Err(_) => self.end(session, Disconnect::bad_request()),
            };
        }
        if s.transport.is_unidirectional() || s.bad_frame {
            return; // unidirectional clients' later messages are read and discarded
        }
        let commands = match decode_commands(s.wire.encoding, frame) {
            Ok(commands) => commands,
            // The commands before the bad one run first, then the client is disconnected.
            Err((commands, _)) => {
                s.bad_frame = true;
                commands
            }
        };
        // Commands wait here only while an earlier one waits for the broker: a client that
        // piles up more than this is sending faster than the node can answer.
        if s.inbox.len().saturating_add(commands.len()) > MAX_QUEUED_COMMANDS {
            return self.end(session, Disconnect::too_many_requests());
        }
        s.inbox.extend(commands);
        self.drain(session, now);
    }

    /// How many bytes the session's transport holds that the client has not taken yet, as the
    /// host measures it right after carrying out a [`Output::Send`] or [`Output::Ping`]. Over
    /// `client_queue_max_size` the client does not keep up: it is disconnected with 3008
    /// "slow", as Centrifugo does. One rule for every host; the host only measures.
    pub fn handle_backlog(&mut self, session: SessionId, queued: usize, now: Timestamp) {
        if queued > self.config.client_queue_max_size as usize {
            self.disconnect(session, Disconnect::slow(), now);
        }
    }

    /// The transport closed (peer gone or write failed). Nothing more is sent to it.
    pub fn handle_closed(&mut self, session: SessionId, _now: Timestamp) {
        self.forget(session);
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        while let Some((at, session, timer)) = self.timers.first().cloned() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.on_timer(session, timer, now);
        }
    }

    pub fn handle_broker(&mut self, event: BrokerEvent, now: Timestamp) {
        self.now = now;
        match event {
            BrokerEvent::Reply { id, result } => {
                if let Some(pending) = self.pending.remove(&id) {
                    self.on_broker_reply(id, pending, result, now);
                }
            }
            BrokerEvent::Publication { channel, epoch, publication, delta } => {
                self.deliver(&channel, &epoch, &publication, delta)
            }
            BrokerEvent::Join { channel, info } => self.deliver_join_leave(&channel, info, true),
            BrokerEvent::Leave { channel, info } => self.deliver_join_leave(&channel, info, false),
        }
    }

    pub fn handle_api(&mut self, id: ApiId, command: ApiCommand, now: Timestamp) {
        self.api(id, command, now);
    }

    // ---- commands

    /// Ends a session with a disconnect the clients will see.
    pub fn disconnect(&mut self, session: SessionId, disconnect: Disconnect, _now: Timestamp) {
        self.end(session, disconnect);
    }

    /// Closes every session (server shutdown), code 3001: clients reconnect (to another node,
    /// or to this one once restarted). Hosts stop opening sessions first.
    pub fn shutdown(&mut self, now: Timestamp) {
        tracing::info!(clients = self.sessions.len(), "shutdown: disconnecting every client (3001)");
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.disconnect(id, Disconnect::shutdown(), now);
        }
    }

    // ---- pollers

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    // ---- internals

    fn drain(&mut self, session: SessionId, now: Timestamp) {
        loop {
            let Some(s) = self.sessions.get_mut(&session) else { return };
            if s.busy {
                return;
            }
            let Some(command) = s.inbox.pop_front() else {
                if s.bad_frame {
                    self.disconnect(session, Disconnect::bad_request(), now);
                }
                return;
            };
            self.count_command(session, &command, now);
            self.dispatch(session, command, now);
        }
    }

    fn request(&mut self, channel: &str, op: BrokerOp, pending: Pending) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        self.pending.insert(id, pending);
        self.count_broker_op(&op);
        self.outputs.push_back(Output::Broker(BrokerRequest { id, channel: channel.to_owned(), op }));
        id
    }

    fn on_broker_reply(&mut self, id: RequestId, pending: Pending, result: Result<BrokerReply, Error>, now: Timestamp) {
        match pending {
            Pending::Subscribe { session, channel, command, recover, reject_unrecovered, data } => {
                self.on_subscribed(id, session, channel, command, recover, reject_unrecovered, data, result, now)
            }
            Pending::Command { session, command, kind } => {
                self.on_command_reply(session, command, kind, result, now);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.busy = false;
                }
                self.drain(session, now);
            }
            Pending::Api { target, kind } => self.on_api_reply(target, kind, result, now),
            Pending::Ignore => {}
            Pending::PositionCheck { session, channel } => self.on_position_checked(session, &channel, result),
        }
    }

    fn reply(&mut self, session: SessionId, reply: Reply) {
        self.count_reply(session, &reply);
        if let Some(s) = self.sessions.get(&session) {
            let encoded = s.wire.reply(&reply);
            self.send_encoded(session, encoded, false);
        }
    }

    /// Sends a message encoded for the session's wire (`event`: through [`Hub::send_event`], so
    /// uni SSE gets its positions as the event id). A payload the wire cannot carry (binary
    /// data for a JSON client, on any path: publications, history, recovery, presence,
    /// join/leave, pushes) ends the session with 3506 "inappropriate protocol", as Centrifugo
    /// does. Returns whether the message went out.
    pub(crate) fn send_encoded(&mut self, session: SessionId, encoded: Result<Bytes, NotJson>, event: bool) -> bool {
        match encoded {
            Ok(data) if event => self.send_event(session, data),
            Ok(data) => self.outputs.push_back(Output::Send { session, data }),
            Err(NotJson) => {
                self.end(session, Disconnect::inappropriate_protocol());
                return false;
            }
        }
        true
    }

    /// Ends a session: the disconnect push where the transport carries one, the close, and
    /// everything the session held.
    pub(crate) fn end(&mut self, session: SessionId, disconnect: Disconnect) {
        let Some(s) = self.sessions.get(&session) else { return };
        log_disconnect(&s.client, &s.user, s.transport, &disconnect);
        self.count_disconnect(&disconnect);
        let Some(s) = self.sessions.get(&session) else { return };
        if s.transport.pushes_disconnect() {
            // A disconnect carries no payload: it encodes on every wire.
            if let Ok(data) = s.wire.push(&Push { disconnect: Some(disconnect.clone()), ..Default::default() }) {
                self.outputs.push_back(Output::Send { session, data });
            }
        }
        self.outputs.push_back(Output::Close { session, disconnect });
        self.forget(session);
    }

    fn error_reply(&mut self, session: SessionId, command: u32, error: Error) {
        self.reply(session, Reply::error(command, error));
    }

    /// Removes a session and everything it holds (subscriptions, presence, timers).
    fn forget(&mut self, session: SessionId) {
        let Some(s) = self.sessions.remove(&session) else { return };
        for (timer, at) in &s.timers {
            self.timers.remove(&(*at, session, timer.clone()));
            if let Timer::Proxy(id) = timer {
                // Its answer, if one still comes, finds nothing to continue.
                self.proxies.remove(id);
            }
        }
        self.snapshot_changed(session);
        self.by_token.remove(&s.token);
        if let Some(set) = self.by_user.get_mut(&s.user) {
            set.retain(|id| *id != session);
            if set.is_empty() {
                self.by_user.remove(&s.user);
            }
        }
        let info_of = |sub: &session::Subscription| s.info(&sub.chan_info);
        let mut leaving = Vec::new();
        for (channel, sub) in s.subs.iter() {
            // A subscription being re-made after a wake-up joined long ago: it leaves too.
            let joined = sub.state == session::SubState::Active || sub.restoring;
            leaving.push((channel.clone(), sub.presence, sub.emit_join_leave && joined, info_of(sub)));
        }
        for (channel, presence, join_leave, info) in leaving {
            // The session is gone from `sessions`: its transport is known here only.
            if self.channels.get_mut(&channel).is_some_and(|subs| subs.remove_active(session, Some(s.transport))) {
                self.subscriptions = self.subscriptions.saturating_sub(1);
            }
            self.leave_channel(session, &channel, presence, join_leave, info);
        }
    }

    /// Takes a session out of a channel's subscriber set and tells the broker what changed.
    fn leave_channel(
        &mut self,
        session: SessionId,
        channel: &Arc<str>,
        presence: bool,
        join_leave: bool,
        info: crate::protocol::ClientInfo,
    ) {
        if presence {
            self.request(channel, BrokerOp::PresenceRemove { client: info.client.clone() }, Pending::Ignore);
        }
        if join_leave {
            self.request(channel, BrokerOp::Leave { info }, Pending::Ignore);
        }
        let transport = self.sessions.get(&session).map(|s| s.transport);
        let empty = match self.channels.get_mut(channel) {
            Some(subs) => {
                if subs.remove_active(session, transport) {
                    self.subscriptions = self.subscriptions.saturating_sub(1);
                }
                subs.pending.remove(&session);
                subs.active.is_empty() && subs.pending.is_empty()
            }
            None => false,
        };
        if empty {
            self.channels.remove(channel);
            self.position_forgotten(channel);
            let node = self.node.id.clone();
            self.request(channel, BrokerOp::Unsubscribe { node }, Pending::Ignore);
        }
    }

    fn uuid(&mut self) -> Arc<str> {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Arc::from(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
    }

    fn random_below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.rng.next_u64() % n
        }
    }
}

/// Disconnects the server decides: `debug`, but a slow client or a limit reached is worth
/// an operator's `info`.
fn log_disconnect(client: &str, user: &str, transport: Transport, d: &Disconnect) {
    let (code, reason, transport) = (d.code, d.reason.as_str(), transport.name());
    if matches!(code, 3008 | 3013 | 3504 | 3505 | 3509) {
        tracing::info!(client, user, transport, code, reason, "client disconnected");
    } else {
        tracing::debug!(client, user, transport, code, reason, "client disconnected");
    }
}

fn pings(websocket_pings: bool, transport: Transport) -> bool {
    websocket_pings || !matches!(transport, Transport::Websocket(_) | Transport::UniWebsocket)
}

/// Event ids must verify on every node of a deployment, so the key comes from configuration.
fn event_id_key(c: &Config) -> Vec<u8> {
    let secret = if !c.token_hmac_secret_key.is_empty() { &c.token_hmac_secret_key } else { &c.api_key };
    let mut key = b"rotor event ids: ".to_vec();
    key.extend_from_slice(secret.as_bytes());
    key
}

/// Seconds left until `at`, rounded up, for `ttl` fields (saturating: `at` may come from outside).
pub(crate) fn ttl_secs(now: Timestamp, at: Timestamp) -> u32 {
    u32::try_from(now.until(at).div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Milliseconds of a configured duration.
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests;
