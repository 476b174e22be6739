//! The broker: channel streams (offsets, epochs, bounded history), presence sets and
//! join/leave fan-out. The [`Hub`](crate::hub::Hub) reaches it only through
//! [`BrokerRequest`]s and gets [`BrokerEvent`]s back, so the broker may run in-process
//! (native), in another Durable Object (edge), or in an external store.
//!
//! Drive it like every state machine here: `handle_request(…, now)`, then drain
//! `poll_output()`; call `handle_timeout(now)` at `poll_timeout()`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::protocol::{ClientInfo, Error, Publication, StreamPosition};
use crate::time::Timestamp;

mod snapshot;
pub use snapshot::{ChannelSnapshot, StreamSnapshot};

/// Correlates a request with its reply. Chosen by the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Identifies a hub subscribed to channels (one per process natively, one per node object
/// at the edge).
pub type NodeId = Arc<str>;

/// How long a channel keeps its publications. History exists only when both are non-zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryOptions {
    pub size: u64,
    pub ttl_ms: u64,
    /// How long an idle stream keeps its epoch and top offset.
    pub meta_ttl_ms: u64,
}

impl HistoryOptions {
    pub fn enabled(&self) -> bool {
        self.size > 0 && self.ttl_ms > 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BrokerRequest {
    pub id: RequestId,
    pub channel: String,
    pub op: BrokerOp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BrokerOp {
    Publish(PublishOp),
    /// Registers `node`'s interest in the channel's events and answers with the stream top,
    /// plus the publications after `since` (at most `limit`) when recovering.
    Subscribe {
        node: NodeId,
        since: Option<StreamPosition>,
        limit: usize,
        history: HistoryOptions,
    },
    Unsubscribe {
        node: NodeId,
    },
    History {
        since: Option<StreamPosition>,
        limit: i64,
        reverse: bool,
        history: HistoryOptions,
    },
    HistoryRemove,
    PresenceAdd {
        info: ClientInfo,
        ttl_ms: u64,
    },
    PresenceRemove {
        client: String,
    },
    Presence,
    PresenceStats,
    Join {
        info: ClientInfo,
    },
    Leave {
        info: ClientInfo,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishOp {
    pub data: Bytes,
    pub info: Option<ClientInfo>,
    pub tags: BTreeMap<String, String>,
    pub history: HistoryOptions,
    pub skip_history: bool,
    pub idempotency_key: Option<String>,
    /// Encode a delta against the stream's previous publication, for subscribers that
    /// negotiated one (`delta: true` in the API, or the namespace's `delta_publish`).
    pub delta: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BrokerReply {
    Published(StreamPosition),
    Subscribed { top: StreamPosition, publications: Vec<Arc<Publication>> },
    History { top: StreamPosition, publications: Vec<Arc<Publication>> },
    Presence(BTreeMap<String, ClientInfo>),
    PresenceStats { clients: u32, users: u32 },
    Done,
}

/// What the broker tells hubs: replies to their requests, and channel events for every node
/// that subscribed ([`Broker::nodes`]).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub enum BrokerEvent {
    Reply {
        id: RequestId,
        result: Result<BrokerReply, Error>,
    },
    /// `delta`: the publication's data as a Fossil delta against the stream's previous
    /// publication (offset - 1, same epoch), when asked for and smaller than the data.
    Publication {
        channel: Arc<str>,
        epoch: Arc<str>,
        publication: Arc<Publication>,
        delta: Option<Bytes>,
    },
    Join {
        channel: Arc<str>,
        info: ClientInfo,
    },
    Leave {
        channel: Arc<str>,
        info: ClientInfo,
    },
}

/// Idempotent publish results are remembered this long (Centrifugo's memory broker default).
const IDEMPOTENCY_TTL_MS: u64 = 5 * 60 * 1000;

struct Stream {
    epoch: Arc<str>,
    top: u64,
    /// Publications with the time they expire.
    entries: VecDeque<(Arc<Publication>, Timestamp)>,
    meta_expires_at: Timestamp,
}

struct Presence {
    entries: BTreeMap<String, (ClientInfo, Timestamp)>,
}

pub struct Broker {
    rng: ChaCha8Rng,
    streams: BTreeMap<Arc<str>, Stream>,
    presence: BTreeMap<String, Presence>,
    idempotent: BTreeMap<(String, String), (StreamPosition, Timestamp)>,
    nodes: BTreeMap<Arc<str>, BTreeSet<NodeId>>,
    /// Deadlines of work the broker must do on its own (expiring entries).
    deadlines: BTreeSet<(Timestamp, String)>,
    /// Streams made by a subscribe or a history read, oldest first, while they may still
    /// have never been published to (see [`MAX_UNPUBLISHED_STREAMS`]).
    unpublished: VecDeque<Arc<str>>,
    outputs: VecDeque<BrokerEvent>,
}

/// Most streams that were never published to and that nobody listens to, kept with their
/// epoch (as Centrifugo keeps a stream's meta for the meta TTL, so a position handed out at
/// subscribe stays valid). Past this, the oldest go: a client cycling through unique channels
/// must not pin memory for the whole meta TTL (720 h by default).
pub const MAX_UNPUBLISHED_STREAMS: usize = 65_536;

impl Broker {
    pub fn new(seed: u64) -> Self {
        Broker {
            rng: ChaCha8Rng::seed_from_u64(seed),
            streams: BTreeMap::new(),
            presence: BTreeMap::new(),
            idempotent: BTreeMap::new(),
            nodes: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            unpublished: VecDeque::new(),
            outputs: VecDeque::new(),
        }
    }

    // ---- getters

    /// Nodes to deliver this channel's events to.
    pub fn nodes(&self, channel: &str) -> impl Iterator<Item = &NodeId> {
        self.nodes.get(channel).into_iter().flatten()
    }

    /// The stream top, if the channel has a live stream.
    pub fn position(&self, channel: &str) -> Option<StreamPosition> {
        self.streams.get(channel).map(|s| StreamPosition { offset: s.top, epoch: s.epoch.to_string() })
    }

    // ---- handlers

    pub fn handle_request(&mut self, request: BrokerRequest, now: Timestamp) {
        let BrokerRequest { id, channel, op } = request;
        let result = match op {
            BrokerOp::Publish(op) => self.publish(&channel, op, now),
            BrokerOp::Subscribe { node, since, limit, history } => {
                self.nodes.entry(Arc::from(channel.as_str())).or_default().insert(node);
                if !history.enabled() {
                    // No stream to position in: creating one would keep it (and its epoch)
                    // in memory for good, one per channel ever subscribed.
                    let result =
                        Ok(BrokerReply::Subscribed { top: StreamPosition::default(), publications: Vec::new() });
                    return self.outputs.push_back(BrokerEvent::Reply { id, result });
                }
                let stream = self.stream(&channel, history, now);
                let top = stream.position();
                let publications = match since {
                    Some(since) if history.enabled() && (since.epoch.is_empty() || since.epoch == top.epoch) => {
                        stream.since(since.offset, limit)
                    }
                    _ => Vec::new(),
                };
                Ok(BrokerReply::Subscribed { top, publications })
            }
            BrokerOp::Unsubscribe { node } => {
                if let Some(set) = self.nodes.get_mut(channel.as_str()) {
                    set.remove(&node);
                    if set.is_empty() {
                        self.nodes.remove(channel.as_str());
                    }
                }
                Ok(BrokerReply::Done)
            }
            BrokerOp::History { since, limit, reverse, history } => {
                self.history(&channel, since, limit, reverse, history, now)
            }
            BrokerOp::HistoryRemove => {
                if let Some(stream) = self.streams.get_mut(channel.as_str()) {
                    stream.entries.clear();
                }
                Ok(BrokerReply::Done)
            }
            BrokerOp::PresenceAdd { info, ttl_ms } => {
                let expires = now.after_ms(ttl_ms);
                let presence =
                    self.presence.entry(channel.clone()).or_insert_with(|| Presence { entries: BTreeMap::new() });
                presence.entries.insert(info.client.clone(), (info, expires));
                self.deadlines.insert((expires, channel));
                Ok(BrokerReply::Done)
            }
            BrokerOp::PresenceRemove { client } => {
                if let Some(p) = self.presence.get_mut(&channel) {
                    p.entries.remove(&client);
                    if p.entries.is_empty() {
                        self.presence.remove(&channel);
                    }
                }
                Ok(BrokerReply::Done)
            }
            BrokerOp::Presence => {
                self.expire_presence(&channel, now);
                let map = self
                    .presence
                    .get(&channel)
                    .map(|p| p.entries.iter().map(|(k, (info, _))| (k.clone(), info.clone())).collect())
                    .unwrap_or_default();
                Ok(BrokerReply::Presence(map))
            }
            BrokerOp::PresenceStats => {
                self.expire_presence(&channel, now);
                let (clients, users) = self
                    .presence
                    .get(&channel)
                    .map(|p| {
                        let users: BTreeSet<&str> = p.entries.values().map(|(i, _)| i.user.as_str()).collect();
                        (p.entries.len() as u32, users.len() as u32)
                    })
                    .unwrap_or((0, 0));
                Ok(BrokerReply::PresenceStats { clients, users })
            }
            BrokerOp::Join { info } => {
                self.outputs.push_back(BrokerEvent::Join { channel: Arc::from(channel.as_str()), info });
                Ok(BrokerReply::Done)
            }
            BrokerOp::Leave { info } => {
                self.outputs.push_back(BrokerEvent::Leave { channel: Arc::from(channel.as_str()), info });
                Ok(BrokerReply::Done)
            }
        };
        // The reply goes before the events it caused, except for publish, where subscribers
        // see the publication first (the publisher's reply is not ordered against them).
        self.outputs.push_back(BrokerEvent::Reply { id, result });
    }

    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some((at, channel)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            self.expire_presence(&channel, now);
            if let Some(stream) = self.streams.get_mut(channel.as_str()) {
                stream.trim(u64::MAX, now);
                if stream.entries.is_empty() {
                    if stream.meta_expires_at <= now {
                        self.streams.remove(channel.as_str());
                    } else {
                        // Nothing left but the position: forget it when its meta TTL runs out
                        // (a publish before then moves this deadline on when it comes).
                        self.deadlines.insert((stream.meta_expires_at, channel));
                    }
                }
            }
        }
        self.idempotent.retain(|_, (_, expires)| *expires > now);
    }

    // ---- pollers

    pub fn poll_output(&mut self) -> Option<BrokerEvent> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    // ---- internals

    fn publish(&mut self, channel: &str, op: PublishOp, now: Timestamp) -> Result<BrokerReply, Error> {
        if let Some(key) = &op.idempotency_key {
            if let Some((position, expires)) = self.idempotent.get(&(channel.to_owned(), key.clone())) {
                if *expires > now {
                    return Ok(BrokerReply::Published(position.clone()));
                }
            }
        }
        let mut publication = Publication { data: op.data, info: op.info, tags: op.tags, ..Default::default() };
        let (position, epoch) = if op.history.enabled() && !op.skip_history {
            let ttl = op.history.ttl_ms;
            let stream = self.stream(channel, op.history, now);
            // The delta is made once here, where the previous publication is known, and
            // shared by every node and subscriber.
            let delta = match stream.entries.back() {
                Some((prev, _)) if op.delta && prev.offset == stream.top => {
                    crate::delta::fossil::encode(&prev.data, &publication.data)
                        .filter(|d| d.len() < publication.data.len())
                        .map(Bytes::from)
                }
                _ => None,
            };
            stream.top += 1;
            publication.offset = stream.top;
            let publication = Arc::new(publication);
            stream.entries.push_back((publication.clone(), now.after_ms(ttl)));
            stream.trim(op.history.size, now);
            let epoch = stream.epoch.clone();
            let position = stream.position();
            self.deadlines.insert((now.after_ms(ttl), channel.to_owned()));
            self.deliver(channel, epoch.clone(), publication, delta);
            (position, epoch)
        } else {
            let epoch: Arc<str> = self.streams.get(channel).map(|s| s.epoch.clone()).unwrap_or_else(|| Arc::from(""));
            self.deliver(channel, epoch.clone(), Arc::new(publication), None);
            (StreamPosition::default(), epoch)
        };
        let _ = epoch;
        if let Some(key) = op.idempotency_key {
            let expires = now.after_ms(IDEMPOTENCY_TTL_MS);
            // A deadline, so that the key is dropped even on a channel with nothing else to expire.
            self.deadlines.insert((expires, channel.to_owned()));
            self.idempotent.insert((channel.to_owned(), key), (position.clone(), expires));
        }
        Ok(BrokerReply::Published(position))
    }

    fn deliver(&mut self, channel: &str, epoch: Arc<str>, publication: Arc<Publication>, delta: Option<Bytes>) {
        let channel = match self.nodes.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => return, // nobody listens
        };
        self.outputs.push_back(BrokerEvent::Publication { channel, epoch, publication, delta });
    }

    fn history(
        &mut self,
        channel: &str,
        since: Option<StreamPosition>,
        limit: i64,
        reverse: bool,
        history: HistoryOptions,
        now: Timestamp,
    ) -> Result<BrokerReply, Error> {
        if !history.enabled() {
            return Err(Error::not_available());
        }
        let stream = self.stream(channel, history, now);
        let top = stream.position();
        if let Some(since) = &since {
            if !since.epoch.is_empty() && since.epoch != top.epoch {
                return Err(Error::unrecoverable_position());
            }
        }
        let limit = if limit < 0 { usize::MAX } else { limit as usize };
        let mut publications: Vec<Arc<Publication>> = if reverse {
            let before = since.as_ref().map(|s| s.offset).unwrap_or(u64::MAX);
            stream.entries.iter().rev().map(|(p, _)| p).filter(|p| p.offset < before).take(limit).cloned().collect()
        } else {
            let after = since.as_ref().map(|s| s.offset).unwrap_or(0);
            stream.since(after, limit)
        };
        publications.shrink_to_fit();
        Ok(BrokerReply::History { top, publications })
    }

    /// The live stream of a channel, created (with a fresh epoch) or renewed as needed.
    fn stream(&mut self, channel: &str, history: HistoryOptions, now: Timestamp) -> &mut Stream {
        let meta_ttl = if history.meta_ttl_ms > 0 { history.meta_ttl_ms } else { 30 * 24 * 3600 * 1000 };
        let expired = self.streams.get(channel).is_some_and(|s| s.meta_expires_at <= now);
        if expired || !self.streams.contains_key(channel) {
            let epoch = self.new_epoch();
            self.streams.insert(
                Arc::from(channel),
                Stream { epoch, top: 0, entries: VecDeque::new(), meta_expires_at: now.after_ms(meta_ttl) },
            );
            // A stream nobody publishes to (only subscribed) must still go when its meta TTL
            // runs out; later uses move `meta_expires_at`, and the deadline follows it.
            self.deadlines.insert((now.after_ms(meta_ttl), channel.to_owned()));
            self.unpublished.push_back(Arc::from(channel));
            self.forget_unpublished_over_limit();
        }
        let stream = self.streams.get_mut(channel).expect("inserted above");
        stream.meta_expires_at = now.after_ms(meta_ttl);
        stream.trim(u64::MAX, now);
        stream
    }

    /// Drops the oldest never-published streams nobody listens to, beyond the limit. Names
    /// published to or listened to since leave the queue without their stream.
    fn forget_unpublished_over_limit(&mut self) {
        while self.unpublished.len() > MAX_UNPUBLISHED_STREAMS {
            let Some(name) = self.unpublished.pop_front() else { break };
            let idle = self.streams.get(&name).is_some_and(|s| s.top == 0) && !self.nodes.contains_key(&name);
            if idle {
                self.streams.remove(&name);
            }
        }
    }

    fn new_epoch(&mut self) -> Arc<str> {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let epoch: String =
            (0..8).map(|_| LETTERS[(self.rng.next_u32() % LETTERS.len() as u32) as usize] as char).collect();
        Arc::from(epoch)
    }

    fn expire_presence(&mut self, channel: &str, now: Timestamp) {
        if let Some(p) = self.presence.get_mut(channel) {
            p.entries.retain(|_, (_, expires)| *expires > now);
            if p.entries.is_empty() {
                self.presence.remove(channel);
            }
        }
    }
}

impl Stream {
    fn position(&self) -> StreamPosition {
        StreamPosition { offset: self.top, epoch: self.epoch.to_string() }
    }

    fn trim(&mut self, size: u64, now: Timestamp) {
        while self.entries.len() as u64 > size {
            self.entries.pop_front();
        }
        while self.entries.front().is_some_and(|(_, expires)| *expires <= now) {
            self.entries.pop_front();
        }
    }

    /// Publications with offset > `after`, oldest first, at most `limit`.
    fn since(&self, after: u64, limit: usize) -> Vec<Arc<Publication>> {
        // Offsets are contiguous in the deque: index arithmetic instead of a scan.
        let first = match self.entries.front() {
            Some((p, _)) => p.offset,
            None => return Vec::new(),
        };
        let skip = after.saturating_add(1).saturating_sub(first) as usize;
        self.entries.iter().skip(skip).take(limit).map(|(p, _)| p.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
