//! rotor's configuration: Centrifugo v5's flat JSON keys, their defaults, and the lookups the
//! hub makes per channel.
//!
//! Keys keep the v5 flat names (`token_hmac_secret_key`, `uni_sse`, `history_size`, …) so a
//! Centrifugo v5 `config.json` loads unchanged. Loading is pure: the host reads the file and
//! hands over the environment as `(name, value)` pairs, because this crate reads neither
//! (it must build for `wasm32-unknown-unknown`).
//!
//! Channel options have two homes: the top level of the file (channels without a namespace)
//! and each entry of `namespaces`. serde's `flatten` models that shape, but it hides unknown
//! keys and error paths, so [`Config::from_json_str`] splits the document itself and decodes
//! each part separately; the derives stay for hosts that (de)serialize a `Config` directly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod v6;
mod v6_table;

pub use v6::Layout;

/// Per-channel behaviour: what a namespace (or the top level) allows and keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelOptions {
    pub presence: bool,
    pub join_leave: bool,
    pub force_push_join_leave: bool,
    pub history_size: u64,
    #[serde(with = "go_duration")]
    pub history_ttl: Duration,
    /// How long stream meta (epoch, top offset) outlives the last publication; zero means
    /// `global_history_meta_ttl`.
    #[serde(with = "go_duration")]
    pub history_meta_ttl: Duration,
    pub force_positioning: bool,
    pub allow_positioning: bool,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    /// `""` or `"stream"` replays missed publications; `"cache"` returns only the latest.
    pub force_recovery_mode: String,
    pub allow_subscribe_for_client: bool,
    pub allow_subscribe_for_anonymous: bool,
    pub allow_publish_for_client: bool,
    pub allow_publish_for_subscriber: bool,
    pub allow_publish_for_anonymous: bool,
    pub allow_presence_for_client: bool,
    pub allow_presence_for_subscriber: bool,
    pub allow_presence_for_anonymous: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_history_for_anonymous: bool,
    pub allow_user_limited_channels: bool,
    /// Channel names of the namespace must match it (Rust `regex` syntax, bounded in size).
    pub channel_regex: String,

    // Proxies to the application backend for this namespace's channels (each needs its
    // `proxy_*_endpoint`).
    pub proxy_subscribe: bool,
    pub proxy_publish: bool,
    pub proxy_sub_refresh: bool,
    /// Delta types subscribers may ask for: `[]` or `["fossil"]`.
    pub allowed_delta_types: Vec<String>,
    /// Every publication into the namespace is sent as a delta where subscribers negotiated one.
    pub delta_publish: bool,
}

impl ChannelOptions {
    /// A channel keeps a stream only with both a size and a TTL (Centrifugo's rule).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
}

/// Most bytes a compiled `channel_regex` may take (the program, and each lazy DFA's cache).
pub const CHANNEL_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a namespace's `channel_regex`, bounded: matching is linear in the name (the
/// `regex` crate has no backtracking), and a pattern whose program would exceed
/// [`CHANNEL_REGEX_SIZE_LIMIT`] (`a{1000}{1000}`) is refused at start-up, naming the limit.
pub fn compile_channel_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(CHANNEL_REGEX_SIZE_LIMIT)
        .dfa_size_limit(CHANNEL_REGEX_SIZE_LIMIT)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("the pattern compiles to more than {limit} bytes: simplify it")
            }
            e => format!("not a valid regular expression: {e}"),
        })
}

/// Channels named `<name>:<rest>` get these options instead of the top-level ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespace {
    pub name: String,
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// The whole server configuration, keyed by Centrifugo v5's flat names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    // Connection tokens.
    pub token_hmac_secret_key: String,
    /// PEM.
    pub token_rsa_public_key: String,
    /// PEM.
    pub token_ecdsa_public_key: String,
    pub token_audience: String,
    pub token_issuer: String,
    /// Claim holding the user id instead of `sub`; empty means `sub`.
    pub token_user_id_claim: String,

    // Subscription tokens: own keys only when `separate_subscription_token_config` is set.
    pub separate_subscription_token_config: bool,
    pub subscription_token_hmac_secret_key: String,
    pub subscription_token_rsa_public_key: String,
    pub subscription_token_ecdsa_public_key: String,
    pub subscription_token_audience: String,
    pub subscription_token_issuer: String,

    // Server HTTP API.
    pub api_key: String,
    pub api_insecure: bool,
    /// `""`: errors in a 200 body; `"transport"`: errors as HTTP statuses.
    pub api_error_mode: String,
    pub api_handler_prefix: String,
    pub api_disable: bool,

    // Who may connect.
    /// Empty: only requests without an `Origin` header (i.e. no browsers).
    pub allowed_origins: Vec<String>,
    pub client_insecure: bool,
    pub allow_anonymous_connect_without_token: bool,
    pub disallow_anonymous_connection_tokens: bool,

    // Timing.
    #[serde(with = "go_duration")]
    pub ping_interval: Duration,
    #[serde(with = "go_duration")]
    pub pong_timeout: Duration,
    #[serde(with = "go_duration")]
    pub client_stale_close_delay: Duration,
    #[serde(with = "go_duration")]
    pub client_expired_close_delay: Duration,
    #[serde(with = "go_duration")]
    pub client_expired_sub_close_delay: Duration,
    #[serde(with = "go_duration")]
    pub client_presence_update_interval: Duration,
    #[serde(with = "go_duration")]
    pub client_channel_position_check_delay: Duration,
    #[serde(with = "go_duration")]
    pub global_history_meta_ttl: Duration,
    #[serde(with = "go_duration")]
    pub global_presence_ttl: Duration,

    // Limits; a zero connection limit means unlimited.
    /// Pending outgoing bytes per connection before it is dropped as slow.
    pub client_queue_max_size: u64,
    pub client_channel_limit: u64,
    pub client_user_connection_limit: u64,
    pub client_connection_limit: u64,
    pub client_history_max_publication_limit: u64,
    pub client_recovery_max_publication_limit: u64,
    pub client_connect_include_server_time: bool,

    // Personal channel (`#<user>`), subscribed server-side on connect.
    pub user_subscribe_to_personal: bool,
    pub user_personal_channel_namespace: String,
    pub user_personal_single_connection: bool,

    // Channel name grammar. An empty marker switches its feature off, as in Centrifugo.
    pub channel_max_length: u64,
    pub channel_private_prefix: String,
    pub channel_namespace_boundary: String,
    pub channel_user_boundary: String,
    pub channel_user_separator: String,

    // Transports.
    pub websocket_disable: bool,
    pub websocket_message_size_limit: u64,
    #[serde(with = "go_duration")]
    pub websocket_write_timeout: Duration,
    pub uni_websocket: bool,
    pub uni_websocket_message_size_limit: u64,
    pub uni_sse: bool,
    pub uni_sse_max_request_body_size: u64,
    pub uni_http_stream: bool,
    pub uni_http_stream_max_request_body_size: u64,
    pub http_stream: bool,
    pub http_stream_max_request_body_size: u64,
    pub sse: bool,
    pub sse_max_request_body_size: u64,
    pub emulation_handler_prefix: String,
    pub emulation_max_request_body_size: u64,
    // Where each endpoint is served (Centrifugo's `*_handler_prefix`; see `crate::http`).
    pub websocket_handler_prefix: String,
    pub http_stream_handler_prefix: String,
    pub sse_handler_prefix: String,
    pub uni_http_stream_handler_prefix: String,
    pub uni_sse_handler_prefix: String,
    pub uni_websocket_handler_prefix: String,
    pub health_handler_prefix: String,

    // The node.
    pub port: u16,
    /// Listen address; empty leaves the choice to the host (the native server binds all
    /// interfaces, as Centrifugo does).
    pub address: String,
    /// Node name; empty lets the host derive one (Centrifugo uses `hostname_port`).
    pub name: String,
    /// `"memory"`; other engines are a host concern.
    pub engine: String,

    /// Options for channels without a namespace.
    #[serde(flatten)]
    pub channel: ChannelOptions,
    pub namespaces: Vec<Namespace>,

    // Admin web UI (`crate::admin`): the page at `admin_handler_prefix` (`/` when empty),
    // `<prefix>/admin/auth` (password → token) and `<prefix>/admin/api`.
    pub admin: bool,
    pub admin_password: String,
    /// Signs the admin tokens (HMAC-SHA256).
    pub admin_secret: String,
    /// Anyone may use the admin UI and its API without a password: only behind a trusted proxy.
    pub admin_insecure: bool,
    pub admin_handler_prefix: String,

    // Proxies to the application backend (Centrifugo's HTTP proxies, `crate::proxy`): an
    // empty endpoint turns that proxy off. `proxy_http_headers` lists the client request
    // headers forwarded (any case); `proxy_static_http_headers` are added to every call.
    pub proxy_connect_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_connect_timeout: Duration,
    pub proxy_refresh_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_refresh_timeout: Duration,
    pub proxy_subscribe_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_subscribe_timeout: Duration,
    pub proxy_publish_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_publish_timeout: Duration,
    pub proxy_rpc_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_rpc_timeout: Duration,
    pub proxy_sub_refresh_endpoint: String,
    #[serde(with = "go_duration")]
    pub proxy_sub_refresh_timeout: Duration,
    pub proxy_http_headers: Vec<String>,
    pub proxy_static_http_headers: BTreeMap<String, String>,
    pub proxy_include_connection_meta: bool,
    /// Ask the connect proxy even when the client brings a connection token (which is then
    /// not used): the backend decides every connection. Off: only token-less connects go to it.
    pub proxy_connect_always: bool,

    // Operating rotor: logs, metrics, shutdown.
    /// `none`, `trace`, `debug`, `info`, `warn` or `error`.
    pub log_level: String,
    /// Write logs to this file (appended) instead of stderr; empty: stderr.
    pub log_file: String,
    /// Serve Prometheus metrics at `prometheus_handler_prefix`.
    pub prometheus: bool,
    /// Where metrics are served (Centrifugo v6's `prometheus.handler_prefix`).
    pub prometheus_handler_prefix: String,
    /// How long a graceful shutdown may take before the process exits anyway.
    #[serde(with = "go_duration")]
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        const BODY_LIMIT: u64 = 65536;
        let secs = Duration::from_secs;
        Config {
            token_hmac_secret_key: String::new(),
            token_rsa_public_key: String::new(),
            token_ecdsa_public_key: String::new(),
            token_audience: String::new(),
            token_issuer: String::new(),
            token_user_id_claim: String::new(),
            separate_subscription_token_config: false,
            subscription_token_hmac_secret_key: String::new(),
            subscription_token_rsa_public_key: String::new(),
            subscription_token_ecdsa_public_key: String::new(),
            subscription_token_audience: String::new(),
            subscription_token_issuer: String::new(),
            api_key: String::new(),
            api_insecure: false,
            api_error_mode: String::new(),
            api_handler_prefix: "/api".into(),
            api_disable: false,
            allowed_origins: Vec::new(),
            client_insecure: false,
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: secs(25),
            pong_timeout: secs(8),
            client_stale_close_delay: secs(10),
            client_expired_close_delay: secs(25),
            client_expired_sub_close_delay: secs(25),
            client_presence_update_interval: secs(27),
            client_channel_position_check_delay: secs(40),
            global_history_meta_ttl: secs(720 * 3600),
            global_presence_ttl: secs(60),
            client_queue_max_size: 1_048_576,
            client_channel_limit: 128,
            client_user_connection_limit: 0,
            client_connection_limit: 0,
            client_history_max_publication_limit: 300,
            client_recovery_max_publication_limit: 300,
            client_connect_include_server_time: false,
            user_subscribe_to_personal: false,
            user_personal_channel_namespace: String::new(),
            user_personal_single_connection: false,
            channel_max_length: 255,
            channel_private_prefix: "$".into(),
            channel_namespace_boundary: ":".into(),
            channel_user_boundary: "#".into(),
            channel_user_separator: ",".into(),
            websocket_disable: false,
            websocket_message_size_limit: BODY_LIMIT,
            websocket_write_timeout: secs(1),
            uni_websocket: false,
            uni_websocket_message_size_limit: BODY_LIMIT,
            uni_sse: false,
            uni_sse_max_request_body_size: BODY_LIMIT,
            uni_http_stream: false,
            uni_http_stream_max_request_body_size: BODY_LIMIT,
            http_stream: false,
            http_stream_max_request_body_size: BODY_LIMIT,
            sse: false,
            sse_max_request_body_size: BODY_LIMIT,
            emulation_handler_prefix: "/emulation".into(),
            emulation_max_request_body_size: BODY_LIMIT,
            websocket_handler_prefix: "/connection/websocket".into(),
            http_stream_handler_prefix: "/connection/http_stream".into(),
            sse_handler_prefix: "/connection/sse".into(),
            uni_http_stream_handler_prefix: "/connection/uni_http_stream".into(),
            uni_sse_handler_prefix: "/connection/uni_sse".into(),
            uni_websocket_handler_prefix: "/connection/uni_websocket".into(),
            health_handler_prefix: "/health".into(),
            port: 8000,
            address: String::new(),
            name: String::new(),
            engine: "memory".into(),
            channel: ChannelOptions::default(),
            namespaces: Vec::new(),
            admin: false,
            admin_password: String::new(),
            admin_secret: String::new(),
            admin_insecure: false,
            admin_handler_prefix: String::new(),

            proxy_connect_endpoint: String::new(),
            proxy_connect_timeout: secs(1),
            proxy_refresh_endpoint: String::new(),
            proxy_refresh_timeout: secs(1),
            proxy_subscribe_endpoint: String::new(),
            proxy_subscribe_timeout: secs(1),
            proxy_publish_endpoint: String::new(),
            proxy_publish_timeout: secs(1),
            proxy_rpc_endpoint: String::new(),
            proxy_rpc_timeout: secs(1),
            proxy_sub_refresh_endpoint: String::new(),
            proxy_sub_refresh_timeout: secs(1),
            proxy_http_headers: Vec::new(),
            proxy_static_http_headers: BTreeMap::new(),
            proxy_include_connection_meta: false,
            proxy_connect_always: false,
            log_level: "info".into(),
            log_file: String::new(),
            prometheus: false,
            prometheus_handler_prefix: "/metrics".into(),
            shutdown_timeout: secs(30),
        }
    }
}

/// A parsed configuration and what was ignored on the way.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and unknown `ROTOR_` variables: likely typos, so the host should show them.
    pub warnings: Vec<String>,
    /// The layout the document used (the host says it at start-up).
    pub layout: Layout,
}

/// Why a configuration was refused. `Display` names the key (or variable) and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not JSON.
    Syntax { line: usize, column: usize, message: String },
    /// The text is JSON but not an object of keys.
    NotAnObject { found: &'static str },
    /// A value has the wrong type or shape. `key` is a path such as `namespaces[0].history_ttl`;
    /// `env_var` is set when the value came from the environment.
    Type { key: String, env_var: Option<String>, message: String },
    /// A value is readable but not allowed.
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// The key path at fault, if the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Type { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Syntax { .. } | ConfigError::NotAnObject { .. } => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax { line, column, message } => {
                write!(f, "invalid JSON at line {line}, column {column}: {message}")
            }
            ConfigError::NotAnObject { found } => {
                write!(f, "the configuration must be a JSON object of keys, found {found}")
            }
            ConfigError::Type { key, env_var: Some(var), message } => {
                write!(f, "environment variable {var} (config key \"{key}\"): {message}")
            }
            ConfigError::Type { key, env_var: None, message } | ConfigError::Invalid { key, message } => {
                write!(f, "config key \"{key}\": {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// A channel names a namespace that is not configured (protocol error 102 "unknown channel").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownNamespace {
    pub namespace: String,
}

impl fmt::Display for UnknownNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown namespace \"{}\"", self.namespace)
    }
}

impl std::error::Error for UnknownNamespace {}

/// Environment variables overriding top-level keys are this prefix + the upper-cased key.
pub const ENV_PREFIX: &str = "ROTOR_";

/// The values of `log_level`.
pub const LOG_LEVELS: [&str; 6] = ["none", "trace", "debug", "info", "warn", "error"];

impl Config {
    /// What `log_level` lets through (validated at load: anything else is `info`).
    pub fn log_filter(&self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self.log_level.as_str() {
            "none" => LevelFilter::OFF,
            "trace" => LevelFilter::TRACE,
            "debug" => LevelFilter::DEBUG,
            "warn" => LevelFilter::WARN,
            "error" => LevelFilter::ERROR,
            _ => LevelFilter::INFO,
        }
    }

    /// Parses a JSON config file, applies `CENTRIFUGO_*` and `ROTOR_<KEY>` overrides from
    /// `env`, and validates.
    ///
    /// Whitespace-only text is an empty file: all defaults. `env` may be the whole process
    /// environment; names without either prefix are skipped.
    pub fn from_json_str(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded, ConfigError> {
        let document = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(text).map_err(|e| syntax_error(&e))?
        };
        Config::from_value(document, env)
    }

    /// Loads an already parsed document (a host reads YAML or TOML into a JSON value): either
    /// layout, Centrifugo v5's flat keys or v6's nested ones (see [`v6`]), then the environment.
    pub fn from_value(document: Value, env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded, ConfigError> {
        let Value::Object(root) = document else {
            return Err(ConfigError::NotAnObject { found: json_kind(&document) });
        };
        v6::load(root, env.into_iter().collect())
    }

    /// The flat loader every layout ends in: `root` holds v5 keys; `ROTOR_*` variables win.
    fn from_flat(
        mut root: Map<String, Value>,
        env: Vec<(String, String)>,
        mut warnings: Vec<String>,
    ) -> Result<Loaded, ConfigError> {
        let defaults = object_of(&Config::default());
        let channel_keys: BTreeSet<String> = object_of(&ChannelOptions::default()).keys().cloned().collect();

        for key in root.keys().filter(|k| !defaults.contains_key(*k)).cloned().collect::<Vec<_>>() {
            warnings.push(unknown_key_warning(&key, &key, defaults.keys()));
            root.remove(&key);
        }
        let overridden = apply_env(&mut root, &defaults, env, &mut warnings);
        let blame = |(key, message): (String, String)| {
            let top = key.split(['.', '[']).next().unwrap_or_default();
            ConfigError::Type { env_var: overridden.get(top).cloned(), key, message }
        };

        let namespaces = root.remove("namespaces");
        let channel: Map<String, Value> = channel_keys.iter().filter_map(|k| root.remove_entry(k)).collect();
        let mut config: Config = decode(Value::Object(root), "").map_err(blame)?;
        config.channel = decode(Value::Object(channel), "").map_err(blame)?;
        if let Some(namespaces) = namespaces {
            config.namespaces = decode_namespaces(namespaces, &channel_keys, &mut warnings).map_err(blame)?;
        }
        config.validate()?;
        Ok(Loaded { config, warnings, layout: Layout::V5 })
    }

    /// Every top-level key a config file may hold (channel options included), sorted.
    pub fn known_keys() -> Vec<String> {
        let mut keys: Vec<String> = object_of(&Config::default()).keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Checks what types alone cannot: names, enumerations and option combinations that
    /// Centrifugo refuses at startup.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.api_error_mode.as_str(), "" | "transport") {
            return Err(invalid(
                "api_error_mode",
                format!(
                    "unknown mode \"{}\": use \"\" (errors in the body) or \"transport\" (errors as HTTP statuses)",
                    self.api_error_mode
                ),
            ));
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            let why = format!("unknown level \"{}\": use one of {}", self.log_level, LOG_LEVELS.join(", "));
            return Err(invalid("log_level", why));
        }
        crate::http::Endpoints::new(self)?;
        if self.admin && !self.admin_insecure {
            for (key, value) in [("admin_password", &self.admin_password), ("admin_secret", &self.admin_secret)] {
                if value.is_empty() {
                    let why = "must be set when \"admin\" is on (or set \"admin_insecure\", which lets anyone in)";
                    return Err(invalid(key, why.to_owned()));
                }
            }
        }
        self.validate_proxies()?;
        self.validate_channel_options(&self.channel, "")?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, ns) in self.namespaces.iter().enumerate() {
            let key = format!("namespaces[{i}].name");
            if !is_namespace_name(&ns.name) {
                let why = format!("namespace name \"{}\" must be 2 or more of a-z A-Z 0-9 - _ .", ns.name);
                return Err(invalid(&key, why));
            }
            if let Some(first) = seen.insert(&ns.name, i) {
                let why = format!("duplicate namespace name \"{}\" (also namespaces[{first}])", ns.name);
                return Err(invalid(&key, why));
            }
            self.validate_channel_options(&ns.options, &format!("namespaces[{i}]."))?;
        }
        if self.user_subscribe_to_personal {
            let ns = &self.user_personal_channel_namespace;
            let options = if ns.is_empty() {
                &self.channel
            } else {
                match self.namespaces.iter().find(|n| &n.name == ns) {
                    Some(n) => &n.options,
                    None => {
                        let why = format!("namespace \"{ns}\" for personal channels is not in \"namespaces\"");
                        return Err(invalid("user_personal_channel_namespace", why));
                    }
                }
            };
            // Single connection finds the user's other connections through presence.
            if self.user_personal_single_connection && !options.presence {
                let why = "needs \"presence\" in the personal channel's namespace".to_owned();
                return Err(invalid("user_personal_single_connection", why));
            }
        }
        Ok(())
    }

    fn validate_proxies(&self) -> Result<(), ConfigError> {
        let endpoints = [
            ("proxy_connect_endpoint", &self.proxy_connect_endpoint),
            ("proxy_refresh_endpoint", &self.proxy_refresh_endpoint),
            ("proxy_subscribe_endpoint", &self.proxy_subscribe_endpoint),
            ("proxy_publish_endpoint", &self.proxy_publish_endpoint),
            ("proxy_rpc_endpoint", &self.proxy_rpc_endpoint),
            ("proxy_sub_refresh_endpoint", &self.proxy_sub_refresh_endpoint),
        ];
        for (key, url) in endpoints {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                let why = format!("\"{url}\" is not an http:// or https:// URL (rotor's proxies are HTTP only)");
                return Err(invalid(key, why));
            }
        }
        if self.proxy_connect_always && self.proxy_connect_endpoint.is_empty() {
            return Err(invalid("proxy_connect_always", "needs \"proxy_connect_endpoint\"".to_owned()));
        }
        let token = |name: &str| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        for (i, name) in self.proxy_http_headers.iter().enumerate() {
            if !token(name) {
                return Err(invalid(&format!("proxy_http_headers[{i}]"), format!("\"{name}\" is not a header name")));
            }
        }
        for (name, value) in &self.proxy_static_http_headers {
            let printable = value.bytes().all(|b| b == b'\t' || (b' '..0x7f).contains(&b));
            if !token(name) || !printable {
                let why = format!("\"{name}: {value}\" is not a valid header");
                return Err(invalid("proxy_static_http_headers", why));
            }
        }
        let namespaces =
            std::iter::once(("", &self.channel)).chain(self.namespaces.iter().map(|n| (n.name.as_str(), &n.options)));
        for (ns, o) in namespaces {
            for (on, kind, key) in [
                (o.proxy_subscribe, &self.proxy_subscribe_endpoint, "proxy_subscribe"),
                (o.proxy_publish, &self.proxy_publish_endpoint, "proxy_publish"),
                (o.proxy_sub_refresh, &self.proxy_sub_refresh_endpoint, "proxy_sub_refresh"),
            ] {
                if on && kind.is_empty() {
                    let at = if ns.is_empty() { key.to_owned() } else { format!("namespace \"{ns}\" {key}") };
                    return Err(invalid(key, format!("{at} needs {key}_endpoint")));
                }
            }
        }
        Ok(())
    }

    fn validate_channel_options(&self, opts: &ChannelOptions, at: &str) -> Result<(), ConfigError> {
        if !matches!(opts.force_recovery_mode.as_str(), "" | "stream" | "cache") {
            let why = format!("unknown mode \"{}\": use \"stream\" or \"cache\"", opts.force_recovery_mode);
            return Err(invalid(&format!("{at}force_recovery_mode"), why));
        }
        if let Some(t) = opts.allowed_delta_types.iter().find(|t| t.as_str() != crate::delta::FOSSIL) {
            let why = format!("unknown delta type \"{t}\": use \"fossil\"");
            return Err(invalid(&format!("{at}allowed_delta_types"), why));
        }
        if !opts.channel_regex.is_empty() {
            if let Err(why) = compile_channel_regex(&opts.channel_regex) {
                return Err(invalid(&format!("{at}channel_regex"), why));
            }
        }
        let (size, ttl) = (opts.history_size > 0, !opts.history_ttl.is_zero());
        if size != ttl {
            let missing = if size { "history_ttl" } else { "history_size" };
            let why = "history needs both history_size and history_ttl".to_owned();
            return Err(invalid(&format!("{at}{missing}"), why));
        }
        let meta_ttl = self.history_meta_ttl(opts);
        if opts.history_ttl > meta_ttl {
            let why = format!(
                "{} outlives the stream meta ({}): raise history_meta_ttl or global_history_meta_ttl",
                go_duration::format(opts.history_ttl),
                go_duration::format(meta_ttl)
            );
            return Err(invalid(&format!("{at}history_ttl"), why));
        }
        if opts.force_recovery && !opts.history_enabled() {
            let why = "recovery needs history: set history_size and history_ttl".to_owned();
            return Err(invalid(&format!("{at}force_recovery"), why));
        }
        Ok(())
    }

    /// The namespace part of a channel name: before the first boundary, after the private
    /// prefix. `""` means the top-level options.
    pub fn namespace_name<'a>(&self, channel: &'a str) -> &'a str {
        let channel = channel.strip_prefix(self.channel_private_prefix.as_str()).unwrap_or(channel);
        if self.channel_namespace_boundary.is_empty() {
            return "";
        }
        channel.split_once(self.channel_namespace_boundary.as_str()).map_or("", |(ns, _)| ns)
    }

    /// The options governing `channel`.
    pub fn namespace_for(&self, channel: &str) -> Result<&ChannelOptions, UnknownNamespace> {
        let name = self.namespace_name(channel);
        if name.is_empty() {
            return Ok(&self.channel);
        }
        self.namespaces
            .iter()
            .find(|ns| ns.name == name)
            .map(|ns| &ns.options)
            .ok_or_else(|| UnknownNamespace { namespace: name.to_owned() })
    }

    /// The part of a channel name a `channel_regex` checks: after the private prefix and the
    /// namespace (Centrifugo's rule).
    pub fn channel_rest<'a>(&self, channel: &'a str) -> &'a str {
        let channel = channel.strip_prefix(self.channel_private_prefix.as_str()).unwrap_or(channel);
        if self.channel_namespace_boundary.is_empty() {
            return channel;
        }
        channel.split_once(self.channel_namespace_boundary.as_str()).map_or(channel, |(_, rest)| rest)
    }

    /// How long a channel's stream meta lives: its own `history_meta_ttl`, else the global one.
    pub fn history_meta_ttl(&self, opts: &ChannelOptions) -> Duration {
        if opts.history_meta_ttl.is_zero() {
            self.global_history_meta_ttl
        } else {
            opts.history_meta_ttl
        }
    }

    /// The channel a user is subscribed to server-side: `#42`, or `ns:#42`.
    pub fn personal_channel(&self, user: &str) -> String {
        let ns = &self.user_personal_channel_namespace;
        let boundary = if ns.is_empty() { "" } else { self.channel_namespace_boundary.as_str() };
        format!("{ns}{boundary}{}{user}", self.channel_user_boundary)
    }

    /// Private channels need a subscription token.
    pub fn is_private(&self, channel: &str) -> bool {
        !self.channel_private_prefix.is_empty() && channel.starts_with(self.channel_private_prefix.as_str())
    }

    /// For a user-limited channel (`dialog#42,43`), the users allowed in it; `None` when the
    /// channel has no user boundary. The list is the part after the *last* boundary, as in
    /// Centrifugo; empty entries are dropped so an anonymous user (`""`) never matches.
    pub fn user_limited_users<'a>(&self, channel: &'a str) -> Option<Vec<&'a str>> {
        let boundary = self.channel_user_boundary.as_str();
        if boundary.is_empty() {
            return None;
        }
        let (_, list) = channel.rsplit_once(boundary)?;
        let users = if self.channel_user_separator.is_empty() {
            vec![list]
        } else {
            list.split(self.channel_user_separator.as_str()).collect()
        };
        Some(users.into_iter().filter(|u| !u.is_empty()).collect())
    }

    /// A fresh config file, like Centrifugo v5's `genconfig`. The host supplies the random
    /// secret and key because this crate has no randomness of its own.
    pub fn genconfig_template(hmac_secret: &str, api_key: &str) -> String {
        // Value's Display escapes the strings and cannot fail, unlike to_string_pretty.
        format!(
            "{{\n  \"token_hmac_secret_key\": {},\n  \"api_key\": {},\n  \"allowed_origins\": []\n}}\n",
            Value::from(hmac_secret),
            Value::from(api_key)
        )
    }
}

pub(crate) fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), message }
}

fn syntax_error(e: &serde_json::Error) -> ConfigError {
    let (line, column) = (e.line(), e.column());
    let text = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    ConfigError::Syntax { line, column, message }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The keys and default values of a serializable default, which is the single list of what
/// a config may hold: adding a field to a struct is all it takes to make the key known.
fn object_of<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Decodes `value`, reporting a failure as (key path under `prefix`, message).
fn decode<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut key = prefix.to_owned();
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => key.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key: name }
                | serde_path_to_error::Segment::Enum { variant: name } => {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(name);
                }
                _ => {}
            }
        }
        (key, e.into_inner().to_string())
    })
}

fn decode_namespaces(
    value: Value,
    channel_keys: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Namespace>, (String, String)> {
    let entries: Vec<Map<String, Value>> = decode(value, "namespaces")?;
    let known: Vec<String> = std::iter::once("name".to_owned()).chain(channel_keys.iter().cloned()).collect();
    let mut namespaces = Vec::with_capacity(entries.len());
    for (i, mut entry) in entries.into_iter().enumerate() {
        let at = format!("namespaces[{i}]");
        for key in entry.keys().filter(|k| !known.contains(*k)).cloned().collect::<Vec<_>>() {
            warnings.push(unknown_key_warning(&format!("{at}.{key}"), &key, known.iter()));
            entry.remove(&key);
        }
        let name = match entry.remove("name") {
            Some(name) => decode(name, &format!("{at}.name"))?,
            None => String::new(),
        };
        let options = decode(Value::Object(entry), &at)?;
        namespaces.push(Namespace { name, options });
    }
    Ok(namespaces)
}

/// Writes `ROTOR_<KEY>` values over the file's, returning which variable set which key.
fn apply_env(
    root: &mut Map<String, Value>,
    defaults: &Map<String, Value>,
    env: impl IntoIterator<Item = (String, String)>,
    warnings: &mut Vec<String>,
) -> BTreeMap<String, String> {
    // Sorted so that warnings and the blamed variable do not depend on the host's order.
    let vars: BTreeMap<String, String> = env.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
    let mut overridden = BTreeMap::new();
    for (name, raw) in vars {
        let suffix = &name[ENV_PREFIX.len()..];
        let key = suffix.to_ascii_lowercase();
        match defaults.get(&key) {
            Some(default) if suffix == key.to_ascii_uppercase() => {
                root.insert(key.clone(), env_value(default, &raw));
                overridden.insert(key, name);
            }
            _ => {
                let mut warning = format!("unknown environment variable {name}: no config key \"{key}\"");
                if let Some(near) = nearest(&key, defaults.keys()) {
                    warning.push_str(&format!(" (did you mean {ENV_PREFIX}{}?)", near.to_ascii_uppercase()));
                }
                warnings.push(warning);
            }
        }
    }
    overridden
}

/// Reads an environment value as JSON when it is JSON (`true`, `8001`, `["*"]`), as text
/// otherwise. Plain string keys always take the text verbatim, so a secret like `12345` stays
/// a string; list keys also take whitespace-separated words, as Centrifugo v5 did.
fn env_value(default: &Value, raw: &str) -> Value {
    let is_text = matches!(default, Value::String(s) if go_duration::parse(s).is_err());
    if is_text {
        return Value::String(raw.to_owned());
    }
    match serde_json::from_str(raw) {
        Ok(value) => value,
        Err(_) if default.is_array() => raw.split_whitespace().map(Value::from).collect(),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn unknown_key_warning<'k>(path: &str, key: &str, known: impl Iterator<Item = &'k String>) -> String {
    match nearest(key, known) {
        Some(near) => format!("unknown config key \"{path}\" (did you mean \"{near}\"?)"),
        None => format!("unknown config key \"{path}\""),
    }
}

/// The known key closest to a typo, if one is close enough to be a likely intent.
fn nearest<'k>(key: &str, known: impl Iterator<Item = &'k String>) -> Option<&'k String> {
    let limit = if key.chars().count() > 5 { 2 } else { 1 };
    known.map(|k| (edit_distance(key, k), k)).filter(|(d, _)| *d <= limit).min().map(|(_, k)| k)
}

/// Levenshtein distance, enough to catch transposed or dropped letters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Centrifugo's `^[-a-zA-Z0-9_.]{2,}$`.
fn is_namespace_name(name: &str) -> bool {
    name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Durations as Centrifugo v5 reads them: whole seconds (`25`) or a Go duration string
/// (`"25s"`, `"1m30s"`, `"720h"`); written back as Go writes them (`"720h0m0s"`).
pub mod go_duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserializer, Serializer};

    const NANOS_PER_SEC: u128 = 1_000_000_000;

    /// Parses Go's `time.ParseDuration` syntax, refusing negative values.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let unsigned = text.strip_prefix('+').unwrap_or(text);
        if unsigned.starts_with('-') {
            return Err("must not be negative".into());
        }
        if unsigned == "0" {
            return Ok(Duration::ZERO);
        }
        if unsigned.is_empty() {
            return Err("is empty".into());
        }
        let mut nanos: u128 = 0;
        let mut rest = unsigned;
        while !rest.is_empty() {
            let (whole, after) = split_digits(rest);
            let (fraction, after) = match after.strip_prefix('.') {
                Some(after) => split_digits(after),
                None => ("", after),
            };
            if whole.is_empty() && fraction.is_empty() {
                return Err(format!("expected a number at \"{rest}\""));
            }
            let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => NANOS_PER_SEC,
                "m" => 60 * NANOS_PER_SEC,
                "h" => 3600 * NANOS_PER_SEC,
                "" => return Err(format!("missing unit after \"{whole}\" (use h, m, s, ms, us or ns)")),
                other => return Err(format!("unknown unit \"{other}\" (use h, m, s, ms, us or ns)")),
            };
            // Digits past the 18th cannot change a nanosecond count; dropping them keeps
            // the arithmetic inside u128.
            let fraction = &fraction[..fraction.len().min(18)];
            let too_large = || "is too large".to_owned();
            let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
            let fraction_value: u128 =
                if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| too_large())? };
            let part = whole
                .checked_mul(scale)
                .and_then(|n| n.checked_add(fraction_value * scale / 10u128.pow(fraction.len() as u32)))
                .ok_or_else(too_large)?;
            nanos = nanos.checked_add(part).filter(|n| *n <= u128::from(u64::MAX)).ok_or_else(too_large)?;
            rest = after;
        }
        Ok(Duration::from_nanos(nanos as u64))
    }

    fn split_digits(text: &str) -> (&str, &str) {
        text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()))
    }

    /// Formats like Go's `Duration.String`: `0s`, `500ms`, `1.5s`, `1m30s`, `720h0m0s`.
    pub fn format(duration: Duration) -> String {
        let nanos = duration.as_nanos();
        match nanos {
            0 => "0s".into(),
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", decimal(n, 1_000)),
            n if n < NANOS_PER_SEC => format!("{}ms", decimal(n, 1_000_000)),
            n => {
                let secs = n / NANOS_PER_SEC;
                let (hours, minutes) = (secs / 3600, secs / 60 % 60);
                let seconds = decimal(n % (60 * NANOS_PER_SEC), NANOS_PER_SEC);
                if hours > 0 {
                    format!("{hours}h{minutes}m{seconds}s")
                } else if minutes > 0 {
                    format!("{minutes}m{seconds}s")
                } else {
                    format!("{seconds}s")
                }
            }
        }
    }

    fn decimal(value: u128, unit: u128) -> String {
        let (whole, fraction) = (value / unit, value % unit);
        if fraction == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{fraction:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl<'de> Visitor<'de> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration: seconds (25) or a Go duration string (\"25s\", \"1m30s\")")
        }

        fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs).map(Duration::from_secs).map_err(|_| E::invalid_value(Unexpected::Signed(secs), &self))
        }

        fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(secs).map_err(|_| E::invalid_value(Unexpected::Float(secs), &self))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse(text).map_err(|why| E::custom(format!("invalid duration \"{text}\": {why}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load(text: &str) -> Loaded {
        Config::from_json_str(text, env(&[])).unwrap_or_else(|e| panic!("{e}"))
    }

    fn load_err(text: &str, vars: &[(&str, &str)]) -> ConfigError {
        Config::from_json_str(text, env(vars)).expect_err("config should be refused")
    }

    fn load_env(text: &str, vars: &[(&str, &str)]) -> Loaded {
        Config::from_json_str(text, env(vars)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_match_centrifugo_v5() {
        let c = Config::default();
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.pong_timeout, Duration::from_secs(8));
        assert_eq!(c.client_stale_close_delay, Duration::from_secs(10));
        assert_eq!(c.client_expired_close_delay, Duration::from_secs(25));
        assert_eq!(c.client_expired_sub_close_delay, Duration::from_secs(25));
        assert_eq!(c.client_presence_update_interval, Duration::from_secs(27));
        assert_eq!(c.client_channel_position_check_delay, Duration::from_secs(40));
        assert_eq!(c.global_history_meta_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(c.global_presence_ttl, Duration::from_secs(60));
        assert_eq!(c.websocket_write_timeout, Duration::from_secs(1));
        assert_eq!((c.client_queue_max_size, c.client_channel_limit), (1_048_576, 128));
        assert_eq!((c.client_user_connection_limit, c.client_connection_limit), (0, 0));
        assert_eq!((c.client_history_max_publication_limit, c.client_recovery_max_publication_limit), (300, 300));
        assert_eq!(c.channel_max_length, 255);
        assert_eq!(
            [
                &c.channel_private_prefix,
                &c.channel_namespace_boundary,
                &c.channel_user_boundary,
                &c.channel_user_separator
            ],
            ["$", ":", "#", ","]
        );
        assert_eq!((c.api_handler_prefix.as_str(), c.emulation_handler_prefix.as_str()), ("/api", "/emulation"));
        assert_eq!((c.port, c.address.as_str(), c.engine.as_str()), (8000, "", "memory"));
        for limit in [
            c.websocket_message_size_limit,
            c.uni_websocket_message_size_limit,
            c.uni_sse_max_request_body_size,
            c.uni_http_stream_max_request_body_size,
            c.http_stream_max_request_body_size,
            c.sse_max_request_body_size,
            c.emulation_max_request_body_size,
        ] {
            assert_eq!(limit, 65536);
        }
        assert!(
            !c.websocket_disable && !c.uni_websocket && !c.uni_sse && !c.uni_http_stream && !c.http_stream && !c.sse
        );
        assert!(c.allowed_origins.is_empty() && c.namespaces.is_empty());
        assert_eq!(c.channel, ChannelOptions::default());
        assert!(!c.channel.history_enabled());
        c.validate().unwrap();
    }

    #[test]
    fn empty_documents_give_defaults_without_warnings() {
        for text in ["{}", "", "  \n"] {
            let loaded = load(text);
            assert_eq!(loaded.config, Config::default());
            assert!(loaded.warnings.is_empty());
        }
    }

    #[test]
    fn serialized_defaults_load_back_unchanged() {
        let mut config = Config::default();
        config.channel.history_size = 10;
        config.channel.history_ttl = Duration::from_millis(1500);
        config
            .namespaces
            .push(Namespace { name: "chat".into(), options: ChannelOptions { presence: true, ..Default::default() } });
        let text = serde_json::to_string(&config).unwrap();
        let loaded = load(&text);
        assert_eq!(loaded.config, config);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn known_keys_cover_flattened_channel_options() {
        let keys = Config::known_keys();
        for key in
            ["token_hmac_secret_key", "uni_sse", "port", "namespaces", "presence", "history_ttl", "channel_regex"]
        {
            assert!(keys.iter().any(|k| k == key), "{key} missing");
        }
        assert!(!keys.iter().any(|k| k == "channel" || k == "name_"));
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn durations_accept_seconds_and_go_strings() {
        let c = load(
            r#"{"ping_interval": 30, "pong_timeout": "500ms", "client_stale_close_delay": "1m30s",
                "global_history_meta_ttl": "720h", "client_expired_close_delay": "1h2m3.5s",
                "websocket_write_timeout": 0.25, "global_presence_ttl": "0",
                "history_size": 10, "history_ttl": "300s",
                "namespaces": [{"name": "chat", "history_size": 1, "history_ttl": 60, "history_meta_ttl": "2h"}]}"#,
        )
        .config;
        assert_eq!(c.ping_interval, Duration::from_secs(30));
        assert_eq!(c.pong_timeout, Duration::from_millis(500));
        assert_eq!(c.client_stale_close_delay, Duration::from_secs(90));
        assert_eq!(c.global_history_meta_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(c.client_expired_close_delay, Duration::from_millis(3_723_500));
        assert_eq!(c.websocket_write_timeout, Duration::from_millis(250));
        assert_eq!(c.global_presence_ttl, Duration::ZERO);
        assert_eq!(c.channel.history_ttl, Duration::from_secs(300));
        assert!(c.channel.history_enabled());
        let chat = &c.namespaces[0].options;
        assert_eq!((chat.history_ttl, chat.history_meta_ttl), (Duration::from_secs(60), Duration::from_secs(7200)));
        assert_eq!(c.history_meta_ttl(chat), Duration::from_secs(7200));
        assert_eq!(c.history_meta_ttl(&c.channel), c.global_history_meta_ttl);
    }

    #[test]
    fn go_duration_syntax() {
        let ok =
            |text: &str, nanos: u64| assert_eq!(go_duration::parse(text), Ok(Duration::from_nanos(nanos)), "{text}");
        ok("1ns", 1);
        ok("1.5us", 1_500);
        ok("2µs", 2_000);
        ok(".5s", 500_000_000);
        ok("+3m", 180_000_000_000);
        ok("1h1m1s1ms", 3_661_001_000_000);
        ok("0.000000001s", 1);
        for bad in ["", "-5s", "25", "25x", "s", ".s", "1.2.3s", "99999999999999999999h", "1e3s"] {
            assert!(go_duration::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations_are_written_as_go_writes_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(25), "25s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(720 * 3600), "720h0m0s"),
            (Duration::from_millis(3_723_500), "1h2m3.5s"),
        ];
        for (duration, text) in cases {
            assert_eq!(go_duration::format(duration), text);
            assert_eq!(go_duration::parse(text), Ok(duration));
        }
        let json = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(json["ping_interval"], "25s");
        assert_eq!(json["history_ttl"], "0s");
    }

    #[test]
    fn bad_durations_name_the_key() {
        let e = load_err(r#"{"ping_interval": "25x"}"#, &[]);
        assert_eq!(
            e.to_string(),
            r#"config key "ping_interval": invalid duration "25x": unknown unit "x" (use h, m, s, ms, us or ns)"#
        );
        let e = load_err(r#"{"pong_timeout": -3}"#, &[]);
        assert!(e.to_string().starts_with(r#"config key "pong_timeout": invalid value: integer `-3`"#), "{e}");
        let e = load_err(r#"{"namespaces": [{"name": "chat", "history_ttl": true}]}"#, &[]);
        assert_eq!(e.key(), Some("namespaces[0].history_ttl"));
        assert!(e.to_string().contains("expected a duration"), "{e}");
    }

    #[test]
    fn unknown_keys_warn_with_their_path() {
        let loaded = load(r#"{"histroy_size": 1, "zzz": 1, "namespaces": [{"name": "chat", "presense": true}]}"#);
        assert_eq!(
            loaded.warnings,
            [
                r#"unknown config key "histroy_size" (did you mean "history_size"?)"#,
                r#"unknown config key "zzz""#,
                r#"unknown config key "namespaces[0].presense" (did you mean "presence"?)"#,
            ]
        );
        assert_eq!(loaded.config.channel.history_size, 0);
        assert!(!loaded.config.namespaces[0].options.presence);
    }

    #[test]
    fn wrong_types_name_key_and_expected_type() {
        let e = load_err(r#"{"port": "abc"}"#, &[]);
        assert_eq!(e.to_string(), r#"config key "port": invalid type: string "abc", expected u16"#);
        let e = load_err(r#"{"port": 70000}"#, &[]);
        assert_eq!(e.to_string(), "config key \"port\": invalid value: integer `70000`, expected u16");
        let e = load_err(r#"{"presence": "yes"}"#, &[]);
        assert_eq!(e.to_string(), r#"config key "presence": invalid type: string "yes", expected a boolean"#);
        let e = load_err(r#"{"allowed_origins": [1]}"#, &[]);
        assert_eq!(e.key(), Some("allowed_origins[0]"));
        let e = load_err(r#"{"namespaces": [{"name": "chat"}, {"name": "news", "history_size": "big"}]}"#, &[]);
        assert_eq!(
            e.to_string(),
            r#"config key "namespaces[1].history_size": invalid type: string "big", expected u64"#
        );
        let e = load_err(r#"{"namespaces": ["chat"]}"#, &[]);
        assert_eq!(e.key(), Some("namespaces[0]"));
        let e = load_err(r#"{"namespaces": {"chat": {}}}"#, &[]);
        assert_eq!(e.key(), Some("namespaces"));
        let e = load_err(r#"{"namespaces": [{"name": 5}]}"#, &[]);
        assert_eq!(e.to_string(), "config key \"namespaces[0].name\": invalid type: integer `5`, expected a string");
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let e = load_err("{\n  \"port\": 8000,\n}", &[]);
        let ConfigError::Syntax { line, column, .. } = &e else { panic!("{e:?}") };
        assert_eq!((*line, *column), (3, 1));
        assert!(e.to_string().starts_with("invalid JSON at line 3, column 1: trailing comma"), "{e}");
        assert_eq!(load_err("[1]", &[]), ConfigError::NotAnObject { found: "an array" });
    }

    #[test]
    fn env_overrides_the_file() {
        let loaded = load_env(
            r#"{"api_key": "from-file", "port": 9000, "uni_sse": false}"#,
            &[
                ("ROTOR_API_KEY", "12345"),
                ("ROTOR_UNI_SSE", "true"),
                ("ROTOR_PORT", "8001"),
                ("ROTOR_ALLOWED_ORIGINS", r#"["*"]"#),
                ("ROTOR_NAMESPACES", r#"[{"name":"chat","presence":true}]"#),
                ("ROTOR_PING_INTERVAL", "30"),
                ("ROTOR_PONG_TIMEOUT", "2s"),
                ("ROTOR_PRESENCE", "true"),
                ("ROTOR_CHANNEL_PRIVATE_PREFIX", "priv-"),
                ("HOME", "/root"),
            ],
        );
        let c = &loaded.config;
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(c.api_key, "12345");
        assert!(c.uni_sse && c.channel.presence);
        assert_eq!(c.port, 8001);
        assert_eq!(c.allowed_origins, ["*"]);
        assert_eq!(c.namespaces[0].name, "chat");
        assert!(c.namespaces[0].options.presence);
        assert_eq!((c.ping_interval, c.pong_timeout), (Duration::from_secs(30), Duration::from_secs(2)));
        assert_eq!(c.channel_private_prefix, "priv-");
    }

    #[test]
    fn env_lists_also_take_plain_words() {
        let c = load_env("{}", &[("ROTOR_ALLOWED_ORIGINS", "https://a.example https://*.b.example")]).config;
        assert_eq!(c.allowed_origins, ["https://a.example", "https://*.b.example"]);
    }

    #[test]
    fn unknown_rotor_variables_warn() {
        let loaded =
            load_env("{}", &[("ROTOR_API_KYE", "x"), ("ROTOR_port", "1"), ("ROTOR_", "x"), ("OTHER_PORT", "1")]);
        assert_eq!(
            loaded.warnings,
            [
                r#"unknown environment variable ROTOR_: no config key """#,
                r#"unknown environment variable ROTOR_API_KYE: no config key "api_kye" (did you mean ROTOR_API_KEY?)"#,
                r#"unknown environment variable ROTOR_port: no config key "port" (did you mean ROTOR_PORT?)"#,
            ]
        );
        assert_eq!(loaded.config.port, 8000);
    }

    #[test]
    fn env_type_errors_name_the_variable() {
        let e = load_err("{}", &[("ROTOR_PORT", "abc")]);
        assert_eq!(
            e.to_string(),
            r#"environment variable ROTOR_PORT (config key "port"): invalid type: string "abc", expected u16"#
        );
        let e = load_err("{}", &[("ROTOR_NAMESPACES", r#"[{"name":"chat","presence":"yes"}]"#)]);
        assert_eq!(
            e,
            ConfigError::Type {
                key: "namespaces[0].presence".into(),
                env_var: Some("ROTOR_NAMESPACES".into()),
                message: r#"invalid type: string "yes", expected a boolean"#.into(),
            }
        );
        let e = load_err(r#"{"port": "abc"}"#, &[("ROTOR_UNI_SSE", "true")]);
        assert!(matches!(e, ConfigError::Type { env_var: None, .. }), "{e:?}");
    }

    fn with_namespaces(names: &[&str]) -> Config {
        let mut c = Config::default();
        c.channel.presence = true;
        for name in names {
            c.namespaces.push(Namespace {
                name: (*name).into(),
                options: ChannelOptions { join_leave: true, ..Default::default() },
            });
        }
        c
    }

    #[test]
    fn namespace_lookup() {
        let c = with_namespaces(&["chat", "news"]);
        assert!(c.namespace_for("chat:room").unwrap().join_leave);
        assert!(c.namespace_for("$chat:room").unwrap().join_leave);
        assert!(c.namespace_for("chat:a:b").unwrap().join_leave);
        assert!(c.namespace_for("room").unwrap().presence);
        assert!(c.namespace_for("$room").unwrap().presence);
        assert!(c.namespace_for(":room").unwrap().presence);
        assert!(c.namespace_for("#42").unwrap().presence);
        assert_eq!(c.namespace_for("nope:x"), Err(UnknownNamespace { namespace: "nope".into() }));
        assert_eq!(c.namespace_for("$nope:x").unwrap_err().to_string(), "unknown namespace \"nope\"");
        assert_eq!(c.namespace_name("$news:1"), "news");

        let mut custom = with_namespaces(&["chat"]);
        custom.channel_namespace_boundary = "/".into();
        assert!(custom.namespace_for("chat/room").unwrap().join_leave);
        assert!(custom.namespace_for("chat:room").unwrap().presence);
        custom.channel_namespace_boundary.clear();
        assert!(custom.namespace_for("chat/room").unwrap().presence);
    }

    #[test]
    fn personal_channels() {
        let mut c = Config::default();
        assert_eq!(c.personal_channel("42"), "#42");
        c.user_personal_channel_namespace = "personal".into();
        assert_eq!(c.personal_channel("42"), "personal:#42");
        c.channel_user_boundary = "@".into();
        c.channel_namespace_boundary = "/".into();
        assert_eq!(c.personal_channel("42"), "personal/@42");
    }

    #[test]
    fn private_channels() {
        let mut c = Config::default();
        assert!(c.is_private("$secret") && c.is_private("$chat:x"));
        assert!(!c.is_private("chat:$x") && !c.is_private(""));
        c.channel_private_prefix.clear();
        assert!(!c.is_private("$secret"));
    }

    #[test]
    fn user_limited_channels() {
        let mut c = Config::default();
        assert_eq!(c.user_limited_users("dialog#42,43"), Some(vec!["42", "43"]));
        assert_eq!(c.user_limited_users("chat:#42"), Some(vec!["42"]));
        assert_eq!(c.user_limited_users("a#b#7"), Some(vec!["7"]));
        assert_eq!(c.user_limited_users("dialog#"), Some(vec![]));
        assert_eq!(c.user_limited_users("dialog#,42,"), Some(vec!["42"]));
        assert_eq!(c.user_limited_users("chat:room"), None);
        c.channel_user_separator.clear();
        assert_eq!(c.user_limited_users("dialog#42,43"), Some(vec!["42,43"]));
        c.channel_user_boundary.clear();
        assert_eq!(c.user_limited_users("dialog#42"), None);
    }

    #[test]
    fn validation_names_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"namespaces": [{"name": "c"}]}"#, "namespaces[0].name", "must be 2 or more"),
            (r#"{"namespaces": [{"presence": true}]}"#, "namespaces[0].name", "namespace name \"\""),
            (r#"{"namespaces": [{"name": "chat room"}]}"#, "namespaces[0].name", "chat room"),
            (r#"{"namespaces": [{"name": "chät"}]}"#, "namespaces[0].name", "chät"),
            (
                r#"{"namespaces": [{"name": "chat"}, {"name": "news"}, {"name": "chat"}]}"#,
                "namespaces[2].name",
                "also namespaces[0]",
            ),
            (r#"{"api_error_mode": "http"}"#, "api_error_mode", "\"transport\""),
            (r#"{"force_recovery_mode": "disk"}"#, "force_recovery_mode", "\"cache\""),
            (
                r#"{"namespaces": [{"name": "ok", "force_recovery_mode": "x"}]}"#,
                "namespaces[0].force_recovery_mode",
                "unknown mode",
            ),
            (r#"{"channel_regex": "[unclosed"}"#, "channel_regex", "not a valid regular expression"),
            (r#"{"channel_regex": "(a{1000}){1000}"}"#, "channel_regex", "more than 1048576 bytes"),
            (
                r#"{"namespaces": [{"name": "ok", "allowed_delta_types": ["xdelta"]}]}"#,
                "namespaces[0].allowed_delta_types",
                "unknown delta type \"xdelta\"",
            ),
            (r#"{"history_size": 10}"#, "history_ttl", "both"),
            (r#"{"history_ttl": "10s"}"#, "history_size", "both"),
            (r#"{"force_recovery": true}"#, "force_recovery", "needs history"),
            (
                r#"{"history_size": 1, "history_ttl": "2h", "history_meta_ttl": "1h"}"#,
                "history_ttl",
                "2h0m0s outlives the stream meta (1h0m0s)",
            ),
            (
                r#"{"user_subscribe_to_personal": true, "user_personal_channel_namespace": "me"}"#,
                "user_personal_channel_namespace",
                "\"me\"",
            ),
            (
                r#"{"user_subscribe_to_personal": true, "user_personal_single_connection": true}"#,
                "user_personal_single_connection",
                "presence",
            ),
        ];
        for (text, key, needle) in cases {
            let e = load_err(text, &[]);
            assert_eq!(e.key(), Some(*key), "{text}: {e}");
            assert!(matches!(e, ConfigError::Invalid { .. }), "{text}: {e:?}");
            assert!(e.to_string().starts_with(&format!("config key \"{key}\": ")), "{e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        // The same checks pass for well-formed settings.
        load(
            r#"{"api_error_mode": "transport", "namespaces": [{"name": "a-b_c.d", "force_recovery_mode": "cache",
                "force_recovery": true, "history_size": 1, "history_ttl": 5, "channel_regex": "^[a-z0-9_]+$",
                "allowed_delta_types": ["fossil"], "delta_publish": true}],
                "user_subscribe_to_personal": true, "user_personal_channel_namespace": "a-b_c.d"}"#,
        );
    }

    #[test]
    fn genconfig_template_loads_clean() {
        let text = Config::genconfig_template("s3cr\"et", "key-1");
        assert!(text.starts_with("{\n  \"token_hmac_secret_key\": \"s3cr\\\"et\",\n"), "{text}");
        let loaded = load(&text);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.token_hmac_secret_key, "s3cr\"et");
        assert_eq!(loaded.config.api_key, "key-1");
        assert!(loaded.config.allowed_origins.is_empty());
    }

    #[test]
    fn native_development_defaults_load_clean() {
        let loaded = load(
            r#"{"address": "127.0.0.1", "port": 8000, "uni_http_stream": true, "uni_sse": true, "uni_websocket": true,
                "http_stream": true, "sse": true, "user_subscribe_to_personal": true,
                "allowed_origins": ["http://localhost:*", "http://127.0.0.1:*"], "allow_subscribe_for_client": true,
                "allow_user_limited_channels": true, "allow_publish_for_subscriber": true,
                "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true, "presence": true,
                "history_size": 100, "history_ttl": "300s", "force_recovery": true}"#,
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert!(loaded.config.channel.force_recovery && loaded.config.channel.history_enabled());
    }
}
