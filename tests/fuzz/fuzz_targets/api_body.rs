//! Server API bodies: `POST /api/<method>` for every method (picked by the first byte) and the
//! legacy `POST /api` form never panic, and neither do the accessors hosts call on what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::api::{parse, parse_legacy, ApiCommand, METHODS};

/// Beyond `shared::api::METHODS`: one in another case and one that does not exist.
const EXTRA: [&str; 2] = ["Publish", "no_such_method"];

/// What hosts do with a parsed command before it reaches the hub.
fn touch(command: &ApiCommand) {
    let _ = command.method();
    match command {
        ApiCommand::Publish(p) => {
            let _ = p.payload();
        }
        ApiCommand::Broadcast(b) => {
            let publishes = b.publishes();
            assert_eq!(publishes.len(), b.channels.len());
            for p in publishes.iter().take(4) {
                let _ = p.payload();
            }
        }
        ApiCommand::Subscribe(s) => {
            let _ = s.info();
            let _ = s.data();
        }
        ApiCommand::Refresh(r) => {
            let _ = r.info();
        }
        ApiCommand::Batch(batch) => {
            let methods = batch.methods();
            assert_eq!(methods.len(), batch.commands.len());
            assert_eq!(batch.sources.len(), batch.commands.len());
            for c in batch.commands.iter().flatten() {
                assert!(!matches!(c, ApiCommand::Batch(_)), "a batch inside a batch");
                touch(c);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let pick = usize::from(selector) % (METHODS.len() + EXTRA.len() + 1);
    match METHODS.iter().chain(EXTRA.iter()).nth(pick) {
        Some(method) => match parse(method, body) {
            Ok(Some(command)) => {
                assert!(command.method().eq_ignore_ascii_case(method));
                touch(&command);
            }
            Ok(None) => assert_eq!(*method, "no_such_method"),
            Err(_) => {}
        },
        None => {
            if let Ok(commands) = parse_legacy(body) {
                assert!(!commands.is_empty());
                for c in &commands {
                    let _ = c.method_name();
                    let _ = c.params();
                    if let Ok(command) = c.command() {
                        touch(&command);
                    }
                }
            }
        }
    }
});
