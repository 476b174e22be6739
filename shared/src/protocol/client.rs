//! Client protocol v2 messages (`client.proto`), decodable from JSON and Protobuf and
//! encodable to both. One struct serves both encodings: serde for JSON (zero values omitted,
//! payloads spliced raw) and prost for Protobuf (field tags from `client.proto`).
//! Unknown JSON fields are ignored: SDKs send fields this server does not use.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codes::{Disconnect, Error};

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// A client command: an `id` and exactly one request (the first present one wins).
#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct Command {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(message, optional, tag = "4")]
    pub connect: Option<ConnectRequest>,
    #[prost(message, optional, tag = "5")]
    pub subscribe: Option<SubscribeRequest>,
    #[prost(message, optional, tag = "6")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    #[prost(message, optional, tag = "7")]
    pub publish: Option<PublishRequest>,
    #[prost(message, optional, tag = "8")]
    pub presence: Option<ChannelRequest>,
    #[prost(message, optional, tag = "9")]
    pub presence_stats: Option<ChannelRequest>,
    #[prost(message, optional, tag = "10")]
    pub history: Option<HistoryRequest>,
    #[prost(message, optional, tag = "11")]
    pub ping: Option<Empty>,
    #[prost(message, optional, tag = "12")]
    pub send: Option<SendRequest>,
    #[prost(message, optional, tag = "13")]
    pub rpc: Option<RpcRequest>,
    #[prost(message, optional, tag = "14")]
    pub refresh: Option<RefreshRequest>,
    #[prost(message, optional, tag = "15")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

impl Command {
    /// A command with no request and no id is a pong (the answer to a server ping).
    pub fn is_pong(&self) -> bool {
        self.id == 0 && self.send.is_none() && self.connect.is_none()
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct ConnectRequest {
    #[prost(string, tag = "1")]
    pub token: String,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "super::raw")]
    pub data: Bytes,
    #[prost(btree_map = "string, message", tag = "3")]
    pub subs: BTreeMap<String, SubscribeRequest>,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub version: String,
    #[prost(btree_map = "string, string", tag = "6")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct SubscribeRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "2")]
    pub token: String,
    #[prost(bool, tag = "3")]
    pub recover: bool,
    #[prost(string, tag = "6")]
    pub epoch: String,
    #[prost(uint64, tag = "7")]
    pub offset: u64,
    #[prost(bytes = "bytes", tag = "8")]
    #[serde(with = "super::raw")]
    pub data: Bytes,
    #[prost(bool, tag = "9")]
    pub positioned: bool,
    #[prost(bool, tag = "10")]
    pub recoverable: bool,
    #[prost(bool, tag = "11")]
    pub join_leave: bool,
    /// The delta type the client wants (`"fossil"`), or empty.
    #[prost(string, tag = "12")]
    pub delta: String,
    /// A tags filter (a `FilterNode`), kept only as "present": non-empty when one was sent.
    #[prost(bytes = "bytes", tag = "13")]
    #[serde(deserialize_with = "present")]
    pub tf: Bytes,
    #[prost(int64, tag = "14")]
    pub flag: i64,
}

/// Reads any JSON value as "present" (a non-empty marker), `null` as absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let v = Option::<serde::de::IgnoredAny>::deserialize(d)?;
    Ok(if v.is_some() { Bytes::from_static(b"1") } else { Bytes::new() })
}

/// Subscribe flag bit: answer an unrecoverable position with error 112, not `recovered:false`.
pub const FLAG_REJECT_UNRECOVERED: i64 = 2;

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct UnsubscribeRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct PublishRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(with = "super::raw")]
    pub data: Bytes,
}

/// `presence` and `presence_stats` requests: just a channel.
#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct ChannelRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
#[serde(default)]
pub struct StreamPosition {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(string, tag = "2")]
    pub epoch: String,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct HistoryRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(int32, tag = "7")]
    pub limit: i32,
    #[prost(message, optional, tag = "8")]
    pub since: Option<StreamPosition>,
    #[prost(bool, tag = "9")]
    pub reverse: bool,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct SendRequest {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "super::raw")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct RpcRequest {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(with = "super::raw")]
    pub data: Bytes,
    #[prost(string, tag = "2")]
    pub method: String,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct RefreshRequest {
    #[prost(string, tag = "1")]
    pub token: String,
}

#[derive(Clone, PartialEq, Deserialize, prost::Message)]
#[serde(default)]
pub struct SubRefreshRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "2")]
    pub token: String,
}

// ---------------------------------------------------------------------------------------------
// Server → client

/// A reply to a command (`id > 0`), or an asynchronous push (`id == 0`) on bidirectional
/// transports. An empty reply (`{}`) is a server ping.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Reply {
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub id: u32,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeResult>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<Empty>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Empty>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceResult>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsResult>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryResult>,
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcResult>,
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshResult>,
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<Expiry>,
}

impl Reply {
    pub fn error(id: u32, error: Error) -> Self {
        Reply { id, error: Some(error), ..Default::default() }
    }
    pub fn push(push: Push) -> Self {
        Reply { push: Some(push), ..Default::default() }
    }
}

/// A server-initiated message. Bidirectional transports wrap it in a [`Reply`];
/// unidirectional transports send it bare.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Push {
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#pub: Option<Publication>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinLeave>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave: Option<JoinLeave>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<Unsubscribe>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeResult>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<Disconnect>,
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<Expiry>,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct ClientInfo {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub client: String,
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", serialize_with = "super::raw::serialize")]
    pub conn_info: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(skip_serializing_if = "Bytes::is_empty", serialize_with = "super::raw::serialize")]
    pub chan_info: Bytes,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Publication {
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(serialize_with = "super::raw::serialize")]
    pub data: Bytes,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    #[prost(uint64, tag = "6")]
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[prost(btree_map = "string, string", tag = "7")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `data` is a Fossil delta against the previous publication the client received.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_false")]
    pub delta: bool,
    #[prost(int64, tag = "9")]
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub time: i64,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct JoinLeave {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ClientInfo>,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Unsubscribe {
    #[prost(uint32, tag = "2")]
    pub code: u32,
    #[prost(string, tag = "3")]
    pub reason: String,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Message {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(serialize_with = "super::raw::serialize")]
    pub data: Bytes,
}

/// The connect reply (bidirectional) and the `connect` push (unidirectional).
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct ConnectResult {
    #[prost(string, tag = "1")]
    pub client: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[prost(bytes = "bytes", tag = "5")]
    #[serde(skip_serializing_if = "Bytes::is_empty", serialize_with = "super::raw::serialize")]
    pub data: Bytes,
    #[prost(btree_map = "string, message", tag = "6")]
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, SubscribeResult>,
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ping: u32,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_false")]
    pub pong: bool,
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub time: i64,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct SubscribeResult {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    #[prost(uint64, tag = "9")]
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    #[prost(bytes = "bytes", tag = "11")]
    #[serde(skip_serializing_if = "Bytes::is_empty", serialize_with = "super::raw::serialize")]
    pub data: Bytes,
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
    /// The delta type asked for was granted: publications may come as deltas.
    #[prost(bool, tag = "13")]
    #[serde(skip_serializing_if = "is_false")]
    pub delta: bool,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct PresenceResult {
    #[prost(btree_map = "string, message", tag = "1")]
    pub presence: BTreeMap<String, ClientInfo>,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct PresenceStatsResult {
    #[prost(uint32, tag = "1")]
    pub num_clients: u32,
    #[prost(uint32, tag = "2")]
    pub num_users: u32,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct HistoryResult {
    #[prost(message, repeated, tag = "1")]
    pub publications: Vec<Publication>,
    #[prost(string, tag = "2")]
    pub epoch: String,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
}

#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct RpcResult {
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", serialize_with = "super::raw::serialize")]
    pub data: Bytes,
}

/// The `refresh` result (`client` and `version` exist in the schema but stay unset).
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct RefreshResult {
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

/// The client→server leg of bidirectional emulation (`POST /emulation`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EmulationRequest {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
}

/// The `sub_refresh` result and the `refresh` push.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Expiry {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}
