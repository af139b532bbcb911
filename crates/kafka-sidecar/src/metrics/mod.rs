//! Every metric the sidecar exports, named in one place, with bounded label values.
//!
//! Labels are `api`, `topic`, `client` and `code`; never a key or a session id. At most
//! [`MAX_LABEL_VALUES`] distinct topics and clients get their own series; the rest share `other`.

mod audit;
mod consumer;
mod reactive;
mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use audit::{AuditMetrics, DropLabels};
pub use consumer::{ConsumerCounters, ConsumerMetrics, GroupLabels, GroupTopicLabels, LagLabels};
pub use reactive::{OutcomeLabels, ReactiveMetrics};
pub use schema::{LookupLabels, RegistryCallLabels, SchemaMetrics};

/// Distinct topic (and client) label values before new ones fold into `other`.
pub const MAX_LABEL_VALUES: usize = 256;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `grpc_emit`, `grpc_emit_batch`, `grpc_emit_stream` or `http_produce`.
    pub api: &'static str,
    /// The application's client id.
    pub client: String,
}

/// Labels of a record outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// Topic.
    pub topic: String,
    /// The application's client id.
    pub client: String,
}

/// Labels of a refused or failed record.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Topic.
    pub topic: String,
    /// The application's client id.
    pub client: String,
    /// The machine error code.
    pub code: &'static str,
}

/// Labels of a per-client event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// The application's client id.
    pub client: String,
}

/// Labels of a librdkafka error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// librdkafka's error name.
    pub code: String,
}

/// Counters for one (topic, client) pair, resolved once and carried with each record.
#[derive(Debug)]
pub struct RecordCounters {
    /// The labels, for the rarer failure series.
    pub labels: RecordLabels,
    /// Records accepted into the queue.
    pub accepted: Counter,
    /// Records Kafka acknowledged.
    pub delivered: Counter,
}

/// The sidecar's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by api and client.
    pub requests: Family<RequestLabels, Counter>,
    /// Records accepted into the queue (attempts, in seed 000's emission-quality terms).
    pub records_accepted: Family<RecordLabels, Counter>,
    /// Records refused before the queue.
    pub records_rejected: Family<FailureLabels, Counter>,
    /// Records Kafka acknowledged (successes).
    pub records_delivered: Family<RecordLabels, Counter>,
    /// Accepted records that Kafka did not acknowledge.
    pub records_failed: Family<FailureLabels, Counter>,
    /// Records accepted and not yet acknowledged.
    pub queue_records: Gauge,
    /// Bytes accepted and not yet acknowledged.
    pub queue_bytes: Gauge,
    /// The byte budget.
    pub queue_capacity_bytes: Gauge,
    /// Records per request.
    pub request_records: Histogram,
    /// Acceptance to Kafka acknowledgement.
    pub delivery_latency: Histogram,
    /// Average bytes per broker batch, from librdkafka statistics.
    pub broker_batch_bytes: Gauge,
    /// Broker connections up, from librdkafka statistics.
    pub broker_connections: Gauge,
    /// Transmit/receive errors and request timeouts, cumulative, from librdkafka statistics.
    pub broker_errors: Gauge,
    /// Errors librdkafka raised through its error callback.
    pub librdkafka_errors: Family<CodeLabels, Counter>,
    /// Admissions refused because the sender held its fair share of a contended budget.
    pub fair_share_refusals: Family<ClientLabels, Counter>,
    /// Senders the budget is shared among: active recently or holding bytes.
    pub admission_senders: Gauge,
    /// Delivery reports reserved by records in flight or not yet read, across sessions.
    pub delivery_reports_pending: Gauge,
    /// Sessions with kept delivery reports.
    pub delivery_sessions: Gauge,
    /// 1 when ready.
    pub ready: Gauge,
    /// Consumer instances and lag.
    pub consumer: ConsumerMetrics,
    /// The reactive consumer.
    pub reactive: ReactiveMetrics,
    /// The schema registry client and its cache.
    pub schema: SchemaMetrics,
    /// The audit topic writer.
    pub audit: AuditMetrics,
    groups: Mutex<HashSet<String>>,
    topics: Mutex<HashSet<String>>,
    clients: Mutex<HashSet<String>>,
    record_counters: Mutex<HashMap<RecordLabels, Arc<RecordCounters>>>,
}

impl Metrics {
    /// All metrics, registered.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("kafka_sidecar");
        let metrics = Self {
            requests: Family::default(),
            records_accepted: Family::default(),
            records_rejected: Family::default(),
            records_delivered: Family::default(),
            records_failed: Family::default(),
            queue_records: Gauge::default(),
            queue_bytes: Gauge::default(),
            queue_capacity_bytes: Gauge::default(),
            request_records: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            delivery_latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 18)),
            broker_batch_bytes: Gauge::default(),
            broker_connections: Gauge::default(),
            broker_errors: Gauge::default(),
            librdkafka_errors: Family::default(),
            fair_share_refusals: Family::default(),
            admission_senders: Gauge::default(),
            delivery_reports_pending: Gauge::default(),
            delivery_sessions: Gauge::default(),
            ready: Gauge::default(),
            consumer: ConsumerMetrics::default(),
            reactive: ReactiveMetrics::default(),
            schema: SchemaMetrics::default(),
            audit: AuditMetrics::default(),
            groups: Mutex::new(HashSet::new()),
            topics: Mutex::new(HashSet::new()),
            clients: Mutex::new(HashSet::new()),
            record_counters: Mutex::new(HashMap::new()),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("requests", "Produce requests by API and client", metrics.requests.clone());
        r.register("records_accepted", "Records accepted into the queue", metrics.records_accepted.clone());
        r.register("records_rejected", "Records refused before the queue", metrics.records_rejected.clone());
        r.register("records_delivered", "Records acknowledged by Kafka", metrics.records_delivered.clone());
        r.register("records_failed", "Accepted records Kafka did not acknowledge", metrics.records_failed.clone());
        r.register("queue_records", "Records accepted and not yet acknowledged", metrics.queue_records.clone());
        r.register("queue_bytes", "Bytes accepted and not yet acknowledged", metrics.queue_bytes.clone());
        r.register("queue_capacity_bytes", "Admission budget in bytes", metrics.queue_capacity_bytes.clone());
        r.register("request_records", "Records per produce request", metrics.request_records.clone());
        r.register(
            "delivery_latency_seconds",
            "Time from acceptance to Kafka acknowledgement",
            metrics.delivery_latency.clone(),
        );
        r.register("broker_batch_bytes", "Average bytes per broker batch", metrics.broker_batch_bytes.clone());
        r.register("broker_connections", "Broker connections up", metrics.broker_connections.clone());
        r.register("broker_errors", "Broker transport errors and timeouts, cumulative", metrics.broker_errors.clone());
        r.register("librdkafka_errors", "Errors reported by librdkafka", metrics.librdkafka_errors.clone());
        r.register(
            "fair_share_refusals",
            "Admissions refused because the sender held its fair share of the contended queue",
            metrics.fair_share_refusals.clone(),
        );
        r.register(
            "admission_senders",
            "Senders the admission budget is shared among, as of the last produce call",
            metrics.admission_senders.clone(),
        );
        r.register(
            "delivery_reports_pending",
            "Delivery reports reserved or unread across sessions",
            metrics.delivery_reports_pending.clone(),
        );
        r.register("delivery_sessions", "Sessions with kept delivery reports", metrics.delivery_sessions.clone());
        r.register("ready", "1 when the producer has cluster metadata", metrics.ready.clone());
        metrics.consumer.register(r);
        metrics.reactive.register(r);
        metrics.schema.register(r);
        metrics.audit.register(r);
        Arc::new(Self { registry, ..metrics })
    }

    /// The label value for a client id: itself while few are seen, else `other`.
    pub fn client_label(&self, client_id: &str) -> String {
        let client = if client_id.is_empty() { "unknown" } else { client_id };
        bounded(&self.clients, client)
    }

    /// The label value for a consumer group: itself while few are seen, else `other`.
    pub fn group_label(&self, group: &str) -> String {
        bounded(&self.groups, group)
    }

    /// The label value for a topic: itself while few are seen, else `other`.
    pub fn topic_label(&self, topic: &str) -> String {
        bounded(&self.topics, topic)
    }

    /// Counters for a (topic, client) pair; the client must come from [`Metrics::client_label`].
    pub fn record_counters(&self, topic: &str, client: &str) -> Arc<RecordCounters> {
        let labels = RecordLabels { topic: bounded(&self.topics, topic), client: client.to_string() };
        let mut cache = crate::sync::lock(&self.record_counters);
        Arc::clone(cache.entry(labels.clone()).or_insert_with(|| {
            let accepted = self.records_accepted.get_or_create(&labels).clone();
            let delivered = self.records_delivered.get_or_create(&labels).clone();
            Arc::new(RecordCounters { labels, accepted, delivered })
        }))
    }

    /// Counts a refused record.
    pub fn record_rejected(&self, counters: &RecordCounters, code: &'static str) {
        let labels =
            FailureLabels { topic: counters.labels.topic.clone(), client: counters.labels.client.clone(), code };
        self.records_rejected.get_or_create(&labels).inc();
    }

    /// Counts a refusal for fairness; `client` must come from [`Metrics::client_label`].
    pub fn fair_share_refused(&self, client: &str) {
        self.fair_share_refusals.get_or_create(&ClientLabels { client: client.to_string() }).inc();
    }

    /// Counts an accepted record that was not delivered.
    pub fn record_failed(&self, counters: &RecordCounters, code: &'static str) {
        let labels =
            FailureLabels { topic: counters.labels.topic.clone(), client: counters.labels.client.clone(), code };
        self.records_failed.get_or_create(&labels).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %error, "cannot encode metrics");
        }
        text
    }
}

fn bounded(seen: &Mutex<HashSet<String>>, value: &str) -> String {
    let mut seen = crate::sync::lock(seen);
    if seen.contains(value) {
        return value.to_string();
    }
    if seen.len() < MAX_LABEL_VALUES {
        seen.insert(value.to_string());
        return value.to_string();
    }
    "other".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_labels_are_bounded() {
        let metrics = Metrics::new();
        for index in 0..MAX_LABEL_VALUES {
            assert_eq!(metrics.client_label(&format!("c{index}")), format!("c{index}"));
        }
        assert_eq!(metrics.client_label("one-too-many"), "other");
        assert_eq!(metrics.client_label("c0"), "c0");
    }

    #[test]
    fn exposition_names_carry_prefix_and_units() {
        let metrics = Metrics::new();
        let counters = metrics.record_counters("orders", &metrics.client_label("app"));
        counters.delivered.inc();
        metrics.delivery_latency.observe(0.002);
        let text = metrics.encode();
        assert!(text.contains("kafka_sidecar_records_delivered_total{topic=\"orders\",client=\"app\"} 1"), "{text}");
        assert!(text.contains("kafka_sidecar_delivery_latency_seconds_bucket"), "{text}");
    }
}
