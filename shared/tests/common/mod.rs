//! A simulated host for the core: one [`Node`], a virtual clock, and what every session
//! received, decoded per transport. No sockets, no real time: `advance` jumps from deadline
//! to deadline the way a host's timer would fire, only faster (quinn's `Pair`, str0m's
//! `progress()`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use shared::api::{ApiCommand, ApiId, PublishRequest};
use shared::config::Config;
use shared::hub::{NodeInfo, SessionId, Transport};
use shared::node::{Node, Output};
use shared::protocol::{parse_connect_request, Disconnect, Encoding, Error, Framing};
use shared::time::Timestamp;

pub const SECRET: &str = "test-secret-key-for-simulations";
pub const T0: u64 = 1_700_000_000_000;

/// One message a session received.
#[derive(Clone, Debug)]
pub struct Frame {
    pub value: Value,
    /// Came as `Output::Ping`.
    pub ping: bool,
    /// The bytes the host was told to write (shared between sessions when encoded once).
    pub raw: Bytes,
    /// Virtual time it was written.
    pub at: Timestamp,
}

pub struct Sim {
    pub node: Node,
    pub now: Timestamp,
    transports: HashMap<SessionId, Transport>,
    received: HashMap<SessionId, Vec<Frame>>,
    pub closed: BTreeMap<SessionId, Disconnect>,
    api: BTreeMap<u64, Result<Value, Error>>,
    next_session: u64,
    next_api: u64,
    /// Every output in order, for tests that check ordering across sessions.
    pub log: Vec<Output>,
    pub keep_log: bool,
    /// Pings each session got and has not answered yet.
    owed_pongs: HashMap<SessionId, u32>,
}

/// Parses a configuration the way the host does (through the real parser).
pub fn config(json: &str) -> Config {
    Config::from_json_str(json, std::iter::empty()).unwrap_or_else(|e| panic!("config {json}: {e}")).config
}

/// A connection token signed with [`SECRET`]; `exp` in seconds from `now` when given.
pub fn token(user: &str, now: Timestamp, exp_in_secs: Option<u64>) -> String {
    let mut claims = json!({ "sub": user });
    if let Some(secs) = exp_in_secs {
        claims["exp"] = json!(now.as_secs() + secs);
    }
    shared::auth::issue_hs256(SECRET, &claims)
}

impl Sim {
    pub fn new(json: &str) -> Sim {
        Sim::with_config(config(json))
    }

    pub fn with_config(config: Config) -> Sim {
        let info = NodeInfo { id: "node-sim".into(), name: "sim".into(), version: "0.0.0-sim".into() };
        let now = Timestamp(T0);
        let node = Node::new(Arc::new(config), info, 7, now).expect("valid config");
        Sim {
            node,
            now,
            transports: HashMap::new(),
            received: HashMap::new(),
            closed: BTreeMap::new(),
            api: BTreeMap::new(),
            next_session: 1,
            next_api: 1,
            log: Vec::new(),
            keep_log: false,
            owed_pongs: HashMap::new(),
        }
    }

    // ---- driving

    /// Carries out every pending output, as a host must after each input.
    pub fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            if self.keep_log {
                self.log.push(output.clone());
            }
            match output {
                Output::Send { session, data } => self.record(session, data, false),
                Output::Ping { session, data } => self.record(session, data, true),
                Output::Close { session, disconnect } => {
                    assert!(!self.closed.contains_key(&session), "{session} closed twice");
                    self.closed.insert(session, disconnect);
                }
                Output::Api { id, result } => {
                    assert!(self.api.insert(id.0, result).is_none(), "API {id:?} answered twice");
                }
                // The simulations configure no proxy (the hub's unit tests cover them).
                Output::Proxy(r) => panic!("a proxy call with no proxy configured: {r:?}"),
                Output::ProxyFailed { .. } => panic!("a proxy failure with no proxy configured"),
            }
        }
    }

    /// Moves the virtual clock forward by `ms`, firing every deadline on the way in order.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.after_ms(ms);
        let mut steps = 0u64;
        while let Some(at) = self.node.poll_timeout() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.node.handle_timeout(self.now);
            self.drain();
            steps += 1;
            assert!(steps < 10_000_000, "timers do not make progress");
        }
        self.now = target;
    }

    /// Like [`Sim::advance`], but these bidirectional clients answer every ping at once, as
    /// centrifuge-js does.
    pub fn advance_answering(&mut self, ms: u64, clients: &[SessionId]) {
        let target = self.now.after_ms(ms);
        loop {
            for &c in clients {
                while self.owed_pongs.get(&c).copied().unwrap_or(0) > 0 && !self.is_closed(c) {
                    *self.owed_pongs.get_mut(&c).unwrap() -= 1;
                    self.frame(c, "{}");
                }
            }
            match self.node.poll_timeout() {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.node.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = target;
    }

    // ---- sessions

    pub fn open(&mut self, transport: Transport) -> SessionId {
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.transports.insert(id, transport);
        self.received.insert(id, Vec::new());
        self.node.handle_open(id, transport, self.now);
        self.drain();
        id
    }

    /// Opens a unidirectional session and sends its connect request (a bare `ConnectRequest`).
    pub fn connect_uni(&mut self, transport: Transport, request: Value) -> SessionId {
        let id = self.open(transport);
        let request = parse_connect_request(request.to_string().as_bytes()).expect("connect request parses");
        self.node.handle_connect(id, request, None, self.now);
        self.drain();
        id
    }

    /// Opens a JSON WebSocket and sends `connect` (id 1) with this token.
    pub fn connect_ws(&mut self, token: &str) -> SessionId {
        let id = self.open(Transport::Websocket(Encoding::Json));
        self.frame(id, &json!({"id": 1, "connect": {"token": token}}).to_string());
        id
    }

    /// A frame of commands from a bidirectional client.
    pub fn frame(&mut self, session: SessionId, text: &str) {
        self.node.handle_frame(session, text.as_bytes(), self.now);
        self.drain();
    }

    /// Sends one command and returns the reply with its id (panics if none came).
    pub fn command(&mut self, session: SessionId, command: Value) -> Value {
        let id = command["id"].as_u64().expect("command with id");
        self.frame(session, &command.to_string());
        self.take_reply(session, id)
    }

    pub fn close(&mut self, session: SessionId) {
        self.node.handle_closed(session, self.now);
        self.drain();
    }

    // ---- API

    pub fn api(&mut self, command: ApiCommand) -> Result<Value, Error> {
        let id = self.next_api;
        self.next_api += 1;
        self.node.handle_api(ApiId(id), command, self.now);
        self.drain();
        self.api.remove(&id).expect("API answered synchronously by the in-process broker")
    }

    pub fn publish(&mut self, channel: &str, data: Value) -> Result<Value, Error> {
        let request =
            PublishRequest { channel: channel.into(), data: Bytes::from(data.to_string()), ..Default::default() };
        self.api(ApiCommand::Publish(request))
    }

    pub fn publish_ok(&mut self, channel: &str, data: Value) -> Value {
        self.publish(channel, data).unwrap_or_else(|e| panic!("publish to {channel}: {e:?}"))
    }

    // ---- what sessions saw

    pub fn is_closed(&self, session: SessionId) -> bool {
        self.closed.contains_key(&session)
    }

    pub fn close_code(&self, session: SessionId) -> Option<u32> {
        self.closed.get(&session).map(|d| d.code)
    }

    /// Everything received since the last take, pings included.
    pub fn take(&mut self, session: SessionId) -> Vec<Frame> {
        std::mem::take(self.received.get_mut(&session).expect("known session"))
    }

    /// Received messages other than pings.
    pub fn take_values(&mut self, session: SessionId) -> Vec<Value> {
        self.take(session).into_iter().filter(|f| !f.ping).map(|f| f.value).collect()
    }

    pub fn peek(&self, session: SessionId) -> &[Frame] {
        &self.received[&session]
    }

    /// The reply with this id among what the session received; the rest stays unread.
    pub fn take_reply(&mut self, session: SessionId, id: u64) -> Value {
        let frames = self.received.get_mut(&session).expect("known session");
        let at = frames.iter().position(|f| f.value["id"].as_u64() == Some(id)).unwrap_or_else(|| {
            panic!("no reply {id} for {session}; got {frames:?}; closed: {:?}", self.closed.get(&session))
        });
        frames.remove(at).value
    }

    /// Publications received on `channel` (uni: bare pushes, bidi: wrapped), with their data.
    pub fn take_pubs(&mut self, session: SessionId, channel: &str) -> Vec<Value> {
        let frames = self.take(session);
        pubs_in(&frames, channel)
    }

    fn record(&mut self, session: SessionId, data: Bytes, ping: bool) {
        assert!(!self.closed.contains_key(&session), "{session} got data after Close");
        let transport = *self.transports.get(&session).unwrap_or_else(|| panic!("output for unknown {session}"));
        let wire = transport.wire();
        assert_eq!(wire.encoding, Encoding::Json, "the simulation decodes JSON only");
        let text = std::str::from_utf8(&data).expect("JSON output is UTF-8");
        let parts: Vec<&str> = match wire.framing {
            Framing::Stream => {
                assert!(text.ends_with('\n'), "stream messages end with a newline: {text:?}");
                text.split('\n').filter(|l| !l.is_empty()).collect()
            }
            Framing::Sse => {
                assert!(text.ends_with("\n\n"), "SSE events end with a blank line: {text:?}");
                text.lines().filter_map(|l| l.strip_prefix("data: ")).collect()
            }
            Framing::WebSocket => {
                assert!(!text.ends_with('\n'), "WebSocket messages have no trailing newline");
                text.split('\n').collect()
            }
        };
        if ping {
            *self.owed_pongs.entry(session).or_default() += 1;
        }
        let frames = self.received.get_mut(&session).expect("known session");
        for part in parts {
            let value: Value =
                serde_json::from_str(part).unwrap_or_else(|e| panic!("{session} got invalid JSON {part:?}: {e}"));
            frames.push(Frame { value, ping, raw: data.clone(), at: self.now });
        }
    }
}

/// The push inside a received message: bare on uni transports, under `push` otherwise.
pub fn push_of(value: &Value) -> Option<&Value> {
    match value.get("push") {
        Some(p) => Some(p),
        None if value.get("id").is_none() && value.as_object().is_some_and(|o| !o.is_empty()) => Some(value),
        None => None,
    }
}

pub fn pubs_in(frames: &[Frame], channel: &str) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| !f.ping)
        .filter_map(|f| push_of(&f.value))
        .filter(|p| p["channel"] == channel && p.get("pub").is_some())
        .map(|p| p["pub"].clone())
        .collect()
}

pub fn offsets(pubs: &[Value]) -> Vec<u64> {
    pubs.iter().map(|p| p["offset"].as_u64().unwrap_or(0)).collect()
}
