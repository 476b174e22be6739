//! `/metrics`: the engine's figures under Centrifugo's names (`shared::metrics`) and the
//! process metrics Prometheus' Go client exports (`process_*`, from `/proc`), so that
//! dashboards built for Centrifugo find both.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::metrics::Snapshot;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// When the process started (seconds since the epoch), taken at start-up.
static STARTED: OnceLock<f64> = OnceLock::new();

/// Records the start time; call once at start-up.
pub fn mark_start() {
    let _ = STARTED.set(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64());
}

/// The whole page: the node's figures, then the process's.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    snapshot.render(&mut out);
    process(&mut out);
    out
}

fn process(out: &mut String) {
    let mut metric = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    if let Some(stat) = Stat::read() {
        metric(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
            stat.cpu_seconds,
        );
        metric("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", stat.rss_bytes);
        metric("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", stat.vsize_bytes);
        metric("process_threads", "Number of OS threads in the process.", "gauge", stat.threads);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric("process_open_fds", "Number of open file descriptors.", "gauge", fds.count() as f64);
    }
    if let Some(max) = max_fds() {
        metric("process_max_fds", "Maximum number of open file descriptors.", "gauge", max);
    }
    if let Some(started) = STARTED.get() {
        metric(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
            *started,
        );
    }
}

/// What `/proc/self/stat` says (Linux; absent elsewhere).
struct Stat {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    threads: f64,
}

impl Stat {
    fn read() -> Option<Stat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = text.get(text.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        Some(Stat {
            cpu_seconds: (field(14)? + field(15)?) / ticks.max(1.0),
            threads: field(20)?,
            vsize_bytes: field(23)?,
            rss_bytes: field(24)? * page,
        })
    }
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
