//! Redrive: re-produce dead letters to their original topic with their original key, value and
//! headers (provenance headers removed, a redrive count added), through the sidecar's producer,
//! each write acknowledged before the report counts it. The dead letter topic is read with a
//! short-lived client that never joins a group or commits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::dead_letter::{ORIGINAL_TOPIC, PROVENANCE, REDRIVE_COUNT};
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::record::{Origin, OutgoingRecord};

/// The most records one redrive moves when the request names no `max_records`.
const DEFAULT_MAX_RECORDS: usize = 10_000;
/// How long reading the dead letter topic may go without a record before it counts as read.
const READ_IDLE: Duration = Duration::from_secs(2);

/// `POST /admin/dlq/redrive`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// The dead letter topic.
    pub topic: String,
    /// First offset to redrive in every partition (default: the beginning).
    pub from_offset: Option<i64>,
    /// Last offset to redrive in every partition, inclusive (default: the end).
    pub to_offset: Option<i64>,
    /// The most records to redrive.
    pub max_records: Option<usize>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RedriveReport {
    /// Records re-produced (and acknowledged) to their original topics.
    pub redriven: usize,
    /// Records without provenance (not dead letters of this sidecar), left alone.
    pub skipped: usize,
    /// Records re-produced per original topic.
    pub topics: HashMap<String, usize>,
}

/// Reads dead letter topics and re-produces them.
pub struct Redriver {
    producer: Arc<SharedProducer>,
    client: ClientConfig,
}

impl Redriver {
    pub(super) fn new(producer: Arc<SharedProducer>, client: ClientConfig) -> Self {
        Self { producer, client }
    }

    /// Runs one redrive.
    pub async fn run(&self, request: RedriveRequest) -> Result<RedriveReport, SidecarError> {
        crate::record::validate_topic_name(&request.topic)?;
        let partitions = self.producer.describe_topics(Some(&request.topic)).await?;
        let partition_ids: Vec<i32> =
            partitions.iter().flat_map(|topic| topic.partitions.iter().map(|p| p.partition)).collect();
        let mut client = self.client.clone();
        client.set("group.id", format!("kafka-sidecar-redrive-{:016x}", rand::random::<u64>()));
        client.set("enable.auto.commit", "false").set("enable.partition.eof", "true");
        let max = request.max_records.unwrap_or(DEFAULT_MAX_RECORDS);
        let read = tokio::task::spawn_blocking(move || read_dead_letters(&client, &request, &partition_ids, max))
            .await
            .map_err(|_| SidecarError::new(ErrorCode::Internal, "the redrive reader failed"))??;
        let mut report = RedriveReport::default();
        let mut records = Vec::new();
        for letter in read {
            match letter {
                Some(record) => records.push(record),
                None => report.skipped += 1,
            }
        }
        for chunk in records.chunks(500) {
            let origin = Origin { client_id: "reactive-redrive".into(), session_id: String::new() };
            let outcomes = self.producer.send_and_wait(&origin, chunk.to_vec()).await?;
            for (record, outcome) in chunk.iter().zip(outcomes) {
                outcome?;
                report.redriven += 1;
                *report.topics.entry(record.topic.clone()).or_default() += 1;
            }
        }
        tracing::info!(redriven = report.redriven, skipped = report.skipped, "dead letters redriven");
        Ok(report)
    }
}

fn read_dead_letters(
    client: &ClientConfig,
    request: &RedriveRequest,
    partitions: &[i32],
    max: usize,
) -> Result<Vec<Option<OutgoingRecord>>, SidecarError> {
    let unavailable = |error: rdkafka::error::KafkaError| {
        SidecarError::new(ErrorCode::KafkaUnavailable, format!("cannot read {}: {error}", request.topic))
    };
    let consumer: BaseConsumer = client.create().map_err(unavailable)?;
    let mut assignment = TopicPartitionList::new();
    let start = request.from_offset.map_or(Offset::Beginning, Offset::Offset);
    for partition in partitions {
        assignment.add_partition_offset(&request.topic, *partition, start).map_err(unavailable)?;
    }
    consumer.assign(&assignment).map_err(unavailable)?;
    let mut finished = std::collections::HashSet::new();
    let mut letters = Vec::new();
    let mut last_record = Instant::now();
    while letters.len() < max && finished.len() < partitions.len() && last_record.elapsed() < READ_IDLE {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                finished.insert(partition);
            }
            Some(Err(error)) => return Err(unavailable(error)),
            Some(Ok(message)) => {
                last_record = Instant::now();
                if request.to_offset.is_some_and(|to| message.offset() > to) {
                    finished.insert(message.partition());
                    continue;
                }
                letters.push(original_of(&message));
            }
        }
    }
    Ok(letters)
}

/// The original record of a dead letter, or `None` without provenance.
fn original_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<OutgoingRecord> {
    let mut topic = None;
    let mut redrives = 0_u64;
    let mut headers = Vec::new();
    for header in message.headers().map(|headers| headers.iter().collect::<Vec<_>>()).unwrap_or_default() {
        let value = header.value.map(Bytes::copy_from_slice).unwrap_or_default();
        if header.key == ORIGINAL_TOPIC {
            topic = std::str::from_utf8(&value).ok().map(str::to_string);
        } else if header.key == REDRIVE_COUNT {
            redrives = std::str::from_utf8(&value).ok().and_then(|text| text.parse().ok()).unwrap_or(0);
        } else if !PROVENANCE.contains(&header.key) {
            headers.push((header.key.to_string(), value));
        }
    }
    headers.push((REDRIVE_COUNT.to_string(), Bytes::from((redrives + 1).to_string())));
    Some(OutgoingRecord {
        topic: topic?,
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        partition: None,
        timestamp_ms: None,
        record_id: 0,
    })
}
