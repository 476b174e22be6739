//! The connect command: credentials, server-side subscriptions, the connect reply or push.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::session::{PendingConnect, State, SubState, Subscription};
use super::{ms, Hub, Pending, SessionId};
use crate::auth::{SubscribeOverrides, TokenError};
use crate::broker::{BrokerOp, HistoryOptions};
use crate::config::ChannelOptions;
use crate::protocol::{ConnectRequest, ConnectResult, Disconnect, Error, Push, Reply, StreamPosition};
use crate::time::Timestamp;

/// Why a connect cannot go on: an error reply (bidirectional; mapped to a disconnect for
/// unidirectional clients) or a disconnect.
pub(crate) enum Refusal {
    Error(Error),
    Disconnect(Disconnect),
}

/// Who is connecting, from the token, the connect proxy or the anonymous rules.
pub(crate) struct Credentials {
    pub user: String,
    pub info: Bytes,
    pub expires_at: Option<Timestamp>,
    /// Server-side subscriptions the token (or proxy) asks for: channel info, data, overrides.
    pub channels: BTreeMap<String, (Bytes, Bytes, SubscribeOverrides)>,
    /// `data` for the connect result (connect proxy only).
    pub data: Bytes,
}

/// What a new subscription should be, decided before asking the broker.
pub(crate) struct SubscriptionPlan {
    pub server_side: bool,
    pub chan_info: Bytes,
    pub expires_at: Option<Timestamp>,
    pub recoverable: bool,
    pub positioned: bool,
    pub presence: bool,
    pub emit_join_leave: bool,
    pub push_join_leave: bool,
    pub history: HistoryOptions,
    /// `data` from a subscription token, returned in the subscribe result.
    pub data: Bytes,
    /// Fossil deltas negotiated (client-side subscriptions that asked for an allowed type).
    pub delta: bool,
}

impl SubscriptionPlan {
    /// A server-side subscription with the namespace's options.
    fn server_side(opts: &ChannelOptions, history: HistoryOptions, chan_info: Bytes) -> Self {
        let recoverable = history.enabled() && opts.force_recovery;
        SubscriptionPlan {
            server_side: true,
            chan_info,
            expires_at: None,
            recoverable,
            positioned: history.enabled() && (opts.force_positioning || recoverable),
            presence: opts.presence,
            emit_join_leave: opts.join_leave,
            push_join_leave: opts.join_leave && opts.force_push_join_leave,
            history,
            data: Bytes::new(),
            delta: false,
        }
    }
}

impl SubscribeOverrides {
    /// The namespace's options with a token's `override` claim applied.
    pub(crate) fn apply(&self, opts: &ChannelOptions) -> ChannelOptions {
        let mut o = opts.clone();
        o.presence = self.presence.unwrap_or(o.presence);
        o.join_leave = self.join_leave.unwrap_or(o.join_leave);
        o.force_push_join_leave = self.force_push_join_leave.unwrap_or(o.force_push_join_leave);
        o.force_recovery = self.force_recovery.unwrap_or(o.force_recovery);
        o.force_positioning = self.force_positioning.unwrap_or(o.force_positioning);
        o
    }
}

impl Hub {
    pub(crate) fn connect(&mut self, session: SessionId, command: u32, request: ConnectRequest, now: Timestamp) {
        let by_proxy = request.token.is_empty() || self.config.proxy_connect_always;
        if by_proxy && crate::proxy::ProxyKind::Connect.enabled(&self.config) {
            return self.connect_by_proxy(session, command, request, now);
        }
        let credentials = match self.credentials(&request, now) {
            Ok(c) => c,
            Err(refusal) => return self.refuse_connect(session, command, refusal, now),
        };
        self.connect_as(session, command, request, credentials, now);
    }

    /// Goes on with a connect once it is known who connects.
    pub(crate) fn connect_as(
        &mut self,
        session: SessionId,
        command: u32,
        request: ConnectRequest,
        credentials: Credentials,
        now: Timestamp,
    ) {
        let plans = match self.server_side_plans(&credentials, &request) {
            Ok(p) => p,
            Err(refusal) => return self.refuse_connect(session, command, refusal, now),
        };
        let user: Arc<str> = Arc::from(credentials.user.as_str());
        let limit = self.config.client_user_connection_limit as usize;
        if limit > 0 && !user.is_empty() && self.by_user.get(&user).is_some_and(|set| set.len() >= limit) {
            return self.disconnect(session, Disconnect::connection_limit(), now);
        }
        let total = self.config.client_connection_limit as usize;
        // Counts this session too: the limit is on open connections of this node.
        if total > 0 && self.sessions.len() > total {
            return self.disconnect(session, Disconnect::connection_limit(), now);
        }
        if plans.len() > self.config.client_channel_limit as usize {
            return self.disconnect(session, Disconnect::channel_limit(), now);
        }
        if self.config.user_personal_single_connection && !user.is_empty() {
            // One connection per user: the newest wins, older ones are told why.
            let older: Vec<SessionId> = self.by_user.get(&user).cloned().unwrap_or_default();
            for id in older.into_iter().filter(|id| *id != session) {
                self.disconnect(id, Disconnect::connection_limit(), now);
            }
        }
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.state = State::Connecting;
        s.user = user.clone();
        s.conn_info = credentials.info;
        s.expires_at = if self.config.client_insecure { None } else { credentials.expires_at };
        s.busy = true;
        s.connect = Some(Box::new(PendingConnect {
            command_id: command,
            waiting: plans.len(),
            results: BTreeMap::new(),
            failed: None,
            data: credentials.data,
        }));
        // Anonymous connections are nobody in particular: indexing them under "" would make
        // every anonymous disconnect scan all the others.
        if !user.is_empty() {
            self.by_user.entry(user).or_default().push(session);
        }

        // A uni SSE client coming back with Last-Event-ID recovers every channel from it.
        let has_event_ids = self.sessions.get(&session).is_some_and(|s| s.has_event_ids());
        let recoverable: Vec<&str> = plans.iter().filter(|(_, p)| p.recoverable).map(|(c, _)| c.as_str()).collect();
        let resumed: BTreeMap<String, StreamPosition> = if has_event_ids {
            let positions = self.positions_from_event_id(session, &recoverable).unwrap_or_default();
            recoverable.iter().map(|c| c.to_string()).zip(positions).collect()
        } else {
            BTreeMap::new()
        };
        for (channel, plan) in plans {
            let hint = request.subs.get(&channel).filter(|h| h.recover && plan.recoverable);
            let since = match resumed.get(&channel) {
                Some(position) => Some(position.clone()),
                None => hint.map(|h| StreamPosition { offset: h.offset, epoch: h.epoch.clone() }),
            };
            self.start_subscription(session, Arc::from(channel.as_str()), plan, None, since, false);
        }
        self.finish_connect_if_ready(session, now);
    }

    fn credentials(&mut self, request: &ConnectRequest, now: Timestamp) -> Result<Credentials, Refusal> {
        let c = &self.config;
        if request.token.is_empty() {
            if c.client_insecure || c.allow_anonymous_connect_without_token {
                return Ok(Credentials {
                    user: String::new(),
                    info: Bytes::new(),
                    expires_at: None,
                    channels: BTreeMap::new(),
                    data: Bytes::new(),
                });
            }
            return Err(Refusal::Disconnect(Disconnect::bad_request()));
        }
        let claims = match self.verifier.verify_connect(&request.token, now.as_millis()) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return Err(Refusal::Error(Error::token_expired())),
            Err(TokenError::Invalid(_)) => return Err(Refusal::Disconnect(Disconnect::invalid_token())),
        };
        if claims.user.is_empty() && c.disallow_anonymous_connection_tokens {
            return Err(Refusal::Disconnect(Disconnect::permission_denied()));
        }
        let mut channels = BTreeMap::new();
        if claims.subs.is_empty() {
            for ch in &claims.channels {
                channels.insert(ch.clone(), (Bytes::new(), Bytes::new(), SubscribeOverrides::default()));
            }
        } else {
            for (ch, opts) in &claims.subs {
                channels.insert(
                    ch.clone(),
                    (
                        opts.info.clone().map(Bytes::from).unwrap_or_default(),
                        opts.data.clone().map(Bytes::from).unwrap_or_default(),
                        opts.overrides.clone(),
                    ),
                );
            }
        }
        Ok(Credentials {
            user: claims.user,
            info: claims.info.map(Bytes::from).unwrap_or_default(),
            expires_at: claims.expires_at_ms.map(Timestamp),
            channels,
            data: Bytes::new(),
        })
    }

    /// Server-side subscriptions: the token's channels, the personal channel, and the
    /// channels in the request's `subs` that the client could subscribe to by itself.
    fn server_side_plans(
        &self,
        credentials: &Credentials,
        request: &ConnectRequest,
    ) -> Result<BTreeMap<String, SubscriptionPlan>, Refusal> {
        let c = &self.config;
        let mut plans = BTreeMap::new();
        for (channel, (info, data, overrides)) in &credentials.channels {
            let opts = c.namespace_for(channel).map_err(|_| Refusal::Error(Error::unknown_channel()))?;
            let opts = overrides.apply(opts);
            let mut plan = SubscriptionPlan::server_side(&opts, self.history_options(&opts), info.clone());
            plan.data = data.clone();
            plans.insert(channel.clone(), plan);
        }
        if c.user_subscribe_to_personal && !credentials.user.is_empty() {
            let channel = c.personal_channel(&credentials.user);
            let opts = c.namespace_for(&channel).map_err(|_| Refusal::Error(Error::unknown_channel()))?;
            plans
                .entry(channel)
                .or_insert_with(|| SubscriptionPlan::server_side(opts, self.history_options(opts), Bytes::new()));
        }
        for channel in request.subs.keys() {
            if plans.contains_key(channel) {
                continue; // a recovery hint for a subscription we already make
            }
            // A channel the client could not subscribe to (unknown namespace included) is
            // left out of the result, as Centrifugo does; the connection goes on. So is one
            // whose subscriptions the backend decides: only a subscribe command asks it.
            let Ok(opts) = c.namespace_for(channel) else { continue };
            if self.valid_channel_name(channel, opts)
                && !self.subscribe_proxied(&credentials.user, channel, opts)
                && self.may_subscribe_without_token(&credentials.user, channel, opts)
            {
                plans.insert(
                    channel.clone(),
                    SubscriptionPlan::server_side(opts, self.history_options(opts), Bytes::new()),
                );
            }
        }
        Ok(plans)
    }

    pub(crate) fn refuse_connect(&mut self, session: SessionId, command: u32, refusal: Refusal, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let (code, reason) = match &refusal {
            Refusal::Disconnect(d) => (d.code, d.reason.as_str()),
            Refusal::Error(e) => (e.code, e.message.as_str()),
        };
        let (client, transport) = (&*s.client, s.transport.name());
        tracing::info!(client, transport, code, reason, "connection refused");
        match refusal {
            Refusal::Disconnect(d) => self.disconnect(session, d, now),
            Refusal::Error(e) if s.transport.is_unidirectional() => {
                self.disconnect(session, Disconnect::for_unidirectional_connect_error(&e), now)
            }
            Refusal::Error(e) => {
                s.state = State::Refused;
                self.error_reply(session, command, e);
            }
        }
    }

    /// Registers a pending subscription and asks the broker for the stream position (and the
    /// missed publications when recovering).
    pub(crate) fn start_subscription(
        &mut self,
        session: SessionId,
        channel: Arc<str>,
        plan: SubscriptionPlan,
        command: Option<u32>,
        since: Option<StreamPosition>,
        reject_unrecovered: bool,
    ) {
        // One `Arc` per channel name, shared by the channel's entry and its subscribers.
        let channel = match self.channels.get_key_value(&channel) {
            Some((name, _)) => name.clone(),
            None => channel,
        };
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.subs.insert(
            channel.clone(),
            Subscription {
                state: SubState::Pending,
                server_side: plan.server_side,
                chan_info: plan.chan_info,
                expires_at: plan.expires_at,
                recoverable: plan.recoverable,
                positioned: plan.positioned,
                epoch: Arc::from(""),
                offset: 0,
                push_join_leave: plan.push_join_leave,
                presence: plan.presence,
                emit_join_leave: plan.emit_join_leave,
                buffer: Vec::new(),
                restoring: false,
                request: crate::broker::RequestId(0),
                delta: plan.delta,
                delta_base: 0,
                behind: None,
            },
        );
        self.channels.entry(channel.clone()).or_default().pending.insert(session);
        let mut limit = self.config.client_recovery_max_publication_limit as usize;
        let mut ask = since.clone();
        if since.is_some() && self.cache_recovery(&channel) {
            // Cache mode wants the latest publication whatever the client's position: ask
            // for the whole (bounded) history; `on_subscribed` keeps the last one.
            ask = Some(StreamPosition::default());
            limit = usize::try_from(plan.history.size).unwrap_or(usize::MAX).max(1);
        }
        let op = BrokerOp::Subscribe { node: self.node.id.clone(), since: ask, limit, history: plan.history };
        let (recover, data) = (since, plan.data);
        let request = self.request(
            &channel.clone(),
            op,
            Pending::Subscribe { session, channel: channel.clone(), command, recover, reject_unrecovered, data },
        );
        if let Some(sub) = self.sessions.get_mut(&session).and_then(|s| s.subs.get_mut(&channel)) {
            sub.request = request;
        }
    }

    /// Sends the connect reply (or push) once every server-side subscription is answered.
    pub(crate) fn finish_connect_if_ready(&mut self, session: SessionId, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(pending) = &s.connect else { return };
        if pending.waiting > 0 {
            return;
        }
        let pending = s.connect.take().expect("checked above");
        if pending.failed.is_some() {
            return self.disconnect(session, Disconnect::server_error(), now);
        }
        let c = &self.config;
        let mut result = ConnectResult {
            client: s.client.to_string(),
            version: self.node.version.clone(),
            subs: pending.results,
            ..Default::default()
        };
        // With a refresh proxy the server refreshes connections itself: clients are not told
        // when they expire (Centrifugo forces `expires: false` then).
        if let Some(at) = s.expires_at.filter(|_| !crate::proxy::ProxyKind::Refresh.enabled(c)) {
            result.expires = true;
            result.ttl = super::ttl_secs(now, at);
        }
        result.data = pending.data;
        let interval = ms(c.ping_interval);
        if interval > 0 && super::pings(self.websocket_pings, s.transport) {
            result.ping = (interval / 1000).max(1) as u32;
            result.pong = !s.wire.unidirectional && ms(c.pong_timeout) > 0;
        }
        if s.transport.is_unidirectional() || s.transport.is_emulation() {
            result.session = s.token.to_string();
        }
        if s.transport.is_emulation() {
            result.node = self.node.id.to_string();
        }
        if c.client_connect_include_server_time {
            result.time = now.as_millis() as i64;
        }
        // A resuming SSE client gets its missed publications as ordinary events after the
        // connect event, each with the id that moves its position on.
        let mut replay = Vec::new();
        if s.resuming {
            for (channel, r) in result.subs.iter_mut().filter(|(_, r)| r.recovered) {
                if let Some(sub) = s.subs.get_mut(channel.as_str()) {
                    sub.offset = r.offset;
                }
                replay.push((channel.clone(), std::mem::take(&mut r.publications)));
            }
        }
        let encoded = if s.wire.unidirectional {
            s.wire.push(&Push { connect: Some(result), ..Default::default() })
        } else {
            s.wire.reply(&Reply { id: pending.command_id, connect: Some(result), ..Default::default() })
        };
        s.state = State::Connected;
        s.busy = false;
        tracing::debug!(client = &*s.client, user = &*s.user, transport = s.transport.name(), "client connected");
        if !self.send_encoded(session, encoded, true) {
            return;
        }
        self.count_reply(session, &Reply { id: pending.command_id, ..Default::default() });
        self.snapshot_changed(session);
        for (channel, publications) in replay {
            for publication in publications {
                let Some(s) = self.sessions.get_mut(&session) else { return };
                if let Some(sub) = s.subs.get_mut(channel.as_str()) {
                    sub.offset = publication.offset;
                }
                let push = Push { channel: channel.clone(), r#pub: Some(publication), ..Default::default() };
                let encoded = s.wire.push(&push);
                if !self.send_encoded(session, encoded, true) {
                    return;
                }
            }
        }
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.resuming = false;
        let channels: Vec<Arc<str>> = s.subs.keys().cloned().collect();
        for channel in channels {
            self.activate(session, &channel, now);
        }
        self.cancel(session, &super::timers::Timer::Stale);
        self.start_timers(session, now);
        self.drain(session, now);
    }
}
