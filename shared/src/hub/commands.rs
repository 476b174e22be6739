//! Client commands after connect: subscribe and friends, and how broker replies finish them.

use std::sync::Arc;

use super::connect::SubscriptionPlan;
use super::session::{State, SubState};
use super::{ms, Hub, Pending, SessionId};
use crate::auth::TokenError;
use crate::broker::{BrokerOp, BrokerReply, HistoryOptions, PublishOp};
use crate::config::ChannelOptions;
use crate::hub::timers::Timer;
use crate::protocol::{
    Command, Disconnect, Empty, Error, Expiry, HistoryResult, PresenceResult, PresenceStatsResult, Publication,
    RefreshResult, Reply, StreamPosition, SubscribeRequest, SubscribeResult, FLAG_REJECT_UNRECOVERED,
};
use crate::time::Timestamp;

/// Commands answered straight from a broker reply.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CommandKind {
    Publish,
    Presence,
    PresenceStats,
    History,
}

impl Hub {
    pub(crate) fn dispatch(&mut self, session: SessionId, command: Command, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.state == State::Refused {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if let Some(request) = command.connect {
            if s.state != State::Opened || command.id == 0 {
                return self.disconnect(session, Disconnect::bad_request(), now);
            }
            return self.connect(session, command.id, request, now);
        }
        if s.state != State::Connected {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if command.is_pong() {
            if s.pong_deadline.take().is_none() {
                // A pong nobody asked for.
                return self.disconnect(session, Disconnect::bad_request(), now);
            }
            return;
        }
        let id = command.id;
        if let Some(r) = command.subscribe {
            self.subscribe(session, id, r, now)
        } else if let Some(r) = command.unsubscribe {
            self.unsubscribe(session, id, &r.channel, now)
        } else if let Some(r) = command.publish {
            self.publish(session, id, r.channel, r.data, now)
        } else if let Some(r) = command.presence {
            self.presence(session, id, &r.channel, CommandKind::Presence, now)
        } else if let Some(r) = command.presence_stats {
            self.presence(session, id, &r.channel, CommandKind::PresenceStats, now)
        } else if let Some(r) = command.history {
            self.history(session, id, r, now)
        } else if let Some(r) = command.rpc {
            if crate::proxy::ProxyKind::Rpc.enabled(&self.config) {
                self.rpc_by_proxy(session, id, r, now)
            } else {
                // No RPC handler is configured: 108 "not available", as Centrifugo answers.
                self.error_reply(session, id, Error::not_available())
            }
        } else if command.ping.is_some() {
            // Protocol v2 has no ping command: Centrifugo answers it with 108 too.
            self.error_reply(session, id, Error::not_available())
        } else if command.send.is_some() {
            // Asynchronous messages need a handler too; without one they are dropped.
        } else if let Some(r) = command.refresh {
            self.refresh(session, id, &r.token, now)
        } else if let Some(r) = command.sub_refresh {
            self.sub_refresh(session, id, &r.channel, &r.token, now)
        } else {
            // Commands with nothing in them are not part of protocol v2.
            self.disconnect(session, Disconnect::bad_request(), now)
        }
    }

    // ---- permissions

    pub(crate) fn history_options(&self, opts: &ChannelOptions) -> HistoryOptions {
        let meta =
            if ms(opts.history_meta_ttl) > 0 { opts.history_meta_ttl } else { self.config.global_history_meta_ttl };
        HistoryOptions { size: opts.history_size, ttl_ms: ms(opts.history_ttl), meta_ttl_ms: ms(meta) }
    }

    /// Client-chosen channel names: within `channel_max_length`, and matching the namespace's
    /// `channel_regex` (the part after the namespace) or, without one, ASCII.
    pub(crate) fn valid_channel_name(&self, channel: &str, opts: &ChannelOptions) -> bool {
        if channel.is_empty() || channel.len() > self.config.channel_max_length as usize {
            return false;
        }
        if opts.channel_regex.is_empty() {
            return channel.is_ascii();
        }
        // Compiled for every namespace when the hub was made; a pattern missing there (a
        // token's override cannot add one) lets nothing through.
        let rest = self.config.channel_rest(channel);
        self.channel_regexes.get(&opts.channel_regex).is_some_and(|r| r.is_match(rest))
    }

    pub(crate) fn may_subscribe_without_token(&self, user: &str, channel: &str, opts: &ChannelOptions) -> bool {
        let c = &self.config;
        if c.is_private(channel) {
            return false;
        }
        if let Some(users) = c.user_limited_users(channel) {
            // A channel naming users (`#42`, `dialog#42,43`) belongs to them: rotor keeps
            // everyone else out even where the namespace lets clients subscribe freely.
            return (opts.allow_user_limited_channels && users.contains(&user)) || c.client_insecure;
        }
        (opts.allow_subscribe_for_client && (!user.is_empty() || opts.allow_subscribe_for_anonymous))
            || c.client_insecure
    }

    /// Whether a client command (publish, presence, history) on `channel` is allowed. A
    /// channel naming users (`#42`) refuses every user it does not name, whatever the
    /// namespace allows clients; a subscriber the server placed there keeps its rights.
    fn allowed(&self, channel: &str, user: &str, subscribed: bool, access: (bool, bool, bool)) -> bool {
        let (for_subscriber, for_client, for_anonymous) = access;
        let c = &self.config;
        if c.client_insecure || (for_subscriber && subscribed) {
            return true;
        }
        if c.user_limited_users(channel).is_some_and(|users| !users.contains(&user)) {
            return false;
        }
        for_client && (!user.is_empty() || for_anonymous)
    }

    // ---- subscribe

    fn subscribe(&mut self, session: SessionId, id: u32, req: SubscribeRequest, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        let channel = req.channel.clone();
        if channel.is_empty() {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if s.subs.contains_key(channel.as_str()) {
            return self.error_reply(session, id, Error::already_subscribed());
        }
        if s.active_channels() >= self.config.client_channel_limit as usize {
            return self.error_reply(session, id, Error::limit_exceeded());
        }
        let Ok(opts) = self.config.namespace_for(&channel) else {
            return self.error_reply(session, id, Error::unknown_channel());
        };
        if !self.valid_channel_name(&channel, opts) {
            return self.error_reply(session, id, Error::bad_request());
        }
        let mut opts = opts.clone();
        let user = s.user.clone();
        let (client, history) = (s.client.clone(), self.history_options(&opts));
        let mut plan = SubscriptionPlan {
            server_side: false,
            chan_info: Default::default(),
            expires_at: None,
            recoverable: false,
            positioned: false,
            presence: opts.presence,
            emit_join_leave: opts.join_leave,
            push_join_leave: false,
            history,
            data: Default::default(),
            delta: false,
        };
        if !req.tf.is_empty() {
            // Tags filters need `allow_tags_filter`, which rotor does not offer: Centrifugo
            // disconnects such a subscribe as a bad request.
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if !req.delta.is_empty() && req.delta != crate::delta::FOSSIL {
            // An unknown delta type is a broken client (Centrifugo disconnects too).
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if !req.token.is_empty() {
            match self.sub_verifier.verify_subscribe(&req.token, now.as_millis()) {
                Ok(claims) => {
                    if claims.channel != channel
                        || claims.user != *user
                        || (!claims.client.is_empty() && claims.client != *client)
                    {
                        return self.disconnect(session, Disconnect::invalid_token(), now);
                    }
                    plan.chan_info = claims.info.map(Into::into).unwrap_or_default();
                    plan.data = claims.data.map(Into::into).unwrap_or_default();
                    plan.expires_at = claims.expires_at_ms.map(Timestamp);
                    opts = claims.overrides.apply(&opts);
                    plan.presence = opts.presence;
                    plan.emit_join_leave = opts.join_leave;
                }
                Err(TokenError::Expired) => return self.error_reply(session, id, Error::token_expired()),
                Err(TokenError::Invalid(_)) => return self.error_reply(session, id, Error::permission_denied()),
            }
        } else if self.subscribe_proxied(&user, &channel, &opts) {
            return self.subscribe_by_proxy(session, id, req, now);
        } else if !self.may_subscribe_without_token(&user, &channel, &opts) {
            return self.error_reply(session, id, Error::permission_denied());
        }
        self.subscribe_granted(session, id, req, opts, plan, now);
    }

    /// Whether a subscribe without token goes to the subscribe proxy: the namespace says so,
    /// and the channel is neither private nor a user-limited channel naming this user.
    pub(crate) fn subscribe_proxied(&self, user: &str, channel: &str, opts: &ChannelOptions) -> bool {
        let c = &self.config;
        opts.proxy_subscribe
            && crate::proxy::ProxyKind::Subscribe.enabled(c)
            && !c.is_private(channel)
            && !(opts.allow_user_limited_channels
                && c.user_limited_users(channel).is_some_and(|users| users.contains(&user)))
    }

    /// The rest of a subscribe once it is allowed: the subscription's options, then the
    /// broker.
    pub(crate) fn subscribe_granted(
        &mut self,
        session: SessionId,
        id: u32,
        req: SubscribeRequest,
        opts: ChannelOptions,
        mut plan: SubscriptionPlan,
        _now: Timestamp,
    ) {
        let Some(s) = self.sessions.get(&session) else { return };
        let (user, channel, history) = (s.user.clone(), req.channel.clone(), plan.history);
        let history_access = self.allowed(
            &channel,
            &user,
            true,
            (opts.allow_history_for_subscriber, opts.allow_history_for_client, opts.allow_history_for_anonymous),
        );
        let presence_access = self.allowed(
            &channel,
            &user,
            true,
            (opts.allow_presence_for_subscriber, opts.allow_presence_for_client, opts.allow_presence_for_anonymous),
        );
        plan.recoverable =
            history.enabled() && (opts.force_recovery || (req.recoverable && (opts.allow_recovery || history_access)));
        plan.positioned = history.enabled()
            && (opts.force_positioning
                || plan.recoverable
                || (req.positioned && (opts.allow_positioning || history_access)));
        plan.push_join_leave = opts.join_leave && (opts.force_push_join_leave || (req.join_leave && presence_access));
        // A delta type the namespace does not allow is no error: the result says no delta.
        plan.delta =
            req.delta == crate::delta::FOSSIL && opts.allowed_delta_types.iter().any(|t| t == crate::delta::FOSSIL);
        let since =
            (req.recover && plan.recoverable).then(|| StreamPosition { offset: req.offset, epoch: req.epoch.clone() });
        let reject = req.flag & FLAG_REJECT_UNRECOVERED != 0;
        let expires_at = plan.expires_at;
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = true;
        }
        self.start_subscription(session, Arc::from(channel.as_str()), plan, Some(id), since, reject);
        if let Some(at) = expires_at {
            if self.sub_refreshed_by_proxy(&opts) {
                self.schedule(at, session, Timer::SubRefresh(Arc::from(channel.as_str())));
            } else {
                let grace = ms(self.config.client_expired_sub_close_delay);
                self.schedule(at.after_ms(grace), session, Timer::SubExpire(Arc::from(channel.as_str())));
            }
        }
    }

    /// Whether the server refreshes this namespace's expiring subscriptions itself.
    pub(crate) fn sub_refreshed_by_proxy(&self, opts: &ChannelOptions) -> bool {
        opts.proxy_sub_refresh && crate::proxy::ProxyKind::SubRefresh.enabled(&self.config)
    }

    /// The broker answered a subscription: build its result, then reply (client subscribe) or
    /// count it into the pending connect.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_subscribed(
        &mut self,
        request: crate::broker::RequestId,
        session: SessionId,
        channel: Arc<str>,
        command: Option<u32>,
        recover: Option<StreamPosition>,
        reject_unrecovered: bool,
        token_data: bytes::Bytes,
        result: Result<BrokerReply, Error>,
        now: Timestamp,
    ) {
        if let Ok(BrokerReply::Subscribed { top, .. }) = &result {
            self.position_seen(&channel, &top.epoch, top.offset);
        }
        let cache = recover.is_some() && self.cache_recovery(&channel);
        let server_refreshed = self.config.namespace_for(&channel).is_ok_and(|o| self.sub_refreshed_by_proxy(o));
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(sub) = s.subs.get_mut(&channel).filter(|sub| sub.request == request) else {
            // Unsubscribed (by the server API) while the broker was answering, perhaps
            // subscribed anew since (that one waits for its own answer): the command still
            // needs its answer, the connect its count.
            return self.on_subscription_gone(session, command, now);
        };
        let restoring = sub.restoring;
        let outcome: Result<SubscribeResult, Error> = match result {
            Ok(BrokerReply::Subscribed { top, publications }) => {
                let mut r = SubscribeResult { data: token_data, delta: sub.delta, ..Default::default() };
                if let Some(at) = sub.expires_at.filter(|_| !server_refreshed) {
                    r.expires = true;
                    r.ttl = super::ttl_secs(now, at);
                }
                if sub.positioned || sub.recoverable {
                    r.positioned = sub.positioned;
                    r.recoverable = sub.recoverable;
                    r.epoch = top.epoch.clone();
                    r.offset = top.offset;
                }
                sub.epoch = Arc::from(top.epoch.as_str());
                sub.offset = top.offset;
                match recover {
                    Some(since) if cache => {
                        super::recovery_modes::cache_result(&mut r, &since, &top, &publications);
                        if sub.delta && command.is_some() && !r.publications.is_empty() {
                            if let Ok(sent) = super::delta::recovered(r.publications.clone(), s.wire.encoding) {
                                sub.delta_base = r.publications.last().map_or(0, |p| p.offset);
                                r.publications = sent;
                            }
                        }
                        if !r.recovered && reject_unrecovered {
                            Err(Error::unrecoverable_position())
                        } else {
                            Ok(r)
                        }
                    }
                    Some(since) => {
                        r.was_recovering = true;
                        // An empty epoch means "any epoch" (SDKs send it when the
                        // application hands them only an offset): history decides.
                        let recovered = (since.epoch.is_empty() || since.epoch == top.epoch)
                            && match (publications.first(), publications.last()) {
                                (Some(first), Some(last)) => {
                                    since.offset.checked_add(1) == Some(first.offset) && last.offset == top.offset
                                }
                                _ => top.offset == since.offset,
                            };
                        if recovered {
                            r.recovered = true;
                            r.offset = since.offset;
                            r.publications = publications.iter().map(|p| Publication::clone(p)).collect();
                            if sub.delta && command.is_some() {
                                // A JSON client with binary data keeps the raw form: its
                                // reply then fails to encode, which ends it with 3506.
                                if let Ok(sent) = super::delta::recovered(r.publications.clone(), s.wire.encoding) {
                                    r.publications = sent;
                                    sub.delta_base = publications.last().map_or(0, |p| p.offset);
                                }
                            }
                            Ok(r)
                        } else if reject_unrecovered {
                            Err(Error::unrecoverable_position())
                        } else {
                            Ok(r)
                        }
                    }
                    None => Ok(r),
                }
            }
            Ok(_) => Err(Error::internal()),
            Err(e) => Err(e),
        };
        match command {
            None => {
                if restoring {
                    return self.on_restored(session, channel, outcome, now);
                }
                let Some(pending) = s.connect.as_mut() else {
                    // Not part of a connect: a subscription made through the server API.
                    return self.on_server_subscribed(session, channel, outcome, now);
                };
                pending.waiting = pending.waiting.saturating_sub(1);
                match outcome {
                    Ok(r) => {
                        pending.results.insert(channel.to_string(), r);
                    }
                    Err(e) => pending.failed = Some(e),
                }
                self.finish_connect_if_ready(session, now);
            }
            Some(id) => {
                s.busy = false;
                match outcome {
                    Ok(r) => {
                        self.reply(session, Reply { id, subscribe: Some(r), ..Default::default() });
                        self.activate(session, &channel, now);
                    }
                    Err(e) => {
                        s.subs.remove(&channel);
                        self.error_reply(session, id, e);
                        self.leave_channel_quietly(session, &channel);
                    }
                }
                self.drain(session, now);
            }
        }
    }

    fn on_subscription_gone(&mut self, session: SessionId, command: Option<u32>, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        match command {
            None if s.restoring => self.settle_restore(session, now),
            None => {
                if let Some(pending) = s.connect.as_mut() {
                    pending.waiting = pending.waiting.saturating_sub(1);
                }
                self.finish_connect_if_ready(session, now);
            }
            Some(id) => {
                s.busy = false;
                self.error_reply(session, id, Error::internal());
                self.drain(session, now);
            }
        }
    }

    /// A subscription starts receiving: buffered publications go out, presence and join follow.
    pub(crate) fn activate(&mut self, session: SessionId, channel: &Arc<str>, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(sub) = s.subs.get(channel) else { return };
        if sub.state == SubState::Active {
            return;
        }
        let info = s.info(&sub.chan_info);
        let transport = s.transport;
        let Some(sub) = s.subs.get_mut(channel) else { return };
        sub.state = SubState::Active;
        let buffered = std::mem::take(&mut sub.buffer);
        // A subscription re-made after the host lost its memory joined long ago.
        let (presence, join) = (sub.presence, sub.emit_join_leave && !sub.restoring);
        self.snapshot_changed(session);
        if let Some(subs) = self.channels.get_mut(channel) {
            subs.pending.remove(&session);
            if subs.insert_active(session, transport) {
                self.subscriptions = self.subscriptions.saturating_add(1);
            }
        }
        for (epoch, publication) in buffered {
            self.deliver_to(session, channel, &epoch, &publication);
        }
        // A delivery may have ended the session (3506 for binary data to a JSON client) or
        // the subscription: then there is no presence to add and no join to announce.
        if !self.sessions.get(&session).is_some_and(|s| s.subs.contains_key(channel)) {
            return;
        }
        self.ensure_position_check(session, now);
        if presence {
            let ttl = ms(self.config.global_presence_ttl);
            self.request(channel, BrokerOp::PresenceAdd { info: info.clone(), ttl_ms: ttl }, Pending::Ignore);
            // Client-side subscriptions made after connect need the refresh too, or their
            // presence expires after the presence TTL.
            self.ensure_presence_refresh(session, now);
        }
        if join {
            self.request(channel, BrokerOp::Join { info }, Pending::Ignore);
        }
    }

    fn leave_channel_quietly(&mut self, session: SessionId, channel: &Arc<str>) {
        let info = Default::default();
        self.leave_channel(session, channel, false, false, info);
    }

    fn unsubscribe(&mut self, session: SessionId, id: u32, channel: &str, now: Timestamp) {
        if channel.is_empty() {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        self.remove_subscription(session, channel);
        self.reply(session, Reply { id, unsubscribe: Some(Empty {}), ..Default::default() });
    }

    /// Drops one subscription of a session (no push); presence and leave follow.
    pub(crate) fn remove_subscription(&mut self, session: SessionId, channel: &str) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else { return false };
        let Some((channel, sub)) = s.subs.remove_entry(channel) else { return false };
        let info = s.info(&sub.chan_info);
        let active = sub.state == SubState::Active || sub.restoring;
        self.cancel(session, &Timer::SubExpire(channel.clone()));
        self.snapshot_changed(session);
        self.leave_channel(session, &channel, sub.presence && active, sub.emit_join_leave && active, info);
        true
    }

    // ---- publish, presence, history

    fn publish(&mut self, session: SessionId, id: u32, channel: String, data: bytes::Bytes, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        if channel.is_empty() || data.is_empty() {
            // Centrifugo: "channel and data required for publish", a disconnect.
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        let Ok(opts) = self.config.namespace_for(&channel) else {
            return self.error_reply(session, id, Error::unknown_channel());
        };
        let sub = s.subs.get(channel.as_str()).filter(|sub| sub.state == SubState::Active);
        if opts.proxy_publish && crate::proxy::ProxyKind::Publish.enabled(&self.config) {
            // The backend decides instead of the namespace's permissions.
            if data.is_empty() {
                return self.error_reply(session, id, Error::bad_request());
            }
            return self.publish_by_proxy(session, id, channel, data, now);
        }
        if !self.allowed(
            &channel,
            &s.user,
            sub.is_some(),
            (opts.allow_publish_for_subscriber, opts.allow_publish_for_client, opts.allow_publish_for_anonymous),
        ) {
            return self.error_reply(session, id, Error::permission_denied());
        }
        let info = s.info(&sub.map(|sub| sub.chan_info.clone()).unwrap_or_default());
        let history = self.history_options(opts);
        let op = PublishOp { data, info: Some(info), history, delta: opts.delta_publish, ..Default::default() };
        self.command_request(session, id, &channel, BrokerOp::Publish(op), CommandKind::Publish);
    }

    fn presence(&mut self, session: SessionId, id: u32, channel: &str, kind: CommandKind, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        if channel.is_empty() {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        let Ok(opts) = self.config.namespace_for(channel) else {
            return self.error_reply(session, id, Error::unknown_channel());
        };
        if !opts.presence {
            return self.error_reply(session, id, Error::not_available());
        }
        let subscribed = s.subs.contains_key(channel);
        if !self.allowed(
            channel,
            &s.user,
            subscribed,
            (opts.allow_presence_for_subscriber, opts.allow_presence_for_client, opts.allow_presence_for_anonymous),
        ) {
            return self.error_reply(session, id, Error::permission_denied());
        }
        let op = match kind {
            CommandKind::PresenceStats => BrokerOp::PresenceStats,
            _ => BrokerOp::Presence,
        };
        self.command_request(session, id, channel, op, kind);
    }

    fn history(&mut self, session: SessionId, id: u32, req: crate::protocol::HistoryRequest, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        if req.channel.is_empty() {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else {
            return self.error_reply(session, id, Error::unknown_channel());
        };
        let history = self.history_options(opts);
        if !history.enabled() {
            return self.error_reply(session, id, Error::not_available());
        }
        let subscribed = s.subs.contains_key(req.channel.as_str());
        if !self.allowed(
            &req.channel,
            &s.user,
            subscribed,
            (opts.allow_history_for_subscriber, opts.allow_history_for_client, opts.allow_history_for_anonymous),
        ) {
            return self.error_reply(session, id, Error::permission_denied());
        }
        // A zero maximum caps nothing (Centrifugo's rule): -1 is then "all".
        let max = i64::try_from(self.config.client_history_max_publication_limit).unwrap_or(i64::MAX);
        let limit = if max > 0 && (req.limit < 0 || i64::from(req.limit) > max) { max } else { i64::from(req.limit) };
        let op = BrokerOp::History { since: req.since, limit, reverse: req.reverse, history };
        self.command_request(session, id, &req.channel, op, CommandKind::History);
    }

    pub(crate) fn command_request(
        &mut self,
        session: SessionId,
        command: u32,
        channel: &str,
        op: BrokerOp,
        kind: CommandKind,
    ) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = true;
        }
        self.request(channel, op, Pending::Command { session, command, kind });
    }

    pub(crate) fn on_command_reply(
        &mut self,
        session: SessionId,
        id: u32,
        kind: CommandKind,
        result: Result<BrokerReply, Error>,
        _now: Timestamp,
    ) {
        let reply = match (kind, result) {
            (_, Err(e)) => Reply::error(id, e),
            (CommandKind::Publish, Ok(_)) => Reply { id, publish: Some(Empty {}), ..Default::default() },
            (CommandKind::Presence, Ok(BrokerReply::Presence(presence))) => {
                Reply { id, presence: Some(PresenceResult { presence }), ..Default::default() }
            }
            (CommandKind::PresenceStats, Ok(BrokerReply::PresenceStats { clients, users })) => Reply {
                id,
                presence_stats: Some(PresenceStatsResult { num_clients: clients, num_users: users }),
                ..Default::default()
            },
            (CommandKind::History, Ok(BrokerReply::History { top, publications })) => Reply {
                id,
                history: Some(HistoryResult {
                    publications: publications.iter().map(|p| Publication::clone(p)).collect(),
                    epoch: top.epoch,
                    offset: top.offset,
                }),
                ..Default::default()
            },
            (_, Ok(_)) => Reply::error(id, Error::internal()),
        };
        self.reply(session, reply);
    }

    // ---- refresh

    fn refresh(&mut self, session: SessionId, id: u32, token: &str, now: Timestamp) {
        // With a refresh proxy the server refreshes connections: a client refresh is a
        // protocol mistake (3501), as in Centrifugo.
        if token.is_empty() || crate::proxy::ProxyKind::Refresh.enabled(&self.config) {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        let claims = match self.verifier.verify_connect(token, now.as_millis()) {
            Ok(c) => c,
            Err(TokenError::Expired) => return self.disconnect(session, Disconnect::expired(), now),
            Err(TokenError::Invalid(_)) => return self.disconnect(session, Disconnect::invalid_token(), now),
        };
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if claims.user != *s.user {
            return self.disconnect(session, Disconnect::invalid_token(), now);
        }
        s.expires_at = if self.config.client_insecure { None } else { claims.expires_at_ms.map(Timestamp) };
        let mut r = RefreshResult::default();
        if let Some(at) = s.expires_at {
            r.expires = true;
            r.ttl = super::ttl_secs(now, at);
            let grace = ms(self.config.client_expired_close_delay);
            self.schedule(at.after_ms(grace), session, Timer::Expire);
        }
        self.snapshot_changed(session);
        self.reply(session, Reply { id, refresh: Some(r), ..Default::default() });
    }

    fn sub_refresh(&mut self, session: SessionId, id: u32, channel: &str, token: &str, now: Timestamp) {
        // Centrifugo's order: no channel is a broken client; then the subscription must exist
        // and be one the client refreshes (not server-side); then a token is required.
        if channel.is_empty() {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        let Some(s) = self.sessions.get(&session) else { return };
        let Some(sub) = s.subs.get(channel) else {
            return self.error_reply(session, id, Error::permission_denied());
        };
        if sub.server_side {
            return self.disconnect(session, Disconnect::bad_request(), now);
        }
        if token.is_empty() {
            return self.error_reply(session, id, Error::bad_request());
        }
        let claims = match self.sub_verifier.verify_subscribe(token, now.as_millis()) {
            Ok(c) => c,
            Err(TokenError::Expired) => return self.error_reply(session, id, Error::token_expired()),
            Err(TokenError::Invalid(_)) => return self.disconnect(session, Disconnect::invalid_token(), now),
        };
        if claims.channel != channel
            || claims.user != *s.user
            || (!claims.client.is_empty() && claims.client != *s.client)
        {
            return self.disconnect(session, Disconnect::invalid_token(), now);
        }
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some((name, sub)) = s.subs.get_key_value(channel) else { return };
        let name = name.clone();
        let expires_at = claims.expires_at_ms.map(Timestamp);
        let mut r = Expiry::default();
        if let Some(at) = expires_at {
            r.expires = true;
            r.ttl = super::ttl_secs(now, at);
        }
        let _ = sub;
        if let Some(sub) = s.subs.get_mut(channel) {
            sub.expires_at = expires_at;
        }
        if let Some(at) = expires_at {
            let grace = ms(self.config.client_expired_sub_close_delay);
            self.schedule(at.after_ms(grace), session, Timer::SubExpire(name));
        }
        self.snapshot_changed(session);
        self.reply(session, Reply { id, sub_refresh: Some(r), ..Default::default() });
    }
}
