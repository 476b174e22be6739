//! The config file reader: any text (either layout), with any `ROTOR_*` and `CENTRIFUGO_*`
//! environment overrides, loads or gives an error, never a panic. A config that loads writes out (`rotor defaultconfig` style) to JSON
//! that loads back to the same config, and the per-channel lookups hosts make on it do not panic.
//!
//! Input: `text \0 env \0 channel \0 origin \0 duration`; env is `NAME=VALUE` lines (`ROTOR_`
//! is prefixed unless the name starts with `ROTOR_` or `CENTRIFUGO_`); missing parts are empty.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shared::config::{go_duration, Config};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut part = || parts.next().unwrap_or("");
    let (text, env, channel, origin, duration) = (part(), part(), part(), part(), part());
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("ROTOR_") || k.starts_with("CENTRIFUGO_") { k.to_owned() } else { format!("ROTOR_{}", k.to_ascii_uppercase()) };
            (k, v.to_owned())
        })
        .collect();

    if let Ok(d) = go_duration::parse(duration) {
        assert_eq!(go_duration::parse(&go_duration::format(d)), Ok(d), "duration format/parse round trip");
    }
    let nanos = data.iter().take(8).fold(0u64, |n, b| n << 8 | u64::from(*b));
    let d = Duration::from_nanos(nanos);
    assert_eq!(go_duration::parse(&go_duration::format(d)), Ok(d), "duration format/parse round trip");

    let Ok(loaded) = Config::from_json_str(text, env) else { return };
    let config = loaded.config;
    assert!(config.validate().is_ok(), "a loaded config does not validate");
    let written = serde_json::to_string(&config).expect("a config serializes");
    match Config::from_json_str(&written, Vec::new()) {
        Ok(again) => assert!(again.config == config, "written config loads differently: {written}"),
        Err(e) => panic!("written config does not load: {e}\n{written}"),
    }

    let _ = config.namespace_name(channel);
    if let Ok(opts) = config.namespace_for(channel) {
        let _ = config.history_meta_ttl(opts);
        let _ = opts.history_enabled();
    }
    let _ = config.is_private(channel);
    let _ = config.user_limited_users(channel);
    let _ = config.personal_channel(origin);
    let _ = shared::origin::allowed(&config.allowed_origins, Some(origin));
});
