//! Messages between the edge's objects, as Protobuf (prost).
//!
//! - node object → channel object: a [`RequestBatch`] of broker requests, answered in the same
//!   HTTP response by a [`ReplyBatch`], one reply per request, in order;
//! - channel object → node object: an [`EventBatch`] of channel events (publications,
//!   join/leave), answered by an [`EventAck`].
//!
//! Protobuf because publications carry raw payloads (JSON or binary) and the core's
//! `Publication`, `ClientInfo`, `StreamPosition` and `Error` are already prost messages: they
//! travel as they are, with no re-encoding of payloads.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use shared::broker::{BrokerEvent, BrokerOp, BrokerReply, BrokerRequest, HistoryOptions, PublishOp, RequestId};
use shared::protocol::{ClientInfo, Error, Publication, StreamPosition};

/// Broker requests for one channel object, in the order the hub made them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestBatch {
    #[prost(message, repeated, tag = "1")]
    pub requests: Vec<WireRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplyBatch {
    #[prost(message, repeated, tag = "1")]
    pub replies: Vec<WireReply>,
}

/// Channel events for one node object, in the order the broker made them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventBatch {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(message, repeated, tag = "2")]
    pub events: Vec<WireEvent>,
}

/// `interested: false` tells the channel object that the node no longer has subscribers for
/// the channel (its hub was evicted): the channel stops sending to it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventAck {
    #[prost(bool, tag = "1")]
    pub interested: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHistory {
    #[prost(uint64, tag = "1")]
    pub size: u64,
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
    #[prost(uint64, tag = "3")]
    pub meta_ttl_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRequest {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(string, tag = "2")]
    pub channel: String,
    #[prost(oneof = "Op", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13")]
    pub op: Option<Op>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    #[prost(message, tag = "3")]
    Publish(WirePublish),
    #[prost(message, tag = "4")]
    Subscribe(WireSubscribe),
    #[prost(string, tag = "5")]
    Unsubscribe(String),
    #[prost(message, tag = "6")]
    History(WireHistoryRequest),
    #[prost(message, tag = "7")]
    HistoryRemove(Empty),
    #[prost(message, tag = "8")]
    PresenceAdd(WirePresenceAdd),
    #[prost(string, tag = "9")]
    PresenceRemove(String),
    #[prost(message, tag = "10")]
    Presence(Empty),
    #[prost(message, tag = "11")]
    PresenceStats(Empty),
    #[prost(message, tag = "12")]
    Join(ClientInfo),
    #[prost(message, tag = "13")]
    Leave(ClientInfo),
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePublish {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
    #[prost(message, optional, tag = "2")]
    pub info: Option<ClientInfo>,
    #[prost(btree_map = "string, string", tag = "3")]
    pub tags: BTreeMap<String, String>,
    #[prost(message, optional, tag = "4")]
    pub history: Option<WireHistory>,
    #[prost(bool, tag = "5")]
    pub skip_history: bool,
    #[prost(string, optional, tag = "6")]
    pub idempotency_key: Option<String>,
    #[prost(bool, tag = "7")]
    pub delta: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireSubscribe {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(message, optional, tag = "2")]
    pub since: Option<StreamPosition>,
    #[prost(uint64, tag = "3")]
    pub limit: u64,
    #[prost(message, optional, tag = "4")]
    pub history: Option<WireHistory>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHistoryRequest {
    #[prost(message, optional, tag = "1")]
    pub since: Option<StreamPosition>,
    #[prost(int64, tag = "2")]
    pub limit: i64,
    #[prost(bool, tag = "3")]
    pub reverse: bool,
    #[prost(message, optional, tag = "4")]
    pub history: Option<WireHistory>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePresenceAdd {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ClientInfo>,
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReply {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(oneof = "ReplyKind", tags = "2, 3, 4, 5, 6, 7, 8")]
    pub kind: Option<ReplyKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ReplyKind {
    #[prost(message, tag = "2")]
    Error(Error),
    #[prost(message, tag = "3")]
    Published(StreamPosition),
    #[prost(message, tag = "4")]
    Subscribed(WireStream),
    #[prost(message, tag = "5")]
    History(WireStream),
    #[prost(message, tag = "6")]
    Presence(WirePresence),
    #[prost(message, tag = "7")]
    PresenceStats(WirePresenceStats),
    #[prost(message, tag = "8")]
    Done(Empty),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireStream {
    #[prost(message, optional, tag = "1")]
    pub top: Option<StreamPosition>,
    #[prost(message, repeated, tag = "2")]
    pub publications: Vec<Publication>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePresence {
    #[prost(btree_map = "string, message", tag = "1")]
    pub clients: BTreeMap<String, ClientInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePresenceStats {
    #[prost(uint32, tag = "1")]
    pub clients: u32,
    #[prost(uint32, tag = "2")]
    pub users: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEvent {
    #[prost(oneof = "EventKind", tags = "1, 2, 3")]
    pub kind: Option<EventKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventKind {
    #[prost(message, tag = "1")]
    Publication(WirePublication),
    #[prost(message, tag = "2")]
    Join(ClientInfo),
    #[prost(message, tag = "3")]
    Leave(ClientInfo),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePublication {
    #[prost(string, tag = "1")]
    pub epoch: String,
    #[prost(message, optional, tag = "2")]
    pub publication: Option<Publication>,
    /// The channel object's delta against the previous publication (see `shared::delta`).
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub delta: Option<Bytes>,
}

/// A message that did not decode, or decoded to something the receiver cannot use.
#[derive(Debug, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn history_to(h: HistoryOptions) -> Option<WireHistory> {
    Some(WireHistory { size: h.size, ttl_ms: h.ttl_ms, meta_ttl_ms: h.meta_ttl_ms })
}

fn history_from(h: Option<WireHistory>) -> HistoryOptions {
    h.map(|h| HistoryOptions { size: h.size, ttl_ms: h.ttl_ms, meta_ttl_ms: h.meta_ttl_ms }).unwrap_or_default()
}

impl From<&BrokerRequest> for WireRequest {
    fn from(r: &BrokerRequest) -> Self {
        let op = match &r.op {
            BrokerOp::Publish(p) => Op::Publish(WirePublish {
                data: p.data.clone(),
                info: p.info.clone(),
                tags: p.tags.clone(),
                history: history_to(p.history),
                skip_history: p.skip_history,
                idempotency_key: p.idempotency_key.clone(),
                delta: p.delta,
            }),
            BrokerOp::Subscribe { node, since, limit, history } => Op::Subscribe(WireSubscribe {
                node: node.to_string(),
                since: since.clone(),
                limit: *limit as u64,
                history: history_to(*history),
            }),
            BrokerOp::Unsubscribe { node } => Op::Unsubscribe(node.to_string()),
            BrokerOp::History { since, limit, reverse, history } => Op::History(WireHistoryRequest {
                since: since.clone(),
                limit: *limit,
                reverse: *reverse,
                history: history_to(*history),
            }),
            BrokerOp::HistoryRemove => Op::HistoryRemove(Empty {}),
            BrokerOp::PresenceAdd { info, ttl_ms } => {
                Op::PresenceAdd(WirePresenceAdd { info: Some(info.clone()), ttl_ms: *ttl_ms })
            }
            BrokerOp::PresenceRemove { client } => Op::PresenceRemove(client.clone()),
            BrokerOp::Presence => Op::Presence(Empty {}),
            BrokerOp::PresenceStats => Op::PresenceStats(Empty {}),
            BrokerOp::Join { info } => Op::Join(info.clone()),
            BrokerOp::Leave { info } => Op::Leave(info.clone()),
        };
        WireRequest { id: r.id.0, channel: r.channel.clone(), op: Some(op) }
    }
}

impl TryFrom<WireRequest> for BrokerRequest {
    type Error = WireError;

    fn try_from(r: WireRequest) -> Result<Self, WireError> {
        let op = match r.op.ok_or_else(|| WireError(format!("request {} has no operation", r.id)))? {
            Op::Publish(p) => BrokerOp::Publish(PublishOp {
                data: p.data,
                info: p.info,
                tags: p.tags,
                history: history_from(p.history),
                skip_history: p.skip_history,
                idempotency_key: p.idempotency_key,
                delta: p.delta,
            }),
            Op::Subscribe(s) => BrokerOp::Subscribe {
                node: Arc::from(s.node),
                since: s.since,
                limit: usize::try_from(s.limit).unwrap_or(usize::MAX),
                history: history_from(s.history),
            },
            Op::Unsubscribe(node) => BrokerOp::Unsubscribe { node: Arc::from(node) },
            Op::History(h) => BrokerOp::History {
                since: h.since,
                limit: h.limit,
                reverse: h.reverse,
                history: history_from(h.history),
            },
            Op::HistoryRemove(_) => BrokerOp::HistoryRemove,
            Op::PresenceAdd(p) => BrokerOp::PresenceAdd { info: p.info.unwrap_or_default(), ttl_ms: p.ttl_ms },
            Op::PresenceRemove(client) => BrokerOp::PresenceRemove { client },
            Op::Presence(_) => BrokerOp::Presence,
            Op::PresenceStats(_) => BrokerOp::PresenceStats,
            Op::Join(info) => BrokerOp::Join { info },
            Op::Leave(info) => BrokerOp::Leave { info },
        };
        Ok(BrokerRequest { id: RequestId(r.id), channel: r.channel, op })
    }
}

fn stream_to(top: &StreamPosition, publications: &[Arc<Publication>]) -> WireStream {
    WireStream { top: Some(top.clone()), publications: publications.iter().map(|p| Publication::clone(p)).collect() }
}

fn stream_from(s: WireStream) -> (StreamPosition, Vec<Arc<Publication>>) {
    (s.top.unwrap_or_default(), s.publications.into_iter().map(Arc::new).collect())
}

/// The wire form of a broker reply.
pub fn reply_to(id: RequestId, result: &Result<BrokerReply, Error>) -> WireReply {
    let kind = match result {
        Err(e) => ReplyKind::Error(e.clone()),
        Ok(BrokerReply::Published(p)) => ReplyKind::Published(p.clone()),
        Ok(BrokerReply::Subscribed { top, publications }) => ReplyKind::Subscribed(stream_to(top, publications)),
        Ok(BrokerReply::History { top, publications }) => ReplyKind::History(stream_to(top, publications)),
        Ok(BrokerReply::Presence(map)) => ReplyKind::Presence(WirePresence { clients: map.clone() }),
        Ok(BrokerReply::PresenceStats { clients, users }) => {
            ReplyKind::PresenceStats(WirePresenceStats { clients: *clients, users: *users })
        }
        Ok(BrokerReply::Done) => ReplyKind::Done(Empty {}),
    };
    WireReply { id: id.0, kind: Some(kind) }
}

/// A wire reply as the [`BrokerEvent::Reply`] the hub takes.
pub fn reply_from(r: WireReply) -> BrokerEvent {
    let result = match r.kind {
        None => Err(Error::internal()),
        Some(ReplyKind::Error(e)) => Err(e),
        Some(ReplyKind::Published(p)) => Ok(BrokerReply::Published(p)),
        Some(ReplyKind::Subscribed(s)) => {
            let (top, publications) = stream_from(s);
            Ok(BrokerReply::Subscribed { top, publications })
        }
        Some(ReplyKind::History(s)) => {
            let (top, publications) = stream_from(s);
            Ok(BrokerReply::History { top, publications })
        }
        Some(ReplyKind::Presence(p)) => Ok(BrokerReply::Presence(p.clients)),
        Some(ReplyKind::PresenceStats(s)) => Ok(BrokerReply::PresenceStats { clients: s.clients, users: s.users }),
        Some(ReplyKind::Done(_)) => Ok(BrokerReply::Done),
    };
    BrokerEvent::Reply { id: RequestId(r.id), result }
}

/// The wire form of a channel event; `None` for replies (they travel in [`ReplyBatch`]es).
pub fn event_to(event: &BrokerEvent) -> Option<WireEvent> {
    let kind = match event {
        BrokerEvent::Reply { .. } => return None,
        BrokerEvent::Publication { epoch, publication, delta, .. } => EventKind::Publication(WirePublication {
            epoch: epoch.to_string(),
            publication: Some(Publication::clone(publication)),
            delta: delta.clone(),
        }),
        BrokerEvent::Join { info, .. } => EventKind::Join(info.clone()),
        BrokerEvent::Leave { info, .. } => EventKind::Leave(info.clone()),
    };
    Some(WireEvent { kind: Some(kind) })
}

/// A wire event of `channel` as the [`BrokerEvent`] the hub takes.
pub fn event_from(channel: &Arc<str>, e: WireEvent) -> Option<BrokerEvent> {
    Some(match e.kind? {
        EventKind::Publication(p) => BrokerEvent::Publication {
            channel: channel.clone(),
            epoch: Arc::from(p.epoch),
            publication: Arc::new(p.publication.unwrap_or_default()),
            delta: p.delta,
        },
        EventKind::Join(info) => BrokerEvent::Join { channel: channel.clone(), info },
        EventKind::Leave(info) => BrokerEvent::Leave { channel: channel.clone(), info },
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn roundtrip_request(op: BrokerOp) {
        let request = BrokerRequest { id: RequestId(7), channel: "chat:room".into(), op };
        let batch = RequestBatch { requests: vec![WireRequest::from(&request)] };
        let decoded = RequestBatch::decode(batch.encode_to_vec().as_slice()).unwrap();
        let back = BrokerRequest::try_from(decoded.requests.into_iter().next().unwrap()).unwrap();
        assert_eq!(back, request);
    }

    fn info(client: &str) -> ClientInfo {
        ClientInfo {
            user: "u1".into(),
            client: client.into(),
            conn_info: Bytes::from_static(b"{\"a\":1}"),
            chan_info: Bytes::new(),
        }
    }

    #[test]
    fn every_request_survives_the_wire() {
        let history = HistoryOptions { size: 10, ttl_ms: 300_000, meta_ttl_ms: 3_600_000 };
        let since = Some(StreamPosition { offset: 3, epoch: "abcd".into() });
        roundtrip_request(BrokerOp::Publish(PublishOp {
            data: Bytes::from_static(&[0, 159, 146, 150]),
            info: Some(info("c1")),
            tags: [("k".to_string(), "v".to_string())].into_iter().collect(),
            history,
            skip_history: true,
            idempotency_key: Some("key".into()),
            delta: true,
        }));
        roundtrip_request(BrokerOp::Publish(PublishOp { data: Bytes::from_static(b"{}"), ..Default::default() }));
        roundtrip_request(BrokerOp::Subscribe { node: Arc::from("n1"), since: since.clone(), limit: 300, history });
        roundtrip_request(BrokerOp::Subscribe {
            node: Arc::from("n1"),
            since: None,
            limit: 0,
            history: HistoryOptions::default(),
        });
        roundtrip_request(BrokerOp::Unsubscribe { node: Arc::from("n1") });
        roundtrip_request(BrokerOp::History { since, limit: -1, reverse: true, history });
        roundtrip_request(BrokerOp::HistoryRemove);
        roundtrip_request(BrokerOp::PresenceAdd { info: info("c2"), ttl_ms: 60_000 });
        roundtrip_request(BrokerOp::PresenceRemove { client: "c2".into() });
        roundtrip_request(BrokerOp::Presence);
        roundtrip_request(BrokerOp::PresenceStats);
        roundtrip_request(BrokerOp::Join { info: info("c3") });
        roundtrip_request(BrokerOp::Leave { info: info("c3") });
    }

    #[test]
    fn every_reply_survives_the_wire() {
        let publication =
            Arc::new(Publication { data: Bytes::from_static(b"{\"x\":1}"), offset: 4, ..Default::default() });
        let top = StreamPosition { offset: 4, epoch: "e".into() };
        let results = vec![
            Err(Error::unrecoverable_position()),
            Ok(BrokerReply::Published(top.clone())),
            Ok(BrokerReply::Subscribed { top: top.clone(), publications: vec![publication.clone()] }),
            Ok(BrokerReply::History { top: top.clone(), publications: vec![] }),
            Ok(BrokerReply::Presence([("c1".to_string(), info("c1"))].into_iter().collect())),
            Ok(BrokerReply::PresenceStats { clients: 2, users: 1 }),
            Ok(BrokerReply::Done),
        ];
        for (i, result) in results.into_iter().enumerate() {
            let id = RequestId(i as u64 + 1);
            let batch = ReplyBatch { replies: vec![reply_to(id, &result)] };
            let decoded = ReplyBatch::decode(batch.encode_to_vec().as_slice()).unwrap();
            assert_eq!(reply_from(decoded.replies[0].clone()), BrokerEvent::Reply { id, result });
        }
    }

    #[test]
    fn events_survive_the_wire() {
        let channel: Arc<str> = Arc::from("news");
        let events = vec![
            BrokerEvent::Publication {
                channel: channel.clone(),
                epoch: Arc::from("ep"),
                publication: Arc::new(Publication { data: Bytes::from_static(b"1"), offset: 9, ..Default::default() }),
                delta: Some(Bytes::from_static(b"1\n1:1K;")),
            },
            BrokerEvent::Join { channel: channel.clone(), info: info("a") },
            BrokerEvent::Leave { channel: channel.clone(), info: info("a") },
        ];
        let batch = EventBatch { channel: channel.to_string(), events: events.iter().filter_map(event_to).collect() };
        let decoded = EventBatch::decode(batch.encode_to_vec().as_slice()).unwrap();
        let back: Vec<BrokerEvent> = decoded.events.into_iter().filter_map(|e| event_from(&channel, e)).collect();
        assert_eq!(back, events);
        assert!(event_to(&BrokerEvent::Reply { id: RequestId(1), result: Ok(BrokerReply::Done) }).is_none());
    }
}
