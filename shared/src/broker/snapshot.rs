//! Snapshots of one channel's broker state, for hosts that keep channels in durable storage
//! (the edge keeps each channel in its own Durable Object's SQLite and restores it when the
//! object wakes up). Pure data: the host chooses the encoding and does the I/O.
//!
//! Not part of a snapshot: remembered idempotency keys (a restart forgets them, as a restart
//! of Centrifugo's memory broker does).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Broker, NodeId, Presence, Stream};
use crate::protocol::{ClientInfo, Publication};
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
        ChannelSnapshot { stream, presence, nodes }
    }

    /// Replaces what the broker holds for `channel` with `snapshot` (a channel woken from
    /// storage). Expiry deadlines are scheduled again, so entries that expired while the host
    /// was away go at the next [`Broker::handle_timeout`] or access.
    pub fn restore(&mut self, channel: &str, snapshot: ChannelSnapshot) {
        let key: Arc<str> = Arc::from(channel);
        self.streams.remove(channel);
        self.presence.remove(channel);
        self.nodes.remove(channel);
        if let Some(s) = snapshot.stream {
            for (_, expires) in &s.entries {
                self.deadlines.insert((*expires, channel.to_owned()));
            }
            let stream = Stream { epoch: s.epoch, top: s.top, entries: s.entries.into(), meta_expires_at: s.meta_expires_at };
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
