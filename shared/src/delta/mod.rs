//! Delta compression of publications (Centrifugo's `delta` feature).
//!
//! A namespace lists the delta types it allows (`allowed_delta_types: ["fossil"]`); a client
//! subscribes with `delta: "fossil"` and the subscribe result says `delta: true`. From then on
//! each publication reaches it either whole or as a Fossil delta against the previous one it
//! received (`delta: true` on the publication). Publications carry deltas when published with
//! `delta: true` (server API) or into a namespace with `delta_publish`.
//!
//! Where the work happens: the broker, which knows a stream's previous publication, encodes
//! the delta once per publication ([`crate::broker::BrokerEvent::Publication`]'s `delta`) —
//! natively in-process, at the edge in the channel object, so node objects only forward it.
//! The hub then decides per subscriber, from stream offsets alone, whether that client holds
//! the publication the delta was made against; the per-subscription state is one offset.

pub mod fossil;

/// The delta types rotor knows (`allowed_delta_types` values, subscribe `delta` values).
pub const FOSSIL: &str = "fossil";
