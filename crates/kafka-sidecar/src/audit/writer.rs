//! The audit writer task: takes queued events in batches, makes sure the audit topic exists
//! (creating it when missing), and produces each batch through the shared producer, waiting for
//! Kafka's answers so written and dropped records are counted exactly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::{mpsc, oneshot};

use super::{AuditEvent, Drops};
use crate::config::AuditConfig;
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::record::{Origin, OutgoingRecord};

/// The most events produced as one batch (one admission of the shared budget).
pub const BATCH_RECORDS: usize = 256;

/// How long a batch refused for backpressure is retried before it is dropped.
const RETRY_FOR: Duration = Duration::from_secs(5);

/// The audit writer's sender name: its client id in metrics and its share in fair admission.
pub const AUDIT_CLIENT_ID: &str = "kafka-sidecar-audit";

pub(super) struct Writer {
    producer: Arc<SharedProducer>,
    admin: ClientConfig,
    topic: String,
    topic_partitions: i32,
    topic_ready: bool,
    /// Until when an `UNKNOWN_TOPIC` answer is retried: right after the sidecar created the topic,
    /// the producer's metadata may not know it yet.
    created_until: Option<Instant>,
    drops: Arc<Drops>,
    origin: Origin,
}

impl Writer {
    pub(super) fn new(
        config: &AuditConfig,
        producer: Arc<SharedProducer>,
        admin: ClientConfig,
        drops: Arc<Drops>,
    ) -> Self {
        Self {
            producer,
            admin,
            topic: config.topic.clone(),
            topic_partitions: config.topic_partitions,
            topic_ready: false,
            created_until: None,
            drops,
            origin: Origin { client_id: AUDIT_CLIENT_ID.into(), session_id: String::new() },
        }
    }

    /// Writes batches until the queue is closed (by `stop`, or when every handle is gone) and
    /// empty; after `stop`'s deadline, what is left is counted as dropped.
    pub(super) async fn run(mut self, mut queue: mpsc::Receiver<AuditEvent>, mut stop: oneshot::Receiver<Instant>) {
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut deadline: Option<Instant> = None;
        loop {
            let received = if deadline.is_some() {
                queue.recv_many(&mut batch, BATCH_RECORDS).await
            } else {
                tokio::select! {
                    biased;
                    at = &mut stop => {
                        // A dropped stop handle means "now".
                        deadline = Some(at.unwrap_or_else(|_| Instant::now()));
                        queue.close();
                        continue;
                    }
                    received = queue.recv_many(&mut batch, BATCH_RECORDS) => received,
                }
            };
            if received == 0 {
                break;
            }
            self.drops.metrics.audit.queued.set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
            let count = batch.len() as u64;
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline.into(), self.write(&mut batch)).await.is_err() {
                        self.drops.dropped("shutdown", count, &"the grace period ended before the batch was written");
                    }
                }
                None => self.write(&mut batch).await,
            }
            batch.clear();
        }
        self.drops.metrics.audit.queued.set(0);
    }

    /// Writes one batch; every event is counted as written or dropped.
    async fn write(&mut self, batch: &mut Vec<AuditEvent>) {
        let count = batch.len() as u64;
        if !self.topic_ready {
            if let Err(error) = self.ensure_topic().await {
                self.drops.dropped("topic_unavailable", count, &error.message);
                return;
            }
            self.topic_ready = true;
        }
        let records = self.encode(batch);
        if records.is_empty() {
            return;
        }
        let count = records.len() as u64;
        let give_up = Instant::now() + RETRY_FOR;
        let outcomes = loop {
            match self.producer.send_and_wait(&self.origin, records.clone()).await {
                Ok(outcomes) => break outcomes,
                Err(error) if self.worth_retrying(&error) && Instant::now() < give_up => {
                    let pause = error.retry_after.unwrap_or(Duration::from_millis(100)).min(Duration::from_secs(1));
                    tokio::time::sleep(pause).await;
                }
                Err(error) => {
                    if error.code == ErrorCode::UnknownTopic {
                        self.topic_ready = false;
                    }
                    let reason = if error.code == ErrorCode::ShuttingDown { "shutdown" } else { "producer_refused" };
                    self.drops.dropped(reason, count, &error.message);
                    return;
                }
            }
        };
        let mut failure: Option<SidecarError> = None;
        let mut failed = 0;
        for outcome in outcomes {
            match outcome {
                Ok(_) => {
                    self.drops.metrics.audit.written.inc();
                }
                Err(error) => {
                    failed += 1;
                    failure.get_or_insert(error);
                }
            }
        }
        if let Some(error) = failure {
            let reason = if error.code == ErrorCode::NotDeliveredAtShutdown { "shutdown" } else { "delivery_failed" };
            self.drops.dropped(reason, failed, &error.message);
        }
    }

    fn worth_retrying(&self, error: &SidecarError) -> bool {
        let just_created = self.created_until.is_some_and(|until| Instant::now() < until);
        error.code.is_retriable() || (error.code == ErrorCode::UnknownTopic && just_created)
    }

    /// Each event as a record: compact JSON, keyed by who acted, stamped with the action's time.
    fn encode(&self, batch: &mut Vec<AuditEvent>) -> Vec<OutgoingRecord> {
        let mut records = Vec::with_capacity(batch.len());
        for (index, event) in batch.drain(..).enumerate() {
            let value = match serde_json::to_vec(&event) {
                Ok(value) => value,
                Err(error) => {
                    self.drops.dropped("encoding", 1, &error);
                    continue;
                }
            };
            let timestamp_ms = event
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|since| i64::try_from(since.as_millis()).ok());
            records.push(OutgoingRecord {
                topic: self.topic.clone(),
                key: event.identity.key().map(|key| Bytes::copy_from_slice(key.as_bytes())),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                partition: None,
                timestamp_ms,
                record_id: index as u64,
            });
        }
        records
    }

    /// Makes sure the audit topic exists: created with `audit.topic_partitions` partitions and the
    /// broker's default replication (1 on brokers too old for that) when missing.
    async fn ensure_topic(&mut self) -> Result<(), SidecarError> {
        match self.producer.describe_topics(Some(&self.topic)).await {
            Ok(_) => return Ok(()),
            Err(error) if error.code == ErrorCode::UnknownTopic => {}
            Err(error) => return Err(error),
        }
        let cannot = |error: &dyn std::fmt::Display| {
            SidecarError::new(ErrorCode::KafkaError, format!("cannot create the audit topic {:?}: {error}", self.topic))
        };
        let admin: AdminClient<DefaultClientContext> = self.admin.create().map_err(|error| cannot(&error))?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for replication in [-1, 1] {
            let topic = NewTopic::new(&self.topic, self.topic_partitions, TopicReplication::Fixed(replication));
            let results = admin.create_topics([&topic], &options).await.map_err(|error| cannot(&error))?;
            match results.into_iter().next() {
                Some(Ok(_)) | None => {
                    tracing::info!(topic = %self.topic, "audit topic created");
                    self.created_until = Some(Instant::now() + RETRY_FOR);
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
                Some(Err((_, RDKafkaErrorCode::InvalidReplicationFactor))) if replication == -1 => continue,
                Some(Err((_, code))) => return Err(cannot(&code)),
            }
            return Ok(());
        }
        Err(cannot(&"no replication factor was accepted"))
    }
}
