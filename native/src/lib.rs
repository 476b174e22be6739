//! rotor's native host as a library: the binary (`src/main.rs`) and the fuzz targets
//! (`tests/fuzz`) use these modules.

pub mod admin;
pub mod cli;
pub mod config_file;
pub mod emulation;
pub mod engine;
pub mod front_door;
pub mod http;
pub mod http_api;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod proxy;
pub mod server;
pub mod stream;
pub mod timeouts;
pub mod ws;
pub mod wsframe;
