//! The rotor child process: config, start, stop, and what /proc says about it.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HMAC_SECRET: &str = "rotor-bench-secret";
pub const API_KEY: &str = "rotor-bench-api-key";

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    config: PathBuf,
}

impl Server {
    /// Starts `rotor -c <generated config>` on a free loopback port and waits until it answers.
    pub fn start(binary: &Path, log: &Path) -> Result<Server, String> {
        Server::start_with(binary, log, serde_json::json!({}))
    }

    /// As [`Server::start`], with these config keys added.
    pub fn start_with(binary: &Path, log: &Path, extra: serde_json::Value) -> Result<Server, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let config = std::env::temp_dir().join(format!("rotor-bench-{}-{port}.json", std::process::id()));
        let mut text = serde_json::json!({
            "address": "127.0.0.1",
            "port": port,
            "token_hmac_secret_key": HMAC_SECRET,
            "api_key": API_KEY,
            "uni_http_stream": true,
            "uni_sse": true,
            "uni_websocket": true,
            "allow_subscribe_for_client": true,
            "client_channel_limit": 100_000,
            "ping_interval": "25s",
        });
        if let (Some(text), Some(extra)) = (text.as_object_mut(), extra.as_object()) {
            text.extend(extra.clone());
        }
        std::fs::write(&config, serde_json::to_vec_pretty(&text).unwrap())
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut err = log_file.try_clone().map_err(|e| e.to_string())?;
        let _ = writeln!(err, "---- rotor on port {port}");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut server = Server { child, addr, config };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("rotor exited at start ({status}); see {}", log.display()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(format!("rotor did not listen on {addr} within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid()).unwrap_or(0)
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                let _ = std::fs::remove_file(&self.config);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / ticks)
}

/// Raises RLIMIT_NOFILE to `want` (the child inherits it); where the hard limit cannot be
/// raised (no CAP_SYS_RESOURCE), takes the soft limit up to the hard one. Returns the limit in
/// force.
pub fn raise_nofile(want: u64) -> u64 {
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let wanted =
            libc::rlimit { rlim_cur: want as libc::rlim_t, rlim_max: (want as libc::rlim_t).max(lim.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            let capped = libc::rlimit { rlim_cur: lim.rlim_max.min(want as libc::rlim_t), rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        let current = lim.rlim_cur as u64;
        current
    }
}
