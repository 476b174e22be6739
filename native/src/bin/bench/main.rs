//! `bench`: drives a `rotor` child process with thousands of real loopback connections and
//! reports idle memory per connection, fan-out throughput and latency, many-channel latency
//! and connect rate. A table for people, then one `BENCH_JSON {…}` line for tools.
//!
//! ```text
//! cargo build --release -p native
//! cargo run --release -p native --bin bench -- [--quick] [--rotor target/release/rotor]
//! ```
//!
//! This is a measurement, not a test: nothing here asserts a number. Everything runs on
//! 127.0.0.0/8, every loop is bounded, and the child server is stopped at the end.

mod backend;
mod client;
mod hist;
mod publisher;
mod server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use client::{Client, Expect, Stats, Transport};
use server::Server;

#[derive(Parser, Debug)]
#[command(about = "Load benchmark for rotor: real connections on loopback, numbers out")]
struct Args {
    /// Small sizes (about 1,000 connections) for a quick sanity check.
    #[arg(long)]
    quick: bool,
    /// The server binary to start (built with `cargo build --release -p native` if missing).
    #[arg(long, default_value = "target/release/rotor")]
    rotor: PathBuf,
    /// Which phases to run (comma-separated): idle, fanout, channels, connect (uni SSE
    /// connects with a JWT, then with no token through the connect proxy).
    #[arg(long, default_value = "idle,fanout,channels,connect", value_delimiter = ',')]
    phases: Vec<String>,
    /// Transports for the idle-memory phase (comma-separated).
    #[arg(long, default_value = "uni_sse,uni_http_stream,uni_websocket", value_delimiter = ',')]
    idle_transports: Vec<String>,
    /// Concurrent API senders during the publication phases.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Pace the publications at this many per second (0: as fast as the server answers).
    #[arg(long, default_value_t = 0.0)]
    publish_rate: f64,
    /// Connects in flight at once (a connect is in flight until its connect push arrives).
    /// Kept under the server's listen backlog (128 today): above it the kernel drops SYNs
    /// and the 1 s SYN retransmit, not the server, sets the connect rate.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Where the server's output goes.
    #[arg(long, default_value = "target/bench-rotor.log")]
    server_log: PathBuf,
}

struct Sizes {
    idle: [u64; 2],
    fanout_subscribers: u64,
    fanout_publications: u64,
    channels: u64,
    per_channel: u64,
    channel_publications: u64,
}

const FULL: Sizes = Sizes {
    idle: [10_000, 50_000],
    fanout_subscribers: 10_000,
    fanout_publications: 200,
    channels: 1_000,
    per_channel: 10,
    channel_publications: 2_000,
};
const QUICK: Sizes = Sizes {
    idle: [1_000, 2_000],
    fanout_subscribers: 1_000,
    fanout_publications: 50,
    channels: 100,
    per_channel: 10,
    channel_publications: 200,
};

/// File descriptors kept for everything that is not a client connection.
const FD_MARGIN: u64 = 300;

struct Bench {
    args: Args,
    /// Clients opened so far in the whole run: picks each one's source address.
    opened: AtomicU64,
    /// Most connections one process can hold here (RLIMIT_NOFILE less a margin).
    max_conns: u64,
    notes: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let nofile = server::raise_nofile(200_000);
    let max_conns = nofile.saturating_sub(FD_MARGIN);
    if let Err(e) = ensure_binary(&args.rotor) {
        eprintln!("bench: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Some(dir) = args.server_log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut bench = Bench { args, opened: AtomicU64::new(0), max_conns, notes: Vec::new() };
    if nofile < 200_000 {
        bench.notes.push(format!(
            "RLIMIT_NOFILE could only be raised to {nofile} (no CAP_SYS_RESOURCE for a higher hard limit): at most {max_conns} connections per process"
        ));
    }
    let loadavg_at_start = loadavg();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let started = Instant::now();
    let report = runtime.block_on(run(&mut bench));
    let mut report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    report["machine"] = machine(nofile);
    report["machine"]["loadavg_at_start"] = json!(loadavg_at_start);
    report["date"] = json!(date());
    report["quick"] = json!(bench.args.quick);
    report["notes"] = json!(bench.notes);
    report["wall_seconds"] = json!(round(started.elapsed().as_secs_f64(), 1));
    print_table(&report);
    println!("BENCH_JSON {}", serde_json::to_string(&report).unwrap());
    // Tasks of aborted clients may still hold sockets; don't wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    std::process::ExitCode::SUCCESS
}

fn ensure_binary(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("bench: {} is missing; building it (cargo build --release -p native --bin rotor)", path.display());
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "native", "--bin", "rotor"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() || !path.exists() {
        return Err(format!("building rotor failed, or {} is still missing (pass --rotor PATH)", path.display()));
    }
    Ok(())
}

async fn run(bench: &mut Bench) -> Result<Value, String> {
    let sizes = if bench.args.quick { QUICK } else { FULL };
    let mut report = json!({});
    let phases = bench.args.phases.clone();
    if phases.iter().any(|p| p == "idle") {
        let mut idle = Vec::new();
        for name in bench.args.idle_transports.clone() {
            let transport = match name.as_str() {
                "uni_sse" => Transport::UniSse,
                "uni_http_stream" => Transport::UniHttpStream,
                "uni_websocket" => Transport::UniWebsocket,
                other => return Err(format!("unknown transport {other:?} (uni_sse, uni_http_stream, uni_websocket)")),
            };
            idle.push(idle_phase(bench, transport, sizes.idle).await?);
        }
        report["idle"] = json!(idle);
    }
    if phases.iter().any(|p| p == "fanout") {
        let n = sizes.fanout_subscribers.min(bench.max_conns);
        report["fanout"] = publish_phase(bench, "fanout", 1, n, sizes.fanout_publications).await?;
    }
    if phases.iter().any(|p| p == "channels") {
        let per_channel = sizes.per_channel.min(bench.max_conns / sizes.channels).max(1);
        report["many_channels"] = publish_phase(
            bench,
            "many_channels",
            sizes.channels,
            sizes.channels * per_channel,
            sizes.channel_publications,
        )
        .await?;
    }
    if phases.iter().any(|p| p == "connect") {
        let n = sizes.idle[0].min(bench.max_conns);
        report["connect"] = json!([connect_phase(bench, n, false).await?, connect_phase(bench, n, true).await?]);
    }
    Ok(report)
}

/// `n` uni SSE connects on a fresh server: with a JWT each, or with no token through the
/// connect proxy to a backend in this process (which shares the cores with the clients).
async fn connect_phase(bench: &mut Bench, n: u64, proxy: bool) -> Result<Value, String> {
    let how = if proxy { "connect proxy" } else { "JWT" };
    eprintln!("bench: connect rate, {how} ({n} uni SSE connections)");
    let backend = if proxy { Some(backend::Backend::start().await?) } else { None };
    let extra = match &backend {
        Some(b) => json!({"proxy_connect_endpoint": format!("http://{}/connect", b.addr)}),
        None => json!({}),
    };
    let mut server = Server::start_with(&bench.args.rotor, &bench.args.server_log, extra)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut crowd = Crowd::new(bench.args.concurrency);
    crowd.tokenless = proxy;
    let cpu0 = server.cpu_seconds();
    let seconds = crowd.open(bench, &server, n, Transport::UniSse, |_| "idle".to_owned(), |_| None).await;
    let cpu = server.cpu_seconds() - cpu0;
    let ok = crowd.stats.connected.load(Relaxed);
    let result = json!({
        "auth": how,
        "connections": n,
        "connected": ok,
        "failed": crowd.stats.failed.load(Relaxed),
        "first_error": crowd.stats.first_error(),
        "seconds": round(seconds, 3),
        "per_second": (ok as f64 / seconds).round() as u64,
        "server_cpu_seconds_per_1000": round(cpu / ok.max(1) as f64 * 1000.0, 4),
        "backend_calls": backend.as_ref().map(|b| b.calls.load(Relaxed)),
    });
    crowd.close().await;
    server.stop();
    if let Some(b) = backend {
        b.stop();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(result)
}

/// Clients of one phase: their tasks and their counters.
struct Crowd {
    stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
    permits: Arc<Semaphore>,
    /// Connect with no token (the connect proxy decides who connects).
    tokenless: bool,
}

impl Crowd {
    fn new(concurrency: usize) -> Self {
        Crowd {
            stats: Stats::new(),
            tasks: Vec::new(),
            permits: Arc::new(Semaphore::new(concurrency)),
            tokenless: false,
        }
    }

    /// Opens `n` more clients and waits until each has its connect push (or failed).
    /// Returns the seconds it took.
    async fn open(
        &mut self,
        bench: &Bench,
        server: &Server,
        n: u64,
        transport: Transport,
        channel: impl Fn(u64) -> String,
        expect: impl Fn(u64) -> Option<Expect>,
    ) -> f64 {
        let before = self.done();
        let first = self.tasks.len() as u64;
        // Tokens and requests are made before the clock starts: the connect rate is the
        // server's, not the bench's signing speed.
        let clients: Vec<Client> = (first..first + n)
            .map(|i| {
                let n = bench.opened.fetch_add(1, Relaxed);
                // One user per connection, as most deployments have (the hub indexes users).
                let token = if self.tokenless {
                    String::new()
                } else {
                    shared::auth::issue_hs256(server::HMAC_SECRET, &json!({"sub": format!("user-{n}")}))
                };
                Client {
                    server: server.addr,
                    source: client::source(n),
                    opening: client::opening(transport, server.addr, &token, &channel(i)),
                    expect: expect(i),
                }
            })
            .collect();
        let start = Instant::now();
        for client in clients {
            let permit = self.permits.clone().acquire_owned().await.expect("semaphore open");
            self.tasks.push(tokio::spawn(client.run(self.stats.clone(), permit)));
        }
        self.wait(before + n, Duration::from_secs(30)).await;
        start.elapsed().as_secs_f64()
    }

    fn done(&self) -> u64 {
        self.stats.connected.load(Relaxed) + self.stats.failed.load(Relaxed)
    }

    /// Waits until `target` clients are connected or failed, giving up after `stall` without
    /// progress.
    async fn wait(&self, target: u64, stall: Duration) {
        let mut last = (self.done(), Instant::now());
        while self.done() < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let done = self.done();
            if done != last.0 {
                last = (done, Instant::now());
            } else if last.1.elapsed() > stall {
                eprintln!("bench: gave up waiting: {done} of {target} clients connected or failed");
                return;
            }
        }
    }

    async fn close(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn idle_phase(bench: &mut Bench, transport: Transport, sizes: [u64; 2]) -> Result<Value, String> {
    let mut sizes = sizes;
    for s in &mut sizes {
        if *s > bench.max_conns {
            bench.notes.push(format!("idle {}: {s} connections capped to {}", transport.name(), bench.max_conns));
            *s = bench.max_conns;
        }
    }
    eprintln!("bench: idle {} ({} then {} connections)", transport.name(), sizes[0], sizes[1]);
    let mut server = Server::start(&bench.args.rotor, &bench.args.server_log)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = server.rss_kib();
    let client_baseline = server::rss_kib(std::process::id()).unwrap_or(0);
    let mut crowd = Crowd::new(bench.args.concurrency);
    let mut points = Vec::new();
    let mut connect = json!(null);
    let mut opened = 0;
    for (step, &target) in sizes.iter().enumerate() {
        let cpu0 = server.cpu_seconds();
        let overflows0 = listen_overflows();
        let seconds =
            crowd.open(bench, &server, target.saturating_sub(opened), transport, |_| "idle".to_owned(), |_| None).await;
        let cpu = server.cpu_seconds() - cpu0;
        let n = target - opened;
        opened = target;
        if step == 0 {
            let ok = crowd.stats.connected.load(Relaxed);
            connect = json!({
                "connections": n,
                "connected": ok,
                "seconds": round(seconds, 3),
                "per_second": (ok as f64 / seconds).round() as u64,
                "server_cpu_seconds": round(cpu, 3),
                "server_cpu_seconds_per_1000": round(cpu / ok.max(1) as f64 * 1000.0, 4),
                "concurrency": bench.args.concurrency,
                "listen_overflows": listen_overflows().saturating_sub(overflows0),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_kib();
        let connected = crowd.stats.connected.load(Relaxed);
        let client_rss = server::rss_kib(std::process::id()).unwrap_or(0);
        points.push(json!({
            "connections": target,
            "connected": connected,
            "failed": crowd.stats.failed.load(Relaxed),
            "server_rss_kib": rss,
            "kib_per_connection": round(rss.saturating_sub(baseline) as f64 / connected.max(1) as f64, 2),
            "bench_client_kib_per_connection": round(client_rss.saturating_sub(client_baseline) as f64 / connected.max(1) as f64, 2),
        }));
    }
    let alive = server.alive();
    let failed = crowd.stats.failed.load(Relaxed);
    let first_error = crowd.stats.first_error();
    crowd.close().await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(json!({
        "transport": transport.name(),
        "server_rss_baseline_kib": baseline,
        "points": points,
        "connect": connect,
        "failed": failed,
        "first_error": first_error,
        "server_survived": alive,
    }))
}

/// `subscribers` clients spread round-robin over `channels` channels on uni HTTP streams,
/// then `publications` publications round-robin over the channels.
async fn publish_phase(
    bench: &mut Bench,
    name: &str,
    channels: u64,
    subscribers: u64,
    publications: u64,
) -> Result<Value, String> {
    eprintln!("bench: {name} ({subscribers} subscribers on {channels} channel(s), {publications} publications)");
    let transport = Transport::UniHttpStream;
    let server = Server::start(&bench.args.rotor, &bench.args.server_log)?;
    let names: Arc<Vec<String>> = Arc::new((0..channels).map(|c| format!("{name}-{c}")).collect());
    let mut crowd = Crowd::new(bench.args.concurrency);
    let total = publications as u32;
    let modulo = channels as u32;
    let n2 = names.clone();
    crowd
        .open(
            bench,
            &server,
            subscribers,
            transport,
            move |i| n2[(i % channels) as usize].clone(),
            move |i| Some(Expect { modulo, index: (i % channels) as u32, total }),
        )
        .await;
    let connected = crowd.stats.connected.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each channel c gets the publications seq ≡ c (mod channels); its subscribers are the
    // clients i ≡ c (mod channels) that connected.
    let expected: u64 = (0..channels)
        .map(|c| {
            let pubs = (publications + channels - 1 - c) / channels;
            let subs = (subscribers + channels - 1 - c) / channels;
            pubs * subs
        })
        .sum::<u64>()
        .min(publications * connected);
    let cpu0 = server.cpu_seconds();
    let start_us = client::now_us();
    let published =
        publisher::publish(server.addr, names.clone(), publications, bench.args.senders, bench.args.publish_rate).await;
    // Wait for the deliveries to stop: all in, or 5 s without progress (bounded at 120 s).
    let stats = &crowd.stats;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (stats.deliveries.load(Relaxed), Instant::now());
    while stats.unique.load(Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let d = stats.deliveries.load(Relaxed);
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let cpu = server.cpu_seconds() - cpu0;
    let deliveries = stats.deliveries.load(Relaxed);
    let unique = stats.unique.load(Relaxed);
    let span = (stats.last_delivery_us.load(Relaxed).saturating_sub(start_us)) as f64 / 1e6;
    let ms = |us: u64| round(us as f64 / 1000.0, 2);
    let result = json!({
        "transport": transport.name(),
        "channels": channels,
        "subscribers": subscribers,
        "connected": connected,
        "connect_failures": stats.failed.load(Relaxed),
        "publications": publications,
        "senders": bench.args.senders,
        "paced_rate": bench.args.publish_rate,
        "published_ok": published.ok,
        "api_errors": published.errors,
        "api_first_error": published.first_error,
        "publish_seconds": round(published.elapsed.as_secs_f64(), 3),
        "publications_per_second": (published.ok as f64 / published.elapsed.as_secs_f64().max(1e-9)).round() as u64,
        "expected_deliveries": expected,
        "deliveries": deliveries,
        "missing": expected.saturating_sub(unique),
        "duplicates": stats.duplicates.load(Relaxed),
        "unexpected": stats.unexpected.load(Relaxed),
        "streams_ended": stats.ended.load(Relaxed),
        "delivery_seconds": round(span, 3),
        "deliveries_per_second": (deliveries as f64 / span.max(1e-9)).round() as u64,
        "latency_ms": {
            "p50": ms(stats.latency.quantile(0.50)),
            "p90": ms(stats.latency.quantile(0.90)),
            "p99": ms(stats.latency.quantile(0.99)),
            "max": ms(stats.latency.max()),
            "samples": stats.latency.count(),
        },
        "server_cpu_seconds": round(cpu, 3),
        "server_cpu_seconds_per_million_deliveries": round(cpu / deliveries.max(1) as f64 * 1e6, 2),
        "server_rss_kib": server.rss_kib(),
    });
    crowd.close().await;
    let mut server = server;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(result)
}

fn print_table(r: &Value) {
    let m = &r["machine"];
    println!();
    println!(
        "rotor load benchmark — {} — {} cores, {} MiB, kernel {} — load average {} at start, {} at end",
        r["date"].as_str().unwrap_or(""),
        m["nproc"],
        m["memory_mib"],
        m["kernel"].as_str().unwrap_or(""),
        m["loadavg_at_start"].as_str().unwrap_or(""),
        m["loadavg_at_end"].as_str().unwrap_or("")
    );
    if let Some(idle) = r["idle"].as_array() {
        println!();
        println!(
            "{:<16} {:>8} {:>10} {:>13} {:>10} {:>12} {:>15}",
            "idle transport", "conns", "connected", "server RSS", "KiB/conn", "connects/s", "CPU s/1000 conn"
        );
        for t in idle {
            for (i, p) in t["points"].as_array().into_iter().flatten().enumerate() {
                let (rate, cpu) = if i == 0 {
                    (t["connect"]["per_second"].to_string(), t["connect"]["server_cpu_seconds_per_1000"].to_string())
                } else {
                    (String::new(), String::new())
                };
                println!(
                    "{:<16} {:>8} {:>10} {:>9} KiB {:>10} {:>12} {:>15}",
                    t["transport"].as_str().unwrap_or(""),
                    p["connections"].to_string(),
                    p["connected"].to_string(),
                    p["server_rss_kib"].to_string(),
                    p["kib_per_connection"].to_string(),
                    rate,
                    cpu
                );
            }
        }
    }
    for key in ["fanout", "many_channels"] {
        let f = &r[key];
        if f.is_null() {
            continue;
        }
        println!();
        println!(
            "{key}: {} subscribers on {} channel(s), {} publications ({} pubs/s accepted, {} API errors)",
            f["connected"], f["channels"], f["published_ok"], f["publications_per_second"], f["api_errors"]
        );
        println!(
            "  deliveries {} of {} expected, {}/s; missing {}, duplicates {}, unexpected {}",
            f["deliveries"],
            f["expected_deliveries"],
            f["deliveries_per_second"],
            f["missing"],
            f["duplicates"],
            f["unexpected"]
        );
        let l = &f["latency_ms"];
        println!("  latency ms p50 {} p90 {} p99 {} max {}", l["p50"], l["p90"], l["p99"], l["max"]);
        println!(
            "  server CPU {} s = {} s per 1M deliveries",
            f["server_cpu_seconds"], f["server_cpu_seconds_per_million_deliveries"]
        );
    }
    if let Some(rows) = r["connect"].as_array() {
        println!();
        println!(
            "{:<16} {:>8} {:>10} {:>12} {:>15} {:>14}",
            "uni SSE connect", "conns", "connected", "connects/s", "CPU s/1000 conn", "backend calls"
        );
        for c in rows {
            println!(
                "{:<16} {:>8} {:>10} {:>12} {:>15} {:>14}",
                c["auth"].as_str().unwrap_or(""),
                c["connections"].to_string(),
                c["connected"].to_string(),
                c["per_second"].to_string(),
                c["server_cpu_seconds_per_1000"].to_string(),
                c["backend_calls"].to_string()
            );
        }
    }
    for note in r["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or(""));
    }
    println!();
}

/// The kernel's count of connections dropped because a listen queue was full.
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let at = names.split_whitespace().position(|n| n == "ListenOverflows");
        return at.and_then(|i| values.split_whitespace().nth(i)?.parse().ok()).unwrap_or(0);
    }
    0
}

fn machine(nofile: u64) -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "memory_mib": mem_kib / 1024,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nofile_limit": nofile,
        "loadavg_at_end": loadavg(),
    })
}

/// The 1, 5 and 15 minute load averages: tells whether something else was busy.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
