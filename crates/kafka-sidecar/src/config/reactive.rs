//! The `reactive_consumer` section: the consumer that pushes records to the app's HTTP endpoint.
//! Key names are part of the contract (issue 10); checks live in [`ReactiveConsumerConfig::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, EmbeddedFormatName, OffsetReset};

/// The reactive consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactiveConsumerConfig {
    /// Off unless enabled.
    pub enabled: bool,
    /// Consumer group; required when enabled.
    pub group_id: String,
    /// Topics to read (or `topic_pattern`).
    pub topics: Vec<String>,
    /// A regular expression over topic names, instead of `topics`.
    pub topic_pattern: Option<String>,
    /// Where batches are POSTed; required when enabled.
    pub backend_url: String,
    /// Optional health URL of the app: gates the start of pushing and readiness.
    pub backend_health_url: String,
    /// How keys are rendered for the app.
    pub key_format: EmbeddedFormatName,
    /// How values are rendered for the app.
    pub value_format: EmbeddedFormatName,
    /// Records per pushed batch (seed 002's `max.poll.records`).
    pub max_batch_records: usize,
    /// Key and value bytes per pushed batch (seed 002's `requestMaxBytes`).
    pub max_batch_bytes: usize,
    /// Batches in flight to the backend at once; order is still kept per key.
    pub max_in_flight_batches: usize,
    /// How long one push may take.
    pub request_timeout_ms: u64,
    /// Retries of failed pushes.
    pub retry: RetryConfig,
    /// Dead letter topic name = source topic + this suffix.
    pub dead_letter_topic_suffix: String,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Raw librdkafka consumer properties for this consumer, over `kafka.properties`.
    #[serde(deserialize_with = "super::scalar_map")]
    pub properties: BTreeMap<String, String>,
}

impl Default for ReactiveConsumerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            group_id: String::new(),
            topics: Vec::new(),
            topic_pattern: None,
            backend_url: String::new(),
            backend_health_url: String::new(),
            key_format: EmbeddedFormatName::String,
            value_format: EmbeddedFormatName::String,
            max_batch_records: 100,
            max_batch_bytes: 204_800,
            max_in_flight_batches: 4,
            request_timeout_ms: 30_000,
            retry: RetryConfig::default(),
            dead_letter_topic_suffix: ".dlq".into(),
            auto_offset_reset: OffsetReset::Earliest,
            properties: BTreeMap::new(),
        }
    }
}

/// Exponential backoff with jitter for failed pushes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per record before it is dead-lettered.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Longest backoff.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 5, initial_backoff_ms: 200, max_backoff_ms: 30_000 }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("reactive_consumer.{key}"), reason: reason.into() }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

impl ReactiveConsumerConfig {
    /// Checks the section when enabled; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("group_id", "is required when the reactive consumer is enabled"));
        }
        match (&self.topic_pattern, self.topics.is_empty()) {
            (Some(_), false) => return Err(invalid("topic_pattern", "give topics or topic_pattern, not both")),
            (None, true) => return Err(invalid("topics", "name at least one topic (or set topic_pattern)")),
            _ => {}
        }
        if let Some(pattern) = &self.topic_pattern
            && (pattern.trim().is_empty() || pattern.chars().any(char::is_control))
        {
            return Err(invalid("topic_pattern", "must be a non-empty regular expression without control characters"));
        }
        for key in ["group.id", "enable.auto.commit", "enable.auto.offset.store"] {
            if self.properties.contains_key(key) {
                return Err(invalid(&format!("properties.{key}"), "is managed by the reactive consumer"));
            }
        }
        for topic in &self.topics {
            crate::record::validate_topic_name(topic).map_err(|error| invalid("topics", error.message))?;
        }
        if !is_http_url(&self.backend_url) {
            return Err(invalid("backend_url", "must be an http:// or https:// URL"));
        }
        if !self.backend_health_url.is_empty() && !is_http_url(&self.backend_health_url) {
            return Err(invalid("backend_health_url", "must be an http:// or https:// URL"));
        }
        if self.max_batch_records == 0 || self.max_batch_bytes == 0 || self.max_in_flight_batches == 0 {
            return Err(invalid("max_batch_records", "batch sizes and max_in_flight_batches must be positive"));
        }
        if self.request_timeout_ms < 100 {
            return Err(invalid("request_timeout_ms", "must be at least 100"));
        }
        let retry = &self.retry;
        if retry.max_attempts == 0 || retry.initial_backoff_ms == 0 || retry.initial_backoff_ms > retry.max_backoff_ms {
            return Err(invalid("retry", "max_attempts and initial_backoff_ms must be positive and initial <= max"));
        }
        if self.dead_letter_topic_suffix.is_empty() {
            return Err(invalid("dead_letter_topic_suffix", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ReactiveConsumerConfig {
        ReactiveConsumerConfig {
            enabled: true,
            group_id: "g".into(),
            topics: vec!["orders".into()],
            backend_url: "http://127.0.0.1:8081/kafka/records".into(),
            ..ReactiveConsumerConfig::default()
        }
    }

    #[test]
    fn disabled_needs_nothing_and_enabled_needs_group_topics_and_backend() {
        assert!(ReactiveConsumerConfig::default().validate().is_ok());
        assert!(enabled().validate().is_ok());
        let error = ReactiveConsumerConfig { group_id: String::new(), ..enabled() }.validate().expect_err("group");
        assert!(error.to_string().contains("reactive_consumer.group_id"), "{error}");
        let both = ReactiveConsumerConfig { topic_pattern: Some("^o.*".into()), ..enabled() };
        assert!(both.validate().is_err());
        let no_url = ReactiveConsumerConfig { backend_url: "localhost:8080".into(), ..enabled() };
        assert!(no_url.validate().expect_err("url").to_string().contains("backend_url"));
    }
}
