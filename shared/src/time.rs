//! Time is an input: hosts sample their clock once per event and pass it in.

use std::time::Duration;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// A Unix time in seconds from outside (API `expire_at`, token `exp`): None for 0 or
    /// less (no expiry), saturating far in the future.
    pub fn from_unix_secs(secs: i64) -> Option<Self> {
        (secs > 0).then(|| Timestamp((secs as u64).saturating_mul(1000)))
    }
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
    /// `self + d`, saturating.
    pub fn after(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }
    pub fn after_ms(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }
    /// Milliseconds from `self` until `later` (0 if `later` is not later).
    pub fn until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
