//! The one typed configuration tree: defaults here, layering in [`load`], checks in [`validate`].
//!
//! Units are in the names (`linger_ms`, `max_buffered_bytes`). Unknown keys are rejected.
//! `kafka.properties` passes raw librdkafka properties through, over the sidecar's defaults.

mod audit;
mod auth;
mod kafka_security;
mod listener_tls;
mod load;
mod reactive;
mod redact;
mod schema_registry;
mod trace;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use audit::AuditConfig;
pub use auth::AuthConfig;
pub use kafka_security::{
    KafkaSaslConfig, KafkaSecurityConfig, KafkaTlsConfig, OAuthBearerConfig, SaslMechanism, SecretFileError,
    SecurityProtocol, resolve as kafka_security_resolve,
};
pub use listener_tls::ListenerTlsConfig;
pub use load::{ConfigError, ConfigSources};
pub use reactive::{ReactiveConsumerConfig, RetryConfig};
pub use redact::{REDACTED, Secret, is_secret_key, redacted};
pub use schema_registry::SchemaRegistryConfig;
pub use trace::{OtlpConfig, TraceConfig};

/// The whole sidecar configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// The shared producer.
    pub producer: ProducerConfig,
    /// Delivery reports kept for sessions.
    pub delivery: DeliveryConfig,
    /// Active consumer instances (the REST consumer API).
    pub consumer: ConsumerConfig,
    /// The consumer that pushes records to the app's HTTP endpoint.
    pub reactive_consumer: ReactiveConsumerConfig,
    /// The gRPC listener(s).
    pub grpc: GrpcConfig,
    /// The HTTP produce API.
    pub http: HttpConfig,
    /// The Confluent-compatible schema registry behind avro, jsonschema and protobuf.
    pub schema_registry: SchemaRegistryConfig,
    /// Metrics and health.
    pub admin: AdminConfig,
    /// Bearer tokens and scopes on the APIs.
    pub auth: AuthConfig,
    /// Audit records of every action, on a Kafka topic.
    pub audit: AuditConfig,
    /// Draining on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// Logging.
    pub log: LogConfig,
    /// Trace and correlation ids on records and log spans; optional OTLP span export.
    pub trace: TraceConfig,
}

/// How to reach Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Empty starts the embedded in-memory dev broker.
    pub bootstrap_servers: String,
    /// Force the embedded dev broker even when bootstrap servers are set.
    pub dev: bool,
    /// Brokers in the embedded dev cluster.
    pub dev_broker_count: u32,
    /// How long a topic metadata lookup may take before the request fails.
    pub metadata_timeout_ms: u64,
    /// How long a topic's metadata is trusted before it is looked up again.
    pub topic_cache_ttl_ms: u64,
    /// Raw librdkafka properties, applied over the sidecar's defaults.
    #[serde(deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
    /// TLS and SASL to the brokers (`kafka.security.*`).
    pub security: KafkaSecurityConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            dev: false,
            dev_broker_count: 1,
            metadata_timeout_ms: 5_000,
            topic_cache_ttl_ms: 30_000,
            properties: BTreeMap::new(),
            security: KafkaSecurityConfig::default(),
        }
    }
}

impl KafkaConfig {
    /// Whether the sidecar runs on its embedded in-memory broker.
    pub fn uses_dev_broker(&self) -> bool {
        self.dev || self.bootstrap_servers.trim().is_empty()
    }
}

/// Compression codecs librdkafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: cheap on CPU, a good sidecar default.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The librdkafka `compression.codec` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// The shared producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// librdkafka `linger.ms`: how long to wait to fill a batch.
    pub linger_ms: u32,
    /// Compression codec for batches.
    pub compression: Compression,
    /// librdkafka `batch.size`: the most bytes in one partition batch.
    pub batch_max_bytes: u32,
    /// Admission budget: memory held for records accepted but not yet acknowledged by Kafka
    /// (their bytes plus a fixed per-record overhead).
    pub max_buffered_bytes: u64,
    /// The largest single record (key + value + headers).
    pub max_record_bytes: u32,
    /// librdkafka `message.timeout.ms`: how long Kafka may take to acknowledge a record.
    pub delivery_timeout_ms: u32,
    /// The shortest retry hint returned with backpressure (`QUEUE_FULL`).
    pub retry_after_ms: u32,
    /// The longest retry hint: what callers are told while Kafka drains nothing. Jitter never
    /// takes a hint above it (nor below `retry_after_ms`).
    pub max_retry_after_ms: u32,
    /// librdkafka statistics interval feeding broker metrics; 0 disables.
    pub statistics_interval_ms: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            compression: Compression::Lz4,
            batch_max_bytes: 1_000_000,
            max_buffered_bytes: 16 * 1024 * 1024,
            max_record_bytes: 1_000_000,
            delivery_timeout_ms: 30_000,
            retry_after_ms: 20,
            max_retry_after_ms: 1_000,
            statistics_interval_ms: 5_000,
        }
    }
}

/// Delivery reports kept for sessions until their `DeliveryStream` reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Reports kept per session; older ones fall off.
    pub ring_capacity: usize,
    /// Reports kept across all sessions.
    pub max_buffered_reports: usize,
    /// Sessions kept at once; the least recently active is evicted beyond this.
    pub max_sessions: usize,
    /// A session with no stream and no records for this long is forgotten.
    pub session_idle_timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            ring_capacity: 32_768,
            max_buffered_reports: 131_072,
            max_sessions: 1_024,
            session_idle_timeout_ms: 300_000,
        }
    }
}

/// Active consumer instances: seed 002's tuning defaults, limits and raw librdkafka properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Seed 002's `requestMaxBytes`: the most key and value bytes in one fetch response, and the
    /// largest `max_bytes` a fetch may ask for (larger asks are clamped, as Confluent does).
    pub request_max_bytes: usize,
    /// librdkafka `fetch.max.bytes`.
    pub fetch_max_bytes: u32,
    /// librdkafka `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: u32,
    /// Seed 002's `max.poll.records`: the most records in one fetch response.
    pub max_poll_records: usize,
    /// Records an instance holds prefetched, in bytes, before it pauses fetching from Kafka.
    pub prefetch_max_bytes: usize,
    /// Confluent's `consumer.request.timeout.ms`: how long a fetch waits for records by default.
    pub request_timeout_ms: u64,
    /// The longest wait a fetch may ask for with `timeout`.
    pub max_request_timeout_ms: u64,
    /// An instance unused for this long leaves its group and is deleted.
    pub instance_timeout_ms: u64,
    /// Instances per sidecar; creating one more answers 429.
    pub max_instances: usize,
    /// librdkafka `partition.assignment.strategy`.
    pub partition_assignment_strategy: String,
    /// librdkafka `max.poll.interval.ms`; the instance's own poll loop keeps it, not the app.
    pub max_poll_interval_ms: u32,
    /// `auto.offset.reset` when a create request names none: earliest or latest.
    pub auto_offset_reset: OffsetReset,
    /// `auto.commit.enable` when a create request names none.
    pub auto_commit_enable: bool,
    /// How often consumer lag gauges are refreshed for the groups with instances here; 0 disables.
    pub lag_interval_ms: u64,
    /// Raw librdkafka properties for consumers, over `kafka.properties`.
    #[serde(deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            request_max_bytes: 204_800,
            fetch_max_bytes: 102_400,
            max_partition_fetch_bytes: 102_400,
            max_poll_records: 100,
            prefetch_max_bytes: 204_800,
            request_timeout_ms: 1_000,
            max_request_timeout_ms: 30_000,
            instance_timeout_ms: 300_000,
            max_instances: 100,
            partition_assignment_strategy: "cooperative-sticky".into(),
            max_poll_interval_ms: 300_000,
            auto_offset_reset: OffsetReset::Latest,
            auto_commit_enable: true,
            lag_interval_ms: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

/// Where a consumer starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// The oldest record kept.
    Earliest,
    /// Only records produced from now on.
    Latest,
}

impl OffsetReset {
    /// The librdkafka `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earliest => "earliest",
            Self::Latest => "latest",
        }
    }
}

/// The gRPC listener(s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// TCP address; loopback unless deliberately changed.
    pub listen: SocketAddr,
    /// Optional Unix domain socket path, served alongside TCP.
    pub unix_socket: Option<PathBuf>,
    /// TLS on the TCP listener (the Unix socket stays plain: the file's permissions guard it).
    pub tls: Option<ListenerTlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 50051)), unix_socket: None, tls: None }
    }
}

/// The HTTP produce API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP address; loopback unless deliberately changed.
    pub listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Key format when a request names none.
    pub default_key_format: EmbeddedFormatName,
    /// Value format when a request names none.
    pub default_value_format: EmbeddedFormatName,
    /// TLS on the API listener.
    pub tls: Option<ListenerTlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1_000_000,
            default_key_format: EmbeddedFormatName::String,
            default_value_format: EmbeddedFormatName::Binary,
            tls: None,
        }
    }
}

/// Key/value formats by name, as in configuration (seed 002's `EmbeddedFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddedFormatName {
    /// Base64 in JSON, raw bytes in Kafka.
    Binary,
    /// Avro via the schema registry.
    Avro,
    /// Any JSON value, stored as its JSON text.
    Json,
    /// JSON validated by a registry schema.
    Jsonschema,
    /// Protobuf via the schema registry.
    Protobuf,
    /// A JSON string, stored as UTF-8.
    String,
}

impl EmbeddedFormatName {
    /// Whether the format needs the schema registry (avro, jsonschema, protobuf).
    pub fn needs_registry(self) -> bool {
        matches!(self, Self::Avro | Self::Jsonschema | Self::Protobuf)
    }
}

/// Metrics and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// TCP address for `/metrics`, `/healthz`, `/readyz`.
    pub listen: SocketAddr,
    /// TLS on the admin listener (probes then use `scheme: HTTPS`).
    pub tls: Option<ListenerTlsConfig>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9644)), tls: None }
    }
}

/// Draining on SIGTERM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Total time to drain and flush before giving up on undelivered records.
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_period_ms: 10_000 }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `kafka_sidecar=debug,info`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads a map whose values may be any YAML scalar, keeping each as its text.
fn scalar_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, serde_norway::Value>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(key, value)| {
            let text = match value {
                serde_norway::Value::String(text) => text,
                serde_norway::Value::Number(number) => number.to_string(),
                serde_norway::Value::Bool(flag) => flag.to_string(),
                _ => return Err(D::Error::custom(format!("property {key} must be a scalar"))),
            };
            Ok((key, text))
        })
        .collect()
}
