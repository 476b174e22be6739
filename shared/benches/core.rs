//! Micro-benchmarks of the core's hot paths (no sockets, no clock):
//!
//! - `fanout/N`: one API publish encoded once and handed to N subscribed uni sessions
//!   (`Node::handle_api` + draining `poll_output`).
//! - `decode_commands/json_batch_10`: a frame of 10 newline-separated JSON commands.
//! - `verify_connect/hs256`: checking an HS256 connection token.
//! - `delta/*`: a realistic stream (a 2 KB JSON document, a field or two changed per
//!   version) published to a WebSocket client with `delta: "fossil"` and to one without,
//!   JSON and Protobuf: prints the bytes each received and the share deltas saved, then times
//!   one publication through the node and the Fossil encoder alone.
//!
//! `cargo bench -p shared` for the full run, `cargo bench -p shared -- --quick` for a fast one.
//! These report numbers; they never assert them.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use shared::api::{ApiCommand, ApiId, PublishRequest};
use shared::auth::{issue_hs256, KeySet, TokenVerifier};
use shared::config::Config;
use shared::hub::{NodeInfo, SessionId, Transport};
use shared::node::{Node, Output};
use shared::protocol::{decode_commands, ConnectRequest, Encoding, SubscribeRequest};
use shared::time::Timestamp;

const CHANNEL: &str = "bench";
const START: Timestamp = Timestamp(1_700_000_000_000);

/// A node with `n` uni HTTP-stream sessions, each subscribed to [`CHANNEL`] at connect, with
/// the Prometheus counters on or off (config `prometheus`).
fn node_counting(n: u64, prometheus: bool) -> Node {
    let mut config = Config { client_insecure: true, prometheus, ..Config::default() };
    config.channel.allow_subscribe_for_client = true;
    let info = NodeInfo { id: "bench-node".into(), name: "bench".into(), version: "0".into() };
    let mut node = Node::new(Arc::new(config), info, 7, START).expect("valid config");
    let mut subs = BTreeMap::new();
    subs.insert(CHANNEL.to_owned(), SubscribeRequest::default());
    let request = ConnectRequest { subs, ..ConnectRequest::default() };
    for i in 1..=n {
        let session = SessionId(i);
        node.handle_open(session, Transport::UniHttpStream, START);
        node.handle_connect(session, request.clone(), None, START);
        while node.poll_output().is_some() {}
    }
    node
}

fn publish(seq: u64) -> ApiCommand {
    // ~100 bytes of payload, like the load benchmark's publications.
    let data = format!("{{\"b\":\"#{seq}@1700000000000000;{}\"}}", "x".repeat(64));
    ApiCommand::Publish(PublishRequest {
        channel: CHANNEL.into(),
        data: Bytes::from(data),
        ..PublishRequest::default()
    })
}

fn fanout(c: &mut Criterion) {
    fanout_group(c, "fanout", &[1, 100, 10_000], false);
    // What counting for Prometheus costs the fan-out: the same publication, counters on.
    fanout_group(c, "fanout_prometheus_on", &[10_000], true);
}

fn fanout_group(c: &mut Criterion, name: &str, sizes: &[u64], prometheus: bool) {
    let mut group = c.benchmark_group(name);
    for &n in sizes {
        let mut node = node_counting(n, prometheus);
        let mut seq = 0u64;
        let mut now = START;
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                seq += 1;
                now = Timestamp(now.0 + 1);
                node.handle_api(ApiId(seq), publish(seq), now);
                let mut sent = 0u64;
                while let Some(output) = node.poll_output() {
                    if let Output::Send { data, .. } = output {
                        black_box(data);
                        sent += 1;
                    }
                }
                debug_assert_eq!(sent, n);
                sent
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let lines: Vec<String> = (1..=10)
        .map(|id| match id % 3 {
            0 => format!(
                r#"{{"id":{id},"subscribe":{{"channel":"news:{id}","recover":true,"offset":12,"epoch":"abcd"}}}}"#
            ),
            1 => {
                format!(r#"{{"id":{id},"publish":{{"channel":"chat:{id}","data":{{"text":"hello world","n":{id}}}}}}}"#)
            }
            _ => format!(r#"{{"id":{id},"presence":{{"channel":"room:{id}"}}}}"#),
        })
        .collect();
    let frame = lines.join("\n").into_bytes();
    assert_eq!(decode_commands(Encoding::Json, &frame).expect("the batch decodes").len(), 10);
    let mut group = c.benchmark_group("decode_commands");
    group.throughput(Throughput::Elements(10));
    group.bench_function("json_batch_10", |b| b.iter(|| decode_commands(Encoding::Json, black_box(&frame))));
    group.finish();
}

fn verify(c: &mut Criterion) {
    let secret = "bench-secret";
    let verifier = TokenVerifier::new(KeySet::new(secret, "", "").expect("hmac key"), "", "", "");
    let token = issue_hs256(secret, &json!({"sub": "user-42", "exp": 2_000_000_000u64, "info": {"name": "bench"}}));
    let now_ms = START.0;
    verifier.verify_connect(&token, now_ms).expect("the token verifies");
    c.bench_function("verify_connect/hs256", |b| b.iter(|| verifier.verify_connect(black_box(&token), now_ms)));
}

/// Version `n` of a 2 KB product list: each version changes one item's price and stock, and
/// the document's version and timestamp.
fn document(n: u64) -> String {
    let items: Vec<String> = (0..24u64)
        .map(|i| {
            let changed = i == (n * 7) % 24;
            let price = if changed { 1000 + n % 97 } else { 1000 + i };
            let stock = if changed { n % 13 } else { i * 3 };
            format!(r#"{{"id":{i},"name":"product number {i}","price":{price},"stock":{stock},"tags":["x","y"]}}"#)
        })
        .collect();
    format!(
        r#"{{"version":{n},"updated":"2026-11-30T18:{:02}:{:02}Z","items":[{}]}}"#,
        n / 60 % 60,
        n % 60,
        items.join(",")
    )
}

/// A node whose namespace `doc` allows and publishes deltas; sessions 1 (delta) and 2 (plain)
/// are WebSocket clients of `encoding` subscribed to `doc:1`.
fn delta_node(encoding: Encoding) -> Node {
    let config = json!({
        "client_insecure": true,
        "namespaces": [{"name": "doc", "allow_subscribe_for_client": true, "history_size": 10,
                        "history_ttl": "60s", "allowed_delta_types": ["fossil"], "delta_publish": true}],
    });
    let config = Config::from_json_str(&config.to_string(), std::iter::empty()).expect("valid config").config;
    let info = NodeInfo { id: "bench-node".into(), name: "bench".into(), version: "0".into() };
    let mut node = Node::new(Arc::new(config), info, 7, START).expect("valid config");
    for (id, delta) in [(1u64, "fossil"), (2, "")] {
        let session = SessionId(id);
        node.handle_open(session, Transport::Websocket(encoding), START);
        let commands =
            [json!({"id": 1, "connect": {}}), json!({"id": 2, "subscribe": {"channel": "doc:1", "delta": delta}})];
        for command in commands {
            let frame = match encoding {
                Encoding::Json => command.to_string().into_bytes(),
                Encoding::Protobuf => protobuf_command(&command),
            };
            node.handle_frame(session, &frame, START);
            while node.poll_output().is_some() {}
        }
    }
    node
}

/// The same command as Protobuf (connect and subscribe only), length-delimited.
fn protobuf_command(command: &serde_json::Value) -> Vec<u8> {
    use prost::Message as _;
    let mut c = shared::protocol::Command { id: command["id"].as_u64().unwrap_or(0) as u32, ..Default::default() };
    if command.get("connect").is_some() {
        c.connect = Some(ConnectRequest::default());
    }
    if let Some(s) = command.get("subscribe") {
        c.subscribe = Some(SubscribeRequest {
            channel: s["channel"].as_str().unwrap_or_default().into(),
            delta: s["delta"].as_str().unwrap_or_default().into(),
            ..Default::default()
        });
    }
    c.encode_length_delimited_to_vec()
}

fn publish_document(node: &mut Node, n: u64, now: Timestamp) -> [u64; 2] {
    let command = ApiCommand::Publish(PublishRequest {
        channel: "doc:1".into(),
        data: Bytes::from(document(n)),
        ..PublishRequest::default()
    });
    node.handle_api(ApiId(n), command, now);
    let mut bytes = [0u64; 2];
    while let Some(output) = node.poll_output() {
        if let Output::Send { session, data } = output {
            bytes[(session.0 - 1) as usize] += data.len() as u64;
        }
    }
    bytes
}

fn delta(c: &mut Criterion) {
    let versions = 1000u64;
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let mut node = delta_node(encoding);
        let mut total = [0u64; 2];
        for n in 1..=versions {
            let [d, p] = publish_document(&mut node, n, START);
            total[0] += d;
            total[1] += p;
        }
        println!(
            "delta/{encoding:?}: {versions} versions of a {} byte document: {} bytes with fossil deltas, {} bytes \
             without ({:.1}% saved, {:.0} vs {:.0} bytes per publication)",
            document(1).len(),
            total[0],
            total[1],
            100.0 * (1.0 - total[0] as f64 / total[1] as f64),
            total[0] as f64 / versions as f64,
            total[1] as f64 / versions as f64,
        );
    }
    let mut group = c.benchmark_group("delta");
    let mut node = delta_node(Encoding::Json);
    let mut n = 0u64;
    group.bench_function("publish_2kb_to_delta_and_plain_clients", |b| {
        b.iter(|| {
            n += 1;
            publish_document(&mut node, n, START)
        })
    });
    let (a, b2) = (document(1), document(2));
    group.bench_function("fossil_encode_2kb", |b| {
        b.iter(|| shared::delta::fossil::encode(black_box(a.as_bytes()), black_box(b2.as_bytes())))
    });
    group.finish();
}

criterion_group!(benches, fanout, decode, verify, delta);
criterion_main!(benches);
