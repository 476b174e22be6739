//! Payloads (`data`, `info`, …) are raw bytes: embedded JSON in the JSON protocol, raw bytes in
//! Protobuf. These serde adapters splice them into JSON without re-encoding.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::value::RawValue;

/// Deserializes any JSON value into its raw bytes with `\n` removed: `\n` is the frame
/// delimiter, and outside strings (where valid JSON keeps every raw newline) it is whitespace.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
    Ok(match raw {
        None => Bytes::new(),
        Some(raw) => from_json_text(raw.get()),
    })
}

/// Raw JSON text as a payload: newlines stripped, `null` kept (Centrifugo keeps it too).
pub fn from_json_text(text: &str) -> Bytes {
    if text.contains('\n') {
        Bytes::from(text.replace(['\n', '\r'], ""))
    } else {
        Bytes::copy_from_slice(text.as_bytes())
    }
}

pub fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    let text = std::str::from_utf8(bytes).map_err(|_| serde::ser::Error::custom("payload is not UTF-8 JSON"))?;
    let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
    s.serialize_some(raw)
}

/// Whether a payload can travel in the JSON protocol.
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Decodes a base64 payload (`b64data`, `b64info`) for the API and tokens.
pub fn from_base64<E: serde::de::Error>(text: &str) -> Result<Bytes, E> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| E::custom(format!("invalid base64: {e}")))
}
