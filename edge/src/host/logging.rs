//! Logs at the edge: the same `tracing` events as natively (the core's and the host's), as
//! JSON lines on the Workers console (`wrangler tail`, Workers Logs), at the config's
//! `log_level`. Installed once per isolate, when the configuration is first read.

use std::io::Write;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the isolate's subscriber (a second call does nothing).
pub fn init(filter: LevelFilter) {
    // No timestamps: the console stamps each line, and wasm32 has no system clock to read.
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .with_max_level(filter)
        .with_writer(Console)
        .try_init();
}

/// Hands each formatted event to `console.log` as one line.
struct Console;

struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let text = text.trim_end();
        if !text.is_empty() {
            worker::console_log!("{text}");
        }
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}
