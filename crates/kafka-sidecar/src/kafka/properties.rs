//! Builds librdkafka's producer configuration: sidecar-safe defaults, then the sidecar's typed keys,
//! then the raw pass-through properties.

use rdkafka::ClientConfig;

use crate::config::Config;

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
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    client
}

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
    fn pass_through_properties_win() {
        let mut config = Config::default();
        config.kafka.properties.insert("acks".into(), "1".into());
        assert_eq!(producer_config(&config, "b:9092").get("acks"), Some("1"));
    }
}
