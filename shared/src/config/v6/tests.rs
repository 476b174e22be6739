//! The v6 layout and `CENTRIFUGO_*` variables against the v5 layout they stand for.

use serde_json::json;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_doc(doc: Value, env: &[(&str, &str)]) -> Loaded {
    Config::from_value(doc, vars(env)).unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(doc: Value, env: &[(&str, &str)]) -> ConfigError {
    Config::from_value(doc, vars(env)).expect_err("config should be refused")
}

fn known(flat: &str) -> bool {
    Config::known_keys().iter().any(|k| k == flat)
}

/// A valid non-default value for a flat key (keys with rules of their own spelled out).
fn sample(flat: &str, default: &Value) -> Value {
    match flat {
        "api_error_mode" => json!("transport"),
        "force_recovery_mode" => json!("cache"),
        "user_personal_channel_namespace" => json!("chat"),
        "engine" => json!("redis"),
        "log_level" => json!("debug"),
        "log_file" => json!("rotor.log"),
        "allowed_delta_types" => json!(["fossil"]),
        "channel_max_length" => json!(300),
        "port" => json!(8123),
        k if k.ends_with("_handler_prefix") => json!(format!("/x/{k}")),
        k if k.ends_with("_endpoint") => json!(format!("http://127.0.0.1:9/{k}")),
        k if k.contains("private_prefix") || k.contains("boundary") || k.contains("separator") => json!("~"),
        _ => match default {
            Value::Bool(_) => json!(true),
            Value::Number(_) => json!(17),
            Value::String(s) if go_duration::parse(s).is_ok() => json!("17s"),
            Value::String(_) => json!(format!("v-{flat}")),
            Value::Array(_) => json!(["X-One", "X-Two"]),
            Value::Object(_) => json!({"X-Static": "yes"}),
            Value::Null => Value::Null,
        },
    }
}

/// How the same value is written as an environment variable.
fn env_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// The same non-default configuration three ways: a v5 document, a v6 document, and
/// `CENTRIFUGO_*` variables (no file).
fn three_ways() -> (Value, Value, Vec<(String, String)>) {
    let defaults = object_of(&Config::default());
    let channel_defaults = object_of(&ChannelOptions::default());
    let (mut v5, mut v6, mut env) = (Map::new(), Map::new(), Vec::new());
    for row in ROWS {
        let To::Flat(flat) = row.to else { continue };
        let Some(default) = defaults.get(flat) else { continue };
        let value = sample(flat, default);
        v5.insert(flat.into(), value.clone());
        insert_path(&mut v6, row.path, value.clone());
        env.push((env_name(row.path), env_text(&value)));
    }
    let mut v5_chat = Map::new();
    let mut v6_chat = Map::new();
    for row in CHANNEL_ROWS {
        let To::Flat(flat) = row.to else { continue };
        let Some(default) = channel_defaults.get(flat) else { continue };
        let value = sample(flat, default);
        v5.insert(flat.into(), value.clone());
        insert_path(&mut v6, &format!("channel.without_namespace.{}", row.path), value.clone());
        env.push((env_name(&format!("channel.without_namespace.{}", row.path)), env_text(&value)));
        v5_chat.insert(flat.into(), value.clone());
        v6_chat.insert(row.path.into(), value.clone());
        env.push((format!("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_{}", row.path.to_ascii_uppercase()), env_text(&value)));
    }
    for (at, prefix, has_enabled) in PROXIES {
        let flat = format!("{prefix}_endpoint");
        if !defaults.contains_key(&flat) {
            continue;
        }
        if *has_enabled {
            insert_path(&mut v6, &format!("{at}.enabled"), json!(true));
            env.push((env_name(&format!("{at}.enabled")), "true".into()));
        }
        if *at == "rpc.proxy" {
            insert_path(&mut v6, "rpc.without_namespace.proxy_enabled", json!(true));
            env.push((env_name("rpc.without_namespace.proxy_enabled"), "true".into()));
        }
        for (name, to, _, _) in PROXY_ROWS {
            let flat = match to {
                ProxyTo::Own(suffix) => format!("{prefix}_{suffix}"),
                ProxyTo::Shared(flat) => (*flat).to_owned(),
                ProxyTo::No => continue,
            };
            let Some(default) = defaults.get(&flat) else { continue };
            let value = sample(&flat, default);
            v5.insert(flat.clone(), value.clone());
            insert_path(&mut v6, &format!("{at}.{name}"), value.clone());
            env.push((env_name(&format!("{at}.{name}")), env_text(&value)));
        }
    }
    v5_chat.insert("name".into(), json!("chat"));
    v6_chat.insert("name".into(), json!("chat"));
    v5.insert("namespaces".into(), json!([v5_chat]));
    insert_path(&mut v6, "channel.namespaces", json!([v6_chat]));
    env.push(("CENTRIFUGO_CHANNEL_NAMESPACES".into(), "chat".into()));
    (Value::Object(v5), Value::Object(v6), env)
}

#[test]
fn every_implemented_key_means_the_same_in_v5_v6_and_centrifugo_env() {
    let (v5, v6, env) = three_ways();
    let from_v5 = Config::from_value(v5, Vec::new()).unwrap_or_else(|e| panic!("v5: {e}"));
    let from_v6 = Config::from_value(v6, Vec::new()).unwrap_or_else(|e| panic!("v6: {e}"));
    let from_env = Config::from_value(json!({}), env.clone()).unwrap_or_else(|e| panic!("env: {e}"));
    assert!(from_v5.warnings.is_empty(), "{:?}", from_v5.warnings);
    assert!(from_v6.warnings.is_empty(), "{:?}", from_v6.warnings);
    assert!(from_env.warnings.is_empty(), "{:?}", from_env.warnings);
    assert_eq!((from_v5.layout, from_v6.layout, from_env.layout), (Layout::V5, Layout::V6, Layout::Empty));
    assert_ne!(from_v5.config, Config::default());
    assert_eq!(from_v6.config, from_v5.config);
    assert_eq!(from_env.config, from_v5.config);
    // Each key is checked: a key left at its default would hide a broken mapping.
    let defaults = object_of(&Config::default());
    let loaded = object_of(&from_env.config);
    for (key, default) in &defaults {
        if key != "namespaces" && v6_name_of(key).is_some() {
            assert_ne!(loaded.get(key), Some(default), "{key} kept its default");
        }
    }
    // The variables also apply over a v5 file.
    let over_v5 = Config::from_value(json!({"port": 9000, "presence": false}), env).unwrap();
    assert_eq!(over_v5.config, from_v5.config);
}

#[test]
fn layouts_are_detected_and_never_mixed() {
    assert_eq!(load_doc(json!({}), &[]).layout, Layout::Empty);
    let empty_sections = load_doc(json!({"client": null, "channel": {"namespaces": null}}), &[]);
    assert_eq!((empty_sections.layout, empty_sections.config), (Layout::V6, Config::default()));
    assert_eq!(load_doc(json!({"uni_sse": true}), &[]).layout, Layout::V5);
    assert_eq!(load_doc(json!({"uni_sse": {"enabled": true}}), &[]).layout, Layout::V6);
    assert!(load_doc(json!({"uni_sse": {"enabled": true}}), &[]).config.uni_sse);
    let e = load_err(json!({"client": {"insecure": true}, "api_key": "k"}), &[]);
    assert_eq!(e.key(), Some("api_key"));
    assert!(e.to_string().contains("use one layout per file (v6 calls it \"http_api.key\")"), "{e}");
    // The issue's first stumble: v6's `http_stream` section next to v5 keys.
    let e = load_err(json!({"http_stream": {"enabled": true}, "token_hmac_secret_key": "s"}), &[]);
    assert!(e.to_string().contains("\"http_stream\""), "{e}");
}

#[test]
fn wrong_types_name_the_dotted_v6_key() {
    let ns = |ttl: Value| json!({"channel": {"namespaces": [{"name": "aa"}, {"name": "bb"}, {"name": "cc", "history_size": 1, "history_ttl": ttl}]}});
    let e = load_err(ns(json!(true)), &[]);
    assert_eq!(e.key(), Some("channel.namespaces[2].history_ttl"));
    assert!(e.to_string().starts_with("config key \"channel.namespaces[2].history_ttl\": invalid type"), "{e}");
    let e = load_err(json!({"client": {"token": {"hmac_secret_key": 5}}}), &[]);
    assert_eq!(
        e.to_string(),
        "config key \"client.token.hmac_secret_key\": invalid type: integer `5`, expected a string"
    );
    let e = load_err(json!({"client": {"allowed_origins": [1]}}), &[]);
    assert_eq!(e.key(), Some("client.allowed_origins[0]"));
    let e = load_err(json!({"channel": "x"}), &[]);
    assert_eq!(e.to_string(), "config key \"channel\": invalid type: string \"x\", expected a map");
    assert_eq!(load_err(json!({"channel": {"namespaces": {}}}), &[]).key(), Some("channel.namespaces"));
    assert_eq!(load_err(json!({"channel": {"namespaces": [5]}}), &[]).key(), Some("channel.namespaces[0]"));
    assert_eq!(load_err(json!({"http_server": {"port": "x"}}), &[]).key(), Some("http_server.port"));
    assert_eq!(load_err(json!({"grpc_api": true}), &[]).key(), Some("grpc_api"));
    // Validation speaks v6 too.
    let e = load_err(json!({"channel": {"namespaces": [{"name": "aa", "history_size": 5}]}}), &[]);
    assert_eq!(e.key(), Some("channel.namespaces[0].history_ttl"));
    let e = load_err(
        json!({"client": {"subscribe_to_user_personal_channel": {"enabled": true, "personal_channel_namespace": "me"}}}),
        &[],
    );
    assert_eq!(e.key(), Some("client.subscribe_to_user_personal_channel.personal_channel_namespace"));
    let e = load_err(json!({"uni_sse": {"enabled": true, "handler_prefix": "nope"}}), &[]);
    assert_eq!(e.key(), Some("uni_sse.handler_prefix"), "{e}");
}

#[test]
fn unimplemented_options_get_one_warning_each_and_defaults_none() {
    let loaded = load_doc(
        json!({
            "client": {"token": {"hmac_secret_key": "s", "jwks_public_endpoint": "https://x/jwks"}, "concurrency": 4},
            "grpc_api": {"enabled": true, "port": 10001},
            "engine": {"type": "memory", "redis": {"address": "redis://x"}},
            "websocket": {"compression": true, "compression_level": 1},
            "channel": {"namespaces": [{"name": "chat", "allow_tags_filter": true, "subscribe_proxy_name": "default"}]},
            "proxies": [{"name": "p", "endpoint": "http://x"}],
            "health": {"enabled": true},
            "usage_stats": {"disabled": true},
        }),
        &[],
    );
    assert_eq!(loaded.config.token_hmac_secret_key, "s");
    let expected = [
        "config key \"channel.namespaces[0].allow_tags_filter\" is not implemented by rotor: ignored",
        "config key \"client.concurrency\" is not implemented by rotor: ignored",
        "config key \"client.token.jwks_public_endpoint\" is not implemented by rotor: ignored",
        "config key \"grpc_api\" is not implemented by rotor: ignored",
        "config key \"proxies\" is not implemented by rotor: ignored",
        "config key \"websocket.compression\" is not implemented by rotor: ignored",
    ];
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    assert_eq!(warnings, expected);

    // A full document at Centrifugo's defaults, unimplemented options included, is silent.
    let mut doc = match default_document() {
        Value::Object(doc) => doc,
        _ => unreachable!(),
    };
    for row in ROWS.iter().filter(|r| r.to == To::No) {
        insert_path(&mut doc, row.path, default_value(row.default));
    }
    insert_path(&mut doc, "grpc_api.enabled", json!(false));
    insert_path(&mut doc, "grpc_api.port", json!(10000));
    let loaded = load_doc(Value::Object(doc), &[]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn options_of_other_branches_are_unimplemented_until_config_has_them() {
    let doc = json!({
        "client": {"proxy": {"connect": {"enabled": true, "endpoint": "http://b/connect", "http_headers": ["Cookie"]}}},
        "log": {"level": "debug"},
        "admin": {"enabled": true, "password": "p", "secret": "s"},
        "channel": {"without_namespace": {"delta_publish": true, "allowed_delta_types": ["fossil"]}},
    });
    let loaded = load_doc(doc, &[]);
    for (path, flat) in [
        ("client.proxy.connect.endpoint", "proxy_connect_endpoint"),
        ("client.proxy.connect.http_headers", "proxy_http_headers"),
        ("log.level", "log_level"),
        ("admin.enabled", "admin"),
        ("channel.without_namespace.delta_publish", "delta_publish"),
    ] {
        let warned = loaded.warnings.iter().any(|w| w.contains(&format!("\"{path}\" is not implemented")));
        assert_eq!(warned, !known(flat), "{path}: {:?}", loaded.warnings);
    }
    // A connect proxy turned on needs an endpoint, as in Centrifugo.
    let e = load_err(json!({"client": {"proxy": {"connect": {"enabled": true}}}}), &[]);
    assert_eq!(e.key(), Some("client.proxy.connect.endpoint"));
    // Turned off, its options are not looked at.
    let loaded = load_doc(json!({"client": {"proxy": {"connect": {"enabled": false, "endpoint": "http://b"}}}}), &[]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn unknown_v6_keys_warn_with_a_suggestion() {
    let loaded = load_doc(
        json!({"client": {"tokn": {}, "token": {"hmac_secret_kye": "x"}}, "chanel": {}, "channel": {"without_namespace": {"presense": true}}}),
        &[],
    );
    let mut warnings = loaded.warnings;
    warnings.sort();
    assert_eq!(
        warnings,
        [
            "unknown config key \"chanel\" (did you mean \"channel\"?)",
            "unknown config key \"channel.without_namespace.presense\" (did you mean \"presence\"?)",
            "unknown config key \"client.token.hmac_secret_kye\" (did you mean \"hmac_secret_key\"?)",
            "unknown config key \"client.tokn\" (did you mean \"token\"?)",
        ]
    );
}

#[test]
fn centrifugo_variables_follow_v6_rules() {
    let loaded = load_doc(
        json!({}),
        &[
            ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "12345"),
            ("CENTRIFUGO_HTTP_API_KEY", "api"),
            ("CENTRIFUGO_CLIENT_ALLOWED_ORIGINS", "https://a.example https://b.example"),
            ("CENTRIFUGO_UNI_SSE_ENABLED", "1"),
            ("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "10"),
            ("CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_HISTORY_TTL", "300s"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES", "chat my-ns.v2"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE", "true"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES_MY_NS_V2_JOIN_LEAVE", "T"),
            ("CENTRIFUGO_HTTP_SERVER_PORT", ""),
            ("CENTRIFUGO_PORT", "tcp://10.0.0.1:8000"),
            ("CENTRIFUGO_SERVICE_HOST", "10.0.0.1"),
            ("CENTRIFUGO_VAR_SECRET", "x"),
            ("HOME", "/root"),
        ],
    );
    let c = &loaded.config;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!((c.token_hmac_secret_key.as_str(), c.api_key.as_str()), ("12345", "api"));
    assert_eq!(c.allowed_origins, ["https://a.example", "https://b.example"]);
    assert!(c.uni_sse && c.channel.history_enabled());
    assert_eq!(c.port, 8000, "an empty value is unset");
    assert_eq!(c.namespaces.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["chat", "my-ns.v2"]);
    assert!(c.namespaces[0].options.presence && c.namespaces[1].options.join_leave);

    // Variables win over the file; ROTOR_* win over both.
    let c = load_doc(
        json!({"http_api": {"key": "file"}, "http_server": {"port": 9000}, "channel": {"namespaces": [{"name": "chat"}]}}),
        &[("CENTRIFUGO_HTTP_API_KEY", "env"), ("CENTRIFUGO_HTTP_SERVER_PORT", "9001"), ("ROTOR_PORT", "9002"),
          ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE", "3"), ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL", "1m")],
    )
    .config;
    assert_eq!((c.api_key.as_str(), c.port), ("env", 9002));
    assert_eq!(c.namespaces[0].options.history_size, 3);
    // A JSON list of namespaces uses v6 option names.
    let c = load_doc(json!({}), &[("CENTRIFUGO_CHANNEL_NAMESPACES", r#"[{"name":"news","presence":true}]"#)]).config;
    assert!(c.namespaces[0].options.presence);
}

#[test]
fn centrifugo_variable_mistakes_are_named() {
    let e = load_err(json!({}), &[("CENTRIFUGO_HTTP_SERVER_PORT", "abc")]);
    assert_eq!(
        e.to_string(),
        "environment variable CENTRIFUGO_HTTP_SERVER_PORT (config key \"http_server.port\"): invalid type: string \"abc\", expected u16"
    );
    let e = load_err(
        json!({}),
        &[("CENTRIFUGO_CHANNEL_NAMESPACES", "chat news"), ("CENTRIFUGO_CHANNEL_NAMESPACES_NEWS_PRESENCE", "yes")],
    );
    assert_eq!(
        e,
        ConfigError::Type {
            key: "channel.namespaces[1].presence".into(),
            env_var: Some("CENTRIFUGO_CHANNEL_NAMESPACES_NEWS_PRESENCE".into()),
            message: "invalid type: string \"yes\", expected a boolean".into(),
        }
    );
    // Also over a v5 file, the error names the variable and its v6 key.
    let e = load_err(json!({"api_key": "k"}), &[("CENTRIFUGO_UNI_SSE_ENABLED", "maybe")]);
    assert!(
        e.to_string().starts_with("environment variable CENTRIFUGO_UNI_SSE_ENABLED (config key \"uni_sse.enabled\")"),
        "{e}"
    );
    let loaded = load_doc(
        json!({}),
        &[
            ("CENTRIFUGO_API_KEY", "k"),
            ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRT_KEY", "s"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES_GHOST_PRESENCE", "true"),
            ("CENTRIFUGO_GRPC_API_ENABLED", "true"),
            ("CENTRIFUGO_CLIENT_CONCURRENCY", "8"),
            ("CENTRIFUGO_ENGINE_REDIS_ADDRESS", "redis://x"),
            ("CENTRIFUGO_USAGE_STATS_DISABLED", "true"),
        ],
    );
    assert_eq!(
        loaded.warnings,
        [
            "unknown environment variable CENTRIFUGO_API_KEY: a Centrifugo v5 name; v6 calls it CENTRIFUGO_HTTP_API_KEY (or use ROTOR_API_KEY)",
            "unknown environment variable CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRT_KEY (did you mean CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY?)",
            "environment variable CENTRIFUGO_GRPC_API_ENABLED (config section \"grpc_api\") is not implemented by rotor: ignored",
            "environment variable CENTRIFUGO_CLIENT_CONCURRENCY (config key \"client.concurrency\") is not implemented by rotor: ignored",
            "unknown environment variable CENTRIFUGO_CHANNEL_NAMESPACES_GHOST_PRESENCE: no configured namespace and option by that name (namespaces come from channel.namespaces or CENTRIFUGO_CHANNEL_NAMESPACES)",
        ]
    );
}

#[test]
fn v6_defaults_load_back_and_the_reference_covers_every_key() {
    let doc = default_document();
    assert_eq!(doc["client"]["token"]["hmac_secret_key"], "");
    assert_eq!(doc["client"]["ping_interval"], "25s");
    assert_eq!(doc["channel"]["without_namespace"]["presence"], false);
    let loaded = load_doc(doc, &[]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!((loaded.config, loaded.layout), (Config::default(), Layout::V6));
    let reference = reference();
    for key in Config::known_keys() {
        assert!(reference.iter().any(|d| d.v5 == key), "{key} missing from the reference");
    }
    let missing = not_implemented();
    assert!(missing.iter().any(|p| p == "client.token.jwks_public_endpoint"));
    assert!(missing.iter().any(|p| p == "grpc_api"));
    assert!(!missing.iter().any(|p| p == "client.token.hmac_secret_key"));
}
