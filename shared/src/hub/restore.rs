//! Rebuilding sessions after the host lost its memory. At the edge a Durable Object holding
//! only hibernatable WebSockets is evicted when idle; its sockets survive, the hub does not.
//! The host keeps a [`SessionSnapshot`] per socket (small and stable: it changes only when the
//! session subscribes or unsubscribes, so it fits the socket's attachment) and, per channel,
//! the last stream position the node received. After a wake-up it feeds both to
//! [`Hub::handle_restore`]: the session is connected again, each subscription is re-made with
//! recovery from that position, missed publications are delivered, and the client notices
//! nothing. A position history no longer covers ends that subscription the way a gap does
//! (unsubscribe 2500 for client-side subscriptions, disconnect 3010 for server-side ones).
//!
//! A hub built [`Hub::tracking_snapshots`] tells the host what to write, through
//! [`Hub::take_changes`]: the sessions whose snapshot changed and the channels whose last
//! received position moved, so the host stores each only when it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::connect::SubscriptionPlan;
use super::session::{State, SubState};
use super::{Hub, SessionId, Transport};
use crate::protocol::{Disconnect, Encoding, Error, StreamPosition, SubscribeResult};
use crate::time::Timestamp;

/// What a session needs to be rebuilt. Field names are short: it lives in a 2 KB attachment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// "ws", "wsp" (Protobuf) or "uws".
    pub t: String,
    pub client: String,
    pub token: String,
    pub user: String,
    /// Connection info, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<SubscriptionSnapshot>,
    /// What proxy calls need: the forwarded request headers and the connect proxy's `meta`
    /// (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub px: Option<ProxySnapshot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxySnapshot {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub h: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub m: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionSnapshot {
    pub ch: String,
    /// Flags: 1 server-side, 2 recoverable, 4 positioned, 8 presence, 16 emits join/leave,
    /// 32 receives join/leave, 64 Fossil deltas.
    pub f: u8,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub info: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

const SERVER_SIDE: u8 = 1;
const RECOVERABLE: u8 = 2;
const POSITIONED: u8 = 4;
const PRESENCE: u8 = 8;
const EMIT_JOIN_LEAVE: u8 = 16;
const PUSH_JOIN_LEAVE: u8 = 32;
const DELTA: u8 = 64;

/// Changes a host that outlives its memory must store, since it last asked.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Sessions whose snapshot changed: connected, subscribed, unsubscribed, refreshed. None:
    /// the session has no snapshot (gone, or not a connected WebSocket).
    pub sessions: Vec<(SessionId, Option<SessionSnapshot>)>,
    /// Channels whose last received position moved; None: the node left the channel.
    pub positions: Vec<(Arc<str>, Option<StreamPosition>)>,
}

/// What changed since the host last took the changes (only kept when tracking is on).
#[derive(Default)]
pub(crate) struct Tracking {
    sessions: BTreeSet<SessionId>,
    positions: BTreeMap<Arc<str>, Option<StreamPosition>>,
    /// The last position received per channel, to tell a move from a repeat.
    known: BTreeMap<Arc<str>, StreamPosition>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Bytes {
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(text).map(Bytes::from).unwrap_or_default()
}

impl Hub {
    /// Keeps track of what [`Hub::take_changes`] reports. For hosts that lose their memory
    /// while their sockets live on (hibernating Durable Objects).
    pub fn tracking_snapshots(mut self) -> Self {
        self.tracking = Some(Box::default());
        self
    }

    /// What changed since the last call (None when nothing did, or tracking is off).
    pub fn take_changes(&mut self) -> Option<Changes> {
        let tracking = self.tracking.as_mut()?;
        if tracking.sessions.is_empty() && tracking.positions.is_empty() {
            return None;
        }
        let sessions = std::mem::take(&mut tracking.sessions);
        let positions = std::mem::take(&mut tracking.positions).into_iter().collect();
        let sessions = sessions.into_iter().map(|id| (id, self.session_snapshot(id))).collect();
        Some(Changes { sessions, positions })
    }

    /// A session's snapshot may have changed.
    pub(crate) fn snapshot_changed(&mut self, session: SessionId) {
        if let Some(tracking) = self.tracking.as_mut() {
            tracking.sessions.insert(session);
        }
    }

    /// The node received `channel` at this position (a publication, or a subscribe's top).
    /// Offsets only move forward within an epoch; a new epoch replaces the old one.
    pub(crate) fn position_seen(&mut self, channel: &Arc<str>, epoch: &str, offset: u64) {
        let Some(tracking) = self.tracking.as_mut() else { return };
        if epoch.is_empty() || !self.channels.contains_key(channel) {
            return; // no stream (nothing to recover from), or not a channel of this node
        }
        if tracking.known.get(channel).is_some_and(|p| p.epoch == epoch && p.offset >= offset) {
            return;
        }
        let position = StreamPosition { offset, epoch: epoch.to_owned() };
        tracking.known.insert(channel.clone(), position.clone());
        tracking.positions.insert(channel.clone(), Some(position));
    }

    /// The node left `channel`: its position no longer matters.
    pub(crate) fn position_forgotten(&mut self, channel: &Arc<str>) {
        let Some(tracking) = self.tracking.as_mut() else { return };
        if tracking.known.remove(channel).is_some() {
            tracking.positions.insert(channel.clone(), None);
        }
    }

    /// The snapshot of a connected WebSocket session (None for others: streams end with the
    /// object, so only WebSockets outlive it).
    pub fn session_snapshot(&self, session: SessionId) -> Option<SessionSnapshot> {
        let s = self.sessions.get(&session)?;
        let t = match s.transport {
            Transport::Websocket(Encoding::Json) => "ws",
            Transport::Websocket(Encoding::Protobuf) => "wsp",
            Transport::UniWebsocket => "uws",
            _ => return None,
        };
        if s.state != State::Connected {
            return None;
        }
        let subs = s
            .subs
            .iter()
            // A pending subscription is written when it becomes active.
            .filter(|(_, sub)| sub.state == SubState::Active || sub.restoring)
            .map(|(channel, sub)| {
                let mut f = 0;
                for (on, bit) in [
                    (sub.server_side, SERVER_SIDE),
                    (sub.recoverable, RECOVERABLE),
                    (sub.positioned, POSITIONED),
                    (sub.presence, PRESENCE),
                    (sub.emit_join_leave, EMIT_JOIN_LEAVE),
                    (sub.push_join_leave, PUSH_JOIN_LEAVE),
                    (sub.delta, DELTA),
                ] {
                    if on {
                        f |= bit;
                    }
                }
                SubscriptionSnapshot {
                    ch: channel.to_string(),
                    f,
                    info: b64(&sub.chan_info),
                    exp: sub.expires_at.map(|t| t.as_millis()),
                }
            })
            .collect();
        Some(SessionSnapshot {
            t: t.to_owned(),
            client: s.client.to_string(),
            token: s.token.to_string(),
            user: s.user.to_string(),
            info: b64(&s.conn_info),
            exp: s.expires_at.map(|t| t.as_millis()),
            subs,
            px: s.proxy.as_ref().map(|p| ProxySnapshot { h: p.headers.clone(), m: b64(&p.meta) }),
        })
    }

    /// Rebuilds a session from its snapshot; `positions` holds, per channel, the last stream
    /// position this node received before it lost its memory.
    pub fn handle_restore(
        &mut self,
        session: SessionId,
        snapshot: SessionSnapshot,
        positions: &BTreeMap<String, StreamPosition>,
        now: Timestamp,
    ) {
        let transport = match snapshot.t.as_str() {
            "ws" => Transport::Websocket(Encoding::Json),
            "wsp" => Transport::Websocket(Encoding::Protobuf),
            "uws" => Transport::UniWebsocket,
            _ => return,
        };
        // Connected already: no connect deadline, which would only wake the host for nothing.
        self.open_session(session, transport);
        let Some(s) = self.sessions.get_mut(&session) else { return };
        self.by_token.remove(&s.token);
        s.client = Arc::from(snapshot.client.as_str());
        s.token = Arc::from(snapshot.token.as_str());
        s.user = Arc::from(snapshot.user.as_str());
        s.conn_info = unb64(&snapshot.info);
        s.expires_at = snapshot.exp.map(Timestamp);
        s.state = State::Connected;
        s.proxy = snapshot.px.map(|p| {
            // Bounded as when they were first taken, whatever the store gave back.
            let headers = p.h.into_iter().take(32).collect();
            Box::new(super::session::SessionProxy { headers, meta: unb64(&p.m) })
        });
        let (token, user) = (s.token.clone(), s.user.clone());
        self.by_token.insert(token, session);
        if !user.is_empty() {
            self.by_user.entry(user).or_default().push(session);
        }
        let mut gone = Vec::new();
        for sub in snapshot.subs {
            let Ok(opts) = self.config.namespace_for(&sub.ch) else {
                gone.push(sub.ch); // its namespace left the configuration
                continue;
            };
            let plan = SubscriptionPlan {
                server_side: sub.f & SERVER_SIDE != 0,
                chan_info: unb64(&sub.info),
                expires_at: sub.exp.map(Timestamp),
                recoverable: sub.f & RECOVERABLE != 0,
                positioned: sub.f & POSITIONED != 0,
                presence: sub.f & PRESENCE != 0,
                emit_join_leave: sub.f & EMIT_JOIN_LEAVE != 0,
                push_join_leave: sub.f & PUSH_JOIN_LEAVE != 0,
                history: self.history_options(opts),
                data: Bytes::new(),
                delta: sub.f & DELTA != 0,
            };
            // Recover from the last position the node received. Without one (its row was
            // lost) a positioned subscription cannot know what it missed: an impossible
            // position makes it end the way a gap does, rather than go on with a silent hole.
            let since = (plan.recoverable || plan.positioned).then(|| {
                positions.get(&sub.ch).cloned().unwrap_or_else(|| StreamPosition { offset: 0, epoch: "-".into() })
            });
            let channel: Arc<str> = Arc::from(sub.ch.as_str());
            if let Some(at) = plan.expires_at {
                if self.config.namespace_for(&channel).is_ok_and(|o| self.sub_refreshed_by_proxy(o)) {
                    self.schedule(at, session, super::timers::Timer::SubRefresh(channel.clone()));
                } else {
                    let grace = super::ms(self.config.client_expired_sub_close_delay);
                    self.schedule(at.after_ms(grace), session, super::timers::Timer::SubExpire(channel.clone()));
                }
            }
            self.start_subscription(session, channel.clone(), plan, None, since, false);
            if let Some(s) = self.sessions.get_mut(&session) {
                if let Some(sub) = s.subs.get_mut(&channel) {
                    sub.restoring = true;
                    // Commands wait until every subscription is back (a publish must see it,
                    // an unsubscribe must not race its re-making).
                    s.restoring = true;
                    s.busy = true;
                }
            }
        }
        for channel in gone {
            self.push_unsubscribe(session, &channel, crate::protocol::codes::unsubscribe::INSUFFICIENT_STATE);
            self.snapshot_changed(session);
        }
        self.start_timers(session, now);
    }

    /// A re-made subscription answered (or went): once none is left, the session's commands run.
    pub(crate) fn settle_restore(&mut self, session: SessionId, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if !s.restoring || s.subs.values().any(|sub| sub.restoring) {
            return;
        }
        s.restoring = false;
        s.busy = false;
        self.drain(session, now);
    }

    /// A re-made subscription answered: deliver what was missed, or give up its place.
    pub(crate) fn on_restored(
        &mut self,
        session: SessionId,
        channel: Arc<str>,
        outcome: Result<SubscribeResult, Error>,
        now: Timestamp,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(sub) = s.subs.get(&channel) else { return };
        let server_side = sub.server_side;
        match outcome {
            Ok(mut result) if !result.was_recovering || result.recovered => {
                let publications = std::mem::take(&mut result.publications);
                // Still `restoring` while it goes live: a re-made subscription is no join.
                self.catch_up(session, &channel, &result, publications, now);
                if let Some(sub) = self.sessions.get_mut(&session).and_then(|s| s.subs.get_mut(&channel)) {
                    sub.restoring = false;
                }
            }
            _ if server_side => self.disconnect(session, Disconnect::insufficient_state(), now),
            _ => {
                if self.remove_subscription(session, &channel) {
                    self.push_unsubscribe(session, &channel, crate::protocol::codes::unsubscribe::INSUFFICIENT_STATE);
                }
            }
        }
        debug_assert!(self
            .sessions
            .get(&session)
            .is_none_or(|s| s.subs.get(&channel).is_none_or(|sub| sub.state != SubState::Pending)));
        self.settle_restore(session, now);
    }

    /// A subscription the broker answered without a reply to send: take its position from the
    /// result, deliver the publications recovered with it (each once), then go live.
    pub(crate) fn catch_up(
        &mut self,
        session: SessionId,
        channel: &Arc<str>,
        result: &SubscribeResult,
        publications: Vec<crate::protocol::Publication>,
        now: Timestamp,
    ) {
        let Some(sub) = self.sessions.get_mut(&session).and_then(|s| s.subs.get_mut(channel)) else { return };
        if result.recovered {
            sub.offset = result.offset;
        }
        let epoch = sub.epoch.clone();
        for publication in publications {
            self.deliver_to(session, channel, &epoch, &Arc::new(publication));
            if !self.sessions.get(&session).is_some_and(|s| s.subs.contains_key(channel)) {
                return; // that delivery ended the session (3506) or the subscription
            }
        }
        self.activate(session, channel, now);
    }
}
