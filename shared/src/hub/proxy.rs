//! Proxy calls to the application backend: the hub sends a [`ProxyRequest`] as an output,
//! keeps what the call continues into (the command, the connect) with a timer of the
//! session's, and goes on when [`Hub::handle_proxy_reply`] brings the answer or the timer
//! fires first. Other sessions never wait: the session's own later commands queue behind it
//! as they queue behind a broker request. A session that ends takes its calls with it.

use std::sync::Arc;

use bytes::Bytes;

use super::commands::CommandKind;
use super::connect::{Credentials, Refusal, SubscriptionPlan};
use super::session::{Session, SessionProxy, State, SubState};
use super::timers::Timer;
use super::{Hub, Output, SessionId};
use crate::broker::{BrokerOp, PublishOp};
use crate::protocol::{ConnectRequest, Disconnect, Encoding, Error, Reply, RpcRequest, RpcResult, SubscribeRequest};
use crate::proxy::{
    self, Answer, Common, ConnectAnswer, ConnectBody, Failure, Payload, ProxyId, ProxyKind, ProxyOutcome, ProxyRequest,
    PublishAnswer, RefreshAnswer, RpcAnswer, SessionBody, SubscribeAnswer,
};
use crate::time::Timestamp;

/// What a proxy call continues into.
pub(crate) enum ProxyCall {
    Connect { session: SessionId, command: u32, request: ConnectRequest },
    Refresh { session: SessionId },
    Subscribe { session: SessionId, command: u32, request: SubscribeRequest },
    Publish { session: SessionId, command: u32, channel: String, data: Bytes },
    Rpc { session: SessionId, command: u32 },
    SubRefresh { session: SessionId, channel: Arc<str> },
}

impl ProxyCall {
    fn session(&self) -> SessionId {
        match self {
            ProxyCall::Connect { session, .. }
            | ProxyCall::Refresh { session }
            | ProxyCall::Subscribe { session, .. }
            | ProxyCall::Publish { session, .. }
            | ProxyCall::Rpc { session, .. }
            | ProxyCall::SubRefresh { session, .. } => *session,
        }
    }

    fn kind(&self) -> ProxyKind {
        match self {
            ProxyCall::Connect { .. } => ProxyKind::Connect,
            ProxyCall::Refresh { .. } => ProxyKind::Refresh,
            ProxyCall::Subscribe { .. } => ProxyKind::Subscribe,
            ProxyCall::Publish { .. } => ProxyKind::Publish,
            ProxyCall::Rpc { .. } => ProxyKind::Rpc,
            ProxyCall::SubRefresh { .. } => ProxyKind::SubRefresh,
        }
    }
}

/// Centrifugo's answer to a failed proxy call: internal error, worth retrying.
fn temporary_internal() -> Error {
    let mut e = Error::internal();
    e.temporary = true;
    e
}

fn common(s: &Session) -> Common<'_> {
    Common {
        client: &s.client,
        transport: s.transport.name(),
        protocol: match s.wire.encoding {
            Encoding::Json => "json",
            Encoding::Protobuf => "protobuf",
        },
        encoding: "json",
    }
}

impl Hub {
    // ---- handlers

    /// The request headers of a session's transport that proxies forward (the host passes
    /// [`proxy::forwarded_headers`] of the request that opened it, right after opening).
    pub fn handle_headers(&mut self, session: SessionId, headers: Vec<(String, String)>) {
        if headers.is_empty() {
            return;
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.proxy.get_or_insert_with(Default::default).headers = headers;
        }
    }

    /// What the backend answered to [`Output::Proxy`] `id` (or why it did not). An answer
    /// for a call that timed out, or whose session ended, is dropped.
    pub fn handle_proxy_reply(&mut self, id: ProxyId, outcome: ProxyOutcome, now: Timestamp) {
        // The time replies are measured to (metrics): the command waited for this answer.
        self.now = now;
        let Some(call) = self.proxies.remove(&id) else { return };
        self.cancel(call.session(), &Timer::Proxy(id));
        self.on_proxy_outcome(call, outcome, now);
    }

    pub(crate) fn proxy_timed_out(&mut self, id: ProxyId, now: Timestamp) {
        let Some(call) = self.proxies.remove(&id) else { return };
        let (_, timeout) = call.kind().endpoint(&self.config);
        self.on_proxy_outcome(call, ProxyOutcome::Failed(format!("no answer within {timeout} ms")), now);
    }

    // ---- calls

    fn call_proxy(&mut self, call: ProxyCall, body: Result<Vec<u8>, serde_json::Error>, now: Timestamp) {
        let (session, kind) = (call.session(), call.kind());
        let Ok(body) = body else {
            // Our own structs always serialize; never leave the command without an answer.
            return self.on_proxy_outcome(call, ProxyOutcome::Failed("request did not encode".into()), now);
        };
        let Some(s) = self.sessions.get(&session) else { return };
        let forwarded = s.proxy.as_ref().map(|p| p.headers.as_slice()).unwrap_or_default();
        let headers = proxy::request_headers(&self.config, forwarded);
        let (endpoint, timeout_ms) = kind.endpoint(&self.config);
        let endpoint = endpoint.to_owned();
        let id = ProxyId(self.next_proxy);
        self.next_proxy = self.next_proxy.wrapping_add(1);
        self.proxies.insert(id, call);
        self.schedule(now.after_ms(timeout_ms), session, Timer::Proxy(id));
        self.outputs.push_back(Output::Proxy(ProxyRequest {
            id,
            kind,
            endpoint,
            timeout_ms,
            headers,
            body: Bytes::from(body),
        }));
    }

    /// A body for the proxies after connect.
    fn session_body(
        &self,
        s: &Session,
        channel: Option<&str>,
        method: Option<&str>,
        data: &[u8],
    ) -> Result<Vec<u8>, serde_json::Error> {
        let meta = s.proxy.as_ref().and_then(|p| proxy::meta(&self.config, &p.meta));
        serde_json::to_vec(&SessionBody {
            common: common(s),
            user: &s.user,
            meta,
            channel,
            method,
            token: None,
            payload: Payload::of(data),
        })
    }

    pub(crate) fn connect_by_proxy(
        &mut self,
        session: SessionId,
        command: u32,
        request: ConnectRequest,
        now: Timestamp,
    ) {
        let config = self.config.clone();
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.state = State::Connecting;
        s.busy = true;
        let p = s.proxy.get_or_insert_with(Default::default);
        proxy::merge_emulated(&config, &mut p.headers, &request.headers);
        let body = serde_json::to_vec(&ConnectBody {
            common: common(s),
            name: &request.name,
            version: &request.version,
            payload: Payload::of(&request.data),
            channels: request.subs.keys().map(String::as_str).collect(),
        });
        self.call_proxy(ProxyCall::Connect { session, command, request }, body, now);
    }

    pub(crate) fn rpc_by_proxy(&mut self, session: SessionId, command: u32, r: RpcRequest, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        let body = self.session_body(s, None, Some(&r.method), &r.data);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = true;
        }
        self.call_proxy(ProxyCall::Rpc { session, command }, body, now);
    }

    pub(crate) fn subscribe_by_proxy(
        &mut self,
        session: SessionId,
        command: u32,
        request: SubscribeRequest,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get(&session) else { return };
        let body = self.session_body(s, Some(&request.channel), None, &request.data);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = true;
        }
        self.call_proxy(ProxyCall::Subscribe { session, command, request }, body, now);
    }

    pub(crate) fn publish_by_proxy(
        &mut self,
        session: SessionId,
        command: u32,
        channel: String,
        data: Bytes,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get(&session) else { return };
        let body = self.session_body(s, Some(&channel), None, &data);
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = true;
        }
        self.call_proxy(ProxyCall::Publish { session, command, channel, data }, body, now);
    }

    /// The connection's `expire_at` passed (timer): ask the refresh proxy.
    pub(crate) fn refresh_by_proxy(&mut self, session: SessionId, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        if s.state != State::Connected || s.expires_at.is_none_or(|at| at > now) {
            return;
        }
        let body = self.session_body(s, None, None, &[]);
        self.call_proxy(ProxyCall::Refresh { session }, body, now);
    }

    /// A subscription's `expire_at` passed (timer): ask the sub_refresh proxy.
    pub(crate) fn sub_refresh_by_proxy(&mut self, session: SessionId, channel: Arc<str>, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        if s.subs.get(&channel).and_then(|sub| sub.expires_at).is_none_or(|at| at > now) {
            return;
        }
        let body = self.session_body(s, Some(&channel), None, &[]);
        self.call_proxy(ProxyCall::SubRefresh { session, channel }, body, now);
    }

    // ---- answers

    fn proxy_failed(&mut self, kind: ProxyKind, Failure(cause): Failure) {
        let endpoint = kind.endpoint(&self.config).0.to_owned();
        self.outputs.push_back(Output::ProxyFailed { kind, endpoint, cause });
    }

    fn on_proxy_outcome(&mut self, call: ProxyCall, outcome: ProxyOutcome, now: Timestamp) {
        match call {
            ProxyCall::Connect { session, command, request } => {
                self.on_connect_answer(session, command, request, outcome, now)
            }
            ProxyCall::Rpc { session, command } => {
                let reply = match self.read::<RpcAnswer>(ProxyKind::Rpc, outcome) {
                    Ok(Answer::Result(r)) => match r.data() {
                        Ok(data) => Ok(RpcResult { data }),
                        Err(failure) => {
                            self.proxy_failed(ProxyKind::Rpc, failure);
                            Err(Error::internal())
                        }
                    },
                    Ok(Answer::Error(e)) => Err(e),
                    Ok(Answer::Disconnect(d)) => return self.disconnect(session, d, now),
                    Err(e) => Err(e),
                };
                match reply {
                    Ok(r) => self.reply(session, Reply { id: command, rpc: Some(r), ..Default::default() }),
                    Err(e) => self.error_reply(session, command, e),
                }
                self.command_done(session, now);
            }
            ProxyCall::Subscribe { session, command, request } => {
                self.on_subscribe_answer(session, command, request, outcome, now)
            }
            ProxyCall::Publish { session, command, channel, data } => {
                self.on_publish_answer(session, command, channel, data, outcome, now)
            }
            ProxyCall::Refresh { session } => self.on_refresh_answer(session, outcome, now),
            ProxyCall::SubRefresh { session, channel } => self.on_sub_refresh_answer(session, channel, outcome, now),
        }
    }

    /// Reads an answer; a failure is logged and becomes the internal error the client gets.
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        kind: ProxyKind,
        outcome: ProxyOutcome,
    ) -> Result<Answer<T>, Error> {
        proxy::read_answer::<T>(outcome).map_err(|failure| {
            self.proxy_failed(kind, failure);
            Error::internal()
        })
    }

    /// A command that waited for a proxy is answered: the session's next commands run.
    fn command_done(&mut self, session: SessionId, now: Timestamp) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = false;
        }
        self.drain(session, now);
    }

    fn on_connect_answer(
        &mut self,
        session: SessionId,
        command: u32,
        request: ConnectRequest,
        outcome: ProxyOutcome,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.busy = false;
        let answer = proxy::read_answer::<ConnectAnswer>(outcome).and_then(|a| match a {
            Answer::Result(r) => r.granted().map(Answer::Result),
            Answer::Error(e) => Ok(Answer::Error(e)),
            Answer::Disconnect(d) => Ok(Answer::Disconnect(d)),
        });
        let refusal = match answer {
            Ok(Answer::Result(granted)) if granted.expires_at_ms.is_some_and(|at| at <= now.as_millis()) => {
                // Already past its expiry: Centrifugo's answer is 110 "expired".
                Refusal::Error(Error::expired())
            }
            Ok(Answer::Result(granted)) => return self.connect_granted(session, command, request, granted, now),
            Ok(Answer::Error(e)) => Refusal::Error(e),
            Ok(Answer::Disconnect(d)) => Refusal::Disconnect(d),
            Err(failure) => {
                self.proxy_failed(ProxyKind::Connect, failure);
                Refusal::Error(temporary_internal())
            }
        };
        self.refuse_connect(session, command, refusal, now);
        // Commands that came after the connect meet the refusal (3501), as they would have
        // had it been answered at once.
        self.drain(session, now);
    }

    fn connect_granted(
        &mut self,
        session: SessionId,
        command: u32,
        request: ConnectRequest,
        granted: proxy::Granted,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let p = s.proxy.get_or_insert_with(Box::<SessionProxy>::default);
        p.meta = granted.meta;
        let credentials = Credentials {
            user: granted.user,
            info: granted.info,
            expires_at: granted.expires_at_ms.map(Timestamp),
            channels: granted.channels,
            data: granted.data,
        };
        self.connect_as(session, command, request, credentials, now);
    }

    fn on_subscribe_answer(
        &mut self,
        session: SessionId,
        command: u32,
        req: SubscribeRequest,
        outcome: ProxyOutcome,
        now: Timestamp,
    ) {
        let grant = match self.read::<SubscribeAnswer>(ProxyKind::Subscribe, outcome) {
            Ok(Answer::Result(r)) => r.grant().map_err(|failure| {
                self.proxy_failed(ProxyKind::Subscribe, failure);
                Error::internal()
            }),
            Ok(Answer::Error(e)) => Err(e),
            Ok(Answer::Disconnect(d)) => return self.disconnect(session, d, now),
            Err(e) => Err(e),
        };
        let Some(s) = self.sessions.get(&session) else { return };
        let grant = match grant {
            // Subscribed meanwhile (by the server API): the command's answer says so.
            Ok(_) if s.subs.contains_key(req.channel.as_str()) => Err(Error::already_subscribed()),
            // Already past its expiry: 110 "expired", as for a connect (and in Centrifugo).
            Ok(g) if g.expires_at_ms.is_some_and(|at| at <= now.as_millis()) => Err(Error::expired()),
            other => other,
        };
        let opts = self.config.namespace_for(&req.channel).cloned();
        let (grant, opts) = match (grant, opts) {
            (Ok(grant), Ok(opts)) => {
                let opts = grant.overrides.apply(&opts);
                (grant, opts)
            }
            (Err(e), _) => {
                self.error_reply(session, command, e);
                return self.command_done(session, now);
            }
            (_, Err(_)) => {
                self.error_reply(session, command, Error::unknown_channel());
                return self.command_done(session, now);
            }
        };
        let plan = SubscriptionPlan {
            server_side: false,
            chan_info: grant.info,
            expires_at: grant.expires_at_ms.map(Timestamp),
            recoverable: false,
            positioned: false,
            presence: opts.presence,
            emit_join_leave: opts.join_leave,
            push_join_leave: false,
            history: self.history_options(&opts),
            data: grant.data,
            delta: false, // decided in subscribe_granted, as for every client subscribe
        };
        if let Some(s) = self.sessions.get_mut(&session) {
            s.busy = false;
        }
        self.subscribe_granted(session, command, req, opts, plan, now);
        // subscribe_granted left the session busy until the broker answers, unless it
        // replied already.
        if !self.sessions.get(&session).is_some_and(|s| s.busy) {
            self.drain(session, now);
        }
    }

    fn on_publish_answer(
        &mut self,
        session: SessionId,
        command: u32,
        channel: String,
        data: Bytes,
        outcome: ProxyOutcome,
        now: Timestamp,
    ) {
        let mut answer = match self.read::<PublishAnswer>(ProxyKind::Publish, outcome) {
            Ok(Answer::Result(r)) => r,
            Ok(Answer::Error(e)) => {
                self.error_reply(session, command, e);
                return self.command_done(session, now);
            }
            Ok(Answer::Disconnect(d)) => return self.disconnect(session, d, now),
            Err(e) => {
                self.error_reply(session, command, e);
                return self.command_done(session, now);
            }
        };
        let data = match answer.data() {
            Ok(replaced) => replaced.unwrap_or(data),
            Err(failure) => {
                self.proxy_failed(ProxyKind::Publish, failure);
                self.error_reply(session, command, Error::internal());
                return self.command_done(session, now);
            }
        };
        let Some(s) = self.sessions.get(&session) else { return };
        let Ok(opts) = self.config.namespace_for(&channel) else {
            self.error_reply(session, command, Error::unknown_channel());
            return self.command_done(session, now);
        };
        let sub = s.subs.get(channel.as_str()).filter(|sub| sub.state == SubState::Active);
        let info = s.info(&sub.map(|sub| sub.chan_info.clone()).unwrap_or_default());
        let op = PublishOp {
            data,
            info: Some(info),
            tags: std::mem::take(&mut answer.tags),
            history: self.history_options(opts),
            skip_history: answer.skip_history,
            idempotency_key: Some(std::mem::take(&mut answer.idempotency_key)).filter(|k| !k.is_empty()),
            delta: opts.delta_publish,
        };
        // Still busy: the broker's answer finishes the command.
        self.command_request(session, command, &channel, BrokerOp::Publish(op), CommandKind::Publish);
    }

    /// A refresh or sub_refresh answer: the new expiry and info, or how the session ends
    /// (`expired` for an answer that says so or whose time has already passed: asking again
    /// would only loop).
    fn read_refresh(
        &mut self,
        kind: ProxyKind,
        outcome: ProxyOutcome,
        expired: Disconnect,
        now: Timestamp,
    ) -> Result<(Option<Timestamp>, Option<Bytes>), Disconnect> {
        let r = match proxy::read_answer::<RefreshAnswer>(outcome) {
            Ok(Answer::Result(r)) => r,
            Ok(Answer::Disconnect(d)) => return Err(d),
            Ok(Answer::Error(_)) => return Err(Disconnect::server_error()),
            Err(failure) => {
                self.proxy_failed(kind, failure);
                return Err(Disconnect::server_error());
            }
        };
        if r.expired || r.expires_at_ms().is_some_and(|at| at <= now.as_millis()) {
            return Err(expired);
        }
        let expires_at = r.expires_at_ms().map(Timestamp);
        match r.info() {
            Ok(info) => Ok((expires_at, info)),
            Err(failure) => {
                self.proxy_failed(kind, failure);
                Err(Disconnect::server_error())
            }
        }
    }

    fn on_refresh_answer(&mut self, session: SessionId, outcome: ProxyOutcome, now: Timestamp) {
        let (expires_at, info) = match self.read_refresh(ProxyKind::Refresh, outcome, Disconnect::expired(), now) {
            Ok(answer) => answer,
            Err(d) => return self.disconnect(session, d, now),
        };
        let Some(s) = self.sessions.get_mut(&session) else { return };
        s.expires_at = expires_at;
        if let Some(info) = info {
            s.conn_info = info;
        }
        self.snapshot_changed(session);
        match expires_at {
            // Later than now (checked above); a second at least between two calls.
            Some(at) => self.schedule(at.max(now.after_ms(1000)), session, Timer::Refresh),
            None => self.cancel(session, &Timer::Refresh),
        }
    }

    fn on_sub_refresh_answer(&mut self, session: SessionId, channel: Arc<str>, outcome: ProxyOutcome, now: Timestamp) {
        let expired = Disconnect::subscription_expired();
        let (expires_at, info) = match self.read_refresh(ProxyKind::SubRefresh, outcome, expired, now) {
            Ok(answer) => answer,
            Err(d) => return self.disconnect(session, d, now),
        };
        let Some(sub) = self.sessions.get_mut(&session).and_then(|s| s.subs.get_mut(&channel)) else { return };
        sub.expires_at = expires_at;
        if let Some(info) = info {
            sub.chan_info = info;
        }
        self.snapshot_changed(session);
        match expires_at {
            Some(at) => self.schedule(at.max(now.after_ms(1000)), session, Timer::SubRefresh(channel)),
            None => self.cancel(session, &Timer::SubRefresh(channel)),
        }
    }
}
