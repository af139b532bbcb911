//! Admission control by bytes: the one bound on memory held for accepted, unacknowledged records,
//! shared fairly among the senders competing for it, and the retry hint given when it refuses.
//!
//! A [`Permit`] is taken before a record enters librdkafka and travels with it; dropping it (after
//! the delivery report, or when enqueueing fails) gives the bytes back. Taking one is lock-free:
//! one CAS on the budget and one add on the sender's [`SenderShare`].
//!
//! Fairness: a call resolves its sender (its session, or its client id without one) once, with one
//! short lock that also notes the sender as active. While the budget is more than three quarters
//! full, a sender already holding more than its fair share (capacity / senders active recently, at
//! least one largest record) is refused first, so one flooding worker cannot starve the others: the
//! last quarter stays free for senders within their share, and as a flooder's records drain, the
//! others take its place. A lone sender's share is the whole budget, and below three quarters
//! nobody is refused for fairness, so a busy sender still uses what the others leave idle.
//!
//! When a take fails, [`ByteBudget::retry_hint`] estimates how long until the bytes are free from
//! the measured drain rate: short while Kafka keeps up, up to the cap while it is down, so an
//! outage does not turn into every worker retrying every few milliseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::record::Origin;

/// The drain rate is re-measured at most this often.
const DRAIN_SAMPLE_MIN: Duration = Duration::from_millis(50);
/// An older sample is too stale to average with.
const DRAIN_SAMPLE_MAX: Duration = Duration::from_secs(2);
/// Active senders are recounted (and idle ones forgotten) at most this often.
const RECOUNT_INTERVAL: Duration = Duration::from_millis(100);
/// Senders tracked one by one; beyond this, new ones share a single overflow share.
const MAX_SENDERS: usize = 4096;
/// Above `capacity - capacity / CONTENDED_HEADROOM` the budget is contended.
const CONTENDED_HEADROOM: u64 = 4;

#[derive(Debug)]
struct DrainSample {
    at: Instant,
    released: u64,
    bytes_per_second: f64,
}

/// How the budget is shared among senders.
#[derive(Debug, Clone, Copy)]
pub struct Fairness {
    /// The smallest fair share, whatever the number of senders: one largest record.
    pub min_share_bytes: u64,
    /// A sender counts as active this long after its last call (or while it holds bytes).
    pub active_window: Duration,
}

/// Who competes for the budget: one producer instance, or an application without sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderId<'a> {
    /// A gRPC `session_id`: one worker process.
    Session(&'a str),
    /// A client id (the HTTP `X-Client-Id`, or gRPC without a session).
    Client(&'a str),
}

impl<'a> SenderId<'a> {
    /// The sender of a call: its session when it has one, else its client id.
    pub fn of(origin: &'a Origin) -> Self {
        if origin.session_id.is_empty() { Self::Client(&origin.client_id) } else { Self::Session(&origin.session_id) }
    }
}

/// Bytes one sender holds in the budget.
#[derive(Debug, Default)]
pub struct SenderShare {
    held: AtomicU64,
}

impl SenderShare {
    /// Bytes this sender has admitted and not yet released.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct SenderEntry {
    share: Arc<SenderShare>,
    last_seen: Instant,
}

impl SenderEntry {
    fn new(now: Instant) -> Self {
        Self { share: Arc::default(), last_seen: now }
    }

    fn touch(&mut self, now: Instant) -> Arc<SenderShare> {
        self.last_seen = self.last_seen.max(now);
        Arc::clone(&self.share)
    }

    fn is_active(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_seen) < window || self.share.held_bytes() > 0
    }
}

/// Every sender seen recently, by kind; only touched once per call.
#[derive(Debug)]
struct SenderTable {
    sessions: HashMap<String, SenderEntry>,
    clients: HashMap<String, SenderEntry>,
    overflow: SenderEntry,
    recounted_at: Instant,
}

impl SenderTable {
    /// The sender's share, noting it active at `now`; whether it is new.
    fn touch(&mut self, id: SenderId<'_>, now: Instant) -> (Arc<SenderShare>, bool) {
        let full = self.sessions.len() + self.clients.len() >= MAX_SENDERS;
        let (map, key) = match id {
            SenderId::Session(key) => (&mut self.sessions, key),
            SenderId::Client(key) => (&mut self.clients, key),
        };
        if let Some(entry) = map.get_mut(key) {
            return (entry.touch(now), false);
        }
        if full {
            return (self.overflow.touch(now), false);
        }
        let entry = map.entry(key.to_string()).or_insert_with(|| SenderEntry::new(now));
        (Arc::clone(&entry.share), true)
    }

    /// Forgets senders idle for `window` that nothing references, and counts the active ones.
    fn recount(&mut self, now: Instant, window: Duration) -> u64 {
        let mut active = u64::from(self.overflow.is_active(now, window));
        for map in [&mut self.sessions, &mut self.clients] {
            map.retain(|_, entry| {
                let is_active = entry.is_active(now, window);
                active += u64::from(is_active);
                is_active || Arc::strong_count(&entry.share) > 1
            });
        }
        self.recounted_at = now;
        active
    }
}

/// Why a take failed, and how many bytes would have to drain for it to succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The budget itself is full, or only the sender's fair share is.
    pub reason: RefusalReason,
    /// Bytes that must be released before the same take would fit.
    pub missing_bytes: u64,
}

/// What a take ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No room in the budget.
    Full,
    /// The budget is contended and this sender already holds its fair share.
    OverFairShare,
}

/// The bounds of the backpressure retry hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBounds {
    /// The shortest hint.
    pub floor: Duration,
    /// The longest hint: what a client waits while Kafka drains nothing at all.
    pub cap: Duration,
}

impl RetryBounds {
    /// `estimate` within the bounds, plus up to 25% jitter that keeps it within them (so it
    /// spreads the retries of workers refused together). `draw(n)` returns a number in `0..=n`.
    pub fn hint(&self, estimate: Duration, draw: impl FnOnce(u64) -> u64) -> Duration {
        let cap = self.cap.max(self.floor);
        let base = estimate.max(self.floor).min(cap);
        let room = u64::try_from((cap - base).as_millis()).unwrap_or(u64::MAX);
        let spread = (u64::try_from(base.as_millis()).unwrap_or(u64::MAX) / 4).min(room);
        (base + Duration::from_millis(draw(spread).min(spread))).min(cap)
    }
}

/// Bytes and records currently admitted, against a byte capacity.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    contended_above: u64,
    used: AtomicU64,
    records: AtomicU64,
    released: AtomicU64,
    drain: Mutex<DrainSample>,
    fairness: Fairness,
    senders: Mutex<SenderTable>,
    active_senders: AtomicU64,
}

impl ByteBudget {
    /// A budget of `capacity` bytes, shared among senders as `fairness` says.
    pub fn new(capacity: u64, fairness: Fairness) -> Arc<Self> {
        let now = Instant::now();
        let drain = DrainSample { at: now, released: 0, bytes_per_second: 0.0 };
        let senders = SenderTable {
            sessions: HashMap::new(),
            clients: HashMap::new(),
            // Not active until someone lands in it.
            overflow: SenderEntry::new(now.checked_sub(fairness.active_window).unwrap_or(now)),
            recounted_at: now,
        };
        Arc::new(Self {
            capacity,
            contended_above: capacity - capacity / CONTENDED_HEADROOM,
            used: AtomicU64::new(0),
            records: AtomicU64::new(0),
            released: AtomicU64::new(0),
            drain: Mutex::new(drain),
            fairness,
            senders: Mutex::new(senders),
            active_senders: AtomicU64::new(0),
        })
    }

    /// The share of `sender`, noting it active at `now`. Call once per call, not per record.
    pub fn sender(&self, sender: SenderId<'_>, now: Instant) -> Arc<SenderShare> {
        let mut table = crate::sync::lock(&self.senders);
        let (share, new) = table.touch(sender, now);
        if new {
            self.active_senders.fetch_add(1, Ordering::AcqRel);
        }
        if now.saturating_duration_since(table.recounted_at) >= RECOUNT_INTERVAL {
            self.active_senders.store(table.recount(now, self.fairness.active_window), Ordering::Release);
        }
        share
    }

    /// Senders counted for fair shares: those active within the window or holding bytes.
    pub fn active_senders(&self) -> u64 {
        self.active_senders.load(Ordering::Acquire)
    }

    /// What one sender may hold while the budget is contended.
    pub fn fair_share(&self) -> u64 {
        let share = self.capacity / self.active_senders().max(1);
        share.max(self.fairness.min_share_bytes).min(self.capacity)
    }

    /// How long until `missing` bytes are likely to be released, between the bounds (no jitter).
    pub fn retry_hint(&self, missing: u64, bounds: RetryBounds) -> Duration {
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
        let estimate = if rate <= 0.0 { bounds.cap } else { Duration::from_secs_f64(missing.max(1) as f64 / rate) };
        estimate.max(bounds.floor).min(bounds.cap.max(bounds.floor))
    }

    /// Takes `bytes` for `records` records of `sender` if they fit and the sender is within its
    /// fair share of a contended budget; else says why not (backpressure).
    pub fn try_acquire(
        self: &Arc<Self>,
        bytes: u64,
        records: u64,
        sender: &Arc<SenderShare>,
    ) -> Result<Permit, Refusal> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(bytes);
            if next > self.capacity {
                return Err(Refusal { reason: RefusalReason::Full, missing_bytes: next - self.capacity });
            }
            if next > self.contended_above {
                // Contended: a sender already holding its share waits for it to drain. One that
                // holds nothing always gets in, so even a record larger than the share moves.
                let held = sender.held.load(Ordering::Relaxed);
                let share = self.fair_share();
                if held > 0 && held + bytes > share {
                    let missing_bytes = held + bytes - share;
                    return Err(Refusal { reason: RefusalReason::OverFairShare, missing_bytes });
                }
            }
            match self.used.compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => used = actual,
            }
        }
        sender.held.fetch_add(bytes, Ordering::AcqRel);
        self.records.fetch_add(records, Ordering::AcqRel);
        Ok(Permit { budget: Arc::clone(self), sender: Arc::clone(sender), bytes, records })
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
    sender: Arc<SenderShare>,
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
        Permit { budget: Arc::clone(&self.budget), sender: Arc::clone(&self.sender), bytes, records }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sender.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.released.fetch_add(self.bytes, Ordering::AcqRel);
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.records.fetch_sub(self.records, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIRNESS: Fairness = Fairness { min_share_bytes: 0, active_window: Duration::from_secs(2) };

    fn budget(capacity: u64) -> Arc<ByteBudget> {
        ByteBudget::new(capacity, FAIRNESS)
    }

    #[test]
    fn refuses_beyond_capacity_and_releases_on_drop() {
        let budget = budget(100);
        let sender = budget.sender(SenderId::Session("a"), Instant::now());
        let first = budget.try_acquire(60, 1, &sender).expect("fits");
        let refusal = budget.try_acquire(41, 1, &sender).expect_err("full");
        assert_eq!(refusal, Refusal { reason: RefusalReason::Full, missing_bytes: 1 });
        let second = budget.try_acquire(40, 1, &sender).expect("a lone sender may use everything");
        assert_eq!((budget.used_bytes(), budget.records(), sender.held_bytes()), (100, 2, 100));
        drop(first);
        drop(second);
        assert_eq!((budget.used_bytes(), budget.records(), sender.held_bytes()), (0, 0, 0));
    }

    #[test]
    fn a_sender_over_its_share_of_a_contended_budget_is_refused_first() {
        let budget = budget(1000);
        let now = Instant::now();
        let flooder = budget.sender(SenderId::Session("flooder"), now);
        let modest = budget.sender(SenderId::Session("modest"), now);
        assert_eq!((budget.active_senders(), budget.fair_share()), (2, 500));
        let mut held = Vec::new();
        while let Ok(permit) = budget.try_acquire(100, 1, &flooder) {
            held.push(permit);
        }
        assert_eq!(flooder.held_bytes(), 700, "anything up to three quarters, then refused: over its share");
        let refusal = budget.try_acquire(100, 1, &flooder).expect_err("over its share");
        assert_eq!(refusal, Refusal { reason: RefusalReason::OverFairShare, missing_bytes: 300 });
        let others: Vec<Permit> =
            (0..3).map(|_| budget.try_acquire(100, 1, &modest).expect("the last quarter")).collect();
        assert_eq!(budget.try_acquire(100, 1, &modest).expect_err("full").reason, RefusalReason::Full);
        // As the flooder's records drain, the other sender takes their place, up to its share.
        held.truncate(3);
        let more: Vec<Permit> = (0..2).map(|_| budget.try_acquire(100, 1, &modest).expect("its share")).collect();
        assert_eq!(budget.try_acquire(100, 1, &modest).expect_err("at its share").reason, RefusalReason::OverFairShare);
        assert!(budget.try_acquire(100, 1, &flooder).is_ok(), "back under its share");
        drop((others, more));
    }

    #[test]
    fn below_three_quarters_and_with_nothing_held_nobody_is_refused_for_fairness() {
        let budget = budget(1000);
        let now = Instant::now();
        let senders: Vec<_> = ["a", "b", "c", "d"].map(|id| budget.sender(SenderId::Client(id), now)).into();
        assert_eq!(budget.fair_share(), 250);
        let big = budget.try_acquire(700, 1, &senders[0]).expect("uncontended: more than its share");
        let first = budget.try_acquire(100, 1, &senders[1]).expect("holds nothing yet: gets in");
        let second = budget.try_acquire(150, 1, &senders[1]).expect("within its share");
        assert_eq!(budget.try_acquire(10, 1, &senders[1]).expect_err("now over").reason, RefusalReason::OverFairShare);
        assert!(budget.try_acquire(50, 1, &senders[2]).is_ok());
        drop((big, first, second));
    }

    #[test]
    fn idle_senders_stop_counting_and_are_forgotten() {
        let budget = budget(1000);
        let start = Instant::now();
        let busy = budget.sender(SenderId::Session("busy"), start);
        let permit = budget.try_acquire(10, 1, &busy).expect("fits");
        drop(busy);
        drop(budget.sender(SenderId::Session("idle"), start));
        assert_eq!(budget.active_senders(), 2);
        let later = start + FAIRNESS.active_window + RECOUNT_INTERVAL;
        drop(budget.sender(SenderId::Client("new"), later));
        assert_eq!(budget.active_senders(), 2, "`busy` holds bytes, `new` just came, `idle` is gone");
        assert_eq!(crate::sync::lock(&budget.senders).sessions.len(), 1);
        drop(permit);
    }

    #[test]
    fn the_sender_is_the_session_else_the_client() {
        let with_session = Origin { client_id: "app".into(), session_id: "worker-1".into() };
        assert_eq!(SenderId::of(&with_session), SenderId::Session("worker-1"));
        let without = Origin { client_id: "app".into(), session_id: String::new() };
        assert_eq!(SenderId::of(&without), SenderId::Client("app"));
    }

    #[test]
    fn senders_beyond_the_limit_share_one_overflow_share() {
        let budget = budget(1 << 20);
        let now = Instant::now();
        let names: Vec<String> = (0..=MAX_SENDERS).map(|index| format!("s{index}")).collect();
        let shares: Vec<_> = names.iter().map(|name| budget.sender(SenderId::Session(name), now)).collect();
        let last = budget.sender(SenderId::Client("one-more"), now);
        assert!(Arc::ptr_eq(&shares[MAX_SENDERS], &last), "both fold into the overflow share");
    }

    #[test]
    fn retry_hint_follows_the_drain_rate() {
        let bounds = RetryBounds { floor: Duration::from_millis(10), cap: Duration::from_secs(1) };
        let budget = budget(1000);
        let sender = budget.sender(SenderId::Session("a"), Instant::now());
        let held = budget.try_acquire(1000, 1, &sender).expect("fits");
        std::thread::sleep(DRAIN_SAMPLE_MIN);
        assert_eq!(budget.retry_hint(100, bounds), bounds.cap, "nothing drains: wait the longest");
        drop(held);
        let _again = budget.try_acquire(1000, 1, &sender).expect("fits");
        std::thread::sleep(DRAIN_SAMPLE_MIN);
        let hint = budget.retry_hint(100, bounds);
        assert!(hint >= bounds.floor && hint < bounds.cap, "draining: a shorter wait, got {hint:?}");
    }

    #[test]
    fn the_hint_with_jitter_stays_between_floor_and_cap() {
        let ms = Duration::from_millis;
        let bounds = RetryBounds { floor: ms(20), cap: ms(1000) };
        let most = |n: u64| n;
        let least = |_: u64| 0;
        assert_eq!(bounds.hint(ms(1), least), ms(20), "the floor");
        assert_eq!(bounds.hint(ms(1), most), ms(25), "25% jitter above the floor");
        assert_eq!(bounds.hint(ms(400), most), ms(500));
        assert_eq!(bounds.hint(ms(900), most), ms(1000), "jitter stops at the cap");
        assert_eq!(bounds.hint(ms(5000), most), ms(1000), "the cap");
        assert_eq!(bounds.hint(ms(5000), |_| u64::MAX), ms(1000), "whatever the draw");
        for estimate in [0, 1, 19, 20, 21, 500, 799, 800, 801, 999, 1000, 1001, 60_000] {
            for _ in 0..50 {
                let hint = bounds.hint(ms(estimate), |n| rand::random_range(0..=n));
                assert!((ms(20)..=ms(1000)).contains(&hint), "{estimate} ms -> {hint:?}");
            }
        }
        let equal = RetryBounds { floor: ms(50), cap: ms(50) };
        assert_eq!(equal.hint(ms(0), most), ms(50));
        assert_eq!(equal.hint(ms(10_000), most), ms(50));
    }

    #[test]
    fn split_permits_release_independently() {
        let budget = budget(100);
        let sender = budget.sender(SenderId::Client("http"), Instant::now());
        let mut batch = budget.try_acquire(30, 3, &sender).expect("fits");
        let one = batch.split_record(10);
        let two = batch.split_record(10);
        drop(one);
        assert_eq!((budget.used_bytes(), budget.records(), sender.held_bytes()), (20, 2, 20));
        drop(batch);
        assert_eq!((budget.used_bytes(), budget.records(), sender.held_bytes()), (10, 1, 10));
        drop(two);
        assert_eq!((budget.used_bytes(), budget.records(), sender.held_bytes()), (0, 0, 0));
    }
}
