//! Reactive consumer metrics: pushes and records by outcome, backend latency, retries, pauses
//! (backend down), pushes in flight and records fetched but not finished (the commit lag).
//! Consumer lag per partition comes from the shared lag exporter, like every group's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every push outcome (`reactive::push`), exported at 0 from the start.
const PUSH_OUTCOMES: [&str; 5] = ["answered", "retry", "rejected", "down", "held_back"];
/// Every way a record finishes (`reactive::push`'s dispositions), exported at 0 from the start so
/// that `increase()` over the first dead letter sees it: a series born at 1 shows no increase.
const RECORD_OUTCOMES: [&str; 3] = ["processed", "skipped", "dead_lettered"];

/// An outcome label (a fixed set of words).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// e.g. `answered`, `retry`, `processed`, `dead_lettered`.
    pub outcome: &'static str,
}

/// The reactive consumer's series.
pub struct ReactiveMetrics {
    push_outcomes: Family<OutcomeLabels, Counter>,
    record_outcomes: Family<OutcomeLabels, Counter>,
    /// Time the backend takes to answer a push.
    pub backend_latency: Histogram,
    /// Records pushed again after a failure.
    pub retries: Counter,
    /// Times pushing paused because the backend was down.
    pub pauses: Counter,
    /// Pushes in flight.
    pub in_flight: Gauge,
    /// Records fetched and not yet finished (what the next commit waits for).
    pub open_records: Gauge,
}

impl Default for ReactiveMetrics {
    fn default() -> Self {
        Self {
            push_outcomes: Family::default(),
            record_outcomes: Family::default(),
            backend_latency: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            retries: Counter::default(),
            pauses: Counter::default(),
            in_flight: Gauge::default(),
            open_records: Gauge::default(),
        }
    }
}

impl ReactiveMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        for outcome in PUSH_OUTCOMES {
            self.pushes(outcome);
        }
        for outcome in RECORD_OUTCOMES {
            self.records(outcome);
        }
        let r = registry;
        r.register("reactive_pushes", "Batches pushed to the backend, by outcome", self.push_outcomes.clone());
        r.register("reactive_records", "Records finished, by outcome", self.record_outcomes.clone());
        r.register("reactive_backend_latency_seconds", "Backend answer time per push", self.backend_latency.clone());
        r.register("reactive_retries", "Records pushed again after a failure", self.retries.clone());
        r.register("reactive_pauses", "Times pushing paused because the backend was down", self.pauses.clone());
        r.register("reactive_in_flight_batches", "Pushes in flight", self.in_flight.clone());
        r.register("reactive_open_records", "Records fetched and not yet finished", self.open_records.clone());
    }

    /// The push counter for `outcome`.
    pub fn pushes(&self, outcome: &'static str) -> Counter {
        self.push_outcomes.get_or_create(&OutcomeLabels { outcome }).clone()
    }

    /// The record counter for `outcome`.
    pub fn records(&self, outcome: &'static str) -> Counter {
        self.record_outcomes.get_or_create(&OutcomeLabels { outcome }).clone()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn every_outcome_is_exported_before_it_happens() {
        let (metrics, mut registry) = (ReactiveMetrics::default(), Registry::default());
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(text.contains("reactive_records_total{outcome=\"dead_lettered\"} 0"), "{text}");
        assert!(text.contains("reactive_pushes_total{outcome=\"down\"} 0"), "{text}");
    }
}
