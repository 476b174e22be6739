//! The server HTTP API: requests as backends send them, and results shaped the way the
//! official clients (`cent`, `cent.js`) read them.
//!
//! Hosts parse a body with [`parse`] (or [`parse_legacy`] for `POST /api`), hand the command to
//! the hub (`Hub::handle_api`), and write the [`Output::Api`](crate::hub::Output::Api) answer
//! with [`body`].

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::broker::BrokerReply;
use crate::protocol::{raw, ClientInfo, Error, Publication, StreamPosition};

/// Correlates an API command with its answer. Chosen by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiId(pub u64);

#[derive(Clone, Debug, PartialEq)]
pub enum ApiCommand {
    Publish(PublishRequest),
    Broadcast(BroadcastRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Disconnect(DisconnectRequest),
    Refresh(RefreshRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    HistoryRemove(ChannelRequest),
    Channels(ChannelsRequest),
    Info,
    Rpc(RpcRequest),
    Batch(BatchRequest),
}

impl ApiCommand {
    /// The method name, as in the URL path and as the key of a batch reply.
    pub fn method(&self) -> &'static str {
        match self {
            ApiCommand::Publish(_) => "publish",
            ApiCommand::Broadcast(_) => "broadcast",
            ApiCommand::Subscribe(_) => "subscribe",
            ApiCommand::Unsubscribe(_) => "unsubscribe",
            ApiCommand::Disconnect(_) => "disconnect",
            ApiCommand::Refresh(_) => "refresh",
            ApiCommand::Presence(_) => "presence",
            ApiCommand::PresenceStats(_) => "presence_stats",
            ApiCommand::History(_) => "history",
            ApiCommand::HistoryRemove(_) => "history_remove",
            ApiCommand::Channels(_) => "channels",
            ApiCommand::Info => "info",
            ApiCommand::Rpc(_) => "rpc",
            ApiCommand::Batch(_) => "batch",
        }
    }

    /// The channel names a command carries (checked against `channel_max_length`).
    pub fn channel_names(&self) -> Vec<&str> {
        match self {
            ApiCommand::Publish(r) => vec![r.channel.as_str()],
            ApiCommand::Broadcast(r) => r.channels.iter().map(String::as_str).collect(),
            ApiCommand::Subscribe(r) => vec![r.channel.as_str()],
            ApiCommand::Unsubscribe(r) => vec![r.channel.as_str()],
            ApiCommand::Presence(r) | ApiCommand::PresenceStats(r) | ApiCommand::HistoryRemove(r) => {
                vec![r.channel.as_str()]
            }
            ApiCommand::History(r) => vec![r.channel.as_str()],
            _ => Vec::new(),
        }
    }
}

/// Most commands one batch (or one legacy request) may carry: a bigger body is refused
/// before any of it runs, so one request cannot hold the engine for seconds.
pub const MAX_BATCH: usize = 1000;

/// Most publications one request may ask for: a broadcast counts one per channel, and a
/// batch adds up its commands (each broadcast channel creates a stream).
pub const MAX_PUBLICATIONS: usize = 10_000;

impl ApiCommand {
    /// How many publications (or other per-channel actions) the command asks for.
    pub fn weight(&self) -> usize {
        match self {
            ApiCommand::Broadcast(r) => r.channels.len().max(1),
            ApiCommand::Batch(b) => b.commands.iter().flatten().map(ApiCommand::weight).fold(0, usize::saturating_add),
            _ => 1,
        }
    }

    /// Refuses a command over [`MAX_PUBLICATIONS`], naming the limit.
    fn within_limits(self) -> Result<Self, ApiParseError> {
        let weight = self.weight();
        if weight > MAX_PUBLICATIONS {
            return Err(ApiParseError(format!(
                "request asks for {weight} publications (broadcast channels count one each), more than the limit of {MAX_PUBLICATIONS}"
            )));
        }
        Ok(self)
    }
}

/// Which result shape a broker reply turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    Publish,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
}

/// `data` (raw JSON) or `b64data` (binary), as publish, broadcast and subscribe take them.
fn payload(data: &Bytes, b64: &str) -> Result<Bytes, Error> {
    if !b64.is_empty() {
        return raw::from_base64::<serde_json::Error>(b64).map_err(|_| Error::bad_request());
    }
    Ok(data.clone())
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    pub channel: String,
    #[serde(deserialize_with = "raw::deserialize")]
    pub data: Bytes,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: BTreeMap<String, String>,
    pub idempotency_key: String,
    /// Send this publication as a delta to subscribers that negotiated one.
    pub delta: bool,
}

impl PublishRequest {
    /// The payload: `data` (JSON) or `b64data` (binary).
    pub fn payload(&self) -> Result<Bytes, Error> {
        payload(&self.data, &self.b64data)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BroadcastRequest {
    pub channels: Vec<String>,
    #[serde(deserialize_with = "raw::deserialize")]
    pub data: Bytes,
    pub b64data: String,
    pub skip_history: bool,
    pub tags: BTreeMap<String, String>,
    pub idempotency_key: String,
    pub delta: bool,
}

impl BroadcastRequest {
    /// One publish per channel, in order.
    pub fn publishes(&self) -> Vec<PublishRequest> {
        self.channels
            .iter()
            .map(|channel| PublishRequest {
                channel: channel.clone(),
                data: self.data.clone(),
                b64data: self.b64data.clone(),
                skip_history: self.skip_history,
                tags: self.tags.clone(),
                idempotency_key: self.idempotency_key.clone(),
                delta: self.delta,
            })
            .collect()
    }
}

/// `{"value": bool}` in a subscribe `override`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BoolValue {
    pub value: bool,
}

/// Per-subscription overrides of the namespace options (server API subscribe).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SubscribeOverride {
    pub presence: Option<BoolValue>,
    pub join_leave: Option<BoolValue>,
    pub force_push_join_leave: Option<BoolValue>,
    pub force_positioning: Option<BoolValue>,
    pub force_recovery: Option<BoolValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    pub user: String,
    pub channel: String,
    pub client: String,
    pub session: String,
    #[serde(deserialize_with = "raw::deserialize")]
    pub info: Bytes,
    pub b64info: String,
    #[serde(deserialize_with = "raw::deserialize")]
    pub data: Bytes,
    pub b64data: String,
    pub recover_since: Option<StreamPosition>,
    /// Unix seconds; 0 = the subscription does not expire.
    pub expire_at: i64,
    #[serde(rename = "override")]
    pub overrides: Option<SubscribeOverride>,
}

impl SubscribeRequest {
    pub fn info(&self) -> Result<Bytes, Error> {
        payload(&self.info, &self.b64info)
    }

    pub fn data(&self) -> Result<Bytes, Error> {
        payload(&self.data, &self.b64data)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    pub user: String,
    /// Empty: every channel of the matching connections.
    pub channel: String,
    pub client: String,
    pub session: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DisconnectCode {
    pub code: u32,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DisconnectRequest {
    pub user: String,
    pub client: String,
    pub session: String,
    /// Client ids to leave connected.
    pub whitelist: Vec<String>,
    pub disconnect: Option<DisconnectCode>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    pub user: String,
    pub client: String,
    pub session: String,
    pub expired: bool,
    /// Unix seconds; 0 = the connection no longer expires.
    pub expire_at: i64,
    #[serde(deserialize_with = "raw::deserialize")]
    pub info: Bytes,
    pub b64info: String,
}

impl RefreshRequest {
    pub fn info(&self) -> Result<Bytes, Error> {
        payload(&self.info, &self.b64info)
    }
}

/// presence, presence_stats and history_remove.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ChannelRequest {
    pub channel: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    pub channel: String,
    /// 0: the stream position only; negative: every publication kept.
    pub limit: i64,
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ChannelsRequest {
    /// A glob (`*`, `?`, `[a-z]`, `{a,b}`, `\` escapes); empty matches every channel.
    pub pattern: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    pub method: String,
    #[serde(deserialize_with = "raw::deserialize")]
    pub params: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchRequest {
    /// `None`: a command naming no method the API has (its reply is error 104).
    pub commands: Vec<Option<ApiCommand>>,
    /// Each command as it came (method name, params JSON), for hosts that send some of them
    /// elsewhere (the edge runs commands about connections on every node object).
    pub sources: Vec<Option<(String, String)>>,
    /// Run the commands concurrently; otherwise each starts after the previous finished.
    pub parallel: bool,
}

impl BatchRequest {
    /// Each command's method, the key of its reply ("error" for a method the API lacks).
    pub fn methods(&self) -> Vec<&'static str> {
        self.commands.iter().map(|c| c.as_ref().map_or("error", ApiCommand::method)).collect()
    }
}

#[derive(Deserialize)]
struct BatchBody {
    #[serde(default)]
    commands: Vec<BTreeMap<String, Box<RawValue>>>,
    #[serde(default)]
    parallel: bool,
}

/// Why an API request body was refused before it reached the hub (HTTP 400).
#[derive(Debug, PartialEq, Eq)]
pub struct ApiParseError(pub String);

impl std::fmt::Display for ApiParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A method the API does not have (error 104 "not found").
pub const METHOD_NOT_FOUND: u32 = 104;

/// The server API's 104 (its message differs from the client protocol's).
pub fn not_found() -> Error {
    Error::new(METHOD_NOT_FOUND, "not found")
}

/// The methods of `POST /api/<method>`, as in the URL path.
pub const METHODS: [&str; 14] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "batch",
];

/// Parses `POST /api/<method>` with a JSON body. `Ok(None)`: no such method.
pub fn parse(method: &str, body: &[u8]) -> Result<Option<ApiCommand>, ApiParseError> {
    parse_method(method, body, true)?.map(ApiCommand::within_limits).transpose()
}

fn parse_method(method: &str, body: &[u8], allow_batch: bool) -> Result<Option<ApiCommand>, ApiParseError> {
    let method = method.to_ascii_lowercase();
    if !METHODS.contains(&method.as_str()) || (method == "batch" && !allow_batch) {
        return Ok(None);
    }
    let bad = |e: serde_json::Error| ApiParseError(format!("invalid JSON body for {method}: {e}"));
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    // A body must be a JSON object: serde would also take an array for a struct.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiParseError(format!("invalid JSON body for {method}: expected a JSON object")));
    }
    fn de<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(body)
    }
    Ok(Some(match method.as_str() {
        "publish" => ApiCommand::Publish(de(body).map_err(bad)?),
        "broadcast" => ApiCommand::Broadcast(de(body).map_err(bad)?),
        "subscribe" => ApiCommand::Subscribe(de(body).map_err(bad)?),
        "unsubscribe" => ApiCommand::Unsubscribe(de(body).map_err(bad)?),
        "disconnect" => ApiCommand::Disconnect(de(body).map_err(bad)?),
        "refresh" => ApiCommand::Refresh(de(body).map_err(bad)?),
        "presence" => ApiCommand::Presence(de(body).map_err(bad)?),
        "presence_stats" => ApiCommand::PresenceStats(de(body).map_err(bad)?),
        "history" => ApiCommand::History(de(body).map_err(bad)?),
        "history_remove" => ApiCommand::HistoryRemove(de(body).map_err(bad)?),
        "channels" => ApiCommand::Channels(de(body).map_err(bad)?),
        "info" => {
            de::<serde::de::IgnoredAny>(body).map_err(bad)?;
            ApiCommand::Info
        }
        "rpc" => ApiCommand::Rpc(de(body).map_err(bad)?),
        "batch" if allow_batch => {
            let batch: BatchBody = de(body).map_err(bad)?;
            if batch.commands.len() > MAX_BATCH {
                return Err(ApiParseError(format!(
                    "batch has {} commands, more than the limit of {MAX_BATCH}",
                    batch.commands.len()
                )));
            }
            let mut commands = Vec::with_capacity(batch.commands.len());
            let mut sources = Vec::with_capacity(batch.commands.len());
            for command in batch.commands {
                // One key per command names the method; a batch inside a batch is not a
                // method of the batch (104), as in Centrifugo.
                let mut parsed = None;
                for (name, params) in &command {
                    if let Some(c) = parse_method(name, params.get().as_bytes(), false)? {
                        parsed = Some((c, (name.to_ascii_lowercase(), params.get().to_owned())));
                        break;
                    }
                }
                let (command, source) = parsed.unzip();
                commands.push(command);
                sources.push(source);
            }
            ApiCommand::Batch(BatchRequest { commands, sources, parallel: batch.parallel })
        }
        _ => return Ok(None),
    }))
}

/// One command of the legacy `POST /api` form: `{"id":…,"method":"publish"|0,"params":{…}}`.
#[derive(Debug, Deserialize)]
pub struct LegacyCommand {
    #[serde(default)]
    pub id: Value,
    #[serde(default)]
    pub method: Value,
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
}

impl LegacyCommand {
    /// The method name: a string (any case) or the numeric enum of the API schema
    /// (missing = publish).
    pub fn method_name(&self) -> Option<String> {
        const BY_NUMBER: [&str; 13] = [
            "publish",
            "broadcast",
            "unsubscribe",
            "disconnect",
            "presence",
            "presence_stats",
            "history",
            "history_remove",
            "channels",
            "info",
            "rpc",
            "subscribe",
            "refresh",
        ];
        match &self.method {
            Value::Null => Some("publish".into()),
            Value::String(s) => Some(s.to_ascii_lowercase()),
            Value::Number(n) => n.as_u64().and_then(|n| BY_NUMBER.get(n as usize)).map(|s| s.to_string()),
            _ => None,
        }
    }

    pub fn params(&self) -> &[u8] {
        self.params.as_ref().map(|p| p.get().as_bytes()).unwrap_or(b"{}")
    }

    /// The command to run, or the error to answer this line with.
    pub fn command(&self) -> Result<ApiCommand, Error> {
        let name = self.method_name().ok_or_else(not_found)?;
        match parse(&name, self.params()) {
            Ok(Some(command)) => Ok(command),
            Ok(None) => Err(not_found()),
            Err(_) => Err(Error::bad_request()),
        }
    }
}

/// Splits a legacy body into its newline-separated commands.
pub fn parse_legacy(body: &[u8]) -> Result<Vec<LegacyCommand>, ApiParseError> {
    let commands: Result<Vec<LegacyCommand>, _> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice::<LegacyCommand>)
        .collect();
    let commands = commands.map_err(|e| ApiParseError(format!("invalid JSON command: {e}")))?;
    if commands.len() > MAX_BATCH {
        return Err(ApiParseError(format!(
            "request has {} commands, more than the limit of {MAX_BATCH}",
            commands.len()
        )));
    }
    if commands.is_empty() {
        return Err(ApiParseError("empty request body".into()));
    }
    Ok(commands)
}

/// Shapes a broker reply into the API result object.
pub fn result(kind: ApiKind, reply: BrokerReply) -> Result<Value, Error> {
    match (kind, reply) {
        (ApiKind::Publish, BrokerReply::Published(position)) => {
            if position.offset > 0 || !position.epoch.is_empty() {
                Ok(json!({"offset": position.offset, "epoch": position.epoch}))
            } else {
                Ok(json!({}))
            }
        }
        (ApiKind::Presence, BrokerReply::Presence(presence)) => {
            let map: Map<String, Value> = presence.iter().map(|(k, info)| (k.clone(), client_info(info))).collect();
            Ok(json!({ "presence": map }))
        }
        (ApiKind::PresenceStats, BrokerReply::PresenceStats { clients, users }) => {
            Ok(json!({"num_clients": clients, "num_users": users}))
        }
        (ApiKind::History, BrokerReply::History { top, publications }) => {
            let publications: Vec<Value> = publications.iter().map(|p| publication(p)).collect();
            Ok(json!({"publications": publications, "epoch": top.epoch, "offset": top.offset}))
        }
        (ApiKind::HistoryRemove, BrokerReply::Done) => Ok(json!({})),
        _ => Err(Error::internal()),
    }
}

/// A payload as JSON: embedded as is when it is JSON, else (binary from `b64data`) as a
/// base64 string under `b64<field>`.
fn put_payload(out: &mut Map<String, Value>, field: &str, bytes: &Bytes) {
    if bytes.is_empty() {
        return;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => {
            out.insert(field.to_owned(), v);
        }
        Err(_) => {
            use base64::Engine;
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            out.insert(format!("b64{field}"), Value::String(text));
        }
    }
}

fn client_info(info: &ClientInfo) -> Value {
    let mut out = Map::new();
    out.insert("user".into(), Value::String(info.user.clone()));
    out.insert("client".into(), Value::String(info.client.clone()));
    put_payload(&mut out, "conn_info", &info.conn_info);
    put_payload(&mut out, "chan_info", &info.chan_info);
    Value::Object(out)
}

fn publication(p: &Publication) -> Value {
    let mut out = Map::new();
    put_payload(&mut out, "data", &p.data);
    if !out.contains_key("data") && !out.contains_key("b64data") {
        out.insert("data".into(), Value::Null);
    }
    if p.offset > 0 {
        out.insert("offset".into(), json!(p.offset));
    }
    if !p.tags.is_empty() {
        out.insert("tags".into(), json!(p.tags));
    }
    if let Some(info) = &p.info {
        out.insert("info".into(), client_info(info));
    }
    Value::Object(out)
}

/// The JSON body of an answer: `{"result":…}` or `{"error":{"code":…,"message":…}}`.
pub fn envelope(result: &Result<Value, Error>) -> Value {
    match result {
        Ok(v) => json!({ "result": v }),
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}

/// The HTTP status and JSON body answering `POST /api/<method>`. In the transport error mode
/// (`api_error_mode: "transport"` or `X-Centrifugo-Error-Mode: transport`) an error is an HTTP
/// status with `{"code","message"}`, as in Centrifugo; otherwise every answer is a 200.
pub fn http_answer(method: &str, result: &Result<Value, Error>, transport_errors: bool) -> (u16, Value) {
    match result {
        Err(e) if transport_errors => {
            let status = match e.code {
                100 => 500,
                102 | 104 => 404,
                107 | 108 => 400,
                112 => 416,
                113 => 409,
                _ => 400,
            };
            (status, json!({"code": e.code, "message": e.message}))
        }
        result => (200, body(method, result)),
    }
}

/// A batch's answer: `{"replies":[{"<method>":result}|{"error":…}, …]}`, in command order.
pub fn batch_value(methods: &[&str], results: Vec<Result<Value, Error>>) -> Value {
    let replies: Vec<Value> = methods
        .iter()
        .zip(results)
        .map(|(method, result)| match result {
            Ok(v) => json!({ *method: v }),
            Err(e) => json!({"error": {"code": e.code, "message": e.message}}),
        })
        .collect();
    json!({ "replies": replies })
}

/// The JSON body of `POST /api/<method>`: [`envelope`], except that a batch answers with its
/// `{"replies":[…]}` at the top level (the shape the official clients read).
pub fn body(method: &str, result: &Result<Value, Error>) -> Value {
    match result {
        Ok(v) if method == "batch" => v.clone(),
        _ => envelope(result),
    }
}

/// The API's `{"value": bool}` overrides are the same overrides a subscription token carries.
impl From<SubscribeOverride> for crate::auth::SubscribeOverrides {
    fn from(o: SubscribeOverride) -> Self {
        let value = |v: Option<BoolValue>| v.map(|b| b.value);
        crate::auth::SubscribeOverrides {
            presence: value(o.presence),
            join_leave: value(o.join_leave),
            force_push_join_leave: value(o.force_push_join_leave),
            force_recovery: value(o.force_recovery),
            force_positioning: value(o.force_positioning),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_parses_each_command() {
        let body = br#"{"commands":[{"publish":{"channel":"a","data":{}}},{"nope":{}},{"batch":{}}],"parallel":true}"#;
        let Some(ApiCommand::Batch(b)) = parse("batch", body).unwrap() else { panic!() };
        assert!(b.parallel);
        assert_eq!(b.commands.len(), 3);
        assert!(matches!(b.commands[0], Some(ApiCommand::Publish(_))));
        assert!(b.commands[1].is_none());
        assert!(b.commands[2].is_none());
    }

    #[test]
    fn broadcast_channels_count_against_the_publication_limit() {
        let channels = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        let body = serde_json::json!({"channels": channels(MAX_PUBLICATIONS), "data": {}}).to_string();
        assert!(parse("broadcast", body.as_bytes()).is_ok());
        let body = serde_json::json!({"channels": channels(MAX_PUBLICATIONS + 1), "data": {}}).to_string();
        assert!(parse("broadcast", body.as_bytes()).unwrap_err().0.contains("limit of 10000"));
        let half = serde_json::json!({"broadcast": {"channels": channels(MAX_PUBLICATIONS / 2 + 1), "data": {}}});
        let body = serde_json::json!({"commands": [half, half]}).to_string();
        assert!(parse("batch", body.as_bytes()).is_err(), "a batch adds its broadcasts up");
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse("publish", b"[1]").is_err());
        assert!(parse("publish", b"not json").is_err());
        assert!(matches!(parse("info", b"").unwrap(), Some(ApiCommand::Info)));
        assert!(parse("nope", b"{}").unwrap().is_none());
    }
}
