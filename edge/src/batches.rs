//! Per-peer queues with one batch in flight: how node objects send broker requests to channel
//! objects, and channel objects send events to node objects, in the order they were made.
//! Pure: the host runs one sender per peer while [`Batches::push`] says one must start.

use std::collections::HashMap;

pub struct Batches<T> {
    queues: HashMap<String, Vec<T>>,
}

impl<T> Default for Batches<T> {
    fn default() -> Self {
        Batches { queues: HashMap::new() }
    }
}

impl<T> Batches<T> {
    /// Queues `item` for `peer`. True when no sender runs for that peer: the caller starts
    /// one, which takes batches until [`Batches::take`] says the queue is done.
    pub fn push(&mut self, peer: &str, item: T) -> bool {
        match self.queues.get_mut(peer) {
            Some(queue) => {
                queue.push(item);
                false
            }
            None => {
                self.queues.insert(peer.to_owned(), vec![item]);
                true
            }
        }
    }

    /// Everything queued for `peer` since the last batch; None when nothing is, and the
    /// peer's sender stops (the next push starts a new one).
    pub fn take(&mut self, peer: &str) -> Option<Vec<T>> {
        let queue = self.queues.get_mut(peer)?;
        if queue.is_empty() {
            self.queues.remove(peer);
            return None;
        }
        Some(std::mem::take(queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sender_per_peer_takes_batches_in_order_until_empty() {
        let mut b = Batches::default();
        assert!(b.push("a", 1), "the first item starts a sender");
        assert!(!b.push("a", 2), "a sender runs already");
        assert!(b.push("b", 9));
        assert_eq!(b.take("a"), Some(vec![1, 2]));
        assert!(!b.push("a", 3), "still running while its batch is in flight");
        assert_eq!(b.take("a"), Some(vec![3]));
        assert_eq!(b.take("a"), None, "empty: the sender stops");
        assert!(b.push("a", 4), "and the next item starts a new one");
        assert_eq!(b.take("b"), Some(vec![9]));
    }
}
