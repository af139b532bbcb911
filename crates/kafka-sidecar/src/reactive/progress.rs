//! Out-of-order completion, in-order commit: per partition, the offsets fetched and not yet done.
//! The commit point is the lowest offset still open (or the next to fetch when none is), so the
//! committed offset never moves past a record until it and every earlier record are done.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::consumer::{ConsumedRecord, TopicPartition};

#[derive(Debug, Default)]
struct PartitionProgress {
    open: BTreeSet<i64>,
    next_fetch: Option<i64>,
    committed: Option<i64>,
}

impl PartitionProgress {
    fn commit_point(&self) -> Option<i64> {
        self.open.first().copied().or(self.next_fetch)
    }
}

/// Progress of every partition this consumer works on, by topic then partition (so a record's
/// progress is found from its shared topic name without allocating).
#[derive(Debug, Default)]
pub struct Progress {
    topics: HashMap<Arc<str>, HashMap<i32, PartitionProgress>>,
    open: usize,
}

impl Progress {
    fn get(&self, partition: &TopicPartition) -> Option<&PartitionProgress> {
        self.topics.get(partition.topic.as_str()).and_then(|partitions| partitions.get(&partition.partition))
    }

    fn get_mut(&mut self, partition: &TopicPartition) -> Option<&mut PartitionProgress> {
        self.topics.get_mut(partition.topic.as_str()).and_then(|partitions| partitions.get_mut(&partition.partition))
    }

    fn entry(&mut self, topic: &Arc<str>, partition: i32) -> &mut PartitionProgress {
        // Cloning the shared name is a reference count, not an allocation.
        self.topics.entry(Arc::clone(topic)).or_default().entry(partition).or_default()
    }

    /// A record was fetched and is now open.
    pub fn fetched(&mut self, record: &ConsumedRecord) {
        let offset = record.offset;
        let progress = self.entry(&record.topic, record.partition);
        let new = progress.open.insert(offset);
        progress.next_fetch = Some(progress.next_fetch.map_or(offset + 1, |next| next.max(offset + 1)));
        self.open += usize::from(new);
    }

    /// A record is done (processed, skipped or dead-lettered).
    pub fn done(&mut self, record: &ConsumedRecord) {
        let progress = self.topics.get_mut(&*record.topic).and_then(|partitions| partitions.get_mut(&record.partition));
        if let Some(progress) = progress
            && progress.open.remove(&record.offset)
        {
            self.open -= 1;
        }
    }

    /// Records open (fetched, not done).
    pub fn open(&self) -> usize {
        self.open
    }

    /// Open records of one partition.
    pub fn open_in(&self, partition: &TopicPartition) -> usize {
        self.get(partition).map_or(0, |progress| progress.open.len())
    }

    fn each(&self) -> impl Iterator<Item = (TopicPartition, &PartitionProgress)> {
        self.topics.iter().flat_map(|(topic, partitions)| {
            partitions.iter().map(|(partition, progress)| {
                (TopicPartition { topic: topic.to_string(), partition: *partition }, progress)
            })
        })
    }

    /// Partitions whose commit point moved since the last commit: (partition, next offset).
    pub fn to_commit(&self) -> Vec<(TopicPartition, i64)> {
        let mut due: Vec<_> = self
            .each()
            .filter_map(|(partition, progress)| {
                let point = progress.commit_point()?;
                (progress.committed != Some(point)).then_some((partition, point))
            })
            .collect();
        due.sort();
        due
    }

    /// Every partition's commit point, committed or not (for the revoke hook).
    pub fn commit_points(&self) -> Vec<(TopicPartition, i64)> {
        self.each()
            .filter_map(|(partition, progress)| progress.commit_point().map(|point| (partition, point)))
            .collect()
    }

    /// Notes a successful commit.
    pub fn committed(&mut self, partition: &TopicPartition, next: i64) {
        if let Some(progress) = self.get_mut(partition) {
            progress.committed = Some(next);
        }
    }

    /// The last committed offset of a partition, when one was committed here.
    pub fn committed_of(&self, partition: &TopicPartition) -> Option<i64> {
        self.get(partition).and_then(|progress| progress.committed)
    }

    /// Forgets a partition (revoked), or restarts it at `from` (sought): nothing open.
    pub fn reset(&mut self, partition: &TopicPartition, from: Option<i64>) {
        let dropped = self.get(partition).map_or(0, |progress| progress.open.len());
        self.open -= dropped;
        match from {
            None => {
                if let Some(partitions) = self.topics.get_mut(partition.topic.as_str()) {
                    partitions.remove(&partition.partition);
                }
            }
            Some(offset) => {
                let progress = self.entry(&Arc::from(partition.topic.as_str()), partition.partition);
                progress.open.clear();
                progress.next_fetch = Some(offset);
                progress.committed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition { topic: "t".into(), partition: 0 }
    }

    fn at(offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn the_commit_point_waits_for_the_oldest_open_record() {
        let mut progress = Progress::default();
        for offset in 10..14 {
            progress.fetched(&at(offset));
        }
        progress.done(&at(11));
        progress.done(&at(12));
        assert_eq!(progress.to_commit(), vec![(tp(), 10)], "10 is still open");
        progress.committed(&tp(), 10);
        assert!(progress.to_commit().is_empty());
        progress.done(&at(10));
        assert_eq!(progress.to_commit(), vec![(tp(), 13)]);
        progress.done(&at(13));
        assert_eq!(progress.to_commit(), vec![(tp(), 14)], "all done: the next to fetch");
        assert_eq!(progress.open(), 0);
    }

    #[test]
    fn a_seek_restarts_and_a_revoke_forgets() {
        let mut progress = Progress::default();
        progress.fetched(&at(5));
        progress.reset(&tp(), Some(2));
        assert_eq!(progress.open(), 0);
        assert_eq!(progress.to_commit(), vec![(tp(), 2)]);
        progress.reset(&tp(), None);
        assert!(progress.to_commit().is_empty());
    }
}
