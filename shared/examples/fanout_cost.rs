//! What counting for Prometheus costs the fan-out, in instructions (repeatable on a busy
//! machine, unlike time): 1,000,000 deliveries (100 publications to 10,000 uni HTTP-stream
//! subscribers) with the `prometheus` counters off or on.
//!
//! ```sh
//! cargo build --release -p shared --example fanout_cost
//! for m in off on; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect=fanout_cost::fan_out \
//!     target/release/examples/fanout_cost $m 2>&1 | grep 'Collected'
//! done
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use shared::api::{ApiCommand, ApiId, PublishRequest};
use shared::config::Config;
use shared::hub::{NodeInfo, SessionId, Transport};
use shared::node::{Node, Output};
use shared::protocol::{ConnectRequest, SubscribeRequest};
use shared::Timestamp;

const SUBSCRIBERS: u64 = 10_000;
const PUBLICATIONS: u64 = 100;

fn main() {
    let prometheus = std::env::args().nth(1).as_deref() == Some("on");
    let start = Timestamp(1_700_000_000_000);
    let mut config = Config { client_insecure: true, prometheus, ..Config::default() };
    config.channel.allow_subscribe_for_client = true;
    let info = NodeInfo { id: "cost".into(), name: "cost".into(), version: "0".into() };
    let mut node = Node::new(Arc::new(config), info, 7, start).expect("valid config");
    let mut subs = BTreeMap::new();
    subs.insert("bench".to_owned(), SubscribeRequest::default());
    let request = ConnectRequest { subs, ..ConnectRequest::default() };
    for i in 1..=SUBSCRIBERS {
        node.handle_open(SessionId(i), Transport::UniHttpStream, start);
        node.handle_connect(SessionId(i), request.clone(), None, start);
        while node.poll_output().is_some() {}
    }
    let sent = fan_out(&mut node, start);
    let snapshot = node.metrics_snapshot();
    println!(
        "prometheus {}: {sent} deliveries; counted {}",
        if prometheus { "on" } else { "off" },
        snapshot.metrics.transport_messages_sent.iter().sum::<u64>()
    );
}

#[inline(never)]
fn fan_out(node: &mut Node, start: Timestamp) -> u64 {
    let mut sent = 0u64;
    for seq in 1..=PUBLICATIONS {
        let data = format!("{{\"b\":\"#{seq}@1700000000000000;{}\"}}", "x".repeat(64));
        let command = ApiCommand::Publish(PublishRequest {
            channel: "bench".into(),
            data: Bytes::from(data),
            ..PublishRequest::default()
        });
        node.handle_api(ApiId(seq), command, Timestamp(start.0 + seq));
        while let Some(output) = node.poll_output() {
            if let Output::Send { data, .. } = output {
                std::hint::black_box(data);
                sent += 1;
            }
        }
    }
    sent
}
