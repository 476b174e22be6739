//! `rotor`: the native server and its command-line tools.

use native::{cli, engine, server, timeouts};

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
    eprintln!("rotor: {}", loaded.source);
    let mut config = loaded.config;
    if config.engine != "memory" {
        eprintln!("rotor: config key \"engine\": only \"memory\" is available in this build, not {:?}", config.engine);
        return std::process::ExitCode::FAILURE;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(address) = args.address {
        config.address = address;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = runtime.block_on(async move {
        let listener = match server::bind(&config.address, config.port).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("rotor: cannot listen on {}:{}: {e}", config.address, config.port);
                return std::process::ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().expect("bound socket has an address");
        let config = std::sync::Arc::new(config);
        let node_name = if config.name.is_empty() { format!("rotor_{}", local.port()) } else { config.name.clone() };
        let timeouts = match timeouts::Timeouts::from_env() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("rotor: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let engine = match engine::start(config.clone(), node_name, timeouts) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("rotor: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        cli::print_banner(&config, local, loaded.embedded);
        tokio::spawn(server::serve(listener, engine.clone()));
        shutdown_signal().await;
        eprintln!("rotor: shutting down");
        // Bounded: an engine stuck on a long task must not keep the process from exiting.
        if tokio::time::timeout(std::time::Duration::from_secs(5), engine.shutdown()).await.is_err() {
            eprintln!("rotor: the engine did not finish its shutdown within 5 s; exiting anyway");
        }
        // Give writers a moment to flush the disconnect pushes and close frames.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::process::ExitCode::SUCCESS
    });
    // Connection tasks still running are dropped; a task stuck in a long poll is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// A panic is a bug, and a server with a dead engine task must not go on answering: the
/// process logs why and exits non-zero, so its supervisor restarts it (release builds also
/// abort on panic: `panic = "abort"` in the workspace's release profile).
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
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
