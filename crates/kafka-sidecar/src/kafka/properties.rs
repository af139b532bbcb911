//! Builds librdkafka's producer and consumer configurations: sidecar-safe defaults, then the
//! sidecar's typed keys, then the raw pass-through properties (`kafka.properties`, and for consumers
//! `consumer.properties` over those).
//!
//! `kafka.security` (TLS, SASL) is part of the typed keys and reaches every client the sidecar
//! makes: the producer here, consumers and the lag and admin clients through
//! [`shared_consumer_properties`]. Secret files are read each time a client is configured, so a
//! rotated Kubernetes secret reaches the next consumer instance. Validation already ran the file
//! checks at start-up, so a read failing here means the file went away since: that is logged, the
//! secret is left out, and the broker's refusal then shows on `/readyz`.

use rdkafka::ClientConfig;

use crate::config::Config;
use crate::consumer::InstanceSettings;

/// librdkafka's queue limit sits above the admission budget, so our budget refuses first and
/// librdkafka's own `QueueFull` is only a backstop. Its accounting differs slightly from ours.
const LIBRDKAFKA_QUEUE_HEADROOM: u64 = 2;

/// The producer's librdkafka configuration for `bootstrap_servers`.
pub fn producer_config(config: &Config, bootstrap_servers: &str) -> ClientConfig {
    let producer = &config.producer;
    let queue_kbytes = (producer.max_buffered_bytes * LIBRDKAFKA_QUEUE_HEADROOM).div_ceil(1024);
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "kafka-sidecar")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.codec", producer.compression.as_str())
        .set("linger.ms", producer.linger_ms.to_string())
        .set("batch.size", producer.batch_max_bytes.to_string())
        .set("message.max.bytes", (producer.max_record_bytes.saturating_add(64 * 1024)).to_string())
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", producer.delivery_timeout_ms.to_string())
        .set("statistics.interval.ms", producer.statistics_interval_ms.to_string())
        .set("topic.metadata.refresh.interval.ms", "60000")
        // A typo must not create a topic; the dev broker is a playground, so there it may.
        .set("allow.auto.create.topics", if config.kafka.uses_dev_broker() { "true" } else { "false" });
    for (key, value) in security_properties(config) {
        client.set(key, value);
    }
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    client
}

/// A consumer instance's librdkafka configuration. Memory is bounded: librdkafka's own prefetch
/// queue (64 MiB per consumer by default) is capped near the instance's prefetch bound.
pub fn consumer_config(config: &Config, bootstrap_servers: &str, settings: &InstanceSettings) -> ClientConfig {
    let consumer = &config.consumer;
    let queue_kbytes = (consumer.prefetch_max_bytes as u64).div_ceil(1024).max(1);
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", format!("kafka-sidecar-{}", settings.name))
        .set("group.id", &settings.group)
        .set("partition.assignment.strategy", &consumer.partition_assignment_strategy)
        .set("auto.offset.reset", settings.auto_offset_reset.as_str())
        .set("enable.auto.commit", settings.auto_commit.to_string())
        // Only what was returned to the app is stored, so auto-commit never commits a prefetch.
        .set("enable.auto.offset.store", "false")
        .set("fetch.max.bytes", consumer.fetch_max_bytes.to_string())
        // librdkafka raises fetch.max.bytes to message.max.bytes; keep the two together.
        .set("message.max.bytes", consumer.fetch_max_bytes.to_string())
        .set("max.partition.fetch.bytes", consumer.max_partition_fetch_bytes.to_string())
        .set("queued.max.messages.kbytes", queue_kbytes.to_string())
        .set("queued.min.messages", consumer.max_poll_records.max(1000).to_string())
        // With a small queue the queue limits are hit often; librdkafka's 1 s default backoff
        // would then stall each partition for a second every few hundred records.
        .set("fetch.queue.backoff.ms", "20")
        .set("max.poll.interval.ms", consumer.max_poll_interval_ms.to_string())
        .set("allow.auto.create.topics", "false");
    if let Some(instance_id) = &settings.group_instance_id {
        client.set("group.instance.id", instance_id);
    }
    for (key, value) in shared_consumer_properties(config) {
        client.set(key, value);
    }
    client
}

/// `kafka.security`, then `kafka.properties` then `consumer.properties` without the producer-only
/// ones: what every consumer-side client (instances, lag lookups, admin clients) applies.
pub fn shared_consumer_properties(config: &Config) -> Vec<(String, String)> {
    let raw = config
        .kafka
        .properties
        .iter()
        .chain(&config.consumer.properties)
        .filter(|(key, _)| !PRODUCER_ONLY_PROPERTIES.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()));
    security_properties(config).into_iter().chain(raw).collect()
}

/// The librdkafka properties of `kafka.security`, secrets included (never log them).
fn security_properties(config: &Config) -> Vec<(String, String)> {
    match config.kafka.security.librdkafka_properties() {
        Ok(properties) => properties.into_iter().map(|(key, value)| (key.to_string(), value)).collect(),
        Err(error) => {
            tracing::error!(error = %error, "kafka.security: a secret file is unreadable; connecting without it");
            let mut without_secrets = config.kafka.security.clone();
            without_secrets.tls.key_password_file = None;
            without_secrets.sasl.password_file = None;
            without_secrets.sasl.username_file = None;
            without_secrets
                .librdkafka_properties()
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect()
        }
    }
}

/// Shared `kafka.properties` that only a producer understands; librdkafka would warn about each
/// on every consumer instance.
const PRODUCER_ONLY_PROPERTIES: &[&str] =
    &["acks", "request.required.acks", "enable.idempotence", "batch.size", "batch.num.messages", "retries"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_queue_is_bounded() {
        let config = Config::default();
        let client = producer_config(&config, "b:9092");
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("compression.codec"), Some("lz4"));
        assert_eq!(client.get("queue.buffering.max.kbytes"), Some("32768"));
        assert_eq!(client.get("allow.auto.create.topics"), Some("true"), "dev broker");
        let mut real = Config::default();
        real.kafka.bootstrap_servers = "b:9092".into();
        assert_eq!(producer_config(&real, "b:9092").get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn security_reaches_producer_and_consumers() {
        let mut config = Config::default();
        config.kafka.bootstrap_servers = "b:9093".into();
        config.kafka.security.protocol = crate::config::SecurityProtocol::SaslSsl;
        config.kafka.security.sasl.mechanism = Some(crate::config::SaslMechanism::ScramSha256);
        config.kafka.security.sasl.username = Some("alice".into());
        config.kafka.security.sasl.password = Some("pw".into());
        let producer = producer_config(&config, "b:9093");
        assert_eq!(producer.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(producer.get("sasl.password"), Some("pw"));
        let shared: std::collections::BTreeMap<_, _> = shared_consumer_properties(&config).into_iter().collect();
        assert_eq!(shared.get("sasl.mechanism").map(String::as_str), Some("SCRAM-SHA-256"));
        assert_eq!(shared.get("sasl.username").map(String::as_str), Some("alice"));
    }

    #[test]
    fn librdkafka_accepts_tls_with_the_probed_ca_bundle() {
        let mut config = Config::default();
        config.kafka.bootstrap_servers = "127.0.0.1:1".into();
        config.kafka.security.protocol = crate::config::SecurityProtocol::Ssl;
        let client = producer_config(&config, "127.0.0.1:1");
        assert_eq!(client.get("ssl.ca.location"), Some("probe"));
        let created: Result<rdkafka::producer::BaseProducer, _> = client.create();
        assert!(created.is_ok(), "{:?}", created.err());
    }

    #[test]
    fn pass_through_properties_win() {
        let mut config = Config::default();
        config.kafka.properties.insert("acks".into(), "1".into());
        assert_eq!(producer_config(&config, "b:9092").get("acks"), Some("1"));
    }

    #[test]
    fn consumer_defaults_follow_seed_002_and_bound_the_prefetch() {
        let mut config = Config::default();
        config.kafka.properties.insert("acks".into(), "1".into());
        config.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
        config.consumer.properties.insert("session.timeout.ms".into(), "7000".into());
        let settings = InstanceSettings {
            group: "g".into(),
            name: "i".into(),
            format: crate::config::EmbeddedFormatName::Binary,
            auto_offset_reset: crate::config::OffsetReset::Earliest,
            auto_commit: false,
            fetch_min_bytes: 0,
            request_timeout_ms: 1000,
            group_instance_id: Some("static-1".into()),
        };
        let client = consumer_config(&config, "b:9092", &settings);
        assert_eq!(client.get("fetch.max.bytes"), Some("102400"));
        assert_eq!(client.get("max.partition.fetch.bytes"), Some("102400"));
        assert_eq!(client.get("partition.assignment.strategy"), Some("cooperative-sticky"));
        assert_eq!(client.get("queued.max.messages.kbytes"), Some("200"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("group.instance.id"), Some("static-1"));
        assert_eq!(client.get("session.timeout.ms"), Some("7000"), "consumer.properties win");
        assert_eq!(client.get("acks"), None, "producer-only properties stay off consumers");
    }
}
