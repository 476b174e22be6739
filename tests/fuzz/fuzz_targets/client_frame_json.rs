//! A JSON client frame (bidirectional WebSocket message, emulation `data`, uni connect body):
//! decoding never panics, and what decodes survives a Protobuf round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use shared::protocol::{decode_commands, decode_emulation, parse_connect_request, Command, Encoding};

/// The commands, written as a Protobuf frame and read back, are the same commands.
fn protobuf_round_trip(commands: &[Command]) {
    if commands.is_empty() {
        return;
    }
    let mut frame = Vec::new();
    for c in commands {
        c.encode_length_delimited(&mut frame).expect("a Vec grows");
    }
    match decode_commands(Encoding::Protobuf, &frame) {
        Ok(back) => assert!(back == commands, "Protobuf round trip changed the commands"),
        Err((_, e)) => panic!("re-encoded commands do not decode: {e}"),
    }
}

fn frame(data: &[u8]) {
    let commands = match decode_commands(Encoding::Json, data) {
        Ok(commands) => {
            assert!(!commands.is_empty(), "Ok with no command");
            commands
        }
        Err((commands, _)) => commands,
    };
    protobuf_round_trip(&commands);
}

fuzz_target!(|data: &[u8]| {
    frame(data);
    if let Ok(request) = parse_connect_request(data) {
        let _ = request.encode_to_vec();
    }
    if let Ok(request) = decode_emulation(data, false) {
        frame(&request.data);
    }
});
