//! The audit topic: who did what through the sidecar, one compact JSON record per action, written
//! to `audit.topic` through the sidecar's own producer. Off by default (`audit.enabled`); when off
//! the edges hold no [`AuditLog`] and do no audit work at all.
//!
//! **What is audited.** Every produce request (HTTP `POST /producers|/topics`, gRPC `Emit`,
//! `EmitBatch`, each batch of an `EmitStream`), every consumer instance action that changes
//! something (create, delete, subscribe, unsubscribe, assign, commit, seek), the reactive
//! consumer's operator actions (pause, resume, seek: the replay, DLQ redrive) and admin changes
//! (`PUT /admin/logging`). Reads (fetching records, metadata, committed offsets, admin views) are
//! audited only with `audit.include_reads`; a refused request (401/403) is audited always. The
//! HTTP edge audits in one middleware (`http/audit.rs`, an action table over the matched route);
//! the gRPC edge audits per call or per stream batch (`grpc/audit.rs`).
//!
//! **The record** (fields without a value are left out):
//!
//! ```json
//! {"time":"2026-11-23T18:00:00.123Z","action":"produce","transport":"http",
//!  "identity":{"sub":"worker-7","client_id":"orders-api","peer":"127.0.0.1:50412"},
//!  "topic":"orders","partitions":[{"topic":"orders","partition":0}],"records":3,"failed":0,
//!  "outcome":"ok","status":200,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","duration_ms":7}
//! ```
//!
//! `outcome` is `ok` or the machine error code (`FORBIDDEN`, `QUEUE_FULL`, ...); `identity.sub`
//! comes from the verified token (auth on), `client_id` from the token, else `X-Client-Id` (HTTP)
//! or the batch's `client_id` (gRPC); `trace_id` is the trace-id part of the W3C `traceparent`,
//! else `X-Traceability-Id`, else `X-Correlation-Id`. The Kafka key is the identity (`sub`, else
//! the client id), so one caller's records stay in order within a partition.
//!
//! **Never blocking, never failing, never silent.** [`AuditLog::record`] only `try_send`s into a
//! bounded queue (`audit.max_buffered_records`); a full queue drops the new record. One writer task
//! takes up to `writer::BATCH_RECORDS` (256) records at a time and produces them with
//! `SharedProducer::send_and_wait` as its own sender (`kafka-sidecar-audit`): at most one batch
//! of the shared byte budget is ever held by audit, and the budget's fair-share rule refuses the
//! audit sender before the apps when the queue is contended. Every record that is not written
//! (queue full, shutdown, producer refusal, delivery failure, topic unavailable) is counted in
//! `kafka_sidecar_audit_records_dropped_total{reason}` and logged at WARN, at most every
//! [`DROP_WARNING_INTERVAL`]. Written records count in `kafka_sidecar_audit_records_written_total`.
//!
//! **The topic** is looked up at the first write, not at start-up (which never waits on Kafka for
//! audit), and created when missing like the dead letter topics are (`audit.topic_partitions`
//! partitions, the broker's default replication). While it cannot be found or created, batches are
//! dropped and counted (`topic_unavailable`) and the next batch tries again.
//!
//! **Shutdown.** [`AuditLog::close`] runs before the producer stops accepting: the queue is closed
//! (actions after it are counted as dropped, reason `shutdown`) and what is queued is written
//! within the grace period, so the producer's flush then delivers it.

mod writer;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::Identity;
use crate::config::Config;
use crate::consumer::TopicPartition;
use crate::kafka::SharedProducer;
use crate::metrics::Metrics;

/// Drops are logged at most this often (each line says how many since the last one).
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Caller-supplied text (client ids, trace ids) is cut to this many characters.
const MAX_TEXT_CHARS: usize = 256;

/// Which edge an action came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The HTTP API or the admin port.
    Http,
    /// The gRPC API.
    Grpc,
}

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditIdentity {
    /// The verified token's `sub` (auth on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The token's `client_id`, else the client id the caller names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The caller's socket address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

impl AuditIdentity {
    /// The identity of a caller: the token's `sub` and `client_id` when auth is on, else the client
    /// id it names (`X-Client-Id`, a gRPC batch's `client_id`).
    pub fn of(identity: Option<&Identity>, named_client_id: Option<&str>, peer: Option<String>) -> Self {
        let named = named_client_id.filter(|id| !id.is_empty()).map(bounded_text);
        Self {
            sub: identity.map(|identity| identity.subject.clone()),
            client_id: identity.and_then(|identity| identity.client_id.clone()).or(named),
            peer,
        }
    }

    /// The record key: the subject, else the client id.
    fn key(&self) -> Option<&str> {
        self.sub.as_deref().or(self.client_id.as_deref())
    }
}

/// A topic and partition an action touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset committed or sought to, when the action sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

impl From<TopicPartition> for AuditPartition {
    fn from(TopicPartition { topic, partition }: TopicPartition) -> Self {
        Self { topic, partition, offset: None }
    }
}

/// One audited action; serialized as the record's JSON value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// When the action finished (RFC 3339, milliseconds, UTC).
    #[serde(serialize_with = "rfc3339_millis")]
    pub time: SystemTime,
    /// What was done: `produce`, `consumer.commit`, `reactive.redrive`, `admin.logging`, ...
    pub action: &'static str,
    /// Which edge.
    pub transport: Transport,
    /// Who.
    pub identity: AuditIdentity,
    /// The consumer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The consumer instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The one topic the action concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The topics, when the action names several (a subscription, a multi-topic batch).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Partitions written, committed, sought, paused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<AuditPartition>,
    /// Records produced (HTTP: acknowledged; gRPC: accepted) or redriven.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Records refused or not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// `ok`, or the machine error code.
    pub outcome: Cow<'static, str>,
    /// The HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What was set (e.g. the new log filter) or where a seek went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request's trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// How long the action took.
    pub duration_ms: u64,
}

impl AuditEvent {
    /// An event of `action` through `transport`, finished now, outcome `ok`, nothing else known.
    pub fn new(action: &'static str, transport: Transport) -> Self {
        Self {
            time: SystemTime::now(),
            action,
            transport,
            identity: AuditIdentity::default(),
            group: None,
            instance: None,
            topic: None,
            topics: Vec::new(),
            partitions: Vec::new(),
            records: None,
            failed: None,
            outcome: Cow::Borrowed("ok"),
            status: None,
            detail: None,
            trace_id: None,
            duration_ms: 0,
        }
    }

    /// Sets `duration_ms` from when the action started.
    pub fn took(mut self, started: Instant) -> Self {
        self.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self
    }
}

fn rfc3339_millis<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let time: chrono::DateTime<chrono::Utc> = (*time).into();
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Caller-supplied text, cut to a bounded length.
pub fn bounded_text(text: &str) -> String {
    text.chars().take(MAX_TEXT_CHARS).collect()
}

/// A request's trace id: the trace-id part of a valid W3C `traceparent`, else the traceability id,
/// else the correlation id.
pub fn trace_id(
    traceparent: Option<&str>,
    traceability_id: Option<&str>,
    correlation_id: Option<&str>,
) -> Option<String> {
    let from_traceparent = traceparent.and_then(|value| {
        let mut parts = value.trim().split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        let valid = trace.len() == 32
            && trace.bytes().all(|byte| byte.is_ascii_hexdigit())
            && trace.bytes().any(|byte| byte != b'0');
        valid.then(|| trace.to_ascii_lowercase())
    });
    from_traceparent
        .or_else(|| traceability_id.filter(|id| !id.is_empty()).map(bounded_text))
        .or_else(|| correlation_id.filter(|id| !id.is_empty()).map(bounded_text))
}

/// The handle the edges record actions with; cheap to clone. See the module docs.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    queue: mpsc::Sender<AuditEvent>,
    include_reads: bool,
    drops: Arc<Drops>,
    stop: Mutex<Option<oneshot::Sender<Instant>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// The audit log when `audit.enabled`, with its writer task running (on the tokio runtime).
    pub fn start(
        config: &Config,
        bootstrap_servers: &str,
        producer: Arc<SharedProducer>,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        if !config.audit.enabled {
            return None;
        }
        // The client that creates a missing audit topic connects like the consumers do.
        let mut admin = rdkafka::ClientConfig::new();
        admin.set("bootstrap.servers", bootstrap_servers);
        for (key, value) in crate::kafka::shared_consumer_properties(config) {
            admin.set(key, value);
        }
        let config = &config.audit;
        let (queue, received) = mpsc::channel(config.max_buffered_records);
        let (stop, stopped) = oneshot::channel();
        let drops = Arc::new(Drops { metrics, last_warning: Mutex::new(None), unreported: AtomicU64::new(0) });
        let writer = writer::Writer::new(config, producer, admin, Arc::clone(&drops));
        let task = tokio::spawn(writer.run(received, stopped));
        tracing::info!(topic = %config.topic, max_buffered_records = config.max_buffered_records, "audit log on");
        Some(Self {
            shared: Arc::new(Shared {
                queue,
                include_reads: config.include_reads,
                drops,
                stop: Mutex::new(Some(stop)),
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// Queues `event` for the audit topic. Never waits: a full (or closed) queue drops the event,
    /// counting and logging the drop.
    pub fn record(&self, event: AuditEvent) {
        match self.shared.queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.drops.dropped("queue_full", 1, &"the audit queue is full (audit.max_buffered_records)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.drops.dropped("shutdown", 1, &"the audit log is closed (shutting down)");
            }
        }
    }

    /// Whether reads are audited too (`audit.include_reads`).
    pub fn include_reads(&self) -> bool {
        self.shared.include_reads
    }

    /// Closes the queue and writes what it holds, giving up at `deadline` (what is left then is
    /// counted as dropped, reason `shutdown`). Later calls return at once.
    pub async fn close(&self, deadline: Instant) {
        if let Some(stop) = crate::sync::lock(&self.shared.stop).take() {
            let _ = stop.send(deadline);
        }
        let task = crate::sync::lock(&self.shared.task).take();
        if let Some(task) = task {
            // The writer itself stops at the deadline; the extra second covers its last count.
            let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::warn!("the audit writer did not finish within the grace period");
            }
        }
    }
}

/// Counts dropped records and logs them, rate-limited.
struct Drops {
    metrics: Arc<Metrics>,
    last_warning: Mutex<Option<Instant>>,
    unreported: AtomicU64,
}

impl Drops {
    fn dropped(&self, reason: &'static str, count: u64, why: &dyn std::fmt::Display) {
        if count == 0 {
            return;
        }
        self.metrics.audit.dropped(reason).inc_by(count);
        self.unreported.fetch_add(count, Ordering::Relaxed);
        let mut last = crate::sync::lock(&self.last_warning);
        if last.is_some_and(|at| at.elapsed() < DROP_WARNING_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let dropped = self.unreported.swap(0, Ordering::Relaxed);
        tracing::warn!(reason, dropped, error = %why,
            "audit records dropped (kafka_sidecar_audit_records_dropped_total); the audited requests were not affected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_prefers_traceparent_then_traceability_then_correlation() {
        let parent = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(Some(parent), Some("t"), Some("c")).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(trace_id(Some(zeros), Some("t"), Some("c")).as_deref(), Some("t"));
        assert_eq!(trace_id(Some("garbage"), None, Some("c")).as_deref(), Some("c"));
        assert_eq!(trace_id(None, Some(""), None), None);
    }

    #[test]
    fn a_record_is_compact_json_with_rfc3339_millis() {
        let mut event = AuditEvent::new("consumer.commit", Transport::Http);
        event.time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        event.identity = AuditIdentity::of(None, Some("orders-api"), None);
        event.partitions = vec![TopicPartition { topic: "orders".into(), partition: 2 }.into()];
        event.status = Some(200);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["identity"], serde_json::json!({"client_id": "orders-api"}));
        assert_eq!(json["partitions"], serde_json::json!([{"topic": "orders", "partition": 2}]));
        assert_eq!(json["outcome"], "ok");
        assert!(json.get("topic").is_none() && json.get("records").is_none(), "{json}");
        assert_eq!(event.identity.key(), Some("orders-api"));
    }
}
