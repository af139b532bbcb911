//! The one list of client-facing error codes, mapped once to HTTP statuses and gRPC codes.
//!
//! Every error a caller can see is a [`SidecarError`]: a stable machine code, a message safe to show
//! to the caller, and for backpressure a retry hint. The HTTP and gRPC edges only translate it.

use std::time::Duration;

/// Stable machine-readable error codes. The string form is part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The sidecar's byte budget is full; retry after the hint.
    QueueFull,
    /// The topic does not exist in the cluster.
    UnknownTopic,
    /// The topic name is empty or not a legal Kafka topic name.
    InvalidTopic,
    /// The requested partition does not exist.
    InvalidPartition,
    /// One record is larger than `producer.max_record_bytes`.
    RecordTooLarge,
    /// The HTTP body is larger than `http.max_body_bytes`.
    BodyTooLarge,
    /// A binary key or value is not valid base64.
    InvalidBase64,
    /// The body is not valid JSON or does not have the expected shape.
    InvalidJson,
    /// A required field is missing or a field has a wrong value.
    InvalidRequest,
    /// The key or value format needs the schema registry, which is not configured.
    UnsupportedFormat,
    /// Kafka did not accept the record in time or refused it.
    DeliveryFailed,
    /// Accepted, then not delivered before the shutdown grace period ended.
    NotDeliveredAtShutdown,
    /// The sidecar is shutting down and accepts nothing new.
    ShuttingDown,
    /// A delivery stream asked to resume a session this sidecar instance does not have.
    UnknownSession,
    /// The cluster could not be reached to check the topic.
    KafkaUnavailable,
    /// No such route.
    NotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The log filter cannot be read or changed: logging was not set up by this process's
    /// `telemetry::init` (e.g. the daemon runs as a library).
    LoggingNotReloadable,
    /// No consumer instance by that group and name.
    ConsumerNotFound,
    /// A consumer instance by that name already exists in the group.
    ConsumerExists,
    /// The consumer is in the wrong state: subscribe after assign (or the reverse), or a seek on a
    /// partition it does not own.
    ConsumerState,
    /// The requested record format is not the instance's format.
    FormatMismatch,
    /// The sidecar holds its maximum number of consumer instances.
    TooManyConsumers,
    /// A consumer create request has a bad setting.
    InvalidConsumerConfig,
    /// Kafka refused a consumer operation (commit, seek, subscribe).
    KafkaError,
    /// The schema named by id, subject or version is not in the registry.
    SchemaNotFound,
    /// The registry refused a new schema version as incompatible with the subject's earlier ones.
    SchemaIncompatible,
    /// A schema does not parse, or is of another type than the request's format.
    SchemaInvalid,
    /// A key or value does not fit its schema; the message names the field.
    RecordInvalid,
    /// Confluent v2 produce with a schema format: records have keys, the request no key schema.
    KeySchemaMissing,
    /// Confluent v2 produce with a schema format: records have values, the request no value schema.
    ValueSchemaMissing,
    /// The schema registry did not answer; cached schemas keep working.
    SchemaRegistryUnavailable,
    /// The schema registry refused the sidecar itself (e.g. its credentials).
    SchemaRegistryRefused,
    /// No bearer token, or one that does not verify (signature, expiry, issuer, audience).
    Unauthenticated,
    /// The token verifies but lacks a scope the route needs; the message names it.
    Forbidden,
    /// A bug or an unexpected librdkafka answer; details are logged, not returned.
    Internal,
}

impl ErrorCode {
    /// The code as it appears in HTTP bodies, gRPC metadata and delivery reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "QUEUE_FULL",
            Self::UnknownTopic => "UNKNOWN_TOPIC",
            Self::InvalidTopic => "INVALID_TOPIC",
            Self::InvalidPartition => "INVALID_PARTITION",
            Self::RecordTooLarge => "RECORD_TOO_LARGE",
            Self::BodyTooLarge => "BODY_TOO_LARGE",
            Self::InvalidBase64 => "INVALID_BASE64",
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            Self::DeliveryFailed => "DELIVERY_FAILED",
            Self::NotDeliveredAtShutdown => "NOT_DELIVERED_AT_SHUTDOWN",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::UnknownSession => "UNKNOWN_SESSION",
            Self::KafkaUnavailable => "KAFKA_UNAVAILABLE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::LoggingNotReloadable => "LOGGING_NOT_RELOADABLE",
            Self::ConsumerNotFound => "CONSUMER_NOT_FOUND",
            Self::ConsumerExists => "CONSUMER_EXISTS",
            Self::ConsumerState => "CONSUMER_STATE",
            Self::FormatMismatch => "FORMAT_MISMATCH",
            Self::TooManyConsumers => "TOO_MANY_CONSUMERS",
            Self::InvalidConsumerConfig => "INVALID_CONSUMER_CONFIG",
            Self::KafkaError => "KAFKA_ERROR",
            Self::SchemaNotFound => "SCHEMA_NOT_FOUND",
            Self::SchemaIncompatible => "SCHEMA_INCOMPATIBLE",
            Self::SchemaInvalid => "SCHEMA_INVALID",
            Self::RecordInvalid => "RECORD_INVALID",
            Self::KeySchemaMissing => "KEY_SCHEMA_MISSING",
            Self::ValueSchemaMissing => "VALUE_SCHEMA_MISSING",
            Self::SchemaRegistryUnavailable => "SCHEMA_REGISTRY_UNAVAILABLE",
            Self::SchemaRegistryRefused => "SCHEMA_REGISTRY_REFUSED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::Internal => "INTERNAL",
        }
    }

    /// The HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::QueueFull | Self::TooManyConsumers => 429,
            Self::UnknownTopic | Self::NotFound | Self::ConsumerNotFound | Self::SchemaNotFound => 404,
            Self::UnknownSession | Self::ConsumerExists | Self::ConsumerState | Self::SchemaIncompatible => 409,
            Self::SchemaInvalid | Self::RecordInvalid | Self::KeySchemaMissing | Self::ValueSchemaMissing => 422,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::SchemaRegistryRefused => 502,
            Self::FormatMismatch => 406,
            Self::MethodNotAllowed => 405,
            Self::LoggingNotReloadable => 409,
            Self::InvalidConsumerConfig => 422,
            Self::RecordTooLarge | Self::BodyTooLarge => 413,
            Self::InvalidTopic
            | Self::InvalidPartition
            | Self::InvalidBase64
            | Self::InvalidJson
            | Self::InvalidRequest
            | Self::UnsupportedFormat => 400,
            Self::ShuttingDown | Self::KafkaUnavailable | Self::SchemaRegistryUnavailable => 503,
            Self::DeliveryFailed | Self::NotDeliveredAtShutdown => 502,
            Self::Internal | Self::KafkaError => 500,
        }
    }

    /// Confluent REST Proxy's numeric `error_code`: its specific codes where one exists, else the
    /// HTTP status, as Confluent does for generic errors.
    pub fn confluent_code(self) -> u32 {
        match self {
            Self::UnknownTopic => 40401,
            Self::ConsumerNotFound => 40403,
            Self::FormatMismatch => 40601,
            Self::ConsumerExists => 40902,
            Self::ConsumerState => 40903,
            Self::InvalidConsumerConfig => 42204,
            Self::TooManyConsumers => 42901,
            Self::KafkaError => 50002,
            Self::KafkaUnavailable => 50003,
            Self::SchemaNotFound => 40403,
            Self::KeySchemaMissing => 42201,
            Self::ValueSchemaMissing => 42202,
            Self::RecordInvalid => 42203,
            Self::SchemaInvalid => 42205,
            other => u32::from(other.http_status()),
        }
    }

    /// The gRPC status code for this code.
    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::QueueFull | Self::TooManyConsumers => Code::ResourceExhausted,
            Self::UnknownTopic | Self::NotFound | Self::ConsumerNotFound | Self::SchemaNotFound => Code::NotFound,
            Self::ConsumerExists => Code::AlreadyExists,
            Self::SchemaIncompatible => Code::FailedPrecondition,
            Self::SchemaInvalid | Self::RecordInvalid | Self::KeySchemaMissing | Self::ValueSchemaMissing => {
                Code::InvalidArgument
            }
            Self::SchemaRegistryRefused => Code::Internal,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::Forbidden => Code::PermissionDenied,
            Self::ConsumerState => Code::FailedPrecondition,
            Self::FormatMismatch | Self::InvalidConsumerConfig => Code::InvalidArgument,
            Self::MethodNotAllowed => Code::Unimplemented,
            Self::LoggingNotReloadable => Code::FailedPrecondition,
            Self::KafkaError => Code::Unknown,
            Self::InvalidTopic
            | Self::InvalidPartition
            | Self::RecordTooLarge
            | Self::BodyTooLarge
            | Self::InvalidBase64
            | Self::InvalidJson
            | Self::InvalidRequest => Code::InvalidArgument,
            Self::UnsupportedFormat => Code::Unimplemented,
            Self::UnknownSession => Code::FailedPrecondition,
            Self::ShuttingDown | Self::KafkaUnavailable | Self::SchemaRegistryUnavailable => Code::Unavailable,
            Self::DeliveryFailed | Self::NotDeliveredAtShutdown => Code::Aborted,
            Self::Internal => Code::Internal,
        }
    }

    /// Whether the caller should retry the same record later.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::QueueFull
                | Self::KafkaUnavailable
                | Self::ShuttingDown
                | Self::TooManyConsumers
                | Self::SchemaRegistryUnavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error a caller sees: code, caller-safe message, optional retry hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SidecarError {
    /// The machine code.
    pub code: ErrorCode,
    /// Text for the caller; never contains internals.
    pub message: String,
    /// For backpressure: how long to wait before retrying.
    pub retry_after: Option<Duration>,
}

impl SidecarError {
    /// An error with a code and message and no retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    /// The backpressure error, with its retry hint.
    pub fn queue_full(retry_after: Duration) -> Self {
        Self {
            code: ErrorCode::QueueFull,
            message: "the sidecar's producer queue is full; retry later".into(),
            retry_after: Some(retry_after),
        }
    }

    /// Retry hint in whole milliseconds (at least 1 when a hint is set), 0 when none.
    pub fn retry_after_ms(&self) -> u32 {
        self.retry_after.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backpressure_maps_to_429_and_resource_exhausted() {
        let error = SidecarError::queue_full(Duration::from_millis(20));
        assert_eq!(error.code.http_status(), 429);
        assert_eq!(error.code.grpc_code(), tonic::Code::ResourceExhausted);
        assert_eq!(error.retry_after_ms(), 20);
        assert!(error.code.is_retriable());
    }

    #[test]
    fn bad_input_is_client_error_and_not_retriable() {
        for code in [ErrorCode::InvalidBase64, ErrorCode::InvalidJson, ErrorCode::InvalidTopic] {
            assert_eq!(code.http_status(), 400);
            assert_eq!(code.grpc_code(), tonic::Code::InvalidArgument);
            assert!(!code.is_retriable());
        }
        assert_eq!(ErrorCode::UnknownTopic.http_status(), 404);
        assert_eq!(ErrorCode::RecordTooLarge.http_status(), 413);
    }

    #[test]
    fn confluent_codes_start_with_the_http_status() {
        for code in [
            ErrorCode::UnknownTopic,
            ErrorCode::ConsumerNotFound,
            ErrorCode::FormatMismatch,
            ErrorCode::ConsumerExists,
            ErrorCode::ConsumerState,
            ErrorCode::InvalidConsumerConfig,
            ErrorCode::TooManyConsumers,
            ErrorCode::KafkaError,
            ErrorCode::InvalidJson,
        ] {
            let confluent = code.confluent_code();
            let status = u32::from(code.http_status());
            assert!(confluent == status || confluent / 100 == status, "{code}: {confluent} vs {status}");
        }
        assert_eq!(ErrorCode::ConsumerNotFound.confluent_code(), 40403);
    }
}
