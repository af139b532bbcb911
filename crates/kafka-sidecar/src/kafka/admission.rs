//! Admission control by bytes: the one bound on memory held for accepted, unacknowledged records.
//!
//! A [`Permit`] is taken before a record enters librdkafka and travels with it; dropping it (after
//! the delivery report, or when enqueueing fails) gives the bytes back. Lock-free: one CAS per take.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes and records currently admitted, against a byte capacity.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    used: AtomicU64,
    records: AtomicU64,
}

impl ByteBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(Self { capacity, used: AtomicU64::new(0), records: AtomicU64::new(0) })
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
