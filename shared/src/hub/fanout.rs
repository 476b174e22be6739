//! Fan-out: one publication, encoded once per wire format, to every local subscriber.

use std::sync::Arc;

use bytes::Bytes;

use super::session::SubState;
use super::{Hub, Output, SessionId};
use crate::protocol::{ClientInfo, Disconnect, JoinLeave, NotJson, Publication, Push, Unsubscribe, Wire};

/// Per-publication encodings, one slot per wire format (a failed encoding is remembered too).
struct Encoded {
    push: Push,
    slots: [Option<Result<Bytes, NotJson>>; Wire::COUNT],
}

impl Encoded {
    fn new(push: Push) -> Self {
        Encoded { push, slots: Default::default() }
    }

    /// The bytes for `wire`, or `NotJson` when the payload cannot travel on it (binary data to
    /// a JSON client).
    fn get(&mut self, wire: Wire) -> Result<Bytes, NotJson> {
        self.slots[wire.index()].get_or_insert_with(|| wire.push(&self.push)).clone()
    }
}

/// What to do with a subscriber that lost its place in the stream.
enum Lost {
    /// Client-side subscription: unsubscribe push 2500, the SDK resubscribes and recovers.
    Resubscribe(SessionId),
    /// Server-side subscription: the client must reconnect (3010).
    Reconnect(SessionId),
    /// JSON client, binary payload (3506).
    WrongProtocol(SessionId),
}

impl Hub {
    pub(crate) fn deliver(
        &mut self,
        channel: &Arc<str>,
        epoch: &Arc<str>,
        publication: &Arc<Publication>,
        delta: Option<Bytes>,
    ) {
        if publication.offset > 0 {
            self.position_seen(channel, epoch, publication.offset);
        }
        let Some((name, subscribers)) = self.channels.get_key_value(channel) else { return };
        let shared_name = name.clone();
        let push =
            Push { channel: channel.to_string(), r#pub: Some(Publication::clone(publication)), ..Default::default() };
        let mut encoded = Encoded::new(push);
        let mut delta_encoded = super::delta::DeltaEncoded::new(channel, delta);
        let mut lost = Vec::new();
        let mut ids = Vec::new();
        let offset = publication.offset;
        // Deliveries by transport, counted once for the batch: every active subscriber, less
        // the few skipped below.
        let mut sent = subscribers.by_transport;
        for &session in &subscribers.active {
            let Some(s) = self.sessions.get_mut(&session) else { continue };
            let Some(sub) = s.subs.get_mut_shared(&shared_name) else { continue };
            let base_ok = super::delta::holds_base(sub, epoch, offset);
            if offset > 0 {
                if sub.positioned && (*sub.epoch != **epoch || sub.offset.checked_add(1) != Some(offset)) {
                    let skipped = &mut sent[s.transport.metric_index()];
                    *skipped = skipped.saturating_sub(1);
                    if offset <= sub.offset && *sub.epoch == **epoch {
                        continue; // already delivered (recovery overlap)
                    }
                    lost.push(if sub.server_side { Lost::Reconnect(session) } else { Lost::Resubscribe(session) });
                    continue;
                }
                sub.offset = offset;
                if *sub.epoch != **epoch {
                    sub.epoch = epoch.clone();
                }
            }
            let data = if sub.delta {
                sub.delta_base = offset;
                delta_encoded.get(publication, s.wire, base_ok)
            } else {
                encoded.get(s.wire)
            };
            match data {
                Ok(data) if s.has_event_ids() => ids.push((session, data)),
                Ok(data) => self.outputs.push_back(Output::Send { session, data }),
                Err(NotJson) => {
                    let skipped = &mut sent[s.transport.metric_index()];
                    *skipped = skipped.saturating_sub(1);
                    lost.push(Lost::WrongProtocol(session));
                }
            }
        }
        for &session in &subscribers.pending {
            if let Some(sub) = self.sessions.get_mut(&session).and_then(|s| s.subs.get_mut(channel)) {
                sub.buffer.push((epoch.clone(), publication.clone()));
            }
        }
        self.count_received(crate::metrics::MessageType::Publication, &sent);
        for (session, data) in ids {
            self.send_event(session, data);
        }
        for l in lost {
            self.lose_position(channel, l);
        }
    }

    /// Sends an event frame, with the session's positions as its id where the transport
    /// carries them (uni SSE).
    pub(crate) fn send_event(&mut self, session: SessionId, data: Bytes) {
        let Some(s) = self.sessions.get(&session) else { return };
        let data = if s.has_event_ids() { self.with_event_id(s, &data) } else { data };
        self.outputs.push_back(Output::Send { session, data });
    }

    /// Sends one publication to one session (buffered publications after a subscribe).
    pub(crate) fn deliver_to(
        &mut self,
        session: SessionId,
        channel: &Arc<str>,
        epoch: &Arc<str>,
        publication: &Arc<Publication>,
    ) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(sub) = s.subs.get_mut(channel) else { return };
        if publication.offset > 0 && *sub.epoch == **epoch && publication.offset <= sub.offset {
            return; // the subscribe result or recovery already covered it
        }
        if publication.offset > 0 && !sub.epoch.is_empty() && *sub.epoch != **epoch {
            // Of a stream the subscribe answer no longer knows (it expired and was made anew
            // while this was on its way): its offsets mean nothing in the subscription's epoch.
            return;
        }
        if publication.offset > 0 {
            sub.offset = publication.offset;
            sub.epoch = epoch.clone();
        }
        let publication = if sub.delta {
            // Whole: the client's delta chain starts (again) here.
            sub.delta_base = publication.offset;
            match super::delta::for_delta_client(publication, None, s.wire.encoding) {
                Some(Ok(p)) => p,
                _ => {
                    self.end(session, Disconnect::inappropriate_protocol());
                    return;
                }
            }
        } else {
            Publication::clone(publication)
        };
        let push = Push { channel: channel.to_string(), r#pub: Some(publication), ..Default::default() };
        let encoded = s.wire.push(&push);
        self.send_encoded(session, encoded, true);
    }

    pub(crate) fn deliver_join_leave(&mut self, channel: &Arc<str>, info: ClientInfo, join: bool) {
        let Some(subscribers) = self.channels.get(channel) else { return };
        let event = Some(JoinLeave { info: Some(info) });
        let push = if join {
            Push { channel: channel.to_string(), join: event, ..Default::default() }
        } else {
            Push { channel: channel.to_string(), leave: event, ..Default::default() }
        };
        let mut encoded = Encoded::new(push);
        let mut sends = Vec::new();
        let mut sent = [0u64; crate::metrics::TRANSPORTS.len()];
        for &session in &subscribers.active {
            let Some(s) = self.sessions.get(&session) else { continue };
            if !s.subs.get(channel).is_some_and(|sub| sub.push_join_leave && sub.state == SubState::Active) {
                continue;
            }
            sent[s.transport.metric_index()] += 1;
            sends.push((session, encoded.get(s.wire)));
        }
        let kind = if join { crate::metrics::MessageType::Join } else { crate::metrics::MessageType::Leave };
        self.count_received(kind, &sent);
        for (session, encoded) in sends {
            self.send_encoded(session, encoded, false);
        }
    }

    /// Tells a session that one of its subscriptions ended (`unsubscribe` push).
    pub(crate) fn push_unsubscribe(&mut self, session: SessionId, channel: &str, (code, reason): (u32, &str)) {
        let push = Push {
            channel: channel.to_owned(),
            unsubscribe: Some(Unsubscribe { code, reason: reason.to_owned() }),
            ..Default::default()
        };
        if let Some(s) = self.sessions.get(&session) {
            let encoded = s.wire.push(&push);
            self.send_encoded(session, encoded, true);
        }
    }

    fn lose_position(&mut self, channel: &Arc<str>, lost: Lost) {
        match lost {
            Lost::Resubscribe(session) => {
                if self.remove_subscription(session, channel) {
                    self.push_unsubscribe(session, channel, crate::protocol::codes::unsubscribe::INSUFFICIENT_STATE);
                }
            }
            Lost::Reconnect(session) => self.end(session, Disconnect::insufficient_state()),
            Lost::WrongProtocol(session) => self.end(session, Disconnect::inappropriate_protocol()),
        }
    }
}
