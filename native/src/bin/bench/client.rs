//! Subscribers: one small task per connection, hand-written HTTP/1.1 and WebSocket, and a
//! byte scanner instead of a parser so a client costs a socket, a 512-byte buffer and a few
//! words of state.
//!
//! Publications carry `#<seq>@<sent µs>;` inside their data; the scanner finds that mark in
//! whatever framing the transport wraps around it (SSE `data:` lines, HTTP chunks, WebSocket
//! frames). `{"connect"` marks the connect push.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::OwnedSemaphorePermit;

use crate::hist::Histogram;

/// Named as the server names its endpoints.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    UniSse,
    UniHttpStream,
    UniWebsocket,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::UniSse => "uni_sse",
            Transport::UniHttpStream => "uni_http_stream",
            Transport::UniWebsocket => "uni_websocket",
        }
    }
}

/// Counters every client of a phase adds to.
pub struct Stats {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Streams that ended after the connect push (the server closed them).
    pub ended: AtomicU64,
    pub deliveries: AtomicU64,
    pub unique: AtomicU64,
    pub duplicates: AtomicU64,
    /// Publications of a channel the client is not subscribed to.
    pub unexpected: AtomicU64,
    pub last_delivery_us: AtomicU64,
    pub latency: Histogram,
    pub first_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn new() -> Arc<Self> {
        Arc::new(Stats {
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            latency: Histogram::new(),
            first_error: Mutex::new(None),
        })
    }

    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(why);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap().clone()
    }
}

/// Which publications a client should see: sequence numbers `seq < total` with
/// `seq % modulo == index`.
#[derive(Clone, Copy)]
pub struct Expect {
    pub modulo: u32,
    pub index: u32,
    pub total: u32,
}

/// The bytes a client writes first: its HTTP request (and, on WebSocket, the connect frame).
pub fn opening(transport: Transport, server: SocketAddr, token: &str, channel: &str) -> Vec<u8> {
    let body = format!(r#"{{"token":"{token}","subs":{{"{channel}":{{}}}}}}"#);
    match transport {
        Transport::UniHttpStream => format!(
            "POST /connection/uni_http_stream HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
        Transport::UniSse => {
            format!("GET /connection/uni_sse?cf_connect={} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\n\r\n", percent(&body)).into_bytes()
        }
        Transport::UniWebsocket => {
            let mut out = format!(
                "GET /connection/uni_websocket HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .into_bytes();
            masked_text_frame(body.as_bytes(), &mut out);
            out
        }
    }
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client frame must be masked (RFC 6455 §5.3); the key needs no randomness here.
fn masked_text_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x5a, 0x17, 0xc3, 0x9e];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
}

/// Source address for the `n`-th client of the run: 20,000 clients per address, from
/// 127.0.0.2 upwards (each run starts at a block picked by its pid), so no address runs out
/// of ephemeral ports.
pub fn source(n: u64) -> Ipv4Addr {
    let block = n / 20_000 + u64::from(std::process::id() % 100) * 10;
    Ipv4Addr::new(127, 0, (block / 250) as u8, (2 + block % 250) as u8)
}

pub struct Client {
    pub server: SocketAddr,
    pub source: Ipv4Addr,
    pub opening: Vec<u8>,
    pub expect: Option<Expect>,
}

impl Client {
    /// Connects, sends the opening, then reads until the server closes. `permit` is released
    /// when the connect push arrives (it bounds the connects in flight).
    pub async fn run(self, stats: Arc<Stats>, permit: OwnedSemaphorePermit) {
        let mut permit = Some(permit);
        let bound = TcpSocket::new_v4().and_then(|s| {
            // IP_BIND_ADDRESS_NO_PORT: the port is picked at connect time by the whole
            // 4-tuple; bind(port 0) alone searches the bind table and gets slow with
            // thousands of ports taken.
            let yes: libc::c_int = 1;
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&yes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            // Linger 0: closing sends a reset and leaves no TIME_WAIT socket holding the
            // port. (Deprecated because a non-zero linger blocks on drop; zero never does.)
            #[allow(deprecated)]
            s.set_linger(Some(std::time::Duration::ZERO))?;
            s.bind(SocketAddr::new(self.source.into(), 0))?;
            Ok(s)
        });
        let socket = match bound {
            Ok(s) => s,
            Err(e) => return stats.fail(format!("socket/bind {}: {e}", self.source)),
        };
        let mut stream = match socket.connect(self.server).await {
            Ok(s) => s,
            Err(e) => return stats.fail(format!("connect from {}: {e}", self.source)),
        };
        if let Err(e) = stream.write_all(&self.opening).await {
            return stats.fail(format!("write: {e}"));
        }
        drop(self.opening);
        let mut scanner = Scanner::new(self.expect);
        let mut buf = [0u8; 512];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let found = scanner.feed(&buf[..n]);
            if found.connected {
                stats.connected.fetch_add(1, Relaxed);
                permit = None;
            }
            if found.deliveries > 0 {
                let now = now_us();
                for &sent in &found.sent[..found.deliveries.min(found.sent.len())] {
                    stats.latency.record(now.saturating_sub(sent));
                }
                stats.deliveries.fetch_add(found.deliveries as u64, Relaxed);
                stats.unique.fetch_add(found.unique, Relaxed);
                stats.duplicates.fetch_add(found.duplicates, Relaxed);
                stats.unexpected.fetch_add(found.unexpected, Relaxed);
                stats.last_delivery_us.fetch_max(now, Relaxed);
            }
        }
        if scanner.connected {
            stats.ended.fetch_add(1, Relaxed);
        } else {
            let _ = permit.take();
            stats.fail("stream ended before the connect push".into());
        }
    }
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[derive(Default)]
struct Found {
    connected: bool,
    deliveries: usize,
    /// Send times of the deliveries in this read (all of them unless a read held more than 32).
    sent: Vec<u64>,
    unique: u64,
    duplicates: u64,
    unexpected: u64,
}

const CONNECT_MARK: &[u8] = b"{\"connect\"";

struct Scanner {
    connected: bool,
    connect_matched: u8,
    state: u8,
    seq: u64,
    sent: u64,
    expect: Option<Expect>,
    seen: Box<[u64]>,
}

impl Scanner {
    fn new(expect: Option<Expect>) -> Self {
        let words = expect.map_or(0, |e| (e.total as usize).div_ceil(64));
        Scanner {
            connected: false,
            connect_matched: 0,
            state: 0,
            seq: 0,
            sent: 0,
            expect,
            seen: vec![0u64; words].into_boxed_slice(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Found {
        let mut found = Found::default();
        for &b in data {
            if !self.connected {
                if b == CONNECT_MARK[self.connect_matched as usize] {
                    self.connect_matched += 1;
                    if self.connect_matched as usize == CONNECT_MARK.len() {
                        self.connected = true;
                        found.connected = true;
                    }
                } else {
                    self.connect_matched = u8::from(b == CONNECT_MARK[0]);
                }
                continue;
            }
            match (self.state, b) {
                (_, b'#') => {
                    self.state = 1;
                    self.seq = 0;
                }
                (1, b'0'..=b'9') => self.seq = self.seq * 10 + u64::from(b - b'0'),
                (1, b'@') => {
                    self.state = 2;
                    self.sent = 0;
                }
                (2, b'0'..=b'9') => self.sent = self.sent * 10 + u64::from(b - b'0'),
                (2, b';') => {
                    self.state = 0;
                    self.delivered(&mut found);
                }
                _ => self.state = 0,
            }
        }
        found
    }

    fn delivered(&mut self, found: &mut Found) {
        found.deliveries += 1;
        if found.sent.len() < 32 {
            found.sent.push(self.sent);
        }
        let Some(e) = self.expect else { return };
        if self.seq >= u64::from(e.total) || self.seq % u64::from(e.modulo) != u64::from(e.index) {
            found.unexpected += 1;
            return;
        }
        let (word, bit) = ((self.seq / 64) as usize, self.seq % 64);
        if self.seen[word] & (1 << bit) != 0 {
            found.duplicates += 1;
        } else {
            self.seen[word] |= 1 << bit;
            found.unique += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_marks_across_reads() {
        let mut s = Scanner::new(Some(Expect { modulo: 2, index: 1, total: 10 }));
        let stream = b"HTTP/1.1 200 OK\r\n\r\n5a\r\n{\"connect\":{\"client\":\"x\"}}\n\r\n{\"channel\":\"c\",\"pub\":{\"data\":{\"b\":\"#3@1700;xx\"}}}\n{\"pub\":{\"data\":{\"b\":\"#3@1700;\"}}}#4@1;";
        let (a, b) = stream.split_at(40);
        let f1 = s.feed(a);
        let f2 = s.feed(b);
        assert!(f1.connected || f2.connected);
        assert_eq!(f1.deliveries + f2.deliveries, 3);
        assert_eq!((f2.unique, f2.duplicates, f2.unexpected), (1, 1, 1));
    }
}
