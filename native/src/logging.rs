//! Logs: `tracing` events (the core's and the host's) written by `tracing-subscriber`, at
//! the config's `log_level`, to `log_file` or stderr: JSON lines when the output is not a
//! terminal (files, pipes, journald, containers), readable lines when it is.
//!
//! JSON escapes what it writes; the readable format does not escape a `%value` field or the
//! message (only ESC in the message), so its fields go through [`readable_fields`]: a user
//! id, channel, API method or error text a client chose cannot start a forged line or drive
//! the terminal.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::field::Field;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

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
            builder.fmt_fields(readable_fields()).with_writer(std::io::stderr).try_init()
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

/// The readable format's fields: `name=value` (the message bare), each value with its
/// control characters (newlines, ESC, …) and bidirectional overrides escaped.
pub fn readable_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    let field: for<'w> fn(&mut Writer<'w>, &Field, &dyn fmt::Debug) -> fmt::Result = readable_field;
    tracing_subscriber::fmt::format::debug_fn(field).delimited(" ")
}

fn readable_field(w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    if field.name() != "message" {
        write!(w, "{}=", field.name())?;
    }
    write_escaped(w, &format!("{value:?}"))
}

/// `text` with every control character and bidirectional override written as an escape
/// (`\n`, `\u{1b}`), everything else as is.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            write!(out, "{}", c.escape_default())?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn readable_lines_escape_what_a_client_chose() {
        let capture = Capture::default();
        let out = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(true)
            .with_target(false)
            .fmt_fields(readable_fields())
            .with_writer(move || out.clone())
            .finish();
        let forged = "x\n2026-01-01T00:00:00Z  INFO forged line \x1b[2J\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(method = %forged, user = forged, code = 3500, "api error: {forged}");
        });
        let text = String::from_utf8(capture.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(text.ends_with('\n'));
        assert!(!text.contains("\x1b[2J") && !text.contains('\u{202e}'), "{text:?}");
        assert!(text.contains("method=x\\n2026"), "{text:?}");
        assert!(text.contains("code=3500"), "{text:?}");
    }
}
