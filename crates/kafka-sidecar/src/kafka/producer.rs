//! The one shared producer of the pod: validation, admission and enqueueing for every edge.
//!
//! gRPC and HTTP both call [`SharedProducer`]; neither has its own copy of this logic. Records of one
//! call are enqueued in order, and a call's records are all enqueued before it returns, so a client
//! that waits for each call's answer keeps its per-key order in each partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};
use tokio::sync::oneshot;

use super::admission::{ByteBudget, Fairness, Permit, Refusal, RefusalReason, RetryBounds, SenderId, SenderShare};
use super::context::{DeliveryTicket, ReportRoute, SidecarContext};
use super::properties::producer_config;
use super::topics::{TopicCache, TopicDescription};
use crate::config::Config;
use crate::delivery::DeliveryHub;
use crate::error::{ErrorCode, SidecarError};
use crate::metrics::{Metrics, RecordCounters};
use crate::record::{DeliveryOutcome, Origin, OutgoingRecord, validate_topic_name};

/// Memory a queued record costs beyond its bytes: librdkafka's message struct and its header
/// copy, our delivery ticket, and the delivery report kept for the session. Admission counts it,
/// so the budget bounds memory even for tiny records (measured: with payload-only accounting,
/// 100-byte records drove the sidecar to 120 MiB RSS on a 32 MiB budget).
pub const RECORD_OVERHEAD_BYTES: u64 = 512;

/// Metric counters for one call's records, resolved once per topic rather than once per record.
struct CallCounters<'a> {
    metrics: &'a Metrics,
    client: String,
    by_topic: HashMap<String, Arc<RecordCounters>>,
}

impl<'a> CallCounters<'a> {
    fn new(metrics: &'a Metrics, client_id: &str) -> Self {
        Self { metrics, client: metrics.client_label(client_id), by_topic: HashMap::new() }
    }

    fn for_topic(&mut self, topic: &str) -> Arc<RecordCounters> {
        if let Some(counters) = self.by_topic.get(topic) {
            return Arc::clone(counters);
        }
        let counters = self.metrics.record_counters(topic, &self.client);
        self.by_topic.insert(topic.to_string(), Arc::clone(&counters));
        counters
    }
}

/// Bytes a record holds against the admission budget.
fn admitted_bytes(record: &OutgoingRecord) -> u64 {
    record.size_bytes() as u64 + RECORD_OVERHEAD_BYTES
}

/// What became of accepted-but-unacknowledged records at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Records Kafka had not acknowledged when the grace period ended; each was reported failed.
    pub undelivered: u64,
}

/// The pod's one Kafka producer.
pub struct SharedProducer {
    producer: Arc<ThreadedProducer<SidecarContext>>,
    budget: Arc<ByteBudget>,
    topics: TopicCache,
    hub: Arc<DeliveryHub>,
    metrics: Arc<Metrics>,
    max_record_bytes: usize,
    retry: RetryBounds,
    accepting: AtomicBool,
    shutting_down: Arc<AtomicBool>,
}

impl SharedProducer {
    /// Creates the producer; fails on a bad librdkafka property, naming it.
    pub fn new(
        config: &Config,
        bootstrap_servers: &str,
        hub: Arc<DeliveryHub>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let shutting_down = Arc::new(AtomicBool::new(false));
        let oauth = super::oauth::OAuthTokenSource::from_config(&config.kafka.security)
            .map_err(|error| KafkaError::ClientCreation(error.to_string()))?;
        let context = SidecarContext::new(Arc::clone(&metrics), Arc::clone(&shutting_down)).with_oauth(oauth);
        let producer: ThreadedProducer<SidecarContext> =
            producer_config(config, bootstrap_servers).create_with_context(context)?;
        let producer = Arc::new(producer);
        let topics = TopicCache::new(
            Arc::clone(&producer),
            Duration::from_millis(config.kafka.topic_cache_ttl_ms),
            Duration::from_millis(config.kafka.metadata_timeout_ms),
        );
        let retry = RetryBounds {
            floor: Duration::from_millis(u64::from(config.producer.retry_after_ms)),
            cap: Duration::from_millis(u64::from(config.producer.max_retry_after_ms)),
        };
        let fairness = Fairness {
            min_share_bytes: u64::from(config.producer.max_record_bytes) + RECORD_OVERHEAD_BYTES,
            // A refused sender that waits out the longest hint still counts when it comes back.
            active_window: (retry.cap * 2).max(Duration::from_secs(1)),
        };
        let budget = ByteBudget::new(config.producer.max_buffered_bytes, fairness);
        metrics.queue_capacity_bytes.set(i64::try_from(budget.capacity()).unwrap_or(i64::MAX));
        Ok(Self {
            producer,
            budget,
            topics,
            hub,
            metrics,
            max_record_bytes: config.producer.max_record_bytes as usize,
            retry,
            accepting: AtomicBool::new(true),
            shutting_down,
        })
    }

    /// Authentication and TLS failures reported by librdkafka, for readiness (`kafka.security`).
    pub fn broker_status(&self) -> &Arc<super::BrokerStatus> {
        self.producer.context().broker_status()
    }

    /// Enqueues records whose reports go to `origin`'s session ring (or only to metrics without a
    /// session). Results are in record order. Backpressure refuses a record and every record after
    /// it in this call, so retrying the refused tail keeps order.
    pub async fn send(&self, origin: &Origin, records: Vec<OutgoingRecord>) -> Vec<Result<(), SidecarError>> {
        let mut call_counters = CallCounters::new(&self.metrics, &origin.client_id);
        let ring = (!origin.session_id.is_empty()).then(|| self.hub.session(&origin.session_id));
        let checks = self.check(&records).await;
        let accepted_at = Instant::now();
        let sender = self.sender(origin, accepted_at);
        let mut results = Vec::with_capacity(records.len());
        let mut refused: Option<SidecarError> = None;
        for (record, check) in records.into_iter().zip(checks) {
            let counters = call_counters.for_topic(&record.topic);
            let result = check.and_then(|()| match &refused {
                Some(error) => Err(error.clone()),
                None => {
                    let size = admitted_bytes(&record);
                    let permit = self
                        .budget
                        .try_acquire(size, 1, &sender)
                        .map_err(|refusal| self.backpressure(refusal, &counters.labels.client))?;
                    let route = match &ring {
                        Some(ring) => {
                            let slot = ring.try_reserve().ok_or_else(|| self.unread_reports())?;
                            ReportRoute::Session { slot, record_id: record.record_id }
                        }
                        None => ReportRoute::MetricsOnly,
                    };
                    self.enqueue(record, route, Arc::clone(&counters), permit, accepted_at)
                }
            });
            if let Err(error) = &result {
                self.metrics.record_rejected(&counters, error.code.as_str());
                if error.code.is_retriable() && refused.is_none() {
                    refused = Some(error.clone());
                }
            }
            results.push(result);
        }
        results
    }

    /// Enqueues all records or none, then waits for each one's outcome (the HTTP contract).
    pub async fn send_and_wait(
        &self,
        origin: &Origin,
        records: Vec<OutgoingRecord>,
    ) -> Result<Vec<DeliveryOutcome>, SidecarError> {
        let mut call_counters = CallCounters::new(&self.metrics, &origin.client_id);
        if let Some(error) = self.check(&records).await.into_iter().find_map(Result::err) {
            return Err(self.refuse_whole(&mut call_counters, &records, error));
        }
        let accepted_at = Instant::now();
        let sender = self.sender(origin, accepted_at);
        let total: u64 = records.iter().map(admitted_bytes).sum();
        let mut permit = match self.budget.try_acquire(total, records.len() as u64, &sender) {
            Ok(permit) => permit,
            Err(refusal) => {
                let error = self.backpressure(refusal, &call_counters.client);
                return Err(self.refuse_whole(&mut call_counters, &records, error));
            }
        };
        let mut waiters = Vec::with_capacity(records.len());
        for record in records {
            let counters = call_counters.for_topic(&record.topic);
            let record_permit = permit.split_record(admitted_bytes(&record));
            let (sender, receiver) = oneshot::channel();
            let route = ReportRoute::Waiter(sender);
            let waiter = match self.enqueue(record, route, Arc::clone(&counters), record_permit, accepted_at) {
                Ok(()) => Ok(receiver),
                Err(error) => {
                    self.metrics.record_rejected(&counters, error.code.as_str());
                    Err(error)
                }
            };
            waiters.push(waiter);
        }
        let mut outcomes = Vec::with_capacity(waiters.len());
        for waiter in waiters {
            outcomes.push(match waiter {
                Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                    Err(SidecarError::new(ErrorCode::Internal, "the producer dropped the record's report"))
                }),
                Err(error) => Err(error),
            });
        }
        Ok(outcomes)
    }

    /// Counts every record of a request refused whole under `error`'s code (the backpressure alert
    /// watches this counter, HTTP-only apps included) and returns the error.
    fn refuse_whole(
        &self,
        call_counters: &mut CallCounters<'_>,
        records: &[OutgoingRecord],
        error: SidecarError,
    ) -> SidecarError {
        for record in records {
            self.metrics.record_rejected(&call_counters.for_topic(&record.topic), error.code.as_str());
        }
        error
    }

    /// The QUEUE_FULL error for a session (or all sessions together) whose delivery reports are
    /// not being read: refusing new records is what keeps the unread reports from being lost.
    fn unread_reports(&self) -> SidecarError {
        SidecarError {
            message: "too many delivery reports of this session are unread; read DeliveryStream".into(),
            ..SidecarError::queue_full(self.retry.floor)
        }
    }

    /// The share of the budget of the call's sender (its session, else its client id).
    fn sender(&self, origin: &Origin, now: Instant) -> Arc<SenderShare> {
        let sender = self.budget.sender(SenderId::of(origin), now);
        self.metrics.admission_senders.set(i64::try_from(self.budget.active_senders()).unwrap_or(i64::MAX));
        sender
    }

    /// The QUEUE_FULL error for a refused take, with a retry hint from the drain rate; `client` is
    /// the caller's metrics label.
    fn backpressure(&self, refusal: Refusal, client: &str) -> SidecarError {
        let estimate = self.budget.retry_hint(refusal.missing_bytes, self.retry);
        let hint = self.retry.hint(estimate, |spread| rand::random_range(0..=spread));
        let error = SidecarError::queue_full(hint);
        match refusal.reason {
            RefusalReason::Full => error,
            RefusalReason::OverFairShare => {
                self.metrics.fair_share_refused(client);
                SidecarError {
                    message: "this sender holds its fair share of the sidecar's busy producer queue; retry later"
                        .into(),
                    ..error
                }
            }
        }
    }

    /// Per-record checks that need no queue space: shutdown, size, topic name, topic metadata.
    async fn check(&self, records: &[OutgoingRecord]) -> Vec<Result<(), SidecarError>> {
        let mut topic_results: HashMap<(&str, Option<i32>), Result<(), SidecarError>> = HashMap::new();
        let mut results = Vec::with_capacity(records.len());
        for record in records {
            let result = if !self.accepting.load(Ordering::Acquire) {
                Err(SidecarError::new(ErrorCode::ShuttingDown, "the sidecar is shutting down"))
            } else if record.size_bytes() > self.max_record_bytes {
                Err(SidecarError::new(
                    ErrorCode::RecordTooLarge,
                    format!(
                        "record of {} bytes exceeds the limit of {} bytes",
                        record.size_bytes(),
                        self.max_record_bytes
                    ),
                ))
            } else {
                let key = (record.topic.as_str(), record.partition);
                match topic_results.get(&key) {
                    Some(result) => result.clone(),
                    None => {
                        let result = match validate_topic_name(&record.topic) {
                            Ok(()) => self.topics.check(&record.topic, record.partition).await,
                            Err(error) => Err(error),
                        };
                        topic_results.insert(key, result.clone());
                        result
                    }
                }
            };
            results.push(result);
        }
        results
    }

    fn enqueue(
        &self,
        record: OutgoingRecord,
        route: ReportRoute,
        counters: Arc<RecordCounters>,
        permit: Permit,
        accepted_at: Instant,
    ) -> Result<(), SidecarError> {
        let ticket = Box::new(DeliveryTicket { route, counters: Arc::clone(&counters), accepted_at, permit });
        let mut base = BaseRecord::with_opaque_to(&record.topic, ticket);
        if let Some(key) = &record.key {
            base = base.key(key.as_ref());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_ref());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp) = record.timestamp_ms.filter(|ms| *ms > 0) {
            base = base.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(record.headers.len()), |acc, (name, value)| {
                    acc.insert(Header { key: name, value: Some(value.as_ref()) })
                });
            base = base.headers(headers);
        }
        match self.producer.send(base) {
            Ok(()) => {
                counters.accepted.inc();
                Ok(())
            }
            // Dropping the returned record drops its ticket and releases its permit.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                let refusal = Refusal { reason: RefusalReason::Full, missing_bytes: 1 };
                Err(self.backpressure(refusal, &counters.labels.client))
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                Err(SidecarError::new(ErrorCode::RecordTooLarge, "record exceeds the broker's message size limit"))
            }
            Err((error, _)) => {
                tracing::warn!(topic = %record.topic, error = %error, "librdkafka refused a record");
                Err(SidecarError::new(ErrorCode::DeliveryFailed, format!("record refused by the producer: {error}")))
            }
        }
    }

    /// Topic metadata as the cluster has it now: one topic, or every topic with `None`.
    pub async fn describe_topics(&self, topic: Option<&str>) -> Result<Vec<TopicDescription>, SidecarError> {
        self.topics.describe(topic).await
    }

    /// Whether the producer can reach the cluster (metadata within `timeout`).
    pub async fn has_cluster_metadata(&self, timeout: Duration) -> bool {
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).is_ok())
            .await
            .unwrap_or(false)
    }

    /// Records and bytes accepted and not yet acknowledged.
    pub fn queue_depth(&self) -> (u64, u64) {
        (self.budget.records(), self.budget.used_bytes())
    }

    /// Stops accepting; every later record gets `SHUTTING_DOWN`.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Flushes until `deadline`; whatever is left is purged and reported failed to its sender.
    pub async fn drain(&self, deadline: Instant) -> DrainReport {
        self.stop_accepting();
        let producer = Arc::clone(&self.producer);
        let flush_for = deadline.saturating_duration_since(Instant::now());
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || producer.flush(flush_for)).await {
            tracing::warn!(error = %error, "flush did not finish within the grace period");
        }
        let undelivered = self.budget.records();
        if undelivered > 0 {
            self.shutting_down.store(true, Ordering::Release);
            self.producer.purge(PurgeConfig::default().queue().inflight());
            // The polling thread now reports each purged record as failed; wait until it has.
            let reported_by = Instant::now() + Duration::from_secs(5);
            while self.budget.records() > 0 && Instant::now() < reported_by {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        DrainReport { undelivered }
    }
}
