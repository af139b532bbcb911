//! Seed 002's `Status` error body (`statusCode`, `code`, `message`, `description`) built from a
//! [`SidecarError`]; 429 answers also carry `Retry-After`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ErrorCode, SidecarError};

/// The JSON error body: seed 002's `Status` plus Confluent REST Proxy's `error_code`, so clients of
/// either dialect read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Status)]
pub struct StatusBody {
    /// Confluent's numeric code (e.g. 40403 for an unknown consumer instance).
    #[serde(rename = "error_code")]
    pub error_code: u32,
    /// The HTTP status.
    pub status_code: u16,
    /// The machine code.
    #[schema(value_type = ErrorCode)]
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub description: String,
}

fn description(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::QueueFull => "The sidecar is at its buffer limit. Retry after the Retry-After interval.",
        ErrorCode::UnknownTopic => "Create the topic first; the sidecar does not create topics.",
        ErrorCode::InvalidTopic => "Topic names are 1-249 characters of letters, digits, '.', '_' and '-'.",
        ErrorCode::InvalidPartition => "Omit the partition or name one that exists.",
        ErrorCode::RecordTooLarge => "Split the record or raise producer.max_record_bytes.",
        ErrorCode::BodyTooLarge => "Send fewer records per request or raise http.max_body_bytes.",
        ErrorCode::InvalidBase64 => "Binary keys and values must be standard base64.",
        ErrorCode::InvalidJson => "The body must be JSON in the shape the endpoint documents.",
        ErrorCode::InvalidRequest => "Check the request against the endpoint's schema (see the README).",
        ErrorCode::UnsupportedFormat => "Use binary, json or string, or configure schema_registry.url.",
        ErrorCode::DeliveryFailed => "Kafka did not acknowledge the record.",
        ErrorCode::NotDeliveredAtShutdown => "The sidecar stopped before Kafka acknowledged the record.",
        ErrorCode::UnknownSession => "Resend the records whose reports you did not get, on a new session.",
        ErrorCode::ShuttingDown => "The sidecar is shutting down; retry against its replacement.",
        ErrorCode::KafkaUnavailable => "The Kafka cluster could not be reached; retry later.",
        ErrorCode::NotFound => "No such endpoint.",
        ErrorCode::MethodNotAllowed => "The endpoint exists; the Allow header lists its methods.",
        ErrorCode::LoggingNotReloadable => "Only the kafka-sidecar binary sets up logging that can change live.",
        ErrorCode::ConsumerNotFound => "Create the consumer instance first; idle instances expire.",
        ErrorCode::ConsumerExists => "Pick another instance name or delete the existing instance.",
        ErrorCode::ConsumerState => "An instance either subscribes or assigns; a seek needs an owned partition.",
        ErrorCode::FormatMismatch => "Fetch with the format the instance was created with.",
        ErrorCode::TooManyConsumers => "Delete unused consumer instances or raise consumer.max_instances.",
        ErrorCode::InvalidConsumerConfig => "Check the consumer settings in the create request.",
        ErrorCode::KafkaError => "Kafka refused the operation; see the message.",
        ErrorCode::SchemaNotFound => "Register the schema, or name an id, subject or version that exists.",
        ErrorCode::SchemaIncompatible => "The subject's compatibility rule refused this schema; evolve it compatibly.",
        ErrorCode::SchemaInvalid => "The schema does not parse or is not of the request's format.",
        ErrorCode::RecordInvalid => "Make the key or value fit its schema; the message names the field.",
        ErrorCode::KeySchemaMissing => "Name the key schema (key_schema or key_schema_id) for records with keys.",
        ErrorCode::ValueSchemaMissing => "Name the value schema (value_schema or value_schema_id).",
        ErrorCode::SchemaRegistryUnavailable => "The schema registry did not answer; retry after the hint.",
        ErrorCode::SchemaRegistryRefused => "The schema registry refused the sidecar; check schema_registry settings.",
        ErrorCode::Unauthenticated => "Send a valid bearer token in the Authorization header.",
        ErrorCode::Forbidden => "The token lacks a scope this route needs; the message names it.",
        ErrorCode::Internal => "An internal error; see the sidecar's log.",
    }
}

/// Parses a JSON body naming `what` in errors: `INVALID_JSON` when it is not JSON,
/// `INVALID_REQUEST` when it is JSON of the wrong shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, SidecarError> {
    serde_json::from_slice(body).map_err(|error| {
        let code = match error.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidRequest,
            _ => ErrorCode::InvalidJson,
        };
        SidecarError::new(code, format!("invalid {what}: {error}"))
    })
}

/// The request body, or the error its rejection means (`BODY_TOO_LARGE` past the cap).
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, SidecarError> {
    body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::BodyTooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        SidecarError::new(code, rejection.body_text())
    })
}

/// An error as an HTTP response.
pub struct ApiError(pub SidecarError);

impl From<SidecarError> for ApiError {
    fn from(error: SidecarError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code;
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = StatusBody {
            error_code: code.confluent_code(),
            status_code: status.as_u16(),
            code: code.as_str(),
            message: self.0.message.clone(),
            description: description(code).to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        // The audit middleware reads the outcome from here rather than from the body.
        response.extensions_mut().insert(code);
        if self.0.retry_after.is_some() {
            // Retry-After is in whole seconds; the exact hint is in X-Retry-After-Ms.
            let seconds = self.0.retry_after_ms().div_ceil(1000).max(1);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response.headers_mut().insert("x-retry-after-ms", HeaderValue::from(self.0.retry_after_ms()));
        }
        response
    }
}
