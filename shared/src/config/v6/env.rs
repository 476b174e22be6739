//! `CENTRIFUGO_*` variables, read by Centrifugo v6's rules into a v6 document.

use super::*;

/// Centrifugo's `NameForEnv`: `.` and `-` become `_`, then upper case.
pub(super) fn name_for_env(name: &str) -> String {
    name.replace(['.', '-'], "_").to_ascii_uppercase()
}

/// `CENTRIFUGO_` + the path with `.` as `_`, upper case.
pub fn env_name(path: &str) -> String {
    format!("{CENTRIFUGO_PREFIX}{}", path.replace('.', "_").to_ascii_uppercase())
}

/// Go's `strconv.ParseBool`.
fn go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An environment value typed like `kind` (a default): Centrifugo's rules. What does not parse
/// stays text, so the loader's type error names the variable.
pub(super) fn typed(raw: &str, kind: &Value) -> Value {
    match kind {
        Value::Bool(_) => go_bool(raw).map_or_else(|| Value::String(raw.to_owned()), Value::Bool),
        Value::Number(_) => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.trim().parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| Value::String(raw.to_owned())),
        Value::Array(_) if raw.trim_start().starts_with('[') => {
            serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
        }
        Value::Array(_) => raw.split_whitespace().map(Value::from).collect(),
        Value::Object(_) => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
        Value::String(_) | Value::Null => Value::String(raw.to_owned()),
    }
}

/// The `CENTRIFUGO_*` variables as a v6 document (namespaces apart).
pub(super) struct EnvDoc {
    pub(super) doc: Map<String, Value>,
    /// v6 path → variable.
    pub(super) origin: BTreeMap<String, String>,
    pub(super) namespace_list: Option<(String, String)>,
    pub(super) namespace_vars: BTreeMap<String, String>,
    pub(super) warnings: Vec<String>,
}

/// Every variable a v6 leaf answers to: name → (v6 path, the value's kind).
fn env_leaves(defaults: &Map<String, Value>) -> BTreeMap<String, (String, Value)> {
    let mut leaves = BTreeMap::new();
    let channel_defaults = object_of(&ChannelOptions::default());
    for row in ROWS {
        let kind = match row.to {
            To::Flat(flat) => defaults.get(flat).cloned().unwrap_or_else(|| default_value(row.default)),
            _ => default_value(row.default),
        };
        leaves.insert(env_name(row.path), (row.path.to_owned(), kind));
    }
    for row in CHANNEL_ROWS {
        let path = format!("channel.without_namespace.{}", row.path);
        let kind = match row.to {
            To::Flat(flat) => channel_defaults.get(flat).cloned().unwrap_or_else(|| default_value(row.default)),
            _ => default_value(row.default),
        };
        leaves.insert(env_name(&path), (path, kind));
    }
    for (at, _, has_enabled) in PROXIES {
        if *has_enabled {
            let path = format!("{at}.enabled");
            leaves.insert(env_name(&path), (path, Value::Bool(false)));
        }
        for (name, _, default, _) in PROXY_ROWS {
            let path = format!("{at}.{name}");
            leaves.insert(env_name(&path), (path, default_value(default)));
        }
    }
    leaves
}

impl EnvDoc {
    pub(super) fn from_env(env: &[(String, String)], defaults: &Map<String, Value>) -> EnvDoc {
        let leaves = env_leaves(defaults);
        let mut doc = EnvDoc {
            doc: Map::new(),
            origin: BTreeMap::new(),
            namespace_list: None,
            namespace_vars: BTreeMap::new(),
            warnings: Vec::new(),
        };
        // Sorted: warnings do not depend on the host's order.
        let vars: BTreeMap<&str, &str> = env
            .iter()
            .filter(|(name, _)| name.starts_with(CENTRIFUGO_PREFIX))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let namespaces_var = env_name("channel.namespaces");
        for (name, raw) in vars {
            // Empty values count as unset, as in Centrifugo.
            if raw.is_empty() {
                continue;
            }
            if name == namespaces_var {
                doc.namespace_list = Some((name.to_owned(), raw.to_owned()));
                continue;
            }
            if name.starts_with(&format!("{namespaces_var}_")) {
                doc.namespace_vars.insert(name.to_owned(), raw.to_owned());
                continue;
            }
            if let Some((path, kind)) = leaves.get(name) {
                insert_path(&mut doc.doc, path, typed(raw, kind));
                doc.origin.insert(path.clone(), name.to_owned());
                continue;
            }
            if let Some((section, gate)) = SECTIONS.iter().find(|(p, _)| name.starts_with(&format!("{}_", env_name(p))))
            {
                if *gate != Gate::Never && !matches!(go_bool(raw), Some(false)) {
                    doc.warnings.push(format!(
                        "environment variable {name} (config section \"{section}\") is not implemented by rotor: ignored"
                    ));
                }
                continue;
            }
            // Kubernetes adds CENTRIFUGO_PORT, CENTRIFUGO_SERVICE_HOST, …; CENTRIFUGO_VAR_* are
            // for values substituted elsewhere. Centrifugo skips both.
            let rest = &name[CENTRIFUGO_PREFIX.len() - 1..];
            if rest.contains("_PORT") || rest.contains("_SERVICE_") || name.starts_with("CENTRIFUGO_VAR_") {
                continue;
            }
            let mut warning = format!("unknown environment variable {name}");
            let flat = name[CENTRIFUGO_PREFIX.len()..].to_ascii_lowercase();
            if let Some(path) = defaults.contains_key(&flat).then(|| v6_name_of(&flat)).flatten() {
                warning.push_str(&format!(
                    ": a Centrifugo v5 name; v6 calls it {} (or use {}{})",
                    env_name(&path),
                    crate::config::ENV_PREFIX,
                    flat.to_ascii_uppercase()
                ));
            } else if let Some(near) = nearest(name, leaves.keys()) {
                warning.push_str(&format!(" (did you mean {near}?)"));
            }
            doc.warnings.push(warning);
        }
        doc
    }
}
