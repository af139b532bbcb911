//! Dead letters: a record the backend cannot process goes to `<topic><suffix>` with its key, value
//! and headers unchanged, plus provenance headers (original topic, partition, offset, timestamp,
//! attempts, error, group). The write is acknowledged by Kafka before the record counts as done.
//! A missing dead letter topic is created with the source topic's partition count.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::consumer::ConsumedRecord;
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::record::{Origin, OutgoingRecord};

/// Header names of a dead letter's provenance.
pub const ORIGINAL_TOPIC: &str = "kafka-sidecar-dlq-topic";
/// Original partition.
pub const ORIGINAL_PARTITION: &str = "kafka-sidecar-dlq-partition";
/// Original offset.
pub const ORIGINAL_OFFSET: &str = "kafka-sidecar-dlq-offset";
/// Original timestamp (ms).
pub const ORIGINAL_TIMESTAMP: &str = "kafka-sidecar-dlq-timestamp";
/// Pushes attempted.
pub const ATTEMPTS: &str = "kafka-sidecar-dlq-attempts";
/// Why (status and body excerpt).
pub const ERROR: &str = "kafka-sidecar-dlq-error";
/// The consumer group.
pub const GROUP: &str = "kafka-sidecar-dlq-group";
/// How often a record was redriven.
pub const REDRIVE_COUNT: &str = "kafka-sidecar-redrive-count";

/// Every provenance header, removed again on redrive.
pub const PROVENANCE: &[&str] =
    &[ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET, ORIGINAL_TIMESTAMP, ATTEMPTS, ERROR, GROUP];

/// Writes dead letters through the sidecar's producer.
pub struct DeadLetters {
    producer: Arc<SharedProducer>,
    admin: ClientConfig,
    suffix: String,
    group: String,
    known: Mutex<HashSet<String>>,
}

impl DeadLetters {
    /// Dead letters of `group` to `<topic><suffix>`; `admin` configures topic creation.
    pub fn new(producer: Arc<SharedProducer>, admin: ClientConfig, suffix: &str, group: &str) -> Self {
        Self {
            producer,
            admin,
            suffix: suffix.to_string(),
            group: group.to_string(),
            known: Mutex::new(HashSet::new()),
        }
    }

    /// The dead letter topic of `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        format!("{topic}{}", self.suffix)
    }

    /// Makes sure `topic`'s dead letter topic exists, creating it like its source when missing.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), SidecarError> {
        let dead_letter_topic = self.topic_for(topic);
        if crate::sync::lock(&self.known).contains(&dead_letter_topic) {
            return Ok(());
        }
        match self.producer.describe_topics(Some(&dead_letter_topic)).await {
            Ok(_) => {}
            Err(error) if error.code == ErrorCode::UnknownTopic => self.create(topic, &dead_letter_topic).await?,
            Err(error) => return Err(error),
        }
        crate::sync::lock(&self.known).insert(dead_letter_topic);
        Ok(())
    }

    async fn create(&self, source: &str, dead_letter_topic: &str) -> Result<(), SidecarError> {
        let partitions = self.producer.describe_topics(Some(source)).await?.first().map_or(1, |t| t.partitions.len());
        let partitions = i32::try_from(partitions).unwrap_or(1);
        let admin: AdminClient<DefaultClientContext> =
            self.admin.create().map_err(|error| cannot_create(dead_letter_topic, &error))?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        // The broker's default replication first (-1); brokers too old for that get 1.
        for replication in [-1, 1] {
            let new_topic = NewTopic::new(dead_letter_topic, partitions, TopicReplication::Fixed(replication));
            let results = admin
                .create_topics([&new_topic], &options)
                .await
                .map_err(|error| cannot_create(dead_letter_topic, &error))?;
            match results.into_iter().next() {
                Some(Ok(_)) | None => {}
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
                Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) if replication == -1 => continue,
                Some(Err((_, code))) => return Err(cannot_create(dead_letter_topic, &code)),
            }
            tracing::info!(topic = dead_letter_topic, partitions, "dead letter topic created");
            return Ok(());
        }
        Err(cannot_create(dead_letter_topic, &"no replication factor was accepted"))
    }

    /// Writes one dead letter and waits for Kafka's acknowledgement.
    pub async fn send(&self, record: &ConsumedRecord, attempts: u32, error: &str) -> Result<(), SidecarError> {
        self.ensure_topic(&record.topic).await?;
        let mut headers: Vec<(String, Bytes)> =
            record.headers.iter().map(|(name, value)| (name.clone(), value.clone().unwrap_or_default())).collect();
        let timestamp = record.timestamp.map(|(ms, _)| ms.to_string()).unwrap_or_default();
        for (name, value) in [
            (ORIGINAL_TOPIC, record.topic.to_string()),
            (ORIGINAL_PARTITION, record.partition.to_string()),
            (ORIGINAL_OFFSET, record.offset.to_string()),
            (ORIGINAL_TIMESTAMP, timestamp),
            (ATTEMPTS, attempts.to_string()),
            (ERROR, error.chars().take(1024).collect()),
            (GROUP, self.group.clone()),
        ] {
            headers.push((name.to_string(), Bytes::from(value)));
        }
        let dead_letter = OutgoingRecord {
            topic: self.topic_for(&record.topic),
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
            partition: None,
            timestamp_ms: record.timestamp.map(|(ms, _)| ms),
            record_id: 0,
        };
        let origin = Origin { client_id: "reactive-dlq".into(), session_id: String::new() };
        let mut outcomes = self.producer.send_and_wait(&origin, vec![dead_letter]).await?;
        match outcomes.pop() {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error),
            None => Err(SidecarError::new(ErrorCode::Internal, "no outcome for the dead letter")),
        }
    }
}

fn cannot_create(topic: &str, error: &dyn std::fmt::Display) -> SidecarError {
    SidecarError::new(ErrorCode::KafkaError, format!("cannot create dead letter topic {topic:?}: {error}"))
}
