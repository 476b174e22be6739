//! Where a server API command runs at the edge, and how the answers of several node objects
//! combine. Pure, so it is tested natively.
//!
//! Connections are spread over node objects, so commands about connections (`subscribe`,
//! `unsubscribe`, `disconnect`, `refresh`) and about node state (`channels`, `info`) run on
//! every node object and their answers merge; the others (publish, history, presence, …) run
//! in the Worker, whose hub sends them to the channel objects.

use serde_json::{json, Value};
use shared::api::ApiCommand;
use shared::protocol::Error;

/// How answers from every node object combine into one.
#[derive(Clone, Copy)]
pub enum Merge {
    /// The first error, else the first result (commands acting on connections).
    First,
    /// `channels` maps joined, client counts added up.
    Channels,
    /// `nodes` lists joined.
    Info,
}

/// Commands about connections run on every node object (connections are spread over
/// them); the rest run in the Worker's hub.
pub fn node_route(command: &ApiCommand) -> Option<Merge> {
    match command {
        ApiCommand::Subscribe(_) | ApiCommand::Unsubscribe(_) | ApiCommand::Disconnect(_) | ApiCommand::Refresh(_) => {
            Some(Merge::First)
        }
        ApiCommand::Channels(_) => Some(Merge::Channels),
        ApiCommand::Info => Some(Merge::Info),
        _ => None,
    }
}

/// `{"result":…}` or `{"error":{"code":…,"message":…}}` back into a result.
pub fn from_envelope(envelope: Value) -> std::result::Result<Value, Error> {
    if let Some(e) = envelope.get("error") {
        let code = e.get("code").and_then(Value::as_u64).unwrap_or(100) as u32;
        let message = e.get("message").and_then(Value::as_str).unwrap_or("internal server error");
        return Err(Error::new(code, message));
    }
    Ok(envelope.get("result").cloned().unwrap_or_else(|| json!({})))
}

pub fn merge_results(
    merge: Merge,
    results: Vec<std::result::Result<Value, Error>>,
) -> std::result::Result<Value, Error> {
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(e.clone());
    }
    let values = results.into_iter().filter_map(|r| r.ok());
    match merge {
        Merge::First => Ok(values.into_iter().next().unwrap_or_else(|| json!({}))),
        Merge::Channels => {
            let mut channels = serde_json::Map::new();
            for v in values {
                let Some(Value::Object(map)) = v.get("channels").cloned() else { continue };
                for (name, info) in map {
                    let n = info.get("num_clients").and_then(Value::as_u64).unwrap_or(0);
                    let total = channels
                        .get(&name)
                        .and_then(|i: &Value| i.get("num_clients"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    channels.insert(name, json!({"num_clients": total + n}));
                }
            }
            Ok(json!({"channels": channels}))
        }
        Merge::Info => {
            let nodes: Vec<Value> =
                values.flat_map(|v| v.get("nodes").and_then(Value::as_array).cloned().unwrap_or_default()).collect();
            Ok(json!({"nodes": nodes}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_answers_merge() {
        let a = Ok(json!({"channels": {"x": {"num_clients": 1}, "y": {"num_clients": 2}}}));
        let b = Ok(json!({"channels": {"x": {"num_clients": 3}}}));
        assert_eq!(
            merge_results(Merge::Channels, vec![a, b]).unwrap(),
            json!({"channels": {"x": {"num_clients": 4}, "y": {"num_clients": 2}}})
        );
        let info = merge_results(
            Merge::Info,
            vec![Ok(json!({"nodes": [{"uid": "1"}]})), Ok(json!({"nodes": [{"uid": "2"}]}))],
        );
        assert_eq!(info.unwrap(), json!({"nodes": [{"uid": "1"}, {"uid": "2"}]}));
        let first = merge_results(Merge::First, vec![Ok(json!({})), Err(Error::new(107, "bad request"))]);
        assert_eq!(first.unwrap_err().code, 107);
    }

    #[test]
    fn envelopes_read_back() {
        assert_eq!(from_envelope(json!({"result": {"a": 1}})).unwrap(), json!({"a": 1}));
        let e = from_envelope(json!({"error": {"code": 102, "message": "unknown channel"}})).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (102, "unknown channel"));
        assert!(node_route(&ApiCommand::Info).is_some());
    }
}
