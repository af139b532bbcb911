//! Out-of-order completion, in-order commit: per partition, the offsets fetched and not yet done.
//! The commit point is the lowest offset still open (or the next to fetch when none is), so the
//! committed offset never moves past a record until it and every earlier record are done.

use std::collections::{BTreeSet, HashMap};

use crate::consumer::TopicPartition;

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

/// Progress of every partition this consumer works on.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: HashMap<TopicPartition, PartitionProgress>,
}

impl Progress {
    /// A record was fetched and is now open.
    pub fn fetched(&mut self, partition: TopicPartition, offset: i64) {
        let progress = self.partitions.entry(partition).or_default();
        progress.open.insert(offset);
        progress.next_fetch = Some(progress.next_fetch.map_or(offset + 1, |next| next.max(offset + 1)));
    }

    /// A record is done (processed, skipped or dead-lettered).
    pub fn done(&mut self, partition: &TopicPartition, offset: i64) {
        if let Some(progress) = self.partitions.get_mut(partition) {
            progress.open.remove(&offset);
        }
    }

    /// Records open (fetched, not done).
    pub fn open(&self) -> usize {
        self.partitions.values().map(|progress| progress.open.len()).sum()
    }

    /// Open records of one partition.
    pub fn open_in(&self, partition: &TopicPartition) -> usize {
        self.partitions.get(partition).map_or(0, |progress| progress.open.len())
    }

    /// Partitions whose commit point moved since the last commit: (partition, next offset).
    pub fn to_commit(&self) -> Vec<(TopicPartition, i64)> {
        let mut due: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(partition, progress)| {
                let point = progress.commit_point()?;
                (progress.committed != Some(point)).then(|| (partition.clone(), point))
            })
            .collect();
        due.sort();
        due
    }

    /// Every partition's commit point, committed or not (for the revoke hook).
    pub fn commit_points(&self) -> Vec<(TopicPartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(partition, progress)| progress.commit_point().map(|point| (partition.clone(), point)))
            .collect()
    }

    /// Notes a successful commit.
    pub fn committed(&mut self, partition: &TopicPartition, next: i64) {
        if let Some(progress) = self.partitions.get_mut(partition) {
            progress.committed = Some(next);
        }
    }

    /// The last committed offset of a partition, when one was committed here.
    pub fn committed_of(&self, partition: &TopicPartition) -> Option<i64> {
        self.partitions.get(partition).and_then(|progress| progress.committed)
    }

    /// Forgets a partition (revoked), or restarts it at `from` (sought): nothing open.
    pub fn reset(&mut self, partition: &TopicPartition, from: Option<i64>) {
        match from {
            None => {
                self.partitions.remove(partition);
            }
            Some(offset) => {
                let progress = self.partitions.entry(partition.clone()).or_default();
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

    #[test]
    fn the_commit_point_waits_for_the_oldest_open_record() {
        let mut progress = Progress::default();
        for offset in 10..14 {
            progress.fetched(tp(), offset);
        }
        progress.done(&tp(), 11);
        progress.done(&tp(), 12);
        assert_eq!(progress.to_commit(), vec![(tp(), 10)], "10 is still open");
        progress.committed(&tp(), 10);
        assert!(progress.to_commit().is_empty());
        progress.done(&tp(), 10);
        assert_eq!(progress.to_commit(), vec![(tp(), 13)]);
        progress.done(&tp(), 13);
        assert_eq!(progress.to_commit(), vec![(tp(), 14)], "all done: the next to fetch");
        assert_eq!(progress.open(), 0);
    }

    #[test]
    fn a_seek_restarts_and_a_revoke_forgets() {
        let mut progress = Progress::default();
        progress.fetched(tp(), 5);
        progress.reset(&tp(), Some(2));
        assert_eq!(progress.to_commit(), vec![(tp(), 2)]);
        progress.reset(&tp(), None);
        assert!(progress.to_commit().is_empty());
    }
}
