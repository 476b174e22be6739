//! Fossil deltas (`shared::delta::fossil`): encoding any source and target gives a delta that
//! applies back to the target exactly (and, when it is UTF-8 text, survives the JSON-string
//! form JSON clients receive); applying arbitrary bytes as a delta to any source never panics
//! and never grows past the announced length or the limit.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shared::delta::fossil::{apply, encode, MAX_INPUT};

#[derive(Arbitrary, Debug)]
enum Input {
    /// A source and a target made from it by edits (so that copies are found).
    Edit { source: Vec<u8>, at: u16, remove: u8, insert: Vec<u8>, tail: Vec<u8> },
    /// Unrelated source and target.
    Pair(Vec<u8>, Vec<u8>),
    /// A hostile delta against a source.
    Hostile { source: Vec<u8>, delta: Vec<u8>, limit: u16 },
}

fn round_trip(source: &[u8], target: &[u8]) {
    let delta = encode(source, target).expect("fuzz inputs are within MAX_INPUT");
    assert_eq!(apply(source, &delta, MAX_INPUT).as_deref(), Ok(target));
    if let Ok(text) = std::str::from_utf8(&delta) {
        let json = serde_json::to_string(text).expect("a string serializes");
        let back: String = serde_json::from_str(&json).expect("and parses back");
        assert_eq!(back.as_bytes(), delta.as_slice());
    }
}

fuzz_target!(|input: Input| match input {
    Input::Edit { source, at, remove, insert, tail } => {
        let mut target = source.clone();
        let at = usize::from(at).min(target.len());
        let end = (at + usize::from(remove)).min(target.len());
        target.splice(at..end, insert);
        target.extend_from_slice(&tail);
        round_trip(&source, &target);
    }
    Input::Pair(source, target) => round_trip(&source, &target),
    Input::Hostile { source, delta, limit } => {
        if let Ok(out) = apply(&source, &delta, usize::from(limit)) {
            assert!(out.len() <= usize::from(limit));
        }
    }
});
