//! Consumer lag, per partition: the group's committed offset, the log end, the records between
//! them and, when the oldest unconsumed record carries a timestamp, how old it is (time lag).
//!
//! Each lookup uses a short-lived client that never joins the group and never commits: it reads
//! committed offsets, watermarks, and (for time lag) one record per lagging partition.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::manager::ConsumerManager;
use crate::config::KafkaSecurityConfig;
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::oauth::OAuthClientContext;
use crate::metrics::{LagLabels, Metrics};

/// How long the time-lag probe waits for the oldest unconsumed records.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Lag of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (next to read), -1 when it has none.
    pub committed: i64,
    /// The log end offset (high watermark).
    pub log_end: i64,
    /// Records not yet committed (from the log start when nothing is committed).
    pub lag: i64,
    /// Age in seconds of the oldest record not yet committed, when known; 0 without lag.
    pub lag_seconds: Option<f64>,
}

/// Lag of `group` on `topics`. Unknown topics are `UNKNOWN_TOPIC`.
pub async fn group_lag(
    manager: &ConsumerManager,
    group: &str,
    topics: BTreeSet<String>,
) -> Result<Vec<PartitionLag>, SidecarError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", manager.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // The time-lag probe reads one record per partition: keep its prefetch tiny.
        .set("queued.max.messages.kbytes", "256")
        .set("queued.min.messages", "1")
        .set("fetch.max.bytes", "65536")
        .set("message.max.bytes", "65536")
        .set("max.partition.fetch.bytes", "16384");
    for (key, value) in crate::kafka::shared_consumer_properties(manager.full_config()) {
        client.set(key, value);
    }
    let timeout = Duration::from_millis(manager.full_config().kafka.metadata_timeout_ms);
    let _permit = manager.lag_permit().await;
    let security = manager.full_config().kafka.security.clone();
    tokio::task::spawn_blocking(move || measure(&client, &security, &topics, timeout))
        .await
        .map_err(|_| SidecarError::new(ErrorCode::Internal, "the lag lookup failed"))?
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> SidecarError {
    SidecarError::new(ErrorCode::KafkaUnavailable, format!("cannot read {what}: {error}"))
}

fn measure(
    client: &ClientConfig,
    security: &KafkaSecurityConfig,
    topics: &BTreeSet<String>,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, SidecarError> {
    let context = OAuthClientContext::new(security).map_err(|error| unavailable("consumer lag", error))?;
    let consumer: BaseConsumer<OAuthClientContext> =
        client.create_with_context(context).map_err(|error| unavailable("consumer lag", error))?;
    // Hands librdkafka its first OAUTHBEARER token (kafka.security), which it asked for at creation.
    let _ = consumer.poll(Duration::ZERO);
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|error| unavailable("metadata", error))?;
        let found = metadata.topics().iter().find(|candidate| candidate.name() == topic);
        match found {
            Some(found) if found.error().is_none() && !found.partitions().is_empty() => {
                for partition in found.partitions() {
                    partitions.add_partition(topic, partition.id());
                }
            }
            _ => return Err(SidecarError::new(ErrorCode::UnknownTopic, format!("topic {topic:?} does not exist"))),
        }
    }
    let committed =
        consumer.committed_offsets(partitions, timeout).map_err(|error| unavailable("committed offsets", error))?;
    let mut lags = Vec::with_capacity(committed.count());
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), timeout)
            .map_err(|error| unavailable("watermarks", error))?;
        let committed = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        };
        let from = if committed >= 0 { committed.max(low) } else { low };
        let lag = (high - from).max(0);
        lags.push(PartitionLag {
            topic: element.topic().to_string(),
            partition: element.partition(),
            committed,
            log_end: high,
            lag,
            lag_seconds: if lag == 0 { Some(0.0) } else { None },
        });
    }
    probe_time_lag(&consumer, &mut lags);
    Ok(lags)
}

/// Reads the oldest unconsumed record of each lagging partition for its timestamp.
fn probe_time_lag(consumer: &BaseConsumer<OAuthClientContext>, lags: &mut [PartitionLag]) {
    let mut probe = TopicPartitionList::new();
    for lag in lags.iter().filter(|lag| lag.lag > 0) {
        // The next record not yet committed: the log end minus the lag.
        let start = Offset::Offset(lag.log_end - lag.lag);
        if probe.add_partition_offset(&lag.topic, lag.partition, start).is_err() {
            return;
        }
    }
    if probe.count() == 0 || consumer.assign(&probe).is_err() {
        return;
    }
    let mut oldest: HashMap<(String, i32), i64> = HashMap::new();
    let deadline = Instant::now() + PROBE_WAIT;
    while oldest.len() < probe.count() && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else { continue };
        if let Some(timestamp) = message.timestamp().to_millis() {
            oldest.entry((message.topic().to_string(), message.partition())).or_insert(timestamp);
        }
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    for lag in lags.iter_mut() {
        if let Some(timestamp) = oldest.get(&(lag.topic.clone(), lag.partition)) {
            lag.lag_seconds = Some(((now_ms - timestamp).max(0)) as f64 / 1000.0);
        }
    }
}

/// The topics a group's instances here read: subscribed names and assigned partitions' topics.
pub async fn group_topics(manager: &ConsumerManager, group: &str) -> BTreeSet<String> {
    let mut topics = BTreeSet::new();
    for instance in manager.groups().remove(group).unwrap_or_default() {
        if let Ok(state) = instance.state_unobserved().await {
            topics.extend(state.assignment.into_iter().map(|partition| partition.topic));
            if instance_subscribes_by_name(&state.subscription) {
                topics.extend(state.subscription);
            }
        }
    }
    topics
}

fn instance_subscribes_by_name(subscription: &[String]) -> bool {
    !subscription.iter().any(|topic| topic.starts_with('^'))
}

/// Refreshes the lag gauges of every group with instances here, every `consumer.lag_interval_ms`,
/// removing series of groups and partitions that are gone.
pub async fn export_lag(manager: Arc<ConsumerManager>, metrics: Arc<Metrics>, interval: Duration) {
    let mut exported: BTreeSet<LagLabels> = BTreeSet::new();
    loop {
        tokio::time::sleep(interval).await;
        let mut current = BTreeSet::new();
        for group in manager.groups().into_keys() {
            let topics = group_topics(&manager, &group).await;
            if topics.is_empty() {
                continue;
            }
            let lags = match group_lag(&manager, &group, topics).await {
                Ok(lags) => lags,
                Err(error) => {
                    tracing::debug!(group = %group, error = %error, "cannot measure consumer lag");
                    continue;
                }
            };
            let group_label = metrics.group_label(&group);
            for lag in lags {
                let labels = LagLabels {
                    group: group_label.clone(),
                    topic: metrics.topic_label(&lag.topic),
                    partition: lag.partition,
                };
                metrics.consumer.lag_records.get_or_create(&labels).set(lag.lag);
                if let Some(seconds) = lag.lag_seconds {
                    metrics.consumer.lag_seconds.get_or_create(&labels).set(seconds);
                }
                current.insert(labels);
            }
        }
        for gone in exported.difference(&current) {
            metrics.consumer.lag_records.remove(gone);
            metrics.consumer.lag_seconds.remove(gone);
        }
        exported = current;
    }
}
