//! Admission control by bytes: the one bound on memory held for accepted, unacknowledged records.
//!
//! A [`Permit`] is taken before a record enters librdkafka and travels with it; dropping it (after
//! the delivery report, or when enqueueing fails) gives the bytes back. Lock-free: one CAS per take.
//!
//! When a take fails, [`ByteBudget::retry_hint`] estimates how long until the bytes are free from
//! the measured drain rate: short while Kafka keeps up, up to the maximum while it is down, so an
//! outage does not turn into every worker retrying every few milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The drain rate is re-measured at most this often.
const DRAIN_SAMPLE_MIN: Duration = Duration::from_millis(50);
/// An older sample is too stale to average with.
const DRAIN_SAMPLE_MAX: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct DrainSample {
    at: Instant,
    released: u64,
    bytes_per_second: f64,
}

/// Bytes and records currently admitted, against a byte capacity.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    used: AtomicU64,
    records: AtomicU64,
    released: AtomicU64,
    drain: Mutex<DrainSample>,
}

impl ByteBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: u64) -> Arc<Self> {
        let drain = DrainSample { at: Instant::now(), released: 0, bytes_per_second: 0.0 };
        Arc::new(Self {
            capacity,
            used: AtomicU64::new(0),
            records: AtomicU64::new(0),
            released: AtomicU64::new(0),
            drain: Mutex::new(drain),
        })
    }

    /// How long until `bytes` more are likely to fit, between `min` and `max`.
    pub fn retry_hint(&self, bytes: u64, min: Duration, max: Duration) -> Duration {
        let missing = (self.used_bytes() + bytes).saturating_sub(self.capacity).max(1);
        let rate = {
            let mut sample = crate::sync::lock(&self.drain);
            let now = Instant::now();
            let elapsed = now.duration_since(sample.at);
            if elapsed >= DRAIN_SAMPLE_MIN {
                let released = self.released.load(Ordering::Acquire);
                let rate = (released - sample.released) as f64 / elapsed.as_secs_f64();
                // Nothing released for a whole sample while records wait means Kafka is stalled:
                // forget the old rate rather than average it down slowly.
                let stalled = rate == 0.0;
                sample.bytes_per_second =
                    if stalled || elapsed > DRAIN_SAMPLE_MAX { rate } else { (sample.bytes_per_second + rate) / 2.0 };
                sample.at = now;
                sample.released = released;
            }
            sample.bytes_per_second
        };
        if rate <= 0.0 {
            return max;
        }
        Duration::from_secs_f64(missing as f64 / rate).clamp(min, max)
    }

    /// Takes `bytes` for `records` records if they fit, or returns `None` (backpressure).
    pub fn try_acquire(self: &Arc<Self>, bytes: u64, records: u64) -> Option<Permit> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.checked_add(bytes).filter(|next| *next <= self.capacity)?;
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => used = actual,
            }
        }
        self.records.fetch_add(records, Ordering::AcqRel);
        Some(Permit { budget: Arc::clone(self), bytes, records })
    }

    /// Bytes admitted and not yet released.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Records admitted and not yet released.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Acquire)
    }

    /// The configured capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

/// Admitted bytes, released on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<ByteBudget>,
    bytes: u64,
    records: u64,
}

impl Permit {
    /// Splits off a permit for one record of `bytes`, leaving the rest here.
    pub fn split_record(&mut self, bytes: u64) -> Permit {
        let bytes = bytes.min(self.bytes);
        let records = u64::from(self.records > 0);
        self.bytes -= bytes;
        self.records -= records;
        Permit { budget: Arc::clone(&self.budget), bytes, records }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.released.fetch_add(self.bytes, Ordering::AcqRel);
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.records.fetch_sub(self.records, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_capacity_and_releases_on_drop() {
        let budget = ByteBudget::new(100);
        let first = budget.try_acquire(60, 1).expect("fits");
        assert!(budget.try_acquire(41, 1).is_none());
        let second = budget.try_acquire(40, 1).expect("fits exactly");
        assert_eq!((budget.used_bytes(), budget.records()), (100, 2));
        drop(first);
        drop(second);
        assert_eq!((budget.used_bytes(), budget.records()), (0, 0));
    }

    #[test]
    fn retry_hint_follows_the_drain_rate() {
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(1));
        let budget = ByteBudget::new(1000);
        let held = budget.try_acquire(1000, 1).expect("fits");
        std::thread::sleep(DRAIN_SAMPLE_MIN);
        assert_eq!(budget.retry_hint(100, min, max), max, "nothing drains: wait the longest");
        drop(held);
        let _again = budget.try_acquire(1000, 1).expect("fits");
        std::thread::sleep(DRAIN_SAMPLE_MIN);
        let hint = budget.retry_hint(100, min, max);
        assert!(hint >= min && hint < max, "draining: a shorter wait, got {hint:?}");
    }

    #[test]
    fn split_permits_release_independently() {
        let budget = ByteBudget::new(100);
        let mut batch = budget.try_acquire(30, 3).expect("fits");
        let one = batch.split_record(10);
        let two = batch.split_record(10);
        drop(one);
        assert_eq!((budget.used_bytes(), budget.records()), (20, 2));
        drop(batch);
        assert_eq!((budget.used_bytes(), budget.records()), (10, 1));
        drop(two);
        assert_eq!((budget.used_bytes(), budget.records()), (0, 0));
    }
}
