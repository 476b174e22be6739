//! The `channels` API pattern: any pattern against any channel name answers (no panic, no
//! stack overflow, no exponential time: libFuzzer's -timeout catches a slow input), and a few
//! identities hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::api::glob_match;

/// Longest channel name matched (Centrifugo's default `channel_max_length`).
const MAX_NAME: usize = 255;

/// A pattern matching exactly `name`: every character escaped.
fn literal(name: &str) -> String {
    let mut p = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        p.push('\\');
        p.push(c);
    }
    p
}

fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fuzz_target!(|input: (&str, &str)| {
    let (name, pattern) = input;
    let name = cut(name, MAX_NAME);
    let _ = glob_match(pattern, name);

    assert!(glob_match("*", name));
    assert!(glob_match("", name) == name.is_empty());
    let exact = literal(name);
    assert!(glob_match(&exact, name), "escaped name does not match itself");
    assert!(!glob_match(&exact, &format!("{name}x")), "escaped name matches a longer name");
    assert!(glob_match(&"?".repeat(name.chars().count()), name));
    let half = cut(name, name.len() / 2);
    assert!(glob_match(&format!("{}*", literal(half)), name), "escaped prefix + * does not match");
});
