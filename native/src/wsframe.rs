//! The few WebSocket frames a unidirectional connection needs, without buffering while idle:
//! the server writes text, ping and close frames; from the client it reads the connect
//! message, answers pings and sees the close. Frame layout per RFC 6455 §5.2.

use shared::protocol::Disconnect;

/// Frames the client sent that the connection must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The first complete data message (the connect request).
    Message(Vec<u8>),
    Ping(Vec<u8>),
    /// The client's close frame, with its code if it gave one.
    Close(Option<u16>),
    /// The first message is over the size limit (close 1009).
    TooBig,
    /// Not a valid client frame (close 1002).
    ProtocolError,
}

/// Parses client frames as bytes arrive, holding at most one frame header and, until the
/// first message is complete, that message.
pub struct ClientFrames {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
    mask: [u8; 4],
    mask_at: usize,
    opcode: u8,
    fin: bool,
    control: Vec<u8>,
    first: Option<Vec<u8>>,
    limit: usize,
    done_first: bool,
    /// A fragmented data message has started and not finished.
    in_message: bool,
}

impl ClientFrames {
    pub fn new(limit: usize) -> Self {
        ClientFrames {
            header: [0; 14],
            have: 0,
            payload_left: 0,
            mask: [0; 4],
            mask_at: 0,
            opcode: 0,
            fin: false,
            control: Vec::new(),
            first: None,
            limit,
            done_first: false,
            in_message: false,
        }
    }

    /// The first message is not expected (the connect request came another way).
    pub fn skip_first(&mut self) {
        self.done_first = true;
    }

    fn header_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + ext + 4)
    }

    pub fn feed(&mut self, mut data: &[u8], events: &mut Vec<ClientEvent>) {
        while !data.is_empty() {
            if self.payload_left == 0 && self.header_len().is_none_or(|n| self.have < n) {
                // Header bytes.
                let want = self.header_len().unwrap_or(2);
                let n = (want - self.have).min(data.len());
                self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
                self.have += n;
                data = &data[n..];
                if self.have >= 2 && self.header[1] & 0x80 == 0 {
                    events.push(ClientEvent::ProtocolError); // client frames must be masked
                    return;
                }
                if self.header_len().is_some_and(|len| self.have == len) && !self.start_frame(events) {
                    return;
                }
                continue;
            }
            let n = (self.payload_left.min(data.len() as u64)) as usize;
            let mut chunk = data[..n].to_vec();
            for b in chunk.iter_mut() {
                *b ^= self.mask[self.mask_at % 4];
                self.mask_at += 1;
            }
            data = &data[n..];
            self.payload_left -= n as u64;
            if !self.take_payload(&chunk, events) {
                return;
            }
            if self.payload_left == 0 {
                self.end_frame(events);
            }
        }
    }

    /// A full header is in: set up the payload. Returns false on a protocol error.
    fn start_frame(&mut self, events: &mut Vec<ClientEvent>) -> bool {
        let h = self.header;
        self.fin = h[0] & 0x80 != 0;
        self.opcode = h[0] & 0x0f;
        if h[1] & 0x80 == 0 || h[0] & 0x70 != 0 {
            events.push(ClientEvent::ProtocolError); // client frames are masked, no extensions
            return false;
        }
        let (len, mask_at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => (u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]), 10),
            n => (n as u64, 2),
        };
        self.mask.copy_from_slice(&h[mask_at..mask_at + 4]);
        self.mask_at = 0;
        self.payload_left = len;
        self.have = 0;
        let control = self.opcode >= 0x8;
        // RFC 6455 §5.2, §5.4: reserved opcodes; a continuation with no message started, or a
        // new data frame inside a fragmented one, is a protocol error.
        let valid = match self.opcode {
            0x0 => self.in_message,
            0x1 | 0x2 => !self.in_message,
            0x8..=0xA => len <= 125 && self.fin,
            _ => false,
        };
        if !valid {
            events.push(ClientEvent::ProtocolError);
            return false;
        }
        if !control {
            self.in_message = !self.fin;
        }
        if !control && !self.done_first {
            let so_far = self.first.as_ref().map_or(0, Vec::len) as u64;
            // Saturating: a continuation frame may claim up to u64::MAX bytes.
            if so_far.saturating_add(len) > self.limit as u64 {
                events.push(ClientEvent::TooBig);
                return false;
            }
            if self.first.is_none() {
                self.first = Some(Vec::with_capacity(len as usize));
            }
        }
        if len == 0 {
            self.end_frame(events);
        }
        true
    }

    fn take_payload(&mut self, chunk: &[u8], _events: &mut Vec<ClientEvent>) -> bool {
        if self.opcode >= 0x8 {
            self.control.extend_from_slice(chunk);
        } else if !self.done_first {
            if let Some(first) = self.first.as_mut() {
                first.extend_from_slice(chunk);
            }
        }
        true
    }

    fn end_frame(&mut self, events: &mut Vec<ClientEvent>) {
        match self.opcode {
            0x8 => events.push(match self.control.as_slice() {
                [] => ClientEvent::Close(None),
                // A code a peer may send, and a UTF-8 reason (RFC 6455 §5.5.1, §7.4).
                [hi, lo, reason @ ..]
                    if valid_close_code(u16::from_be_bytes([*hi, *lo])) && std::str::from_utf8(reason).is_ok() =>
                {
                    ClientEvent::Close(Some(u16::from_be_bytes([*hi, *lo])))
                }
                _ => ClientEvent::ProtocolError,
            }),
            0x9 => events.push(ClientEvent::Ping(std::mem::take(&mut self.control))),
            0xA => {}
            _ if self.fin && !self.done_first => {
                self.done_first = true;
                events.push(ClientEvent::Message(self.first.take().unwrap_or_default()));
            }
            _ => {}
        }
        self.control.clear();
    }
}

/// A server frame header (servers do not mask).
pub fn header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A close frame as a peer may receive it: a valid code, the reason cut to fit.
pub fn close(disconnect: &Disconnect, out: &mut Vec<u8>) {
    let (code, reason) = disconnect.websocket_close();
    header(CLOSE, 2 + reason.len(), out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Whether a peer may send this close code: the codes [`Disconnect::websocket_close`] keeps.
fn valid_close_code(code: u16) -> bool {
    Disconnect::new(u32::from(code), "").websocket_close().0 == code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn feed_bytewise(frames: &mut ClientFrames, data: &[u8]) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        for b in data {
            frames.feed(std::slice::from_ref(b), &mut events);
        }
        events
    }

    #[test]
    fn first_message_then_ping_and_close_in_any_split() {
        let mut data = client_frame(TEXT, true, br#"{"token":"x"}"#);
        data.extend(client_frame(TEXT, true, b"ignored later message"));
        data.extend(client_frame(PING, true, b"hi"));
        data.extend(client_frame(CLOSE, true, &1000u16.to_be_bytes()));
        let expected = vec![
            ClientEvent::Message(br#"{"token":"x"}"#.to_vec()),
            ClientEvent::Ping(b"hi".to_vec()),
            ClientEvent::Close(Some(1000)),
        ];
        let mut events = Vec::new();
        ClientFrames::new(1024).feed(&data, &mut events);
        assert_eq!(events, expected);
        assert_eq!(feed_bytewise(&mut ClientFrames::new(1024), &data), expected);
    }

    #[test]
    fn fragmented_and_long_first_message() {
        let big = vec![b'a'; 70_000];
        let mut data = client_frame(TEXT, false, &big[..300]);
        data.extend(client_frame(0x0, true, &big[300..]));
        let mut events = Vec::new();
        ClientFrames::new(100_000).feed(&data, &mut events);
        assert_eq!(events, vec![ClientEvent::Message(big)]);
    }

    #[test]
    fn close_frames_carry_their_code_and_invalid_ones_are_protocol_errors() {
        let close = |payload: &[u8]| {
            let mut events = Vec::new();
            ClientFrames::new(1024).feed(&client_frame(CLOSE, true, payload), &mut events);
            events
        };
        assert_eq!(close(&[]), vec![ClientEvent::Close(None)]);
        assert_eq!(close(&[0x0f, 0xa1, b'o', b'k']), vec![ClientEvent::Close(Some(4001))]);
        assert_eq!(close(&[0x03]), vec![ClientEvent::ProtocolError]); // half a code
        assert_eq!(close(&1005u16.to_be_bytes()), vec![ClientEvent::ProtocolError]);
        assert_eq!(close(&[0x03, 0xe8, 0xff]), vec![ClientEvent::ProtocolError]);
        // reason not UTF-8
    }

    #[test]
    fn server_close_frames_are_valid_and_fit_a_control_frame() {
        let mut out = Vec::new();
        close(&Disconnect::new(70000, &"r".repeat(200)), &mut out);
        assert_eq!(out[0], 0x88);
        assert_eq!(out[1] as usize, 125);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1011);
        assert_eq!(out.len(), 127);
    }

    #[test]
    fn too_big_and_unmasked() {
        let mut events = Vec::new();
        ClientFrames::new(10).feed(&client_frame(TEXT, true, &[b'x'; 11]), &mut events);
        assert_eq!(events, vec![ClientEvent::TooBig]);
        let mut events = Vec::new();
        ClientFrames::new(10).feed(&[0x81, 0x01, b'x'], &mut events);
        assert_eq!(events, vec![ClientEvent::ProtocolError]);
    }

    #[test]
    fn continuation_claiming_u64_max_bytes_is_too_big() {
        // Found by the websocket_frame fuzz target: `so_far + len` overflowed.
        let mut data = client_frame(TEXT, false, b"x");
        data.extend_from_slice(&[0x80, 0x80 | 127]);
        data.extend_from_slice(&u64::MAX.to_be_bytes());
        data.extend_from_slice(&[1, 2, 3, 4]);
        let mut events = Vec::new();
        ClientFrames::new(1024).feed(&data, &mut events);
        assert_eq!(events, vec![ClientEvent::TooBig]);
    }

    #[test]
    fn fragmentation_rules_and_reserved_opcodes() {
        // Found by an adversarial run: these were taken as messages or ignored.
        let cases: [(&str, Vec<u8>); 4] = [
            ("continuation with no message started", client_frame(0x0, true, b"x")),
            (
                "a new text frame inside a fragmented one",
                [client_frame(TEXT, false, b"a"), client_frame(TEXT, true, b"b")].concat(),
            ),
            ("reserved control opcode", client_frame(0xB, true, b"")),
            ("reserved data opcode", client_frame(0x3, true, b"x")),
        ];
        for (what, data) in cases {
            let mut events = Vec::new();
            ClientFrames::new(1024).feed(&data, &mut events);
            assert_eq!(events.last(), Some(&ClientEvent::ProtocolError), "{what}: {events:?}");
        }
        // A proper fragmented message still is one.
        let mut events = Vec::new();
        let data =
            [client_frame(TEXT, false, b"a"), client_frame(0x9, true, b"p"), client_frame(0x0, true, b"b")].concat();
        ClientFrames::new(1024).feed(&data, &mut events);
        assert_eq!(events, vec![ClientEvent::Ping(b"p".to_vec()), ClientEvent::Message(b"ab".to_vec())]);
    }
}
