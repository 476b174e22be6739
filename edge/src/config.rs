//! Configuration from the Worker's environment: wrangler `[vars]` and secrets named like the
//! keys of config.json.
//!
//! - Any lowercase var that does not start with `edge_` is a config key: typed TOML values
//!   (`uni_sse = true`, `history_size = 10`, arrays, tables) travel as JSON values, text as
//!   text, except `namespaces` and `allowed_origins`, which may be given as JSON text
//!   (wrangler secrets and `.env` files carry only text). `token_hmac_secret_key` and
//!   `api_key` belong in secrets (`wrangler secret put`).
//! - `ROTOR_CONFIG_JSON`, when set, is a whole config.json as text and *replaces* the config
//!   keys above (local runs and tests pass one file, the way the native server takes `-c`).
//! - `ROTOR_<KEY>` and `CENTRIFUGO_<V6 PATH>` text vars are passed on as the environment
//!   overrides the native server reads from its process environment; they apply in both cases.
//! - The config (vars or `ROTOR_CONFIG_JSON`) may use Centrifugo v6's nested layout (`client`,
//!   `channel`, `http_api`, … as JSON values) as well as v5's flat keys: the core's loader
//!   detects which.
//! - `edge_*` vars configure the edge host itself (see [`EdgeOptions`]): `edge_node_count`.

use serde_json::{Map, Value};

/// The name of the var holding a whole config.json.
pub const CONFIG_JSON_VAR: &str = "ROTOR_CONFIG_JSON";

/// Keys whose text value is JSON (lists and tables given through text-only channels).
const JSON_TEXT_KEYS: &[&str] = &["namespaces", "allowed_origins"];

/// One entry of the Worker's `env`: text (secrets, `.env`, text vars) or a typed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    Text(String),
    Json(Value),
}

/// What the environment says: the config.json text for `Config::from_json_str`, the `ROTOR_*`
/// overrides for its second argument, and the edge host's own options.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvConfig {
    pub json: String,
    pub overrides: Vec<(String, String)>,
    pub edge: EdgeOptions,
}

/// Options of the edge host, not of Centrifugo.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeOptions {
    /// How many node objects share the client connections (`edge_node_count`, default 4).
    pub node_count: u32,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        EdgeOptions { node_count: 4 }
    }
}

/// Builds the configuration from the environment's entries (any order; bindings left out by
/// the caller).
pub fn from_env(entries: impl IntoIterator<Item = (String, EnvValue)>) -> Result<EnvConfig, String> {
    let mut base: Option<Map<String, Value>> = None;
    let mut keys = Map::new();
    let mut overrides = Vec::new();
    let mut edge = EdgeOptions::default();
    for (name, value) in entries {
        if name == CONFIG_JSON_VAR {
            let text = match value {
                EnvValue::Text(t) => t,
                EnvValue::Json(v) => v.to_string(),
            };
            base = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => return Err(format!("{CONFIG_JSON_VAR} must hold a JSON object")),
                Err(e) => return Err(format!("{CONFIG_JSON_VAR} is not valid JSON: {e}")),
            };
        } else if let Some(option) = name.strip_prefix("edge_") {
            match option {
                "node_count" => {
                    let n = match &value {
                        EnvValue::Text(t) => t.trim().parse::<u32>().ok(),
                        EnvValue::Json(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()),
                    };
                    edge.node_count = n
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| "edge_node_count must be a whole number from 1 to 1024".to_string())?;
                }
                _ => return Err(format!("unknown edge option edge_{option}: there is edge_node_count")),
            }
        } else if name.starts_with("ROTOR_") || name.starts_with("CENTRIFUGO_") {
            if let EnvValue::Text(t) = value {
                overrides.push((name, t));
            }
        } else if name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            let value = match value {
                EnvValue::Text(t) if JSON_TEXT_KEYS.contains(&name.as_str()) && looks_like_json(&t) => {
                    serde_json::from_str(&t).map_err(|e| format!("{name} must be JSON text: {e}"))?
                }
                EnvValue::Text(t) => Value::String(t),
                EnvValue::Json(v) => v,
            };
            keys.insert(name, value);
        }
    }
    overrides.sort();
    let json = Value::Object(base.unwrap_or(keys)).to_string();
    Ok(EnvConfig { json, overrides, edge })
}

fn looks_like_json(t: &str) -> bool {
    matches!(t.trim_start().as_bytes().first(), Some(b'[' | b'{'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(s: &str) -> EnvValue {
        EnvValue::Text(s.into())
    }

    #[test]
    fn vars_are_config_keys_and_keep_their_types() {
        let c = from_env(vec![
            ("uni_sse".into(), EnvValue::Json(json!(true))),
            ("history_size".into(), EnvValue::Json(json!(5))),
            ("api_key".into(), text("secret-key")),
            ("namespaces".into(), text(r#"[{"name":"chat","presence":true}]"#)),
            ("ROTOR_PING_INTERVAL".into(), text("3s")),
            ("edge_node_count".into(), text("2")),
        ])
        .unwrap();
        let v: Value = serde_json::from_str(&c.json).unwrap();
        assert_eq!(
            v,
            json!({"uni_sse": true, "history_size": 5, "api_key": "secret-key", "namespaces": [{"name":"chat","presence":true}]})
        );
        assert_eq!(c.overrides, vec![("ROTOR_PING_INTERVAL".to_string(), "3s".to_string())]);
        assert_eq!(c.edge, EdgeOptions { node_count: 2 });
    }

    #[test]
    fn a_whole_config_file_replaces_the_keys() {
        let c = from_env(vec![
            ("uni_sse".into(), EnvValue::Json(json!(true))),
            (CONFIG_JSON_VAR.into(), text(r#"{"history_size":5,"api_key":"file"}"#)),
        ])
        .unwrap();
        let v: Value = serde_json::from_str(&c.json).unwrap();
        assert_eq!(v, json!({"history_size": 5, "api_key": "file"}));
    }

    #[test]
    fn a_v6_config_json_and_centrifugo_vars_load() {
        let c = from_env(vec![
            (
                CONFIG_JSON_VAR.into(),
                text(
                    r#"{"client": {"token": {"hmac_secret_key": "s"}}, "http_api": {"key": "k"},
                        "uni_sse": {"enabled": true},
                        "channel": {"namespaces": [{"name": "chat", "presence": true}]}}"#,
                ),
            ),
            ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_JOIN_LEAVE".into(), text("true")),
            ("ROTOR_PING_INTERVAL".into(), text("3s")),
        ])
        .unwrap();
        let loaded = shared::config::Config::from_json_str(&c.json, c.overrides).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.layout, shared::config::Layout::V6);
        let config = loaded.config;
        assert_eq!((config.token_hmac_secret_key.as_str(), config.api_key.as_str()), ("s", "k"));
        assert!(config.uni_sse && config.namespaces[0].options.presence && config.namespaces[0].options.join_leave);
        assert_eq!(config.ping_interval, std::time::Duration::from_secs(3));
        // v6 sections as typed vars (wrangler [vars] tables) work the same way.
        let c = from_env(vec![("client".into(), EnvValue::Json(json!({"token": {"hmac_secret_key": "t"}})))]).unwrap();
        let loaded = shared::config::Config::from_json_str(&c.json, c.overrides).unwrap();
        assert_eq!(loaded.config.token_hmac_secret_key, "t");
    }

    #[test]
    fn mistakes_name_the_variable() {
        assert!(from_env(vec![(CONFIG_JSON_VAR.into(), text("{"))]).unwrap_err().contains(CONFIG_JSON_VAR));
        assert!(from_env(vec![("edge_node_count".into(), text("0"))]).unwrap_err().contains("edge_node_count"));
        assert!(from_env(vec![("namespaces".into(), text("[oops"))]).unwrap_err().contains("namespaces"));
        assert_eq!(from_env(vec![]).unwrap().edge.node_count, 4);
    }
}
