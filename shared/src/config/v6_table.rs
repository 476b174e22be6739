//! The v6 ⇄ v5 name table: every Centrifugo v6 option rotor knows about, what flat (v5) key it
//! becomes, and what it means. One table serves loading, `CENTRIFUGO_*` variables,
//! `rotor defaultconfig --layout v6` and `rotor configdoc`.
//!
//! A row whose flat key `Config` does not have (yet) is reported as not implemented when set,
//! like a [`To::No`] row: keys added to `Config` later start to work without touching this file.

/// What a v6 option becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// This flat key.
    Flat(&'static str),
    /// Accepted, and without effect in rotor by design (the README says why).
    Moot,
    /// Not implemented: a start-up warning when set to anything but its default.
    No,
}

/// One v6 leaf option: its dotted path, its target, Centrifugo's default (JSON text, or a plain
/// string when it is not JSON), and a one-line meaning.
pub struct Row {
    pub path: &'static str,
    pub to: To,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn row(path: &'static str, to: To, default: &'static str, doc: &'static str) -> Row {
    Row { path, to, default, doc }
}

use To::{Flat, Moot, No};

/// Options outside channel options and proxies, in v6 order.
pub const ROWS: &[Row] = &[
    // http_server
    row("http_server.address", Flat("address"), "", "address to listen on; empty: all interfaces"),
    row("http_server.port", Flat("port"), "8000", "port to listen on"),
    row("http_server.internal_address", No, "", "separate address for internal endpoints"),
    row("http_server.internal_port", No, "", "separate port for internal endpoints"),
    row("http_server.tls_external", No, "false", "TLS only on external endpoints"),
    row("http_server.h2c_external", No, "false", "HTTP/2 cleartext on external endpoints"),
    // log
    row("log.level", Flat("log_level"), "info", "log level: none, trace, debug, info, warn, error"),
    row("log.file", Flat("log_file"), "", "log to this file instead of stdout"),
    // engine
    row("engine.type", Flat("engine"), "memory", "engine: memory (the only one in this build)"),
    // client
    row(
        "client.allowed_origins",
        Flat("allowed_origins"),
        "[]",
        "origins allowed to connect; [] lets only requests without Origin in; \"*\" allows all",
    ),
    row(
        "client.token.hmac_secret_key",
        Flat("token_hmac_secret_key"),
        "",
        "HMAC secret for HS256/384/512 connection tokens",
    ),
    row(
        "client.token.rsa_public_key",
        Flat("token_rsa_public_key"),
        "",
        "RSA public key (PEM) for RS256/384/512 connection tokens",
    ),
    row(
        "client.token.ecdsa_public_key",
        Flat("token_ecdsa_public_key"),
        "",
        "ECDSA public key (PEM) for ES256 connection tokens",
    ),
    row("client.token.audience", Flat("token_audience"), "", "required aud claim of connection tokens"),
    row("client.token.issuer", Flat("token_issuer"), "", "required iss claim of connection tokens"),
    row("client.token.user_id_claim", Flat("token_user_id_claim"), "", "claim holding the user id instead of sub"),
    row("client.token.hmac_previous_secret_key", No, "", "previous HMAC secret during rotation"),
    row("client.token.hmac_previous_secret_key_valid_until", No, "0", "end of the previous HMAC secret"),
    row("client.token.jwks_public_endpoint", No, "", "JWKS endpoint for token keys"),
    row("client.token.audience_regex", No, "", "aud claim pattern"),
    row("client.token.issuer_regex", No, "", "iss claim pattern"),
    row(
        "client.token.insecure_skip_jwks_endpoint_safety_check",
        No,
        "false",
        "allow a JWKS endpoint on private addresses",
    ),
    row(
        "client.subscription_token.enabled",
        Flat("separate_subscription_token_config"),
        "false",
        "subscription tokens use the keys below, not client.token's",
    ),
    row(
        "client.subscription_token.hmac_secret_key",
        Flat("subscription_token_hmac_secret_key"),
        "",
        "HMAC secret for subscription tokens",
    ),
    row(
        "client.subscription_token.rsa_public_key",
        Flat("subscription_token_rsa_public_key"),
        "",
        "RSA public key (PEM) for subscription tokens",
    ),
    row(
        "client.subscription_token.ecdsa_public_key",
        Flat("subscription_token_ecdsa_public_key"),
        "",
        "ECDSA public key (PEM) for subscription tokens",
    ),
    row(
        "client.subscription_token.audience",
        Flat("subscription_token_audience"),
        "",
        "required aud claim of subscription tokens",
    ),
    row(
        "client.subscription_token.issuer",
        Flat("subscription_token_issuer"),
        "",
        "required iss claim of subscription tokens",
    ),
    row("client.subscription_token.user_id_claim", No, "", "claim holding the user id in subscription tokens"),
    row("client.subscription_token.hmac_previous_secret_key", No, "", "previous subscription HMAC secret"),
    row(
        "client.subscription_token.hmac_previous_secret_key_valid_until",
        No,
        "0",
        "end of the previous subscription HMAC secret",
    ),
    row("client.subscription_token.jwks_public_endpoint", No, "", "JWKS endpoint for subscription token keys"),
    row("client.subscription_token.audience_regex", No, "", "aud claim pattern"),
    row("client.subscription_token.issuer_regex", No, "", "iss claim pattern"),
    row(
        "client.subscription_token.insecure_skip_jwks_endpoint_safety_check",
        No,
        "false",
        "allow a JWKS endpoint on private addresses",
    ),
    row(
        "client.proxy_connect_always",
        Flat("proxy_connect_always"),
        "false",
        "rotor's own: ask the connect proxy even when the client brings a token",
    ),
    row(
        "client.allow_anonymous_connect_without_token",
        Flat("allow_anonymous_connect_without_token"),
        "false",
        "connect without a token as an anonymous user",
    ),
    row(
        "client.disallow_anonymous_connection_tokens",
        Flat("disallow_anonymous_connection_tokens"),
        "false",
        "refuse connection tokens with an empty user",
    ),
    row("client.ping_interval", Flat("ping_interval"), "25s", "server ping interval"),
    row("client.pong_timeout", Flat("pong_timeout"), "8s", "how long a pong may take"),
    row(
        "client.expired_close_delay",
        Flat("client_expired_close_delay"),
        "25s",
        "grace before closing a connection whose token expired",
    ),
    row(
        "client.expired_sub_close_delay",
        Flat("client_expired_sub_close_delay"),
        "25s",
        "grace before ending a subscription whose token expired",
    ),
    row(
        "client.stale_close_delay",
        Flat("client_stale_close_delay"),
        "10s",
        "close a connection that sent no connect command by then",
    ),
    row("client.channel_limit", Flat("client_channel_limit"), "128", "subscriptions per connection"),
    row(
        "client.queue_max_size",
        Flat("client_queue_max_size"),
        "1048576",
        "bytes queued per connection before it is closed as slow (3008)",
    ),
    row(
        "client.presence_update_interval",
        Flat("client_presence_update_interval"),
        "27s",
        "how often presence is refreshed",
    ),
    row("client.concurrency", No, "0", "commands processed concurrently per connection"),
    row(
        "client.channel_position_check_delay",
        Flat("client_channel_position_check_delay"),
        "40s",
        "position check interval for positioned subscriptions",
    ),
    row("client.channel_position_max_time_lag", No, "0s", "allowed PUB/SUB lag for positioned subscriptions"),
    row("client.connection_limit", Flat("client_connection_limit"), "0", "connections per node; 0: no limit"),
    row("client.user_connection_limit", Flat("client_user_connection_limit"), "0", "connections per user; 0: no limit"),
    row("client.connection_rate_limit", No, "0", "new connections per second"),
    row(
        "client.connect_include_server_time",
        Flat("client_connect_include_server_time"),
        "false",
        "server time in the connect reply",
    ),
    row(
        "client.history_max_publication_limit",
        Flat("client_history_max_publication_limit"),
        "300",
        "publications per client history call",
    ),
    row(
        "client.recovery_max_publication_limit",
        Flat("client_recovery_max_publication_limit"),
        "300",
        "publications recovered per subscription",
    ),
    row("client.insecure_skip_token_signature_verify", No, "false", "skip token signature checks (testing only)"),
    row("client.user_id_http_header", No, "", "take the user id from this header"),
    row("client.insecure", Flat("client_insecure"), "false", "no authentication for clients (testing only)"),
    row(
        "client.subscribe_to_user_personal_channel.enabled",
        Flat("user_subscribe_to_personal"),
        "false",
        "subscribe each user to #<user> on connect",
    ),
    row(
        "client.subscribe_to_user_personal_channel.personal_channel_namespace",
        Flat("user_personal_channel_namespace"),
        "",
        "namespace of personal channels",
    ),
    row(
        "client.subscribe_to_user_personal_channel.single_connection",
        Flat("user_personal_single_connection"),
        "false",
        "one connection per user (needs presence in that namespace)",
    ),
    // channel
    row(
        "channel.history_meta_ttl",
        Flat("global_history_meta_ttl"),
        "720h",
        "how long stream meta (epoch, offset) outlives the last publication",
    ),
    row("channel.publication_data_format", No, "", "validation of publication data"),
    row("channel.max_length", Flat("channel_max_length"), "255", "longest channel name"),
    row(
        "channel.private_prefix",
        Flat("channel_private_prefix"),
        "$",
        "prefix of private channels (subscription token needed)",
    ),
    row("channel.namespace_boundary", Flat("channel_namespace_boundary"), ":", "separator after a namespace name"),
    row(
        "channel.user_boundary",
        Flat("channel_user_boundary"),
        "#",
        "separator before the users of a user-limited channel",
    ),
    row(
        "channel.user_separator",
        Flat("channel_user_separator"),
        ",",
        "separator between users of a user-limited channel",
    ),
    // rpc
    row("rpc.namespace_boundary", No, ":", "separator after an RPC namespace name"),
    row("rpc.without_namespace.proxy_enabled", Moot, "false", "turns rpc.proxy on for RPC calls"),
    row("rpc.without_namespace.proxy_name", No, "default", "named proxy for RPC"),
    // http_api
    row("http_api.disabled", Flat("api_disable"), "false", "turn the server HTTP API off"),
    row("http_api.handler_prefix", Flat("api_handler_prefix"), "/api", "where the server API is served"),
    row("http_api.key", Flat("api_key"), "", "API key for the server API"),
    row(
        "http_api.error_mode",
        Flat("api_error_mode"),
        "",
        "\"\": errors in a 200 body; \"transport\": errors as HTTP statuses",
    ),
    row("http_api.external", Moot, "false", "rotor serves every endpoint on one port"),
    row("http_api.insecure", Flat("api_insecure"), "false", "no API key check (trusted networks only)"),
    // transports
    row("websocket.disabled", Flat("websocket_disable"), "false", "turn the WebSocket endpoint off"),
    row(
        "websocket.handler_prefix",
        Flat("websocket_handler_prefix"),
        "/connection/websocket",
        "where the WebSocket endpoint is served",
    ),
    row("websocket.compression", No, "false", "permessage-deflate"),
    row("websocket.compression_min_size", No, "0", "smallest compressed message"),
    row("websocket.compression_level", No, "1", "deflate level"),
    row("websocket.read_buffer_size", No, "0", "read buffer size"),
    row("websocket.use_write_buffer_pool", No, "false", "pooled write buffers"),
    row("websocket.write_buffer_size", No, "0", "write buffer size"),
    row("websocket.write_timeout", Flat("websocket_write_timeout"), "1s", "time a WebSocket write may take"),
    row(
        "websocket.message_size_limit",
        Flat("websocket_message_size_limit"),
        "65536",
        "largest incoming WebSocket message (close 1009)",
    ),
    row("websocket.decompressed_message_size_limit", No, "0", "largest decompressed message"),
    row("sse.enabled", Flat("sse"), "false", "bidirectional SSE (with /emulation)"),
    row("sse.handler_prefix", Flat("sse_handler_prefix"), "/connection/sse", "where bidirectional SSE is served"),
    row("sse.max_request_body_size", Flat("sse_max_request_body_size"), "65536", "largest SSE connect request"),
    row("http_stream.enabled", Flat("http_stream"), "false", "bidirectional HTTP streaming (with /emulation)"),
    row(
        "http_stream.handler_prefix",
        Flat("http_stream_handler_prefix"),
        "/connection/http_stream",
        "where bidirectional HTTP streaming is served",
    ),
    row(
        "http_stream.max_request_body_size",
        Flat("http_stream_max_request_body_size"),
        "65536",
        "largest HTTP-stream connect request",
    ),
    row("uni_websocket.enabled", Flat("uni_websocket"), "false", "unidirectional WebSocket"),
    row(
        "uni_websocket.handler_prefix",
        Flat("uni_websocket_handler_prefix"),
        "/connection/uni_websocket",
        "where unidirectional WebSocket is served",
    ),
    row(
        "uni_websocket.message_size_limit",
        Flat("uni_websocket_message_size_limit"),
        "65536",
        "largest first (connect) message",
    ),
    row("uni_websocket.compression", No, "false", "permessage-deflate"),
    row("uni_websocket.compression_min_size", No, "0", "smallest compressed message"),
    row("uni_websocket.compression_level", No, "1", "deflate level"),
    row("uni_websocket.read_buffer_size", No, "0", "read buffer size"),
    row("uni_websocket.use_write_buffer_pool", No, "false", "pooled write buffers"),
    row("uni_websocket.write_buffer_size", No, "0", "write buffer size"),
    row("uni_websocket.write_timeout", No, "1s", "time a unidirectional WebSocket write may take"),
    row("uni_websocket.decompressed_message_size_limit", No, "0", "largest decompressed message"),
    row("uni_websocket.disable_closing_handshake", No, "false", "close without the closing handshake"),
    row("uni_websocket.disable_disconnect_push", No, "false", "no disconnect push before closing"),
    row("uni_websocket.join_push_messages", No, "false", "several pushes per frame"),
    row("uni_sse.enabled", Flat("uni_sse"), "false", "unidirectional SSE (EventSource)"),
    row(
        "uni_sse.handler_prefix",
        Flat("uni_sse_handler_prefix"),
        "/connection/uni_sse",
        "where unidirectional SSE is served",
    ),
    row(
        "uni_sse.max_request_body_size",
        Flat("uni_sse_max_request_body_size"),
        "65536",
        "largest uni SSE connect request",
    ),
    row("uni_http_stream.enabled", Flat("uni_http_stream"), "false", "unidirectional HTTP streaming"),
    row(
        "uni_http_stream.handler_prefix",
        Flat("uni_http_stream_handler_prefix"),
        "/connection/uni_http_stream",
        "where unidirectional HTTP streaming is served",
    ),
    row(
        "uni_http_stream.max_request_body_size",
        Flat("uni_http_stream_max_request_body_size"),
        "65536",
        "largest uni HTTP-stream connect request",
    ),
    row(
        "emulation.handler_prefix",
        Flat("emulation_handler_prefix"),
        "/emulation",
        "where emulation requests (SSE, HTTP streaming) are served",
    ),
    row(
        "emulation.max_request_body_size",
        Flat("emulation_max_request_body_size"),
        "65536",
        "largest emulation request",
    ),
    // the node's other endpoints
    row("admin.enabled", Flat("admin"), "false", "admin web UI and its API"),
    row("admin.handler_prefix", Flat("admin_handler_prefix"), "", "where the admin UI is served"),
    row("admin.password", Flat("admin_password"), "", "admin UI password"),
    row("admin.secret", Flat("admin_secret"), "", "secret signing admin sessions"),
    row("admin.insecure", Flat("admin_insecure"), "false", "admin without authentication"),
    row("admin.web_path", No, "", "serve the admin UI from this directory"),
    row("admin.web_proxy_address", No, "", "proxy the admin UI to this address"),
    row("admin.external", Moot, "false", "rotor serves every endpoint on one port"),
    row("prometheus.enabled", Flat("prometheus"), "false", "Prometheus metrics endpoint"),
    row("prometheus.handler_prefix", Flat("prometheus_handler_prefix"), "/metrics", "where metrics are served"),
    row("prometheus.instrument_http_handlers", No, "false", "per-handler HTTP metrics"),
    row("prometheus.recovered_publications_histogram", No, "false", "recovered publications histogram"),
    row("prometheus.native_histograms", No, "false", "native histograms"),
    row("health.enabled", Moot, "false", "rotor always serves its health endpoint"),
    row("health.handler_prefix", Flat("health_handler_prefix"), "/health", "where the health endpoint is served"),
    // node
    row("node.name", Flat("name"), "", "node name; empty: rotor_<port>"),
    row("node.info_metrics_aggregate_interval", No, "60s", "node metrics aggregation interval"),
    row("shutdown.timeout", Flat("shutdown_timeout"), "30s", "graceful shutdown limit"),
    row("pid_file", No, "", "write the process id to this file"),
    row("enable_unreleased_features", No, "false", "unreleased features"),
];

/// How an opaque v6 section (one rotor implements none of) is judged set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Its `enabled` is true.
    Enabled,
    /// This child differs from this default (`endpoint` of a proxy, `type` of a broker).
    Child(&'static str, &'static str),
    /// Any value in it is set (not false, 0, "", [] or {}).
    Anything,
    /// Never: accepted without effect (the README says why).
    Never,
}

/// v6 sections rotor implements none of, each named in one warning when in use.
pub const SECTIONS: &[(&str, Gate)] = &[
    ("http_server.tls", Gate::Enabled),
    ("http_server.tls_autocert", Gate::Enabled),
    ("http_server.internal_tls", Gate::Enabled),
    ("http_server.http3", Gate::Enabled),
    ("engine.redis", Gate::Never),
    ("broker", Gate::Enabled),
    ("presence_manager", Gate::Enabled),
    ("map_broker", Gate::Child("type", "memory")),
    ("controller", Gate::Enabled),
    ("shared_poll", Gate::Anything),
    ("client.connect_code_to_unidirectional_disconnect", Gate::Enabled),
    ("channel.proxy.subscribe_stream", Gate::Child("endpoint", "")),
    ("channel.proxy.map_publish", Gate::Child("endpoint", "")),
    ("channel.proxy.map_remove", Gate::Child("endpoint", "")),
    ("channel.proxy.shared_poll_refresh", Gate::Child("endpoint", "")),
    ("rpc.namespaces", Gate::Anything),
    ("rpc.ping", Gate::Enabled),
    ("proxies", Gate::Anything),
    ("grpc_api", Gate::Enabled),
    ("consumers", Gate::Anything),
    ("webtransport", Gate::Enabled),
    ("uni_sse.connect_code_to_http_response", Gate::Enabled),
    ("uni_http_stream.connect_code_to_http_response", Gate::Enabled),
    ("uni_grpc", Gate::Enabled),
    ("swagger", Gate::Enabled),
    ("debug", Gate::Enabled),
    ("init", Gate::Enabled),
    ("opentelemetry", Gate::Enabled),
    ("graphite", Gate::Enabled),
    ("usage_stats", Gate::Never),
];

/// Channel options (`channel.without_namespace.*`, `channel.namespaces[].*`): v6 name, target,
/// default, meaning. Most keep their v5 names.
pub const CHANNEL_ROWS: &[Row] = &[
    row("presence", Flat("presence"), "false", "who is subscribed (presence, presence_stats)"),
    row("join_leave", Flat("join_leave"), "false", "join and leave pushes"),
    row("force_push_join_leave", Flat("force_push_join_leave"), "false", "join/leave pushes without the client asking"),
    row("history_size", Flat("history_size"), "0", "publications kept (with history_ttl)"),
    row("history_ttl", Flat("history_ttl"), "0s", "how long publications are kept (with history_size)"),
    row("history_meta_ttl", Flat("history_meta_ttl"), "0s", "stream meta lifetime; 0: channel.history_meta_ttl"),
    row("force_positioning", Flat("force_positioning"), "false", "positioning for every subscriber"),
    row("allow_positioning", Flat("allow_positioning"), "false", "positioning when the client asks"),
    row("force_recovery", Flat("force_recovery"), "false", "recovery for every subscriber"),
    row("allow_recovery", Flat("allow_recovery"), "false", "recovery when the client asks"),
    row("force_recovery_mode", Flat("force_recovery_mode"), "", "\"stream\" (default) or \"cache\""),
    row(
        "allow_subscribe_for_anonymous",
        Flat("allow_subscribe_for_anonymous"),
        "false",
        "anonymous clients may subscribe",
    ),
    row(
        "allow_subscribe_for_client",
        Flat("allow_subscribe_for_client"),
        "false",
        "authenticated clients may subscribe",
    ),
    row("allow_publish_for_anonymous", Flat("allow_publish_for_anonymous"), "false", "anonymous clients may publish"),
    row("allow_publish_for_subscriber", Flat("allow_publish_for_subscriber"), "false", "subscribers may publish"),
    row("allow_publish_for_client", Flat("allow_publish_for_client"), "false", "authenticated clients may publish"),
    row(
        "allow_presence_for_anonymous",
        Flat("allow_presence_for_anonymous"),
        "false",
        "anonymous clients may ask presence",
    ),
    row(
        "allow_presence_for_subscriber",
        Flat("allow_presence_for_subscriber"),
        "false",
        "subscribers may ask presence",
    ),
    row(
        "allow_presence_for_client",
        Flat("allow_presence_for_client"),
        "false",
        "authenticated clients may ask presence",
    ),
    row(
        "allow_history_for_anonymous",
        Flat("allow_history_for_anonymous"),
        "false",
        "anonymous clients may ask history",
    ),
    row("allow_history_for_subscriber", Flat("allow_history_for_subscriber"), "false", "subscribers may ask history"),
    row("allow_history_for_client", Flat("allow_history_for_client"), "false", "authenticated clients may ask history"),
    row(
        "allow_user_limited_channels",
        Flat("allow_user_limited_channels"),
        "false",
        "channels naming their users after #",
    ),
    row("channel_regex", Flat("channel_regex"), "", "pattern channel names must match"),
    row(
        "allowed_delta_types",
        Flat("allowed_delta_types"),
        "[]",
        "delta compression types subscribers may ask (fossil)",
    ),
    row("delta_publish", Flat("delta_publish"), "false", "publish as deltas by default"),
    row("subscribe_proxy_enabled", Flat("proxy_subscribe"), "false", "ask channel.proxy.subscribe before subscribing"),
    row("publish_proxy_enabled", Flat("proxy_publish"), "false", "ask channel.proxy.publish before a client publish"),
    row(
        "sub_refresh_proxy_enabled",
        Flat("proxy_sub_refresh"),
        "false",
        "ask channel.proxy.sub_refresh to refresh subscriptions",
    ),
    row("subscribe_proxy_name", No, "default", "named proxy for subscribe"),
    row("publish_proxy_name", No, "default", "named proxy for publish"),
    row("sub_refresh_proxy_name", No, "default", "named proxy for sub_refresh"),
    row("subscribe_stream_proxy_enabled", No, "false", "subscribe stream proxy"),
    row("subscribe_stream_proxy_name", No, "default", "named subscribe stream proxy"),
    row("subscribe_stream_proxy_bidirectional", No, "false", "bidirectional subscribe streams"),
    row("map_clients_presence_channel_prefix", No, "", "map-based client presence"),
    row("map_users_presence_channel_prefix", No, "", "map-based user presence"),
    row("auto_cache_recover", No, "false", "automatic cache recovery"),
    row("allow_tags_filter", No, "false", "tags filter on subscribe"),
    row("publication_data_format", No, "", "validation of publication data"),
    row("subscription_type", No, "", "stream (default), map or shared_poll subscriptions"),
    row("map", Moot, "{}", "options of map subscriptions (see subscription_type)"),
    row("shared_poll", Moot, "{}", "options of shared_poll subscriptions (see subscription_type)"),
];

/// The proxies rotor maps: v6 path, flat prefix, whether it has its own `enabled`.
pub const PROXIES: &[(&str, &str, bool)] = &[
    ("client.proxy.connect", "proxy_connect", true),
    ("client.proxy.refresh", "proxy_refresh", true),
    ("channel.proxy.subscribe", "proxy_subscribe", false),
    ("channel.proxy.publish", "proxy_publish", false),
    ("channel.proxy.sub_refresh", "proxy_sub_refresh", false),
    ("rpc.proxy", "proxy_rpc", false),
];

/// The leaves of one proxy object (relative to it): name, target kind, default, meaning.
/// `Shared` options have one flat key for all proxies in v5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyTo {
    /// `<prefix>_<suffix>`.
    Own(&'static str),
    /// One flat key shared by all proxies.
    Shared(&'static str),
    No,
}

pub const PROXY_ROWS: &[(&str, ProxyTo, &str, &str)] = &[
    ("endpoint", ProxyTo::Own("endpoint"), "", "backend URL"),
    ("timeout", ProxyTo::Own("timeout"), "1s", "backend request timeout"),
    ("http_headers", ProxyTo::Shared("proxy_http_headers"), "[]", "client request headers passed to the backend"),
    (
        "include_connection_meta",
        ProxyTo::Shared("proxy_include_connection_meta"),
        "false",
        "connection meta in proxy requests",
    ),
    ("http.static_headers", ProxyTo::Shared("proxy_static_http_headers"), "{}", "headers added to every proxy request"),
    ("grpc_metadata", ProxyTo::No, "[]", "gRPC metadata passed to the backend"),
    ("emulated_headers", ProxyTo::No, "[]", "headers from the client's emulated headers"),
    ("binary_encoding", ProxyTo::No, "false", "base64 data in proxy requests"),
    ("http.tls", ProxyTo::No, "{}", "TLS of the proxy client"),
    ("http.status_to_code_transforms", ProxyTo::No, "[]", "HTTP status to error code rules"),
    ("grpc", ProxyTo::No, "{}", "gRPC proxy options"),
];
