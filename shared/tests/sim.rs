//! Simulation tests of the core: a whole node driven by a virtual clock, no sockets.
//! The harness is in `common/`; each module below covers one area of behaviour.

mod common;

#[path = "sim/expiry.rs"]
mod expiry;
#[path = "sim/fanout.rs"]
mod fanout;
#[path = "sim/protocol.rs"]
mod protocol;
#[path = "sim/recovery.rs"]
mod recovery;
#[path = "sim/timers.rs"]
mod timers;
