//! The `trace` section: which trace and correlation values the sidecar makes up when a request
//! brings none, and where (if anywhere) its spans are exported over OTLP.
//!
//! Defaults: what a caller sends is always propagated; nothing is made up unless configured.
//!
//! * `generate_traceparent: false`, `generate_correlation_id: false`: made-up values are written
//!   into every record's headers, about 120 bytes on a record that may itself be 100 (the Python
//!   workers' EmitStream path sends no metadata), for a trace that starts at the sidecar. Turn them
//!   on for light-4j's habit (`X-Correlation-Id` made up when absent) or to start traces here.
//! * `generate_traceability_id: false`: `X-Traceability-Id` is the caller's business id (light-4j
//!   only passes it on); made up it would mean nothing.
//! * `otlp.endpoint` empty: no export. Set it (e.g. `http://127.0.0.1:4318`, OTLP/HTTP protobuf; the
//!   `/v1/traces` path is added when the URL has no path) to export the sidecar's request spans.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Trace and correlation propagation; by default nothing is made up (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Start a trace (new `traceparent`) for a request that carries no valid one.
    pub generate_traceparent: bool,
    /// Make up an `X-Correlation-Id` (a UUID) for a request that carries no valid one.
    pub generate_correlation_id: bool,
    /// Make up an `X-Traceability-Id` (a UUID) for a request that carries no valid one.
    pub generate_traceability_id: bool,
    /// Span export over OTLP/HTTP.
    pub otlp: OtlpConfig,
}

/// OpenTelemetry span export over OTLP/HTTP (protobuf). Off while `endpoint` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL or full traces URL; empty turns export off.
    pub endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// How long one export request may take.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self { endpoint: String::new(), service_name: "kafka-sidecar".into(), timeout_ms: 10_000 }
    }
}

impl OtlpConfig {
    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        !self.endpoint.trim().is_empty()
    }

    /// The URL spans are POSTed to: the endpoint, with `/v1/traces` added when it has no path.
    pub fn traces_url(&self) -> String {
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        let after_scheme = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
        if after_scheme.contains('/') { endpoint.to_string() } else { format!("{endpoint}/v1/traces") }
    }
}

impl TraceConfig {
    /// Checks the OTLP settings; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid { key: key.into(), reason: reason.into() };
        let otlp = &self.otlp;
        if !otlp.enabled() {
            return Ok(());
        }
        let endpoint = otlp.endpoint.trim();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(invalid("trace.otlp.endpoint", "must be an http:// or https:// URL (OTLP/HTTP)"));
        }
        if otlp.service_name.trim().is_empty() {
            return Err(invalid("trace.otlp.service_name", "must not be empty"));
        }
        if !(100..=60_000).contains(&otlp.timeout_ms) {
            return Err(invalid("trace.otlp.timeout_ms", "must be between 100 and 60000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_generation_are_off_by_default() {
        let config = TraceConfig::default();
        assert!(!config.otlp.enabled());
        assert!(!config.generate_traceparent && !config.generate_correlation_id && !config.generate_traceability_id);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_traces_path_is_added_only_to_a_bare_endpoint() {
        let url = |endpoint: &str| OtlpConfig { endpoint: endpoint.into(), ..OtlpConfig::default() }.traces_url();
        assert_eq!(url("http://collector:4318"), "http://collector:4318/v1/traces");
        assert_eq!(url("http://collector:4318/"), "http://collector:4318/v1/traces");
        assert_eq!(url("https://otel.example/custom/traces"), "https://otel.example/custom/traces");
    }

    #[test]
    fn bad_otlp_settings_name_their_key() {
        let with = |otlp: OtlpConfig| TraceConfig { otlp, ..TraceConfig::default() }.validate();
        let endpoint = || OtlpConfig { endpoint: "http://127.0.0.1:4318".into(), ..OtlpConfig::default() };
        assert!(with(endpoint()).is_ok());
        let key = |result: Result<(), ConfigError>| match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(with(OtlpConfig { endpoint: "grpc://x:4317".into(), ..endpoint() })), "trace.otlp.endpoint");
        assert_eq!(key(with(OtlpConfig { service_name: " ".into(), ..endpoint() })), "trace.otlp.service_name");
        assert_eq!(key(with(OtlpConfig { timeout_ms: 5, ..endpoint() })), "trace.otlp.timeout_ms");
    }
}
