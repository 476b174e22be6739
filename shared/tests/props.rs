//! Property tests of the core (issue 11): random interleavings of everything peers and the
//! host can do to a [`Node`] — sessions on every transport, connects (good, bad and garbage
//! tokens), client frames in JSON and Protobuf (every command, plus garbage), server API calls
//! (JSON and binary payloads, huge `expire_at`, patterns, batches), timer advances and closes —
//! checked against invariants after every step:
//!
//! - nothing panics (a panic anywhere fails the case, and proptest shrinks it);
//! - every output names a live session, and nothing follows a session's `Close`;
//! - every output decodes on the session's wire (JSON parses, Protobuf decodes, SSE/stream
//!   framing holds);
//! - each command gets at most one reply, and a session still open after a frame has its
//!   commands answered; each API call is answered exactly once;
//! - within a subscription, a session gets each publication at most once, in publish order,
//!   only on the channel it was published to, with contiguous offsets on positioned
//!   subscriptions; live subscribers get every publication; one (channel, epoch, offset)
//!   always names one publication;
//! - recovery from a known position gives exactly the missed publications, and succeeds
//!   whenever history still covers them;
//! - channels naming users after `#` refuse client commands from anyone else;
//! - the hub's counts (sessions, users, channels; API `info` and `channels`) match what the
//!   sessions were told; after every session closes the hub holds no timers, and once the
//!   clock has run out the broker holds nothing either.
//!
//! Four properties: a node (hub and broker answering at once) under everything at once; the
//! same weighted towards publications and recovery; a hub whose broker is at a distance
//! (requests and events queued, as at the edge); and hibernation (the host loses its memory
//! and a new hub restores its WebSockets from stored snapshots). The smallest failing inputs
//! found so far are plain tests in [`found`].
//!
//! `cargo test` runs 256 cases per property. Long runs: `PROPTEST_CASES=100000 cargo test -p
//! shared --test props --profile props` (optimized, overflow checks on). `PROPS_STATS=1`
//! prints coverage counts, `PROPS_TRACE=1` every step and output of a case.
//! `PROPS_AVOID=binary,personal,expire,ttl,timers,broker,unsub,race,epoch,restore` (or `all`)
//! leaves out inputs (or checks) that hit bugs found before, to hunt for others while those
//! are being fixed.
#![recursion_limit = "256"]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{json, Value};

use shared::api::{self, ApiCommand, ApiId};
use shared::broker::{Broker, BrokerEvent, BrokerRequest};
use shared::config::Config;
use shared::hub::{Hub, NodeInfo, Output, SessionId, SessionSnapshot, Transport};
use shared::node::Node;
use shared::protocol::{self as proto, Encoding, Framing};
use shared::time::Timestamp;

use common::{SECRET, T0};

// =============================================================================================
// The world: users, channels, configuration

const USERS: &[&str] = &["u1", "u2", "u3"];
/// Top level (history, presence, user-limited channels allowed), `live` (no history),
/// `chat` (forced recovery, short meta TTL), `rec` (long history, optional recovery), a
/// private channel and an unknown namespace.
const CHANNELS: &[&str] =
    &["news", "#u1", "#u2", "#u1,u2", "live:a", "live:#u3", "chat:a", "chat:b", "rec:x", "rec:y", "$priv", "nope:z"];

/// Which known bugs to steer around (`PROPS_AVOID`), so that others can be found meanwhile.
#[derive(Clone, Copy, Debug, Default)]
struct Avoid {
    /// Binary (non-JSON) payloads and infos.
    binary: bool,
    /// Checks that channels naming users refuse everyone else.
    personal: bool,
    /// `expire_at` values that overflow.
    expire: bool,
    /// The check that closed sessions leave no timers behind.
    timers: bool,
    /// The check that the broker forgets idle streams.
    broker: bool,
    /// The check that `unsubscribe` pushes name only subscriptions the client was told of.
    unsub: bool,
    /// Expiries further away than a u32 of seconds (the ttl clients are told).
    ttl: bool,
    /// The check that a subscription is announced once (a distant broker's late answer to
    /// a replaced subscription answers the new one).
    race: bool,
    /// Time moving while events are on their way (a stream may expire and come back with
    /// another epoch meanwhile): the host carries everything first.
    epoch: bool,
    /// Anything happening while restored subscriptions are being re-made: the host carries
    /// everything right after a restore.
    restore: bool,
}

fn avoid() -> Avoid {
    let v = std::env::var("PROPS_AVOID").unwrap_or_default();
    let has = |w: &str| v.split(',').any(|x| x.trim() == w || x.trim() == "all");
    Avoid {
        binary: has("binary"),
        personal: has("personal"),
        expire: has("expire"),
        timers: has("timers"),
        broker: has("broker"),
        unsub: has("unsub"),
        ttl: has("ttl"),
        race: has("race"),
        epoch: has("epoch"),
        restore: has("restore"),
    }
}

/// Configuration knobs a case picks.
#[derive(Clone, Debug)]
struct Knobs {
    fast_pings: bool,
    single_connection: bool,
    small_limits: bool,
    anonymous: bool,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (any::<bool>(), prop::bool::weighted(0.15), prop::bool::weighted(0.25), any::<bool>()).prop_map(
        |(fast_pings, single_connection, small_limits, anonymous)| Knobs {
            fast_pings,
            single_connection,
            small_limits,
            anonymous,
        },
    )
}

fn config(k: &Knobs) -> Config {
    let pick = |fast: bool, a: &str, b: &str| if fast { a.to_owned() } else { b.to_owned() };
    let v = json!({
        "token_hmac_secret_key": SECRET,
        "allow_anonymous_connect_without_token": k.anonymous,
        "user_subscribe_to_personal": true,
        "user_personal_single_connection": k.single_connection,
        "ping_interval": pick(k.fast_pings, "3s", "25s"),
        "pong_timeout": pick(k.fast_pings, "2s", "8s"),
        "client_presence_update_interval": pick(k.fast_pings, "4s", "27s"),
        "global_presence_ttl": pick(k.fast_pings, "10s", "60s"),
        "client_channel_limit": if k.small_limits { 3 } else { 128 },
        "client_recovery_max_publication_limit": if k.small_limits { 3 } else { 300 },
        "client_history_max_publication_limit": if k.small_limits { 2 } else { 300 },
        "client_user_connection_limit": if k.small_limits { 2 } else { 0 },
        "presence": true,
        "join_leave": true,
        "history_size": 10,
        "history_ttl": "120s",
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
        "allow_history_for_client": true,
        "allow_presence_for_client": true,
        "allow_recovery": true,
        "allow_positioning": true,
        "allow_user_limited_channels": true,
        "allowed_delta_types": ["fossil"],
        "delta_publish": true,
        "namespaces": [
            {"name": "live", "allowed_delta_types": ["fossil"], "allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true,
             "allow_publish_for_client": true, "allow_publish_for_anonymous": true, "presence": true,
             "allow_presence_for_client": true, "join_leave": true, "force_push_join_leave": true},
            {"name": "chat", "allowed_delta_types": ["fossil"], "delta_publish": true, "history_size": 5, "history_ttl": "60s", "history_meta_ttl": "600s",
             "force_recovery": true, "presence": true, "join_leave": true, "force_push_join_leave": true,
             "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
             "allow_history_for_subscriber": true, "allow_presence_for_subscriber": true},
            {"name": "rec", "allowed_delta_types": ["fossil"], "history_size": 50, "history_ttl": "600s", "allow_recovery": true,
             "allow_subscribe_for_client": true, "allow_publish_for_client": true, "allow_history_for_client": true},
        ],
    });
    common::config(&v.to_string())
}

// =============================================================================================
// Inputs

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ch(u8);
impl Ch {
    fn name(self) -> &'static str {
        CHANNELS[self.0 as usize % CHANNELS.len()]
    }
}
impl fmt::Debug for Ch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct U(u8);
impl U {
    fn name(self) -> &'static str {
        USERS[self.0 as usize % USERS.len()]
    }
}
impl fmt::Debug for U {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name())
    }
}

/// A session, by index among those opened so far (modulo their number).
#[derive(Clone, Copy, Debug)]
struct Sel(u8);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tr {
    Ws,
    WsProto,
    HttpStream,
    HttpStreamProto,
    Sse,
    UniHttp,
    UniSse,
    UniWs,
}

impl Tr {
    fn transport(self) -> Transport {
        match self {
            Tr::Ws => Transport::Websocket(Encoding::Json),
            Tr::WsProto => Transport::Websocket(Encoding::Protobuf),
            Tr::HttpStream => Transport::HttpStream(Encoding::Json),
            Tr::HttpStreamProto => Transport::HttpStream(Encoding::Protobuf),
            Tr::Sse => Transport::Sse,
            Tr::UniHttp => Transport::UniHttpStream,
            Tr::UniSse => Transport::UniSse,
            Tr::UniWs => Transport::UniWebsocket,
        }
    }
}

/// A token's expiry.
#[derive(Clone, Copy, Debug)]
enum Exp {
    Never,
    InSecs(u16),
    /// `exp` far away (1e12 s, year ~33,600): more seconds than a u32 holds.
    Far,
    /// `exp` 1e18 s: past what the token library takes (refused) or milliseconds hold.
    Absurd,
    /// `expire_at` = i64::MAX.
    ExpireAtMax,
}

/// An `info` (connection or channel) or subscription `data`.
#[derive(Clone, Copy, Debug)]
enum Info {
    None,
    Json,
    Binary,
}

#[derive(Clone, Debug)]
enum Auth {
    /// A valid token (`None`: anonymous token, `sub` empty).
    Token {
        user: Option<U>,
        exp: Exp,
        info: Info,
        channels: Vec<Ch>,
    },
    Expired(U),
    BadSignature(U),
    NoToken,
    Garbage(String),
}

#[derive(Clone, Debug)]
enum SubTok {
    None,
    Valid { exp: Exp, info: Info, data: Info },
    Expired,
    OtherChannel,
    OtherUser,
    Garbage,
}

/// A recovery position.
#[derive(Clone, Copy, Debug)]
enum Rec {
    No,
    /// The last position this session saw on the channel.
    Own,
    /// The last position another session saw on the channel.
    Of(Sel),
    /// An offset in the channel's last known epoch (or in a made-up one).
    Random {
        offset: u8,
        known_epoch: bool,
    },
}

/// A publication payload; each carries a unique marker the checks read back.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Data {
    JsonObject,
    JsonString,
    JsonArray,
    /// Not UTF-8 (Protobuf clients, API `b64data`); JSON clients send it raw (a bad frame).
    Binary,
    /// Cut-off JSON: UTF-8 but not JSON.
    NotJson,
}

#[derive(Clone, Debug)]
enum Cmd {
    Subscribe {
        ch: Ch,
        rec: Rec,
        positioned: bool,
        recoverable: bool,
        join_leave: bool,
        reject: bool,
        tok: SubTok,
        delta: bool,
    },
    Unsubscribe(Ch),
    Publish(Ch, Data),
    History {
        ch: Ch,
        limit: i32,
        since: Rec,
        reverse: bool,
    },
    Presence(Ch),
    PresenceStats(Ch),
    Rpc,
    Send(Data),
    /// Refresh with this token; `own`: for the session's own user.
    Refresh {
        auth: Auth,
        own: bool,
    },
    SubRefresh(Ch, SubTok),
    /// `{"id":N,"ping":{}}`: not protocol v2.
    Ping,
    /// `{"id":N}`: nothing in it.
    Nothing,
}

#[derive(Clone, Debug)]
enum Tail {
    None,
    /// A trailing newline (JSON) / nothing (Protobuf).
    Newline,
    Garbage(Vec<u8>),
    /// The frame's last byte cut off.
    Truncated,
}

/// An `expire_at` of the server API (Unix seconds).
#[derive(Clone, Copy, Debug)]
enum ExpireAt {
    Zero,
    Negative,
    Past,
    Soon(u16),
    Huge(i64),
}

#[derive(Clone, Debug)]
enum ApiOp {
    Publish {
        ch: Ch,
        data: Data,
        b64: bool,
        skip_history: bool,
        key: Option<u8>,
    },
    Broadcast {
        chs: Vec<Ch>,
        data: Data,
        b64: bool,
    },
    History {
        ch: Ch,
        limit: i64,
        since: Rec,
        reverse: bool,
    },
    Presence(Ch),
    PresenceStats(Ch),
    HistoryRemove(Ch),
    Subscribe {
        user: U,
        ch: Ch,
        expire: ExpireAt,
        since: Rec,
        info: Info,
        data: Info,
        client: Option<Sel>,
        force_recovery: Option<bool>,
    },
    Unsubscribe {
        user: U,
        ch: Option<Ch>,
        client: Option<Sel>,
    },
    Disconnect {
        user: U,
        code: u32,
        reason: u8,
        whitelist: Option<Sel>,
    },
    Refresh {
        user: U,
        expire: ExpireAt,
        expired: bool,
        info: Info,
        client: Option<Sel>,
    },
    Channels(String),
    Info,
    Rpc,
    Batch {
        commands: Vec<ApiOp>,
        parallel: bool,
    },
    /// A body the parser refuses (the host answers 400; nothing reaches the hub).
    Garbage(String),
}

#[derive(Clone, Debug)]
enum Op {
    /// Opens a session and connects (bidirectional WebSocket: a connect frame right away;
    /// emulation: the connect frame of the opening request; uni: the connect request).
    Open {
        tr: Tr,
        auth: Auth,
        subs: Vec<(Ch, Rec)>,
        last_event_id: Option<Option<Sel>>,
    },
    /// Opens a session whose first message is these bytes (uni: the connect body).
    OpenRaw {
        tr: Tr,
        body: Vec<u8>,
    },
    /// Opens a WebSocket that never says anything (stale).
    OpenIdle {
        tr: Tr,
    },
    Connect {
        s: Sel,
        auth: Auth,
    },
    Frame {
        s: Sel,
        cmds: Vec<Cmd>,
        tail: Tail,
    },
    Garbage {
        s: Sel,
        bytes: Vec<u8>,
    },
    Pong(Sel),
    Api(ApiOp),
    /// Moves the clock; `jump`: one late timer call at the end, as a host that slept.
    Advance {
        ms: u64,
        jump: bool,
        pongs: bool,
    },
    Close(Sel),
    /// The host ends a session (slow client, write error).
    Kick {
        s: Sel,
        code: u32,
    },
    Shutdown,
    /// With a broker at a distance: carry this many queued requests to it, and this many of
    /// its answers and events back (a node in-process has no queue: nothing happens).
    Deliver {
        requests: u8,
        events: u8,
    },
    /// Carry everything queued both ways until nothing is.
    Flush,
    /// The host loses its memory (a hibernating node object evicted): once idle and holding
    /// only connected WebSockets, a new hub rebuilds them from what the old one had the
    /// host store; events on their way arrive at the new one.
    Evict,
}

/// Channels, the busy ones more often (so that publications meet subscribers).
fn ch() -> impl Strategy<Value = Ch> {
    let weights = [4u32, 2, 1, 1, 3, 1, 4, 1, 4, 1, 1, 1];
    prop::strategy::Union::new_weighted(
        weights.iter().enumerate().map(|(i, w)| (*w, Just(Ch(i as u8)).boxed())).collect(),
    )
}

fn user() -> impl Strategy<Value = U> {
    (0..USERS.len() as u8).prop_map(U)
}

fn sel() -> impl Strategy<Value = Sel> {
    any::<u8>().prop_map(Sel)
}

fn tr() -> impl Strategy<Value = Tr> {
    prop_oneof![
        Just(Tr::Ws),
        Just(Tr::WsProto),
        Just(Tr::HttpStream),
        Just(Tr::HttpStreamProto),
        Just(Tr::Sse),
        Just(Tr::UniHttp),
        Just(Tr::UniSse),
        Just(Tr::UniWs),
    ]
}

fn exp(a: Avoid) -> impl Strategy<Value = Exp> {
    prop_oneof![
        4 => Just(Exp::Never),
        3 => (1u16..400).prop_map(Exp::InSecs),
        1 => Just(Exp::Far),
        1 => Just(Exp::Absurd),
        1 => Just(Exp::ExpireAtMax),
    ]
    .prop_map(
        move |e| if a.ttl && matches!(e, Exp::Far | Exp::Absurd | Exp::ExpireAtMax) { Exp::InSecs(3600) } else { e },
    )
}

fn info(a: Avoid) -> impl Strategy<Value = Info> {
    prop_oneof![4 => Just(Info::None), 2 => Just(Info::Json), 1 => Just(Info::Binary)].prop_map(move |i| {
        if a.binary && matches!(i, Info::Binary) {
            Info::Json
        } else {
            i
        }
    })
}

fn data(a: Avoid) -> impl Strategy<Value = Data> {
    prop_oneof![
        3 => Just(Data::JsonObject),
        1 => Just(Data::JsonString),
        1 => Just(Data::JsonArray),
        2 => Just(Data::Binary),
        1 => Just(Data::NotJson),
    ]
    .prop_map(move |d| if a.binary && matches!(d, Data::Binary | Data::NotJson) { Data::JsonObject } else { d })
}

fn auth(a: Avoid) -> impl Strategy<Value = Auth> {
    prop_oneof![
        14 => (prop::option::weighted(0.9, user()), exp(a), info(a), prop::collection::vec(ch(), 0..3))
            .prop_map(|(user, exp, info, channels)| Auth::Token { user, exp, info, channels }),
        1 => user().prop_map(Auth::Expired),
        1 => user().prop_map(Auth::BadSignature),
        1 => Just(Auth::NoToken),
        1 => "[a-zA-Z0-9._-]{0,40}".prop_map(Auth::Garbage),
    ]
}

fn sub_tok(a: Avoid) -> impl Strategy<Value = SubTok> {
    prop_oneof![
        16 => Just(SubTok::None),
        4 => (exp(a), info(a), info(a)).prop_map(|(exp, info, data)| SubTok::Valid { exp, info, data }),
        1 => Just(SubTok::Expired),
        1 => Just(SubTok::OtherChannel),
        1 => Just(SubTok::OtherUser),
        1 => Just(SubTok::Garbage),
    ]
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        3 => Just(Rec::No),
        4 => Just(Rec::Own),
        2 => sel().prop_map(Rec::Of),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(offset, known_epoch)| Rec::Random { offset: offset % 40, known_epoch }),
    ]
}

fn cmd(a: Avoid) -> impl Strategy<Value = Cmd> {
    prop_oneof![
        8 => (ch(), rec(), any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.2), sub_tok(a), prop::bool::weighted(0.4)).prop_map(
            |(ch, rec, positioned, recoverable, join_leave, reject, tok, delta)| Cmd::Subscribe { ch, rec, positioned, recoverable, join_leave, reject, tok, delta }
        ),
        3 => ch().prop_map(Cmd::Unsubscribe),
        8 => (ch(), data(a)).prop_map(|(c, d)| Cmd::Publish(c, d)),
        3 => (ch(), -2i32..20, rec(), any::<bool>()).prop_map(|(ch, limit, since, reverse)| Cmd::History { ch, limit, since, reverse }),
        2 => ch().prop_map(Cmd::Presence),
        2 => ch().prop_map(Cmd::PresenceStats),
        1 => Just(Cmd::Rpc),
        1 => data(a).prop_map(Cmd::Send),
        1 => (auth(a), prop::bool::weighted(0.8)).prop_map(|(auth, own)| Cmd::Refresh { auth, own }),
        1 => (ch(), sub_tok(a)).prop_map(|(c, t)| Cmd::SubRefresh(c, t)),
        1 => Just(Cmd::Ping),
        1 => Just(Cmd::Nothing),
    ]
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..24), "[{}\\[\\]\":, a-z0-9]{0,24}".prop_map(String::into_bytes),]
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        20 => Just(Tail::None),
        2 => Just(Tail::Newline),
        1 => garbage().prop_map(Tail::Garbage),
        1 => Just(Tail::Truncated),
    ]
}

fn expire_at(a: Avoid) -> impl Strategy<Value = ExpireAt> {
    prop_oneof![
        4 => Just(ExpireAt::Zero),
        1 => Just(ExpireAt::Negative),
        1 => Just(ExpireAt::Past),
        3 => (1u16..400).prop_map(ExpireAt::Soon),
        2 => prop_oneof![
            Just(i64::MAX),
            Just(i64::MAX / 1000),
            Just(i64::MAX / 1000 + 1),
            Just(1i64 << 53),
            Just(u32::MAX as i64 * 1000),
        ]
        .prop_map(ExpireAt::Huge),
    ]
    .prop_map(move |e| match e {
        ExpireAt::Huge(_) if a.ttl => ExpireAt::Soon(3600),
        // Far, but not past what milliseconds in a u64 hold.
        ExpireAt::Huge(_) if a.expire => ExpireAt::Huge(1i64 << 40),
        e => e,
    })
}

fn pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => prop::sample::select(vec!["*", "chat:*", "#*", "*:*", "{chat,rec}:?", "[a-n]*", "\\#u1", "*u*", "?", "[!#]*", "{", "["])
            .prop_map(str::to_owned),
        2 => "[*?a-z:#,{}\\[\\]!\\\\]{0,12}",
    ]
}

fn api_leaf(a: Avoid) -> impl Strategy<Value = ApiOp> {
    prop_oneof![
        8 => (ch(), data(a), prop::bool::weighted(0.3), prop::bool::weighted(0.15), prop::option::weighted(0.1, 0u8..2))
            .prop_map(|(ch, data, b64, skip_history, key)| ApiOp::Publish { ch, data, b64, skip_history, key }),
        2 => (prop::collection::vec(ch(), 0..4), data(a), prop::bool::weighted(0.3))
            .prop_map(|(chs, data, b64)| ApiOp::Broadcast { chs, data, b64 }),
        2 => (ch(), -1i64..12, rec(), any::<bool>()).prop_map(|(ch, limit, since, reverse)| ApiOp::History { ch, limit, since, reverse }),
        1 => ch().prop_map(ApiOp::Presence),
        1 => ch().prop_map(ApiOp::PresenceStats),
        1 => ch().prop_map(ApiOp::HistoryRemove),
        3 => (user(), ch(), expire_at(a), rec(), info(a), info(a), prop::option::weighted(0.2, sel()), prop::option::weighted(0.3, any::<bool>()))
            .prop_map(|(user, ch, expire, since, info, data, client, force_recovery)| ApiOp::Subscribe {
                user, ch, expire, since, info, data, client, force_recovery
            }),
        2 => (user(), prop::option::weighted(0.8, ch()), prop::option::weighted(0.2, sel()))
            .prop_map(|(user, ch, client)| ApiOp::Unsubscribe { user, ch, client }),
        1 => (user(), prop_oneof![Just(0u32), Just(3000), Just(4000), Just(4999), Just(1005), Just(70000)], any::<u8>(), prop::option::weighted(0.3, sel()))
            .prop_map(|(user, code, reason, whitelist)| ApiOp::Disconnect { user, code, reason, whitelist }),
        2 => (user(), expire_at(a), prop::bool::weighted(0.1), info(a), prop::option::weighted(0.2, sel()))
            .prop_map(|(user, expire, expired, info, client)| ApiOp::Refresh { user, expire, expired, info, client }),
        2 => pattern().prop_map(ApiOp::Channels),
        1 => Just(ApiOp::Info),
        1 => Just(ApiOp::Rpc),
        1 => "[{}\\[\\]\":a-z0-9]{0,16}".prop_map(ApiOp::Garbage),
    ]
}

fn api_op(a: Avoid) -> impl Strategy<Value = ApiOp> {
    prop_oneof![
        10 => api_leaf(a),
        1 => (prop::collection::vec(api_leaf(a), 0..5), any::<bool>()).prop_map(|(commands, parallel)| ApiOp::Batch { commands, parallel }),
    ]
}

fn advance() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..3_000, any::<bool>()).prop_map(|(ms, pongs)| Op::Advance { ms, jump: false, pongs }),
        4 => (3_000u64..70_000, any::<bool>()).prop_map(|(ms, pongs)| Op::Advance { ms, jump: false, pongs }),
        1 => (70_000u64..900_000, any::<bool>()).prop_map(|(ms, pongs)| Op::Advance { ms, jump: false, pongs }),
        // A host that slept: hours to centuries in one late timer call.
        1 => prop_oneof![Just(3_600_000u64), Just(40 * 86_400_000), Just(100 * 365 * 86_400_000)]
            .prop_map(|ms| Op::Advance { ms, jump: true, pongs: false }),
    ]
}

fn op(a: Avoid) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (tr(), auth(a), prop::collection::vec((ch(), rec()), 0..3), prop::option::weighted(0.2, prop::option::of(sel())))
            .prop_map(|(tr, auth, subs, last_event_id)| Op::Open { tr, auth, subs, last_event_id }),
        1 => (tr(), garbage()).prop_map(|(tr, body)| Op::OpenRaw { tr, body }),
        1 => tr().prop_map(|tr| Op::OpenIdle { tr }),
        1 => (sel(), auth(a)).prop_map(|(s, auth)| Op::Connect { s, auth }),
        24 => (sel(), prop::collection::vec(cmd(a), 1..3), tail()).prop_map(|(s, cmds, tail)| Op::Frame { s, cmds, tail }),
        1 => (sel(), garbage()).prop_map(|(s, bytes)| Op::Garbage { s, bytes }),
        1 => sel().prop_map(Op::Pong),
        14 => api_op(a).prop_map(Op::Api),
        8 => advance(),
        3 => sel().prop_map(Op::Close),
        1 => (sel(), prop_oneof![Just(3008u32), Just(3009), Just(3001)]).prop_map(|(s, code)| Op::Kick { s, code }),
        1 => Just(Op::Shutdown),
    ]
}

// =============================================================================================
// What sessions receive, decoded from either encoding into one shape

#[derive(Clone, Debug, Default)]
struct NPub {
    offset: u64,
    data: Vec<u8>,
    /// A Fossil delta against the previous one (subscriptions that negotiated deltas).
    delta: bool,
}

#[derive(Clone, Debug, Default)]
struct NSub {
    epoch: String,
    offset: u64,
    positioned: bool,
    recoverable: bool,
    recovered: bool,
    was_recovering: bool,
    pubs: Vec<NPub>,
    /// Fossil deltas granted.
    delta: bool,
}

#[derive(Clone, Debug)]
struct NConnect {
    client: String,
    subs: BTreeMap<String, NSub>,
    /// `expires`/`ttl`: Some(ttl seconds) when the connection expires.
    ttl: Option<u32>,
}

#[derive(Clone, Debug)]
enum RBody {
    Error(u32),
    Connect(NConnect),
    Subscribe(NSub),
    Unsubscribe,
    Publish,
    History {
        epoch: String,
        pubs: Vec<NPub>,
    },
    Presence,
    PresenceStats,
    /// Refresh: Some(ttl) when the connection expires.
    Refresh(Option<u32>),
    Other,
}

#[derive(Clone, Debug)]
enum PBody {
    Pub(NPub),
    Subscribe(NSub),
    Unsubscribe(u32),
    Connect(NConnect),
    Disconnect(u32),
    JoinLeave,
    Refresh(Option<u32>),
    Other,
}

#[derive(Clone, Debug)]
enum Ev {
    Ping,
    Reply {
        id: u32,
        body: RBody,
    },
    Push {
        channel: String,
        body: PBody,
    },
    /// An SSE event that is not a message (`event: resume_error`).
    Event,
}

fn j_u64(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn j_bool(v: &Value, k: &str) -> bool {
    v.get(k).and_then(Value::as_bool).unwrap_or(false)
}
fn j_str(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn json_pub(v: &Value) -> NPub {
    let data = v.get("data").map(|d| serde_json::to_vec(d).unwrap_or_default()).unwrap_or_default();
    NPub { offset: j_u64(v, "offset"), data, delta: j_bool(v, "delta") }
}

fn json_sub(v: &Value) -> NSub {
    NSub {
        epoch: j_str(v, "epoch"),
        offset: j_u64(v, "offset"),
        positioned: j_bool(v, "positioned"),
        recoverable: j_bool(v, "recoverable"),
        recovered: j_bool(v, "recovered"),
        was_recovering: j_bool(v, "was_recovering"),
        delta: j_bool(v, "delta"),
        pubs: v
            .get("publications")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(json_pub).collect())
            .unwrap_or_default(),
    }
}

fn json_connect(v: &Value) -> NConnect {
    let subs =
        v.get("subs").and_then(Value::as_object).map(|m| m.iter().map(|(k, s)| (k.clone(), json_sub(s))).collect());
    let ttl = j_bool(v, "expires").then(|| j_u64(v, "ttl") as u32);
    NConnect { client: j_str(v, "client"), subs: subs.unwrap_or_default(), ttl }
}

fn json_push(p: &Value) -> Ev {
    let channel = j_str(p, "channel");
    let body = if let Some(x) = p.get("pub") {
        PBody::Pub(json_pub(x))
    } else if let Some(x) = p.get("subscribe") {
        PBody::Subscribe(json_sub(x))
    } else if let Some(x) = p.get("unsubscribe") {
        PBody::Unsubscribe(j_u64(x, "code") as u32)
    } else if let Some(x) = p.get("connect") {
        PBody::Connect(json_connect(x))
    } else if let Some(x) = p.get("disconnect") {
        PBody::Disconnect(j_u64(x, "code") as u32)
    } else if p.get("join").is_some() || p.get("leave").is_some() {
        PBody::JoinLeave
    } else if let Some(x) = p.get("refresh") {
        PBody::Refresh(j_bool(x, "expires").then(|| j_u64(x, "ttl") as u32))
    } else {
        PBody::Other
    };
    Ev::Push { channel, body }
}

/// One JSON message: a reply (bidirectional) or a bare push (unidirectional).
fn json_message(v: &Value, unidirectional: bool) -> Result<Ev, String> {
    let o = v.as_object().ok_or_else(|| format!("not a JSON object: {v}"))?;
    if o.is_empty() {
        return Ok(Ev::Ping);
    }
    if unidirectional {
        return Ok(json_push(v));
    }
    if let Some(p) = v.get("push") {
        return Ok(json_push(p));
    }
    let id = j_u64(v, "id") as u32;
    if id == 0 {
        return Err(format!("a reply without id or push: {v}"));
    }
    let body = if let Some(e) = v.get("error") {
        RBody::Error(j_u64(e, "code") as u32)
    } else if let Some(x) = v.get("connect") {
        RBody::Connect(json_connect(x))
    } else if let Some(x) = v.get("subscribe") {
        RBody::Subscribe(json_sub(x))
    } else if v.get("unsubscribe").is_some() {
        RBody::Unsubscribe
    } else if v.get("publish").is_some() {
        RBody::Publish
    } else if let Some(x) = v.get("history") {
        let pubs = x
            .get("publications")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(json_pub).collect())
            .unwrap_or_default();
        RBody::History { epoch: j_str(x, "epoch"), pubs }
    } else if v.get("presence").is_some() {
        RBody::Presence
    } else if v.get("presence_stats").is_some() {
        RBody::PresenceStats
    } else if let Some(x) = v.get("refresh") {
        RBody::Refresh(j_bool(x, "expires").then(|| j_u64(x, "ttl") as u32))
    } else {
        RBody::Other
    };
    Ok(Ev::Reply { id, body })
}

fn pb_pub(p: &proto::Publication) -> NPub {
    NPub { offset: p.offset, data: p.data.to_vec(), delta: p.delta }
}

fn pb_sub(r: &proto::SubscribeResult) -> NSub {
    NSub {
        epoch: r.epoch.clone(),
        offset: r.offset,
        positioned: r.positioned,
        recoverable: r.recoverable,
        recovered: r.recovered,
        was_recovering: r.was_recovering,
        pubs: r.publications.iter().map(pb_pub).collect(),
        delta: r.delta,
    }
}

fn pb_connect(c: &proto::ConnectResult) -> NConnect {
    let ttl = c.expires.then_some(c.ttl);
    NConnect { client: c.client.clone(), subs: c.subs.iter().map(|(k, s)| (k.clone(), pb_sub(s))).collect(), ttl }
}

fn pb_push(p: &proto::Push) -> Ev {
    let body = if let Some(x) = &p.r#pub {
        PBody::Pub(pb_pub(x))
    } else if let Some(x) = &p.subscribe {
        PBody::Subscribe(pb_sub(x))
    } else if let Some(x) = &p.unsubscribe {
        PBody::Unsubscribe(x.code)
    } else if let Some(x) = &p.connect {
        PBody::Connect(pb_connect(x))
    } else if let Some(x) = &p.disconnect {
        PBody::Disconnect(x.code)
    } else if p.join.is_some() || p.leave.is_some() {
        PBody::JoinLeave
    } else if let Some(x) = &p.refresh {
        PBody::Refresh(x.expires.then_some(x.ttl))
    } else {
        PBody::Other
    };
    Ev::Push { channel: p.channel.clone(), body }
}

fn pb_reply(r: &proto::Reply) -> Result<Ev, String> {
    if let Some(p) = &r.push {
        return Ok(pb_push(p));
    }
    if r.id == 0 {
        return if *r == proto::Reply::default() {
            Ok(Ev::Ping)
        } else {
            Err(format!("a reply without id or push: {r:?}"))
        };
    }
    let body = if let Some(e) = &r.error {
        RBody::Error(e.code)
    } else if let Some(x) = &r.connect {
        RBody::Connect(pb_connect(x))
    } else if let Some(x) = &r.subscribe {
        RBody::Subscribe(pb_sub(x))
    } else if r.unsubscribe.is_some() {
        RBody::Unsubscribe
    } else if r.publish.is_some() {
        RBody::Publish
    } else if let Some(x) = &r.history {
        RBody::History { epoch: x.epoch.clone(), pubs: x.publications.iter().map(pb_pub).collect() }
    } else if r.presence.is_some() {
        RBody::Presence
    } else if r.presence_stats.is_some() {
        RBody::PresenceStats
    } else if let Some(x) = &r.refresh {
        RBody::Refresh(x.expires.then_some(x.ttl))
    } else {
        RBody::Other
    };
    Ok(Ev::Reply { id: r.id, body })
}

/// Decodes what the host was told to write, the way the session's client reads it. Returns
/// the messages and, for uni SSE, the last event id.
fn decode(transport: Transport, data: &[u8]) -> Result<(Vec<Ev>, Option<String>), String> {
    let wire = transport.wire();
    let uni = wire.unidirectional;
    let mut out = Vec::new();
    let mut event_id = None;
    match (wire.encoding, wire.framing) {
        (Encoding::Protobuf, Framing::Sse) => return Err("Protobuf over SSE".into()),
        (Encoding::Protobuf, _) => {
            if uni {
                return Err("a unidirectional Protobuf session".into());
            }
            let mut buf = data;
            if buf.is_empty() {
                return Err("an empty write".into());
            }
            while !buf.is_empty() {
                let reply =
                    proto::Reply::decode_length_delimited(&mut buf).map_err(|e| format!("bad Protobuf: {e}"))?;
                out.push(pb_reply(&reply)?);
            }
        }
        (Encoding::Json, framing) => {
            let text = std::str::from_utf8(data).map_err(|_| "JSON output that is not UTF-8".to_owned())?;
            let mut bodies: Vec<&str> = Vec::new();
            match framing {
                Framing::WebSocket => {
                    if text.ends_with('\n') || text.is_empty() {
                        return Err(format!("WebSocket message {text:?}"));
                    }
                    bodies.extend(text.split('\n'));
                }
                Framing::Stream => {
                    let body =
                        text.strip_suffix('\n').ok_or_else(|| format!("stream message without newline: {text:?}"))?;
                    bodies.extend(body.split('\n'));
                }
                Framing::Sse => {
                    let events =
                        text.strip_suffix("\n\n").ok_or_else(|| format!("SSE write not ending an event: {text:?}"))?;
                    for event in events.split("\n\n") {
                        let mut data_lines = Vec::new();
                        let mut named = false;
                        for line in event.split('\n') {
                            if let Some(d) = line.strip_prefix("data: ") {
                                data_lines.push(d);
                            } else if let Some(id) = line.strip_prefix("id: ") {
                                if !uni {
                                    return Err("an event id on bidirectional SSE".into());
                                }
                                event_id = Some(id.to_owned());
                            } else if line.starts_with("event: ") {
                                named = true;
                            } else {
                                return Err(format!("bad SSE line {line:?} in {text:?}"));
                            }
                        }
                        if data_lines.len() != 1 {
                            return Err(format!("SSE event with {} data lines: {text:?}", data_lines.len()));
                        }
                        if named {
                            serde_json::from_str::<Value>(data_lines[0])
                                .map_err(|e| format!("bad JSON in event: {e}"))?;
                            out.push(Ev::Event);
                        } else {
                            bodies.push(data_lines[0]);
                        }
                    }
                }
            }
            for body in bodies {
                let v: Value = serde_json::from_str(body).map_err(|e| format!("invalid JSON {body:?}: {e}"))?;
                out.push(json_message(&v, uni)?);
            }
        }
    }
    Ok((out, event_id))
}

/// The marker of a payload made by [`payload`]: `#P<serial>#`.
fn marker(data: &[u8]) -> Option<u64> {
    let at = data.windows(2).position(|w| w == b"#P")?;
    let rest = &data[at + 2..];
    let end = rest.iter().position(|b| *b == b'#')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn payload(kind: Data, serial: u64) -> Vec<u8> {
    match kind {
        // Padded: publications alike enough that Fossil deltas are smaller than they are.
        Data::JsonObject => {
            format!("{{\"n\":\"#P{serial}#\",\"x\":[1,{{}}],\"pad\":\"{}\"}}", "0123456789".repeat(6)).into_bytes()
        }
        Data::JsonString => format!("\"#P{serial}#\"").into_bytes(),
        Data::JsonArray => format!("[\"#P{serial}#\",null]").into_bytes(),
        Data::Binary => {
            let mut b = vec![0xff, 0x00, 0x81];
            b.extend_from_slice(format!("#P{serial}#").as_bytes());
            b
        }
        Data::NotJson => format!("{{\"n\":\"#P{serial}#\"").into_bytes(),
    }
}

fn is_json(kind: Data) -> bool {
    matches!(kind, Data::JsonObject | Data::JsonString | Data::JsonArray)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// =============================================================================================
// Coverage counters (`PROPS_STATS=1` prints them): do the cases reach the states that matter?

mod stats {
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const NAMES: [&str; 16] = [
        "cases",
        "sessions connected",
        "subscriptions",
        "publications received",
        "recoveries asked",
        "recovered",
        "not recovered, coverage checked",
        "deliveries checked",
        "Protobuf writes",
        "JSON writes",
        "closes",
        "API calls",
        "evictions",
        "sessions restored",
        "deltas applied",
        "whole payloads to delta clients",
    ];
    pub static COUNTS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

    pub fn bump(i: usize) {
        COUNTS[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Prints the counts every 1000 cases (all properties together).
    pub fn print(test: &str) {
        if std::env::var_os("PROPS_STATS").is_some() && COUNTS[0].load(Ordering::Relaxed) % 1000 == 0 {
            let line: Vec<String> =
                NAMES.iter().zip(&COUNTS).map(|(n, c)| format!("{n}: {}", c.load(Ordering::Relaxed))).collect();
            eprintln!("{test}: {}", line.join(", "));
        }
    }
}

const CASES: usize = 0;
const CONNECTED: usize = 1;
const SUBSCRIBED: usize = 2;
const RECEIVED: usize = 3;
const RECOVERING: usize = 4;
const RECOVERED: usize = 5;
const COVERED: usize = 6;
const DELIVERY: usize = 7;
const PROTOBUF: usize = 8;
const JSON: usize = 9;
const CLOSES: usize = 10;
const API_CALLS: usize = 11;
const EVICTIONS: usize = 12;
const RESTORED: usize = 13;
const DELTAS: usize = 14;
const WHOLE_FOR_DELTA: usize = 15;

// =============================================================================================
// The core under test: a node (hub and broker in one, answering at once), or a hub whose
// broker is at a distance (as at the edge): requests and events wait in queues, and the
// hub takes client input meanwhile.

struct Split {
    hub: Hub,
    broker: Broker,
    to_broker: VecDeque<BrokerRequest>,
    to_hub: VecDeque<BrokerEvent>,
    /// The host stores snapshots (hibernation); what it stored so far.
    tracking: bool,
    stored: BTreeMap<SessionId, SessionSnapshot>,
    positions: BTreeMap<String, proto::StreamPosition>,
    lives: u64,
}

#[allow(clippy::large_enum_variant)]
enum Core {
    Node(Node),
    Split(Split),
}

impl Core {
    fn hub_mut(&mut self) -> &mut Hub {
        match self {
            Core::Node(_) => unreachable!("a node's hub is driven through the node"),
            Core::Split(s) => &mut s.hub,
        }
    }

    fn hub(&self) -> &Hub {
        match self {
            Core::Node(n) => n.hub(),
            Core::Split(s) => &s.hub,
        }
    }

    fn broker(&self) -> &Broker {
        match self {
            Core::Node(n) => n.broker(),
            Core::Split(s) => &s.broker,
        }
    }

    fn handle_open(&mut self, id: SessionId, t: Transport, now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_open(id, t, now),
            _ => self.hub_mut().handle_open(id, t, now),
        }
    }

    fn handle_connect(&mut self, id: SessionId, r: proto::ConnectRequest, lei: Option<String>, now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_connect(id, r, lei, now),
            _ => self.hub_mut().handle_connect(id, r, lei, now),
        }
    }

    fn handle_frame(&mut self, id: SessionId, frame: &[u8], now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_frame(id, frame, now),
            _ => self.hub_mut().handle_frame(id, frame, now),
        }
    }

    fn handle_closed(&mut self, id: SessionId, now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_closed(id, now),
            _ => self.hub_mut().handle_closed(id, now),
        }
    }

    fn handle_api(&mut self, id: ApiId, c: ApiCommand, now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_api(id, c, now),
            _ => self.hub_mut().handle_api(id, c, now),
        }
    }

    fn disconnect(&mut self, id: SessionId, d: proto::Disconnect, now: Timestamp) {
        match self {
            Core::Node(n) => n.disconnect(id, d, now),
            _ => self.hub_mut().disconnect(id, d, now),
        }
    }

    fn shutdown(&mut self, now: Timestamp) {
        match self {
            Core::Node(n) => n.shutdown(now),
            _ => self.hub_mut().shutdown(now),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        match self {
            Core::Node(n) => n.handle_timeout(now),
            Core::Split(s) => {
                s.broker.handle_timeout(now);
                while let Some(e) = s.broker.poll_output() {
                    s.to_hub.push_back(e);
                }
                s.hub.handle_timeout(now);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Core::Node(n) => n.poll_timeout(),
            Core::Split(s) => match (s.hub.poll_timeout(), s.broker.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        match self {
            Core::Node(n) => n.poll_output().map(Into::into),
            Core::Split(s) => loop {
                match s.hub.poll_output() {
                    Some(Output::Broker(r)) => s.to_broker.push_back(r),
                    Some(other) => return Some(other),
                    None => {
                        // The host writes down what changed, as the edge does after each event.
                        if let Some(changes) = s.hub.take_changes() {
                            for (id, snapshot) in changes.sessions {
                                match snapshot {
                                    Some(snap) => s.stored.insert(id, snap),
                                    None => s.stored.remove(&id),
                                };
                            }
                            for (channel, position) in changes.positions {
                                match position {
                                    Some(p) => s.positions.insert(channel.to_string(), p),
                                    None => s.positions.remove(&*channel),
                                };
                            }
                        }
                        return None;
                    }
                }
            },
        }
    }

    /// Carries queued requests to the broker and events back to the hub (the hub's outputs
    /// wait for the caller to drain them). Returns the publications the broker took, in its
    /// order: (channel, payload).
    fn deliver(&mut self, requests: usize, events: usize, now: Timestamp) -> Vec<(String, Bytes)> {
        let mut published = Vec::new();
        let Core::Split(s) = self else { return published };
        for _ in 0..requests {
            let Some(r) = s.to_broker.pop_front() else { break };
            if let shared::broker::BrokerOp::Publish(p) = &r.op {
                published.push((r.channel.clone(), p.data.clone()));
            }
            s.broker.handle_request(r, now);
            while let Some(e) = s.broker.poll_output() {
                s.to_hub.push_back(e);
            }
        }
        for _ in 0..events {
            let Some(e) = s.to_hub.pop_front() else { break };
            s.hub.handle_broker(e, now);
        }
        published
    }

    /// How many queued events to carry so that the hub waits for no reply (None: no
    /// request is queued and no reply waits).
    fn replies_waiting(&self) -> Option<(usize, usize)> {
        let Core::Split(s) = self else { return None };
        let last_reply = s.to_hub.iter().rposition(|e| matches!(e, BrokerEvent::Reply { .. }));
        match (s.to_broker.len(), last_reply) {
            (0, None) => None,
            (requests, last) => Some((requests, last.map_or(0, |i| i + 1))),
        }
    }

    /// Sessions the host stored snapshots of (hibernation only).
    fn stored(&self) -> Option<BTreeSet<SessionId>> {
        match self {
            Core::Split(s) if s.tracking => Some(s.stored.keys().copied().collect()),
            _ => None,
        }
    }

    /// A new hub rebuilds the stored sessions; the broker and the queued events stay.
    fn evict(&mut self, cfg: &Arc<Config>, now: Timestamp) {
        let Core::Split(s) = self else { return };
        s.lives += 1;
        let info = NodeInfo { id: "node-props".into(), name: "props".into(), version: "0.0.0-props".into() };
        let hub = Hub::new(cfg.clone(), info, 7 + s.lives, now).expect("valid config");
        s.hub = hub.without_websocket_pings().tracking_snapshots();
        for (id, snapshot) in &s.stored {
            s.hub.handle_restore(*id, snapshot.clone(), &s.positions, now);
        }
    }

    /// Nothing waits between hub and broker.
    fn quiet(&self) -> bool {
        match self {
            Core::Node(_) => true,
            Core::Split(s) => s.to_broker.is_empty() && s.to_hub.is_empty(),
        }
    }
}

// =============================================================================================
// The harness

/// The stream position a session knows for a channel.
type Position = (String, u64);

/// A publication's serial and the channels it went to.
type Serial = (u64, Vec<String>);

/// A subscription as its client sees it.
#[derive(Clone, Debug)]
struct Track {
    positioned: bool,
    epoch: Option<String>,
    /// Last offset delivered (or the result's position).
    offset: u64,
    /// The order (see `Harness::order_of`) of the last publication delivered.
    last_order: Option<u64>,
    /// Publications delivered.
    got: BTreeSet<u64>,
    /// The serial counter when it started: publications after this must arrive.
    since_serial: u64,
    /// Deltas negotiated, and the payload the client holds as its base (decoded here).
    delta: bool,
    base: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum Pend {
    /// `exp_ms`: when the token says the connection expires.
    Connect {
        user: String,
        hints: BTreeMap<String, Position>,
        granted: BTreeSet<String>,
        exp_ms: Option<u64>,
    },
    Subscribe {
        ch: String,
        since: Option<Position>,
        tokened: bool,
    },
    Unsubscribe(String),
    Publish {
        ch: String,
        serial: u64,
    },
    History(String),
    Presence(String),
    Other,
    /// Refresh: replies or disconnects.
    Refresh,
}

struct SessionRec {
    id: SessionId,
    transport: Transport,
    live: bool,
    user: Option<String>,
    client: String,
    connected: bool,
    /// A uni SSE connect resuming from an event id: recovery arrives as events.
    resuming: bool,
    next_id: u32,
    pending: BTreeMap<u32, Pend>,
    /// Commands that must get a reply (or the session must end).
    unanswered: BTreeSet<u32>,
    tracks: BTreeMap<String, Track>,
    positions: BTreeMap<String, Position>,
    owed_pongs: u32,
    /// The first ping not answered yet.
    ping_since: Option<Timestamp>,
    opened_at: Timestamp,
    /// When the client was told its connection expires.
    expires_told: Option<Timestamp>,
    last_event_id: Option<String>,
    /// Something was sent: a uni WebSocket's first message is its connect request.
    spoke: bool,
}

struct PubMeta {
    channels: Vec<String>,
    /// Published through an API call or command whose answer was success.
    ok: bool,
    /// The harness can tell it must reach every subscriber (no idempotency key).
    must_deliver: bool,
    /// When and in which step it was published (for history coverage).
    at: Timestamp,
    step: u64,
}

struct Harness {
    node: Core,
    /// The broker is at a distance (see [`Core`]).
    split: bool,
    cfg: Arc<Config>,
    avoid: Avoid,
    now: Timestamp,
    sessions: Vec<SessionRec>,
    index: BTreeMap<SessionId, usize>,
    next_api: u64,
    serial: u64,
    pubs: BTreeMap<u64, PubMeta>,
    /// (channel, epoch, offset) → serial, from everything anyone was told.
    offsets: BTreeMap<(String, String, u64), u64>,
    /// Latest epoch seen per channel.
    epochs: BTreeMap<String, String>,
    /// The step of the last history_remove per channel.
    removed: BTreeMap<String, u64>,
    /// (channel, serial) → the order the distant broker took it in.
    order: BTreeMap<(String, u64), u64>,
    next_order: u64,
    step: u64,
    /// Publications answered OK in the current step, to check delivery at its end.
    published_now: Vec<u64>,
    /// Recoveries seen this step: (session index, channel, epoch, least top it must reach).
    recovered_now: Vec<(usize, String, String, u64)>,
    /// For API subscribe: the position `recover_since` named, per channel, this step.
    api_since: BTreeMap<String, Option<Position>>,
    /// API calls not answered yet, with their command and publications.
    api_pending: BTreeMap<ApiId, (ApiCommand, Vec<Serial>)>,
    context: String,
    /// `PROPS_TRACE=1`: print every step and output (for reading one case).
    trace: bool,
}

macro_rules! violation {
    ($h:expr, $($arg:tt)*) => {
        panic!("step {} ({}): {}", $h.step, $h.context, format!($($arg)*))
    };
}

impl Harness {
    /// `split`: Some(websocket pings) for a hub with its broker at a distance; without
    /// pings, the host stores snapshots and may lose its memory ([`Op::Evict`]).
    fn new(k: &Knobs, avoid: Avoid, split: Option<bool>) -> Harness {
        let cfg = Arc::new(config(k));
        let info = NodeInfo { id: "node-props".into(), name: "props".into(), version: "0.0.0-props".into() };
        let now = Timestamp(T0);
        let node = match split {
            None => Core::Node(Node::new(cfg.clone(), info, 7, now).expect("valid config")),
            Some(pings) => {
                let hub = Hub::new(cfg.clone(), info, 7, now).expect("valid config");
                let hub = if pings { hub } else { hub.without_websocket_pings().tracking_snapshots() };
                Core::Split(Split {
                    hub,
                    broker: Broker::new(11),
                    to_broker: VecDeque::new(),
                    to_hub: VecDeque::new(),
                    tracking: !pings,
                    stored: BTreeMap::new(),
                    positions: BTreeMap::new(),
                    lives: 0,
                })
            }
        };
        Harness {
            node,
            split: split.is_some(),
            cfg,
            avoid,
            now,
            sessions: Vec::new(),
            index: BTreeMap::new(),
            next_api: 1,
            serial: 0,
            pubs: BTreeMap::new(),
            offsets: BTreeMap::new(),
            epochs: BTreeMap::new(),
            removed: BTreeMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
            step: 0,
            published_now: Vec::new(),
            recovered_now: Vec::new(),
            api_since: BTreeMap::new(),
            api_pending: BTreeMap::new(),
            context: String::new(),
            trace: std::env::var_os("PROPS_TRACE").is_some(),
        }
    }

    /// A session for an op: one of the open ones, or (rarely) any ever opened.
    fn pick(&self, s: Sel) -> Option<usize> {
        let live: Vec<usize> = (0..self.sessions.len()).filter(|&i| self.sessions[i].live).collect();
        if s.0 < 240 && !live.is_empty() {
            return Some(live[s.0 as usize % live.len()]);
        }
        self.pick_any(s)
    }

    fn pick_any(&self, s: Sel) -> Option<usize> {
        (!self.sessions.is_empty()).then(|| s.0 as usize % self.sessions.len())
    }

    // ---- running ops

    fn run(&mut self, op: &Op) {
        self.step += 1;
        self.context = format!("{op:?}");
        if self.trace {
            eprintln!("--- step {} at +{} ms: {op:?}", self.step, Timestamp(T0).until(self.now));
        }
        self.published_now.clear();
        self.recovered_now.clear();
        match op {
            Op::Open { tr, auth, subs, last_event_id } => self.open(*tr, auth, subs, *last_event_id),
            Op::OpenRaw { tr, body } => {
                let i = self.open_session(*tr);
                let id = self.sessions[i].id;
                if tr.transport().is_unidirectional() {
                    match proto::parse_connect_request(body) {
                        Ok(request) => {
                            let pend = Pend::Connect {
                                user: String::new(),
                                hints: BTreeMap::new(),
                                granted: BTreeSet::new(),
                                exp_ms: None,
                            };
                            self.sessions[i].pending.insert(0, pend);
                            self.node.handle_connect(id, request, None, self.now);
                        }
                        // The host answers 400 and closes.
                        Err(_) => {
                            self.end(i);
                            self.node.handle_closed(id, self.now);
                        }
                    }
                } else {
                    self.node.handle_frame(id, body, self.now);
                }
                self.drain();
            }
            Op::OpenIdle { tr } => {
                self.open_session(*tr);
                self.drain();
            }
            Op::Connect { s, auth } => {
                let Some(i) = self.pick(*s) else { return };
                let (id, transport) = (self.sessions[i].id, self.sessions[i].transport);
                if transport.is_unidirectional() {
                    let (body, pend) = self.connect_body(auth, &[], i);
                    if let Ok(request) = proto::parse_connect_request(body.to_string().as_bytes()) {
                        self.sessions[i].pending.entry(0).or_insert(pend);
                        if transport == Transport::UniWebsocket && !self.sessions[i].spoke {
                            // Its first message is the connect request.
                            self.node.handle_frame(id, body.to_string().as_bytes(), self.now);
                        } else {
                            self.node.handle_connect(id, request, None, self.now);
                        }
                        self.sessions[i].spoke = true;
                    }
                } else {
                    let frame = self.connect_frame(i, auth, &[]);
                    self.node.handle_frame(id, &frame, self.now);
                }
                self.drain();
            }
            Op::Frame { s, cmds, tail } => {
                let Some(i) = self.pick(*s) else { return };
                if self.first_message_is_connect(i) {
                    return; // it would be read as a connect request (hub unit tests cover that)
                }
                let (frame, expected) = self.frame(i, cmds, tail);
                let id = self.sessions[i].id;
                if !self.sessions[i].transport.is_unidirectional() {
                    self.sessions[i].unanswered.extend(expected);
                }
                self.node.handle_frame(id, &frame, self.now);
                self.drain();
            }
            Op::Garbage { s, bytes } => {
                let Some(i) = self.pick(*s) else { return };
                if self.first_message_is_connect(i) {
                    return;
                }
                let id = self.sessions[i].id;
                self.node.handle_frame(id, bytes, self.now);
                self.drain();
            }
            Op::Pong(s) => {
                let Some(i) = self.pick(*s) else { return };
                self.pong(i);
            }
            Op::Api(a) => self.api(a),
            Op::Advance { ms, jump, pongs } => self.advance(*ms, *jump, *pongs),
            Op::Close(s) => {
                let Some(i) = self.pick(*s) else { return };
                let id = self.sessions[i].id;
                self.end(i);
                self.node.handle_closed(id, self.now);
                self.drain();
            }
            Op::Kick { s, code } => {
                let Some(i) = self.pick(*s) else { return };
                let id = self.sessions[i].id;
                self.node.disconnect(id, proto::Disconnect::new(*code, "kicked"), self.now);
                self.drain();
                if self.sessions[i].live {
                    violation!(self, "{id} survived the host's disconnect");
                }
            }
            Op::Deliver { requests, events } => self.deliver(usize::from(*requests), usize::from(*events)),
            Op::Flush => self.flush(),
            Op::Evict => self.evict(),
            Op::Shutdown => {
                self.node.shutdown(self.now);
                self.drain();
                if let Some(r) = self.sessions.iter().find(|r| r.live) {
                    violation!(self, "{} survived shutdown", r.id);
                }
            }
        }
        self.check_step();
    }

    /// A uni WebSocket that has sent nothing yet: whatever it sends is its connect request.
    fn first_message_is_connect(&self, i: usize) -> bool {
        self.sessions[i].transport == Transport::UniWebsocket && !self.sessions[i].spoke
    }

    fn open_session(&mut self, tr: Tr) -> usize {
        let transport = tr.transport();
        let id = SessionId(self.sessions.len() as u64 + 1);
        self.sessions.push(SessionRec {
            id,
            transport,
            live: true,
            user: None,
            client: String::new(),
            connected: false,
            resuming: false,
            next_id: 1,
            pending: BTreeMap::new(),
            unanswered: BTreeSet::new(),
            tracks: BTreeMap::new(),
            positions: BTreeMap::new(),
            owed_pongs: 0,
            ping_since: None,
            opened_at: self.now,
            expires_told: None,
            last_event_id: None,
            spoke: false,
        });
        let i = self.sessions.len() - 1;
        self.index.insert(id, i);
        self.node.handle_open(id, transport, self.now);
        i
    }

    fn open(&mut self, tr: Tr, auth: &Auth, subs: &[(Ch, Rec)], last_event_id: Option<Option<Sel>>) {
        let i = self.open_session(tr);
        self.drain();
        let id = self.sessions[i].id;
        let transport = tr.transport();
        if transport.is_unidirectional() {
            let mut lei = None;
            if transport == Transport::UniSse {
                if let Some(from) = last_event_id {
                    lei = Some(match from.and_then(|s| self.pick(s)) {
                        Some(j) => self.sessions[j].last_event_id.clone().unwrap_or_else(|| "1.AAAA".into()),
                        None => "garbage-event-id".into(),
                    });
                    self.sessions[i].resuming = true;
                }
            }
            let (body, pend) = self.connect_body(auth, subs, i);
            match proto::parse_connect_request(body.to_string().as_bytes()) {
                Ok(request) => {
                    self.sessions[i].pending.insert(0, pend);
                    // As a host does with `cf_connect` in the URL.
                    self.sessions[i].spoke = true;
                    self.node.handle_connect(id, request, lei, self.now);
                }
                Err(e) => violation!(self, "connect body {body} does not parse: {e}"),
            }
        } else {
            let frame = self.connect_frame(i, auth, subs);
            self.node.handle_frame(id, &frame, self.now);
        }
        self.drain();
    }

    fn token(&self, auth: &Auth) -> (String, Option<String>, BTreeSet<String>) {
        let now_s = self.now.as_secs();
        match auth {
            Auth::Token { user, exp, info, channels } => {
                let user = user.map(|u| u.name().to_owned()).unwrap_or_default();
                let mut claims = json!({"sub": user});
                match exp {
                    Exp::Never => {}
                    Exp::InSecs(s) => claims["exp"] = json!(now_s + u64::from(*s)),
                    Exp::Far => claims["exp"] = json!(1e12),
                    Exp::Absurd => claims["exp"] = json!(1e18),
                    Exp::ExpireAtMax => {
                        if self.avoid.expire {
                            claims["exp"] = json!(now_s + 3600);
                        } else {
                            claims["expire_at"] = json!(i64::MAX);
                        }
                    }
                }
                match info {
                    Info::None => {}
                    Info::Json => claims["info"] = json!({"who": user}),
                    Info::Binary => claims["b64info"] = json!(b64(b"\xff\x00conn")),
                }
                let granted: BTreeSet<String> = channels.iter().map(|c| c.name().to_owned()).collect();
                if !granted.is_empty() {
                    claims["channels"] = json!(granted);
                }
                (shared::auth::issue_hs256(SECRET, &claims), Some(user), granted)
            }
            Auth::Expired(u) => {
                let claims = json!({"sub": u.name(), "exp": now_s.saturating_sub(10)});
                (shared::auth::issue_hs256(SECRET, &claims), None, BTreeSet::new())
            }
            Auth::BadSignature(u) => {
                (shared::auth::issue_hs256("not-the-secret", &json!({"sub": u.name()})), None, BTreeSet::new())
            }
            Auth::NoToken => (String::new(), Some(String::new()), BTreeSet::new()),
            Auth::Garbage(g) => (g.clone(), g.is_empty().then(String::new), BTreeSet::new()),
        }
    }

    /// When a connection with this token expires (ms), as the token says.
    fn token_expiry(&self, auth: &Auth) -> Option<u64> {
        let Auth::Token { exp, .. } = auth else { return None };
        match exp {
            Exp::Never => None,
            Exp::InSecs(s) => Some((self.now.as_secs() + u64::from(*s)) * 1000),
            Exp::Far => Some(1_000_000_000_000_000),
            Exp::Absurd => Some(u64::MAX),
            Exp::ExpireAtMax if self.avoid.expire => Some((self.now.as_secs() + 3600) * 1000),
            Exp::ExpireAtMax => Some(u64::MAX),
        }
    }

    /// The position a recovery spec names for session `i` on `channel`.
    fn position(&self, i: usize, channel: &str, rec: Rec) -> Option<Position> {
        match rec {
            Rec::No => None,
            // Its own, or (a client reconnecting) the one the latest session knew.
            Rec::Own => self.sessions[i]
                .positions
                .get(channel)
                .or_else(|| self.sessions.iter().rev().find_map(|r| r.positions.get(channel)))
                .cloned(),
            Rec::Of(s) => self.pick_any(s).and_then(|j| self.sessions[j].positions.get(channel).cloned()),
            Rec::Random { offset, known_epoch } => {
                let epoch =
                    if known_epoch { self.epochs.get(channel).cloned().unwrap_or_default() } else { "AbCdEfGh".into() };
                Some((epoch, u64::from(offset)))
            }
        }
    }

    fn connect_body(&self, auth: &Auth, subs: &[(Ch, Rec)], i: usize) -> (Value, Pend) {
        let (token, user, granted) = self.token(auth);
        let mut hints = BTreeMap::new();
        let mut sub_map = serde_json::Map::new();
        for (c, r) in subs {
            let name = c.name();
            let mut h = json!({});
            if let Some((epoch, offset)) = self.position(i, name, *r) {
                h = json!({"recover": true, "epoch": epoch, "offset": offset});
                hints.insert(name.to_owned(), (epoch, offset));
            }
            sub_map.insert(name.to_owned(), h);
        }
        let body = json!({"token": token, "subs": sub_map});
        let user = user.unwrap_or_else(|| "?".into());
        (body, Pend::Connect { user, hints, granted, exp_ms: self.token_expiry(auth) })
    }

    fn connect_frame(&mut self, i: usize, auth: &Auth, subs: &[(Ch, Rec)]) -> Vec<u8> {
        let (body, pend) = self.connect_body(auth, subs, i);
        let cid = self.next_id(i);
        self.sessions[i].pending.insert(cid, pend);
        self.sessions[i].unanswered.insert(cid);
        match self.sessions[i].transport.wire().encoding {
            Encoding::Json => json!({"id": cid, "connect": body}).to_string().into_bytes(),
            Encoding::Protobuf => {
                let request = proto::parse_connect_request(body.to_string().as_bytes()).expect("a connect request");
                proto::Command { id: cid, connect: Some(request), ..Default::default() }
                    .encode_length_delimited_to_vec()
            }
        }
    }

    fn next_id(&mut self, i: usize) -> u32 {
        let r = &mut self.sessions[i];
        let id = r.next_id;
        r.next_id += 1;
        id
    }

    fn sub_token(&self, i: usize, channel: &str, tok: &SubTok) -> String {
        let user = self.sessions[i].user.clone().unwrap_or_default();
        let now_s = self.now.as_secs();
        let claims = match tok {
            SubTok::None => return String::new(),
            SubTok::Garbage => return "not.a.token".into(),
            SubTok::Valid { exp, info, data } => {
                let mut c = json!({"sub": user, "channel": channel});
                match exp {
                    Exp::Never => {}
                    Exp::InSecs(s) => c["exp"] = json!(now_s + u64::from(*s)),
                    Exp::Far => c["exp"] = json!(1e12),
                    Exp::Absurd => c["exp"] = json!(1e18),
                    Exp::ExpireAtMax if self.avoid.expire => c["exp"] = json!(now_s + 3600),
                    Exp::ExpireAtMax => c["expire_at"] = json!(i64::MAX),
                }
                match info {
                    Info::None => {}
                    Info::Json => c["info"] = json!({"ch": channel}),
                    Info::Binary => c["b64info"] = json!(b64(b"\xfe\x00chan")),
                }
                match data {
                    Info::None => {}
                    Info::Json => c["data"] = json!({"welcome": 1}),
                    Info::Binary => c["b64data"] = json!(b64(b"\xfd\x00data")),
                }
                c
            }
            SubTok::Expired => json!({"sub": user, "channel": channel, "exp": now_s.saturating_sub(5)}),
            SubTok::OtherChannel => json!({"sub": user, "channel": "news-other"}),
            SubTok::OtherUser => json!({"sub": format!("{user}-other"), "channel": channel}),
        };
        shared::auth::issue_hs256(SECRET, &claims)
    }

    /// Encodes a frame of commands for session `i`; returns it with the ids that must be
    /// answered if the session stays open.
    fn frame(&mut self, i: usize, cmds: &[Cmd], tail: &Tail) -> (Vec<u8>, Vec<u32>) {
        let encoding = self.sessions[i].transport.wire().encoding;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut expected = Vec::new();
        let mut bad = false;
        for c in cmds {
            let id = self.next_id(i);
            let (json_body, pb, pend, answered) = self.command(i, id, c);
            let mut part = match encoding {
                Encoding::Json => json_body,
                Encoding::Protobuf => pb.encode_length_delimited_to_vec(),
            };
            if encoding == Encoding::Json && serde_json::from_slice::<Value>(&part).is_err() {
                bad = true; // a binary payload in a JSON frame: this and what follows never run
            }
            if !bad {
                self.sessions[i].pending.insert(id, pend);
                if answered {
                    expected.push(id);
                }
            }
            if encoding == Encoding::Json && part.contains(&b'\n') {
                part.retain(|b| *b != b'\n');
            }
            parts.push(part);
        }
        let mut frame = match encoding {
            Encoding::Json => parts.join(&b'\n'),
            Encoding::Protobuf => parts.concat(),
        };
        match tail {
            Tail::None => {}
            Tail::Newline if encoding == Encoding::Json => frame.push(b'\n'),
            Tail::Newline => {}
            Tail::Garbage(g) => {
                if encoding == Encoding::Json {
                    frame.push(b'\n');
                }
                frame.extend_from_slice(g);
            }
            Tail::Truncated => {
                frame.pop();
            }
        }
        // Ids of commands that a damaged frame may not run are not expected: a bad frame
        // closes the session anyway.
        (frame, expected)
    }

    /// One command as JSON text and as Protobuf, what the harness awaits for it, and whether
    /// it must be answered.
    fn command(&mut self, i: usize, id: u32, c: &Cmd) -> (Vec<u8>, proto::Command, Pend, bool) {
        let mut pb = proto::Command { id, ..Default::default() };
        let channel_json = |ch: &str| serde_json::to_string(ch).expect("a string");
        match c {
            Cmd::Subscribe { ch, rec, positioned, recoverable, join_leave, reject, tok, delta } => {
                let name = ch.name();
                let since = self.position(i, name, *rec);
                let token = self.sub_token(i, name, tok);
                let mut body = json!({"channel": name, "positioned": positioned, "recoverable": recoverable, "join_leave": join_leave});
                let mut r = proto::SubscribeRequest {
                    channel: name.into(),
                    positioned: *positioned,
                    recoverable: *recoverable,
                    join_leave: *join_leave,
                    ..Default::default()
                };
                if let Some((epoch, offset)) = &since {
                    body["recover"] = json!(true);
                    body["epoch"] = json!(epoch);
                    body["offset"] = json!(offset);
                    r.recover = true;
                    r.epoch = epoch.clone();
                    r.offset = *offset;
                }
                if *reject {
                    body["flag"] = json!(proto::FLAG_REJECT_UNRECOVERED);
                    r.flag = proto::FLAG_REJECT_UNRECOVERED;
                }
                if *delta {
                    body["delta"] = json!("fossil");
                    r.delta = "fossil".into();
                }
                if !token.is_empty() {
                    body["token"] = json!(token);
                    r.token = token.clone();
                }
                pb.subscribe = Some(r);
                let pend = Pend::Subscribe { ch: name.into(), since, tokened: !token.is_empty() };
                (json!({"id": id, "subscribe": body}).to_string().into_bytes(), pb, pend, true)
            }
            Cmd::Unsubscribe(ch) => {
                pb.unsubscribe = Some(proto::UnsubscribeRequest { channel: ch.name().into() });
                let j = json!({"id": id, "unsubscribe": {"channel": ch.name()}}).to_string().into_bytes();
                (j, pb, Pend::Unsubscribe(ch.name().into()), true)
            }
            Cmd::Publish(ch, kind) => {
                self.serial += 1;
                let serial = self.serial;
                let json_client = self.sessions[i].transport.wire().encoding == Encoding::Json;
                // JSON clients cannot send bytes: theirs go as a string (cut-off JSON stays a bad frame).
                let kind = if json_client && *kind == Data::Binary { &Data::JsonString } else { kind };
                let data = payload(*kind, serial);
                self.pubs.insert(
                    serial,
                    PubMeta {
                        channels: vec![ch.name().into()],
                        ok: false,
                        must_deliver: true,
                        at: self.now,
                        step: self.step,
                    },
                );
                pb.publish = Some(proto::PublishRequest { channel: ch.name().into(), data: Bytes::from(data.clone()) });
                let mut j = format!("{{\"id\":{id},\"publish\":{{\"channel\":{},\"data\":", channel_json(ch.name()))
                    .into_bytes();
                j.extend_from_slice(&data);
                j.extend_from_slice(b"}}");
                (j, pb, Pend::Publish { ch: ch.name().into(), serial }, true)
            }
            Cmd::History { ch, limit, since, reverse } => {
                let pos = self.position(i, ch.name(), *since);
                let mut body = json!({"channel": ch.name(), "limit": limit, "reverse": reverse});
                let mut r = proto::HistoryRequest {
                    channel: ch.name().into(),
                    limit: *limit,
                    reverse: *reverse,
                    ..Default::default()
                };
                if let Some((epoch, offset)) = pos {
                    body["since"] = json!({"epoch": epoch, "offset": offset});
                    r.since = Some(proto::StreamPosition { epoch, offset });
                }
                pb.history = Some(r);
                (json!({"id": id, "history": body}).to_string().into_bytes(), pb, Pend::History(ch.name().into()), true)
            }
            Cmd::Presence(ch) => {
                pb.presence = Some(proto::ChannelRequest { channel: ch.name().into() });
                let j = json!({"id": id, "presence": {"channel": ch.name()}}).to_string().into_bytes();
                (j, pb, Pend::Presence(ch.name().into()), true)
            }
            Cmd::PresenceStats(ch) => {
                pb.presence_stats = Some(proto::ChannelRequest { channel: ch.name().into() });
                let j = json!({"id": id, "presence_stats": {"channel": ch.name()}}).to_string().into_bytes();
                (j, pb, Pend::Presence(ch.name().into()), true)
            }
            Cmd::Rpc => {
                pb.rpc = Some(proto::RpcRequest { method: "m".into(), data: Bytes::from_static(b"{}") });
                (json!({"id": id, "rpc": {"method": "m", "data": {}}}).to_string().into_bytes(), pb, Pend::Other, true)
            }
            Cmd::Send(kind) => {
                let data = payload(*kind, 0);
                pb.send = Some(proto::SendRequest { data: Bytes::from(data.clone()) });
                let mut j = format!("{{\"id\":{id},\"send\":{{\"data\":").into_bytes();
                j.extend_from_slice(&data);
                j.extend_from_slice(b"}}");
                (j, pb, Pend::Other, false)
            }
            Cmd::Refresh { auth, own } => {
                let auth = match (auth, self.sessions[i].user.as_deref()) {
                    (Auth::Token { exp, info, channels, .. }, Some(u)) if *own => {
                        let user = USERS.iter().position(|x| *x == u).map(|k| U(k as u8));
                        Auth::Token { user, exp: *exp, info: *info, channels: channels.clone() }
                    }
                    (auth, _) => auth.clone(),
                };
                let (token, _, _) = self.token(&auth);
                pb.refresh = Some(proto::RefreshRequest { token: token.clone() });
                (json!({"id": id, "refresh": {"token": token}}).to_string().into_bytes(), pb, Pend::Refresh, true)
            }
            Cmd::SubRefresh(ch, tok) => {
                let token = self.sub_token(i, ch.name(), tok);
                pb.sub_refresh = Some(proto::SubRefreshRequest { channel: ch.name().into(), token: token.clone() });
                let j =
                    json!({"id": id, "sub_refresh": {"channel": ch.name(), "token": token}}).to_string().into_bytes();
                (j, pb, Pend::Other, true)
            }
            Cmd::Ping => {
                pb.ping = Some(proto::Empty {});
                (json!({"id": id, "ping": {}}).to_string().into_bytes(), pb, Pend::Other, true)
            }
            Cmd::Nothing => (json!({"id": id}).to_string().into_bytes(), pb, Pend::Other, true),
        }
    }

    fn pong(&mut self, i: usize) {
        if self.first_message_is_connect(i) {
            return;
        }
        let r = &mut self.sessions[i];
        r.owed_pongs = r.owed_pongs.saturating_sub(1);
        r.ping_since = None;
        let frame: Vec<u8> = match r.transport.wire().encoding {
            Encoding::Json => b"{}".to_vec(),
            Encoding::Protobuf => proto::Command::default().encode_length_delimited_to_vec(),
        };
        let id = r.id;
        self.node.handle_frame(id, &frame, self.now);
        self.drain();
    }

    fn advance(&mut self, ms: u64, jump: bool, pongs: bool) {
        if self.avoid.epoch {
            self.flush();
        }
        let target = self.now.after_ms(ms);
        if jump {
            self.now = target;
            self.node.handle_timeout(self.now);
            self.drain();
            return;
        }
        let mut steps = 0u32;
        loop {
            if pongs {
                for i in 0..self.sessions.len() {
                    let r = &self.sessions[i];
                    if r.live && r.owed_pongs > 0 && !r.transport.is_unidirectional() {
                        self.pong(i);
                    }
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
            steps += 1;
            if steps > 20_000 {
                // Too many deadlines for a test: let the host sleep through the rest.
                break;
            }
        }
        self.now = target;
        self.node.handle_timeout(self.now);
        self.drain();
    }

    // ---- API

    fn expire_at(&self, e: ExpireAt) -> i64 {
        let now_s = self.now.as_secs() as i64;
        match e {
            ExpireAt::Zero => 0,
            ExpireAt::Negative => -5,
            ExpireAt::Past => now_s.saturating_sub(10).max(1),
            ExpireAt::Soon(s) => now_s.saturating_add(i64::from(s)),
            ExpireAt::Huge(v) => v,
        }
    }

    fn client_of(&self, s: Option<Sel>) -> String {
        s.and_then(|s| self.pick(s)).map(|i| self.sessions[i].client.clone()).unwrap_or_default()
    }

    fn put_data(&self, body: &mut Value, field: &str, kind: Data, b64_wanted: bool, serial: u64) {
        let bytes = payload(kind, serial);
        if b64_wanted || !is_json(kind) {
            body[format!("b64{field}")] = json!(b64(&bytes));
        } else {
            body[field] = serde_json::from_slice(&bytes).expect("JSON payload");
        }
    }

    fn put_info(&self, body: &mut Value, field: &str, info: Info) {
        match info {
            Info::None => {}
            Info::Json => body[field] = json!({"api": field}),
            Info::Binary => body[format!("b64{field}")] = json!(b64(b"\xfc\x00api")),
        }
    }

    /// Method and body of an API call; publications get serials (and their meta) here.
    fn api_body(&mut self, a: &ApiOp, serials: &mut Vec<Serial>) -> (String, Value) {
        match a {
            ApiOp::Publish { ch, data, b64, skip_history, key } => {
                self.serial += 1;
                let serial = self.serial;
                let mut body = json!({"channel": ch.name(), "skip_history": skip_history});
                self.put_data(&mut body, "data", *data, *b64, serial);
                if let Some(k) = key {
                    body["idempotency_key"] = json!(format!("key{k}"));
                }
                let must = key.is_none();
                self.pubs.insert(
                    serial,
                    PubMeta {
                        channels: vec![ch.name().into()],
                        ok: false,
                        must_deliver: must,
                        at: self.now,
                        step: self.step,
                    },
                );
                serials.push((serial, vec![ch.name().into()]));
                ("publish".into(), body)
            }
            ApiOp::Broadcast { chs, data, b64 } => {
                self.serial += 1;
                let serial = self.serial;
                // Each channel once: a channel named twice gets two publications of one payload.
                let mut names: Vec<String> = Vec::new();
                for c in chs {
                    if !names.iter().any(|n| n == c.name()) {
                        names.push(c.name().to_owned());
                    }
                }
                let mut body = json!({"channels": names});
                self.put_data(&mut body, "data", *data, *b64, serial);
                self.pubs.insert(
                    serial,
                    PubMeta { channels: names.clone(), ok: false, must_deliver: true, at: self.now, step: self.step },
                );
                serials.push((serial, names));
                ("broadcast".into(), body)
            }
            ApiOp::History { ch, limit, since, reverse } => {
                let mut body = json!({"channel": ch.name(), "limit": limit, "reverse": reverse});
                let pos = if self.sessions.is_empty() { None } else { self.position(0, ch.name(), *since) };
                if let Some((epoch, offset)) = pos {
                    body["since"] = json!({"epoch": epoch, "offset": offset});
                }
                ("history".into(), body)
            }
            ApiOp::Presence(ch) => ("presence".into(), json!({"channel": ch.name()})),
            ApiOp::PresenceStats(ch) => ("presence_stats".into(), json!({"channel": ch.name()})),
            ApiOp::HistoryRemove(ch) => {
                // Whether or not it succeeds, history before this step no longer counts.
                self.removed.insert(ch.name().to_owned(), self.step);
                ("history_remove".into(), json!({"channel": ch.name()}))
            }
            ApiOp::Subscribe { user, ch, expire, since, info, data, client, force_recovery } => {
                let mut body = json!({"user": user.name(), "channel": ch.name(), "expire_at": self.expire_at(*expire)});
                let client = self.client_of(*client);
                if !client.is_empty() {
                    body["client"] = json!(client);
                }
                let pos = if self.sessions.is_empty() { None } else { self.position(0, ch.name(), *since) };
                if let Some((epoch, offset)) = &pos {
                    body["recover_since"] = json!({"epoch": epoch, "offset": offset});
                }
                // Two subscribes to one channel in a batch with different positions: unknown.
                let entry = self.api_since.entry(ch.name().to_owned()).or_insert_with(|| pos.clone());
                if *entry != pos {
                    *entry = None;
                }
                self.put_info(&mut body, "info", *info);
                self.put_info(&mut body, "data", *data);
                if let Some(f) = force_recovery {
                    body["override"] = json!({"force_recovery": {"value": f}});
                }
                ("subscribe".into(), body)
            }
            ApiOp::Unsubscribe { user, ch, client } => {
                let mut body = json!({"user": user.name()});
                if let Some(c) = ch {
                    body["channel"] = json!(c.name());
                }
                let client = self.client_of(*client);
                if !client.is_empty() {
                    body["client"] = json!(client);
                }
                ("unsubscribe".into(), body)
            }
            ApiOp::Disconnect { user, code, reason, whitelist } => {
                let mut body = json!({"user": user.name()});
                if *code > 0 {
                    body["disconnect"] = json!({"code": code, "reason": "r".repeat(*reason as usize)});
                }
                let w = self.client_of(*whitelist);
                if !w.is_empty() {
                    body["whitelist"] = json!([w]);
                }
                ("disconnect".into(), body)
            }
            ApiOp::Refresh { user, expire, expired, info, client } => {
                let mut body = json!({"user": user.name(), "expire_at": self.expire_at(*expire), "expired": expired});
                self.put_info(&mut body, "info", *info);
                let client = self.client_of(*client);
                if !client.is_empty() {
                    body["client"] = json!(client);
                }
                ("refresh".into(), body)
            }
            ApiOp::Channels(p) => ("channels".into(), json!({"pattern": p})),
            ApiOp::Info => ("info".into(), json!({})),
            ApiOp::Rpc => ("rpc".into(), json!({"method": "nope", "params": {}})),
            ApiOp::Batch { commands, parallel } => {
                let mut list = Vec::new();
                for c in commands {
                    let (method, body) = self.api_body(c, serials);
                    list.push(json!({ method: body }));
                }
                ("batch".into(), json!({"commands": list, "parallel": parallel}))
            }
            ApiOp::Garbage(g) => ("publish".into(), Value::String(g.clone())),
        }
    }

    fn api(&mut self, a: &ApiOp) {
        self.api_since.clear();
        let mut serials = Vec::new();
        let (method, body) = self.api_body(a, &mut serials);
        let text = match (&body, a) {
            (Value::String(g), ApiOp::Garbage(_)) => g.clone(),
            _ => body.to_string(),
        };
        let command = match api::parse(&method, text.as_bytes()) {
            Ok(Some(c)) => c,
            Ok(None) => violation!(self, "method {method} unknown"),
            Err(_) => return, // the host answers 400
        };
        stats::bump(API_CALLS);
        let id = ApiId(self.next_api);
        self.next_api += 1;
        self.api_pending.insert(id, (command.clone(), serials));
        self.node.handle_api(id, command, self.now);
        self.drain();
        if !self.split && self.api_pending.contains_key(&id) {
            violation!(self, "API call {id:?} not answered by a node with its broker in-process");
        }
    }

    fn api_answer(&mut self, id: ApiId, result: Result<Value, proto::Error>) {
        let Some((command, serials)) = self.api_pending.remove(&id) else {
            violation!(self, "API answer {id:?} to no call waiting: {result:?}");
        };
        self.api_result(&command, &result, &serials);
    }

    /// What an API answer says about publications, and cross-checks of `info`/`channels`.
    fn api_result(&mut self, command: &ApiCommand, result: &Result<Value, proto::Error>, serials: &[Serial]) {
        let Ok(v) = result else { return };
        // Counts are compared with what sessions know only when nothing is in flight.
        let settled = self.node.quiet() && !self.split;
        match command {
            ApiCommand::Publish(p) => {
                if let Some((serial, _)) = serials.first() {
                    self.published(*serial, &p.channel, v);
                }
            }
            ApiCommand::Broadcast(b) => {
                if let (Some((serial, _)), Some(responses)) = (serials.first(), v["responses"].as_array()) {
                    for (channel, r) in b.channels.iter().zip(responses) {
                        if let Some(res) = r.get("result") {
                            self.published(*serial, channel, res);
                        }
                    }
                }
            }
            ApiCommand::Batch(batch) => {
                let replies = v["replies"].as_array().cloned().unwrap_or_default();
                let mut serials = serials.iter();
                for (c, r) in batch.commands.iter().zip(replies) {
                    match c {
                        Some(ApiCommand::Publish(p)) => {
                            if let (Some((serial, _)), Some(res)) = (serials.next(), r.get("publish")) {
                                self.published(*serial, &p.channel, res);
                            }
                        }
                        Some(ApiCommand::Broadcast(b)) => {
                            let next = serials.next();
                            if let (Some((serial, _)), Some(responses)) = (next, r["broadcast"]["responses"].as_array())
                            {
                                for (channel, r) in b.channels.iter().zip(responses) {
                                    if let Some(res) = r.get("result") {
                                        self.published(*serial, channel, res);
                                    }
                                }
                            }
                        }
                        Some(ApiCommand::History(h)) => {
                            if let Some(res) = r.get("history") {
                                self.api_history(&h.channel, res);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ApiCommand::History(h) => self.api_history(&h.channel, v),
            ApiCommand::Info if settled => {
                let node = &v["nodes"][0];
                let connected = self.sessions.iter().filter(|r| r.live && r.connected).count() as u64;
                let channels = self.expected_channels();
                let subs: u64 = channels.values().sum();
                if node["num_clients"].as_u64() != Some(connected)
                    || node["num_channels"].as_u64() != Some(channels.len() as u64)
                    || node["num_subs"].as_u64() != Some(subs)
                {
                    violation!(self, "info says {node}, sessions know {connected} clients, channels {channels:?}");
                }
            }
            ApiCommand::Presence(p) if settled => {
                // Everyone subscribed where presence is on, and no one else.
                let got: BTreeSet<String> =
                    v["presence"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                let expected: BTreeSet<String> = self
                    .sessions
                    .iter()
                    .filter(|r| r.live && r.tracks.contains_key(&p.channel))
                    .map(|r| r.client.clone())
                    .collect();
                if got != expected {
                    violation!(self, "presence of {} is {got:?}, subscribers are {expected:?}", p.channel);
                }
            }
            ApiCommand::Channels(c) if settled && c.pattern.is_empty() => {
                let expected = self.expected_channels();
                let got: BTreeMap<String, u64> = v["channels"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, x)| (k.clone(), j_u64(x, "num_clients"))).collect())
                    .unwrap_or_default();
                if got != expected {
                    violation!(self, "channels says {got:?}, sessions know {expected:?}");
                }
            }
            _ => {}
        }
    }

    /// A publication answered OK with this result (`{offset, epoch}` when it has history).
    fn published(&mut self, serial: u64, channel: &str, result: &Value) {
        let offset = j_u64(result, "offset");
        let epoch = j_str(result, "epoch");
        let Some(meta) = self.pubs.get_mut(&serial) else { return };
        meta.ok = true;
        if offset > 0 {
            let key = (channel.to_owned(), epoch.clone(), offset);
            match self.offsets.get(&key) {
                Some(&other) if other != serial => {
                    // An idempotent publish answers with the first one's position.
                    if meta.must_deliver {
                        violation!(self, "{channel} offset {offset} in {epoch} named #{other} and #{serial}");
                    }
                    meta.ok = false;
                    return;
                }
                _ => {
                    self.offsets.insert(key, serial);
                }
            }
            self.epochs.insert(channel.to_owned(), epoch);
        }
        self.published_now.push(serial);
    }

    fn api_history(&mut self, channel: &str, v: &Value) {
        let epoch = j_str(v, "epoch");
        let pubs = v["publications"].as_array().cloned().unwrap_or_default();
        for p in pubs {
            let data = match p.get("b64data").and_then(Value::as_str) {
                Some(s) => base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default(),
                None => serde_json::to_vec(&p["data"]).unwrap_or_default(),
            };
            let npub = NPub { offset: j_u64(&p, "offset"), data, delta: false };
            self.history_pub(channel, &epoch, &npub);
        }
    }

    /// A publication from history: it must be one published to this channel, and its offset
    /// must name it alone.
    fn history_pub(&mut self, channel: &str, epoch: &str, p: &NPub) {
        let Some(serial) = marker(&p.data) else {
            violation!(self, "history of {channel} has a publication we never made: {p:?}")
        };
        match self.pubs.get(&serial) {
            Some(m) if m.channels.iter().any(|c| c == channel) => {}
            _ => violation!(self, "history of {channel} has #{serial}, not published there"),
        }
        if p.offset > 0 && !epoch.is_empty() {
            self.learn_offset(channel, epoch, p.offset, serial);
        }
    }

    fn learn_offset(&mut self, channel: &str, epoch: &str, offset: u64, serial: u64) {
        let key = (channel.to_owned(), epoch.to_owned(), offset);
        match self.offsets.get(&key) {
            Some(&other) if other != serial => {
                violation!(self, "{channel} offset {offset} in {epoch} is #{other} and #{serial}")
            }
            Some(_) => {}
            None => {
                self.offsets.insert(key, serial);
            }
        }
    }

    // ---- outputs

    fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            if self.trace {
                match &output {
                    Output::Send { session, data } | Output::Ping { session, data } => {
                        eprintln!("    {session} <- {:?}", String::from_utf8_lossy(data))
                    }
                    other => eprintln!("    {other:?}"),
                }
            }
            match output {
                Output::Send { session, data } => self.received(session, &data, false),
                Output::Ping { session, data } => self.received(session, &data, true),
                Output::Close { session, disconnect } => {
                    let i = self.live_index(session, "Close");
                    stats::bump(CLOSES);
                    if disconnect.code == 0 {
                        violation!(self, "{session} closed with code 0");
                    }
                    self.end(i);
                }
                Output::Broker(r) => violation!(self, "the node let a broker request out: {r:?}"),
                Output::Api { id, result } => self.api_answer(id, result),
                Output::Proxy(r) => violation!(self, "a proxy call with no proxy configured: {r:?}"),
                Output::ProxyFailed { .. } => violation!(self, "a proxy failure with no proxy configured"),
            }
        }
    }

    fn live_index(&self, session: SessionId, what: &str) -> usize {
        match self.index.get(&session) {
            Some(&i) if self.sessions[i].live => i,
            Some(_) => violation!(self, "{what} for {session} after it closed"),
            None => violation!(self, "{what} for {session}, which was never opened"),
        }
    }

    /// The session ended (closed by the hub or by the host).
    fn end(&mut self, i: usize) {
        let r = &mut self.sessions[i];
        r.live = false;
        r.tracks.clear();
        r.pending.clear();
        r.unanswered.clear();
    }

    fn received(&mut self, session: SessionId, data: &Bytes, ping: bool) {
        let i = self.live_index(session, if ping { "Ping" } else { "Send" });
        let transport = self.sessions[i].transport;
        let (events, event_id) = match decode(transport, data) {
            Ok(x) => x,
            Err(e) => violation!(self, "{session} ({transport:?}) got an undecodable write: {e}: {data:?}"),
        };
        if let Some(id) = event_id {
            self.sessions[i].last_event_id = Some(id);
        }
        stats::bump(if transport.wire().encoding == Encoding::Protobuf { PROTOBUF } else { JSON });
        if ping {
            if !matches!(events.as_slice(), [Ev::Ping]) {
                violation!(self, "{session} got a ping that is {events:?}");
            }
            let r = &mut self.sessions[i];
            r.owed_pongs += 1;
            r.ping_since.get_or_insert(self.now);
            return;
        }
        for ev in events {
            self.event(i, ev);
        }
    }

    fn forbidden(&self, i: usize, channel: &str) -> bool {
        if self.avoid.personal {
            return false;
        }
        let user = self.sessions[i].user.clone().unwrap_or_default();
        self.cfg.user_limited_users(channel).is_some_and(|users| !users.contains(&user.as_str()))
    }

    fn event(&mut self, i: usize, ev: Ev) {
        let session = self.sessions[i].id;
        let uni = self.sessions[i].transport.is_unidirectional();
        match ev {
            Ev::Ping => violation!(self, "{session} got a ping as a message"),
            Ev::Event => {}
            Ev::Reply { id, body } => {
                if uni {
                    violation!(self, "{session} is unidirectional but got reply {id}");
                }
                self.sessions[i].unanswered.remove(&id);
                let Some(pend) = self.sessions[i].pending.remove(&id) else {
                    violation!(self, "{session} got reply {id} to no command awaiting one: {body:?}");
                };
                self.reply(i, pend, body);
            }
            Ev::Push { channel, body } => match body {
                PBody::Pub(p) => self.publication(i, &channel, &p),
                PBody::Subscribe(r) => {
                    let since = self.api_since.get(&channel).cloned().flatten().filter(|_| !self.split);
                    if !self.sessions[i].connected {
                        violation!(self, "{session} got a subscribe push before it connected");
                    }
                    self.subscribed(i, &channel, &r, since, false);
                }
                PBody::Unsubscribe(code) => {
                    if !(2000..3000).contains(&code) {
                        violation!(self, "{session} unsubscribed from {channel} with code {code}");
                    }
                    if self.sessions[i].tracks.remove(&channel).is_none() && !self.avoid.unsub {
                        violation!(self, "{session} told it left {channel}, where it was not");
                    }
                }
                PBody::Connect(c) => {
                    if !uni {
                        violation!(self, "{session} got a connect push");
                    }
                    let Some(pend) = self.sessions[i].pending.remove(&0) else {
                        violation!(self, "{session}: connect push unasked")
                    };
                    self.connected(i, pend, c);
                }
                PBody::Disconnect(code) => {
                    if code == 0 {
                        violation!(self, "{session} told of a disconnect with code 0");
                    }
                }
                PBody::Refresh(ttl) => self.told_expiry(i, ttl),
                PBody::JoinLeave => {
                    if !self.sessions[i].tracks.contains_key(&channel) {
                        violation!(self, "{session} got join/leave of {channel}, where it is not");
                    }
                }
                PBody::Other => {}
            },
        }
    }

    fn reply(&mut self, i: usize, pend: Pend, body: RBody) {
        let session = self.sessions[i].id;
        if let RBody::Error(code) = body {
            if let Pend::Connect { .. } = pend {
                // Refused with an error reply: the next command disconnects.
            }
            if code == 0 {
                violation!(self, "{session}: error with code 0");
            }
            return;
        }
        match (pend, body) {
            (pend @ Pend::Connect { .. }, RBody::Connect(c)) => self.connected(i, pend, c),
            (Pend::Subscribe { ch, since, tokened }, RBody::Subscribe(r)) => {
                if !tokened && self.forbidden(i, &ch) {
                    violation!(self, "{session} (user {:?}) subscribed to {ch}", self.sessions[i].user);
                }
                self.subscribed(i, &ch, &r, since, false);
            }
            (Pend::Unsubscribe(ch), RBody::Unsubscribe) => {
                self.sessions[i].tracks.remove(&ch);
            }
            (Pend::Publish { ch, serial }, RBody::Publish) => {
                if self.forbidden(i, &ch) {
                    violation!(self, "{session} (user {:?}) published into {ch}", self.sessions[i].user);
                }
                if let Some(m) = self.pubs.get_mut(&serial) {
                    m.ok = true;
                }
                self.published_now.push(serial);
            }
            (Pend::History(ch), RBody::History { epoch, pubs }) => {
                if self.forbidden(i, &ch) {
                    violation!(self, "{session} (user {:?}) read the history of {ch}", self.sessions[i].user);
                }
                for p in &pubs {
                    self.history_pub(&ch, &epoch, p);
                }
            }
            (Pend::Presence(ch), RBody::Presence | RBody::PresenceStats) => {
                if self.forbidden(i, &ch) {
                    violation!(self, "{session} (user {:?}) read the presence of {ch}", self.sessions[i].user);
                }
            }
            (Pend::Refresh, RBody::Refresh(ttl)) => self.told_expiry(i, ttl),
            (Pend::Other | Pend::Refresh, _) => {}
            (pend, body) => violation!(self, "{session}: {body:?} answers {pend:?}"),
        }
    }

    fn connected(&mut self, i: usize, pend: Pend, c: NConnect) {
        let Pend::Connect { user, hints, granted, exp_ms } = pend else {
            violation!(self, "a connect answers {pend:?}")
        };
        let expected = exp_ms.map(|at| u32::try_from(self.now.until(Timestamp(at)).div_ceil(1000)).unwrap_or(u32::MAX));
        if c.ttl != expected {
            violation!(
                self,
                "{} connected with a token expiring in {expected:?} s but was told ttl {:?}",
                self.sessions[i].id,
                c.ttl
            );
        }
        self.told_expiry(i, c.ttl);
        let r = &mut self.sessions[i];
        if r.connected {
            violation!(self, "{} connected twice", r.id);
        }
        r.connected = true;
        stats::bump(CONNECTED);
        r.user = Some(user.clone());
        r.client = c.client.clone();
        let resuming = r.resuming;
        for (channel, sub) in &c.subs {
            // Channels the token grants are the backend's choice.
            if !granted.contains(channel) && self.forbidden(i, channel) {
                violation!(self, "user {user:?} got {channel} through connect subs");
            }
            let since = if resuming { None } else { hints.get(channel).cloned() };
            self.subscribed(i, channel, sub, since, resuming);
        }
    }

    /// The client learned when its connection expires (ttl in seconds, None: never).
    fn told_expiry(&mut self, i: usize, ttl: Option<u32>) {
        // A ttl of u32::MAX is saturated: the expiry is at least that far, maybe further.
        self.sessions[i].expires_told = ttl.filter(|t| *t < u32::MAX).map(|t| self.now.after_ms(u64::from(t) * 1000));
    }

    /// A subscription started (client subscribe, connect, API subscribe).
    fn subscribed(&mut self, i: usize, channel: &str, r: &NSub, since: Option<Position>, resuming: bool) {
        let session = self.sessions[i].id;
        if self.sessions[i].tracks.contains_key(channel) && !self.avoid.race {
            violation!(self, "{session} subscribed to {channel} twice");
        }
        let epoch = (!r.epoch.is_empty()).then(|| r.epoch.clone());
        if let Some(e) = &epoch {
            self.epochs.insert(channel.to_owned(), e.clone());
        }
        let track = Track {
            positioned: r.positioned,
            epoch: epoch.clone(),
            offset: r.offset,
            last_order: None,
            got: BTreeSet::new(),
            since_serial: self.serial,
            delta: r.delta,
            base: None,
        };
        self.sessions[i].tracks.insert(channel.to_owned(), track);
        stats::bump(SUBSCRIBED);
        if r.was_recovering {
            stats::bump(RECOVERING);
        }
        if r.recovered {
            stats::bump(RECOVERED);
        }
        if let Some(e) = &epoch {
            if r.positioned || r.recoverable {
                self.sessions[i].positions.insert(channel.to_owned(), (e.clone(), r.offset));
            }
        }
        if r.recovered && !r.was_recovering {
            violation!(self, "{session} {channel}: recovered without recovering: {r:?}");
        }
        let Some((since_epoch, since_offset)) = since.filter(|_| !resuming && r.was_recovering) else {
            for p in &r.pubs {
                self.publication(i, channel, p);
            }
            return;
        };
        // An empty epoch asks for "any epoch": the result names the stream's.
        let since_epoch = if since_epoch.is_empty() { r.epoch.clone() } else { since_epoch };
        if r.recovered {
            if r.epoch != since_epoch || r.offset != since_offset {
                violation!(
                    self,
                    "{session} {channel}: recovered from ({since_epoch}, {since_offset}) but the result says ({}, {})",
                    r.epoch,
                    r.offset
                );
            }
            for (k, p) in r.pubs.iter().enumerate() {
                if p.offset != since_offset + 1 + k as u64 {
                    violation!(
                        self,
                        "{session} {channel}: recovered offsets {:?} after {since_offset}",
                        r.pubs.iter().map(|p| p.offset).collect::<Vec<_>>()
                    );
                }
            }
            for p in &r.pubs {
                self.publication(i, channel, p);
            }
            // Whatever the node knew of the stream must be reached by the end of the step
            // (through the result, or the publications that follow it).
            let known_top = self.max_known(channel, &since_epoch);
            self.recovered_now.push((i, channel.to_owned(), since_epoch, known_top));
        } else {
            for p in &r.pubs {
                self.publication(i, channel, p);
            }
            if !r.pubs.is_empty() {
                violation!(self, "{session} {channel}: publications in a result that did not recover");
            }
            if r.epoch == since_epoch && since_offset <= r.offset {
                stats::bump(COVERED);
                if let Some(why) = self.covered(channel, &since_epoch, since_offset, r.offset) {
                    violation!(
                        self,
                        "{session} {channel}: recovery from {since_offset} to {} in {since_epoch} failed though {why}",
                        r.offset
                    );
                }
            }
        }
    }

    fn max_known(&self, channel: &str, epoch: &str) -> u64 {
        self.offsets
            .range((channel.to_owned(), epoch.to_owned(), 0)..=(channel.to_owned(), epoch.to_owned(), u64::MAX))
            .map(|((_, _, o), _)| *o)
            .max()
            .unwrap_or(0)
    }

    /// Whether history provably still covers (from, to] of this epoch; Some(why) if so.
    fn covered(&self, channel: &str, epoch: &str, from: u64, to: u64) -> Option<String> {
        let Ok(opts) = self.cfg.namespace_for(channel) else { return None };
        let missed = to - from;
        let limit = self.cfg.client_recovery_max_publication_limit;
        if missed > opts.history_size || missed > limit {
            return None;
        }
        let ttl = opts.history_ttl.as_millis() as u64;
        let removed = self.removed.get(channel).copied().unwrap_or(0);
        for offset in from + 1..=to {
            let serial = self.offsets.get(&(channel.to_owned(), epoch.to_owned(), offset))?;
            let meta = self.pubs.get(serial)?;
            if meta.at.after_ms(ttl) <= self.now || meta.step <= removed {
                return None;
            }
        }
        Some(format!("history ({} entries, ttl {ttl} ms) holds all {missed} of them", opts.history_size))
    }

    /// A publication arrived on `channel`.
    fn publication(&mut self, i: usize, channel: &str, p: &NPub) {
        let session = self.sessions[i].id;
        // A delta client gets data as the SDKs take it: rebuild the payload first.
        let decoded;
        let p = match self.sessions[i].tracks.get(channel).filter(|t| t.delta) {
            Some(track) => {
                let base = track.base.clone();
                let bytes = if self.sessions[i].transport.wire().encoding == Encoding::Json {
                    match serde_json::from_slice::<String>(&p.data) {
                        Ok(text) => text.into_bytes(),
                        Err(_) => violation!(
                            self,
                            "{session} has deltas on {channel} but got data that is no JSON string: {p:?}"
                        ),
                    }
                } else {
                    p.data.clone()
                };
                let full = if p.delta {
                    match base.as_deref().map(|b| shared::delta::fossil::apply(b, &bytes, 1 << 24)) {
                        Some(Ok(full)) => full,
                        other => {
                            violation!(self, "{session} on {channel}: a delta that does not apply ({other:?}): {p:?}")
                        }
                    }
                } else {
                    bytes
                };
                if let Some(track) = self.sessions[i].tracks.get_mut(channel) {
                    track.base = Some(full.clone());
                }
                stats::bump(if p.delta { DELTAS } else { WHOLE_FOR_DELTA });
                decoded = NPub { offset: p.offset, data: full, delta: false };
                &decoded
            }
            None if p.delta => violation!(self, "{session} got a delta on {channel} without asking: {p:?}"),
            None => p,
        };
        let Some(serial) = marker(&p.data) else {
            violation!(self, "{session} got a publication we never made on {channel}: {p:?}")
        };
        match self.pubs.get(&serial) {
            Some(m) if m.channels.iter().any(|c| c == channel) => {}
            _ => violation!(self, "{session} got #{serial} on {channel}, where it was not published"),
        }
        let Some(track) = self.sessions[i].tracks.get(channel).cloned() else {
            violation!(self, "{session} got #{serial} on {channel} without a subscription there");
        };
        let order = self.order_of(channel, serial);
        if track.got.contains(&serial) {
            violation!(self, "{session} got #{serial} on {channel} twice");
        }
        // A publication without offset (skip_history) is outside the stream: when one is
        // buffered during a recovering subscribe, the recovered publications go first (in the
        // subscribe result), as in Centrifugo, so its order against them is not kept.
        let exempt = p.offset == 0 && track.positioned;
        if track.last_order.is_some_and(|last| order <= last) && !exempt {
            violation!(self, "{session} got #{serial} on {channel} out of order (after {:?})", track.got);
        }
        let mut track = track;
        if p.offset > 0 {
            if track.positioned && p.offset != track.offset + 1 {
                violation!(
                    self,
                    "{session} positioned on {channel} at {} got offset {} (#{serial})",
                    track.offset,
                    p.offset
                );
            }
            if let Some(epoch) = track.epoch.clone() {
                if track.positioned {
                    self.learn_offset(channel, &epoch, p.offset, serial);
                    self.sessions[i].positions.insert(channel.to_owned(), (epoch, p.offset));
                }
            }
            track.offset = p.offset;
        }
        track.last_order = Some(order);
        track.got.insert(serial);
        stats::bump(RECEIVED);
        self.sessions[i].tracks.insert(channel.to_owned(), track);
    }

    // ---- checks

    fn expected_channels(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.sessions.iter().filter(|r| r.live) {
            for c in r.tracks.keys() {
                *out.entry(c.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    fn check_deliveries(&mut self) {
        let published = std::mem::take(&mut self.published_now);
        for serial in published {
            let Some(meta) = self.pubs.get(&serial) else { continue };
            if !meta.ok || !meta.must_deliver {
                continue;
            }
            for r in self.sessions.iter().filter(|r| r.live) {
                for c in &meta.channels {
                    if let Some(t) = r.tracks.get(c) {
                        stats::bump(DELIVERY);
                        if t.since_serial < serial && !t.got.contains(&serial) {
                            violation!(self, "{} subscribed to {c} never got #{serial} (got {:?})", r.id, t.got);
                        }
                    }
                }
            }
        }
    }

    fn check_recoveries(&mut self) {
        for (i, channel, epoch, top) in std::mem::take(&mut self.recovered_now) {
            let r = &self.sessions[i];
            let Some(t) = r.tracks.get(&channel) else { continue };
            if r.live && t.epoch.as_deref() == Some(epoch.as_str()) && t.offset < top {
                violation!(
                    self,
                    "{} recovered {channel} only to {} but {top} was published in {epoch}",
                    r.id,
                    t.offset
                );
            }
        }
    }

    fn check_step(&mut self) {
        let hub = self.node.hub();
        let live = self.sessions.iter().filter(|r| r.live).count();
        if hub.num_sessions() != live {
            violation!(self, "the hub holds {} sessions, {live} are open", hub.num_sessions());
        }
        self.check_deadlines();
        if !self.node.quiet() {
            return; // replies, deliveries and counts wait for the broker
        }
        self.check_deliveries();
        self.check_recoveries();
        if let Some(r) = self.sessions.iter().find(|r| r.live && !r.unanswered.is_empty()) {
            violation!(self, "{} still open but commands {:?} got no reply", r.id, r.unanswered);
        }
        if let Some(id) = self.api_pending.keys().next() {
            violation!(self, "API call {id:?} never answered");
        }
        let hub = self.node.hub();
        let users: BTreeSet<&str> = self
            .sessions
            .iter()
            .filter(|r| r.live && r.connected)
            .filter_map(|r| r.user.as_deref())
            .filter(|u| !u.is_empty())
            .collect();
        if hub.num_users() != users.len() {
            violation!(self, "the hub holds {} users, sessions know {users:?}", hub.num_users());
        }
        let channels = self.expected_channels();
        if hub.num_channels() != channels.len() {
            violation!(self, "the hub holds {} channels, sessions know {channels:?}", hub.num_channels());
        }
    }

    /// The host loses its memory, if it may: idle (no reply awaited) and holding only
    /// connected WebSockets, each with a stored snapshot.
    fn evict(&mut self) {
        let Some(_) = self.node.stored() else { return };
        let mut rounds = 0;
        while let Some((requests, events)) = self.node.replies_waiting() {
            self.deliver(requests, events);
            rounds += 1;
            if rounds > 10_000 {
                violation!(self, "hub and broker keep talking");
            }
        }
        let stored = self.node.stored().unwrap_or_default();
        let live: BTreeSet<SessionId> = self.sessions.iter().filter(|r| r.live).map(|r| r.id).collect();
        let websockets = self
            .sessions
            .iter()
            .filter(|r| r.live)
            .all(|r| r.connected && matches!(r.transport, Transport::Websocket(_) | Transport::UniWebsocket));
        if !websockets || stored != live {
            if websockets {
                violation!(self, "the host stored snapshots of {stored:?}, open are {live:?}");
            }
            return; // streams keep a node object in memory
        }
        stats::bump(EVICTIONS);
        for _ in 0..stored.len() {
            stats::bump(RESTORED);
        }
        self.node.evict(&self.cfg, self.now);
        self.drain();
        if self.avoid.restore {
            self.flush();
        }
    }

    /// Carries requests and events; notes the order the broker took publications in.
    fn deliver(&mut self, requests: usize, events: usize) {
        for (channel, data) in self.node.deliver(requests, events, self.now) {
            if let Some(serial) = marker(&data) {
                self.next_order += 1;
                self.order.insert((channel, serial), self.next_order);
            }
        }
        self.drain();
    }

    /// Where a publication stands in its channel's order: the broker's order when it is at
    /// a distance; with the node, the order the harness published in.
    fn order_of(&self, channel: &str, serial: u64) -> u64 {
        if !self.split {
            return serial;
        }
        match self.order.get(&(channel.to_owned(), serial)) {
            Some(o) => *o,
            None => violation!(self, "#{serial} arrived on {channel} before the broker took it"),
        }
    }

    /// Carries everything between hub and broker until nothing is left.
    fn flush(&mut self) {
        let mut rounds = 0u32;
        while !self.node.quiet() {
            self.deliver(usize::MAX, usize::MAX);
            rounds += 1;
            if rounds > 10_000 {
                violation!(self, "hub and broker keep talking");
            }
        }
    }

    /// Sessions past a deadline they were told of (or that the protocol sets) are gone: the
    /// timers fired.
    fn check_deadlines(&self) {
        let c = &self.cfg;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        for r in self.sessions.iter().filter(|r| r.live) {
            if let Some(at) = r.expires_told.filter(|_| r.connected) {
                if at.after_ms(ms(c.client_expired_close_delay)) <= self.now {
                    violation!(
                        self,
                        "{} was told it expires at +{} ms; still open at +{} ms",
                        r.id,
                        Timestamp(T0).until(at),
                        Timestamp(T0).until(self.now)
                    );
                }
            }
            let websocket = matches!(r.transport, Transport::Websocket(_) | Transport::UniWebsocket);
            // A connect waiting for the broker is no stale session.
            let connecting = r.pending.values().any(|p| matches!(p, Pend::Connect { .. }));
            if websocket
                && !r.connected
                && !connecting
                && r.opened_at.after_ms(ms(c.client_stale_close_delay)) <= self.now
            {
                violation!(
                    self,
                    "{} opened at +{} ms never connected, still open",
                    r.id,
                    Timestamp(T0).until(r.opened_at)
                );
            }
            if let Some(since) = r.ping_since.filter(|_| !r.transport.is_unidirectional()) {
                if since.after_ms(ms(c.pong_timeout)) <= self.now {
                    violation!(
                        self,
                        "{} left a ping of +{} ms unanswered, still open",
                        r.id,
                        Timestamp(T0).until(since)
                    );
                }
            }
        }
    }

    /// Every session closes; then the hub must hold nothing, and once the clock has run out
    /// the broker neither.
    fn finish(&mut self) {
        self.step += 1;
        self.context = "settling".into();
        self.flush();
        self.check_step();
        self.context = "closing every session".into();
        for i in 0..self.sessions.len() {
            if self.sessions[i].live {
                let id = self.sessions[i].id;
                self.end(i);
                self.node.handle_closed(id, self.now);
                self.drain();
            }
        }
        self.flush();
        let hub = self.node.hub();
        if hub.num_sessions() != 0 || hub.num_users() != 0 || hub.num_channels() != 0 {
            violation!(
                self,
                "all closed, yet the hub holds {} sessions, {} users, {} channels",
                hub.num_sessions(),
                hub.num_users(),
                hub.num_channels()
            );
        }
        if !self.avoid.timers {
            if let Some(at) = hub.poll_timeout() {
                violation!(
                    self,
                    "all sessions closed, yet the hub keeps a timer for {} ms from now",
                    self.now.until(at)
                );
            }
        }
        self.context = "running the clock out".into();
        let mut steps = 0u32;
        while let Some(at) = self.node.poll_timeout() {
            self.now = self.now.max(at);
            self.node.handle_timeout(self.now);
            self.drain();
            self.flush();
            steps += 1;
            if steps > 100_000 {
                violation!(self, "deadlines keep coming with no session open");
            }
        }
        for c in CHANNELS {
            if let Some(p) = self.node.broker().position(c).filter(|_| !self.avoid.broker) {
                violation!(self, "the broker keeps {c} at {p:?} after every deadline passed");
            }
            if self.node.broker().nodes(c).next().is_some() {
                violation!(self, "the broker still sends {c} to a node");
            }
        }
    }
}

// =============================================================================================
// Properties

fn run_case(k: &Knobs, ops: &[Op], a: Avoid) {
    run_case_with(k, ops, a, None);
}

fn run_case_with(k: &Knobs, ops: &[Op], a: Avoid, split: Option<bool>) {
    stats::bump(CASES);
    let mut h = Harness::new(k, a, split);
    for op in ops {
        h.run(op);
    }
    h.finish();
}

fn cases() -> ProptestConfig {
    // `PROPTEST_CASES` (read by proptest) sets the number of cases; 256 by default.
    // Failures are saved in shared/proptest-regressions/props.txt and replayed first.
    let persistence = proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/props.txt");
    ProptestConfig {
        max_shrink_iters: 20_000,
        failure_persistence: Some(Box::new(persistence)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    /// Everything at once, long runs.
    #[test]
    fn interleavings_keep_every_invariant(k in knobs(), ops in prop::collection::vec(op(avoid()), 1..48)) {
        run_case(&k, &ops, avoid());
        stats::print("interleavings");
    }

    /// The hub with its broker at a distance (as at the edge): broker requests and events
    /// wait in queues while clients and the API go on; the same invariants hold once they
    /// are carried.
    #[test]
    fn broker_at_a_distance(
        k in knobs(),
        pings in any::<bool>(),
        ops in prop::collection::vec(prop_oneof![4 => op(avoid()), 4 => recovery_op(avoid()), 5 => carry()], 1..64),
    ) {
        run_case_with(&k, &ops, avoid(), Some(pings));
        stats::print("split");
    }

    /// Hibernation (as at the edge): only WebSockets, and the host keeps losing its memory
    /// while publications are on their way; restored sessions notice nothing (each
    /// publication once and in order, nothing missed while history covers it).
    #[test]
    fn hibernation(k in knobs(), ops in prop::collection::vec(hibernate_op(avoid()), 1..64)) {
        run_case_with(&k, &ops, avoid(), Some(false));
        stats::print("hibernation");
    }

    /// Few sessions, many publications, subscribes with recovery and clock moves: the
    /// delivery and recovery invariants get exercised hard.
    #[test]
    fn publications_and_recovery(k in knobs(), ops in prop::collection::vec(recovery_op(avoid()), 1..60)) {
        run_case(&k, &ops, avoid());
        stats::print("recovery");
    }
}

/// Carrying requests and events between a hub and its distant broker.
fn carry() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, 0u8..4).prop_map(|(requests, events)| Op::Deliver { requests, events }),
        1 => Just(Op::Flush),
        2 => Just(Op::Evict),
    ]
}

/// WebSocket sessions, publications, subscriptions, and evictions with events in flight.
fn hibernate_op(a: Avoid) -> impl Strategy<Value = Op> {
    let few = || (0u8..4).prop_map(Sel);
    let chans = || prop::sample::select(vec![Ch(0), Ch(6), Ch(7), Ch(8), Ch(4), Ch(1)]);
    let recs = || prop_oneof![3 => Just(Rec::Own), 1 => Just(Rec::No)];
    prop_oneof![
        3 => (prop::sample::select(vec![Tr::Ws, Tr::WsProto, Tr::UniWs]), user(), prop::collection::vec((chans(), recs()), 0..3))
            .prop_map(|(tr, u, subs)| Op::Open {
                tr, auth: Auth::Token { user: Some(u), exp: Exp::Never, info: Info::None, channels: vec![] }, subs, last_event_id: None
            }),
        8 => (chans(), data(a), prop::bool::weighted(0.1)).prop_map(|(ch, data, skip_history)| Op::Api(ApiOp::Publish { ch, data, b64: false, skip_history, key: None })),
        5 => (few(), chans(), recs(), any::<bool>(), any::<bool>()).prop_map(|(s, ch, rec, positioned, recoverable)| Op::Frame {
            s, cmds: vec![Cmd::Subscribe { ch, rec, positioned, recoverable, join_leave: true, reject: false, tok: SubTok::None, delta: false }], tail: Tail::None
        }),
        2 => (few(), chans()).prop_map(|(s, ch)| Op::Frame { s, cmds: vec![Cmd::Unsubscribe(ch)], tail: Tail::None }),
        2 => (few(), chans(), data(a)).prop_map(|(s, ch, d)| Op::Frame { s, cmds: vec![Cmd::Publish(ch, d)], tail: Tail::None }),
        1 => (user(), chans(), recs()).prop_map(|(user, ch, since)| Op::Api(ApiOp::Subscribe {
            user, ch, expire: ExpireAt::Zero, since, info: Info::None, data: Info::None, client: None, force_recovery: Some(true)
        })),
        1 => (user(), chans()).prop_map(|(user, ch)| Op::Api(ApiOp::Unsubscribe { user, ch: Some(ch), client: None })),
        2 => prop_oneof![0u64..5_000, 5_000u64..200_000].prop_map(|ms| Op::Advance { ms, jump: false, pongs: false }),
        1 => few().prop_map(Op::Close),
        5 => (0u8..4, 0u8..4).prop_map(|(requests, events)| Op::Deliver { requests, events }),
        1 => Just(Op::Flush),
        4 => Just(Op::Evict),
    ]
}

/// Ops weighted towards publish / subscribe-with-recovery / unsubscribe / reconnect.
fn recovery_op(a: Avoid) -> impl Strategy<Value = Op> {
    let few = || (0u8..3).prop_map(Sel);
    let chans = || prop::sample::select(vec![Ch(0), Ch(6), Ch(7), Ch(8), Ch(4)]);
    prop_oneof![
        3 => (prop::sample::select(vec![Tr::Ws, Tr::WsProto, Tr::UniHttp, Tr::UniSse, Tr::HttpStream]), user(),
              prop::collection::vec((chans(), prop_oneof![Just(Rec::Own), Just(Rec::No)]), 0..2), prop::option::weighted(0.3, prop::option::of(few())))
            .prop_map(|(tr, u, subs, last_event_id)| Op::Open {
                tr, auth: Auth::Token { user: Some(u), exp: Exp::Never, info: Info::None, channels: vec![] }, subs, last_event_id
            }),
        8 => (chans(), data(a), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(ch, data, b64, skip_history)| Op::Api(ApiOp::Publish { ch, data, b64, skip_history, key: None })),
        6 => (few(), chans(), prop_oneof![3 => Just(Rec::Own), 1 => few().prop_map(Rec::Of), 1 => Just(Rec::No)], any::<bool>(), any::<bool>())
            .prop_map(|(s, ch, rec, positioned, recoverable)| Op::Frame {
                s, cmds: vec![Cmd::Subscribe { ch, rec, positioned, recoverable, join_leave: false, reject: false, tok: SubTok::None, delta: false }], tail: Tail::None
            }),
        3 => (few(), chans()).prop_map(|(s, ch)| Op::Frame { s, cmds: vec![Cmd::Unsubscribe(ch)], tail: Tail::None }),
        3 => (few(), chans(), data(a)).prop_map(|(s, ch, d)| Op::Frame { s, cmds: vec![Cmd::Publish(ch, d)], tail: Tail::None }),
        2 => (few(), chans()).prop_map(|(s, ch)| Op::Frame { s, cmds: vec![Cmd::History { ch, limit: -1, since: Rec::No, reverse: false }], tail: Tail::None }),
        2 => (user(), chans(), prop_oneof![Just(Rec::Own), Just(Rec::No)]).prop_map(|(user, ch, since)| Op::Api(ApiOp::Subscribe {
                user, ch, expire: ExpireAt::Zero, since, info: Info::None, data: Info::None, client: None, force_recovery: Some(true)
            })),
        1 => (user(), chans()).prop_map(|(user, ch)| Op::Api(ApiOp::Unsubscribe { user, ch: Some(ch), client: None })),
        1 => chans().prop_map(|ch| Op::Api(ApiOp::HistoryRemove(ch))),
        3 => prop_oneof![0u64..5_000, 5_000u64..200_000].prop_map(|ms| Op::Advance { ms, jump: false, pongs: true }),
        2 => few().prop_map(Op::Close),
    ]
}

/// Overflow checks must be on wherever these properties run (the `test` and `dev` profiles
/// have them by default; the `props` profile turns them on for optimized long runs).
#[test]
fn overflow_checks_are_on() {
    let big = std::hint::black_box(u64::MAX);
    let overflowed = std::panic::catch_unwind(|| big + std::hint::black_box(1));
    assert!(overflowed.is_err(), "build these tests with overflow-checks = true");
}

/// The smallest inputs the properties found, kept as plain tests: each names one bug.
mod found {
    use super::*;

    fn knobs() -> Knobs {
        Knobs { fast_pings: false, single_connection: false, small_limits: false, anonymous: false }
    }

    fn run(ops: Vec<Op>) {
        run_case(&knobs(), &ops, Avoid::default());
    }

    fn token(user: &str) -> Auth {
        let user = USERS.iter().position(|u| *u == user).map(|i| U(i as u8));
        Auth::Token { user, exp: Exp::Never, info: Info::None, channels: vec![] }
    }

    fn ch(name: &str) -> Ch {
        Ch(CHANNELS.iter().position(|c| *c == name).expect("a channel of the set") as u8)
    }

    fn open(tr: Tr, auth: Auth, subs: &[&str]) -> Op {
        Op::Open { tr, auth, subs: subs.iter().map(|c| (ch(c), Rec::No)).collect(), last_event_id: None }
    }

    fn frame(cmds: Vec<Cmd>) -> Op {
        Op::Frame { s: Sel(0), cmds, tail: Tail::None }
    }

    fn publish(channel: &str, data: Data) -> Op {
        Op::Api(ApiOp::Publish { ch: ch(channel), data, b64: false, skip_history: false, key: None })
    }

    /// Fossil deltas through every core shape (node, broker at a distance, hibernation), on
    /// JSON and Protobuf WebSockets: live publications, then a recovery from the client's own
    /// position. The harness rebuilds each payload from the deltas as the SDKs do.
    #[test]
    fn delta_clients_rebuild_every_payload() {
        let sub = |rec| Cmd::Subscribe {
            ch: ch("chat:a"),
            rec,
            positioned: false,
            recoverable: false,
            join_leave: false,
            reject: false,
            tok: SubTok::None,
            delta: true,
        };
        for tr in [Tr::Ws, Tr::WsProto] {
            for split in [None, Some(true), Some(false)] {
                let before = stats::COUNTS[DELTAS].load(std::sync::atomic::Ordering::Relaxed);
                let mut ops = vec![open(tr, token("u1"), &[]), frame(vec![sub(Rec::No)]), Op::Flush];
                ops.extend((0..4).map(|_| publish("chat:a", Data::JsonObject)));
                ops.extend([Op::Flush, frame(vec![Cmd::Unsubscribe(ch("chat:a"))]), Op::Flush]);
                ops.extend((0..3).map(|_| publish("chat:a", Data::JsonObject)));
                ops.extend([frame(vec![sub(Rec::Own)]), Op::Flush, publish("chat:a", Data::JsonObject), Op::Flush]);
                run_case_with(&knobs(), &ops, Avoid::default(), split);
                let after = stats::COUNTS[DELTAS].load(std::sync::atomic::Ordering::Relaxed);
                assert!(after >= before + 3, "{tr:?} {split:?}: deltas applied {before} -> {after}");
            }
        }
    }

    /// A binary publication in history, read by a JSON client: `message encodes` panic.
    #[test]
    fn binary_history_to_a_json_client() {
        run(vec![
            publish("rec:x", Data::Binary),
            open(Tr::HttpStream, token("u1"), &[]),
            frame(vec![Cmd::History { ch: ch("rec:x"), limit: -1, since: Rec::No, reverse: false }]),
        ]);
    }

    /// Binary connection info (`b64info`) in a join push to a JSON client: `push encodes` panic.
    #[test]
    fn binary_conn_info_in_a_join_push() {
        let auth = Auth::Token { user: Some(U(0)), exp: Exp::Never, info: Info::Binary, channels: vec![] };
        run(vec![open(Tr::HttpStream, auth, &["chat:a"])]);
    }

    /// User u2 reads the presence of u1's personal channel.
    #[test]
    fn personal_channel_presence_from_another_user() {
        run(vec![open(Tr::Ws, token("u2"), &[]), frame(vec![Cmd::PresenceStats(ch("#u1"))])]);
    }

    /// User u2 publishes into u1's personal channel, and reads its history.
    #[test]
    fn personal_channel_publish_and_history_from_another_user() {
        run(vec![open(Tr::Ws, token("u2"), &[]), frame(vec![Cmd::Publish(ch("#u1"), Data::JsonObject)])]);
        run(vec![
            open(Tr::Ws, token("u2"), &[]),
            frame(vec![Cmd::History { ch: ch("#u1"), limit: -1, since: Rec::No, reverse: false }]),
        ]);
    }

    /// API refresh with `expire_at` = i64::MAX: `attempt to multiply with overflow`.
    #[test]
    fn api_refresh_expire_at_overflows() {
        let refresh = ApiOp::Refresh {
            user: U(0),
            expire: ExpireAt::Huge(i64::MAX),
            expired: false,
            info: Info::None,
            client: None,
        };
        run(vec![Op::Api(refresh)]);
    }

    /// API subscribe with `expire_at` = i64::MAX: the same overflow.
    #[test]
    fn api_subscribe_expire_at_overflows() {
        let subscribe = ApiOp::Subscribe {
            user: U(0),
            ch: ch("news"),
            expire: ExpireAt::Huge(i64::MAX),
            since: Rec::No,
            info: Info::None,
            data: Info::None,
            client: None,
            force_recovery: None,
        };
        run(vec![open(Tr::Ws, token("u1"), &[]), Op::Api(subscribe)]);
    }

    /// A connection whose token expires in 1e12 s is told a ttl cut to 32 bits (`as u32`).
    #[test]
    fn far_expiry_is_told_as_a_wrapped_ttl() {
        let auth = Auth::Token { user: Some(U(0)), exp: Exp::Far, info: Info::None, channels: vec![] };
        run(vec![open(Tr::Ws, auth, &[])]);
    }

    /// API refresh 2^40 s ahead: the refresh push's ttl wraps; the client hears ~82 years.
    #[test]
    fn api_refresh_far_expiry_is_told_as_a_wrapped_ttl() {
        let refresh = ApiOp::Refresh {
            user: U(1),
            expire: ExpireAt::Huge(1 << 40),
            expired: false,
            info: Info::None,
            client: None,
        };
        run(vec![
            open(Tr::Ws, token("u2"), &[]),
            Op::Api(refresh),
            Op::Advance { ms: 100 * 365 * 86_400_000, jump: true, pongs: false },
        ]);
    }

    /// A WebSocket session that connected and closed leaves its stale and ping timers behind.
    #[test]
    fn closed_session_leaves_timers() {
        run(vec![open(Tr::Ws, token("u1"), &[])]);
    }

    /// A subscription to a channel with history creates a stream that nothing ever drops
    /// (no deadline when nothing is published).
    #[test]
    fn broker_keeps_a_stream_nobody_published_to() {
        let auth = Auth::Token { user: None, exp: Exp::Never, info: Info::None, channels: vec![ch("rec:x")] };
        // (Past the timers a closed session leaves, found by `closed_session_leaves_timers`.)
        run_case(&knobs(), &[open(Tr::Ws, auth, &[])], Avoid { timers: true, ..Avoid::default() });
    }

    /// With the broker at a distance: a client subscribe waits for the broker; meanwhile the
    /// API unsubscribes the user from everything and subscribes it to the same channel again.
    /// The broker's answer to the first subscribe then answers the second (replies are
    /// matched by channel name): the client gets a `subscribe` reply *and* a `subscribe`
    /// push for one channel.
    #[test]
    fn late_broker_answer_completes_a_replaced_subscription() {
        let subscribe = ApiOp::Subscribe {
            user: U(1),
            ch: ch("rec:x"),
            expire: ExpireAt::Zero,
            since: Rec::No,
            info: Info::None,
            data: Info::None,
            client: None,
            force_recovery: Some(true),
        };
        let ops = vec![
            open(Tr::Ws, token("u2"), &[]),
            frame(vec![Cmd::Subscribe {
                ch: ch("rec:x"),
                rec: Rec::No,
                positioned: false,
                recoverable: false,
                join_leave: false,
                reject: false,
                tok: SubTok::None,
                delta: false,
            }]),
            Op::Deliver { requests: 1, events: 1 },
            Op::Api(ApiOp::Unsubscribe { user: U(1), ch: None, client: None }),
            Op::Api(subscribe),
            Op::Flush,
        ];
        // The unsubscribe push for the waiting subscription is `unsubscribe_push_…` below.
        run_case_with(&knobs(), &ops, Avoid { unsub: true, ..Avoid::default() }, Some(false));
    }

    /// With the broker at a distance: a publication without offset (skip_history) reaches a
    /// subscription that waits for its recovering subscribe; a publication with history
    /// follows. The subscribe's answer recovers the later one, then the buffer delivers the
    /// earlier one. Accepted (Centrifugo does the same): publications without offset are
    /// outside the stream; the case stays as a check that nothing else goes wrong there.
    #[test]
    fn unpositioned_publication_buffered_during_recovery_comes_late() {
        let ops = vec![
            open(Tr::Ws, token("u1"), &["chat:b"]),
            open(Tr::Ws, token("u2"), &[]),
            Op::Flush,
            // Two publications travel, the first without history; then the second client
            // subscribes from the first one's position.
            Op::Api(ApiOp::Publish {
                ch: ch("chat:b"),
                data: Data::JsonObject,
                b64: false,
                skip_history: true,
                key: None,
            }),
            publish("chat:b", Data::JsonObject),
            Op::Frame {
                s: Sel(1),
                cmds: vec![Cmd::Subscribe {
                    ch: ch("chat:b"),
                    rec: Rec::Of(Sel(0)),
                    positioned: false,
                    recoverable: false,
                    join_leave: false,
                    reject: false,
                    tok: SubTok::None,
                    delta: false,
                }],
                tail: Tail::None,
            },
            Op::Flush,
        ];
        run_case_with(&knobs(), &ops, Avoid { timers: true, ..Avoid::default() }, Some(true));
    }

    /// With the broker at a distance: a channel's stream expires (meta TTL) and is made anew
    /// with another epoch while a publication of the old one is still on its way to the
    /// node. A subscription made in the new epoch buffers that old publication and delivers
    /// it after its subscribe result (`deliver_to` takes the publication's epoch without
    /// comparing it): the client gets a publication of another epoch, whose offset collides
    /// with the new stream's.
    #[test]
    fn publication_of_an_expired_epoch_reaches_a_subscription_of_the_new_one() {
        let anon = |chs: Vec<Ch>| Auth::Token { user: None, exp: Exp::Never, info: Info::None, channels: chs };
        let ops = vec![
            open(Tr::Ws, anon(vec![ch("chat:b")]), &[]),
            publish("chat:b", Data::JsonObject),
            // The broker takes both; their answers and the publication stay on the way.
            Op::Deliver { requests: 2, events: 0 },
            // chat:b's meta TTL (600 s) runs out: the stream is gone.
            Op::Advance { ms: 600_000, jump: false, pongs: false },
            open(Tr::Ws, anon(vec![ch("chat:b")]), &[]),
            publish("chat:b", Data::JsonObject),
            Op::Flush,
        ];
        // (Past the timers a closed session leaves, found by `closed_session_leaves_timers`.)
        run_case_with(&knobs(), &ops, Avoid { timers: true, ..Avoid::default() }, Some(false));
    }

    /// Hibernation: a session is restored (its subscriptions re-made, waiting for the broker)
    /// and the API unsubscribes it meanwhile. The subscription goes without an `unsubscribe`
    /// push, as if the client had never heard of it, though it had (in the earlier life):
    /// the client believes it is still subscribed and hears nothing more.
    #[test]
    fn restored_subscription_removed_by_the_api_goes_untold() {
        let ops = vec![
            open(Tr::Ws, token("u3"), &["chat:a"]),
            Op::Flush,
            Op::Evict,
            Op::Api(ApiOp::Unsubscribe { user: U(2), ch: Some(ch("chat:a")), client: None }),
            Op::Flush,
        ];
        run_case_with(&knobs(), &ops, Avoid::default(), Some(false));
    }

    /// A binary publication waits in the buffer of a JSON client's subscription that is
    /// being made (here: a parallel API batch publishes, then subscribes the user). When the
    /// subscription goes live, delivering the buffer disconnects the client (3506), and
    /// `activate` goes on as if it were still there: it adds the gone client to the channel's
    /// presence (after the removal its disconnect asked for) and announces its join (after
    /// its leave). The channel's presence keeps a client that left.
    #[test]
    fn client_disconnected_while_going_live_stays_in_presence() {
        let anon = Auth::Token { user: None, exp: Exp::Never, info: Info::None, channels: vec![ch("news")] };
        let publish = ApiOp::Publish { ch: ch("news"), data: Data::Binary, b64: false, skip_history: true, key: None };
        let subscribe = ApiOp::Subscribe {
            user: U(1),
            ch: ch("news"),
            expire: ExpireAt::Zero,
            since: Rec::No,
            info: Info::None,
            data: Info::None,
            client: None,
            force_recovery: None,
        };
        run(vec![
            open(Tr::Ws, anon, &[]),
            open(Tr::Sse, token("u2"), &[]),
            Op::Api(ApiOp::Batch { commands: vec![publish, subscribe], parallel: true }),
            Op::Api(ApiOp::Presence(ch("news"))),
        ]);
    }

    /// A sequential API batch subscribes a user, then unsubscribes it from everything: the
    /// client gets an `unsubscribe` push for a subscription it was never told of (it was still
    /// waiting for the broker).
    #[test]
    fn unsubscribe_push_for_a_subscription_never_announced() {
        let subscribe = ApiOp::Subscribe {
            user: U(0),
            ch: ch("news"),
            expire: ExpireAt::Zero,
            since: Rec::No,
            info: Info::None,
            data: Info::None,
            client: None,
            force_recovery: None,
        };
        let unsubscribe = ApiOp::Unsubscribe { user: U(0), ch: None, client: None };
        run(vec![
            open(Tr::Ws, token("u1"), &[]),
            Op::Api(ApiOp::Batch { commands: vec![subscribe, unsubscribe], parallel: false }),
        ]);
    }
}
