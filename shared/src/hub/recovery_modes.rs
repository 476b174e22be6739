//! `force_recovery_mode: "cache"`: the channel's latest publication is its whole state, so a
//! recovering client gets that one publication (when its position is not already the top),
//! whatever its position or epoch, as Centrifugo's cache recovery does.

use std::sync::Arc;

use super::Hub;
use crate::protocol::{Publication, StreamPosition, SubscribeResult};

impl Hub {
    /// Whether recovery on `channel` runs in cache mode.
    pub(crate) fn cache_recovery(&self, channel: &str) -> bool {
        self.config.namespace_for(channel).is_ok_and(|o| o.force_recovery_mode == "cache")
    }
}

/// Fills a subscribe result for a cache-mode recovery from `since`, given the stream top and
/// its history (oldest first; only the last entry matters).
pub(crate) fn cache_result(
    r: &mut SubscribeResult,
    since: &StreamPosition,
    top: &StreamPosition,
    history: &[Arc<Publication>],
) {
    r.was_recovering = true;
    let same_epoch = since.epoch.is_empty() || since.epoch == top.epoch;
    let up_to_date = since.offset > 0 && since.offset == top.offset && same_epoch;
    match history.last() {
        Some(latest) if latest.offset == top.offset => {
            r.recovered = true;
            r.offset = since.offset;
            if !up_to_date {
                r.publications = vec![Publication::clone(latest)];
            }
        }
        // The latest publication expired, or there never was one: recovered only if the
        // client is at the top already.
        _ => r.recovered = up_to_date,
    }
}
