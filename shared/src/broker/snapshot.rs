//! Snapshots of one channel's broker state, for hosts that keep channels in durable storage
//! (the edge keeps each channel in its own Durable Object's SQLite and restores it when the
//! object wakes up). Pure data: the host chooses the encoding and does the I/O.
//!
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Broker, NodeId, Presence, Stream};
use crate::protocol::{ClientInfo, Publication, StreamPosition};
use crate::time::Timestamp;

/// Everything the broker holds for one channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelSnapshot {
    /// The stream: absent when the channel has none (no history, or it expired).
    pub stream: Option<StreamSnapshot>,
    /// Presence entries with the time each expires, ordered by client id.
    pub presence: Vec<(ClientInfo, Timestamp)>,
    /// Nodes that asked for the channel's events, in order.
    pub nodes: Vec<NodeId>,
    /// Idempotency keys of recent publishes, ordered: the position each answered, and when
    /// it is forgotten.
    pub idempotent: Vec<(String, StreamPosition, Timestamp)>,
}

/// A channel stream: its epoch, top offset, and retained publications (oldest first) with the
/// time each expires.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSnapshot {
    pub epoch: Arc<str>,
    pub top: u64,
    /// When an idle stream forgets its epoch and top offset.
    pub meta_expires_at: Timestamp,
    pub entries: Vec<(Arc<Publication>, Timestamp)>,
}

impl Broker {
    /// What the broker holds for `channel` right now (publications are shared, not copied).
    pub fn snapshot(&self, channel: &str) -> ChannelSnapshot {
        let stream = self.streams.get(channel).map(|s| StreamSnapshot {
            epoch: s.epoch.clone(),
            top: s.top,
            meta_expires_at: s.meta_expires_at,
            entries: s.entries.iter().cloned().collect(),
        });
        let presence = self
            .presence
            .get(channel)
            .map(|p| p.entries.values().map(|(info, expires)| (info.clone(), *expires)).collect())
            .unwrap_or_default();
        let nodes = self.nodes(channel).cloned().collect();
        let idempotent = self
            .idempotent
            .range((channel.to_owned(), String::new())..)
            .take_while(|((c, _), _)| c == channel)
            .map(|((_, key), (position, expires))| (key.clone(), position.clone(), *expires))
            .collect();
        ChannelSnapshot { stream, presence, nodes, idempotent }
    }

    /// Replaces what the broker holds for `channel` with `snapshot` (a channel woken from
    /// storage). Expiry deadlines are scheduled again, so entries that expired while the host
    /// was away go at the next [`Broker::handle_timeout`] or access.
    pub fn restore(&mut self, channel: &str, snapshot: ChannelSnapshot) {
        let key: Arc<str> = Arc::from(channel);
        self.streams.remove(channel);
        self.presence.remove(channel);
        self.nodes.remove(channel);
        self.idempotent.retain(|(c, _), _| c != channel);
        for (key, position, expires) in snapshot.idempotent {
            self.deadlines.insert((expires, channel.to_owned()));
            self.idempotent.insert((channel.to_owned(), key), (position, expires));
        }
        if let Some(s) = snapshot.stream {
            for (_, expires) in &s.entries {
                self.deadlines.insert((*expires, channel.to_owned()));
            }
            let stream =
                Stream { epoch: s.epoch, top: s.top, entries: s.entries.into(), meta_expires_at: s.meta_expires_at };
            self.streams.insert(key.clone(), stream);
        }
        if !snapshot.presence.is_empty() {
            let mut entries = BTreeMap::new();
            for (info, expires) in snapshot.presence {
                self.deadlines.insert((expires, channel.to_owned()));
                entries.insert(info.client.clone(), (info, expires));
            }
            self.presence.insert(channel.to_owned(), Presence { entries });
        }
        if !snapshot.nodes.is_empty() {
            self.nodes.insert(key, snapshot.nodes.into_iter().collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::broker::{BrokerEvent, BrokerOp, BrokerReply, BrokerRequest, HistoryOptions, PublishOp, RequestId};
    use crate::protocol::StreamPosition;

    const H: HistoryOptions = HistoryOptions { size: 10, ttl_ms: 1_000, meta_ttl_ms: 0 };

    fn run(b: &mut Broker, op: BrokerOp, now: u64) -> Vec<BrokerEvent> {
        b.handle_request(BrokerRequest { id: RequestId(1), channel: "c".into(), op }, Timestamp(now));
        std::iter::from_fn(|| b.poll_output()).collect()
    }

    fn publish(b: &mut Broker, now: u64) {
        run(b, BrokerOp::Publish(PublishOp { data: Bytes::from_static(b"{}"), history: H, ..Default::default() }), now);
    }

    #[test]
    fn a_restored_channel_goes_on_where_it_was() {
        let mut b = Broker::new(1);
        run(&mut b, BrokerOp::Subscribe { node: Arc::from("n"), since: None, limit: 0, history: H }, 0);
        run(
            &mut b,
            BrokerOp::PresenceAdd { info: ClientInfo { client: "x".into(), ..Default::default() }, ttl_ms: 500 },
            0,
        );
        publish(&mut b, 0);
        publish(&mut b, 100);
        let snapshot = b.snapshot("c");
        assert_eq!(snapshot.nodes, vec![Arc::from("n")]);
        assert_eq!(snapshot.presence.len(), 1);

        let mut restored = Broker::new(2);
        restored.restore("c", snapshot.clone());
        assert_eq!(restored.snapshot("c"), snapshot);
        let epoch = snapshot.stream.as_ref().unwrap().epoch.to_string();
        let since = Some(StreamPosition { offset: 1, epoch: epoch.clone() });
        let events =
            run(&mut restored, BrokerOp::Subscribe { node: Arc::from("n"), since, limit: 10, history: H }, 200);
        match &events[0] {
            BrokerEvent::Reply { result: Ok(BrokerReply::Subscribed { top, publications }), .. } => {
                assert_eq!(top, &StreamPosition { offset: 2, epoch });
                assert_eq!(publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![2]);
            }
            other => panic!("{other:?}"),
        }
        // Expiry deadlines came back with the entries.
        assert_eq!(restored.poll_timeout(), Some(Timestamp(500)));
        restored.handle_timeout(Timestamp(1_100));
        let after = restored.snapshot("c");
        assert!(after.presence.is_empty());
        assert!(after.stream.unwrap().entries.is_empty());
    }
}
