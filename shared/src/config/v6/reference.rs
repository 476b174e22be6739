//! What `rotor defaultconfig --layout v6` and `rotor configdoc` print.

use super::*;

/// The defaults of every option rotor implements, in the v6 layout (`rotor defaultconfig
/// --layout v6`). Loads back to `Config::default()` without a warning.
pub fn default_document() -> Value {
    let defaults = object_of(&Config::default());
    let channel_defaults = object_of(&ChannelOptions::default());
    let mut doc = Map::new();
    for row in ROWS {
        if let To::Flat(flat) = row.to {
            if let Some(value) = defaults.get(flat) {
                insert_path(&mut doc, row.path, value.clone());
            }
        }
    }
    for row in CHANNEL_ROWS {
        if let To::Flat(flat) = row.to {
            if let Some(value) = channel_defaults.get(flat) {
                insert_path(&mut doc, &format!("channel.without_namespace.{}", row.path), value.clone());
            }
        }
    }
    insert_path(&mut doc, "channel.namespaces", Value::Array(Vec::new()));
    for (at, prefix, has_enabled) in PROXIES {
        if !defaults.contains_key(&format!("{prefix}_endpoint")) {
            continue;
        }
        if *has_enabled {
            insert_path(&mut doc, &format!("{at}.enabled"), Value::Bool(false));
        }
        if *at == "rpc.proxy" {
            insert_path(&mut doc, "rpc.without_namespace.proxy_enabled", Value::Bool(false));
        }
        for (name, to, _, _) in PROXY_ROWS {
            let flat = match to {
                ProxyTo::Own(suffix) => format!("{prefix}_{suffix}"),
                ProxyTo::Shared(flat) => (*flat).to_owned(),
                ProxyTo::No => continue,
            };
            if let Some(value) = defaults.get(&flat) {
                insert_path(&mut doc, &format!("{at}.{name}"), value.clone());
            }
        }
    }
    Value::Object(doc)
}

/// One line of `rotor configdoc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDoc {
    /// v6 path; empty when the option has none (rotor's own, or set through `ROTOR_*` only).
    pub v6: String,
    /// Flat v5 key; empty when not implemented.
    pub v5: String,
    /// Default as JSON text.
    pub default: String,
    pub meaning: String,
}

/// Every option: those rotor implements (with both names), then the v6 options it accepts but
/// does not implement (`v5` empty).
pub fn reference() -> Vec<KeyDoc> {
    let defaults = object_of(&Config::default());
    let channel_defaults = object_of(&ChannelOptions::default());
    let mut out = Vec::new();
    let mut covered = BTreeSet::new();
    let mut missing = Vec::new();
    let mut doc = |v6: String, flat: &str, known: Option<&Value>, fallback: &str, meaning: &str| match known {
        Some(value) => {
            covered.insert(flat.to_owned());
            out.push(KeyDoc { v6, v5: flat.to_owned(), default: value.to_string(), meaning: meaning.to_owned() });
        }
        None => missing.push(KeyDoc {
            v6,
            v5: String::new(),
            default: default_value(fallback).to_string(),
            meaning: meaning.to_owned(),
        }),
    };
    for row in ROWS {
        let known = if let To::Flat(flat) = row.to { defaults.get(flat) } else { None };
        let flat = if let To::Flat(flat) = row.to { flat } else { "" };
        if row.to != To::Moot {
            doc(row.path.to_owned(), flat, known, row.default, row.doc);
        }
    }
    for row in CHANNEL_ROWS {
        let known = if let To::Flat(flat) = row.to { channel_defaults.get(flat) } else { None };
        let flat = if let To::Flat(flat) = row.to { flat } else { "" };
        if row.to != To::Moot {
            let v6 = format!("channel.without_namespace.{0} | channel.namespaces[].{0}", row.path);
            doc(v6, flat, known, row.default, row.doc);
        }
    }
    for (at, prefix, _) in PROXIES {
        for (name, to, default, meaning) in PROXY_ROWS {
            let flat = match to {
                ProxyTo::Own(suffix) => format!("{prefix}_{suffix}"),
                ProxyTo::Shared(flat) => (*flat).to_owned(),
                ProxyTo::No => String::new(),
            };
            doc(format!("{at}.{name}"), &flat, defaults.get(&flat), default, meaning);
        }
    }
    // rotor's own keys (no v6 name): set them through ROTOR_<KEY>.
    for (flat, value) in &defaults {
        if flat != "namespaces" && !covered.contains(flat) && !channel_defaults.contains_key(flat) {
            out.push(KeyDoc {
                v6: String::new(),
                v5: flat.clone(),
                default: value.to_string(),
                meaning: "rotor's own option (no v6 name): set it in a v5 file or as ROTOR_<KEY>".into(),
            });
        }
    }
    out.push(KeyDoc {
        v6: "channel.namespaces".into(),
        v5: "namespaces".into(),
        default: "[]".into(),
        meaning: "namespaces: {name, <channel options>}; channels \"<name>:…\" use them".into(),
    });
    for (path, _) in SECTIONS {
        missing.push(KeyDoc {
            v6: (*path).to_owned(),
            v5: String::new(),
            default: String::new(),
            meaning: "section".into(),
        });
    }
    out.extend(missing);
    out
}

/// Every v6 option and section rotor accepts but does not implement (for the README and
/// `configdoc`).
pub fn not_implemented() -> Vec<String> {
    reference().into_iter().filter(|d| d.v5.is_empty() && !d.v6.is_empty()).map(|d| d.v6).collect()
}
