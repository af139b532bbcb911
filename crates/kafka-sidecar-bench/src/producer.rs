//! The in-process baseline: an rdkafka producer inside the benchmark process configured like
//! the sidecar's own producer (see crates/kafka-sidecar/src/kafka/properties.rs), counting
//! deliveries and, for latency runs, timing each record from its open-loop due time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::generator::Schedule;

/// The sidecar's default producer properties (32 MiB admission budget, queue at twice that).
pub fn sidecar_equivalent_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "bench-in-process")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.codec", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "1065536")
        .set("queue.buffering.max.kbytes", "65536")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .set("statistics.interval.ms", "5000")
        .set("topic.metadata.refresh.interval.ms", "60000")
        .set("allow.auto.create.topics", "false");
    config
}

/// Counts deliveries; with a schedule, records each delivered record's latency from its due
/// time, skipping ids below `warm_up`.
pub struct Tracker {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    timing: Option<(Schedule, u64)>,
    pub histogram: Mutex<Histogram<u64>>,
}

impl Tracker {
    pub fn new(timing: Option<(Schedule, u64)>) -> Result<Self> {
        Ok(Self {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timing,
            histogram: Mutex::new(crate::summary::new_histogram()?),
        })
    }

    /// Records delivered or failed so far.
    pub fn done(&self) -> u64 {
        self.delivered.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire)
    }
}

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::AcqRel);
            return;
        }
        if let Some((schedule, warm_up)) = &self.timing
            && id as u64 >= *warm_up
        {
            let micros = schedule.micros_since_due(id as u64);
            if let Ok(mut histogram) = self.histogram.lock() {
                crate::summary::record(&mut histogram, micros);
            }
        }
        self.delivered.fetch_add(1, Ordering::AcqRel);
    }
}

/// A producer with its delivery tracker.
pub type TrackedProducer = ThreadedProducer<Tracker>;

/// Creates the in-process producer.
pub fn create(bootstrap: &str, tracker: Tracker) -> Result<TrackedProducer> {
    sidecar_equivalent_config(bootstrap).create_with_context(tracker).context("creating the in-process producer")
}

/// Enqueues one record, waiting while librdkafka's queue is full.
pub fn send(producer: &TrackedProducer, topic: &str, value: &Bytes, id: u64) -> Result<()> {
    enqueue(producer, BaseRecord::with_opaque_to(topic, id as usize).payload(value.as_ref()))
}

/// Enqueues one record to `partition`, with `key` if given, waiting while librdkafka's queue is full.
pub fn send_to(
    producer: &TrackedProducer,
    topic: &str,
    partition: i32,
    key: Option<&[u8]>,
    value: &Bytes,
    id: u64,
) -> Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, id as usize).partition(partition).payload(value.as_ref());
    if let Some(key) = key {
        record = record.key(key);
    }
    enqueue(producer, record)
}

fn enqueue(producer: &TrackedProducer, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((error, _)) => return Err(error).context("producing in process"),
        }
    }
}

/// Waits until `target` records have a delivery outcome or `limit` passes.
pub fn wait_for(producer: &TrackedProducer, target: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while producer.context().done() < target {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Flushes before the producer is dropped so its drop does not block on pending records.
pub fn close(producer: &TrackedProducer) {
    let _ = producer.flush(Duration::from_secs(10));
}

/// The producer's delivery tracker.
pub fn tracker(producer: &TrackedProducer) -> &Tracker {
    producer.context()
}
