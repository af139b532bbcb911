//! librdkafka callbacks of one consumer instance. Rebalances run inside `poll` on the instance's
//! own thread; the context only notes what changed, and the worker acts on it right after `poll`
//! returns (purging prefetched records of revoked partitions before any fetch can see them).

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

use super::types::TopicPartition;

/// A change to the instance's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions added to the assignment.
    Assigned(Vec<TopicPartition>),
    /// Partitions taken away (revoked or lost).
    Revoked(Vec<TopicPartition>),
    /// The rebalance failed.
    Failed(String),
}

/// The instance's librdkafka context.
pub struct InstanceContext {
    label: String,
    events: Mutex<Vec<RebalanceEvent>>,
}

impl InstanceContext {
    /// A context for the instance `label` (`group/name`, for logs).
    pub fn new(label: String) -> Self {
        Self { label, events: Mutex::new(Vec::new()) }
    }

    /// Takes the events noted since the last call.
    pub fn take_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *crate::sync::lock(&self.events))
    }
}

fn partitions(list: &rdkafka::TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|element| TopicPartition { topic: element.topic().to_string(), partition: element.partition() })
        .collect()
}

impl ClientContext for InstanceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::warn!(instance = %self.label, facility = fac, "librdkafka: {log_message}");
            }
            _ => tracing::debug!(instance = %self.label, facility = fac, "librdkafka: {log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(instance = %self.label, error = %error, "consumer error: {reason}");
    }
}

impl ConsumerContext for InstanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            // Revocations must be seen before the partitions go, so nothing stale is fetched after.
            Rebalance::Revoke(list) => RebalanceEvent::Revoked(partitions(list)),
            Rebalance::Error(error) => RebalanceEvent::Failed(error.to_string()),
            Rebalance::Assign(_) => return,
        };
        crate::sync::lock(&self.events).push(event);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            tracing::debug!(instance = %self.label, partitions = list.count(), "partitions assigned");
            crate::sync::lock(&self.events).push(RebalanceEvent::Assigned(partitions(list)));
        }
    }
}
