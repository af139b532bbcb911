//! One session's delivery reports: a bounded ring with per-session sequence numbers and a watch
//! channel that wakes the session's streams.
//!
//! Reports already sent on a stream are kept only within a resend window (a worker that reconnects
//! resumes from the last report it *processed*, which may be behind what was sent), so memory goes
//! to reports nobody has seen yet. A report is counted as lost only if it was never sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::record::{DeliveryOutcome, DeliveryReport};

/// Sent reports kept for a reconnecting worker to resume from; beyond this they are forgotten.
pub const RESEND_WINDOW: u64 = 8_192;

struct RingState {
    next_seq: u64,
    /// The highest seq handed to a stream.
    sent_through: u64,
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
    /// Stored, and the oldest report, never sent, fell off.
    DroppedOldest,
}

impl SessionRing {
    pub(super) fn new(capacity: usize, buffered: Arc<AtomicUsize>, max_buffered: usize) -> Self {
        let state = RingState {
            next_seq: 1,
            sent_through: 0,
            reports: VecDeque::new(),
            closed: false,
            last_active: Instant::now(),
        };
        Self { state: Mutex::new(state), wake: watch::channel(0).0, capacity, buffered, max_buffered }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        crate::sync::lock(&self.state)
    }

    /// Stores a report, dropping the oldest when this ring or the global budget is full.
    pub fn push(&self, record_id: u64, topic: &str, outcome: DeliveryOutcome, latency_us: u64) -> Pushed {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.last_active = Instant::now();
        let full = state.reports.len() >= self.capacity || self.buffered.load(Ordering::Relaxed) >= self.max_buffered;
        let pushed = match full.then(|| state.reports.pop_front()).flatten() {
            Some(oldest) if oldest.seq > state.sent_through => Pushed::DroppedOldest,
            Some(_) => Pushed::Kept,
            None => {
                self.buffered.fetch_add(1, Ordering::Relaxed);
                Pushed::Kept
            }
        };
        state.reports.push_back(DeliveryReport { seq, record_id, topic: topic.to_string(), outcome, latency_us });
        drop(state);
        self.wake.send_replace(seq);
        pushed
    }

    /// Up to `max` reports with `seq > after`, marked sent, and whether the ring is closed.
    pub fn read_after(&self, after: u64, max: usize) -> (Vec<DeliveryReport>, bool) {
        let mut state = self.lock();
        state.last_active = Instant::now();
        let start = state.reports.partition_point(|report| report.seq <= after);
        let reports: Vec<DeliveryReport> = state.reports.iter().skip(start).take(max).cloned().collect();
        if let Some(last) = reports.last() {
            state.sent_through = state.sent_through.max(last.seq);
            let forget_through = state.sent_through.saturating_sub(RESEND_WINDOW);
            self.forget_through(&mut state, forget_through);
        }
        (reports, state.closed)
    }

    /// Forgets reports up to and including `seq`: the client has processed them.
    pub fn acknowledge(&self, seq: u64) {
        let mut state = self.lock();
        state.sent_through = state.sent_through.max(seq.min(state.next_seq - 1));
        self.forget_through(&mut state, seq);
    }

    fn forget_through(&self, state: &mut RingState, seq: u64) {
        let keep_from = state.reports.partition_point(|report| report.seq <= seq);
        state.reports.drain(..keep_from);
        self.buffered.fetch_sub(keep_from, Ordering::Relaxed);
    }

    /// The seq the next report will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
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
    fn sent_reports_are_kept_only_within_the_resend_window() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let ring = SessionRing::new(100_000, Arc::clone(&buffered), 100_000);
        let total = RESEND_WINDOW + 100;
        for id in 0..total {
            ring.push(id, "t", delivered(0), 1);
        }
        let (sent, _) = ring.read_after(0, usize::MAX);
        assert_eq!(sent.len() as u64, total);
        assert_eq!(ring.len() as u64, RESEND_WINDOW, "older sent reports forgotten");
        let (resumed, _) = ring.read_after(total - 10, usize::MAX);
        assert_eq!(resumed.len(), 10, "recent ones can be resent");
    }

    #[test]
    fn evicting_a_sent_report_is_not_a_loss() {
        let ring = SessionRing::new(2, Arc::new(AtomicUsize::new(0)), 100);
        ring.push(1, "t", delivered(0), 1);
        ring.push(2, "t", delivered(0), 1);
        ring.read_after(0, 1);
        assert_eq!(ring.push(3, "t", delivered(0), 1), Pushed::Kept, "seq 1 was sent");
        assert_eq!(ring.push(4, "t", delivered(0), 1), Pushed::DroppedOldest, "seq 2 never was");
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
