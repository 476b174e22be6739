//! The `channels` API pattern (`shared::glob`): any pattern against any channel name answers
//! (no panic, no stack overflow, no super-linear blow-up: libFuzzer's -timeout catches a slow
//! input), a compiled pattern answers like `glob_match`, and a few identities hold.
//! Patterns over `MAX_PATTERN` bytes are refused by the matcher itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::glob::{glob_match, Glob, MAX_PATTERN};

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
    let answer = glob_match(pattern, name);
    match Glob::new(pattern) {
        Ok(glob) => assert_eq!(glob.matches(name), answer, "compiled pattern answers differently"),
        Err(_) => assert!(!answer, "a refused pattern matched"),
    }
    if pattern.len() > MAX_PATTERN {
        assert!(Glob::new(pattern).is_err(), "an over-long pattern was taken");
    }

    assert!(glob_match("*", name));
    assert!(glob_match("", name) == name.is_empty());
    let exact = literal(name);
    assert!(glob_match(&exact, name), "escaped name does not match itself");
    assert!(!glob_match(&exact, &format!("{name}x")), "escaped name matches a longer name");
    assert!(glob_match(&"?".repeat(name.chars().count()), name));
    let half = cut(name, name.len() / 2);
    assert!(glob_match(&format!("{}*", literal(half)), name), "escaped prefix + * does not match");
});
