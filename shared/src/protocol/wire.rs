//! How messages become bytes on each transport, and how client frames become commands.
//!
//! A [`Wire`] is the full description of what a session's socket expects: encoding (JSON or
//! Protobuf), framing (one message per WebSocket message, newline-delimited stream, or SSE
//! events) and whether the transport is unidirectional (bare pushes) or bidirectional
//! (replies). The hub encodes each publication once per `Wire` in use and shares the bytes.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use super::client::{Command, Push, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    Json,
    Protobuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Framing {
    /// One message per WebSocket message, no trailing newline.
    WebSocket,
    /// A byte stream: JSON lines ending in `\n`, or varint-delimited Protobuf.
    Stream,
    /// Server-sent events: `data: <json>\n\n`.
    Sse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wire {
    pub encoding: Encoding,
    pub framing: Framing,
    pub unidirectional: bool,
}

impl Wire {
    /// Number of distinct wires, for per-publication encoding caches.
    pub const COUNT: usize = 12;

    pub const fn new(encoding: Encoding, framing: Framing, unidirectional: bool) -> Self {
        Wire { encoding, framing, unidirectional }
    }

    /// A dense index in `0..Wire::COUNT`.
    pub fn index(self) -> usize {
        let e = match self.encoding {
            Encoding::Json => 0,
            Encoding::Protobuf => 1,
        };
        let f = match self.framing {
            Framing::WebSocket => 0,
            Framing::Stream => 1,
            Framing::Sse => 2,
        };
        (e * 3 + f) * 2 + self.unidirectional as usize
    }

    /// Encodes a push the way this wire carries it: bare on unidirectional transports,
    /// wrapped in a reply otherwise. Fails only for a payload that is not JSON on a JSON wire.
    pub fn push(self, push: &Push) -> Result<Bytes, NotJson> {
        if self.unidirectional {
            return self.frame(|enc| encode(enc, push));
        }
        self.frame(|enc| match enc {
            Encoding::Json => {
                let mut out = Vec::with_capacity(64);
                out.extend_from_slice(b"{\"push\":");
                serde_json::to_writer(&mut out, push).map_err(|_| NotJson)?;
                out.push(b'}');
                Ok(out)
            }
            Encoding::Protobuf => {
                // Reply{push = 4}: tag (4 << 3 | 2), length, push bytes.
                let body = push.encode_to_vec();
                let mut out = Vec::with_capacity(body.len() + 6);
                out.push(0x22);
                prost::encoding::encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
                Ok(out)
            }
        })
    }

    /// Encodes a reply. Fails only for a payload that is not JSON on a JSON wire.
    pub fn reply(self, reply: &Reply) -> Result<Bytes, NotJson> {
        self.frame(|enc| encode(enc, reply))
    }

    /// The server ping: an empty reply or push.
    pub fn ping(self) -> Bytes {
        let body = match self.encoding {
            Encoding::Json => b"{}".to_vec(),
            Encoding::Protobuf => Vec::new(),
        };
        self.framed(body)
    }

    fn frame(self, body: impl FnOnce(Encoding) -> Result<Vec<u8>, NotJson>) -> Result<Bytes, NotJson> {
        Ok(self.framed(body(self.encoding)?))
    }

    fn framed(self, body: Vec<u8>) -> Bytes {
        match (self.encoding, self.framing) {
            (Encoding::Json, Framing::WebSocket) => Bytes::from(body),
            (Encoding::Json, Framing::Stream) => {
                let mut out = body;
                out.push(b'\n');
                Bytes::from(out)
            }
            (Encoding::Json, Framing::Sse) | (Encoding::Protobuf, Framing::Sse) => {
                let mut out = BytesMut::with_capacity(body.len() + 8);
                out.put_slice(b"data: ");
                out.put_slice(&body);
                out.put_slice(b"\n\n");
                out.freeze()
            }
            (Encoding::Protobuf, _) => {
                let mut out = Vec::with_capacity(body.len() + 5);
                prost::encoding::encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
                Bytes::from(out)
            }
        }
    }
}

/// A message carries a payload (`data`, `info`, …) that is not JSON, so it cannot travel on a
/// JSON wire. Binary payloads are legal (API `b64data`, Protobuf clients): the hub answers this
/// by disconnecting the JSON session with 3506 "inappropriate protocol", as Centrifugo does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotJson;

fn encode<T: serde::Serialize + prost::Message>(enc: Encoding, msg: &T) -> Result<Vec<u8>, NotJson> {
    match enc {
        // The raw payload serializer refuses bytes that are not JSON; nothing else can fail.
        Encoding::Json => serde_json::to_vec(msg).map_err(|_| NotJson),
        Encoding::Protobuf => Ok(msg.encode_to_vec()),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum WireError {
    Empty,
    Malformed(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Empty => f.write_str("empty frame"),
            WireError::Malformed(why) => write!(f, "malformed command: {why}"),
        }
    }
}

/// Decodes one client frame into its commands: `\n`-separated JSON (at most one trailing
/// newline), or varint-delimited Protobuf. A frame that goes bad part-way gives the error with
/// the commands before it: Centrifugo runs those, then disconnects.
pub fn decode_commands(encoding: Encoding, frame: &[u8]) -> Result<Vec<Command>, (Vec<Command>, WireError)> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Json => {
            let text = frame.strip_suffix(b"\n").unwrap_or(frame);
            if text.is_empty() {
                return Err((out, WireError::Empty));
            }
            for line in text.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                match serde_json::from_slice::<Command>(line) {
                    Ok(command) => out.push(command),
                    Err(e) => return Err((out, WireError::Malformed(e.to_string()))),
                }
            }
        }
        Encoding::Protobuf => {
            if frame.is_empty() {
                return Err((out, WireError::Empty));
            }
            let mut buf = frame;
            while !buf.is_empty() {
                match Command::decode_length_delimited(&mut buf) {
                    Ok(command) => out.push(command),
                    Err(e) => return Err((out, WireError::Malformed(e.to_string()))),
                }
            }
        }
    }
    Ok(out)
}
