//! Error and disconnect codes of client protocol v2 (`centrifuge` errors.go / disconnect.go).

use serde::Serialize;

/// An error in a reply to a command. Codes below 100 and `temporary` errors make SDKs retry.
#[derive(Clone, PartialEq, Eq, Serialize, prost::Message)]
pub struct Error {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

impl Error {
    pub fn new(code: u32, message: &str) -> Self {
        let temporary = matches!(code, 100 | 111 | 113);
        Error { code, message: message.to_owned(), temporary }
    }
    pub fn internal() -> Self {
        Self::new(100, "internal server error")
    }
    pub fn unauthorized() -> Self {
        Self::new(101, "unauthorized")
    }
    pub fn unknown_channel() -> Self {
        Self::new(102, "unknown channel")
    }
    pub fn permission_denied() -> Self {
        Self::new(103, "permission denied")
    }
    pub fn method_not_found() -> Self {
        Self::new(104, "method not found")
    }
    pub fn already_subscribed() -> Self {
        Self::new(105, "already subscribed")
    }
    pub fn limit_exceeded() -> Self {
        Self::new(106, "limit exceeded")
    }
    pub fn bad_request() -> Self {
        Self::new(107, "bad request")
    }
    pub fn not_available() -> Self {
        Self::new(108, "not available")
    }
    pub fn token_expired() -> Self {
        Self::new(109, "token expired")
    }
    pub fn expired() -> Self {
        Self::new(110, "expired")
    }
    pub fn too_many_requests() -> Self {
        Self::new(111, "too many requests")
    }
    pub fn unrecoverable_position() -> Self {
        Self::new(112, "unrecoverable position")
    }
}

/// Why a connection ends. Travels in a WebSocket close frame (reason < 123 bytes) or as a
/// `disconnect` push; the SDK decides whether to reconnect from the code range.
#[derive(Clone, PartialEq, Eq, Serialize, prost::Message)]
pub struct Disconnect {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub reason: String,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reconnect: bool,
}

macro_rules! disconnects {
    ($($name:ident = $code:literal, $reason:literal;)*) => {
        impl Disconnect {
            $(pub fn $name() -> Self { Disconnect { code: $code, reason: $reason.to_owned(), reconnect: false } })*
        }
    };
}

disconnects! {
    shutdown = 3001, "shutdown";
    server_error = 3004, "internal server error";
    expired = 3005, "connection expired";
    subscription_expired = 3006, "subscription expired";
    slow = 3008, "slow";
    write_error = 3009, "write error";
    insufficient_state = 3010, "insufficient state";
    force_reconnect = 3011, "force reconnect";
    no_pong = 3012, "no pong";
    too_many_requests = 3013, "too many requests";
    invalid_token = 3500, "invalid token";
    bad_request = 3501, "bad request";
    stale = 3502, "stale";
    force_disconnect = 3503, "force disconnect";
    connection_limit = 3504, "connection limit";
    channel_limit = 3505, "channel limit";
    inappropriate_protocol = 3506, "inappropriate protocol";
    permission_denied = 3507, "permission denied";
    not_available = 3508, "not available";
    too_many_errors = 3509, "too many errors";
}

impl Disconnect {
    pub fn new(code: u32, reason: &str) -> Self {
        Disconnect { code, reason: reason.to_owned(), reconnect: false }
    }

    /// Whether an SDK reconnects after this code (3000–3499, 4000–4499 and ≥ 5000 do).
    pub fn reconnects(&self) -> bool {
        matches!(self.code, 3000..=3499 | 4000..=4499) || self.code >= 5000
    }

    /// The code and reason as a WebSocket close frame may carry them (RFC 6455 §5.5, §7.4).
    ///
    /// A code a peer must not receive (below 1000, 1004–1006, 1014–2999, 5000 and up, or
    /// past u16; 1014 too, which tungstenite and gorilla clients refuse) goes out as 1011 "internal error": an invalid code is the server's own
    /// mistake, and SDKs reconnect after 1011 (as after any code below 3000), which beats
    /// stranding clients with a terminal code. The reason is cut to 123 bytes, on a UTF-8
    /// character boundary, so code and reason fit a control frame's 125 bytes.
    pub fn websocket_close(&self) -> (u16, &str) {
        const MAX_REASON: usize = 123;
        let code = u16::try_from(self.code)
            .ok()
            .filter(|c| matches!(c, 1000..=1003 | 1007..=1013 | 3000..=4999))
            .unwrap_or(1011);
        let mut end = self.reason.len().min(MAX_REASON);
        while !self.reason.is_char_boundary(end) {
            end -= 1; // at most three steps back: a UTF-8 character has at most four bytes
        }
        (code, &self.reason[..end])
    }

    /// How a unidirectional client learns that its connect failed with a client error
    /// (`centrifuge` extractUnidirectionalDisconnect).
    pub fn for_unidirectional_connect_error(error: &Error) -> Self {
        match error.code {
            109 | 110 => Self::expired(),
            111 => Self::too_many_requests(),
            103 => Self::permission_denied(),
            _ => Self::server_error(),
        }
    }
}

/// Codes in `unsubscribe` pushes.
pub mod unsubscribe {
    pub const SERVER: (u32, &str) = (2000, "server unsubscribe");
    pub const INSUFFICIENT_STATE: (u32, &str) = (2500, "insufficient state");
    pub const EXPIRED: (u32, &str) = (2501, "subscription expired");
}

#[cfg(test)]
mod tests {
    use super::Disconnect;

    #[test]
    fn websocket_close_codes_are_valid_on_the_wire() {
        for (code, wire) in [
            (1000, 1000),
            (1003, 1003),
            (1009, 1009),
            (1013, 1013),
            (1014, 1011),
            (3000, 3000),
            (3008, 3008),
            (4999, 4999),
            (0, 1011),
            (999, 1011),
            (1004, 1011),
            (1005, 1011),
            (1006, 1011),
            (1015, 1011),
            (2999, 1011),
            (5000, 1011),
            (70000, 1011),
            (u32::MAX, 1011),
        ] {
            assert_eq!(Disconnect::new(code, "r").websocket_close(), (wire, "r"), "code {code}");
        }
    }

    #[test]
    fn websocket_close_reasons_fit_a_control_frame_on_a_char_boundary() {
        let long = "x".repeat(200);
        assert_eq!(Disconnect::new(4000, &long).websocket_close().1.len(), 123);
        // 122 ASCII bytes then a 3-byte character: 125 bytes, cut before the character.
        let reason = format!("{}€tail", "y".repeat(122));
        let cut = Disconnect::new(4000, &reason);
        assert_eq!(cut.websocket_close().1, "y".repeat(122));
        // 4-byte characters only: 123 is not a boundary, 120 is.
        let emoji = "😀".repeat(40);
        assert_eq!(Disconnect::new(4000, &emoji).websocket_close().1, "😀".repeat(30));
        assert_eq!(Disconnect::new(4000, "").websocket_close(), (4000, ""));
        assert_eq!(Disconnect::slow().websocket_close(), (3008, "slow"));
    }
}
