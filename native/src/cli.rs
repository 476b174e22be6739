//! Command-line parsing, configuration loading, and the token tools.

use std::net::SocketAddr;
use std::path::Path;

use clap::{Parser, Subcommand};
use serde_json::json;
use shared::auth::{issue_hs256, KeySet, TokenVerifier};
use shared::config::Config;

use crate::engine::{now, random_u64};

#[derive(Parser)]
#[command(name = "rotor", version, about = "A real-time messaging server that speaks Centrifugo's protocols")]
pub struct Args {
    /// Configuration file (JSON, Centrifugo v5 flat keys). Without it rotor runs a
    /// development configuration with every transport on and fresh secrets.
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
    Defaultconfig,
    /// Print the version.
    Version,
}

pub struct Loaded {
    pub config: Config,
    pub embedded: bool,
    /// Unknown keys and the like, for the log once it is set up.
    pub warnings: Vec<String>,
}

const EMBEDDED: &str = include_str!("default.json");

/// Loads the configuration: the file given, or the embedded development default with fresh
/// secrets. `ROTOR_<KEY>` environment variables override either.
pub fn load(path: Option<&str>) -> Result<Loaded, String> {
    let (text, embedded) = match path {
        Some(p) => (std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {p}: {e}"))?, false),
        None => (EMBEDDED.to_owned(), true),
    };
    // The tests' timeout override is no configuration key.
    let env = std::env::vars().filter(|(k, _)| k.starts_with("ROTOR_") && k != crate::timeouts::TIMEOUTS_ENV);
    let loaded = Config::from_json_str(&text, env).map_err(|e| match path {
        Some(p) => format!("config file {p}: {e}"),
        None => e.to_string(),
    })?;
    let mut config = loaded.config;
    if embedded {
        if config.token_hmac_secret_key.is_empty() {
            config.token_hmac_secret_key = random_hex(32);
        }
        if config.api_key.is_empty() {
            config.api_key = random_uuid();
        }
    }
    Ok(Loaded { config, embedded, warnings: loaded.warnings })
}

/// For the token tools: the file given, else `config.json` when it exists, else an error.
fn load_for_tokens(path: Option<&str>) -> Result<Config, String> {
    let path = match path {
        Some(p) => p.to_owned(),
        None if Path::new("config.json").exists() => "config.json".to_owned(),
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
    if !embedded {
        return;
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
