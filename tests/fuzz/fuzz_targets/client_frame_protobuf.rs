//! A Protobuf client frame (varint-delimited commands) and a Protobuf emulation body: decoding
//! never panics, and what decodes re-encodes to a frame that decodes to the same commands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use shared::protocol::{decode_commands, decode_emulation, Command, Encoding};

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
    let commands = match decode_commands(Encoding::Protobuf, data) {
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
    if let Ok(request) = decode_emulation(data, true) {
        frame(&request.data);
    }
});
