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
    returned: HashMap<TopicPartition, i64>,
}

impl FetchBuffer {
    /// Appends a record read from Kafka.
    pub fn push(&mut self, record: ConsumedRecord) {
        self.held_bytes += record.held_bytes();
        self.records.push_back(record);
    }

    /// Memory the buffered records hold.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Key and value bytes buffered, as a fetch's `min_bytes` counts them.
    pub fn payload_bytes(&self) -> usize {
        self.records.iter().map(ConsumedRecord::payload_bytes).sum()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes records from the front within the limits (always one, if any, so an oversized
    /// record cannot block the partition) and records them as returned.
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
            let partition = TopicPartition { topic: record.topic.to_string(), partition: record.partition };
            self.returned.insert(partition, record.offset + 1);
            taken.push(record);
        }
        taken
    }

    /// Drops buffered records of `partitions` (revoked, or sought elsewhere). With `forget`, their
    /// returned positions go too: a revoked partition's position belongs to its new owner.
    pub fn purge(&mut self, partitions: &[TopicPartition], forget: bool) {
        let matches = |record: &ConsumedRecord| {
            partitions.iter().any(|tp| tp.partition == record.partition && *tp.topic == *record.topic)
        };
        self.records.retain(|record| !matches(record));
        self.held_bytes = self.records.iter().map(ConsumedRecord::held_bytes).sum();
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
        self.returned.clear();
    }

    /// The position after the last returned record of each partition: the offsets to commit.
    pub fn returned_positions(&self) -> Vec<(TopicPartition, i64)> {
        let mut positions: Vec<_> = self.returned.iter().map(|(tp, offset)| (tp.clone(), *offset)).collect();
        positions.sort();
        positions
    }
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
        assert_eq!(buffer.take(250, 10).len(), 2);
        assert_eq!(buffer.take(10_000, 1).len(), 1);
        assert_eq!(buffer.take(10, 10).len(), 1, "one record even when larger than max_bytes");
        assert_eq!(buffer.returned_positions(), vec![(TopicPartition { topic: "t".into(), partition: 0 }, 4)]);
    }

    #[test]
    fn returned_positions_follow_what_the_app_got_not_what_was_prefetched() {
        let mut buffer = FetchBuffer::default();
        buffer.push(record("t", 0, 7, 1));
        buffer.push(record("t", 1, 3, 1));
        buffer.push(record("t", 0, 8, 1));
        assert!(buffer.returned_positions().is_empty());
        buffer.take(usize::MAX, 2);
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
        buffer.take(usize::MAX, 1);
        buffer.purge(&[TopicPartition { topic: "a".into(), partition: 0 }], true);
        assert!(buffer.returned_positions().is_empty());
        assert_eq!(buffer.payload_bytes(), 20);
        assert_eq!(buffer.held_bytes(), record("b", 0, 0, 20).held_bytes());
        buffer.purge(&[TopicPartition { topic: "b".into(), partition: 0 }], false);
        assert!(buffer.is_empty());
        assert_eq!(buffer.held_bytes(), 0);
    }
}
