//! The uni WebSocket's client frame reader (`native::wsframe::ClientFrames`): any bytes, cut
//! into any chunks, give the same events as fed at once; the first message never exceeds the
//! limit; nothing panics. Also the server's close frame builder with any reason.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use native::wsframe::{close, ClientEvent, ClientFrames};
use shared::protocol::Disconnect;

#[derive(Arbitrary, Debug)]
struct Input {
    limit: u16,
    skip_first: bool,
    /// Chunk lengths to cut `data` into (cycled; 0 counts as 1).
    cuts: Vec<u8>,
    data: Vec<u8>,
    close_code: u32,
    close_reason: String,
}

/// Events up to and including the first one that ends the connection (the server stops
/// reading there).
fn run(input: &Input, chunks: &mut dyn Iterator<Item = usize>) -> Vec<ClientEvent> {
    let limit = usize::from(input.limit);
    let mut frames = ClientFrames::new(limit);
    if input.skip_first {
        frames.skip_first();
    }
    let mut events = Vec::new();
    let mut rest = &input.data[..];
    while !rest.is_empty() {
        let n = chunks.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        rest = after;
        frames.feed(chunk, &mut events);
        if let Some(end) = events
            .iter()
            .position(|e| matches!(e, ClientEvent::ProtocolError | ClientEvent::TooBig | ClientEvent::Close(_)))
        {
            events.truncate(end + 1);
            break;
        }
    }
    for e in &events {
        match e {
            ClientEvent::Message(m) => {
                assert!(!input.skip_first, "a message after skip_first");
                assert!(m.len() <= limit, "first message over the limit");
            }
            ClientEvent::Ping(p) => assert!(p.len() <= 125, "control payload over 125 bytes"),
            _ => {}
        }
    }
    assert!(events.iter().filter(|e| matches!(e, ClientEvent::Message(_))).count() <= 1, "more than one first message");
    events
}

fuzz_target!(|input: Input| {
    let whole = run(&input, &mut std::iter::empty());
    if !input.cuts.is_empty() {
        let mut cuts = input.cuts.iter().map(|&c| usize::from(c)).cycle();
        let chunked = run(&input, &mut cuts);
        assert_eq!(whole, chunked, "chunking changed the events");
    }
    let mut out = Vec::new();
    close(&Disconnect::new(input.close_code, &input.close_reason), &mut out);
    assert!(out.len() <= 2 + 125, "close frame over the control frame limit");
    assert_eq!(usize::from(out[1] & 0x7f), out.len() - 2);
    assert!(std::str::from_utf8(&out[4..]).is_ok(), "close reason is not UTF-8");
    // What the server sends, its own reader takes as a valid close.
    let mut masked = vec![out[0], out[1] | 0x80, 0, 0, 0, 0];
    masked.extend_from_slice(&out[2..]);
    let mut events = Vec::new();
    let mut reader = ClientFrames::new(0);
    reader.skip_first();
    reader.feed(&masked, &mut events);
    let code = u16::from_be_bytes([out[2], out[3]]);
    assert_eq!(events, vec![ClientEvent::Close(Some(code))], "the server's close frame is not a valid close");
});
