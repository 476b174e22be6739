//! Micro-benchmarks of the core's hot paths (no sockets, no clock):
//!
//! - `fanout/N`: one API publish encoded once and handed to N subscribed uni sessions
//!   (`Node::handle_api` + draining `poll_output`).
//! - `decode_commands/json_batch_10`: a frame of 10 newline-separated JSON commands.
//! - `verify_connect/hs256`: checking an HS256 connection token.
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

criterion_group!(benches, fanout, decode, verify);
criterion_main!(benches);
