//! SSE event ids (`Last-Event-ID`, `last_event_id`): decoding any string never panics; an id
//! whose tag is right (built here with the key) but whose body is arbitrary is refused or read
//! without panicking; encoding any positions decodes back to them.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use shared::protocol::event_id::{decode, encode, EventIdError, Position, MAX_CHANNELS};

const KEY: &[u8] = b"fuzz-event-id-key";
const DIGEST: u32 = 0x0102_0304;

#[derive(Arbitrary, Debug)]
enum Input {
    /// Whatever a client sends as its last event id.
    Id(String),
    /// `1.` + base64url(body · tag) with a valid tag: the body parser sees arbitrary bytes.
    SignedBody(Vec<u8>),
    /// Positions to encode and decode back.
    Positions(u32, Vec<(u64, String)>),
}

fn signed(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY).expect("any key length");
    mac.update(b"rotor-event-id-v1");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut raw = body.to_vec();
    raw.extend_from_slice(&tag[..8]);
    format!("1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

fuzz_target!(|input: Input| match input {
    Input::Id(id) => {
        let _ = decode(KEY, DIGEST, &id);
    }
    Input::SignedBody(body) => {
        if let Ok(positions) = decode(KEY, DIGEST, &signed(&body)) {
            assert!(positions.len() <= MAX_CHANNELS);
            // What was read is what the server could have written.
            let id = encode(KEY, DIGEST, &positions).expect("at most MAX_CHANNELS");
            assert_eq!(decode(KEY, DIGEST, &id).as_ref(), Ok(&positions));
        }
    }
    Input::Positions(digest, positions) => {
        let positions: Vec<Position> =
            positions.into_iter().map(|(offset, epoch)| Position { offset, epoch }).collect();
        match encode(KEY, digest, &positions) {
            None => assert!(positions.len() > MAX_CHANNELS),
            Some(id) => {
                assert!(id.is_ascii());
                let back = decode(KEY, digest, &id);
                // Epochs are server-made (8 letters): one over 255 bytes is cut, and ids over
                // the decoder's 4 KiB limit (only with epochs of ~60 bytes and more) are refused.
                if id.len() > 2 + 4 * 1024 {
                    assert_eq!(back, Err(EventIdError::Malformed));
                } else if positions.iter().all(|p| p.epoch.len() <= 255) {
                    assert_eq!(back.as_ref(), Ok(&positions));
                }
                if digest != DIGEST {
                    assert!(decode(KEY, DIGEST, &id).is_err(), "an id for other channels was taken");
                }
                assert!(decode(b"another key", digest, &id).is_err(), "an id under another key was taken");
            }
        }
    }
});
