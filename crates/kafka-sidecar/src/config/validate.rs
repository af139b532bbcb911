//! Start-up checks that serde's types cannot express: ranges, cross-field rules and properties the
//! sidecar manages itself.

use super::{Config, ConfigError};

/// librdkafka properties the sidecar sets from its own keys; setting them raw would bypass checks.
const MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("queue.buffering.max.kbytes", "producer.max_buffered_bytes"),
    ("message.timeout.ms", "producer.delivery_timeout_ms"),
    ("delivery.timeout.ms", "producer.delivery_timeout_ms"),
    ("linger.ms", "producer.linger_ms"),
    ("queue.buffering.max.ms", "producer.linger_ms"),
    ("compression.codec", "producer.compression"),
    ("compression.type", "producer.compression"),
    ("statistics.interval.ms", "producer.statistics_interval_ms"),
];

/// Consumer properties the sidecar derives from its own keys or from each instance.
const CONSUMER_MANAGED_PROPERTIES: &[(&str, &str)] = &[
    ("group.id", "the group in the create request"),
    ("enable.auto.commit", "auto.commit.enable in the create request"),
    ("enable.auto.offset.store", "nothing: the sidecar stores what it returned to the app"),
    ("fetch.max.bytes", "consumer.fetch_max_bytes"),
    ("max.partition.fetch.bytes", "consumer.max_partition_fetch_bytes"),
    ("max.poll.interval.ms", "consumer.max_poll_interval_ms"),
];

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

impl Config {
    /// Checks ranges and cross-field rules; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let producer = &self.producer;
        if producer.linger_ms > 60_000 {
            return Err(invalid("producer.linger_ms", "must be at most 60000"));
        }
        if !(1024..=1 << 30).contains(&producer.max_buffered_bytes) {
            return Err(invalid("producer.max_buffered_bytes", "must be between 1 KiB and 1 GiB"));
        }
        let largest_admitted = u64::from(producer.max_record_bytes) + crate::kafka::RECORD_OVERHEAD_BYTES;
        if producer.max_record_bytes == 0 || largest_admitted > producer.max_buffered_bytes {
            return Err(invalid(
                "producer.max_record_bytes",
                format!(
                    "must be positive and, with {} bytes of per-record overhead, fit in producer.max_buffered_bytes",
                    crate::kafka::RECORD_OVERHEAD_BYTES
                ),
            ));
        }
        if producer.delivery_timeout_ms < 1_000 {
            return Err(invalid("producer.delivery_timeout_ms", "must be at least 1000"));
        }
        if producer.max_retry_after_ms == 0 || producer.max_retry_after_ms > 60_000 {
            return Err(invalid("producer.max_retry_after_ms", "must be between 1 and 60000"));
        }
        if producer.retry_after_ms > producer.max_retry_after_ms {
            return Err(invalid("producer.retry_after_ms", "must not exceed producer.max_retry_after_ms"));
        }
        if self.delivery.ring_capacity == 0 || self.delivery.max_sessions == 0 {
            return Err(invalid("delivery", "ring_capacity and max_sessions must be positive"));
        }
        if self.delivery.max_buffered_reports < self.delivery.ring_capacity {
            return Err(invalid("delivery.max_buffered_reports", "must be at least delivery.ring_capacity"));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        self.validate_schema_registry()?;
        self.validate_auth()?;
        self.validate_consumer()?;
        self.reactive_consumer.validate()?;
        self.audit.validate()?;
        self.trace.validate()?;
        self.kafka.security.validate(
            self.kafka.uses_dev_broker(),
            &[
                ("kafka.properties", &self.kafka.properties),
                ("consumer.properties", &self.consumer.properties),
                ("reactive_consumer.properties", &self.reactive_consumer.properties),
            ],
        )?;
        if self.kafka.dev_broker_count == 0 || self.kafka.dev_broker_count > 16 {
            return Err(invalid("kafka.dev_broker_count", "must be between 1 and 16"));
        }
        for (property, key) in MANAGED_PROPERTIES {
            if self.kafka.properties.contains_key(*property) {
                return Err(invalid(&format!("kafka.properties.{property}"), format!("set `{key}` instead")));
            }
        }
        let listeners =
            [("grpc.listen", self.grpc.listen), ("http.listen", self.http.listen), ("admin.listen", self.admin.listen)];
        for (index, (key, address)) in listeners.iter().enumerate() {
            let clash = listeners[..index].iter().find(|(_, other)| other == address && address.port() != 0);
            if let Some((other_key, _)) = clash {
                return Err(invalid(key, format!("same address as {other_key}")));
            }
        }
        Ok(())
    }

    /// With auth on, some key source; with it off, listeners stay on loopback unless allowed.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        if auth.enabled {
            let secrets = auth.hs256_secret.is_some() || auth.hs256_secret_file.is_some();
            if auth.jwks_file.is_none() && auth.jwks_url.is_empty() && !secrets {
                return Err(invalid("auth.enabled", "needs auth.jwks_file, auth.jwks_url or an HS256 secret"));
            }
            if auth.hs256_secret.as_ref().is_some_and(|secret| secret.expose().len() < 32) {
                return Err(invalid("auth.hs256_secret", "must be at least 32 bytes"));
            }
            let url = &auth.jwks_url;
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("auth.jwks_url", "must be an http:// or https:// URL"));
            }
            if auth.jwks_refresh_ms < 1_000 {
                return Err(invalid("auth.jwks_refresh_ms", "must be at least 1000"));
            }
            return Ok(());
        }
        if auth.allow_insecure_bind {
            return Ok(());
        }
        let listeners =
            [("grpc.listen", self.grpc.listen), ("http.listen", self.http.listen), ("admin.listen", self.admin.listen)];
        for (key, address) in listeners {
            if !address.ip().is_loopback() {
                return Err(invalid(
                    key,
                    format!(
                        "{address} is not loopback: turn auth on, or pass --allow-insecure-bind (auth.allow_insecure_bind)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Schema formats as defaults need a registry; its URLs and bounds must make sense.
    fn validate_schema_registry(&self) -> Result<(), ConfigError> {
        let registry = &self.schema_registry;
        let reactive = &self.reactive_consumer;
        let defaults = [
            ("http.default_key_format", self.http.default_key_format),
            ("http.default_value_format", self.http.default_value_format),
            ("reactive_consumer.key_format", reactive.key_format),
            ("reactive_consumer.value_format", reactive.value_format),
        ];
        for (key, format) in defaults {
            // The reactive consumer's formats only matter when it is on.
            let used = !key.starts_with("reactive") || reactive.enabled;
            if used && format.needs_registry() && !registry.is_configured() {
                return Err(invalid(key, "avro, jsonschema and protobuf need schema_registry.url"));
            }
        }
        for url in registry.urls() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("schema_registry.url", format!("{url:?} is not an http:// or https:// URL")));
            }
        }
        if registry.basic_auth_user.is_some() != registry.basic_auth_password.is_some() {
            return Err(invalid("schema_registry.basic_auth_user", "user and password are set together"));
        }
        if registry.cache_max_schemas == 0 {
            return Err(invalid("schema_registry.cache_max_schemas", "must be positive"));
        }
        if registry.request_timeout_ms < 10 {
            return Err(invalid("schema_registry.request_timeout_ms", "must be at least 10"));
        }
        Ok(())
    }

    fn validate_consumer(&self) -> Result<(), ConfigError> {
        let consumer = &self.consumer;
        if !(1024..=64 << 20).contains(&consumer.request_max_bytes) {
            return Err(invalid("consumer.request_max_bytes", "must be between 1 KiB and 64 MiB"));
        }
        if consumer.prefetch_max_bytes < consumer.request_max_bytes || consumer.prefetch_max_bytes > 256 << 20 {
            return Err(invalid(
                "consumer.prefetch_max_bytes",
                "must be at least consumer.request_max_bytes and at most 256 MiB",
            ));
        }
        if consumer.fetch_max_bytes < 1024 || consumer.max_partition_fetch_bytes < 1024 {
            return Err(invalid("consumer.fetch_max_bytes", "fetch sizes must be at least 1024"));
        }
        if consumer.max_poll_records == 0 || consumer.max_instances == 0 {
            return Err(invalid("consumer", "max_poll_records and max_instances must be positive"));
        }
        if consumer.request_timeout_ms > consumer.max_request_timeout_ms {
            return Err(invalid("consumer.request_timeout_ms", "must not exceed consumer.max_request_timeout_ms"));
        }
        if consumer.instance_timeout_ms < 1_000 {
            return Err(invalid("consumer.instance_timeout_ms", "must be at least 1000"));
        }
        for (property, key) in CONSUMER_MANAGED_PROPERTIES {
            if consumer.properties.contains_key(*property) || self.kafka.properties.contains_key(*property) {
                return Err(invalid(&format!("consumer.properties.{property}"), format!("set `{key}` instead")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn managed_property_is_rejected_with_the_right_key() {
        let mut config = Config::default();
        config.kafka.properties.insert("bootstrap.servers".into(), "x:1".into());
        let error = config.validate().expect_err("managed");
        assert!(error.to_string().contains("kafka.bootstrap_servers"), "{error}");
    }

    #[test]
    fn record_larger_than_budget_is_rejected() {
        let mut config = Config::default();
        config.producer.max_buffered_bytes = 4096;
        config.producer.max_record_bytes = 8192;
        assert!(config.validate().expect_err("too big").to_string().contains("producer.max_record_bytes"));
    }

    #[test]
    fn largest_record_must_fit_with_its_overhead() {
        let mut config = Config::default();
        config.producer.max_buffered_bytes = 4096;
        config.producer.max_record_bytes = 4000;
        assert!(config.validate().is_err(), "4000 + overhead never fits in 4096");
        config.producer.max_record_bytes = 3000;
        assert!(config.validate().is_ok());
    }

    #[test]
    fn schema_formats_as_defaults_need_a_registry() {
        let mut config = Config::default();
        config.http.default_value_format = crate::config::EmbeddedFormatName::Avro;
        assert!(config.validate().expect_err("avro").to_string().contains("http.default_value_format"));
        config.schema_registry.url = "http://127.0.0.1:8081, http://127.0.0.1:8082/".into();
        assert!(config.validate().is_ok());
        assert_eq!(config.schema_registry.urls(), ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]);
        config.schema_registry.url = "ftp://registry".into();
        assert!(config.validate().expect_err("scheme").to_string().contains("schema_registry.url"));
    }

    #[test]
    fn non_loopback_listeners_need_auth_or_an_explicit_allowance() {
        let mut config = Config::default();
        config.http.listen = "0.0.0.0:8080".parse().expect("address");
        assert!(config.validate().expect_err("open").to_string().contains("http.listen"));
        config.auth.allow_insecure_bind = true;
        assert!(config.validate().is_ok());
        config.auth.allow_insecure_bind = false;
        config.auth.enabled = true;
        assert!(config.validate().expect_err("no keys").to_string().contains("auth.enabled"));
        config.auth.hs256_secret = Some("short".into());
        assert!(config.validate().expect_err("short").to_string().contains("auth.hs256_secret"));
        config.auth.hs256_secret = Some("x".repeat(32).into());
        assert!(config.validate().is_ok(), "auth on: any bind");
    }

    #[test]
    fn clashing_listeners_are_rejected() {
        let mut config = Config::default();
        config.admin.listen = config.http.listen;
        assert!(config.validate().expect_err("clash").to_string().contains("admin.listen"));
    }
}
