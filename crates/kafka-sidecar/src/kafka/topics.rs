//! Topic metadata cache: tells an unknown topic or partition apart before a record is accepted,
//! so callers get `UNKNOWN_TOPIC` at once instead of a delivery timeout later.
//!
//! Lookups run on the blocking pool (librdkafka's metadata call blocks). Known topics are cached
//! for `kafka.topic_cache_ttl_ms`; an unknown topic is re-checked after a second, so a topic created
//! moments later works. When a refresh fails, a stale known entry is still used: an outage must
//! not turn into `UNKNOWN_TOPIC`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer, ThreadedProducer};

use super::context::SidecarContext;
use crate::error::{ErrorCode, SidecarError};

/// A topic as the cluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Partitions in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: i32,
    /// Leader broker id (-1 without a leader).
    pub leader: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replica broker ids.
    pub in_sync: Vec<i32>,
}

const UNKNOWN_TOPIC_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum TopicState {
    Known { partitions: i32 },
    Unknown,
}

/// Cached topic metadata.
pub struct TopicCache {
    producer: Arc<ThreadedProducer<SidecarContext>>,
    entries: Mutex<HashMap<String, (Instant, TopicState)>>,
    ttl: Duration,
    lookup_timeout: Duration,
}

impl TopicCache {
    /// A cache that looks topics up through `producer`.
    pub fn new(producer: Arc<ThreadedProducer<SidecarContext>>, ttl: Duration, lookup_timeout: Duration) -> Self {
        Self { producer, entries: Mutex::new(HashMap::new()), ttl, lookup_timeout }
    }

    /// Checks that `topic` exists and, when given, that `partition` is one of its partitions.
    pub async fn check(&self, topic: &str, partition: Option<i32>) -> Result<(), SidecarError> {
        let state = self.state(topic).await?;
        match (state, partition) {
            (TopicState::Unknown, _) => {
                Err(SidecarError::new(ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist")))
            }
            (TopicState::Known { partitions }, Some(partition)) if partition < 0 || partition >= partitions => {
                Err(SidecarError::new(
                    ErrorCode::InvalidPartition,
                    format!("topic {topic:?} has partitions 0..{partitions}, not {partition}"),
                ))
            }
            (TopicState::Known { .. }, _) => Ok(()),
        }
    }

    async fn state(&self, topic: &str) -> Result<TopicState, SidecarError> {
        let cached = self.cached(topic);
        if let Some((fetched_at, state)) = cached {
            let ttl = match state {
                TopicState::Known { .. } => self.ttl,
                TopicState::Unknown => UNKNOWN_TOPIC_TTL,
            };
            if fetched_at.elapsed() < ttl {
                return Ok(state);
            }
        }
        match self.fetch(topic).await {
            Ok(state) => {
                crate::sync::lock(&self.entries).insert(topic.to_string(), (Instant::now(), state));
                Ok(state)
            }
            Err(error) => match cached {
                Some((_, state @ TopicState::Known { .. })) => Ok(state),
                _ => Err(error),
            },
        }
    }

    /// Describes one topic (`UNKNOWN_TOPIC` if missing) or, with `None`, every topic. Never cached:
    /// metadata endpoints show the cluster as it is now.
    pub async fn describe(&self, topic: Option<&str>) -> Result<Vec<TopicDescription>, SidecarError> {
        let producer = Arc::clone(&self.producer);
        let name = topic.map(str::to_string);
        let timeout = self.lookup_timeout;
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(name.as_deref(), timeout))
            .await
            .map_err(|error| SidecarError::new(ErrorCode::KafkaUnavailable, error.to_string()))?
            .map_err(|error| {
                SidecarError::new(ErrorCode::KafkaUnavailable, format!("cannot read metadata: {error}"))
            })?;
        let described: Vec<TopicDescription> = metadata
            .topics()
            .iter()
            .filter(|found| found.error().is_none() && !found.partitions().is_empty())
            .filter(|found| topic.is_none_or(|wanted| found.name() == wanted))
            .map(|found| TopicDescription {
                name: found.name().to_string(),
                partitions: found
                    .partitions()
                    .iter()
                    .map(|partition| PartitionDescription {
                        partition: partition.id(),
                        leader: partition.leader(),
                        replicas: partition.replicas().to_vec(),
                        in_sync: partition.isr().to_vec(),
                    })
                    .collect(),
            })
            .collect();
        if let Some(topic) = topic
            && described.is_empty()
        {
            return Err(SidecarError::new(ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist")));
        }
        Ok(described)
    }

    fn cached(&self, topic: &str) -> Option<(Instant, TopicState)> {
        crate::sync::lock(&self.entries).get(topic).copied()
    }

    async fn fetch(&self, topic: &str) -> Result<TopicState, SidecarError> {
        let producer = Arc::clone(&self.producer);
        let name = topic.to_string();
        let timeout = self.lookup_timeout;
        let unavailable = |why: String| {
            SidecarError::new(ErrorCode::KafkaUnavailable, format!("cannot check topic {topic:?}: {why}"))
        };
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|error| unavailable(error.to_string()))?
            .map_err(|error| unavailable(error.to_string()))?;
        let Some(found) = metadata.topics().iter().find(|candidate| candidate.name() == topic) else {
            return Ok(TopicState::Unknown);
        };
        match found.error().map(RDKafkaErrorCode::from) {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => Ok(TopicState::Unknown),
            Some(RDKafkaErrorCode::LeaderNotAvailable) | None if !found.partitions().is_empty() => {
                let partitions = i32::try_from(found.partitions().len()).unwrap_or(i32::MAX);
                Ok(TopicState::Known { partitions })
            }
            None => Ok(TopicState::Unknown),
            Some(code) => Err(unavailable(code.to_string())),
        }
    }
}
