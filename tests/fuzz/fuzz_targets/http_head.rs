//! The hand-served uni path's request head parser (`native::uni::parse_head`): any bytes give a
//! head, "incomplete" or an error, never a panic; a parsed head lies inside the buffer and
//! parses the same from its own bytes; the lookups the server does on it do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use native::uni::parse_head;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(head)) = parse_head(data) else { return };
    assert!(head.len <= data.len(), "head longer than the buffer");
    // The server splits the body off at head.len.
    let (own, _) = data.split_at(head.len);
    let again = parse_head(own).expect("the head's own bytes parse").expect("and are complete");
    assert_eq!(again.len, head.len);
    assert_eq!((&again.method, &again.path, &again.query), (&head.method, &head.path, &head.query));
    for name in ["origin", "last-event-id", "content-length", "transfer-encoding", "upgrade", "sec-websocket-key"] {
        let _ = head.header(name);
    }
    for name in ["cf_connect", "last_event_id", "format"] {
        let _ = head.query_param(name);
    }
});
