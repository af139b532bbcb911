//! Consumer metrics: fetches, records and bytes returned, rebalances, commit failures, instances,
//! and consumer lag per group, topic and partition (the first thing seed 003 says to watch).
//!
//! Group and topic label values are bounded like every other label; partitions are bounded by the
//! topics' partition counts, and lag series of groups that leave the sidecar are removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;
use crate::consumer::ConsumedRecord;

/// Labels of a consumer group's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Consumer group.
    pub group: String,
}

/// Labels of a group's per-topic series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
}

/// Labels of a lag series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct LagLabels {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// The consumer families, registered with the rest.
#[derive(Default)]
pub struct ConsumerMetrics {
    /// Fetch requests served.
    pub fetch_requests: Family<GroupLabels, Counter>,
    /// Records returned to apps.
    pub records: Family<GroupTopicLabels, Counter>,
    /// Key and value bytes returned to apps.
    pub bytes: Family<GroupTopicLabels, Counter>,
    /// Partition assignments and revocations seen.
    pub rebalances: Family<GroupLabels, Counter>,
    /// Commits Kafka refused.
    pub commit_failures: Family<GroupLabels, Counter>,
    /// Live consumer instances.
    pub instances: Gauge,
    /// Records behind the log end, per partition.
    pub lag_records: Family<LagLabels, Gauge>,
    /// Age of the oldest unconsumed record, per partition.
    pub lag_seconds: Family<LagLabels, Gauge<f64, AtomicU64>>,
}

impl ConsumerMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("consumer_fetch_requests", "Consumer fetch requests served", self.fetch_requests.clone());
        r.register("consumer_records", "Records returned to consuming apps", self.records.clone());
        r.register("consumer_bytes", "Key and value bytes returned to consuming apps", self.bytes.clone());
        r.register("consumer_rebalances", "Partition assignments and revocations", self.rebalances.clone());
        r.register("consumer_commit_failures", "Offset commits Kafka refused", self.commit_failures.clone());
        r.register("consumer_instances", "Live consumer instances", self.instances.clone());
        r.register(
            "consumer_lag_records",
            "Records between the committed offset and the log end",
            self.lag_records.clone(),
        );
        r.register("consumer_lag_seconds", "Age of the oldest record not yet committed", self.lag_seconds.clone());
    }
}

/// One instance's counters, labels resolved once.
pub struct ConsumerCounters {
    metrics: Arc<Metrics>,
    group: String,
    /// Fetch requests.
    pub fetch_requests: Counter,
    /// Rebalance events.
    pub rebalances: Counter,
    /// Refused commits.
    pub commit_failures: Counter,
    by_topic: HashMap<Arc<str>, (Counter, Counter)>,
}

impl ConsumerCounters {
    /// Counters for an instance of `group`.
    pub fn new(metrics: Arc<Metrics>, group: &str) -> Self {
        let labels = GroupLabels { group: metrics.group_label(group) };
        let family = &metrics.consumer;
        let fetch_requests = family.fetch_requests.get_or_create(&labels).clone();
        let rebalances = family.rebalances.get_or_create(&labels).clone();
        let commit_failures = family.commit_failures.get_or_create(&labels).clone();
        Self { fetch_requests, rebalances, commit_failures, group: labels.group, by_topic: HashMap::new(), metrics }
    }

    /// Counts records handed to the app.
    pub fn count_returned(&mut self, records: &[ConsumedRecord]) {
        for record in records {
            let (count, bytes) = match self.by_topic.get(&record.topic) {
                Some(counters) => counters,
                None => {
                    let labels =
                        GroupTopicLabels { group: self.group.clone(), topic: self.metrics.topic_label(&record.topic) };
                    let counters = (
                        self.metrics.consumer.records.get_or_create(&labels).clone(),
                        self.metrics.consumer.bytes.get_or_create(&labels).clone(),
                    );
                    self.by_topic.entry(Arc::clone(&record.topic)).or_insert(counters)
                }
            };
            count.inc();
            bytes.inc_by(record.payload_bytes() as u64);
        }
    }
}
