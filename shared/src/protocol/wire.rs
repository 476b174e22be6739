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
    /// wrapped in a reply otherwise.
    pub fn push(self, push: &Push) -> Bytes {
        if self.unidirectional {
            self.frame(|enc| encode(enc, push))
        } else {
            self.frame(|enc| encode_reply(enc, &Reply::push(push.clone())))
        }
    }

    /// Encodes a push given by reference without cloning it into a reply (hot path).
    pub fn push_ref(self, push: &Push) -> Bytes {
        if self.unidirectional {
            return self.push(push);
        }
        self.frame(|enc| match enc {
            Encoding::Json => {
                let mut out = Vec::with_capacity(64);
                out.extend_from_slice(b"{\"push\":");
                serde_json::to_writer(&mut out, push).expect("push encodes");
                out.push(b'}');
                out
            }
            Encoding::Protobuf => {
                // Reply{push = 4}: tag (4 << 3 | 2), length, push bytes.
                let body = push.encode_to_vec();
                let mut out = Vec::with_capacity(body.len() + 6);
                out.push(0x22);
                prost::encoding::encode_varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
                out
            }
        })
    }

    pub fn reply(self, reply: &Reply) -> Bytes {
        self.frame(|enc| encode_reply(enc, reply))
    }

    /// The server ping: an empty reply or push.
    pub fn ping(self) -> Bytes {
        self.frame(|enc| match enc {
            Encoding::Json => b"{}".to_vec(),
            Encoding::Protobuf => Vec::new(),
        })
    }

    fn frame(self, body: impl FnOnce(Encoding) -> Vec<u8>) -> Bytes {
        let body = body(self.encoding);
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

fn encode<T: serde::Serialize + prost::Message>(enc: Encoding, msg: &T) -> Vec<u8> {
    match enc {
        // Payloads were checked to be JSON before they reach a JSON session.
        Encoding::Json => serde_json::to_vec(msg).expect("message encodes"),
        Encoding::Protobuf => msg.encode_to_vec(),
    }
}

fn encode_reply(enc: Encoding, reply: &Reply) -> Vec<u8> {
    encode(enc, reply)
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
