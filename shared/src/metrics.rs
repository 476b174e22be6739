//! What the hub counts for Prometheus, under Centrifugo's metric names and labels, so that
//! Centrifugo's published Grafana dashboard works against rotor unchanged.
//!
//! The hub keeps plain integers ([`Metrics`]); gauges (clients, users, channels,
//! subscriptions) are read from its state when scraped ([`Snapshot`]). Every label value
//! comes from a fixed set known here (methods, transports, message types) or from codes the
//! server chose, kept in bounded tables, so no client can grow the output. A host renders a
//! [`Snapshot`] as the Prometheus text format ([`Snapshot::render`]); the edge first adds up
//! the snapshots of its node objects ([`Snapshot::merge`]).
//!
//! The text is written here rather than by `prometheus-client`: that crate writes
//! OpenMetrics, which renames every counter to `<name>_total` (Centrifugo's counters, such as
//! `centrifugo_node_messages_sent_count`, have no suffix, and the dashboard asks for them by
//! name) and has no summaries (Centrifugo's durations are summaries with quantiles).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Client protocol methods, as Centrifugo labels them (`method` of the client metrics).
pub const CLIENT_METHODS: [&str; 13] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
    "unknown",
];

/// The `unknown` method: a command that names none (or a pong).
pub const UNKNOWN_METHOD: usize = CLIENT_METHODS.len() - 1;

/// Transports, as Centrifugo labels them (`transport`).
pub const TRANSPORTS: [&str; 6] = ["websocket", "http_stream", "sse", "uni_websocket", "uni_http_stream", "uni_sse"];

/// Message types between node and broker (`type`).
pub const MESSAGE_TYPES: [&str; 4] = ["publication", "join", "leave", "control"];

/// Index into [`MESSAGE_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Publication = 0,
    Join = 1,
    Leave = 2,
}

/// Distinct `(method, code)` or `code` label pairs kept at most; later ones add to the last
/// row, labelled `code="other"`. Codes are the server's own, but the API's `disconnect`
/// and a proxy's answers may pick any.
pub const MAX_CODES: usize = 256;

/// Upper bounds of the duration buckets, in microseconds (the last is "more").
const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// The quantiles a summary reports (Centrifugo's objectives).
const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")];

/// Durations in fixed buckets: a summary's quantiles are estimated from them (the upper
/// bound of the bucket holding the rank), its `_sum` and `_count` are exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// One count per bucket of `BUCKETS_US`, then the count above the last bound.
    buckets: [u64; BUCKETS_US.len() + 1],
    sum_us: u64,
    count: u64,
}

impl Durations {
    pub fn observe(&mut self, micros: u64) {
        let i = BUCKETS_US.iter().position(|&b| micros <= b).unwrap_or(BUCKETS_US.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.saturating_add(1);
        }
        self.sum_us = self.sum_us.saturating_add(micros);
        self.count = self.count.saturating_add(1);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn merge(&mut self, other: &Durations) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a = a.saturating_add(*b);
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count = self.count.saturating_add(other.count);
    }

    /// The estimated `q` quantile in seconds (NaN without observations, as Go's summaries).
    fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(*n);
            if seen >= rank {
                let bound = BUCKETS_US.get(i).copied().unwrap_or(BUCKETS_US[BUCKETS_US.len() - 1]);
                return bound as f64 / 1e6;
            }
        }
        BUCKETS_US[BUCKETS_US.len() - 1] as f64 / 1e6
    }
}

/// A bounded table of counts keyed by a label pair (see [`MAX_CODES`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeCounts {
    /// Sorted by key; `code == u32::MAX` is the overflow row ("other").
    rows: Vec<(u8, u32, u64)>,
}

impl CodeCounts {
    pub fn add(&mut self, label: u8, code: u32, n: u64) {
        let key = (label, code);
        match self.rows.binary_search_by(|r| (r.0, r.1).cmp(&key)) {
            Ok(i) => self.rows[i].2 = self.rows[i].2.saturating_add(n),
            Err(_) if self.rows.len() >= MAX_CODES && code != u32::MAX => self.add(label, u32::MAX, n),
            Err(i) => self.rows.insert(i, (label, code, n)),
        }
    }

    /// The count for a pair (tests, and hosts that check a figure).
    pub fn get(&self, label: u8, code: u32) -> u64 {
        self.rows.iter().find(|r| r.0 == label && r.1 == code).map_or(0, |r| r.2)
    }

    fn merge(&mut self, other: &CodeCounts) {
        for &(label, code, n) in &other.rows {
            self.add(label, code, n);
        }
    }
}

/// The counters the hub keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Messages the node sent to the broker, by [`MESSAGE_TYPES`].
    pub messages_sent: [u64; MESSAGE_TYPES.len()],
    /// Messages the node received from the broker, by [`MESSAGE_TYPES`].
    pub messages_received: [u64; MESSAGE_TYPES.len()],
    /// Connections opened, by [`TRANSPORTS`].
    pub transport_connects: [u64; TRANSPORTS.len()],
    /// Messages written to clients, by [`TRANSPORTS`].
    pub transport_messages_sent: [u64; TRANSPORTS.len()],
    /// Error replies, by ([`CLIENT_METHODS`] index, code).
    pub reply_errors: CodeCounts,
    /// Disconnects the server decided, by code (label index unused: 0).
    pub server_disconnects: CodeCounts,
    /// Client command durations, by [`CLIENT_METHODS`].
    pub command_durations: [Durations; CLIENT_METHODS.len()],
    /// Server API command durations, by [`crate::api::METHODS`].
    pub api_durations: [Durations; crate::api::METHODS.len()],
}

impl Metrics {
    pub fn merge(&mut self, other: &Metrics) {
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a = a.saturating_add(*b));
        add(&mut self.messages_sent, &other.messages_sent);
        add(&mut self.messages_received, &other.messages_received);
        add(&mut self.transport_connects, &other.transport_connects);
        add(&mut self.transport_messages_sent, &other.transport_messages_sent);
        self.reply_errors.merge(&other.reply_errors);
        self.server_disconnects.merge(&other.server_disconnects);
        self.command_durations.iter_mut().zip(other.command_durations.iter()).for_each(|(a, b)| a.merge(b));
        self.api_durations.iter_mut().zip(other.api_durations.iter()).for_each(|(a, b)| a.merge(b));
    }

    /// Records how long a server API command took (the host measures it).
    pub fn observe_api(&mut self, method: &str, micros: u64) {
        if let Some(i) = crate::api::METHODS.iter().position(|m| *m == method) {
            self.api_durations[i].observe(micros);
        }
    }
}

/// A node's figures at one moment: what `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub num_clients: u64,
    pub num_users: u64,
    pub num_channels: u64,
    pub num_subscriptions: u64,
    pub num_nodes: u64,
    pub metrics: Metrics,
}

impl Snapshot {
    /// Adds another node's figures (the edge's node objects). Users and channels that span
    /// nodes count once per node, as a sum of Centrifugo nodes' gauges would.
    pub fn merge(&mut self, other: &Snapshot) {
        self.num_clients = self.num_clients.saturating_add(other.num_clients);
        self.num_users = self.num_users.saturating_add(other.num_users);
        self.num_channels = self.num_channels.saturating_add(other.num_channels);
        self.num_subscriptions = self.num_subscriptions.saturating_add(other.num_subscriptions);
        self.num_nodes = self.num_nodes.saturating_add(other.num_nodes);
        self.metrics.merge(&other.metrics);
    }

    /// The Prometheus text format (version 0.0.4) of these figures. Hosts append their own
    /// process metrics.
    pub fn render(&self, out: &mut String) {
        let m = &self.metrics;
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            head(out, name, help, "gauge");
            let _ = writeln!(out, "{name} {v}");
        };
        gauge(out, "centrifugo_node_num_clients", "Number of clients connected.", self.num_clients);
        gauge(out, "centrifugo_node_num_users", "Number of unique users connected.", self.num_users);
        gauge(
            out,
            "centrifugo_node_num_channels",
            "Number of channels with one or more subscribers.",
            self.num_channels,
        );
        gauge(out, "centrifugo_node_num_subscriptions", "Number of subscriptions.", self.num_subscriptions);
        gauge(out, "centrifugo_node_num_nodes", "Number of nodes in the cluster.", self.num_nodes);
        head(out, "centrifugo_node_build", "Node build info.", "gauge");
        let _ = writeln!(out, "centrifugo_node_build{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

        let by_type = |out: &mut String, name: &str, help: &str, values: &[u64]| {
            head(out, name, help, "counter");
            for (t, v) in MESSAGE_TYPES.iter().zip(values) {
                let _ = writeln!(out, "{name}{{type=\"{t}\"}} {v}");
            }
        };
        by_type(
            out,
            "centrifugo_node_messages_sent_count",
            "Number of messages sent by node to broker.",
            &m.messages_sent,
        );
        by_type(
            out,
            "centrifugo_node_messages_received_count",
            "Number of messages received from broker.",
            &m.messages_received,
        );

        let name = "centrifugo_client_num_reply_errors";
        head(out, name, "Number of errors in replies sent to clients.", "counter");
        for &(method, code, n) in &m.reply_errors.rows {
            let method = CLIENT_METHODS.get(usize::from(method)).unwrap_or(&"unknown");
            let _ = writeln!(out, "{name}{{method=\"{method}\",code=\"{}\"}} {n}", code_label(code));
        }
        let name = "centrifugo_client_num_server_disconnects";
        head(out, name, "Number of server initiated disconnects.", "counter");
        for &(_, code, n) in &m.server_disconnects.rows {
            let _ = writeln!(out, "{name}{{code=\"{}\"}} {n}", code_label(code));
        }
        let name = "centrifugo_client_command_duration_seconds";
        head(out, name, "Client command duration summary.", "summary");
        for (method, d) in CLIENT_METHODS.iter().zip(m.command_durations.iter()) {
            summary(out, name, &format!("method=\"{method}\""), d);
        }

        let by_transport = |out: &mut String, name: &str, help: &str, values: &[u64]| {
            head(out, name, help, "counter");
            for (t, v) in TRANSPORTS.iter().zip(values) {
                let _ = writeln!(out, "{name}{{transport=\"{t}\"}} {v}");
            }
        };
        by_transport(
            out,
            "centrifugo_transport_connect_count",
            "Number of connections to specific transport.",
            &m.transport_connects,
        );
        by_transport(
            out,
            "centrifugo_transport_messages_sent",
            "Number of messages sent to client connections over specific transport.",
            &m.transport_messages_sent,
        );

        let name = "centrifugo_api_command_duration_seconds";
        head(out, name, "Duration of API per command.", "summary");
        for (method, d) in crate::api::METHODS.iter().zip(m.api_durations.iter()) {
            summary(out, name, &format!("protocol=\"http\",method=\"{method}\""), d);
        }
    }
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn code_label(code: u32) -> String {
    if code == u32::MAX {
        "other".to_owned()
    } else {
        code.to_string()
    }
}

fn summary(out: &mut String, name: &str, labels: &str, d: &Durations) {
    for (q, label) in QUANTILES {
        let v = d.quantile(q);
        if v.is_nan() {
            let _ = writeln!(out, "{name}{{{labels},quantile=\"{label}\"}} NaN");
        } else {
            let _ = writeln!(out, "{name}{{{labels},quantile=\"{label}\"}} {v}");
        }
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", d.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", d.count);
}

/// Index of a transport name in [`TRANSPORTS`].
pub fn transport_index(name: &str) -> usize {
    TRANSPORTS.iter().position(|t| *t == name).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_beyond_the_bound_fold_into_other() {
        let mut c = CodeCounts::default();
        for code in 0..(MAX_CODES as u32 + 50) {
            c.add(0, code, 1);
        }
        assert_eq!(c.rows.len(), MAX_CODES + 1);
        assert_eq!(c.get(0, u32::MAX), 50);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut d = Durations::default();
        assert!(d.quantile(0.5).is_nan());
        for _ in 0..99 {
            d.observe(80);
        }
        d.observe(3_000_000);
        assert_eq!(d.quantile(0.5), 0.0001);
        assert_eq!(d.quantile(0.999), 5.0);
        d.observe(u64::MAX);
        assert_eq!(d.count(), 101);
    }

    #[test]
    fn renders_centrifugo_names_and_merges() {
        let mut a = Snapshot { num_clients: 2, num_nodes: 1, ..Default::default() };
        a.metrics.messages_sent[MessageType::Publication as usize] = 5;
        a.metrics.server_disconnects.add(0, 3008, 1);
        let b = Snapshot { num_clients: 1, num_nodes: 1, ..Default::default() };
        a.merge(&b);
        let mut text = String::new();
        a.render(&mut text);
        assert!(text.contains("\ncentrifugo_node_num_clients 3\n"), "{text}");
        assert!(text.contains("centrifugo_node_messages_sent_count{type=\"publication\"} 5\n"));
        assert!(text.contains("centrifugo_client_num_server_disconnects{code=\"3008\"} 1\n"));
        assert!(text.contains("centrifugo_client_command_duration_seconds_count{method=\"connect\"} 0\n"));
        assert!(text.contains("# TYPE centrifugo_node_messages_sent_count counter\n"));
    }
}
