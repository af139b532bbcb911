//! librdkafka callbacks of one consumer instance. Rebalances run inside `poll` on the instance's
//! own thread; the context only notes what changed, and the worker acts on it right after `poll`
//! returns (purging prefetched records of revoked partitions before any fetch can see them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

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

/// Next offsets to commit per partition, kept by a consumer that tracks what it has finished
/// (the reactive consumer): committed for revoked partitions before they go, so the next owner
/// does not repeat finished work.
pub type DoneOffsets = Arc<Mutex<HashMap<TopicPartition, i64>>>;

/// The instance's librdkafka context.
pub struct InstanceContext {
    label: String,
    events: Mutex<Vec<RebalanceEvent>>,
    done: Option<DoneOffsets>,
    oauth: Option<crate::kafka::oauth::OAuthTokenSource>,
}

impl InstanceContext {
    /// A context for the instance `label` (`group/name`, for logs).
    pub fn new(label: String, done: Option<DoneOffsets>) -> Self {
        Self { label, events: Mutex::new(Vec::new()), done, oauth: None }
    }

    /// OAUTHBEARER tokens come from `oauth` (`kafka.security.sasl.oauthbearer`).
    pub fn with_oauth(mut self, oauth: Option<crate::kafka::oauth::OAuthTokenSource>) -> Self {
        self.oauth = oauth;
        self
    }

    /// Commits the finished offsets of `revoked` partitions, while they are still ours.
    fn commit_done(&self, consumer: &BaseConsumer<Self>, revoked: &[TopicPartition]) {
        let Some(done) = &self.done else { return };
        let mut list = TopicPartitionList::new();
        {
            let mut done = crate::sync::lock(done);
            for partition in revoked {
                if let Some(next) = done.remove(partition) {
                    let _ = list.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(next));
                }
            }
        }
        if list.count() > 0
            && let Err(error) = consumer.commit(&list, CommitMode::Sync)
        {
            tracing::warn!(instance = %self.label, error = %error, "cannot commit finished records of revoked partitions");
        }
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
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        crate::kafka::oauth::generate(self.oauth.as_ref())
    }

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
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            // Revocations must be seen before the partitions go, so nothing stale is fetched after.
            Rebalance::Revoke(list) => {
                let revoked = partitions(list);
                self.commit_done(consumer, &revoked);
                RebalanceEvent::Revoked(revoked)
            }
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
