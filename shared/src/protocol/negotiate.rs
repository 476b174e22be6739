//! Request details both hosts read the same way: the WebSocket format a client asks for, and
//! the body of an emulation request.

use bytes::Bytes;
use prost::Message as _;
use serde::Deserialize;

use super::client::EmulationRequest;
use super::wire::Encoding;

/// The encoding of a WebSocket connection, and the subprotocol to echo (browsers fail the
/// handshake unless the one they asked for comes back). Unidirectional WebSockets are JSON.
pub fn websocket_encoding<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    format_param: Option<&str>,
    unidirectional: bool,
) -> (Encoding, Option<&'static str>) {
    if unidirectional {
        return (Encoding::Json, None);
    }
    let offered: Vec<&str> = offered.into_iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    if offered.contains(&"centrifuge-protobuf") {
        (Encoding::Protobuf, Some("centrifuge-protobuf"))
    } else if format_param == Some("protobuf") {
        (Encoding::Protobuf, None)
    } else if offered.contains(&"centrifuge-json") {
        (Encoding::Json, Some("centrifuge-json"))
    } else {
        (Encoding::Json, None)
    }
}

#[derive(Deserialize)]
struct JsonEmulationRequest {
    #[serde(default)]
    node: String,
    #[serde(default)]
    session: String,
    /// The encoded commands, as a JSON string.
    #[serde(default)]
    data: serde_json::Value,
}

/// The `{node, session, data}` of a `POST /emulation` body (JSON, or Protobuf when the
/// request's content type is `application/octet-stream`).
pub fn decode_emulation(body: &[u8], protobuf: bool) -> Result<EmulationRequest, String> {
    if protobuf {
        return EmulationRequest::decode(body).map_err(|e| format!("invalid protobuf emulation request: {e}"));
    }
    let r: JsonEmulationRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid emulation request JSON: {e}"))?;
    let serde_json::Value::String(data) = r.data else {
        return Err("emulation request field data must be a JSON string of commands".into());
    };
    Ok(EmulationRequest { node: r.node, session: r.session, data: Bytes::from(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_formats() {
        assert_eq!(
            websocket_encoding(["centrifuge-protobuf"], None, false),
            (Encoding::Protobuf, Some("centrifuge-protobuf"))
        );
        assert_eq!(websocket_encoding(["a, centrifuge-json"], None, false), (Encoding::Json, Some("centrifuge-json")));
        assert_eq!(websocket_encoding([], Some("protobuf"), false), (Encoding::Protobuf, None));
        assert_eq!(websocket_encoding(["centrifuge-protobuf"], None, true), (Encoding::Json, None));
        assert_eq!(websocket_encoding([], None, false), (Encoding::Json, None));
    }

    #[test]
    fn emulation_bodies() {
        let r = decode_emulation(br#"{"node":"n","session":"s","data":"{}\n{\"id\":2}"}"#, false).unwrap();
        assert_eq!((r.node.as_str(), r.session.as_str(), &r.data[..]), ("n", "s", &b"{}\n{\"id\":2}"[..]));
        assert!(decode_emulation(br#"{"node":"n","data":{"id":2}}"#, false).unwrap_err().contains("JSON string"));
        assert!(decode_emulation(b"{oops", false).is_err());
        let proto = EmulationRequest { node: "n".into(), session: "s".into(), data: Bytes::from_static(b"\x00") }
            .encode_to_vec();
        assert_eq!(decode_emulation(&proto, true).unwrap().session, "s");
    }
}
