//! Command-line parsing, configuration loading, and the token tools.

use std::net::SocketAddr;
use std::path::Path;

use clap::{Parser, Subcommand};
use serde_json::json;
use shared::auth::{issue_hs256, KeySet, TokenVerifier};
use shared::config::v6::CENTRIFUGO_PREFIX;
use shared::config::Config;

use crate::config_file::{self, Format};
use crate::engine::{now, random_u64};

#[derive(Parser)]
#[command(name = "rotor", version, about = "A real-time messaging server that speaks Centrifugo's protocols")]
pub struct Args {
    /// Configuration file: JSON, YAML (.yaml, .yml) or TOML (.toml), with Centrifugo v5's flat
    /// keys or v6's nested ones. Without it rotor runs a development configuration with every
    /// transport on and fresh secrets, or, when CENTRIFUGO_* variables are set, Centrifugo's
    /// defaults with those variables.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<String>,
    /// Port to listen on (config key `port`, default 8000).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on (config key `address`; empty = all interfaces).
    #[arg(long)]
    pub address: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Write a new configuration file with a random HMAC secret and API key.
    Genconfig {
        #[arg(short = 'c', long = "config", default_value = "config.json")]
        config: String,
    },
    /// Print an HS256 connection token for a user, signed with the configured secret.
    Gentoken {
        #[arg(short = 'c', long = "config")]
        config: Option<String>,
        #[arg(short = 'u', long = "user", default_value = "")]
        user: String,
        /// Seconds until the token expires (-1: never). Default: one week.
        #[arg(short = 't', long = "ttl", default_value_t = 604800, allow_negative_numbers = true)]
        ttl: i64,
        /// Print only the token.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
    },
    /// Check a connection token against the configured keys.
    Checktoken {
        #[arg(short = 'c', long = "config")]
        config: Option<String>,
        token: String,
    },
    /// Print every configuration key with its default value.
    Defaultconfig {
        /// `v5` (flat keys) or `v6` (nested keys, as Centrifugo v6 writes them).
        #[arg(long, default_value = "v5", value_parser = ["v5", "v6"])]
        layout: String,
        /// `json`, `yaml` or `toml`.
        #[arg(long, default_value = "json", value_parser = ["json", "yaml", "toml"])]
        format: String,
    },
    /// List every configuration key: its v6 and v5 names, default and meaning, then the
    /// Centrifugo v6 options rotor accepts but does not implement.
    Configdoc,
    /// Print the version.
    Version,
}

pub struct Loaded {
    pub config: Config,
    pub embedded: bool,
    /// Unknown keys and the like, for the log once it is set up.
    pub warnings: Vec<String>,
    /// Where the configuration came from and its layout, for the start-up log.
    pub source: String,
}

const EMBEDDED: &str = include_str!("default.json");

/// Loads the configuration: the file given (JSON, YAML or TOML, either layout), else
/// Centrifugo's defaults when `CENTRIFUGO_*` variables are set (as Centrifugo runs without a
/// file), else the embedded development default with fresh secrets. `CENTRIFUGO_*` and then
/// `ROTOR_<KEY>` environment variables override any of them.
pub fn load(path: Option<&str>) -> Result<Loaded, String> {
    // The tests' timeout override is no configuration key.
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            (k.starts_with("ROTOR_") && k != crate::timeouts::TIMEOUTS_ENV) || k.starts_with(CENTRIFUGO_PREFIX)
        })
        .collect();
    let from_env = path.is_none() && env.iter().any(|(k, _)| k.starts_with(CENTRIFUGO_PREFIX));
    let (text, format, embedded) = match path {
        Some(p) => (config_file::read(p)?, Format::of_path(p), false),
        None if from_env => (String::new(), Format::Json, false),
        None => (embedded_with_admin_secrets(), Format::Json, true),
    };
    let loaded = config_file::load(&text, format, env).map_err(|e| match path {
        Some(p) => format!("config file {p}: {e}"),
        None => e,
    })?;
    let source = match path {
        Some(p) => format!("config file {p}: {}, {}", format.name(), loaded.layout),
        None if from_env => "no config file: Centrifugo's defaults and CENTRIFUGO_* variables".to_owned(),
        None => "embedded development configuration".to_owned(),
    };
    let mut config = loaded.config;
    if embedded {
        if config.token_hmac_secret_key.is_empty() {
            config.token_hmac_secret_key = random_hex(32);
        }
        if config.api_key.is_empty() {
            config.api_key = random_uuid();
        }
    }
    Ok(Loaded { config, embedded, warnings: loaded.warnings, source })
}

/// The embedded development config with a fresh admin password and secret (its admin UI is
/// on, and a config with `admin` on needs both to load).
fn embedded_with_admin_secrets() -> String {
    let mut value: serde_json::Value = serde_json::from_str(EMBEDDED).expect("the embedded config is JSON");
    if let Some(object) = value.as_object_mut() {
        object.entry("admin_password").or_insert_with(|| random_hex(8).into());
        object.entry("admin_secret").or_insert_with(|| random_hex(32).into());
    }
    value.to_string()
}

/// `rotor defaultconfig`: every key with its default, in either layout and any format.
pub fn defaultconfig(layout: &str, format: &str) -> std::process::ExitCode {
    let document = match layout {
        "v6" => shared::config::v6::default_document(),
        _ => serde_json::to_value(Config::default()).unwrap_or_default(),
    };
    let format = match format {
        "yaml" => Format::Yaml,
        "toml" => Format::Toml,
        _ => Format::Json,
    };
    match config_file::render(&document, format) {
        Ok(text) => {
            println!("{}", text.trim_end());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rotor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `rotor configdoc`: every key with both names, default and meaning, then what is accepted
/// but not implemented.
pub fn configdoc() -> std::process::ExitCode {
    use std::fmt::Write;
    let reference = shared::config::v6::reference();
    let mut out = String::from(
        "rotor configuration keys. A file uses one layout: Centrifugo v6 (nested) or v5 (flat).\n\
         Environment: CENTRIFUGO_<V6 PATH with . as _> (e.g. CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY,\n\
         CENTRIFUGO_CHANNEL_NAMESPACES=\"chat news\" with CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE=true),\n\
         then ROTOR_<V5 KEY> (e.g. ROTOR_API_KEY), which wins.\n\n",
    );
    for doc in reference.iter().filter(|d| !d.v5.is_empty()) {
        let v6 = if doc.v6.is_empty() { "(no v6 name)" } else { doc.v6.as_str() };
        let _ = writeln!(out, "{v6}\n    v5: {}    default: {}\n    {}", doc.v5, doc.default, doc.meaning);
    }
    out.push_str("\nCentrifugo v6 options rotor accepts but does not implement (a warning when set):\n");
    for doc in reference.iter().filter(|d| d.v5.is_empty()) {
        let _ = writeln!(out, "{}", doc.v6);
    }
    print!("{out}");
    std::process::ExitCode::SUCCESS
}

/// For the token tools: the file given, else `config.json` when it exists, else the
/// `CENTRIFUGO_*` variables when set, else an error.
fn load_for_tokens(path: Option<&str>) -> Result<Config, String> {
    let path = match path {
        Some(p) => p.to_owned(),
        None if Path::new("config.json").exists() => "config.json".to_owned(),
        None if std::env::vars().any(|(k, _)| k.starts_with(CENTRIFUGO_PREFIX)) => return Ok(load(None)?.config),
        None => return Err("no configuration: pass -c config.json (create one with `rotor genconfig`)".into()),
    };
    let loaded = load(Some(&path))?;
    for warning in &loaded.warnings {
        eprintln!("rotor: warning: {warning}");
    }
    Ok(loaded.config)
}

pub fn genconfig(path: &str) -> std::process::ExitCode {
    if Path::new(path).exists() {
        eprintln!("rotor: {path} already exists; not overwriting it");
        return std::process::ExitCode::FAILURE;
    }
    let text = Config::genconfig_template(&random_hex(32), &random_uuid());
    match std::fs::write(path, text + "\n") {
        Ok(()) => {
            println!("configuration file {path} written");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rotor: cannot write {path}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub fn gentoken(path: Option<&str>, user: &str, ttl: i64, quiet: bool) -> std::process::ExitCode {
    let config = match load_for_tokens(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rotor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if config.token_hmac_secret_key.is_empty() {
        eprintln!("rotor: token_hmac_secret_key is not set in the configuration");
        return std::process::ExitCode::FAILURE;
    }
    let token = token_for(&config.token_hmac_secret_key, user, ttl);
    if quiet {
        println!("{token}");
    } else {
        let ttl_text =
            if ttl < 0 { "no expiration".to_owned() } else { format!("expiration TTL {}", go_duration(ttl as u64)) };
        println!("HMAC SHA-256 JWT for user \"{user}\" with {ttl_text}:\n{token}");
    }
    std::process::ExitCode::SUCCESS
}

pub fn token_for(secret: &str, user: &str, ttl: i64) -> String {
    let iat = now().as_secs();
    let claims = if ttl < 0 {
        json!({"sub": user, "iat": iat})
    } else {
        json!({"sub": user, "iat": iat, "exp": iat + ttl as u64})
    };
    issue_hs256(secret, &claims)
}

pub fn checktoken(path: Option<&str>, token: &str) -> std::process::ExitCode {
    let config = match load_for_tokens(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rotor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let keys = match KeySet::new(
        &config.token_hmac_secret_key,
        &config.token_rsa_public_key,
        &config.token_ecdsa_public_key,
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("rotor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let verifier = TokenVerifier::new(keys, &config.token_audience, &config.token_issuer, &config.token_user_id_claim);
    match verifier.verify_connect(token, now().as_millis()) {
        Ok(claims) => {
            let payload = payload_json(token).unwrap_or_else(|| "{}".into());
            let expiry = match claims.expires_at_ms {
                Some(at) => format!(" (expires in {})", go_duration(now().until(shared::Timestamp(at)) / 1000)),
                None => " (never expires)".into(),
            };
            println!("valid token for user \"{}\"{expiry}\npayload: {payload}", claims.user);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn payload_json(token: &str) -> Option<String> {
    use base64::Engine;
    let part = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

/// Durations the way Go prints them (`168h0m0s`), as Centrifugo's tools do.
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes.div_ceil(8)).map(|_| format!("{:016x}", random_u64())).collect::<String>()[..bytes * 2].to_owned()
}

fn random_uuid() -> String {
    let h = random_hex(16);
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

pub fn print_banner(config: &Config, local: SocketAddr, embedded: bool) {
    let base = format!("http://{local}");
    println!("rotor {} listening on {base}", env!("CARGO_PKG_VERSION"));
    let admin_url = admin_url(config, &base);
    if !embedded {
        if let Some(url) = admin_url {
            println!("admin web UI: {url}");
        }
        return;
    }
    if let Some(url) = admin_url {
        println!("\nAdmin web UI: {url}  (password: {})", config.admin_password);
    }
    let token = token_for(&config.token_hmac_secret_key, "user12", 3600);
    println!(
        "\nDevelopment configuration (no -c given): every transport on, fresh secrets.\n\
         \x20 API key:                {key}\n\
         \x20 HMAC secret:            {secret}\n\
         \x20 token for user12 (1 h): {token}\n\n\
         Try it:\n\
         \x20 curl -N -X POST {base}/connection/uni_http_stream -d '{{\"token\":\"{token}\"}}'\n\
         \x20 curl -N '{base}/connection/uni_sse?cf_connect=%7B%22token%22%3A%22{token}%22%7D'\n\
         \x20 curl -X POST {base}/api/publish -H 'Authorization: apikey {key}' -d '{{\"channel\":\"#user12\",\"data\":{{\"input\":\"hello\"}}}}'\n",
        key = config.api_key,
        secret = config.token_hmac_secret_key,
    );
    if config.prometheus {
        println!("\x20 curl {base}/metrics\n");
    }
}

/// Where the admin web UI is, when it is on.
fn admin_url(config: &Config, base: &str) -> Option<String> {
    let endpoints = shared::http::Endpoints::new(config).ok()?;
    endpoints.path(shared::http::Endpoint::AdminPage).map(|path| format!("{base}{path}"))
}
