//! A real `rotor` process on a free loopback port for the socket-level tests, plus what
//! `/proc` says about it (open fds, resident memory, sockets left in CLOSE-WAIT).
#![allow(dead_code)] // each test file uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{json, Value};
use shared::protocol::{Command as ClientCommand, ConnectRequest};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const SECRET: &str = "rotor-socket-test-secret";
pub const API_KEY: &str = "rotor-socket-test-api-key";

/// Short timeouts for the tests that wait for one (`head,body,keep_alive,write,close` in ms).
pub const FAST_TIMEOUTS: &str = "head=1000,body=1000,keep_alive=1000,write=1000,close=500";

pub struct Rotor {
    child: Child,
    pub addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

impl Rotor {
    /// Starts `rotor -c <config>` with `extra` keys over the test defaults; `timeouts` sets the
    /// hidden test override of the connection timeouts.
    pub fn start(name: &str, extra: Value, timeouts: Option<&str>) -> Rotor {
        Rotor::start_with_env(name, extra, timeouts, &[])
    }

    /// [`Rotor::start`] with environment variables set for the process (test hooks).
    pub fn start_with_env(name: &str, extra: Value, timeouts: Option<&str>, env: &[(&str, &str)]) -> Rotor {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = std::env::temp_dir();
        let config = dir.join(format!("rotor-{name}-{}-{port}.json", std::process::id()));
        let log = dir.join(format!("rotor-{name}-{}-{port}.log", std::process::id()));
        let mut text = json!({
            "address": "127.0.0.1",
            "port": port,
            "token_hmac_secret_key": SECRET,
            "api_key": API_KEY,
            "allowed_origins": ["http://localhost:*"],
            "allow_subscribe_for_client": true,
            "allow_publish_for_client": true,
            "uni_http_stream": true,
            "uni_sse": true,
            "uni_websocket": true,
            "http_stream": true,
            "sse": true,
        });
        if let (Some(base), Some(extra)) = (text.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        std::fs::write(&config, serde_json::to_vec_pretty(&text).unwrap()).unwrap();
        let out = std::fs::File::create(&log).unwrap();
        // ROTOR_TEST_BIN runs the tests against another build (say, one from before a fix).
        let binary = std::env::var("ROTOR_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rotor").to_owned());
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
        command.env_remove("ROTOR_TEST_TIMEOUTS_MS");
        if let Some(t) = timeouts {
            command.env("ROTOR_TEST_TIMEOUTS_MS", t);
        }
        command.envs(env.iter().copied());
        let child = command.spawn().expect("rotor starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut rotor = Rotor { child, addr, config, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = rotor.child.try_wait() {
                panic!("rotor exited at start ({status}):\n{}", rotor.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return rotor;
            }
            assert!(Instant::now() < deadline, "rotor did not listen on {addr}:\n{}", rotor.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors of the server process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Open fds once connections that were closing are gone (the fewest seen over 500 ms; the
    /// start-up probe connection, for one, may still be open for a moment).
    pub fn quiet_fds(&self) -> usize {
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                self.fds()
            })
            .min()
            .unwrap_or(0)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Server-side sockets on our port that the client closed and the server did not.
    pub fn close_wait(&self) -> usize {
        let port = format!("{:04X}", self.addr.port());
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&format!(":{port}")) && f[3] == "08"
            })
            .count()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM; how long the process took to exit, or None if it had to be killed after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Option<Duration> {
        let started = Instant::now();
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        while started.elapsed() < grace {
            if !self.alive() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Waits until `ok` holds, at most `within`; true if it did.
    pub fn wait_for(&self, within: Duration, mut ok: impl FnMut(&Rotor) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if ok(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Rotor {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("rotor log ({}):\n{}", self.log.display(), self.log());
        }
    }
}

pub fn token(user: &str) -> String {
    token_with(user, &[])
}

/// A connection token that subscribes the connection to `channels` on the server side.
pub fn token_with(user: &str, channels: &[&str]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    shared::auth::issue_hs256(SECRET, &json!({"sub": user, "iat": now, "exp": now + 3600, "channels": channels}))
}

pub type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Opens a WebSocket; `protocol` is offered as `Sec-WebSocket-Protocol` when given.
pub async fn ws_open(rotor: &Rotor, path: &str, protocol: Option<&str>) -> Ws {
    let mut request = rotor.url(path).into_client_request().unwrap();
    if let Some(p) = protocol {
        request.headers_mut().insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let tcp = tokio::net::TcpStream::connect(rotor.addr).await.expect("connects");
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("WebSocket handshake");
    ws
}

/// The connect command as a JSON or Protobuf client sends it.
pub fn connect_command(user: &str, protobuf: bool) -> Message {
    if protobuf {
        let command = ClientCommand {
            id: 1,
            connect: Some(ConnectRequest { token: token(user), ..Default::default() }),
            ..Default::default()
        };
        Message::Binary(command.encode_length_delimited_to_vec().into())
    } else {
        Message::Text(json!({"id": 1, "connect": {"token": token(user)}}).to_string().into())
    }
}

/// Sends raw bytes and returns everything the server sends until it closes (or `within`).
pub fn exchange(addr: SocketAddr, request: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    read_until_closed(&mut s, within)
}

/// Reads until EOF or `within`; the text read and whether the server closed the connection.
pub fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&out).into_owned(), false)
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true), // reset
        }
    }
}

/// `POST /api/<method>` over a fresh connection; the status line and body.
pub fn api(addr: SocketAddr, method: &str, body: &Value, within: Duration) -> (String, String) {
    let body = body.to_string();
    let request = format!(
        "POST /api/{method} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (text, _) = exchange(addr, request.as_bytes(), within);
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A client's (masked) WebSocket frame, for tests that speak the protocol by hand.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A WebSocket upgrade request head for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A connection whose receive buffer is as small as the kernel allows, so a client that
/// stops reading pushes back on the server after little data.
pub fn small_window_socket(addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let std = stream.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std
    })
}

/// Publishes `count` publications of `size` bytes of data into `channel` through the API.
pub fn publish_bulk(addr: SocketAddr, channel: &str, count: usize, size: usize) {
    let data = "x".repeat(size);
    for i in 0..count {
        let (status, body) =
            api(addr, "publish", &json!({"channel": channel, "data": {"i": i, "pad": data}}), Duration::from_secs(10));
        assert!(status.contains(" 200 "), "publish {i}: {status} {body}");
    }
}

/// Sends raw bytes and reads one response: its head and a `Content-Length` body, or until the
/// server closes (or `within`).
pub fn one_response(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return text;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
