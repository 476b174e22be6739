//! Periodic position checks (Centrifugo's `client_channel_position_check_delay`, 40 s): every
//! positioned subscription asks the broker for its stream's top now and then. Gaps between
//! publications are caught on delivery (`fanout.rs`); this catches what delivery cannot: the
//! last publications of a stream lost on their way, or a stream that restarted with a new
//! epoch while nothing was published. A publication may be on its way while the broker
//! answers, so one check behind is not yet a loss: the subscription must still be behind the
//! top seen then at the next check. Then it ends the way a gap does: unsubscribe 2500
//! (client-side; the SDK resubscribes and recovers) or disconnect 3010 (server-side).

use std::sync::Arc;

use super::session::SubState;
use super::timers::Timer;
use super::{ms, Hub, Pending, SessionId};
use crate::broker::{BrokerOp, BrokerReply};
use crate::protocol::{Disconnect, Error};
use crate::time::Timestamp;

impl Hub {
    /// Schedules the session's position check unless one is due already, or the session has no
    /// positioned subscription, or checks are off (a zero delay).
    pub(crate) fn ensure_position_check(&mut self, session: SessionId, now: Timestamp) {
        let delay = ms(self.config.client_channel_position_check_delay);
        let Some(s) = self.sessions.get(&session) else { return };
        if delay == 0
            || s.timers.iter().any(|(t, at)| {
                *t == Timer::PositionCheck && self.timers.contains(&(*at, session, Timer::PositionCheck))
            })
            || !s.subs.values().any(|sub| sub.positioned && sub.state == SubState::Active)
        {
            return;
        }
        self.schedule(now.after_ms(delay), session, Timer::PositionCheck);
    }

    /// The timer fired: ask the top of every positioned subscription's stream.
    pub(crate) fn check_positions(&mut self, session: SessionId, now: Timestamp) {
        let Some(s) = self.sessions.get(&session) else { return };
        let channels: Vec<Arc<str>> = s
            .subs
            .iter()
            .filter(|(_, sub)| sub.positioned && sub.state == SubState::Active && !sub.restoring)
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in &channels {
            let Ok(opts) = self.config.namespace_for(channel) else { continue };
            let history = self.history_options(opts);
            let op = BrokerOp::History { since: None, limit: 0, reverse: false, history };
            self.request(channel, op, Pending::PositionCheck { session, channel: channel.clone() });
        }
        if !channels.is_empty() {
            let delay = ms(self.config.client_channel_position_check_delay);
            self.schedule(now.after_ms(delay), session, Timer::PositionCheck);
        }
    }

    pub(crate) fn on_position_checked(
        &mut self,
        session: SessionId,
        channel: &Arc<str>,
        result: Result<BrokerReply, Error>,
    ) {
        let Ok(BrokerReply::History { top, .. }) = result else { return };
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(sub) = s.subs.get_mut(channel).filter(|sub| sub.positioned && sub.state == SubState::Active) else {
            return;
        };
        if *sub.epoch == *top.epoch && sub.offset >= top.offset {
            sub.behind = None;
            return;
        }
        let lost = match &sub.behind {
            Some((epoch, offset)) => **epoch != *sub.epoch || sub.offset < *offset,
            None => false,
        };
        if !lost {
            sub.behind = Some((Arc::from(top.epoch.as_str()), top.offset));
            return;
        }
        if sub.server_side {
            self.end(session, Disconnect::insufficient_state());
        } else if self.remove_subscription(session, channel) {
            self.push_unsubscribe(session, channel, crate::protocol::codes::unsubscribe::INSUFFICIENT_STATE);
        }
    }
}
