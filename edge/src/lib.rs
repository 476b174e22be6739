//! # rotor at the edge
//!
//! A Cloudflare Worker plus two Durable Object classes that run the same `shared` core as the
//! native server. Only this crate names `worker::`; on other targets it is just its pure
//! parts ([`wire`], [`channel_store`], [`node_store`], [`batches`], [`config`],
//! [`api_route`]), which `cargo test` checks natively.
//!
//! ## Topology
//!
//! ```text
//!  client ──▶ Worker ─┬─ /connection/* ─────────▶ node object "node-k" (Hub: sessions)
//!                     ├─ /emulation {node} ──────▶ the node object with that id
//!                     ├─ /api/* about connections ─▶ every node object (answers merged)
//!                     └─ /api/* other (Hub per request) ─┐
//!  node object ── broker requests (batched) ─────────┴─▶ channel object idFromName(channel)
//!  channel object ── publications, join/leave ──────────▶ every subscribed node object
//! ```
//!
//! - **Worker** (stateless): reads the configuration from its environment ([`config`]),
//!   answers `/health`, runs the server API with a short-lived hub whose broker requests
//!   (publish, history, presence, …) go straight to the channel objects, sends commands
//!   about connections (`disconnect`, `subscribe`, `channels`, `info`, …) to every node
//!   object and merges the answers ([`api_route`]), and forwards connection requests to a
//!   node object. It decodes an `/emulation` body only to find its `node`. A `batch` with
//!   commands about connections is split: each command runs where it would alone.
//! - **Node objects** run a [`shared::hub::Hub`] each. Connections are spread at random
//!   over a fixed set `node-0 … node-{N-1}` (`edge_node_count`, default 4). Why a small
//!   fixed set and not one object per connection: a publication is sent once per
//!   *subscribed node*, so the fewer nodes, the cheaper the fan-out, and one hub encodes a
//!   publication once for all its sessions; why not a single node: one object is one
//!   thread, so N bounds the per-object load and spreads it. The node id clients see (and
//!   send back in `/emulation`) is the object's hex id, so the Worker can route emulation
//!   requests without a lookup.
//! - **Channel objects**, one per channel (`idFromName(channel)`), run a
//!   [`shared::broker::Broker`] for that one channel and keep its stream (epoch, top
//!   offset, history with expiry), presence, subscribed nodes and the idempotency keys of
//!   recent publishes in the object's SQLite ([`channel_store`]), restored when the object
//!   wakes up. A channel is the unit of ordering, so one object per channel gives every
//!   channel its own sequence with no coordination.
//!
//! ## Messages
//!
//! Objects talk with `stub.fetch` POSTs carrying Protobuf ([`wire`]): a node sends a channel
//! a batch of broker requests and gets the replies in the response; a channel sends a node
//! a batch of events and learns whether the node still wants them. Each direction keeps one
//! queue per peer with one batch in flight, so requests reach a channel, and events reach a
//! node, in the order they were made (the hub drops or resyncs on out-of-order offsets).
//!
//! ## Transports and time
//!
//! - Uni HTTP stream, uni SSE and the bidirectional emulation streams are response bodies fed
//!   by a channel; an open stream keeps its node object in memory.
//! - Uni and bidirectional WebSockets use the hibernation API: the runtime owns the socket,
//!   and `webSocketMessage`/`webSocketClose` drive the hub. The hub's timers (token expiry,
//!   presence refresh, stream pings) share one alarm per object, re-armed only when
//!   `poll_timeout()` changes.
//! - **Hibernation.** The runtime evicts an object whose only I/O is hibernatable WebSockets
//!   once idle (~10-15 s under `wrangler dev`); the sockets stay open. What rebuilds their
//!   sessions is stored as it changes ([`node_store`]): each socket's attachment holds its
//!   session id and snapshot (SQLite holds snapshots over 1.5 KB), and the node's SQLite
//!   holds the last position it received per channel. Neither changes per publication to a
//!   session, only on connect, subscribe, unsubscribe and refresh, plus one position row per
//!   channel event batch. The first event of a new life (a message, a close, an alarm, a
//!   channel's publication, an API call) builds the hub and restores every socket's session
//!   (`Hub::handle_restore`) before it is handled: subscriptions are re-made with recovery
//!   from the stored position, so what the waking publication carries, and anything a lost
//!   event held, reaches the client once and in order, with no join, subscribe push or
//!   reconnect; commands the client sends meanwhile wait until its subscriptions are back.
//!   Session ids start from a random base in each life, so no socket of an earlier life
//!   shares an id with a new one. A position history no longer covers ends the subscription as a gap does
//!   (2500, or 3010 for server-side ones).
//! - So that idle objects can hibernate, WebSocket sessions get no server pings: their
//!   connect result announces none (SDKs then expect none) and the runtime watches the
//!   sockets. Pinging would wake every idle node each interval and rebuild it. Streams are
//!   pinged as natively; an open stream keeps its object in memory anyway. Channel objects
//!   lose nothing on eviction: their state is in SQLite before any reply or event leaves.
//! - The time is read once per event (`Date.now()`) and passed to the core.
//!
//! ## Running it
//!
//! ```text
//! bash edge/setup.sh                 # rustup target, wasm-bindgen-cli 0.2.130, npm ci (wrangler 4.156.0, Node 22)
//! edge/build.sh                      # cargo → wasm32, wasm-bindgen → edge/build/ (WASM_OPT=… to shrink)
//! edge/dev.sh 8787 --env-file F      # wrangler dev on 127.0.0.1:8787 in its own process group; prints the PID
//! bash edge/test.sh                  # all of the above + conformance suite + tests/edge (durability, fan-out, WebSockets)
//! PATH=edge/node_modules/.bin:$PATH wrangler deploy   # to Cloudflare (secrets: token_hmac_secret_key, api_key)
//! ```
//!
//! `F` holds secrets or a whole config file: `ROTOR_CONFIG_JSON='{…config.json…}'` (see
//! [`config`]). `wrangler dev --persist-to DIR` keeps channel storage across restarts.
//!
//! ## Known limits of this host
//!
//! - No pings on WebSocket sessions (above); Workers cannot send WebSocket ping frames anyway.
//! - A node object with presence subscriptions wakes every `client_presence_update_interval`
//!   to refresh them, and rebuilds its sessions each time it was evicted meanwhile.
//! - An API `batch` holding commands about connections runs its commands one after another
//!   in the Worker (each where it belongs), even with `parallel: true`.

pub mod api_route;
pub mod batches;
pub mod channel_store;
pub mod config;
pub mod node_store;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
pub use host::{ChannelObject, NodeObject};

pub use shared;
