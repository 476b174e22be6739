//! Which path is which endpoint: the table built from the `*_handler_prefix` keys.

use crate::config::{invalid, Config, ConfigError};

/// An endpoint of the HTTP surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Websocket,
    HttpStream,
    Sse,
    UniHttpStream,
    UniSse,
    UniWebsocket,
    Emulation,
    Health,
    /// Prometheus metrics (config `prometheus`, at `prometheus_handler_prefix`).
    Metrics,
    /// `POST <prefix>/<method>` and the legacy `POST <prefix>`.
    Api,
    /// The admin web UI's page (`admin_handler_prefix`, `/` when empty).
    AdminPage,
    /// `POST <admin prefix>/admin/auth`: password → admin token.
    AdminAuth,
    /// `POST <admin prefix>/admin/api`: server API calls with an admin token.
    AdminApi,
}

impl Endpoint {
    /// Whether a client holds the connection open for a unidirectional session (the native
    /// host serves these leanly, without a general HTTP stack).
    pub fn is_unidirectional(self) -> bool {
        matches!(self, Endpoint::UniHttpStream | Endpoint::UniSse | Endpoint::UniWebsocket)
    }
}

/// The enabled endpoints and their paths, checked once when the config is loaded.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Matched exactly.
    exact: Vec<(String, Endpoint)>,
    /// The API matches its prefix and everything under `<prefix>/`; None when disabled.
    api: Option<String>,
}

/// The key, path (default for an empty value) and whether the endpoint is on.
fn keyed(c: &Config) -> [(&'static str, &str, &'static str, bool, Endpoint); 10] {
    let emulation = c.http_stream || c.sse;
    [
        ("api_handler_prefix", c.api_handler_prefix.as_str(), "/api", !c.api_disable, Endpoint::Api),
        (
            "websocket_handler_prefix",
            &c.websocket_handler_prefix,
            "/connection/websocket",
            !c.websocket_disable,
            Endpoint::Websocket,
        ),
        (
            "http_stream_handler_prefix",
            &c.http_stream_handler_prefix,
            "/connection/http_stream",
            c.http_stream,
            Endpoint::HttpStream,
        ),
        ("sse_handler_prefix", &c.sse_handler_prefix, "/connection/sse", c.sse, Endpoint::Sse),
        (
            "uni_http_stream_handler_prefix",
            &c.uni_http_stream_handler_prefix,
            "/connection/uni_http_stream",
            c.uni_http_stream,
            Endpoint::UniHttpStream,
        ),
        ("uni_sse_handler_prefix", &c.uni_sse_handler_prefix, "/connection/uni_sse", c.uni_sse, Endpoint::UniSse),
        (
            "uni_websocket_handler_prefix",
            &c.uni_websocket_handler_prefix,
            "/connection/uni_websocket",
            c.uni_websocket,
            Endpoint::UniWebsocket,
        ),
        ("emulation_handler_prefix", &c.emulation_handler_prefix, "/emulation", emulation, Endpoint::Emulation),
        ("health_handler_prefix", &c.health_handler_prefix, "/health", true, Endpoint::Health),
        ("prometheus_handler_prefix", &c.prometheus_handler_prefix, "/metrics", c.prometheus, Endpoint::Metrics),
    ]
}

impl Endpoints {
    /// The table for `config`; an error names the key of a path that is malformed or that
    /// two enabled endpoints would share.
    pub fn new(config: &Config) -> Result<Endpoints, ConfigError> {
        let mut exact: Vec<(String, Endpoint, &'static str)> = Vec::new();
        let mut api: Option<(String, &'static str)> = None;
        for (key, path, default, enabled, endpoint) in keyed(config) {
            let path = if path.is_empty() { default } else { path };
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f) {
                let why = format!("\"{path}\" must be a path starting with / (no spaces, ? or #)");
                return Err(invalid(key, why));
            }
            let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
            if !enabled {
                continue;
            }
            if endpoint == Endpoint::Api {
                api = Some((path.to_owned(), key));
                continue;
            }
            if let Some((_, _, other)) = exact.iter().find(|(p, _, _)| p == path) {
                return Err(invalid(key, format!("\"{path}\" is also {other}: each endpoint needs its own path")));
            }
            exact.push((path.to_owned(), endpoint, key));
        }
        for (path, endpoint) in admin_paths(config)? {
            if let Some((_, _, other)) = exact.iter().find(|(p, _, _)| *p == path) {
                let why = format!("\"{path}\" is also {other}: each endpoint needs its own path");
                return Err(invalid("admin_handler_prefix", why));
            }
            exact.push((path, endpoint, "admin_handler_prefix"));
        }
        if let Some((prefix, key)) = &api {
            if let Some((path, _, other)) = exact.iter().find(|(p, _, _)| under(prefix, p).is_some()) {
                return Err(invalid(
                    key,
                    format!("\"{prefix}\" would take {other} \"{path}\": each endpoint needs its own path"),
                ));
            }
        }
        Ok(Endpoints { exact: exact.into_iter().map(|(p, e, _)| (p, e)).collect(), api: api.map(|(p, _)| p) })
    }

    /// The endpoint at `path`, and for the API the method named after the prefix (`""` for
    /// the legacy endpoint).
    pub fn find<'p>(&self, path: &'p str) -> Option<(Endpoint, &'p str)> {
        if let Some(method) = self.api.as_deref().and_then(|prefix| under(prefix, path)) {
            return Some((Endpoint::Api, method));
        }
        self.exact.iter().find(|(p, _)| p == path).map(|(_, e)| (*e, ""))
    }

    /// The path of an enabled endpoint (the API's prefix).
    pub fn path(&self, endpoint: Endpoint) -> Option<&str> {
        if endpoint == Endpoint::Api {
            return self.api.as_deref();
        }
        self.exact.iter().find(|(_, e)| *e == endpoint).map(|(p, _)| p.as_str())
    }
}

/// The admin UI's paths when it is on: the page at the prefix (and the prefix with a `/`),
/// `<prefix>/admin/auth` and `<prefix>/admin/api`, as Centrifugo serves them.
fn admin_paths(c: &Config) -> Result<Vec<(String, Endpoint)>, ConfigError> {
    if !c.admin {
        return Ok(Vec::new());
    }
    let prefix = c.admin_handler_prefix.as_str();
    if !(prefix.is_empty() || prefix.starts_with('/'))
        || prefix.bytes().any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f)
    {
        let why = format!("\"{prefix}\" must be empty or a path starting with / (no spaces, ? or #)");
        return Err(invalid("admin_handler_prefix", why));
    }
    let prefix = prefix.trim_end_matches('/');
    let mut paths = vec![(format!("{prefix}/"), Endpoint::AdminPage)];
    if !prefix.is_empty() {
        paths.push((prefix.to_owned(), Endpoint::AdminPage));
    }
    paths.push((format!("{prefix}/admin/auth"), Endpoint::AdminAuth));
    paths.push((format!("{prefix}/admin/api"), Endpoint::AdminApi));
    Ok(paths)
}

/// What follows `prefix` in `path` (without the `/`), if `path` is the prefix or under it.
fn under<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some("");
    }
    if prefix == "/" {
        return Some(rest.trim_start_matches('/'));
    }
    rest.strip_prefix('/').map(|m| m.trim_start_matches('/'))
}
