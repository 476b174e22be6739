//! Per-session deadlines. A session holds at most one timer of each kind (one per channel for
//! subscription expiry); scheduling one replaces the last, and an ended session takes its
//! timers with it, so the timer set is bounded by what live sessions hold. When one fires it
//! still checks that what it guards holds (state, deadline).

use std::sync::Arc;

use super::session::State;
use super::{ms, Hub};
use crate::broker::BrokerOp;
use crate::hub::session::SubState;
use crate::hub::{Output, Pending, SessionId};
use crate::protocol::Disconnect;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// No connect command in time.
    Stale,
    Ping,
    /// A bidirectional client must have answered the last ping by now.
    PongCheck,
    /// The connection token expired and was not refreshed within the grace period.
    Expire,
    SubExpire(Arc<str>),
    PresenceRefresh,
    /// A proxy call's answer is due (`proxy::ProxyId`'s number).
    Proxy(crate::proxy::ProxyId),
    /// The connection's `expire_at` passed: ask the refresh proxy.
    Refresh,
    /// A subscription's `expire_at` passed: ask the sub_refresh proxy.
    SubRefresh(Arc<str>),
    /// Positioned subscriptions compare their position with the stream's top.
    PositionCheck,
}

impl Hub {
    pub(crate) fn schedule(&mut self, at: Timestamp, session: SessionId, timer: Timer) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        match s.timers.iter_mut().find(|(t, _)| *t == timer) {
            Some(slot) => {
                self.timers.remove(&(slot.1, session, timer.clone()));
                slot.1 = at;
            }
            None => s.timers.push((timer.clone(), at)),
        }
        self.timers.insert((at, session, timer));
    }

    /// Drops a session's timer of this kind, if any.
    pub(crate) fn cancel(&mut self, session: SessionId, timer: &Timer) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if let Some(i) = s.timers.iter().position(|(t, _)| t == timer) {
            let (timer, at) = s.timers.swap_remove(i);
            self.timers.remove(&(at, session, timer));
        }
    }

    /// Timers of a freshly connected session.
    pub(crate) fn start_timers(&mut self, session: SessionId, now: Timestamp) {
        let interval = ms(self.config.ping_interval);
        let pings = self.sessions.get(&session).is_some_and(|s| self.pings(s.transport));
        if interval > 0 && pings {
            // The first ping comes at a random time in [interval/2, interval] so that clients
            // connected together are not pinged together.
            let first = interval / 2 + self.random_below(interval / 2 + 1);
            self.schedule(now.after_ms(first), session, Timer::Ping);
        }
        if let Some(at) = self.sessions.get(&session).and_then(|s| s.expires_at) {
            if crate::proxy::ProxyKind::Refresh.enabled(&self.config) {
                self.schedule(at, session, Timer::Refresh);
            } else {
                let grace = ms(self.config.client_expired_close_delay);
                self.schedule(at.after_ms(grace), session, Timer::Expire);
            }
        }
        let presence = self.sessions.get(&session).is_some_and(|s| s.subs.values().any(|sub| sub.presence));
        if presence {
            self.ensure_presence_refresh(session, now);
        }
        self.ensure_position_check(session, now);
    }

    /// Starts the session's presence refresh unless it runs already (one chain per session).
    pub(crate) fn ensure_presence_refresh(&mut self, session: SessionId, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.presence_refresh {
            return;
        }
        s.presence_refresh = true;
        let every = ms(self.config.client_presence_update_interval).max(1000);
        self.schedule(now.after_ms(every), session, Timer::PresenceRefresh);
    }

    pub(crate) fn on_timer(&mut self, session: SessionId, timer: Timer, now: Timestamp) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        match timer {
            Timer::Stale => {
                if matches!(s.state, State::Opened | State::Refused) {
                    self.disconnect(session, Disconnect::stale(), now);
                }
            }
            Timer::Ping => {
                if s.state != State::Connected {
                    return;
                }
                let data = s.wire.ping();
                let wants_pong = !s.wire.unidirectional && ms(self.config.pong_timeout) > 0;
                if wants_pong && s.pong_deadline.is_none() {
                    let deadline = now.after_ms(ms(self.config.pong_timeout));
                    s.pong_deadline = Some(deadline);
                    self.schedule(deadline, session, Timer::PongCheck);
                }
                self.outputs.push_back(Output::Ping { session, data });
                let interval = ms(self.config.ping_interval);
                self.schedule(now.after_ms(interval), session, Timer::Ping);
            }
            Timer::PongCheck => {
                if s.pong_deadline.is_some_and(|d| d <= now) {
                    self.disconnect(session, Disconnect::no_pong(), now);
                }
            }
            Timer::Expire => {
                let grace = ms(self.config.client_expired_close_delay);
                if s.expires_at.is_some_and(|at| at.after_ms(grace) <= now) {
                    self.disconnect(session, Disconnect::expired(), now);
                }
            }
            Timer::SubExpire(channel) => {
                let grace = ms(self.config.client_expired_sub_close_delay);
                let expired =
                    s.subs.get(&channel).and_then(|sub| sub.expires_at).is_some_and(|at| at.after_ms(grace) <= now);
                if expired {
                    self.disconnect(session, Disconnect::subscription_expired(), now);
                }
            }
            Timer::Proxy(id) => self.proxy_timed_out(id, now),
            Timer::Refresh => self.refresh_by_proxy(session, now),
            Timer::SubRefresh(channel) => self.sub_refresh_by_proxy(session, channel, now),
            Timer::PositionCheck => self.check_positions(session, now),
            Timer::PresenceRefresh => {
                let ttl = ms(self.config.global_presence_ttl);
                let entries: Vec<_> = s
                    .subs
                    .iter()
                    .filter(|(_, sub)| sub.presence && sub.state == SubState::Active)
                    .map(|(channel, sub)| (channel.clone(), s.info(&sub.chan_info)))
                    .collect();
                if entries.is_empty() {
                    s.presence_refresh = false; // restarted by the next presence subscription
                    return;
                }
                for (channel, info) in entries {
                    self.request(&channel, BrokerOp::PresenceAdd { info, ttl_ms: ttl }, Pending::Ignore);
                }
                let every = ms(self.config.client_presence_update_interval).max(1000);
                self.schedule(now.after_ms(every), session, Timer::PresenceRefresh);
            }
        }
    }
}
