//! The `audit` section: who did what, one compact JSON record per action on a Kafka topic
//! (see [`crate::audit`]). Off by default; checks live in [`AuditConfig::validate`].

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The audit topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write an audit record for every produce request, consumer instance action, reactive
    /// consumer and admin action.
    pub enabled: bool,
    /// Where the records go. Created at first use when missing (`topic_partitions` partitions,
    /// the broker's default replication).
    pub topic: String,
    /// Partitions of the audit topic when the sidecar creates it.
    pub topic_partitions: i32,
    /// Records waiting to be written; beyond it new records are dropped and counted
    /// (`kafka_sidecar_audit_records_dropped_total{reason="queue_full"}`), never the request.
    pub max_buffered_records: usize,
    /// Also audit reads (fetching records, topic metadata, committed offsets, admin reads).
    /// Refused requests (401/403) are audited either way.
    pub include_reads: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            topic: "kafka-sidecar-audit".into(),
            topic_partitions: 1,
            max_buffered_records: 10_000,
            include_reads: false,
        }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("audit.{key}"), reason: reason.into() }
}

impl AuditConfig {
    /// Checks the section when enabled; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        crate::record::validate_topic_name(&self.topic).map_err(|error| invalid("topic", error.message))?;
        if !(1..=1_000).contains(&self.topic_partitions) {
            return Err(invalid("topic_partitions", "must be between 1 and 1000"));
        }
        if !(1..=1_000_000).contains(&self.max_buffered_records) {
            return Err(invalid("max_buffered_records", "must be between 1 and 1000000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        assert!(!AuditConfig::default().enabled);
        assert!(AuditConfig { topic: String::new(), ..AuditConfig::default() }.validate().is_ok(), "off: unchecked");
        let on = AuditConfig { enabled: true, ..AuditConfig::default() };
        assert!(on.validate().is_ok());
        let error = AuditConfig { topic: "bad topic".into(), ..on.clone() }.validate().expect_err("topic");
        assert!(error.to_string().contains("audit.topic"), "{error}");
        let error = AuditConfig { max_buffered_records: 0, ..on.clone() }.validate().expect_err("bound");
        assert!(error.to_string().contains("audit.max_buffered_records"), "{error}");
        let error = AuditConfig { topic_partitions: 0, ..on }.validate().expect_err("partitions");
        assert!(error.to_string().contains("audit.topic_partitions"), "{error}");
    }
}
