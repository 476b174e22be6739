//! How long a client may take at each step of a connection, and the variable tests shorten
//! that with.

use std::time::Duration;

/// How long a client may take at each step of a connection, in one place. Centrifugo leaves
/// Go's `http.Server` timeouts unset (none at all); these follow common practice for servers
/// facing the internet (Go's guidance and nginx's defaults) and Centrifugo's own write bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From accepting a connection to a complete request head.
    pub head: Duration,
    /// For a whole request body, once the head is in.
    pub body: Duration,
    /// An idle keep-alive connection waiting for its next request (hyper's header timer
    /// covers the wait and the head that follows, so this bounds both).
    pub keep_alive: Duration,
    /// For the client to take what was written to it (a batch of frames, a response
    /// chunk): a client that stops reading loses its connection after this.
    pub write: Duration,
    /// For the client's answer to a WebSocket close frame before the socket is dropped.
    pub close: Duration,
}

/// The variable that shortens the timeouts for tests (milliseconds):
/// `head=300,body=300,keep_alive=300,write=300,close=300`, any subset.
pub const TIMEOUTS_ENV: &str = "ROTOR_TEST_TIMEOUTS_MS";

impl Timeouts {
    pub const DEFAULT: Timeouts = Timeouts {
        head: Duration::from_secs(15),
        body: Duration::from_secs(30),
        keep_alive: Duration::from_secs(75),
        write: Duration::from_secs(10),
        close: Duration::from_secs(5),
    };

    /// The defaults, with what [`TIMEOUTS_ENV`] overrides.
    pub fn from_env() -> Result<Timeouts, String> {
        match std::env::var(TIMEOUTS_ENV) {
            Ok(spec) => Timeouts::DEFAULT.overridden(&spec),
            Err(_) => Ok(Timeouts::DEFAULT),
        }
    }

    fn overridden(mut self, spec: &str) -> Result<Timeouts, String> {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("{TIMEOUTS_ENV}: expected name=milliseconds, got {part:?}");
            let (name, ms) = part.split_once('=').ok_or_else(bad)?;
            let value = Duration::from_millis(ms.trim().parse::<u64>().map_err(|_| bad())?.max(1));
            match name.trim() {
                "head" => self.head = value,
                "body" => self.body = value,
                "keep_alive" => self.keep_alive = value,
                "write" => self.write = value,
                "close" => self.close = value,
                _ => return Err(bad()),
            }
        }
        Ok(self)
    }
}
