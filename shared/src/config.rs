//! TEMPORARY STUB until the real config module lands.
use std::time::Duration;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelOptions {
    pub presence: bool, pub join_leave: bool, pub force_push_join_leave: bool, pub history_size: u64,
    #[serde(skip)] pub history_ttl: Duration, #[serde(skip)] pub history_meta_ttl: Duration,
    pub force_positioning: bool, pub allow_positioning: bool, pub force_recovery: bool, pub allow_recovery: bool,
    pub force_recovery_mode: String, pub allow_subscribe_for_client: bool, pub allow_subscribe_for_anonymous: bool,
    pub allow_publish_for_client: bool, pub allow_publish_for_subscriber: bool, pub allow_publish_for_anonymous: bool,
    pub allow_presence_for_client: bool, pub allow_presence_for_subscriber: bool, pub allow_presence_for_anonymous: bool,
    pub allow_history_for_client: bool, pub allow_history_for_subscriber: bool, pub allow_history_for_anonymous: bool,
    pub allow_user_limited_channels: bool, pub channel_regex: String,
}
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Namespace { pub name: String, #[serde(flatten)] pub options: ChannelOptions }
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub token_hmac_secret_key: String, pub token_rsa_public_key: String, pub token_ecdsa_public_key: String,
    pub token_audience: String, pub token_issuer: String, pub token_user_id_claim: String,
    pub separate_subscription_token_config: bool, pub subscription_token_hmac_secret_key: String,
    pub subscription_token_rsa_public_key: String, pub subscription_token_ecdsa_public_key: String,
    pub subscription_token_audience: String, pub subscription_token_issuer: String,
    pub api_key: String, pub api_insecure: bool, pub api_error_mode: String, pub api_handler_prefix: String, pub api_disable: bool,
    pub allowed_origins: Vec<String>, pub client_insecure: bool, pub allow_anonymous_connect_without_token: bool,
    pub disallow_anonymous_connection_tokens: bool,
    #[serde(skip)] pub ping_interval: Duration, #[serde(skip)] pub pong_timeout: Duration,
    #[serde(skip)] pub client_stale_close_delay: Duration, #[serde(skip)] pub client_expired_close_delay: Duration,
    #[serde(skip)] pub client_expired_sub_close_delay: Duration, #[serde(skip)] pub client_presence_update_interval: Duration,
    #[serde(skip)] pub global_history_meta_ttl: Duration, #[serde(skip)] pub global_presence_ttl: Duration,
    pub client_queue_max_size: u64, pub client_channel_limit: u64, pub client_user_connection_limit: u64,
    pub client_history_max_publication_limit: u64, pub client_recovery_max_publication_limit: u64,
    pub client_connect_include_server_time: bool, pub user_subscribe_to_personal: bool, pub user_personal_channel_namespace: String,
    pub channel_max_length: u64,
    pub websocket_disable: bool, pub websocket_message_size_limit: u64, pub uni_websocket: bool, pub uni_websocket_message_size_limit: u64,
    pub uni_sse: bool, pub uni_sse_max_request_body_size: u64, pub uni_http_stream: bool, pub uni_http_stream_max_request_body_size: u64,
    pub http_stream: bool, pub http_stream_max_request_body_size: u64, pub sse: bool, pub sse_max_request_body_size: u64,
    pub emulation_handler_prefix: String, pub emulation_max_request_body_size: u64,
    pub port: u16, pub address: String, pub name: String,
    #[serde(flatten)] pub channel: ChannelOptions,
    pub namespaces: Vec<Namespace>,
}
pub struct Loaded { pub config: Config, pub warnings: Vec<String> }
#[derive(Debug)] pub struct ConfigError(pub String);
impl std::fmt::Display for ConfigError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
pub struct UnknownNamespace;
impl Config {
    pub fn from_json_str(text: &str, _env: impl IntoIterator<Item = (String, String)>) -> Result<Loaded, ConfigError> {
        let mut config: Config = serde_json::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.ping_interval = Duration::from_secs(25); config.pong_timeout = Duration::from_secs(8);
        config.client_stale_close_delay = Duration::from_secs(10); config.client_expired_close_delay = Duration::from_secs(25);
        config.client_expired_sub_close_delay = Duration::from_secs(25); config.client_presence_update_interval = Duration::from_secs(27);
        config.global_history_meta_ttl = Duration::from_secs(3600); config.global_presence_ttl = Duration::from_secs(60);
        config.client_queue_max_size = 1 << 20; config.client_channel_limit = 128; config.client_history_max_publication_limit = 300;
        config.client_recovery_max_publication_limit = 300; config.channel_max_length = 255; config.uni_http_stream_max_request_body_size = 65536;
        config.uni_sse_max_request_body_size = 65536; config.uni_websocket_message_size_limit = 65536; config.websocket_message_size_limit = 65536;
        config.channel.history_ttl = Duration::from_secs(300); config.emulation_max_request_body_size = 65536; config.http_stream_max_request_body_size = 65536; config.sse_max_request_body_size=65536; config.emulation_handler_prefix = "/emulation".into();
        Ok(Loaded { config, warnings: vec![] })
    }
    pub fn namespace_for(&self, channel: &str) -> Result<&ChannelOptions, UnknownNamespace> {
        let c = channel.strip_prefix('$').unwrap_or(channel);
        match c.split_once(':') { None => Ok(&self.channel), Some((ns, _)) => self.namespaces.iter().find(|n| n.name == ns).map(|n| &n.options).ok_or(UnknownNamespace) }
    }
    pub fn personal_channel(&self, user: &str) -> String { format!("#{user}") }
    pub fn is_private(&self, channel: &str) -> bool { channel.starts_with('$') }
    pub fn user_limited_users<'a>(&self, channel: &'a str) -> Option<Vec<&'a str>> { channel.split_once('#').map(|(_, u)| u.split(',').collect()) }
    pub fn genconfig_template(secret: &str, key: &str) -> String { serde_json::json!({"token_hmac_secret_key": secret, "api_key": key, "allowed_origins": []}).to_string() }
}
