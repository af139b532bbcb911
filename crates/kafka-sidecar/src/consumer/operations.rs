//! What a worker does for each command besides fetching: subscribe, assign, commit, read committed
//! offsets and seek. Each runs on the instance's thread, between polls.
//!
//! Commit semantics follow Confluent REST Proxy v2: an explicit offset names the last record the app
//! processed and Kafka stores it + 1; an empty commit stores the position after the last record
//! *returned to the app* per partition, never what was only prefetched.

use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::types::{CommittedOffset, ProcessedOffset, SeekPosition, Subscription, TopicPartition};
use super::worker::{Mode, PendingSeek, Worker, partition_list};
use crate::error::{ErrorCode, SidecarError};

/// How long a seek on a partition that is assigned but not yet fetching keeps being retried.
/// How long a commit that meets a rebalance keeps being retried, and how often.
const COMMIT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
const REBALANCE_POLL: std::time::Duration = std::time::Duration::from_millis(50);
const SEEK_RETRY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one seek waits for librdkafka to confirm it.
const SEEK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn kafka_error(action: &str, error: &KafkaError) -> SidecarError {
    SidecarError::new(ErrorCode::KafkaError, format!("{action} failed: {error}"))
}

fn state_error(message: impl Into<String>) -> SidecarError {
    SidecarError::new(ErrorCode::ConsumerState, message)
}

impl Worker {
    pub(super) fn subscribe(&mut self, subscription: Subscription) -> Result<(), SidecarError> {
        if matches!(self.mode, Mode::Assigned(_)) {
            return Err(state_error("the instance has a manual assignment; subscribe and assign are exclusive"));
        }
        let topics: Vec<String> = match &subscription {
            Subscription::Topics(topics) => topics.clone(),
            // librdkafka reads a leading '^' as "regular expression"; the whole name must match.
            Subscription::Pattern(pattern) => {
                let anchored = pattern.trim_start_matches('^').trim_end_matches('$');
                vec![format!("^{anchored}$")]
            }
        };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&names).map_err(|error| kafka_error("subscribe", &error))?;
        self.mode = Mode::Subscribed(subscription);
        Ok(())
    }

    pub(super) fn unsubscribe(&mut self) -> Result<(), SidecarError> {
        if matches!(self.mode, Mode::Subscribed(_)) {
            self.commit_returned_if_auto();
            self.consumer.unsubscribe();
            self.buffer.clear();
            self.pending_seeks.clear();
            self.mode = Mode::Idle;
        }
        Ok(())
    }

    pub(super) fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), SidecarError> {
        if matches!(self.mode, Mode::Subscribed(_)) {
            return Err(state_error("the instance is subscribed; subscribe and assign are exclusive"));
        }
        self.commit_returned_if_auto();
        let list = partition_list(&partitions);
        self.consumer.assign(&list).map_err(|error| kafka_error("assign", &error))?;
        self.buffer.clear();
        self.pending_seeks.clear();
        self.mode = if partitions.is_empty() { Mode::Idle } else { Mode::Assigned(partitions) };
        Ok(())
    }

    /// Stores returned positions for librdkafka's auto-commit.
    pub(super) fn store_returned(&self, positions: &[(TopicPartition, i64)]) {
        let mut list = TopicPartitionList::new();
        for (partition, next) in positions {
            if let Err(error) = list.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(*next))
            {
                tracing::debug!(error = %error, "cannot note a returned offset");
            }
        }
        if list.count() > 0
            && let Err(error) = self.consumer.store_offsets(&list)
        {
            // A partition revoked meanwhile cannot be stored; its new owner reads from the last commit.
            tracing::debug!(error = %error, "cannot store returned offsets for auto-commit");
        }
    }

    fn commit_returned_if_auto(&mut self) {
        let positions = self.buffer.returned_positions();
        if self.auto_commit
            && !positions.is_empty()
            && let Err(error) = self.commit(None)
        {
            tracing::warn!(error = %error, "cannot commit returned records before changing the assignment");
        }
    }

    /// Commits processed offsets, or with `None` what was returned so far. A commit that meets a
    /// rebalance (stale generation) is retried after the rebalance has been served, for a while;
    /// an empty commit then covers only the partitions still owned.
    pub(super) fn commit(
        &mut self,
        offsets: Option<Vec<ProcessedOffset>>,
    ) -> Result<Vec<CommittedOffset>, SidecarError> {
        let explicit = offsets.map(|offsets| processed_list(&offsets)).transpose()?;
        let deadline = Instant::now() + COMMIT_RETRY;
        loop {
            let list = match &explicit {
                Some(list) => list.clone(),
                None => {
                    let positions = self.buffer.returned_positions();
                    if positions.is_empty() {
                        return Ok(Vec::new());
                    }
                    positions_list(&positions)?
                }
            };
            match self.consumer.commit(&list, CommitMode::Sync) {
                Ok(()) => return Ok(committed_from(&list)),
                Err(error) if rebalancing(&error) && Instant::now() < deadline => {
                    std::thread::sleep(REBALANCE_POLL);
                    self.drain_kafka();
                }
                Err(error) => {
                    self.counters.commit_failures.inc();
                    if rebalancing(&error) {
                        return Err(state_error(format!("the group is rebalancing; commit again: {error}")));
                    }
                    return Err(kafka_error("commit", &error));
                }
            }
        }
    }

    pub(super) fn committed(&self, partitions: &[TopicPartition]) -> Result<Vec<CommittedOffset>, SidecarError> {
        let list = partition_list(partitions);
        let committed = self
            .consumer
            .committed_offsets(list, self.operation_timeout)
            .map_err(|error| kafka_error("reading committed offsets", &error))?;
        Ok(committed_from(&committed))
    }

    /// Seeks and returns where each partition landed, when known.
    pub(super) fn seek(
        &mut self,
        targets: Vec<(TopicPartition, SeekPosition)>,
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, SidecarError> {
        let assigned = self.assigned();
        if let Some((partition, _)) = targets.iter().find(|(partition, _)| !assigned.contains(partition)) {
            return Err(state_error(format!(
                "partition {}/{} is not assigned to this instance",
                partition.topic, partition.partition
            )));
        }
        let offsets = self.resolve_seek_targets(targets)?;
        let sought: Vec<TopicPartition> = offsets.iter().map(|(partition, _, _)| partition.clone()).collect();
        let landed: Vec<(TopicPartition, Option<i64>)> =
            offsets.iter().map(|(partition, _, resolved)| (partition.clone(), *resolved)).collect();
        self.buffer.purge(&sought, false);
        self.pending_seeks.retain(|seek| !sought.contains(&seek.partition));
        let until = Instant::now() + SEEK_RETRY;
        for (partition, offset, _) in offsets {
            self.pending_seeks.push(PendingSeek { partition, offset, until });
        }
        match self.retry_pending_seeks().first() {
            None => Ok(landed),
            Some((partition, error)) => Err(SidecarError::new(
                ErrorCode::KafkaError,
                format!("seeking {}/{} failed: {error}", partition.topic, partition.partition),
            )),
        }
    }

    /// Turns timestamps into offsets (one `offsets_for_times` call for all of them).
    fn resolve_seek_targets(
        &self,
        targets: Vec<(TopicPartition, SeekPosition)>,
    ) -> Result<Vec<(TopicPartition, Offset, Option<i64>)>, SidecarError> {
        let mut by_time = TopicPartitionList::new();
        for (partition, position) in &targets {
            if let SeekPosition::Timestamp(ms) = position {
                by_time
                    .add_partition_offset(&partition.topic, partition.partition, Offset::Offset(*ms))
                    .map_err(|error| kafka_error("seek", &error))?;
            }
        }
        let times = if by_time.count() > 0 {
            Some(
                self.consumer
                    .offsets_for_times(by_time, self.operation_timeout)
                    .map_err(|error| kafka_error("looking up offsets by timestamp", &error))?,
            )
        } else {
            None
        };
        Ok(targets
            .into_iter()
            .map(|(partition, position)| {
                let offset = match position {
                    SeekPosition::Offset(offset) => Offset::Offset(offset),
                    SeekPosition::Beginning => Offset::Beginning,
                    SeekPosition::End => Offset::End,
                    SeekPosition::Timestamp(_) => times
                        .as_ref()
                        .and_then(|list| list.find_partition(&partition.topic, partition.partition))
                        .map(|element| element.offset())
                        // No record at or after the timestamp: the end, as Kafka's consumer does.
                        .filter(|offset| matches!(offset, Offset::Offset(_)))
                        .unwrap_or(Offset::End),
                };
                let resolved = self.resolve(&partition, offset);
                (partition, offset, resolved)
            })
            .collect())
    }

    /// The concrete offset a seek lands on, when it can be known: watermarks for the logical ends.
    fn resolve(&self, partition: &TopicPartition, offset: Offset) -> Option<i64> {
        let watermarks =
            || self.consumer.fetch_watermarks(&partition.topic, partition.partition, self.operation_timeout).ok();
        match offset {
            Offset::Offset(offset) => Some(offset),
            Offset::Beginning => watermarks().map(|(low, _)| low),
            Offset::End => watermarks().map(|(_, high)| high),
            _ => None,
        }
    }

    /// Applies seeks librdkafka has not taken yet, all in one call: a partition that is assigned
    /// but not started refuses a seek with a state error, so it is retried for a while. Returns
    /// the seeks that failed for good.
    pub(super) fn retry_pending_seeks(&mut self) -> Vec<(TopicPartition, String)> {
        if self.pending_seeks.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending_seeks);
        let mut list = TopicPartitionList::with_capacity(pending.len());
        for seek in &pending {
            let _ = list.add_partition_offset(&seek.partition.topic, seek.partition.partition, seek.offset);
        }
        let mut failed = Vec::new();
        // Waiting for librdkafka's answer tells a refused seek from an applied one.
        let answered = match self.consumer.seek_partitions(list, SEEK_WAIT) {
            Ok(answered) => answered,
            // Enqueued, not confirmed in time: the seeks still take effect.
            Err(error) if error.to_string().contains("TIMED_OUT") => TopicPartitionList::new(),
            Err(error) => {
                for seek in pending {
                    if now < seek.until && error.to_string().contains("STATE") {
                        self.pending_seeks.push(seek);
                    } else {
                        failed.push((seek.partition, error.to_string()));
                    }
                }
                return failed;
            }
        };
        for seek in pending {
            let outcome = answered
                .find_partition(&seek.partition.topic, seek.partition.partition)
                .map_or(Ok(()), |element| element.error());
            match outcome {
                Ok(()) => self.buffer.purge(std::slice::from_ref(&seek.partition), false),
                Err(error) if error.rdkafka_error_code() == Some(RDKafkaErrorCode::InProgress) => {
                    self.buffer.purge(std::slice::from_ref(&seek.partition), false);
                }
                Err(error) if now < seek.until && retriable_seek(&error) => self.pending_seeks.push(seek),
                Err(error) => {
                    tracing::warn!(topic = %seek.partition.topic, partition = seek.partition.partition,
                        error = %error, "seek not applied");
                    failed.push((seek.partition, error.to_string()));
                }
            }
        }
        failed
    }
}

/// Errors a commit meets while the group rebalances; it succeeds once the member has rejoined.
fn rebalancing(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::State
        )
    )
}

fn processed_list(offsets: &[ProcessedOffset]) -> Result<TopicPartitionList, SidecarError> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for processed in offsets {
        let next = processed.offset.checked_add(1).filter(|next| *next >= 0).ok_or_else(|| {
            SidecarError::new(ErrorCode::InvalidRequest, format!("offset {} cannot be committed", processed.offset))
        })?;
        let mut element = list.add_partition(&processed.topic, processed.partition);
        element.set_offset(Offset::Offset(next)).map_err(|error| kafka_error("commit", &error))?;
        if let Some(metadata) = &processed.metadata {
            element.set_metadata(metadata.as_str());
        }
    }
    Ok(list)
}

fn positions_list(positions: &[(TopicPartition, i64)]) -> Result<TopicPartitionList, SidecarError> {
    let mut list = TopicPartitionList::with_capacity(positions.len());
    for (partition, next) in positions {
        list.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(*next))
            .map_err(|error| kafka_error("commit", &error))?;
    }
    Ok(list)
}

fn retriable_seek(error: &KafkaError) -> bool {
    match error.rdkafka_error_code() {
        Some(code) => matches!(
            code,
            RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition | RDKafkaErrorCode::PreviousInProgress
        ),
        None => false,
    }
}

fn committed_from(list: &TopicPartitionList) -> Vec<CommittedOffset> {
    list.elements()
        .iter()
        .map(|element| CommittedOffset {
            topic: element.topic().to_string(),
            partition: element.partition(),
            offset: match element.offset() {
                Offset::Offset(offset) => offset,
                _ => -1,
            },
            metadata: element.metadata().to_string(),
        })
        .collect()
}
