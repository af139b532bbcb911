//! The prefetch buffer of one instance: records librdkafka already handed over and the app has
//! not fetched yet, in arrival order, bounded in bytes (the worker pauses fetching when full).
//!
//! It also remembers, per partition, the position after the last record *returned to the app*:
//! that is what an empty-body commit and auto-commit store, never what was merely prefetched.

use std::collections::{HashMap, VecDeque};

use super::types::{ConsumedRecord, TopicPartition};

/// Buffered records and returned positions.
#[derive(Debug, Default)]
pub struct FetchBuffer {
    records: VecDeque<ConsumedRecord>,
    held_bytes: usize,
    payload_bytes: usize,
    returned: HashMap<TopicPartition, i64>,
}

impl FetchBuffer {
    /// Appends a record read from Kafka.
    pub fn push(&mut self, record: ConsumedRecord) {
        self.held_bytes += record.held_bytes();
        self.payload_bytes += record.payload_bytes();
        self.records.push_back(record);
    }

    /// Memory the buffered records hold.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Key and value bytes buffered, as a fetch's `min_bytes` counts them.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes records from the front within the limits (always one, if any, so an oversized
    /// record cannot block the partition). They count as returned only once
    /// [`FetchBuffer::mark_returned`] says the app got them.
    pub fn take(&mut self, max_bytes: usize, max_records: usize) -> Vec<ConsumedRecord> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.records.front() {
            let size = next.payload_bytes();
            if taken.len() >= max_records || (!taken.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            let Some(record) = self.records.pop_front() else { break };
            self.held_bytes = self.held_bytes.saturating_sub(record.held_bytes());
            self.payload_bytes = self.payload_bytes.saturating_sub(size);
            taken.push(record);
        }
        taken
    }

    /// Notes that the app got records up to these positions (see [`next_positions`]): they are
    /// what commits store.
    pub fn mark_returned(&mut self, positions: &[(TopicPartition, i64)]) {
        for (partition, next) in positions {
            self.returned.insert(partition.clone(), *next);
        }
    }

    /// Puts records that could not be handed over back at the front, in their order.
    pub fn restore(&mut self, records: Vec<ConsumedRecord>) {
        for record in records.into_iter().rev() {
            self.held_bytes += record.held_bytes();
            self.payload_bytes += record.payload_bytes();
            self.records.push_front(record);
        }
    }

    /// Drops buffered records of `partitions` (revoked, or sought elsewhere). With `forget`, their
    /// returned positions go too: a revoked partition's position belongs to its new owner.
    pub fn purge(&mut self, partitions: &[TopicPartition], forget: bool) {
        let matches = |record: &ConsumedRecord| {
            partitions.iter().any(|tp| tp.partition == record.partition && *tp.topic == *record.topic)
        };
        self.records.retain(|record| !matches(record));
        self.held_bytes = self.records.iter().map(ConsumedRecord::held_bytes).sum();
        self.payload_bytes = self.records.iter().map(ConsumedRecord::payload_bytes).sum();
        if forget {
            for partition in partitions {
                self.returned.remove(partition);
            }
        }
    }

    /// Drops everything, returned positions included (unsubscribe, unassign).
    pub fn clear(&mut self) {
        self.records.clear();
        self.held_bytes = 0;
        self.payload_bytes = 0;
        self.returned.clear();
    }

    /// The position after the last returned record of each partition: the offsets to commit.
    pub fn returned_positions(&self) -> Vec<(TopicPartition, i64)> {
        let mut positions: Vec<_> = self.returned.iter().map(|(tp, offset)| (tp.clone(), *offset)).collect();
        positions.sort();
        positions
    }
}

/// The position after the last of `records` in each partition.
pub fn next_positions(records: &[ConsumedRecord]) -> Vec<(TopicPartition, i64)> {
    let mut positions: Vec<(TopicPartition, i64)> = Vec::new();
    for record in records {
        let next = record.offset + 1;
        match positions.iter_mut().find(|(tp, _)| tp.partition == record.partition && *tp.topic == *record.topic) {
            Some((_, position)) => *position = (*position).max(next),
            None => {
                positions.push((TopicPartition { topic: record.topic.to_string(), partition: record.partition }, next))
            }
        }
    }
    positions
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn record(topic: &str, partition: i32, offset: i64, size: usize) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            key: None,
            value: Some(Bytes::from(vec![b'x'; size])),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn take_respects_bytes_and_count_but_returns_one_oversized_record() {
        let mut buffer = FetchBuffer::default();
        for offset in 0..5 {
            buffer.push(record("t", 0, offset, 100));
        }
        let first = buffer.take(250, 10);
        assert_eq!(first.len(), 2);
        buffer.mark_returned(&next_positions(&first));
        let second = buffer.take(10_000, 1);
        buffer.restore(second);
        let again = buffer.take(10_000, 1);
        assert_eq!(again[0].offset, 2, "a restored record comes first again");
        buffer.mark_returned(&next_positions(&again));
        let third = buffer.take(10, 10);
        assert_eq!(third.len(), 1, "one record even when larger than max_bytes");
        buffer.mark_returned(&next_positions(&third));
        assert_eq!(buffer.returned_positions(), vec![(TopicPartition { topic: "t".into(), partition: 0 }, 4)]);
    }

    #[test]
    fn returned_positions_follow_what_the_app_got_not_what_was_prefetched() {
        let mut buffer = FetchBuffer::default();
        buffer.push(record("t", 0, 7, 1));
        buffer.push(record("t", 1, 3, 1));
        buffer.push(record("t", 0, 8, 1));
        assert!(buffer.returned_positions().is_empty());
        let taken = buffer.take(usize::MAX, 2);
        assert!(buffer.returned_positions().is_empty(), "not returned until handed over");
        buffer.mark_returned(&next_positions(&taken));
        let positions = buffer.returned_positions();
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[0].1, 8);
        assert_eq!(positions[1].1, 4);
    }

    #[test]
    fn purge_drops_only_the_named_partitions_and_keeps_bytes_exact() {
        let mut buffer = FetchBuffer::default();
        buffer.push(record("a", 0, 0, 10));
        buffer.push(record("b", 0, 0, 20));
        let taken = buffer.take(usize::MAX, 1);
        buffer.mark_returned(&next_positions(&taken));
        buffer.purge(&[TopicPartition { topic: "a".into(), partition: 0 }], true);
        assert!(buffer.returned_positions().is_empty());
        assert_eq!(buffer.payload_bytes(), 20);
        assert_eq!(buffer.held_bytes(), record("b", 0, 0, 20).held_bytes());
        buffer.purge(&[TopicPartition { topic: "b".into(), partition: 0 }], false);
        assert!(buffer.is_empty());
        assert_eq!(buffer.held_bytes(), 0);
    }
}
