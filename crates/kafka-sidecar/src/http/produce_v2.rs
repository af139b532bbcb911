//! Confluent REST Proxy v2's produce paths, `POST /topics/{topic}` and
//! `POST /topics/{topic}/partitions/{partition}`, on the same produce core as `/producers/{topic}`:
//! the embedded format comes from the content type (`application/vnd.kafka.avro.v2+json` and its
//! binary, json, jsonschema and protobuf twins; plain JSON means binary, v2's default), schemas
//! from `key_schema`/`key_schema_id` and their value twins, and the answer is v2's shape.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::audit::{AuditDetails, Audited};
use super::formats::EmbeddedFormat;
use super::produce::{JsonProduce, JsonRecord, origin, produce_json};
use super::status::{ApiError, body_bytes, parse_json};
use crate::config::EmbeddedFormatName;
use crate::error::{ErrorCode, SidecarError};
use crate::schema::{SchemaRole, SchemaSelection};

/// Confluent v2's produce request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ProduceRequestV2 {
    key_schema: Option<String>,
    key_schema_id: Option<i64>,
    value_schema: Option<String>,
    value_schema_id: Option<i64>,
    records: Vec<RecordV2>,
}

/// One v2 record: key and value in the content type's format; `null` or absent means none.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecordV2 {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    partition: Option<i32>,
}

/// v2's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProduceResponseV2 {
    key_schema_id: Option<u32>,
    value_schema_id: Option<u32>,
    offsets: Vec<OffsetV2>,
}

/// One record's outcome; `error_code` is Confluent's numeric code.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct OffsetV2 {
    partition: Option<i32>,
    offset: Option<i64>,
    error_code: Option<u32>,
    error: Option<String>,
}

/// Handles `POST /topics/{topic}`.
#[utoipa::path(
    post,
    path = "/topics/{topic}",
    tag = "produce",
    summary = "Produce records to a topic (Confluent REST Proxy v2)",
    params(crate::http::openapi::TopicPath),
    request_body(
        description = "Records; the content type names the embedded format (plain JSON means binary)",
        content(
            (ProduceRequestV2 = "application/vnd.kafka.binary.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.json.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.string.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.avro.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.jsonschema.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.protobuf.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.v2+json"),
            (ProduceRequestV2 = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Each record's partition and offset, or its error", body = ProduceResponseV2),
        crate::http::openapi::ProduceErrors,
    ),
    security((), ("bearer" = ["kafka:w"])),
)]
pub async fn produce_to_topic(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Audited, Json<ProduceResponseV2>), ApiError> {
    produce_v2(&state, &topic, None, peer, &headers, body).await
}

/// Handles `POST /topics/{topic}/partitions/{partition}`.
#[utoipa::path(
    post,
    path = "/topics/{topic}/partitions/{partition}",
    tag = "produce",
    summary = "Produce records to one partition (Confluent REST Proxy v2)",
    params(crate::http::openapi::TopicPartitionPath),
    request_body(
        description = "Records; the content type names the embedded format (plain JSON means binary)",
        content(
            (ProduceRequestV2 = "application/vnd.kafka.binary.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.json.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.string.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.avro.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.jsonschema.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.protobuf.v2+json"),
            (ProduceRequestV2 = "application/vnd.kafka.v2+json"),
            (ProduceRequestV2 = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Each record's partition and offset, or its error", body = ProduceResponseV2),
        crate::http::openapi::ProduceErrors,
    ),
    security((), ("bearer" = ["kafka:w"])),
)]
pub async fn produce_to_partition(
    State(state): State<AppState>,
    Path((topic, partition)): Path<(String, String)>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Audited, Json<ProduceResponseV2>), ApiError> {
    let partition = partition.parse::<i32>().ok().filter(|partition| *partition >= 0).ok_or_else(|| {
        SidecarError::new(ErrorCode::InvalidPartition, format!("partition {partition:?} is not a number"))
    })?;
    produce_v2(&state, &topic, Some(partition), peer, &headers, body).await
}

async fn produce_v2(
    state: &AppState,
    topic: &str,
    partition: Option<i32>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Audited, Json<ProduceResponseV2>), ApiError> {
    let origin = origin(state, "http_produce_v2", headers, peer);
    let format = EmbeddedFormat(embedded_format(headers)?);
    let body = body_bytes(body)?;
    let request: ProduceRequestV2 = parse_json(&body, "produce request")?;
    require_schemas(format.0, &request)?;
    let request = JsonProduce {
        key_format: Some(format),
        value_format: Some(format),
        key_schema: SchemaSelection::from_fields(
            SchemaRole::Key,
            request.key_schema,
            request.key_schema_id,
            None,
            None,
        )?,
        value_schema: SchemaSelection::from_fields(
            SchemaRole::Value,
            request.value_schema,
            request.value_schema_id,
            None,
            None,
        )?,
        records: request
            .records
            .into_iter()
            .map(|record| JsonRecord {
                key: record.key,
                value: record.value,
                headers: Vec::new(),
                partition: record.partition,
                timestamp: None,
                traceability_id: None,
                correlation_id: None,
            })
            .collect(),
    };
    let outcome = produce_json(state, topic, partition, origin, headers, request).await?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::produced(topic, &outcome.offsets));
    let offsets = outcome
        .offsets
        .into_iter()
        .map(|outcome| match outcome {
            Ok(delivered) => OffsetV2 {
                partition: Some(delivered.partition),
                offset: Some(delivered.offset),
                error_code: None,
                error: None,
            },
            Err(error) => OffsetV2 {
                partition: None,
                offset: None,
                error_code: Some(error.code.confluent_code()),
                error: Some(error.message),
            },
        })
        .collect();
    let response =
        ProduceResponseV2 { key_schema_id: outcome.key_schema_id, value_schema_id: outcome.value_schema_id, offsets };
    Ok((audit, Json(response)))
}

/// Refuses a schema-format request whose records have keys (values) but that names no key (value)
/// schema, with v2's 42201 (42202): the sidecar does not guess the latest of the subject for a
/// v2 client, which would encode with a schema the client never chose.
fn require_schemas(format: EmbeddedFormatName, request: &ProduceRequestV2) -> Result<(), SidecarError> {
    if crate::schema::SchemaKind::of_format(format).is_none() {
        return Ok(());
    }
    let some = |pick: fn(&RecordV2) -> &Value| request.records.iter().any(|record| !pick(record).is_null());
    if request.key_schema.is_none() && request.key_schema_id.is_none() && some(|record| &record.key) {
        return Err(SidecarError::new(
            ErrorCode::KeySchemaMissing,
            "Request includes keys but does not include key schema (key_schema or key_schema_id)",
        ));
    }
    if request.value_schema.is_none() && request.value_schema_id.is_none() && some(|record| &record.value) {
        return Err(SidecarError::new(
            ErrorCode::ValueSchemaMissing,
            "Request includes values but does not include value schema (value_schema or value_schema_id)",
        ));
    }
    Ok(())
}

/// The embedded format a v2 content type names; plain JSON (or none) is binary, v2's default.
fn embedded_format(headers: &HeaderMap) -> Result<EmbeddedFormatName, SidecarError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match media_type.as_str() {
        "" | "application/json" | "application/vnd.kafka.v2+json" | "application/vnd.kafka.binary.v2+json" => {
            EmbeddedFormatName::Binary
        }
        "application/vnd.kafka.json.v2+json" => EmbeddedFormatName::Json,
        "application/vnd.kafka.avro.v2+json" => EmbeddedFormatName::Avro,
        "application/vnd.kafka.jsonschema.v2+json" => EmbeddedFormatName::Jsonschema,
        "application/vnd.kafka.protobuf.v2+json" => EmbeddedFormatName::Protobuf,
        "application/vnd.kafka.string.v2+json" => EmbeddedFormatName::String,
        other => {
            return Err(SidecarError::new(
                ErrorCode::UnsupportedFormat,
                format!("content type {other:?} names no embedded format; use application/vnd.kafka.<format>.v2+json"),
            ));
        }
    };
    Ok(format)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn format_of(content_type: &str) -> Result<EmbeddedFormatName, SidecarError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).expect("header"));
        embedded_format(&headers)
    }

    #[test]
    fn content_types_name_the_embedded_format() {
        assert_eq!(format_of("application/vnd.kafka.avro.v2+json"), Ok(EmbeddedFormatName::Avro));
        assert_eq!(
            format_of("application/vnd.kafka.protobuf.v2+json; charset=utf-8"),
            Ok(EmbeddedFormatName::Protobuf)
        );
        assert_eq!(format_of("application/vnd.kafka.jsonschema.v2+json"), Ok(EmbeddedFormatName::Jsonschema));
        assert_eq!(format_of("application/json"), Ok(EmbeddedFormatName::Binary));
        assert_eq!(format_of("text/xml").expect_err("xml").code, ErrorCode::UnsupportedFormat);
    }
}
