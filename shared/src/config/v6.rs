//! Centrifugo v6's nested layout (`client.token.hmac_secret_key`, `channel.namespaces[]`, …) and
//! its `CENTRIFUGO_*` variables, normalized to the flat v5 names the rest of the loader reads.
//!
//! One loader (`load`, behind `Config::from_value`) detects the layout of a document, turns a v6 one (and every
//! `CENTRIFUGO_*` variable, whatever the file's layout) into flat keys with
//! the name table (`v6_table.rs`), and hands them to the flat loader with the `ROTOR_*`
//! variables, which win. Errors found there name the key as the user wrote it: a v6 path for a
//! v6 file or a `CENTRIFUGO_*` variable.
//!
//! Walking a document only descends where the table has deeper options, so its depth is bounded
//! by the table, never by the input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::v6_table::{Gate, ProxyTo, Row, To, CHANNEL_ROWS, PROXIES, PROXY_ROWS, ROWS, SECTIONS};
use super::{go_duration, nearest, object_of, ChannelOptions, Config, ConfigError, Loaded};

mod env;
mod reference;
#[cfg(test)]
mod tests;

pub use env::env_name;
use env::{name_for_env, typed, EnvDoc};
pub use reference::{default_document, not_implemented, reference, KeyDoc};

/// Which layout a configuration used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// No keys at all: defaults (and the environment).
    Empty,
    /// Centrifugo v5's flat keys (`token_hmac_secret_key`).
    V5,
    /// Centrifugo v6's nested keys (`client.token.hmac_secret_key`).
    V6,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Empty => "no keys (defaults)",
            Layout::V5 => "Centrifugo v5 layout (flat keys)",
            Layout::V6 => "Centrifugo v6 layout (nested keys)",
        })
    }
}

/// Prefix of Centrifugo's environment variables.
pub const CENTRIFUGO_PREFIX: &str = "CENTRIFUGO_";

/// Top-level keys that exist only in v6.
const V6_ONLY: &[&str] = &[
    "http_server",
    "log",
    "broker",
    "presence_manager",
    "map_broker",
    "controller",
    "shared_poll",
    "client",
    "channel",
    "rpc",
    "http_api",
    "grpc_api",
    "emulation",
    "node",
    "shutdown",
    "init",
    "usage_stats",
];
/// Top-level keys of both layouts: a v6 section when an object, a v5 option otherwise.
const BOTH: &[&str] = &[
    "engine",
    "websocket",
    "sse",
    "http_stream",
    "uni_sse",
    "uni_http_stream",
    "uni_websocket",
    "uni_grpc",
    "webtransport",
    "admin",
    "prometheus",
    "health",
    "swagger",
    "debug",
    "opentelemetry",
    "graphite",
];
/// Top-level keys spelled alike in both layouts.
const NEUTRAL: &[&str] = &["proxies", "consumers", "pid_file", "enable_unreleased_features"];

/// Loads a document of either layout with the environment (`CENTRIFUGO_*`, then `ROTOR_*`).
pub(super) fn load(root: Map<String, Value>, env: Vec<(String, String)>) -> Result<Loaded, ConfigError> {
    let defaults = object_of(&Config::default());
    let channel_keys: BTreeSet<String> = object_of(&ChannelOptions::default()).keys().cloned().collect();
    let layout = detect(&root, &defaults)?;
    let env_doc = EnvDoc::from_env(&env, &defaults);

    let mut walk = Walk::new(&defaults, &channel_keys, env_doc.origin.clone());
    walk.warnings.extend(env_doc.warnings.iter().cloned());
    match layout {
        Layout::V5 => {
            walk.flat = root;
            walk.walk_document(env_doc.doc.clone())?;
        }
        Layout::V6 | Layout::Empty => {
            let mut doc = root;
            merge(&mut doc, env_doc.doc.clone());
            walk.walk_document(doc)?;
        }
    }
    walk.apply_namespace_env(&env_doc)?;
    let Walk { flat, origin, env_by_flat, warnings, .. } = walk;

    let translate = |e: ConfigError| translate_error(e, layout, &origin, &env_by_flat);
    let mut loaded = Config::from_flat(flat, env, warnings).map_err(translate)?;
    loaded.layout = layout;
    Ok(loaded)
}

fn detect(root: &Map<String, Value>, defaults: &Map<String, Value>) -> Result<Layout, ConfigError> {
    let (mut v6, mut v5) = (None, None);
    for (key, value) in root {
        let k = key.as_str();
        if V6_ONLY.contains(&k) || (BOTH.contains(&k) && value.is_object()) {
            v6.get_or_insert(k);
        } else if NEUTRAL.contains(&k) {
        } else if defaults.contains_key(k) || BOTH.contains(&k) {
            v5.get_or_insert(k);
        }
    }
    match (v6, v5) {
        (Some(section), Some(flat)) => {
            let hint = v6_name_of(flat).map(|p| format!(" (v6 calls it \"{p}\")")).unwrap_or_default();
            Err(ConfigError::Invalid {
                key: flat.to_owned(),
                message: format!(
                    "a Centrifugo v5 (flat) key in a file with v6 (nested) sections such as \"{section}\": \
                     use one layout per file{hint}"
                ),
            })
        }
        (Some(_), None) => Ok(Layout::V6),
        (None, _) if root.is_empty() => Ok(Layout::Empty),
        (None, _) => Ok(Layout::V5),
    }
}

/// The v6 path of a flat key, if it has one.
pub fn v6_name_of(flat: &str) -> Option<String> {
    if let Some(row) = ROWS.iter().find(|r| matches!(r.to, To::Flat(f) if f == flat)) {
        return Some(row.path.to_owned());
    }
    if let Some(row) = CHANNEL_ROWS.iter().find(|r| matches!(r.to, To::Flat(f) if f == flat)) {
        return Some(format!("channel.without_namespace.{}", row.path));
    }
    if flat == "namespaces" {
        return Some("channel.namespaces".into());
    }
    for (path, prefix, _) in PROXIES {
        for (name, to, _, _) in PROXY_ROWS {
            match to {
                ProxyTo::Own(suffix) if flat == format!("{prefix}_{suffix}") => return Some(format!("{path}.{name}")),
                ProxyTo::Shared(key) if *key == flat => return Some(format!("{path}.{name}")),
                _ => {}
            }
        }
    }
    None
}

fn channel_v6_name(flat: &str) -> &str {
    CHANNEL_ROWS.iter().find(|r| matches!(r.to, To::Flat(f) if f == flat)).map_or(flat, |r| r.path)
}

/// Rewrites a flat key path (`namespaces[2].history_ttl`) the way the user wrote it.
fn v6_key(flat_key: &str, origin: &BTreeMap<String, String>) -> String {
    let split = flat_key.find(['.', '[']).unwrap_or(flat_key.len());
    let (top, rest) = flat_key.split_at(split);
    if top == "namespaces" {
        // rest: "", "[i]", "[i].option…"
        if let Some((index, option)) = rest.split_once("].") {
            let split = option.find(['.', '[']).unwrap_or(option.len());
            let (name, tail) = option.split_at(split);
            return format!("channel.namespaces{index}].{}{tail}", channel_v6_name(name));
        }
        return format!("channel.namespaces{rest}");
    }
    match origin.get(top).cloned().or_else(|| v6_name_of(top)) {
        Some(path) => format!("{path}{rest}"),
        None => flat_key.to_owned(),
    }
}

fn translate_error(
    e: ConfigError,
    layout: Layout,
    origin: &BTreeMap<String, String>,
    env_by_flat: &BTreeMap<String, String>,
) -> ConfigError {
    let blamed = |key: &str| -> Option<String> {
        let top = key.split(['.', '[']).next().unwrap_or_default();
        env_by_flat.get(key).or_else(|| env_by_flat.get(top)).cloned()
    };
    match e {
        ConfigError::Type { key, env_var, message } => {
            let var = env_var.or_else(|| blamed(&key));
            let from_centrifugo = var.as_deref().is_some_and(|v| v.starts_with(CENTRIFUGO_PREFIX));
            let key = if layout == Layout::V6 || from_centrifugo { v6_key(&key, origin) } else { key };
            ConfigError::Type { key, env_var: var, message }
        }
        ConfigError::Invalid { key, message } if layout == Layout::V6 || blamed(&key).is_some() => {
            ConfigError::Invalid { key: v6_key(&key, origin), message }
        }
        other => other,
    }
}

/// Writes `from` over `into`, object by object. Depth: that of `from`, an environment document.
fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Is a value "not set": false, 0, "", [], {}, null (objects and arrays looked into, to a bound).
fn is_zero(value: &Value, depth: usize) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => depth < 16 && o.values().all(|v| is_zero(v, depth + 1)),
    }
}

/// A default from the table: JSON text, or a plain string.
fn default_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Set to something that matters: neither zero nor the default (durations compared as durations).
fn is_set(value: &Value, default: &str) -> bool {
    if is_zero(value, 0) {
        return false;
    }
    let default = default_value(default);
    if *value == default {
        return false;
    }
    match (value, &default) {
        (Value::String(a), Value::String(b)) => match (go_duration::parse(a), go_duration::parse(b)) {
            (Ok(a), Ok(b)) => a != b,
            _ => true,
        },
        _ => true,
    }
}

/// What serde would call a value in an "invalid type" message.
fn unexpected(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

fn type_error(key: &str, value: &Value, expected: &str, env: &BTreeMap<String, String>) -> ConfigError {
    ConfigError::Type {
        key: key.to_owned(),
        env_var: env.get(key).cloned(),
        message: format!("invalid type: {}, expected {expected}", unexpected(value)),
    }
}

/// Turns a v6 document into flat keys, collecting warnings.
struct Walk<'a> {
    defaults: &'a Map<String, Value>,
    channel_keys: &'a BTreeSet<String>,
    flat: Map<String, Value>,
    /// Flat top-level key → the v6 path it came from.
    origin: BTreeMap<String, String>,
    /// v6 path → the `CENTRIFUGO_*` variable that set it.
    env_paths: BTreeMap<String, String>,
    /// Flat key path → the `CENTRIFUGO_*` variable that set it.
    env_by_flat: BTreeMap<String, String>,
    /// Options v5 has once for all proxies: flat key → (v6 path, value) per proxy.
    shared: BTreeMap<&'static str, Vec<(String, Value)>>,
    warnings: Vec<String>,
    rpc_proxy_on: bool,
}

impl<'a> Walk<'a> {
    fn new(
        defaults: &'a Map<String, Value>,
        channel_keys: &'a BTreeSet<String>,
        env_paths: BTreeMap<String, String>,
    ) -> Self {
        Walk {
            defaults,
            channel_keys,
            flat: Map::new(),
            origin: BTreeMap::new(),
            env_paths,
            env_by_flat: BTreeMap::new(),
            shared: BTreeMap::new(),
            warnings: Vec::new(),
            rpc_proxy_on: false,
        }
    }

    fn walk_document(&mut self, doc: Map<String, Value>) -> Result<(), ConfigError> {
        self.rpc_proxy_on = doc
            .get("rpc")
            .and_then(|r| r.get("without_namespace"))
            .and_then(|w| w.get("proxy_enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.walk_object("", doc)?;
        self.merge_shared();
        Ok(())
    }

    fn not_implemented(&mut self, path: &str) {
        let warning = match self.env_paths.get(path) {
            Some(var) => {
                format!("environment variable {var} (config key \"{path}\") is not implemented by rotor: ignored")
            }
            None => format!("config key \"{path}\" is not implemented by rotor: ignored"),
        };
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    fn unknown(&mut self, path: &str, key: &str, siblings: Vec<String>) {
        let mut warning = format!("unknown config key \"{path}\"");
        if let Some(near) = nearest(key, siblings.iter()) {
            warning.push_str(&format!(" (did you mean \"{near}\"?)"));
        }
        self.warnings.push(warning);
    }

    /// Puts a flat key, remembering where it came from.
    fn put(&mut self, flat: &str, path: &str, value: Value) {
        if let Some(var) = self.env_paths.get(path) {
            self.env_by_flat.insert(flat.to_owned(), var.clone());
        }
        self.origin.insert(flat.to_owned(), path.to_owned());
        self.flat.insert(flat.to_owned(), value);
    }

    fn walk_object(&mut self, prefix: &str, object: Map<String, Value>) -> Result<(), ConfigError> {
        for (key, value) in object {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            self.visit(prefix, &key, &path, value)?;
        }
        Ok(())
    }

    fn visit(&mut self, prefix: &str, key: &str, path: &str, value: Value) -> Result<(), ConfigError> {
        // `client:` with nothing after it (YAML's null) is an absent key, as in Centrifugo.
        if value.is_null() {
            return Ok(());
        }
        if path == "channel.without_namespace" {
            let Value::Object(options) = value else {
                return Err(type_error(path, &value, "a map", &self.env_paths));
            };
            for (flat, (from, value)) in self.channel_options(path, options) {
                self.put(&flat, &from, value);
            }
            return Ok(());
        }
        if path == "channel.namespaces" {
            let namespaces = self.namespaces(path, value)?;
            self.put("namespaces", path, Value::Array(namespaces));
            return Ok(());
        }
        if let Some((_, flat_prefix, has_enabled)) = PROXIES.iter().find(|(p, _, _)| *p == path) {
            return self.proxy(path, flat_prefix, *has_enabled, value);
        }
        if let Some(row) = ROWS.iter().find(|r| r.path == path) {
            match row.to {
                To::Flat(flat) if self.defaults.contains_key(flat) => self.put(flat, path, value),
                To::Flat(_) | To::No => {
                    if is_set(&value, row.default) {
                        self.not_implemented(path);
                    }
                }
                To::Moot => {}
            }
            return Ok(());
        }
        if let Some((_, gate)) = SECTIONS.iter().find(|(p, _)| *p == path) {
            if matches!(gate, Gate::Enabled | Gate::Child(..)) && !value.is_object() && !value.is_null() {
                return Err(type_error(path, &value, "a map", &self.env_paths));
            }
            let on = match gate {
                Gate::Enabled => value.get("enabled").is_some_and(|e| !is_zero(e, 0)),
                Gate::Child(child, default) => value.get(child).is_some_and(|c| is_set(c, default)),
                Gate::Anything => !is_zero(&value, 0),
                Gate::Never => false,
            };
            if on {
                self.not_implemented(path);
            }
            return Ok(());
        }
        let deeper = format!("{path}.");
        let has_children = ROWS
            .iter()
            .map(|r| r.path)
            .chain(SECTIONS.iter().map(|(p, _)| *p))
            .chain(special_paths())
            .any(|p| p.starts_with(&deeper));
        if has_children {
            let Value::Object(object) = value else {
                return Err(type_error(path, &value, "a map", &self.env_paths));
            };
            return self.walk_object(path, object);
        }
        let siblings = children_of(prefix);
        self.unknown(path, key, siblings);
        Ok(())
    }

    /// Channel options at `at`: flat key → (v6 path, value).
    fn channel_options(&mut self, at: &str, options: Map<String, Value>) -> BTreeMap<String, (String, Value)> {
        let mut out = BTreeMap::new();
        for (key, value) in options {
            let path = format!("{at}.{key}");
            match CHANNEL_ROWS.iter().find(|r| r.path == key) {
                Some(Row { to: To::Flat(flat), .. }) if self.channel_keys.contains(*flat) => {
                    out.insert((*flat).to_owned(), (path, value));
                }
                Some(row @ Row { to: To::Flat(_) | To::No, .. }) => {
                    if is_set(&value, row.default) {
                        self.not_implemented(&path);
                    }
                }
                Some(Row { to: To::Moot, .. }) => {}
                None => {
                    let siblings = CHANNEL_ROWS.iter().map(|r| r.path.to_owned()).collect();
                    self.unknown(&path, &key, siblings);
                }
            }
        }
        out
    }

    /// `channel.namespaces` as flat namespace entries.
    fn namespaces(&mut self, at: &str, value: Value) -> Result<Vec<Value>, ConfigError> {
        let Value::Array(entries) = value else {
            return Err(type_error(at, &value, "a sequence", &self.env_paths));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let path = format!("{at}[{i}]");
            let Value::Object(mut entry) = entry else {
                return Err(type_error(&path, &entry, "a map", &self.env_paths));
            };
            let mut flat = Map::new();
            if let Some(name) = entry.remove("name") {
                flat.insert("name".into(), name);
            }
            for (key, (_, value)) in self.channel_options(&path, entry) {
                flat.insert(key, value);
            }
            out.push(Value::Object(flat));
        }
        Ok(out)
    }

    fn proxy(&mut self, at: &str, flat_prefix: &str, has_enabled: bool, value: Value) -> Result<(), ConfigError> {
        let Value::Object(mut object) = value else {
            return Err(type_error(at, &value, "a map", &self.env_paths));
        };
        let enabled = object.remove("enabled");
        let on = if has_enabled {
            enabled.as_ref().is_some_and(|e| !is_zero(e, 0))
        } else {
            at != "rpc.proxy" || self.rpc_proxy_on
        };
        if !on {
            return Ok(());
        }
        // `http` holds more options one level down.
        if let Some(http) = object.remove("http") {
            let Value::Object(http) = http else {
                return Err(type_error(&format!("{at}.http"), &http, "a map", &self.env_paths));
            };
            for (key, value) in http {
                object.insert(format!("http.{key}"), value);
            }
        }
        let endpoint_set = object.get("endpoint").is_some_and(|e| !is_zero(e, 0));
        if has_enabled && !endpoint_set {
            return Err(ConfigError::Invalid {
                key: format!("{at}.endpoint"),
                message: format!("{at}.enabled is true but no endpoint is set"),
            });
        }
        for (key, value) in object {
            let path = format!("{at}.{key}");
            match PROXY_ROWS.iter().find(|(name, _, _, _)| *name == key) {
                Some((_, ProxyTo::Own(suffix), default, _)) => {
                    let flat = format!("{flat_prefix}_{suffix}");
                    if self.defaults.contains_key(&flat) {
                        self.put(&flat, &path, value);
                    } else if is_set(&value, default) {
                        self.not_implemented(&path);
                    }
                }
                Some((_, ProxyTo::Shared(flat), _, _)) => self.shared.entry(flat).or_default().push((path, value)),
                Some((_, ProxyTo::No, default, _)) => {
                    if is_set(&value, default) {
                        self.not_implemented(&path);
                    }
                }
                None => {
                    let siblings = PROXY_ROWS.iter().map(|(n, _, _, _)| (*n).to_owned()).collect();
                    self.unknown(&path, &key, siblings);
                }
            }
        }
        Ok(())
    }

    /// v5 has one `proxy_http_headers`, `proxy_static_http_headers` and
    /// `proxy_include_connection_meta` for every proxy: the union of what the proxies ask.
    fn merge_shared(&mut self) {
        for (flat, values) in std::mem::take(&mut self.shared) {
            let Some((first_path, _)) = values.first().cloned() else { continue };
            if !self.defaults.contains_key(flat) {
                let default = PROXY_ROWS.iter().find(|r| r.1 == ProxyTo::Shared(flat)).map_or("", |r| r.2);
                for (path, value) in &values {
                    if is_set(value, default) {
                        self.not_implemented(path);
                    }
                }
                continue;
            }
            let differ = values.windows(2).any(|w| w[0].1 != w[1].1);
            if differ {
                let paths: Vec<&str> = values.iter().map(|(p, _)| p.as_str()).collect();
                self.warnings.push(format!(
                    "config keys {}: rotor has one {flat} for every proxy; using them all together",
                    paths.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
                ));
            }
            let mut merged = values[0].1.clone();
            for (_, value) in values.into_iter().skip(1) {
                match (&mut merged, value) {
                    (Value::Array(all), Value::Array(more)) => {
                        for item in more {
                            if !all.contains(&item) {
                                all.push(item);
                            }
                        }
                    }
                    (Value::Object(all), Value::Object(more)) => all.extend(more),
                    (Value::Bool(all), Value::Bool(more)) => *all |= more,
                    // A wrong type: keep the first, whose type error names its path.
                    _ => {}
                }
            }
            self.put(flat, &first_path, merged);
        }
    }

    /// `CENTRIFUGO_CHANNEL_NAMESPACES` (a JSON array or space-separated names) and
    /// `CENTRIFUGO_CHANNEL_NAMESPACES_<NAME>_<OPTION>`.
    fn apply_namespace_env(&mut self, env: &EnvDoc) -> Result<(), ConfigError> {
        let list_path = "channel.namespaces";
        if let Some((var, raw)) = &env.namespace_list {
            self.env_paths.insert(list_path.into(), var.clone());
            if raw.trim_start().starts_with('[') {
                let value: Value = serde_json::from_str(raw).map_err(|e| ConfigError::Type {
                    key: list_path.into(),
                    env_var: Some(var.clone()),
                    message: format!("invalid JSON: {e}"),
                })?;
                let namespaces = self.namespaces(list_path, value)?;
                self.flat.insert("namespaces".into(), Value::Array(namespaces));
            } else {
                let entries = self.flat.entry("namespaces").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(entries) = entries {
                    for name in raw.split_whitespace() {
                        if !entries.iter().any(|e| e.get("name").and_then(Value::as_str) == Some(name)) {
                            entries.push(serde_json::json!({ "name": name }));
                        }
                    }
                }
            }
            self.env_by_flat.insert("namespaces".into(), var.clone());
            self.origin.insert("namespaces".into(), list_path.into());
        }
        let mut used = BTreeSet::new();
        let mut not_implemented = Vec::new();
        if let Some(Value::Array(entries)) = self.flat.get_mut("namespaces") {
            for (i, entry) in entries.iter_mut().enumerate() {
                let Some(name) = entry.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
                let Value::Object(entry) = entry else { continue };
                let base = format!("{CENTRIFUGO_PREFIX}CHANNEL_NAMESPACES_{}_", name_for_env(&name));
                for row in CHANNEL_ROWS {
                    let var = format!("{base}{}", row.path.to_ascii_uppercase());
                    let Some(raw) = env.namespace_vars.get(&var) else { continue };
                    used.insert(var.clone());
                    let path = format!("{list_path}[{i}].{}", row.path);
                    match row.to {
                        To::Flat(flat) if self.channel_keys.contains(flat) => {
                            let kind = object_of(&ChannelOptions::default()).get(flat).cloned().unwrap_or(Value::Null);
                            entry.insert(flat.to_owned(), typed(raw, &kind));
                            self.env_by_flat.insert(format!("namespaces[{i}].{flat}"), var.clone());
                        }
                        To::Moot => {}
                        _ => {
                            if is_set(&typed(raw, &default_value(row.default)), row.default) {
                                not_implemented.push((path, var));
                            }
                        }
                    }
                }
            }
        }
        for (path, var) in not_implemented {
            self.env_paths.insert(path.clone(), var);
            self.not_implemented(&path);
        }
        for var in env.namespace_vars.keys().filter(|v| !used.contains(*v)) {
            self.warnings.push(format!(
                "unknown environment variable {var}: no configured namespace and option by that name \
                 (namespaces come from channel.namespaces or {CENTRIFUGO_PREFIX}CHANNEL_NAMESPACES)"
            ));
        }
        Ok(())
    }
}

/// Paths the walker handles itself.
fn special_paths() -> impl Iterator<Item = &'static str> {
    ["channel.without_namespace", "channel.namespaces"].into_iter().chain(PROXIES.iter().map(|(p, _, _)| *p))
}

/// The names of the options directly under `prefix` (for "did you mean").
fn children_of(prefix: &str) -> Vec<String> {
    let all = ROWS.iter().map(|r| r.path).chain(SECTIONS.iter().map(|(p, _)| *p)).chain(special_paths());
    let mut names = BTreeSet::new();
    for path in all {
        let rest =
            if prefix.is_empty() { Some(path) } else { path.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')) };
        if let Some(rest) = rest {
            names.insert(rest.split('.').next().unwrap_or(rest).to_owned());
        }
    }
    names.into_iter().collect()
}

/// Sets `path` (dotted, of table depth) in `doc`, making objects on the way.
fn insert_path(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut at = doc;
    for part in parts {
        let slot = at.entry(part).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        at = next;
    }
    at.insert(last.to_owned(), value);
}
