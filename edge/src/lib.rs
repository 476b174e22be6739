//! rotor at the edge: a Cloudflare Worker whose Durable Objects run the same
//! `shared` core as the native server. The Worker host lands with the edge
//! issue; until then this crate only proves the core links into it.
pub use shared;
