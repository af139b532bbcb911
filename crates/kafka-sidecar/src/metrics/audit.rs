//! Audit topic metrics: records written (acknowledged by Kafka), records dropped by reason, and
//! records waiting to be written. A dropped audit record is always counted here and logged.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why an audit record was dropped (a fixed set of words).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full`, `shutdown`, `producer_refused`, `delivery_failed`, `topic_unavailable` or
    /// `encoding`.
    pub reason: &'static str,
}

/// The audit writer's series.
#[derive(Default)]
pub struct AuditMetrics {
    /// Records Kafka acknowledged on the audit topic.
    pub written: Counter,
    dropped: Family<DropLabels, Counter>,
    /// Records waiting in the audit queue.
    pub queued: Gauge,
}

impl AuditMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("audit_records_written", "Audit records acknowledged by Kafka", self.written.clone());
        r.register("audit_records_dropped", "Audit records dropped, by reason", self.dropped.clone());
        r.register("audit_queue_records", "Audit records waiting to be written", self.queued.clone());
    }

    /// The drop counter for `reason`.
    pub fn dropped(&self, reason: &'static str) -> Counter {
        self.dropped.get_or_create(&DropLabels { reason }).clone()
    }
}
