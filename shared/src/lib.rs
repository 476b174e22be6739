//! # rotor's core, without I/O
//!
//! Everything rotor knows about Centrifugo's protocols lives here, as state machines that a
//! host *drives*: the native server (tokio + hyper) and the edge (Workers + Durable Objects)
//! are two such hosts. Nothing in this crate reads a clock, a socket, a file or an
//! environment variable, and nothing spawns threads; the crate builds for
//! `wasm32-unknown-unknown` to prove it.
//!
//! ## The drive contract
//!
//! - **Inputs** go in through `handle_*(…, now)`. `now` is a [`Timestamp`] (milliseconds since
//!   the Unix epoch) that the host samples once per event. Randomness (client ids, epochs)
//!   comes from a seed passed to the constructor.
//! - **Side effects** come out as data: after *every* input, the host calls `poll_output()`
//!   until it returns `None` and carries out each output in order (write bytes to a session,
//!   close a session, carry a request to the broker, answer an API call).
//! - **Time**: the host then asks `poll_timeout()` and arms one timer; when it fires, it calls
//!   `handle_timeout(now)` and drains outputs again.
//! - Mistakes by peers (bad JSON, bad tokens, forbidden channels) never panic and never return
//!   `Err`: they become an error reply or a [`Disconnect`](protocol::Disconnect) with the
//!   protocol's code. Misuse by the host may return `Err`.
//!
//! Two machines split the work the way Centrifugo splits node and broker: the
//! [`Hub`](hub::Hub) (sessions, client protocol, fan-out) and the [`Broker`](broker::Broker)
//! (streams, history, presence). The hub reaches the broker only through request/response
//! outputs, so the broker can live in-process ([`Node`](node::Node)) or in another Durable
//! Object.
//!
//! ```
//! use std::sync::Arc;
//! use shared::{config::Config, hub::{NodeInfo, SessionId, Transport}, node::{Node, Output}};
//! use shared::protocol::ConnectRequest;
//! use shared::time::Timestamp;
//!
//! let mut config = Config::default();
//! config.client_insecure = true; // anyone may connect: keeps the example short
//! let info = NodeInfo { id: "node-1".into(), name: "example".into(), version: "0.1.0".into() };
//! let mut now = Timestamp(1_700_000_000_000);
//! let mut node = Node::new(Arc::new(config), info, 42, now).unwrap();
//!
//! let session = SessionId(1);
//! node.handle_open(session, Transport::UniHttpStream, now);
//! node.handle_connect(session, ConnectRequest::default(), None, now);
//! let mut written = Vec::new();
//! while let Some(output) = node.poll_output() {
//!     if let Output::Send { data, .. } = output {
//!         written.push(String::from_utf8(data.to_vec()).unwrap());
//!     }
//! }
//! assert!(written[0].starts_with("{\"connect\":{\"client\":"));
//!
//! // The host arms a timer for `poll_timeout()` and calls back when it fires; the first
//! // output that comes of it is the server ping (Centrifugo's default: every 25 s).
//! let output = loop {
//!     now = node.poll_timeout().unwrap();
//!     node.handle_timeout(now);
//!     if let Some(output) = node.poll_output() {
//!         break output;
//!     }
//! };
//! assert!(matches!(output, Output::Ping { .. }));
//! ```

pub mod admin;
pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod delta;
pub mod glob;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod protocol;
pub mod proxy;
pub mod time;

pub use time::Timestamp;

/// The version clients see in connect results.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " rotor");
