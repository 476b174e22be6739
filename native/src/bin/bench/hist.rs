//! A lock-free latency histogram in microseconds: log-linear buckets (32 per power of two,
//! so about 3% precision), shared by every client task.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const LINEAR: u64 = 64;
const SUB_BITS: u32 = 5;
const BUCKETS: usize = 64 + 58 * 32;

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub fn record(&self, micros: u64) {
        self.buckets[index(micros)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max.fetch_max(micros, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }

    /// The value below which `q` (0..=1) of the samples fall (bucket midpoint), or 0 if empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        let rank = ((count as f64 * q).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= rank {
                let (lo, hi) = bounds(i);
                return ((lo + hi) / 2).min(self.max());
            }
        }
        self.max()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (exp - SUB_BITS)) & 31;
    (LINEAR + (exp as u64 - 6) * 32 + sub).min(BUCKETS as u64 - 1) as usize
}

/// [lo, hi) of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i + 1);
    }
    let exp = (i - LINEAR) / 32 + 6;
    let sub = (i - LINEAR) % 32;
    let lo = (32 + sub) << (exp - SUB_BITS as u64);
    (lo, lo + (1 << (exp - SUB_BITS as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_contain_their_values() {
        for v in [0u64, 1, 63, 64, 65, 100, 1000, 12_345, 1 << 20, (1 << 40) + 7] {
            let (lo, hi) = bounds(index(v));
            assert!(lo <= v && v < hi, "{v} not in [{lo}, {hi})");
        }
    }
}
