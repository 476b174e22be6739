//! Client protocol v2: messages, codes and the wire formats each transport speaks.

pub mod client;
pub mod codes;
pub mod event_id;
mod negotiate;
pub mod raw;
mod wire;

pub use client::*;
pub use codes::{Disconnect, Error};
pub use negotiate::{decode_emulation, websocket_encoding};
pub use wire::{decode_commands, Encoding, Framing, NotJson, Wire, WireError};

/// Parses the connect request of a unidirectional transport (a bare `ConnectRequest`; `null`
/// and an empty body mean `{}`).
pub fn parse_connect_request(body: &[u8]) -> Result<ConnectRequest, String> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(ConnectRequest::default());
    }
    serde_json::from_slice(trimmed).map_err(|e| format!("invalid connect request JSON: {e}"))
}
