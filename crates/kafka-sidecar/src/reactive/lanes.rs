//! Per-key ordering for parallel pushes. Every record waits in its *lane* (topic, partition, key;
//! records without a key share their partition's lane); a lane has at most one batch in flight, and
//! its records leave in offset order, so one key is never pushed twice at once nor out of order,
//! across retries too. Different lanes go in parallel.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::consumer::{ConsumedRecord, TopicPartition};

/// What orders records: same lane, one after another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaneKey {
    topic: Arc<str>,
    partition: i32,
    key: Option<Bytes>,
}

impl LaneKey {
    fn of(record: &ConsumedRecord) -> Self {
        Self { topic: Arc::clone(&record.topic), partition: record.partition, key: record.key.clone() }
    }

    fn is_in(&self, partition: &TopicPartition) -> bool {
        self.partition == partition.partition && *self.topic == *partition.topic
    }
}

/// A record waiting to be pushed, with the attempts it has had.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The record.
    pub record: ConsumedRecord,
    /// Pushes that failed so far.
    pub attempts: u32,
}

/// The records of one batch, grouped by lane, with the batch's id (stale results are ignored).
#[derive(Debug, Default)]
pub struct Batch {
    /// Unique per batch.
    pub id: u64,
    /// Each lane's records, in offset order.
    pub lanes: Vec<(LaneKey, Vec<Pending>)>,
}

impl Batch {
    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Records in the batch.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lanes.iter().map(|(_, pending)| pending.len()).sum()
    }
}

/// Every lane.
#[derive(Debug, Default)]
pub struct Lanes {
    queues: HashMap<LaneKey, VecDeque<Pending>>,
    /// Lanes with records, not in flight, in the order they became ready.
    ready: VecDeque<LaneKey>,
    /// Lanes in flight: the batch, and whether it was abandoned (its partition dropped).
    busy: HashMap<LaneKey, (u64, bool)>,
    next_batch: u64,
    /// Lanes waiting for a retry backoff to pass.
    delayed: Vec<(Instant, LaneKey)>,
    held: HashSet<TopicPartition>,
    waiting: usize,
}

impl Lanes {
    /// Records waiting (not in flight).
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Appends a fetched record to its lane.
    pub fn push(&mut self, record: ConsumedRecord) {
        let lane = LaneKey::of(&record);
        let queue = self.queues.entry(lane.clone()).or_default();
        let was_idle = queue.is_empty();
        queue.push_back(Pending { record, attempts: 0 });
        self.waiting += 1;
        if was_idle && !self.busy.contains_key(&lane) && !self.is_delayed(&lane) {
            self.ready.push_back(lane);
        }
    }

    fn is_delayed(&self, lane: &LaneKey) -> bool {
        self.delayed.iter().any(|(_, delayed)| delayed == lane)
    }

    fn is_held(&self, lane: &LaneKey) -> bool {
        self.held.iter().any(|partition| lane.is_in(partition))
    }

    /// Moves lanes whose backoff has passed back to ready; returns the next backoff end, if any.
    pub fn wake_delayed(&mut self, now: Instant) -> Option<Instant> {
        let (due, later): (Vec<_>, Vec<_>) = self.delayed.drain(..).partition(|(until, _)| *until <= now);
        self.delayed = later;
        self.ready.extend(due.into_iter().map(|(_, lane)| lane));
        self.delayed.iter().map(|(until, _)| *until).min()
    }

    /// Takes the next batch: whole lanes (each lane's records in order) up to the limits. A lane
    /// whose first record already failed twice goes alone, so a poison record is isolated from
    /// its healthy neighbours.
    pub fn take_batch(&mut self, max_records: usize, max_bytes: usize) -> Batch {
        self.next_batch += 1;
        let mut batch = Batch { id: self.next_batch, lanes: Vec::new() };
        let (mut records, mut bytes) = (0, 0);
        let mut skipped = Vec::new();
        while let Some(lane) = self.ready.pop_front() {
            if self.is_held(&lane) {
                skipped.push(lane);
                continue;
            }
            let Some(queue) = self.queues.get_mut(&lane) else { continue };
            let isolate = queue.front().is_some_and(|pending| pending.attempts >= 2);
            if isolate && !batch.is_empty() {
                skipped.push(lane);
                continue;
            }
            let mut taken = Vec::new();
            while let Some(next) = queue.front() {
                let size = next.record.payload_bytes();
                let full = records >= max_records || (records > 0 && bytes + size > max_bytes);
                if full || (isolate && !taken.is_empty()) {
                    break;
                }
                records += 1;
                bytes += size;
                taken.extend(queue.pop_front());
            }
            if taken.is_empty() {
                skipped.push(lane);
                break;
            }
            self.waiting -= taken.len();
            if queue.is_empty() {
                self.queues.remove(&lane);
            }
            self.busy.insert(lane.clone(), (batch.id, false));
            batch.lanes.push((lane, taken));
            if isolate || records >= max_records {
                break;
            }
        }
        // Lanes passed over keep their place at the front.
        for lane in skipped.into_iter().rev() {
            self.ready.push_front(lane);
        }
        batch
    }

    /// Ends a lane's flight; `retry` records go back to the front of the lane, in order, ready
    /// again after `not_before`.
    pub fn finish(&mut self, batch: u64, lane: LaneKey, retry: Vec<Pending>, not_before: Option<Instant>) {
        if !self.is_current(batch, &lane) {
            return; // the lane's partition was dropped (revoked, sought) while in flight
        }
        self.busy.remove(&lane);
        if !retry.is_empty() {
            self.waiting += retry.len();
            let queue = self.queues.entry(lane.clone()).or_default();
            for pending in retry.into_iter().rev() {
                queue.push_front(pending);
            }
        }
        if self.queues.contains_key(&lane) {
            match not_before {
                Some(until) if until > Instant::now() => self.delayed.push((until, lane)),
                _ => self.ready.push_back(lane),
            }
        }
    }

    /// Forgets every lane of `partitions` (revoked or sought): waiting records are dropped, and
    /// in-flight lanes are marked abandoned: their results will be ignored, but the lane stays
    /// busy until the push returns, so a key is never pushed while its older push is in flight.
    pub fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        let dropped = |lane: &LaneKey| partitions.iter().any(|partition| lane.is_in(partition));
        let mut removed = 0;
        self.queues.retain(|lane, queue| {
            let keep = !dropped(lane);
            if !keep {
                removed += queue.len();
            }
            keep
        });
        self.waiting -= removed;
        self.ready.retain(|lane| !dropped(lane));
        for (lane, (_, abandoned)) in &mut self.busy {
            if dropped(lane) {
                *abandoned = true;
            }
        }
        self.delayed.retain(|(_, lane)| !dropped(lane));
    }

    /// Holds (or releases) partitions: their lanes are not dispatched while held.
    pub fn hold(&mut self, partition: TopicPartition, hold: bool) {
        if hold {
            self.held.insert(partition);
        } else {
            self.held.remove(&partition);
        }
    }

    /// Partitions held by an operator.
    pub fn held(&self) -> Vec<TopicPartition> {
        let mut held: Vec<_> = self.held.iter().cloned().collect();
        held.sort();
        held
    }

    /// Whether `lane` is in flight in `batch` and its result counts (not abandoned).
    pub fn is_current(&self, batch: u64, lane: &LaneKey) -> bool {
        self.busy.get(lane) == Some(&(batch, false))
    }

    /// Ends an abandoned lane's flight without using its result; records queued since (after a
    /// seek) become ready.
    pub fn release(&mut self, batch: u64, lane: LaneKey) {
        if self.busy.get(&lane) != Some(&(batch, true)) {
            return;
        }
        self.busy.remove(&lane);
        if self.queues.contains_key(&lane) {
            self.ready.push_back(lane);
        }
    }

    /// Lanes in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64, key: &str) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("t"),
            partition,
            offset,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    fn offsets(batch: &Batch) -> Vec<i64> {
        batch.lanes.iter().flat_map(|(_, pending)| pending.iter().map(|p| p.record.offset)).collect()
    }

    #[test]
    fn one_key_is_never_in_two_batches_at_once_and_keeps_offset_order() {
        let mut lanes = Lanes::default();
        for (offset, key) in [(0, "a"), (1, "b"), (2, "a"), (3, "c")] {
            lanes.push(record(0, offset, key));
        }
        let first = lanes.take_batch(2, usize::MAX);
        assert_eq!(offsets(&first), vec![0, 2], "lane a whole, in order");
        let second = lanes.take_batch(10, usize::MAX);
        assert_eq!(offsets(&second), vec![1, 3]);
        lanes.push(record(0, 4, "a"));
        assert!(lanes.take_batch(10, usize::MAX).is_empty(), "a is in flight");
        let id = first.id;
        let (lane, pending) = first.lanes.into_iter().next().expect("lane a");
        lanes.finish(id, lane, pending[1..].to_vec(), None);
        assert_eq!(offsets(&lanes.take_batch(10, usize::MAX)), vec![2, 4], "the retried record goes first");
    }

    #[test]
    fn records_that_failed_twice_go_alone() {
        let mut lanes = Lanes::default();
        lanes.push(record(0, 0, "poison"));
        lanes.push(record(0, 1, "fine"));
        let batch = lanes.take_batch(10, usize::MAX);
        for (lane, mut pending) in batch.lanes {
            for p in &mut pending {
                p.attempts = 2;
            }
            lanes.finish(batch.id, lane, pending, None);
        }
        assert_eq!(lanes.take_batch(10, usize::MAX).len(), 1, "isolated");
        assert_eq!(lanes.take_batch(10, usize::MAX).len(), 1);
        let stale = lanes.take_batch(10, usize::MAX);
        assert!(stale.is_empty(), "both lanes are in flight");
    }

    #[test]
    fn dropped_and_held_partitions_are_not_dispatched() {
        let mut lanes = Lanes::default();
        lanes.push(record(0, 0, "a"));
        lanes.push(record(1, 0, "a"));
        let p1 = TopicPartition { topic: "t".into(), partition: 1 };
        lanes.hold(p1.clone(), true);
        assert_eq!(lanes.take_batch(10, usize::MAX).len(), 1);
        assert!(lanes.take_batch(10, usize::MAX).is_empty());
        lanes.hold(p1.clone(), false);
        lanes.drop_partitions(&[p1]);
        assert_eq!(lanes.waiting(), 0);
        assert!(lanes.take_batch(10, usize::MAX).is_empty());
    }

    #[test]
    fn an_abandoned_lane_stays_busy_until_its_push_returns() {
        let mut lanes = Lanes::default();
        lanes.push(record(0, 0, "a"));
        let batch = lanes.take_batch(10, usize::MAX);
        let p0 = TopicPartition { topic: "t".into(), partition: 0 };
        lanes.drop_partitions(std::slice::from_ref(&p0));
        lanes.push(record(0, 0, "a"));
        assert!(lanes.take_batch(10, usize::MAX).is_empty(), "the old push of a is still in flight");
        let (lane, _) = batch.lanes.into_iter().next().expect("lane");
        assert!(!lanes.is_current(batch.id, &lane), "its result does not count");
        lanes.release(batch.id, lane);
        assert_eq!(offsets(&lanes.take_batch(10, usize::MAX)), vec![0], "read again after the seek");
    }
}
