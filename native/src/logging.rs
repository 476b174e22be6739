//! Logs: `tracing` events (the core's and the host's) written by `tracing-subscriber`, at
//! the config's `log_level`, to `log_file` or stderr: JSON lines when the output is not a
//! terminal (files, pipes, journald, containers), readable lines when it is.

use std::io::IsTerminal as _;

use tracing_subscriber::filter::LevelFilter;

/// Installs the process's subscriber. Before it, nothing is logged; an error names the key.
pub fn init(level: &str, file: &str) -> Result<(), String> {
    let filter = match level {
        "none" => LevelFilter::OFF,
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "warn" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    };
    let builder = tracing_subscriber::fmt().with_max_level(filter).with_target(false);
    let installed = if file.is_empty() {
        let stderr = std::io::stderr();
        if stderr.is_terminal() {
            builder.with_writer(std::io::stderr).try_init()
        } else {
            builder.json().flatten_event(true).with_writer(std::io::stderr).try_init()
        }
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("config key \"log_file\": cannot open {file}: {e}"))?;
        builder.json().flatten_event(true).with_ansi(false).with_writer(std::sync::Mutex::new(f)).try_init()
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
