//! One session's delivery reports: a bounded ring with per-session sequence numbers and a watch
//! channel that wakes the session's streams.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::record::{DeliveryOutcome, DeliveryReport};

struct RingState {
    next_seq: u64,
    reports: VecDeque<DeliveryReport>,
    closed: bool,
    last_active: Instant,
}

/// Reports kept for one session.
pub struct SessionRing {
    state: Mutex<RingState>,
    wake: watch::Sender<u64>,
    capacity: usize,
    /// Reports kept across all sessions, shared with the hub.
    buffered: Arc<AtomicUsize>,
    max_buffered: usize,
}

/// What a push did besides storing the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Stored, nothing lost.
    Kept,
    /// Stored, and the oldest report fell off.
    DroppedOldest,
}

impl SessionRing {
    pub(super) fn new(capacity: usize, buffered: Arc<AtomicUsize>, max_buffered: usize) -> Self {
        let state = RingState { next_seq: 1, reports: VecDeque::new(), closed: false, last_active: Instant::now() };
        Self { state: Mutex::new(state), wake: watch::channel(0).0, capacity, buffered, max_buffered }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Stores a report, dropping the oldest when this ring or the global budget is full.
    pub fn push(&self, record_id: u64, topic: &str, outcome: DeliveryOutcome, latency_us: u64) -> Pushed {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.last_active = Instant::now();
        let full = state.reports.len() >= self.capacity || self.buffered.load(Ordering::Relaxed) >= self.max_buffered;
        let pushed = if full && state.reports.pop_front().is_some() {
            Pushed::DroppedOldest
        } else {
            self.buffered.fetch_add(1, Ordering::Relaxed);
            Pushed::Kept
        };
        state.reports.push_back(DeliveryReport { seq, record_id, topic: topic.to_string(), outcome, latency_us });
        drop(state);
        self.wake.send_replace(seq);
        pushed
    }

    /// Up to `max` reports with `seq > after`, and whether the ring is closed.
    pub fn read_after(&self, after: u64, max: usize) -> (Vec<DeliveryReport>, bool) {
        let mut state = self.lock();
        state.last_active = Instant::now();
        let start = state.reports.partition_point(|report| report.seq <= after);
        let reports = state.reports.iter().skip(start).take(max).cloned().collect();
        (reports, state.closed)
    }

    /// Forgets reports up to and including `seq`: the client has them.
    pub fn acknowledge(&self, seq: u64) {
        let mut state = self.lock();
        let keep_from = state.reports.partition_point(|report| report.seq <= seq);
        state.reports.drain(..keep_from);
        self.buffered.fetch_sub(keep_from, Ordering::Relaxed);
    }

    /// A receiver woken on every new report and on close.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Ends every stream of this session once it has read what is kept.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.send_modify(|_| {});
    }

    /// Whether a stream is attached.
    pub fn has_subscribers(&self) -> bool {
        self.wake.receiver_count() > 0
    }

    /// When the session last received a report or was read.
    pub fn last_active(&self) -> Instant {
        self.lock().last_active
    }

    /// Reports kept.
    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    /// Whether no report is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for SessionRing {
    fn drop(&mut self) {
        let kept = self.lock().reports.len();
        self.buffered.fetch_sub(kept, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Delivered;

    fn delivered(offset: i64) -> DeliveryOutcome {
        Ok(Delivered { partition: 0, offset, timestamp_ms: None })
    }

    #[test]
    fn resumes_after_a_seq_and_drops_oldest_when_full() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let ring = SessionRing::new(3, Arc::clone(&buffered), 100);
        for offset in 0..4 {
            ring.push(offset as u64, "t", delivered(offset), 1);
        }
        let (all, closed) = ring.read_after(0, 10);
        assert!(!closed);
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let (after_three, _) = ring.read_after(3, 10);
        assert_eq!(after_three.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(buffered.load(Ordering::Relaxed), 3);
        ring.acknowledge(3);
        assert_eq!((ring.len(), buffered.load(Ordering::Relaxed)), (1, 1));
        drop(ring);
        assert_eq!(buffered.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn global_budget_bounds_all_rings() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let first = SessionRing::new(10, Arc::clone(&buffered), 4);
        let second = SessionRing::new(10, Arc::clone(&buffered), 4);
        for id in 0..3 {
            first.push(id, "t", delivered(0), 1);
        }
        assert_eq!(second.push(9, "t", delivered(0), 1), Pushed::Kept);
        assert_eq!(first.push(3, "t", delivered(0), 1), Pushed::DroppedOldest);
        assert_eq!(buffered.load(Ordering::Relaxed), 4);
    }
}
