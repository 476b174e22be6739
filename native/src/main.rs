//! `rotor`: the native server and its command-line tools.

use native::{cli, engine, logging, metrics, server, timeouts};

use clap::Parser;

fn main() -> std::process::ExitCode {
    exit_on_panic();
    let args = cli::Args::parse();
    match args.command {
        Some(cli::Command::Genconfig { config }) => cli::genconfig(&config),
        Some(cli::Command::Gentoken { config, user, ttl, quiet }) => {
            cli::gentoken(config.as_deref(), &user, ttl, quiet)
        }
        Some(cli::Command::Checktoken { config, token }) => cli::checktoken(config.as_deref(), &token),
        Some(cli::Command::Defaultconfig { layout, format }) => cli::defaultconfig(&layout, &format),
        Some(cli::Command::Configdoc) => cli::configdoc(),
        Some(cli::Command::Version) => {
            println!("rotor {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        None => serve(args),
    }
}

fn serve(args: cli::Args) -> std::process::ExitCode {
    let loaded = match cli::load(args.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rotor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut config = loaded.config;
    if let Err(e) = logging::init(config.log_filter(), &config.log_file) {
        eprintln!("rotor: {}", loaded.source);
        eprintln!("rotor: {e}");
        return std::process::ExitCode::FAILURE;
    }
    metrics::mark_start();
    tracing::info!(source = %loaded.source, "configuration loaded");
    for warning in &loaded.warnings {
        tracing::warn!("config: {warning}");
    }
    if config.engine != "memory" {
        let e = format!("config key \"engine\": only \"memory\" is available in this build, not {:?}", config.engine);
        return fail(&e);
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(address) = args.address {
        config.address = address;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let shutdown_timeout = config.shutdown_timeout;
    let code = runtime.block_on(async move {
        let listener = match server::bind(&config.address, config.port).await {
            Ok(l) => l,
            Err(e) => return fail(&format!("cannot listen on {}:{}: {e}", config.address, config.port)),
        };
        let local = listener.local_addr().expect("bound socket has an address");
        let config = std::sync::Arc::new(config);
        let node_name = if config.name.is_empty() { format!("rotor_{}", local.port()) } else { config.name.clone() };
        let timeouts = match timeouts::Timeouts::from_env() {
            Ok(t) => t,
            Err(e) => return fail(&e.to_string()),
        };
        let engine = match engine::start(config.clone(), node_name, timeouts) {
            Ok(e) => e,
            Err(e) => return fail(&e),
        };
        cli::print_banner(&config, local, loaded.embedded);
        tracing::info!(version = env!("CARGO_PKG_VERSION"), address = %local, "rotor listening");
        let accepting = tokio::spawn(server::serve(listener, engine.clone()));
        shutdown_signal().await;
        // A second signal (an impatient Ctrl-C) ends the drain at once.
        tokio::select! {
            _ = drain(accepting, &engine, shutdown_timeout) => {}
            _ = shutdown_signal() => tracing::warn!("shutdown: a second signal; exiting without finishing the drain"),
        }
        std::process::ExitCode::SUCCESS
    });
    // Tasks still running (idle keep-alive connections) are dropped without waiting.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    logging::flush(LAST_LINES);
    code
}

/// How long the last log lines may take to be written before the process exits (only an
/// output that stopped taking lines needs that long).
const LAST_LINES: std::time::Duration = std::time::Duration::from_millis(500);

fn fail(e: &str) -> std::process::ExitCode {
    tracing::error!("{e}");
    logging::flush(LAST_LINES);
    eprintln!("rotor: {e}");
    std::process::ExitCode::FAILURE
}

/// Graceful drain: stop accepting, disconnect every client with 3001 (they reconnect,
/// elsewhere or to the next process), let each connection flush what it has queued, and
/// be done within `timeout` (config `shutdown_timeout`), logging what had to be cut.
async fn drain(accepting: tokio::task::JoinHandle<()>, engine: &engine::Engine, timeout: std::time::Duration) {
    let started = tokio::time::Instant::now();
    // A little is kept for the runtime's own shutdown.
    let deadline = started + timeout.saturating_sub(std::time::Duration::from_millis(200));
    accepting.abort();
    tracing::info!(shutdown_timeout = ?timeout, "shutting down: no new connections");
    let Ok(open) = tokio::time::timeout_at(deadline, engine.shutdown()).await else {
        tracing::error!("shutdown: the engine did not answer within shutdown_timeout; exiting anyway");
        return;
    };
    let total = open.len();
    loop {
        let left = open.iter().filter(|c| c.strong_count() > 0).count();
        if left == 0 {
            tracing::info!(connections = total, elapsed = ?started.elapsed(), "shutdown: every connection flushed and closed");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(cut = left, of = total, "shutdown: connections still writing at shutdown_timeout were cut");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A panic is a bug, and a server with a dead engine task must not go on answering: the
/// process logs why and exits non-zero, so its supervisor restarts it (release builds also
/// abort on panic: `panic = "abort"` in the workspace's release profile).
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(panic = %info, "fatal: a panic (a bug); exiting with code 70 so that a supervisor restarts rotor");
        logging::flush(LAST_LINES);
        eprintln!("rotor: fatal: {info}; exiting (code 70) so that a supervisor restarts rotor");
        std::process::exit(70);
    }));
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
