//! One session's delivery reports: per-session sequence numbers, a watch channel that wakes the
//! session's streams, and flow control that makes losing a report impossible.
//!
//! A record sent with a session id reserves its report's slot when it is admitted
//! ([`SessionRing::try_reserve`]); the delivery callback fills the slot. Slots are bounded per
//! session (`capacity`) and across sessions (`max_pending`), counting reports reserved or not
//! yet sent; a session whose reader falls behind is refused new records (`QUEUE_FULL`) instead of
//! having its reports dropped. Reports already sent are kept within a resend window, for a worker
//! that reconnects and resumes from the last report it *processed*, and released once the session
//! has had no stream for a while.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::record::{DeliveryOutcome, DeliveryReport};

/// Sent reports kept for a reconnecting worker to resume from; older ones are forgotten.
pub const RESEND_WINDOW: u64 = 2_048;

struct RingState {
    next_seq: u64,
    /// The highest seq handed to a stream (or acknowledged by the client).
    sent_through: u64,
    reports: VecDeque<DeliveryReport>,
    /// Slots reserved by admitted records whose report has not come yet.
    reserved: usize,
    /// Kept reports not yet sent on any stream.
    unsent: usize,
    closed: bool,
    last_active: Instant,
}

/// Reports kept for one session.
pub struct SessionRing {
    state: Mutex<RingState>,
    wake: watch::Sender<u64>,
    capacity: usize,
    /// Reserved and unsent reports across all sessions, shared with the hub.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

/// A reserved place for one record's report; released unused if the record never reaches Kafka.
pub struct ReportSlot {
    ring: Arc<SessionRing>,
    filled: bool,
}

impl ReportSlot {
    /// Stores the report in the reserved slot and wakes the session's streams.
    pub fn fill(mut self, record_id: u64, topic: &str, outcome: DeliveryOutcome, latency_us: u64) {
        self.filled = true;
        let ring = &self.ring;
        let mut state = ring.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.reserved -= 1;
        state.unsent += 1;
        state.reports.push_back(DeliveryReport { seq, record_id, topic: topic.to_string(), outcome, latency_us });
        drop(state);
        ring.wake.send_replace(seq);
    }
}

impl Drop for ReportSlot {
    fn drop(&mut self) {
        if !self.filled {
            self.ring.lock().reserved -= 1;
            self.ring.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl SessionRing {
    pub(super) fn new(capacity: usize, pending: Arc<AtomicUsize>, max_pending: usize) -> Self {
        let state = RingState {
            next_seq: 1,
            sent_through: 0,
            reports: VecDeque::new(),
            reserved: 0,
            unsent: 0,
            closed: false,
            last_active: Instant::now(),
        };
        Self { state: Mutex::new(state), wake: watch::channel(0).0, capacity, pending, max_pending }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        crate::sync::lock(&self.state)
    }

    /// Reserves the slot for one record's report, or `None` while this session (or all sessions
    /// together) have as many reports reserved or unread as they may hold.
    pub fn try_reserve(self: &Arc<Self>) -> Option<ReportSlot> {
        let mut state = self.lock();
        if state.reserved + state.unsent >= self.capacity {
            return None;
        }
        let max = self.max_pending;
        self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        state.reserved += 1;
        Some(ReportSlot { ring: Arc::clone(self), filled: false })
    }

    /// Up to `max` reports with `seq > after`, marked sent, and whether the ring is closed.
    pub fn read_after(&self, after: u64, max: usize) -> (Vec<DeliveryReport>, bool) {
        let mut state = self.lock();
        state.last_active = Instant::now();
        let start = state.reports.partition_point(|report| report.seq <= after);
        let reports: Vec<DeliveryReport> = state.reports.iter().skip(start).take(max).cloned().collect();
        if let Some(last) = reports.last() {
            self.mark_sent_through(&mut state, last.seq);
            let forget_through = state.sent_through.saturating_sub(RESEND_WINDOW);
            forget_through_seq(&mut state, forget_through);
        }
        (reports, state.closed)
    }

    /// Forgets reports up to and including `seq`: the client has processed them.
    pub fn acknowledge(&self, seq: u64) {
        let mut state = self.lock();
        let seq = seq.min(state.next_seq - 1);
        self.mark_sent_through(&mut state, seq);
        forget_through_seq(&mut state, seq);
    }

    /// Forgets every sent report: nobody has streamed this session for a while.
    pub fn release_sent(&self) {
        let mut state = self.lock();
        let sent_through = state.sent_through;
        forget_through_seq(&mut state, sent_through);
    }

    fn mark_sent_through(&self, state: &mut RingState, seq: u64) {
        if seq <= state.sent_through {
            return;
        }
        let from = state.reports.partition_point(|report| report.seq <= state.sent_through);
        let to = state.reports.partition_point(|report| report.seq <= seq);
        let newly_sent = to - from;
        state.unsent -= newly_sent;
        self.pending.fetch_sub(newly_sent, Ordering::AcqRel);
        state.sent_through = seq;
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

    /// Whether records are in flight or reports wait to be read: forgetting it would lose them.
    pub fn has_pending(&self) -> bool {
        let state = self.lock();
        state.reserved + state.unsent > 0
    }

    /// Marks the session as used now.
    pub fn touch(&self) {
        self.lock().last_active = Instant::now();
    }

    /// How long since the session was last used or read.
    pub fn idle_for(&self) -> Duration {
        self.lock().last_active.elapsed()
    }

    /// Reports kept, sent or not.
    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    /// Whether no report is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn forget_through_seq(state: &mut RingState, seq: u64) {
    let keep_from = state.reports.partition_point(|report| report.seq <= seq.min(state.sent_through));
    state.reports.drain(..keep_from);
}

impl Drop for SessionRing {
    fn drop(&mut self) {
        // Reserved slots hold the ring, so only unsent reports can remain here.
        let unsent = self.lock().unsent;
        self.pending.fetch_sub(unsent, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Delivered;

    fn ring(capacity: usize, pending: &Arc<AtomicUsize>, max_pending: usize) -> Arc<SessionRing> {
        Arc::new(SessionRing::new(capacity, Arc::clone(pending), max_pending))
    }

    fn fill(ring: &Arc<SessionRing>, record_id: u64) {
        let slot = ring.try_reserve().expect("slot");
        slot.fill(record_id, "t", Ok(Delivered { partition: 0, offset: 0, timestamp_ms: None }), 1);
    }

    #[test]
    fn a_session_that_does_not_read_is_refused_instead_of_losing_reports() {
        let pending = Arc::new(AtomicUsize::new(0));
        let ring = ring(3, &pending, 100);
        for id in 0..3 {
            fill(&ring, id);
        }
        assert!(ring.try_reserve().is_none(), "full of unread reports");
        let (read, _) = ring.read_after(0, 2);
        assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(pending.load(Ordering::Acquire), 1);
        assert!(ring.try_reserve().is_some(), "reading frees slots");
    }

    #[test]
    fn unused_slots_are_released() {
        let pending = Arc::new(AtomicUsize::new(0));
        let ring = ring(1, &pending, 100);
        let slot = ring.try_reserve().expect("slot");
        assert!(ring.try_reserve().is_none());
        drop(slot);
        assert_eq!(pending.load(Ordering::Acquire), 0);
        assert!(ring.try_reserve().is_some());
    }

    #[test]
    fn the_global_bound_spans_sessions() {
        let pending = Arc::new(AtomicUsize::new(0));
        let (first, second) = (ring(10, &pending, 2), ring(10, &pending, 2));
        fill(&first, 1);
        let _held = second.try_reserve().expect("slot");
        assert!(first.try_reserve().is_none() && second.try_reserve().is_none());
        drop(first);
        assert_eq!(pending.load(Ordering::Acquire), 1, "a dropped ring returns its unsent reports");
    }

    #[test]
    fn sent_reports_stay_within_the_resend_window_and_can_be_resent() {
        let pending = Arc::new(AtomicUsize::new(0));
        let ring = ring(100_000, &pending, 100_000);
        let total = RESEND_WINDOW + 100;
        for id in 0..total {
            fill(&ring, id);
        }
        let (sent, _) = ring.read_after(0, usize::MAX);
        assert_eq!(sent.len() as u64, total);
        assert_eq!(ring.len() as u64, RESEND_WINDOW, "older sent reports forgotten");
        assert_eq!(pending.load(Ordering::Acquire), 0, "sent reports do not hold slots");
        let (resumed, _) = ring.read_after(total - 10, usize::MAX);
        assert_eq!(resumed.len(), 10, "recent ones can be resent");
        ring.release_sent();
        assert!(ring.is_empty());
    }

    #[test]
    fn acknowledging_past_unsent_reports_frees_their_slots() {
        let pending = Arc::new(AtomicUsize::new(0));
        let ring = ring(10, &pending, 10);
        for id in 0..4 {
            fill(&ring, id);
        }
        ring.acknowledge(3);
        assert_eq!((ring.len(), pending.load(Ordering::Acquire)), (1, 1));
        let (rest, _) = ring.read_after(3, 10);
        assert_eq!(rest.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![4]);
    }
}
