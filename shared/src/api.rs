//! The server HTTP API: requests as backends send them, and results shaped the way the
//! official clients (`cent`, `cent.js`) read them.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::broker::BrokerReply;
use crate::protocol::{raw, Error};

/// Correlates an API command with its answer. Chosen by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiId(pub u64);

#[derive(Clone, Debug, PartialEq)]
pub enum ApiCommand {
    Publish(PublishRequest),
}

/// Which result shape a broker reply turns into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    Publish,
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
}

impl PublishRequest {
    /// The payload: `data` (JSON) or `b64data` (binary).
    pub fn payload(&self) -> Result<Bytes, Error> {
        if !self.b64data.is_empty() {
            return raw::from_base64::<serde_json::Error>(&self.b64data).map_err(|_| Error::bad_request());
        }
        Ok(self.data.clone())
    }
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

/// Parses `POST /api/<method>` with a JSON body. `Ok(None)`: no such method.
pub fn parse(method: &str, body: &[u8]) -> Result<Option<ApiCommand>, ApiParseError> {
    let bad = |e: serde_json::Error| ApiParseError(format!("invalid JSON body for {method}: {e}"));
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    Ok(Some(match method.to_ascii_lowercase().as_str() {
        "publish" => ApiCommand::Publish(serde_json::from_slice(body).map_err(bad)?),
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
    pub params: Option<Box<serde_json::value::RawValue>>,
}

impl LegacyCommand {
    /// The method name: a string (any case) or the numeric enum of the API schema
    /// (missing = publish).
    pub fn method_name(&self) -> Option<String> {
        const BY_NUMBER: [&str; 13] = [
            "publish", "broadcast", "unsubscribe", "disconnect", "presence", "presence_stats", "history",
            "history_remove", "channels", "info", "rpc", "subscribe", "refresh",
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
}

/// Splits a legacy body into its newline-separated commands.
pub fn parse_legacy(body: &[u8]) -> Result<Vec<LegacyCommand>, ApiParseError> {
    let commands: Result<Vec<LegacyCommand>, _> = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(serde_json::from_slice::<LegacyCommand>)
        .collect();
    let commands = commands.map_err(|e| ApiParseError(format!("invalid JSON command: {e}")))?;
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
        #[allow(unreachable_patterns)]
        _ => Err(Error::internal()),
    }
}

/// The JSON body of an answer: `{"result":…}` or `{"error":{"code":…,"message":…}}`.
pub fn envelope(result: &Result<Value, Error>) -> Value {
    match result {
        Ok(v) => json!({ "result": v }),
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}
