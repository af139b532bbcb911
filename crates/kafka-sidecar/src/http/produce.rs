//! `POST /producers/{topic}`: seed 002's `ProduceRequest` in, each record's partition and offset
//! (or its error) out. The request is validated whole before anything is produced, admitted whole
//! or refused whole (429), and answered once Kafka has acknowledged or failed every record.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::formats::EmbeddedFormat;
use super::status::{ApiError, body_bytes};
use crate::error::{ErrorCode, SidecarError};
use crate::metrics::RequestLabels;
use crate::record::{Origin, OutgoingRecord};

/// Record header carrying the end-to-end traceability id (light-4j's name).
pub const TRACEABILITY_HEADER: &str = "X-Traceability-Id";
/// Record header carrying the correlation id (light-4j's name).
pub const CORRELATION_HEADER: &str = "X-Correlation-Id";
/// HTTP header naming the calling application, for metrics.
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// Seed 002's `ProduceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProduceRequest {
    key_format: Option<EmbeddedFormat>,
    value_format: Option<EmbeddedFormat>,
    key_schema: Option<String>,
    key_schema_id: Option<i64>,
    key_schema_version: Option<i64>,
    key_schema_subject: Option<String>,
    value_schema: Option<String>,
    value_schema_id: Option<i64>,
    value_schema_version: Option<i64>,
    value_schema_subject: Option<String>,
    records: Vec<ProduceRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProduceRecord {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    partition: Option<i32>,
    timestamp: Option<i64>,
    traceability_id: Option<String>,
    correlation_id: Option<String>,
}

/// The answer: one entry per record, in request order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProduceResponse {
    offsets: Vec<RecordResult>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordResult {
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Handles `POST /producers/{topic}`.
pub async fn produce(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ProduceResponse>), ApiError> {
    let named = header_text(&headers, CLIENT_ID_HEADER);
    let client_id = named.unwrap_or("http").to_string();
    // Fair admission tells callers apart: by X-Client-Id, else by connection.
    let sender = match (named, peer) {
        (None, Some(Extension(ConnectInfo(address)))) => format!("http-connection:{address}"),
        _ => String::new(),
    };
    let client = state.metrics.client_label(&client_id);
    state.metrics.requests.get_or_create(&RequestLabels { api: "http_produce", client }).inc();
    let body = body_bytes(body)?;
    let request: ProduceRequest = serde_json::from_slice(&body).map_err(|error| {
        let code = match error.classify() {
            serde_json::error::Category::Data => ErrorCode::InvalidRequest,
            _ => ErrorCode::InvalidJson,
        };
        SidecarError::new(code, format!("invalid ProduceRequest: {error}"))
    })?;
    let records = decode_records(&state, &topic, &headers, request)?;
    state.metrics.request_records.observe(records.len() as f64);
    let origin = Origin { client_id, session_id: sender };
    let outcomes = state.producer.send_and_wait(&origin, records).await?;
    let offsets = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(delivered) => RecordResult {
                partition: Some(delivered.partition),
                offset: Some(delivered.offset),
                timestamp: delivered.timestamp_ms,
                error_code: None,
                error: None,
            },
            Err(error) => RecordResult {
                partition: None,
                offset: None,
                timestamp: None,
                error_code: Some(error.code.as_str()),
                error: Some(error.message),
            },
        })
        .collect();
    Ok((StatusCode::OK, Json(ProduceResponse { offsets })))
}

fn decode_records(
    state: &AppState,
    topic: &str,
    headers: &HeaderMap,
    request: ProduceRequest,
) -> Result<Vec<OutgoingRecord>, SidecarError> {
    let uses_registry = request.key_schema.is_some()
        || request.key_schema_id.is_some()
        || request.key_schema_version.is_some()
        || request.key_schema_subject.is_some()
        || request.value_schema.is_some()
        || request.value_schema_id.is_some()
        || request.value_schema_version.is_some()
        || request.value_schema_subject.is_some();
    if uses_registry {
        return Err(SidecarError::new(
            ErrorCode::UnsupportedFormat,
            "schemas need the schema registry, which is not configured",
        ));
    }
    if request.records.is_empty() {
        return Err(SidecarError::new(ErrorCode::InvalidRequest, "records must not be empty"));
    }
    let key_format = request.key_format.unwrap_or(EmbeddedFormat(state.default_key_format));
    let value_format = request.value_format.unwrap_or(EmbeddedFormat(state.default_value_format));
    let default_trace = header_text(headers, TRACEABILITY_HEADER);
    let default_correlation = header_text(headers, CORRELATION_HEADER);
    request
        .records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let mut record_headers: Vec<(String, Bytes)> =
                record.headers.into_iter().map(|(name, value)| (name, Bytes::from(value))).collect();
            let trace = record.traceability_id.as_deref().or(default_trace);
            let correlation = record.correlation_id.as_deref().or(default_correlation);
            for (name, value) in [(TRACEABILITY_HEADER, trace), (CORRELATION_HEADER, correlation)] {
                if let Some(value) = value {
                    record_headers.push((name.to_string(), Bytes::copy_from_slice(value.as_bytes())));
                }
            }
            Ok(OutgoingRecord {
                topic: topic.to_string(),
                key: key_format.encode(&format!("records[{index}].key"), &record.key)?,
                value: value_format.encode(&format!("records[{index}].value"), &record.value)?,
                headers: record_headers,
                partition: record.partition,
                timestamp_ms: record.timestamp,
                record_id: index as u64,
            })
        })
        .collect()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).filter(|text| !text.is_empty())
}
