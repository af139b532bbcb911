//! `POST /producers/{topic}`: seed 002's `ProduceRequest` in, each record's partition and offset
//! (or its error) out, and the produce core Confluent v2's paths share. The request is validated
//! and encoded whole before anything is produced, admitted whole or refused whole (429), and
//! answered once Kafka has acknowledged or failed every record.

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
use super::audit::{AuditDetails, Audited};
use super::formats::{EmbeddedFormat, FieldEncoder};
use super::status::{ApiError, body_bytes, parse_json};
use crate::error::{ErrorCode, SidecarError};
use crate::metrics::RequestLabels;
use crate::record::{DeliveryOutcome, Origin, OutgoingRecord};
use crate::schema::{SchemaRole, SchemaSelection};

/// Record header carrying the end-to-end traceability id (light-4j's name).
pub const TRACEABILITY_HEADER: &str = crate::trace::TRACEABILITY_ID;
/// Record header carrying the correlation id (light-4j's name).
pub const CORRELATION_HEADER: &str = crate::trace::CORRELATION_ID;
/// HTTP header naming the calling application, for metrics.
pub const CLIENT_ID_HEADER: &str = "x-client-id";

/// Seed 002's `ProduceRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

/// One record: key and value in their formats (base64 text for binary, any JSON for json, text
/// for string, the schema's JSON for schema formats); `null` or absent means none.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

/// The answer: one entry per record, in request order, and the schema ids used. The ids are also
/// given under Confluent v2's names, as error bodies carry both dialects' fields.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProduceResponse {
    offsets: Vec<RecordResult>,
    key_schema_id: Option<u32>,
    value_schema_id: Option<u32>,
    #[serde(rename = "key_schema_id")]
    key_schema_id_v2: Option<u32>,
    #[serde(rename = "value_schema_id")]
    value_schema_id_v2: Option<u32>,
}

/// One record's outcome: where it landed, or its error code and message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RecordResult {
    partition: Option<i32>,
    offset: Option<i64>,
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::error::ErrorCode>)]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Handles `POST /producers/{topic}`.
#[utoipa::path(
    post,
    path = "/producers/{topic}",
    tag = "produce",
    summary = "Produce records to a topic (seed 002)",
    description = "Validated and encoded whole, admitted whole (or 429), answered once Kafka acknowledged \
                   or failed every record. `X-Correlation-Id` and `X-Traceability-Id` headers become record \
                   headers unless a record names its own.",
    params(crate::http::openapi::TopicPath),
    request_body(content = ProduceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Each record's partition and offset, or its error", body = ProduceResponse),
        crate::http::openapi::ProduceErrors,
    ),
    security((), ("bearer" = ["kafka:w"])),
)]
pub async fn produce(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Audited, Json<ProduceResponse>), ApiError> {
    let origin = origin(&state, "http_produce", &headers, peer);
    let body = body_bytes(body)?;
    let request: ProduceRequest = parse_json(&body, "ProduceRequest")?;
    let request = JsonProduce {
        key_format: request.key_format,
        value_format: request.value_format,
        key_schema: SchemaSelection::from_fields(
            SchemaRole::Key,
            request.key_schema,
            request.key_schema_id,
            request.key_schema_version,
            request.key_schema_subject,
        )?,
        value_schema: SchemaSelection::from_fields(
            SchemaRole::Value,
            request.value_schema,
            request.value_schema_id,
            request.value_schema_version,
            request.value_schema_subject,
        )?,
        records: request
            .records
            .into_iter()
            .map(|record| JsonRecord {
                key: record.key,
                value: record.value,
                headers: record.headers.into_iter().map(|(name, value)| (name, Bytes::from(value))).collect(),
                partition: record.partition,
                timestamp: record.timestamp,
                traceability_id: record.traceability_id,
                correlation_id: record.correlation_id,
            })
            .collect(),
    };
    let outcome = produce_json(&state, &topic, None, origin, &headers, request).await?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::produced(&topic, &outcome.offsets));
    let offsets = outcome
        .offsets
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
    let (key_schema_id, value_schema_id) = (outcome.key_schema_id, outcome.value_schema_id);
    let response = ProduceResponse {
        offsets,
        key_schema_id,
        value_schema_id,
        key_schema_id_v2: key_schema_id,
        value_schema_id_v2: value_schema_id,
    };
    Ok((StatusCode::OK, audit, Json(response)))
}

/// Who is producing: the client id for metrics, and for fair admission the caller's identity (by
/// `X-Client-Id`, else by connection). Counts the request under `api`.
pub(super) fn origin(
    state: &AppState,
    api: &'static str,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Origin {
    let named = header_text(headers, CLIENT_ID_HEADER);
    let client_id = named.unwrap_or("http").to_string();
    let sender = match (named, peer) {
        (None, Some(Extension(ConnectInfo(address)))) => format!("http-connection:{address}"),
        _ => String::new(),
    };
    let client = state.metrics.client_label(&client_id);
    state.metrics.requests.get_or_create(&RequestLabels { api, client }).inc();
    Origin { client_id, session_id: sender }
}

/// A produce request of either dialect, decoded from its JSON body.
pub(super) struct JsonProduce {
    pub key_format: Option<EmbeddedFormat>,
    pub value_format: Option<EmbeddedFormat>,
    pub key_schema: SchemaSelection,
    pub value_schema: SchemaSelection,
    pub records: Vec<JsonRecord>,
}

/// One record of a [`JsonProduce`], key and value still JSON.
pub(super) struct JsonRecord {
    pub key: Value,
    pub value: Value,
    pub headers: Vec<(String, Bytes)>,
    pub partition: Option<i32>,
    pub timestamp: Option<i64>,
    pub traceability_id: Option<String>,
    pub correlation_id: Option<String>,
}

/// What Kafka answered per record, and the schema ids the keys and values were written with.
pub(super) struct ProduceOutcome {
    pub offsets: Vec<DeliveryOutcome>,
    pub key_schema_id: Option<u32>,
    pub value_schema_id: Option<u32>,
}

/// The produce core both dialects share: resolve formats and schemas once, encode every record
/// (all or nothing: one bad record refuses the request), send, and wait for Kafka's answers.
/// `partition` overrides each record's own (Confluent's `/topics/{topic}/partitions/{p}`).
pub(super) async fn produce_json(
    state: &AppState,
    topic: &str,
    partition: Option<i32>,
    origin: Origin,
    headers: &HeaderMap,
    request: JsonProduce,
) -> Result<ProduceOutcome, SidecarError> {
    if request.records.is_empty() {
        return Err(SidecarError::new(ErrorCode::InvalidRequest, "records must not be empty"));
    }
    crate::record::validate_topic_name(topic)?;
    let registry = state.schemas.as_deref();
    let key_format = request.key_format.unwrap_or(EmbeddedFormat(state.default_key_format));
    let value_format = request.value_format.unwrap_or(EmbeddedFormat(state.default_value_format));
    let keys_needed = request.records.iter().any(|record| !record.key.is_null());
    let values_needed = request.records.iter().any(|record| !record.value.is_null());
    let (keys, values) = tokio::try_join!(
        FieldEncoder::resolve(key_format, request.key_schema, keys_needed, registry, topic, SchemaRole::Key),
        FieldEncoder::resolve(value_format, request.value_schema, values_needed, registry, topic, SchemaRole::Value),
    )?;
    // The request's trace values (as the trace middleware left them), stamped on every record
    // that does not carry its own.
    let trace = super::trace::record_trace(headers);
    let records = request
        .records
        .into_iter()
        .enumerate()
        .map(|(index, record)| {
            let mut record_headers = record.headers;
            let own = [
                (TRACEABILITY_HEADER, "traceabilityId", record.traceability_id),
                (CORRELATION_HEADER, "correlationId", record.correlation_id),
            ];
            for (name, field, value) in own {
                let Some(value) = value else { continue };
                crate::trace::check_id(&value).map_err(|why| {
                    SidecarError::new(ErrorCode::InvalidRequest, format!("records[{index}].{field}: {why}"))
                })?;
                // Seed 002's field is the record's explicit value: it wins over a header of its name.
                record_headers.retain(|(header, _)| !header.eq_ignore_ascii_case(name));
                record_headers.push((name.to_string(), Bytes::from(value)));
            }
            trace.stamp(&mut record_headers);
            Ok(OutgoingRecord {
                topic: topic.to_string(),
                key: keys.encode(&format!("records[{index}].key"), &record.key)?,
                value: values.encode(&format!("records[{index}].value"), &record.value)?,
                headers: record_headers,
                partition: partition.or(record.partition),
                timestamp_ms: record.timestamp,
                record_id: index as u64,
            })
        })
        .collect::<Result<Vec<_>, SidecarError>>()?;
    state.metrics.request_records.observe(records.len() as f64);
    let offsets = state.producer.send_and_wait(&origin, records).await?;
    Ok(ProduceOutcome { offsets, key_schema_id: keys.schema_id(), value_schema_id: values.schema_id() })
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).filter(|text| !text.is_empty())
}
