//! Logs: `tracing` events (the core's and the host's) written by `tracing-subscriber`, at
//! the config's `log_level`, to `log_file` or stderr: JSON lines when the output is not a
//! terminal (files, pipes, journald, containers), readable lines when it is.
//!
//! JSON escapes what it writes; the readable format does not escape a `%value` field or the
//! message (only ESC in the message), so its fields go through [`readable_fields`]: a user
//! id, channel, API method or error text a client chose cannot start a forged line or drive
//! the terminal.
//!
//! Lines are written by a thread of their own ([`Lines`]), never by the task that logs: an
//! output that stops taking them (a stalled pipe or journald, a hung disk) must not stop the
//! engine, which logs as clients come and go. Past [`QUEUED_LINES`] waiting, lines are dropped
//! and the next one written says how many.

use std::fmt;
use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::Field;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// Lines waiting for the output at most (a few MiB); past it they are dropped and counted.
pub const QUEUED_LINES: usize = 16 * 1024;

/// Installs the process's subscriber. Before it, nothing is logged; an error names the key.
pub fn init(filter: LevelFilter, file: &str) -> Result<(), String> {
    let builder = tracing_subscriber::fmt().with_max_level(filter).with_target(false);
    let installed = if file.is_empty() {
        let stderr = std::io::stderr();
        if stderr.is_terminal() {
            let lines = Lines::start(stderr, false)?;
            builder.fmt_fields(readable_fields()).with_writer(lines).try_init()
        } else {
            builder.json().flatten_event(true).with_writer(Lines::start(stderr, true)?).try_init()
        }
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("config key \"log_file\": cannot open {file}: {e}"))?;
        builder.json().flatten_event(true).with_ansi(false).with_writer(Lines::start(f, true)?).try_init()
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// The installed logger's queue, for [`flush`].
static INSTALLED: OnceLock<Lines> = OnceLock::new();

/// Waits (at most `within`) until every line logged so far is written: before the process
/// exits, so that its last lines (the drain's, a panic's) are not lost.
pub fn flush(within: Duration) {
    if let Some(lines) = INSTALLED.get() {
        lines.flush(within);
    }
}

enum Item {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Formatted lines on their way to the output: a bounded queue, emptied by a thread that
/// writes them (see the module's doc).
#[derive(Clone)]
pub struct Lines {
    queue: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

impl Lines {
    /// Starts the writing thread; `json`: how to word the note about dropped lines.
    pub fn start(out: impl Write + Send + 'static, json: bool) -> Result<Lines, String> {
        let lines = Lines::spawn(out, json, QUEUED_LINES)?;
        let _ = INSTALLED.set(lines.clone());
        Ok(lines)
    }

    fn spawn(mut out: impl Write + Send + 'static, json: bool, bound: usize) -> Result<Lines, String> {
        let (queue, rx): (_, Receiver<Item>) = sync_channel(bound);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("rotor-log".into())
            .spawn(move || {
                for item in rx {
                    let line = match item {
                        Item::Line(line) => line,
                        Item::Flush(done) => {
                            let _ = out.flush();
                            let _ = done.send(());
                            continue;
                        }
                    };
                    let n = counted.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        let note = if json {
                            format!("{{\"level\":\"WARN\",\"message\":\"log lines dropped: the log output did not keep up\",\"dropped\":{n}}}\n")
                        } else {
                            format!("WARN log lines dropped: the log output did not keep up dropped={n}\n")
                        };
                        let _ = out.write_all(note.as_bytes());
                    }
                    // A failed write (a full disk) loses the line; nothing better to do with it.
                    let _ = out.write_all(&line);
                }
            })
            .map_err(|e| format!("cannot start the log writer: {e}"))?;
        Ok(Lines { queue, dropped })
    }

    fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let (done, written) = std::sync::mpsc::channel();
        let mut item = Item::Flush(done);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// One event's line: queued when the formatter is done with it, or dropped if the queue is full.
pub struct Line {
    text: Vec<u8>,
    lines: Lines,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = std::mem::take(&mut self.text);
        if !text.is_empty() && self.lines.queue.try_send(Item::Line(text)).is_err() {
            self.lines.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { text: Vec::new(), lines: self.clone() }
    }
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

    /// An output that takes nothing (a stalled pipe): logging neither blocks nor grows past
    /// the bound, and once the output takes lines again it hears how many were dropped.
    #[test]
    fn a_stalled_output_does_not_stop_the_logger() {
        struct Stalled(std::sync::mpsc::Receiver<()>, Capture);
        impl std::io::Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                self.1.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (go, wait) = std::sync::mpsc::channel();
        let capture = Capture::default();
        let lines = Lines::spawn(Stalled(wait, capture.clone()), true, 8).unwrap_or_else(|e| panic!("{e}"));
        let subscriber = tracing_subscriber::fmt().json().with_writer(lines.clone()).finish();
        let started = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10_000 {
                tracing::info!(i, "connection refused");
            }
        });
        assert!(started.elapsed() < Duration::from_secs(5), "logging waited for the output");
        for _ in 0..20 {
            let _ = go.send(());
        }
        drop(go);
        lines.flush(Duration::from_secs(5));
        let text = String::from_utf8(capture.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        assert!(text.lines().count() <= 11, "{text}");
        assert!(
            text.contains("\"message\":\"log lines dropped: the log output did not keep up\",\"dropped\":"),
            "{text}"
        );
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
