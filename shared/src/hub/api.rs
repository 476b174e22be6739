//! Server API commands that go through the hub.
//!
//! A command either answers at once (validation errors, `info`, `channels`, and the commands
//! acting on connections) or asks the broker and answers from its reply (`Pending::Api`).
//! `batch` and `broadcast` are groups: each part answers into a slot, and the group answers
//! when every slot is filled. A sequential batch starts each command after the previous one
//! answered, so a command sees what the earlier ones did.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::connect::SubscriptionPlan;
use super::session::{State, SubState};
use super::timers::Timer;
use super::{ms, Hub, Pending, SessionId};
use crate::api::{
    self, ApiCommand, ApiId, ApiKind, BroadcastRequest, ChannelRequest, ChannelsRequest, DisconnectRequest,
    HistoryRequest, PublishRequest, RefreshRequest, SubscribeRequest, UnsubscribeRequest,
};
use crate::broker::{BrokerOp, BrokerReply, PublishOp};
use crate::hub::Output;
use crate::protocol::{codes, Disconnect, Error, Expiry, Push, SubscribeResult};
use crate::time::Timestamp;

/// Where an API answer goes: to the host, or into a slot of a batch or broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiTarget {
    Host(ApiId),
    Slot { group: u64, slot: usize },
}

/// How a command goes on after validation. Lives only on the stack between validation and
/// the broker request, so the size gap between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Step {
    Done(Result<Value, Error>),
    Broker { channel: String, op: BrokerOp, kind: ApiKind },
}

enum Shape {
    /// `{"replies":[{"<method>":…}|{"error":…}]}`
    Batch { methods: Vec<&'static str> },
    /// `{"responses":[{"result":…}|{"error":…}]}`
    Broadcast,
}

struct Group {
    target: ApiTarget,
    shape: Shape,
    queue: VecDeque<(usize, Option<ApiCommand>)>,
    parallel: bool,
    in_flight: usize,
    /// `advance` is looping over this group: answers only fill their slot, the loop goes on.
    advancing: bool,
    slots: Vec<Option<Result<Value, Error>>>,
}

/// Batches and broadcasts waiting for their parts.
#[derive(Default)]
pub(crate) struct ApiGroups {
    next: u64,
    groups: BTreeMap<u64, Group>,
}

impl Hub {
    pub(crate) fn api(&mut self, id: ApiId, command: ApiCommand, now: Timestamp) {
        self.run_api(command, ApiTarget::Host(id), now);
    }

    /// A broker reply for an API command.
    pub(crate) fn on_api_reply(
        &mut self,
        target: ApiTarget,
        kind: ApiKind,
        result: Result<BrokerReply, Error>,
        now: Timestamp,
    ) {
        let result = result.and_then(|reply| api::result(kind, reply));
        self.answer_api(target, result, now);
    }

    /// A server-side subscription made through the API is set up: the connection learns of it
    /// with a `subscribe` push, then gets what recovery found and what arrived meanwhile.
    pub(crate) fn on_server_subscribed(
        &mut self,
        session: SessionId,
        channel: Arc<str>,
        outcome: Result<SubscribeResult, Error>,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        match outcome {
            Ok(mut result) => {
                let publications = std::mem::take(&mut result.publications);
                // The push's event id (uni SSE) must carry the position before the recovered
                // publications, not the top.
                if result.recovered {
                    if let Some(sub) = s.subs.get_mut(&channel) {
                        sub.offset = result.offset;
                    }
                }
                let push = Push { channel: channel.to_string(), subscribe: Some(result.clone()), ..Default::default() };
                let encoded = s.wire.push(&push);
                if !self.send_encoded(session, encoded, true) {
                    return;
                }
                self.catch_up(session, &channel, &result, publications, now);
            }
            Err(_) => {
                if s.subs.remove(&channel).is_some() {
                    self.leave_channel(session, &channel, false, false, Default::default());
                }
            }
        }
    }

    // ---- groups

    fn run_api(&mut self, command: ApiCommand, target: ApiTarget, now: Timestamp) {
        match command {
            ApiCommand::Batch(batch) => {
                let methods = batch.methods();
                let queue = batch.commands.into_iter().enumerate().collect();
                self.start_group(target, Shape::Batch { methods }, queue, batch.parallel, now);
            }
            ApiCommand::Broadcast(req) => match self.broadcast_parts(&req) {
                Ok(queue) => self.start_group(target, Shape::Broadcast, queue, true, now),
                Err(e) => self.answer_api(target, Err(e), now),
            },
            command => match self.api_step(command, now) {
                Step::Done(result) => self.answer_api(target, result, now),
                Step::Broker { channel, op, kind } => {
                    self.request(&channel, op, Pending::Api { target, kind });
                }
            },
        }
    }

    /// Channel names from the API obey `channel_max_length` as clients' do.
    fn api_channel_names<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
        let max = self.config.channel_max_length as usize;
        match names.into_iter().find(|name| name.len() > max) {
            Some(name) => Err(Error::new(
                107,
                &format!("bad request: channel name of {} bytes is longer than channel_max_length ({max})", name.len()),
            )),
            None => Ok(()),
        }
    }

    fn broadcast_parts(&self, req: &BroadcastRequest) -> Result<VecDeque<(usize, Option<ApiCommand>)>, Error> {
        self.api_channel_names(req.channels.iter().map(String::as_str))?;
        if req.channels.is_empty() {
            return Err(Error::bad_request());
        }
        api::PublishRequest { data: req.data.clone(), b64data: req.b64data.clone(), ..Default::default() }.payload()?;
        Ok(req.publishes().into_iter().map(|p| Some(ApiCommand::Publish(p))).enumerate().collect())
    }

    fn start_group(
        &mut self,
        target: ApiTarget,
        shape: Shape,
        queue: VecDeque<(usize, Option<ApiCommand>)>,
        parallel: bool,
        now: Timestamp,
    ) {
        let groups = &mut self.api_groups;
        let id = groups.next;
        groups.next += 1;
        let slots = vec![None; queue.len()];
        groups.groups.insert(id, Group { target, shape, queue, parallel, in_flight: 0, advancing: false, slots });
        self.advance(id, now);
    }

    /// Starts what a group may start now; answers the group once every slot is filled.
    fn advance(&mut self, id: u64, now: Timestamp) {
        loop {
            let Some(group) = self.api_groups.groups.get_mut(&id) else { return };
            if group.in_flight > 0 && !group.parallel {
                group.advancing = false;
                return;
            }
            match group.queue.pop_front() {
                Some((slot, command)) => {
                    group.in_flight += 1;
                    group.advancing = true;
                    let target = ApiTarget::Slot { group: id, slot };
                    match command {
                        Some(command) => self.run_api(command, target, now),
                        None => self.answer_api(target, Err(api::not_found()), now),
                    }
                }
                None if group.in_flight > 0 => {
                    group.advancing = false;
                    return;
                }
                None => {
                    let group = self.api_groups.groups.remove(&id).expect("looked up above");
                    let value = group_value(&group);
                    return self.answer_api(group.target, Ok(value), now);
                }
            }
        }
    }

    fn answer_api(&mut self, target: ApiTarget, result: Result<Value, Error>, now: Timestamp) {
        match target {
            ApiTarget::Host(id) => self.outputs.push_back(Output::Api { id, result }),
            ApiTarget::Slot { group, slot } => {
                let Some(g) = self.api_groups.groups.get_mut(&group) else { return };
                g.slots[slot] = Some(result);
                g.in_flight -= 1;
                if !g.advancing {
                    self.advance(group, now);
                }
            }
        }
    }

    // ---- methods

    fn api_step(&mut self, command: ApiCommand, now: Timestamp) -> Step {
        let done = Step::Done;
        if let Err(e) = self.api_channel_names(command.channel_names()) {
            return done(Err(e));
        }
        match command {
            ApiCommand::Publish(req) => self.api_publish(req),
            ApiCommand::Subscribe(req) => done(self.api_subscribe(req, now)),
            ApiCommand::Unsubscribe(req) => done(self.api_unsubscribe(req)),
            ApiCommand::Disconnect(req) => done(self.api_disconnect(req, now)),
            ApiCommand::Refresh(req) => done(self.api_refresh(req, now)),
            ApiCommand::Presence(req) => self.api_presence(req, ApiKind::Presence),
            ApiCommand::PresenceStats(req) => self.api_presence(req, ApiKind::PresenceStats),
            ApiCommand::History(req) => self.api_history(req),
            ApiCommand::HistoryRemove(req) => self.api_history_remove(req),
            ApiCommand::Channels(req) => done(self.api_channels(&req)),
            ApiCommand::Info => done(Ok(self.api_info(now))),
            ApiCommand::Rpc(req) => {
                // No RPC extensions are registered: every method is unknown.
                done(Err(if req.method.is_empty() { Error::bad_request() } else { api::not_found() }))
            }
            // Groups are run by `run_api`; reaching here would be a nested batch.
            ApiCommand::Batch(_) | ApiCommand::Broadcast(_) => done(Err(api::not_found())),
        }
    }

    fn api_publish(&mut self, req: PublishRequest) -> Step {
        if req.channel.is_empty() {
            return Step::Done(Err(Error::bad_request()));
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else {
            return Step::Done(Err(Error::unknown_channel()));
        };
        let data = match req.payload() {
            Ok(d) if !d.is_empty() && &d[..] != b"null" => d,
            Ok(_) | Err(_) => return Step::Done(Err(Error::bad_request())),
        };
        let op = PublishOp {
            data,
            info: None,
            tags: req.tags,
            history: self.history_options(opts),
            skip_history: req.skip_history,
            idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
            delta: req.delta || opts.delta_publish,
        };
        Step::Broker { channel: req.channel, op: BrokerOp::Publish(op), kind: ApiKind::Publish }
    }

    fn api_presence(&mut self, req: ChannelRequest, kind: ApiKind) -> Step {
        if req.channel.is_empty() {
            return Step::Done(Err(Error::bad_request()));
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else {
            return Step::Done(Err(Error::unknown_channel()));
        };
        if !opts.presence {
            return Step::Done(Err(Error::not_available()));
        }
        let op = if kind == ApiKind::Presence { BrokerOp::Presence } else { BrokerOp::PresenceStats };
        Step::Broker { channel: req.channel, op, kind }
    }

    fn api_history(&mut self, req: HistoryRequest) -> Step {
        if req.channel.is_empty() {
            return Step::Done(Err(Error::bad_request()));
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else {
            return Step::Done(Err(Error::unknown_channel()));
        };
        let history = self.history_options(opts);
        if !history.enabled() {
            return Step::Done(Err(Error::not_available()));
        }
        if req.reverse && req.since.as_ref().is_some_and(|s| s.offset == 0) {
            // Nothing comes before offset 0: the request cannot mean anything.
            return Step::Done(Err(Error::bad_request()));
        }
        // Unlike the client command, the API has no cap: -1 means every publication kept.
        let op = BrokerOp::History { since: req.since, limit: req.limit, reverse: req.reverse, history };
        Step::Broker { channel: req.channel, op, kind: ApiKind::History }
    }

    fn api_history_remove(&mut self, req: ChannelRequest) -> Step {
        if req.channel.is_empty() {
            return Step::Done(Err(Error::bad_request()));
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else {
            return Step::Done(Err(Error::unknown_channel()));
        };
        if !self.history_options(opts).enabled() {
            return Step::Done(Err(Error::not_available()));
        }
        Step::Broker { channel: req.channel, op: BrokerOp::HistoryRemove, kind: ApiKind::HistoryRemove }
    }

    fn api_channels(&self, req: &ChannelsRequest) -> Result<Value, Error> {
        let pattern =
            crate::glob::Glob::new(&req.pattern).map_err(|e| Error::new(107, &format!("bad request: {e}")))?;
        let channels: Map<String, Value> = self
            .channels
            .iter()
            .filter(|(name, _)| req.pattern.is_empty() || pattern.matches(name))
            .map(|(name, subs)| (name.to_string(), json!({"num_clients": subs.active.len() + subs.pending.len()})))
            .collect();
        Ok(json!({ "channels": channels }))
    }

    fn api_info(&self, now: Timestamp) -> Value {
        let connected = self.sessions.values().filter(|s| s.state == State::Connected);
        let (clients, subs) = connected.fold((0usize, 0usize), |(c, n), s| (c + 1, n + s.subs.len()));
        json!({"nodes": [{
            "uid": self.node.id.to_string(),
            "name": self.node.name,
            "version": self.node.version,
            "num_clients": clients,
            "num_users": self.by_user.len(),
            "num_channels": self.channels.len(),
            "num_subs": subs,
            "uptime": self.uptime(now),
        }]})
    }

    // ---- methods acting on connections

    /// Connected sessions of `user`, narrowed to one client id and/or session id when given.
    fn api_targets(&self, user: &str, client: &str, session: &str) -> Vec<SessionId> {
        let Some(ids) = self.by_user.get(user) else { return Vec::new() };
        let mut out: Vec<SessionId> = ids
            .iter()
            .copied()
            .filter(|id| {
                self.sessions.get(id).is_some_and(|s| {
                    s.state == State::Connected
                        && (client.is_empty() || *s.client == *client)
                        && (session.is_empty() || *s.token == *session)
                })
            })
            .collect();
        out.sort();
        out
    }

    fn api_subscribe(&mut self, req: SubscribeRequest, now: Timestamp) -> Result<Value, Error> {
        if req.channel.is_empty() {
            return Err(Error::bad_request());
        }
        let Ok(opts) = self.config.namespace_for(&req.channel) else { return Err(Error::unknown_channel()) };
        let overrides = crate::auth::SubscribeOverrides::from(req.overrides.clone().unwrap_or_default());
        let namespace_push_join_leave = opts.force_push_join_leave;
        let opts = overrides.apply(opts);
        let chan_info = req.info()?;
        let data = req.data()?;
        let history = self.history_options(&opts);
        let recoverable = history.enabled() && opts.force_recovery;
        let positioned = history.enabled() && (opts.force_positioning || recoverable);
        let emit_join_leave = opts.join_leave;
        let expires_at = Timestamp::from_unix_secs(req.expire_at);
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Error::bad_request()); // already expired: nothing to subscribe
        }
        let channel: Arc<str> = Arc::from(req.channel.as_str());
        let since = req.recover_since.clone().filter(|_| recoverable);
        let limit = self.config.client_channel_limit as usize;
        for session in self.api_targets(&req.user, &req.client, &req.session) {
            let Some(s) = self.sessions.get(&session) else { continue };
            if s.subs.contains_key(&channel) {
                continue; // already there: nothing to add
            }
            if s.active_channels() >= limit {
                self.disconnect(session, Disconnect::channel_limit(), now);
                continue;
            }
            let plan = SubscriptionPlan {
                server_side: true,
                chan_info: chan_info.clone(),
                expires_at,
                recoverable,
                positioned,
                presence: opts.presence,
                emit_join_leave,
                push_join_leave: overrides
                    .force_push_join_leave
                    .unwrap_or(namespace_push_join_leave && emit_join_leave),
                history,
                data: data.clone(),
                delta: false,
            };
            self.start_subscription(session, channel.clone(), plan, None, since.clone(), false);
            if let Some(at) = expires_at {
                let grace = ms(self.config.client_expired_sub_close_delay);
                self.schedule(at.after_ms(grace), session, Timer::SubExpire(channel.clone()));
            }
        }
        Ok(json!({}))
    }

    fn api_unsubscribe(&mut self, req: UnsubscribeRequest) -> Result<Value, Error> {
        if !req.channel.is_empty() && self.config.namespace_for(&req.channel).is_err() {
            return Err(Error::unknown_channel());
        }
        let (code, reason) = codes::unsubscribe::SERVER;
        for session in self.api_targets(&req.user, &req.client, &req.session) {
            let channels: Vec<Arc<str>> = match self.sessions.get(&session) {
                Some(s) if req.channel.is_empty() => s.subs.keys().cloned().collect(),
                Some(s) => s.subs.get_key_value(&req.channel).map(|(k, _)| k.clone()).into_iter().collect(),
                None => continue,
            };
            for channel in channels {
                // A subscription still waiting for the broker was never announced to the
                // client: it goes quietly, with no `unsubscribe` push for it (one being re-made
                // after a wake-up was announced in an earlier life, so it is told).
                let announced = self
                    .sessions
                    .get(&session)
                    .and_then(|s| s.subs.get(&channel))
                    .is_some_and(|sub| sub.state == SubState::Active || sub.restoring);
                if self.remove_subscription(session, &channel) && announced {
                    self.push_unsubscribe(session, &channel, (code, reason));
                }
            }
        }
        Ok(json!({}))
    }

    fn api_disconnect(&mut self, req: DisconnectRequest, now: Timestamp) -> Result<Value, Error> {
        let disconnect = match &req.disconnect {
            Some(d) if d.code > 0 => Disconnect::new(d.code, &d.reason),
            _ => Disconnect::force_disconnect(),
        };
        for session in self.api_targets(&req.user, &req.client, &req.session) {
            let spared = self.sessions.get(&session).is_some_and(|s| req.whitelist.iter().any(|c| **c == *s.client));
            if !spared {
                self.disconnect(session, disconnect.clone(), now);
            }
        }
        Ok(json!({}))
    }

    fn api_refresh(&mut self, req: RefreshRequest, now: Timestamp) -> Result<Value, Error> {
        let info = req.info()?;
        let expires_at = Timestamp::from_unix_secs(req.expire_at);
        for session in self.api_targets(&req.user, &req.client, &req.session) {
            if req.expired || expires_at.is_some_and(|at| at <= now) {
                self.disconnect(session, Disconnect::expired(), now);
                continue;
            }
            let Some(s) = self.sessions.get_mut(&session) else { continue };
            s.expires_at = expires_at;
            if !info.is_empty() {
                s.conn_info = info.clone();
            }
            let mut expiry = Expiry::default();
            if let Some(at) = expires_at {
                expiry.expires = true;
                expiry.ttl = super::ttl_secs(now, at);
            }
            let encoded = s.wire.push(&Push { refresh: Some(expiry), ..Default::default() });
            if !self.send_encoded(session, encoded, true) {
                continue;
            }
            self.snapshot_changed(session);
            if let Some(at) = expires_at {
                let grace = ms(self.config.client_expired_close_delay);
                self.schedule(at.after_ms(grace), session, Timer::Expire);
            }
        }
        Ok(json!({}))
    }
}

fn group_value(group: &Group) -> Value {
    let answer = |i: usize| group.slots[i].clone().unwrap_or_else(|| Err(Error::internal()));
    match &group.shape {
        Shape::Batch { methods } => api::batch_value(methods, (0..group.slots.len()).map(answer).collect()),
        Shape::Broadcast => {
            let responses: Vec<Value> = (0..group.slots.len()).map(|i| api::envelope(&answer(i))).collect();
            json!({ "responses": responses })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::api::{self, ApiCommand, ApiId};
    use crate::config::Config;
    use crate::hub::{NodeInfo, SessionId, Transport};
    use crate::node::Node;
    use crate::protocol::Encoding;
    use crate::time::Timestamp;

    const SECRET: &str = "hub-api-test-secret";
    const T0: Timestamp = Timestamp(1_700_000_000_000);

    struct Rig {
        node: Node,
        sent: Vec<(SessionId, Value)>,
        answers: Vec<(ApiId, Result<Value, crate::protocol::Error>)>,
    }

    impl Rig {
        fn new() -> Rig {
            let json = json!({"token_hmac_secret_key": SECRET, "presence": true, "history_size": 10, "history_ttl": "60s",
                "force_recovery": true, "namespaces": [{"name": "plain"}]});
            let config =
                std::sync::Arc::new(Config::from_json_str(&json.to_string(), std::iter::empty()).unwrap().config);
            let info = NodeInfo { id: "n1".into(), name: "n1".into(), version: "t".into() };
            Rig { node: Node::new(config, info, 7, T0).unwrap(), sent: Vec::new(), answers: Vec::new() }
        }

        fn pump(&mut self) {
            while let Some(output) = self.node.poll_output() {
                match output {
                    crate::node::Output::Send { session, data } => {
                        for line in std::str::from_utf8(&data).unwrap().split('\n').filter(|l| !l.is_empty()) {
                            self.sent.push((session, serde_json::from_str(line).unwrap()));
                        }
                    }
                    crate::node::Output::Api { id, result } => self.answers.push((id, result)),
                    _ => {}
                }
            }
        }

        fn ws(&mut self, id: u64, user: &str) -> SessionId {
            let session = SessionId(id);
            self.node.handle_open(session, Transport::Websocket(Encoding::Json), T0);
            let token = crate::auth::issue_hs256(SECRET, &json!({"sub": user}));
            let frame = json!({"id": 1, "connect": {"token": token}}).to_string();
            self.node.handle_frame(session, frame.as_bytes(), T0);
            self.pump();
            self.sent.clear();
            session
        }

        fn api(&mut self, method: &str, body: Value) -> Result<Value, crate::protocol::Error> {
            let command: ApiCommand = api::parse(method, body.to_string().as_bytes()).unwrap().unwrap();
            let id = ApiId(self.answers.len() as u64 + 100);
            self.node.handle_api(id, command, T0);
            self.pump();
            let (got, result) = self.answers.pop().expect("an answer");
            assert_eq!(got, id);
            result
        }
    }

    #[test]
    fn server_subscribe_pushes_to_bidirectional_clients_then_delivers() {
        let mut rig = Rig::new();
        let a = rig.ws(1, "42");
        let b = rig.ws(2, "43");
        assert_eq!(rig.api("subscribe", json!({"user": "42", "channel": "news"})), Ok(json!({})));
        let (to, push) = rig.sent.remove(0);
        assert_eq!(to, a);
        assert_eq!(push["push"]["channel"], "news");
        assert_eq!(push["push"]["subscribe"]["recoverable"], true);
        rig.api("publish", json!({"channel": "news", "data": {"x": 1}})).unwrap();
        assert_eq!(rig.sent.len(), 1);
        assert_eq!(rig.sent[0].0, a);
        assert_eq!(rig.sent[0].1["push"]["pub"]["data"], json!({"x": 1}));
        rig.sent.clear();
        rig.api("unsubscribe", json!({"user": "42", "channel": "news"})).unwrap();
        assert_eq!(
            rig.sent,
            vec![(
                a,
                json!({"push": {"channel": "news", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}})
            )]
        );
        assert!(rig.sent.iter().all(|(s, _)| *s != b));
    }

    #[test]
    fn batch_runs_in_order_and_nests_broadcast() {
        let mut rig = Rig::new();
        let result = rig
            .api(
                "batch",
                json!({"commands": [
                    {"publish": {"channel": "c", "data": 1}},
                    {"broadcast": {"channels": ["c", "nosuch:x"], "data": 2}},
                    {"history": {"channel": "c", "limit": -1}},
                    {"presence": {"channel": "plain:x"}},
                    {"batch": {"commands": []}},
                ]}),
            )
            .unwrap();
        let replies = result["replies"].as_array().unwrap();
        assert_eq!(replies[0]["publish"]["offset"], 1);
        assert_eq!(replies[1]["broadcast"]["responses"][0]["result"]["offset"], 2);
        assert_eq!(replies[1]["broadcast"]["responses"][1]["error"]["code"], 102);
        assert_eq!(replies[2]["history"]["publications"].as_array().unwrap().len(), 2);
        assert_eq!(replies[3]["error"]["code"], 108);
        assert_eq!(replies[4]["error"]["code"], 104);
    }

    #[test]
    fn disconnect_and_refresh_reach_the_right_connections() {
        let mut rig = Rig::new();
        let a = rig.ws(1, "42");
        let _b = rig.ws(2, "42");
        let client_a = {
            let c = rig.api("info", json!({})).unwrap();
            assert_eq!(c["nodes"][0]["num_clients"], 2);
            assert_eq!(c["nodes"][0]["num_users"], 1);
            rig.node.hub().sessions.get(&a).unwrap().client.to_string()
        };
        rig.api("refresh", json!({"user": "42", "client": client_a, "expire_at": T0.as_secs() + 100})).unwrap();
        assert_eq!(rig.sent, vec![(a, json!({"push": {"refresh": {"expires": true, "ttl": 100}}}))]);
        rig.api("disconnect", json!({"user": "42", "whitelist": [client_a]})).unwrap();
        assert_eq!(rig.node.hub().num_sessions(), 1);
        assert!(rig.node.hub().sessions.contains_key(&a));
    }
}
