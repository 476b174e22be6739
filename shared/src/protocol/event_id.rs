//! Stream positions in SSE event ids, so a plain browser `EventSource` resumes by itself.
//!
//! A browser sends back only the last `id:` it saw (`Last-Event-ID`), while one connection
//! may follow many channels. So every event id carries *all* the connection's positions: for
//! each recoverable channel, in name order, its offset and epoch. Channel names are not
//! repeated in the id; a digest of them checks that the reconnecting client follows the same
//! channels. An HMAC tag (keyed by the server) refuses forged or damaged ids.
//!
//! Format, version 1: `1.` + base64url(no padding) of
//! `digest:u32be · count:varint · count × (offset:varint · epoch_len:u8 · epoch) · tag:8 bytes`
//! where `tag` = HMAC-SHA256(key, `"rotor-event-id-v1" · everything before it`)[..8].
//! With 8-letter epochs a channel costs ~10–14 bytes, so [`MAX_CHANNELS`] channels stay
//! under ~1 KB of id, well inside what browsers and proxies pass in a header.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Connections with more recoverable channels than this get no event ids (documented limit).
pub const MAX_CHANNELS: usize = 64;
const VERSION_PREFIX: &str = "1.";
const TAG_LEN: usize = 8;
const DOMAIN: &[u8] = b"rotor-event-id-v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum EventIdError {
    UnknownVersion,
    Malformed,
    BadTag,
    OtherChannels,
}

impl std::fmt::Display for EventIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventIdError::UnknownVersion => "unknown event id version (expected an id starting with \"1.\")",
            EventIdError::Malformed => "malformed event id",
            EventIdError::BadTag => {
                "event id failed its integrity check (tampered, or issued by a server with another secret)"
            }
            EventIdError::OtherChannels => "event id was issued for a different set of channels",
        })
    }
}

/// Digest of the channel names, in order (FNV-1a, 32 bits: catches a changed set, not an
/// attacker — the tag does that).
pub fn channels_digest<'a>(channels: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for name in channels {
        for b in name.bytes().chain(std::iter::once(0)) {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

fn tag(key: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(DOMAIN);
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// Encodes positions (in channel-name order) for channels whose names hash to `digest`.
/// `None` when there are too many channels to fit.
pub fn encode(key: &[u8], digest: u32, positions: &[Position]) -> Option<String> {
    if positions.len() > MAX_CHANNELS {
        return None;
    }
    let mut body = Vec::with_capacity(8 + positions.len() * 14);
    body.extend_from_slice(&digest.to_be_bytes());
    prost::encoding::encode_varint(positions.len() as u64, &mut body);
    for p in positions {
        prost::encoding::encode_varint(p.offset, &mut body);
        let epoch = p.epoch.as_bytes();
        let len = epoch.len().min(255);
        body.push(len as u8);
        body.extend_from_slice(&epoch[..len]);
    }
    let t = tag(key, &body);
    body.extend_from_slice(&t);
    Some(format!("{VERSION_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)))
}

/// Decodes an id issued by [`encode`] for a connection following channels with `digest`.
pub fn decode(key: &[u8], digest: u32, id: &str) -> Result<Vec<Position>, EventIdError> {
    let Some(rest) = id.trim().strip_prefix(VERSION_PREFIX) else {
        return Err(EventIdError::UnknownVersion);
    };
    if rest.len() > 4 * 1024 {
        return Err(EventIdError::Malformed);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(rest).map_err(|_| EventIdError::Malformed)?;
    if raw.len() < 4 + 1 + TAG_LEN {
        return Err(EventIdError::Malformed);
    }
    let (body, given) = raw.split_at(raw.len() - TAG_LEN);
    let expected = tag(key, body);
    // Constant-time comparison: the tag is a MAC.
    if given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(EventIdError::BadTag);
    }
    let id_digest = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mut buf = &body[4..];
    let count = prost::encoding::decode_varint(&mut buf).map_err(|_| EventIdError::Malformed)? as usize;
    if count > MAX_CHANNELS {
        return Err(EventIdError::Malformed);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let offset = prost::encoding::decode_varint(&mut buf).map_err(|_| EventIdError::Malformed)?;
        let (&len, rest) = buf.split_first().ok_or(EventIdError::Malformed)?;
        if rest.len() < len as usize {
            return Err(EventIdError::Malformed);
        }
        let epoch = std::str::from_utf8(&rest[..len as usize]).map_err(|_| EventIdError::Malformed)?.to_owned();
        buf = &rest[len as usize..];
        out.push(Position { offset, epoch });
    }
    if !buf.is_empty() {
        return Err(EventIdError::Malformed);
    }
    if id_digest != digest {
        return Err(EventIdError::OtherChannels);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(n: usize) -> Vec<Position> {
        (0..n).map(|i| Position { offset: 1000 + i as u64, epoch: "AbCdEfGh".into() }).collect()
    }

    #[test]
    fn round_trip() {
        let d = channels_digest(["a", "b"]);
        let id = encode(b"k", d, &positions(2)).unwrap();
        assert!(id.starts_with("1."));
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(decode(b"k", d, &id).unwrap(), positions(2));
    }

    #[test]
    fn max_channels_fit_in_about_a_kilobyte() {
        let names: Vec<String> = (0..MAX_CHANNELS).map(|i| format!("chat:{i}")).collect();
        let d = channels_digest(names.iter().map(String::as_str));
        let id = encode(b"k", d, &positions(MAX_CHANNELS)).unwrap();
        assert!(id.len() <= 1200, "id is {} bytes", id.len());
        assert_eq!(decode(b"k", d, &id).unwrap().len(), MAX_CHANNELS);
        assert!(encode(b"k", d, &positions(MAX_CHANNELS + 1)).is_none());
    }

    #[test]
    fn tampered_wrong_key_other_channels_and_garbage() {
        let d = channels_digest(["a"]);
        let id = encode(b"k", d, &positions(1)).unwrap();
        let mut bytes = id.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(decode(b"k", d, &tampered), Err(EventIdError::BadTag | EventIdError::Malformed)));
        assert_eq!(decode(b"other", d, &id), Err(EventIdError::BadTag));
        assert_eq!(decode(b"k", channels_digest(["b"]), &id), Err(EventIdError::OtherChannels));
        for garbage in ["", "1.", "2.abc", "1.!!!!", "1.AAAA", "hello", &"1.".repeat(5000)] {
            assert!(decode(b"k", d, garbage).is_err(), "{garbage:?}");
        }
    }
}
