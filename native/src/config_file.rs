//! Config files as Centrifugo reads them: JSON, YAML or TOML, chosen by the file's extension.
//!
//! YAML and TOML are read here, in the native host, into the JSON value that the core's one
//! loader takes (`Config::from_value`), so `shared` (and the edge's wasm bundle) carries no YAML
//! or TOML parser: the edge gets its configuration as JSON (`ROTOR_CONFIG_JSON`) anyway.
//!
//! Both parsers bound what a hostile file can do: `serde_norway` (the maintained fork of the
//! archived `serde_yaml`) refuses nesting past 128 levels and alias expansion past a fixed
//! multiple of the document ("billion laughs"); `toml` refuses nesting past its recursion limit.
//! The file itself is read up to [`MAX_FILE_BYTES`].

use std::io::Read;

use serde_json::Value;
use shared::config::{Config, ConfigError, Loaded};

/// Larger files are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

impl Format {
    /// By extension: `.yaml`/`.yml`, `.toml`; anything else is JSON.
    pub fn of_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".toml") {
            Format::Toml
        } else {
            Format::Json
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        }
    }
}

/// Reads a config file as text, refusing one over [`MAX_FILE_BYTES`].
pub fn read(path: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read config file {path}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read config file {path}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("config file {path} is larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| format!("config file {path} is not UTF-8 text"))
}

/// Loads config text of a format with the environment (`CENTRIFUGO_*`, `ROTOR_*`).
pub fn load(text: &str, format: Format, env: Vec<(String, String)>) -> Result<Loaded, String> {
    if format == Format::Json || text.trim().is_empty() {
        return Config::from_json_str(text, env).map_err(|e| e.to_string());
    }
    let document = parse(text, format)?;
    Config::from_value(document, env).map_err(|e: ConfigError| e.to_string())
}

/// Parses YAML or TOML text into a JSON value (an empty YAML document is an empty object).
pub fn parse(text: &str, format: Format) -> Result<Value, String> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}")),
        Format::Yaml => match serde_norway::from_str::<Value>(text) {
            Ok(Value::Null) => Ok(Value::Object(Default::default())),
            Ok(value) => Ok(value),
            Err(e) => Err(format!("invalid YAML: {e}")),
        },
        Format::Toml => {
            toml::from_str::<Value>(text).map_err(|e| format!("invalid TOML: {}", e.to_string().trim_end()))
        }
    }
}

/// Writes a JSON value (a default configuration) in a format.
pub fn render(value: &Value, format: Format) -> Result<String, String> {
    match format {
        Format::Json => serde_json::to_string_pretty(value).map_err(|e| e.to_string()),
        Format::Yaml => serde_norway::to_string(value).map_err(|e| e.to_string()),
        Format::Toml => toml::to_string_pretty(value).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of_path("a/config.YAML"), Format::Yaml);
        assert_eq!(Format::of_path("config.yml"), Format::Yaml);
        assert_eq!(Format::of_path("config.toml"), Format::Toml);
        assert_eq!(Format::of_path("config.json"), Format::Json);
        assert_eq!(Format::of_path("config"), Format::Json);
    }

    #[test]
    fn the_same_v6_config_in_three_formats() {
        let json = r#"{"client": {"token": {"hmac_secret_key": "s"}, "allowed_origins": ["*"]},
            "http_api": {"key": "k"}, "uni_sse": {"enabled": true},
            "channel": {"without_namespace": {"presence": true},
                        "namespaces": [{"name": "chat", "history_size": 10, "history_ttl": "300s"}]}}"#;
        let yaml = "client:\n  token:\n    hmac_secret_key: s\n  allowed_origins: ['*']\nhttp_api:\n  key: k\n\
                    uni_sse:\n  enabled: true\nchannel:\n  without_namespace:\n    presence: true\n  namespaces:\n\
                    \x20   - name: chat\n      history_size: 10\n      history_ttl: 300s\n";
        let toml =
            "[client]\nallowed_origins = [\"*\"]\n[client.token]\nhmac_secret_key = \"s\"\n[http_api]\nkey = \"k\"\n\
                    [uni_sse]\nenabled = true\n[channel.without_namespace]\npresence = true\n\
                    [[channel.namespaces]]\nname = \"chat\"\nhistory_size = 10\nhistory_ttl = \"300s\"\n";
        let a = load(json, Format::Json, no_env()).unwrap();
        let b = load(yaml, Format::Yaml, no_env()).unwrap();
        let c = load(toml, Format::Toml, no_env()).unwrap();
        assert!(a.warnings.is_empty() && b.warnings.is_empty() && c.warnings.is_empty());
        assert_eq!(a.config, b.config);
        assert_eq!(a.config, c.config);
        assert_eq!(a.config.namespaces[0].options.history_size, 10);
    }

    #[test]
    fn the_conformance_config_in_v6_yaml_is_the_v5_one() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/config/");
        let v5 = load(&read(&format!("{root}conformance.json")).unwrap(), Format::Json, no_env()).unwrap();
        let v6 = load(&read(&format!("{root}conformance-v6.yaml")).unwrap(), Format::Yaml, no_env()).unwrap();
        assert!(v6.warnings.is_empty(), "{:?}", v6.warnings);
        assert_eq!((v5.layout, v6.layout), (shared::config::Layout::V5, shared::config::Layout::V6));
        assert_eq!(v5.config, v6.config);
    }

    #[test]
    fn v5_yaml_and_toml_load_too() {
        let y = load("token_hmac_secret_key: s\nnamespaces:\n  - name: chat\n", Format::Yaml, no_env()).unwrap();
        let t =
            load("token_hmac_secret_key = \"s\"\n[[namespaces]]\nname = \"chat\"\n", Format::Toml, no_env()).unwrap();
        assert_eq!(y.config, t.config);
        assert_eq!(y.layout, shared::config::Layout::V5);
    }

    #[test]
    fn malformed_and_hostile_files_are_errors() {
        let err = |text: &str, format| load(text, format, no_env()).unwrap_err();
        assert!(err("client: [unclosed\n", Format::Yaml).starts_with("invalid YAML: "));
        assert!(err("client = \n", Format::Toml).starts_with("invalid TOML: "));
        assert!(err("- a\n- b\n", Format::Yaml).contains("must be a JSON object"), "a list is no config");
        assert!(err("? [a]\n: y\n", Format::Yaml).starts_with("invalid YAML: "), "keys are strings");
        let deep = format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(err(&format!("a: {deep}\n"), Format::Yaml).contains("recursion limit"));
        assert!(err(&format!("a = {deep}\n"), Format::Toml).starts_with("invalid TOML: "));
        assert!(err(&format!("{} = 1\n", vec!["a"; 5_000].join(".")), Format::Toml).starts_with("invalid TOML: "));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            bomb += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
        }
        assert!(err(&bomb, Format::Yaml).contains("repetition limit"));
        // Wrong types still name the dotted key.
        let e = err(
            "channel:\n  namespaces:\n    - name: aa\n    - name: bb\n    - {name: cc, history_ttl: [1]}\n",
            Format::Yaml,
        );
        assert!(e.starts_with("config key \"channel.namespaces[2].history_ttl\""), "{e}");
        // Empty and comment-only files are all defaults.
        assert_eq!(load("# nothing\n", Format::Yaml, no_env()).unwrap().config, Config::default());
        assert_eq!(load("", Format::Toml, no_env()).unwrap().config, Config::default());
    }

    #[test]
    fn defaults_render_and_load_back_in_every_format() {
        for layout in [shared::config::v6::default_document(), serde_json::to_value(Config::default()).unwrap()] {
            for format in [Format::Json, Format::Yaml, Format::Toml] {
                let text = render(&layout, format).unwrap();
                let loaded = load(&text, format, no_env()).unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
                assert_eq!(loaded.config, Config::default(), "{format:?}");
                assert!(loaded.warnings.is_empty(), "{format:?}: {:?}", loaded.warnings);
            }
        }
    }
}
