//! Schema registry metrics: cache hits and misses by what was looked up, and the registry's answer
//! time by operation and outcome, so an operator sees that the registry is touched once per
//! schema, not once per record.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What a cache lookup was for: `id`, `version`, `latest` or `register`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// The kind of lookup.
    pub lookup: &'static str,
}

/// One registry call: its operation and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryCallLabels {
    /// `schema_by_id`, `subject_version`, `register`.
    pub operation: &'static str,
    /// `ok`, `client_error` (a 4xx answer), `unavailable` (no answer or 5xx).
    pub outcome: &'static str,
}

fn registry_latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 14))
}

/// The schema registry's series.
pub struct SchemaMetrics {
    hits: Family<LookupLabels, Counter>,
    misses: Family<LookupLabels, Counter>,
    calls: Family<RegistryCallLabels, Histogram, fn() -> Histogram>,
}

impl Default for SchemaMetrics {
    fn default() -> Self {
        Self {
            hits: Family::default(),
            misses: Family::default(),
            calls: Family::new_with_constructor(registry_latency),
        }
    }
}

impl SchemaMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("schema_cache_hits", "Schema lookups answered from the cache", self.hits.clone());
        r.register("schema_cache_misses", "Schema lookups that asked the registry", self.misses.clone());
        r.register("schema_registry_request_seconds", "Schema registry answer time", self.calls.clone());
    }

    /// Counts a cache hit for `lookup`.
    pub fn hit(&self, lookup: &'static str) {
        self.hits.get_or_create(&LookupLabels { lookup }).inc();
    }

    /// Counts a cache miss for `lookup`.
    pub fn miss(&self, lookup: &'static str) {
        self.misses.get_or_create(&LookupLabels { lookup }).inc();
    }

    /// Records one registry call.
    pub fn call(&self, operation: &'static str, outcome: &'static str, seconds: f64) {
        self.calls.get_or_create(&RegistryCallLabels { operation, outcome }).observe(seconds);
    }
}
