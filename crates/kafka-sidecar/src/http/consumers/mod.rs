//! The active consumer API (seed 002's OpenAPI and Confluent REST Proxy v2, both spellings):
//! create and delete instances, subscribe or assign, fetch, commit, read committed offsets, seek,
//! and a group's lag. Handlers only translate: the consumer core does the work.

mod bodies;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bodies::{
    CommitRequest, CreateRequest, PartitionsRequest, SeekRequest, SubscriptionRequest, bool_setting, integer_setting,
    parse,
};
pub use bodies::{parse as parse_body, timestamp_ms};

use super::AppState;
use super::audit::AuditDetails;
use super::formats::EmbeddedFormat;
use super::render::{BatchDecoder, RecordFormats, records_json, require_registry};
use super::status::{ApiError, body_bytes};
use crate::config::{EmbeddedFormatName, OffsetReset};
use std::sync::Arc;

use crate::consumer::ConsumedRecord;
use crate::consumer::{
    CommittedOffset, ConsumerInstance, FetchLimits, InstanceSettings, SeekPosition, TopicPartition, lag,
};
use crate::error::{ErrorCode, SidecarError};

type ApiResult = Result<Response, ApiError>;
type InstancePath = Path<(String, String)>;

/// The consumer routes' OpenAPI operations (the aliases are added by `http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    group_lag,
    delete,
    subscribe,
    subscription,
    unsubscribe,
    assign,
    assignments,
    records,
    commit,
    committed,
    seek,
    seek_beginning,
    seek_end
))]
pub(super) struct ApiDoc;

/// The consumer routes; `.../subscription` and `.../subscriptions` (and the other pairs) alike.
pub fn routes() -> Router<AppState> {
    let instance = "/consumers/{group}/instances/{instance}";
    Router::new()
        .route("/consumers/{group}", post(create))
        .route("/consumers/{group}/lag", get(group_lag))
        .route(instance, axum::routing::delete(delete))
        .route(&format!("{instance}/subscription"), post(subscribe).get(subscription).delete(unsubscribe))
        .route(&format!("{instance}/subscriptions"), post(subscribe).get(subscription).delete(unsubscribe))
        .route(&format!("{instance}/assignments"), post(assign).get(assignments))
        .route(&format!("{instance}/records"), get(records))
        .route(&format!("{instance}/offsets"), post(commit).get(committed).put(committed))
        .route(&format!("{instance}/positions"), post(seek))
        .route(&format!("{instance}/positions/beginning"), post(seek_beginning))
        .route(&format!("{instance}/positions/first"), post(seek_beginning))
        .route(&format!("{instance}/positions/end"), post(seek_end))
        .route(&format!("{instance}/positions/last"), post(seek_end))
}

/// A JSON answer; v2 clients that asked for a `vnd.kafka` type get it back.
fn json(status: StatusCode, headers: &HeaderMap, body: &impl Serialize) -> ApiResult {
    let bytes = serde_json::to_vec(body).map_err(|error| internal(&error))?;
    Ok(with_content_type(status, headers, "application/vnd.kafka.v2+json", bytes))
}

fn with_content_type(status: StatusCode, headers: &HeaderMap, vendor_type: &'static str, body: Vec<u8>) -> Response {
    let wants_vendor = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/vnd.kafka") && !accept.contains("application/json"));
    let content_type = if wants_vendor { vendor_type } else { "application/json" };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, "cannot encode a consumer response");
    ApiError(SidecarError::new(ErrorCode::Internal, "cannot encode the response"))
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn instance(state: &AppState, (group, name): &(String, String)) -> Result<std::sync::Arc<ConsumerInstance>, ApiError> {
    Ok(state.consumers.get(group, name)?)
}

/// A created instance, under Confluent v2's names and seed 002's.
#[derive(Serialize, utoipa::ToSchema)]
struct CreateResponse {
    instance_id: String,
    base_uri: String,
    #[serde(rename = "instanceId")]
    instance_id_seed: String,
    #[serde(rename = "baseUri")]
    base_uri_seed: String,
}

#[utoipa::path(
    post,
    path = "/consumers/{group}",
    tag = "consume",
    summary = "Create a consumer instance in a group",
    params(crate::http::openapi::GroupPath),
    request_body(content((Option<CreateRequest> = "application/json"), (Option<CreateRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 200, description = "The instance's name and URI", content((CreateResponse = "application/json"), (CreateResponse = "application/vnd.kafka.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn create(
    State(state): State<AppState>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: CreateRequest = parse(&body_bytes(body)?, "consumer create request")?;
    let settings = settings(&state, group, request)?;
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    let base_uri = format!("http://{host}/consumers/{}/instances/{}", percent_encode(&settings.group), settings.name);
    let name = settings.name.clone();
    state.consumers.create(settings)?;
    let audit =
        AuditDetails::when(state.auditing, || AuditDetails { instance: Some(name.clone()), ..Default::default() });
    let response = CreateResponse {
        instance_id: name.clone(),
        base_uri: base_uri.clone(),
        instance_id_seed: name,
        base_uri_seed: base_uri,
    };
    Ok((audit, json(StatusCode::OK, &headers, &response)?).into_response())
}

fn settings(state: &AppState, group: String, request: CreateRequest) -> Result<InstanceSettings, SidecarError> {
    let config = state.consumers.config();
    let bad = |message: String| SidecarError::new(ErrorCode::InvalidConsumerConfig, message);
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        return Err(bad("the group must be 1-255 printable characters".into()));
    }
    let name = match request.name.or(request.id) {
        Some(name) => name,
        None => format!("rest-consumer-{:016x}", rand::random::<u64>()),
    };
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(bad(format!("instance name {name:?} must be 1-255 of letters, digits, '.', '_' and '-'")));
    }
    let format = match request.format {
        None => EmbeddedFormatName::Binary,
        Some(value) => {
            serde_json::from_value::<EmbeddedFormat>(value).map_err(|error| bad(format!("format: {error}")))?.0
        }
    };
    require_registry(format, state.schemas.as_deref())
        .map_err(|error| SidecarError { code: ErrorCode::InvalidConsumerConfig, ..error })?;
    let auto_offset_reset = match request.auto_offset_reset.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => config.auto_offset_reset,
        Some("earliest" | "smallest") => OffsetReset::Earliest,
        Some("latest" | "largest") => OffsetReset::Latest,
        Some(other) => return Err(bad(format!("auto.offset.reset {other:?} must be earliest or latest"))),
    };
    let fetch_min_bytes = integer_setting("fetch.min.bytes", request.fetch_min_bytes.as_ref())?.unwrap_or(-1);
    let request_timeout_ms = integer_setting("consumer.request.timeout.ms", request.request_timeout_ms.as_ref())?;
    let request_timeout_ms = match request_timeout_ms {
        None => config.request_timeout_ms,
        Some(ms) => u64::try_from(ms)
            .ok()
            .filter(|ms| *ms <= config.max_request_timeout_ms)
            .ok_or_else(|| bad(format!("consumer.request.timeout.ms must be 0..={}", config.max_request_timeout_ms)))?,
    };
    Ok(InstanceSettings {
        group,
        name,
        format,
        auto_offset_reset,
        auto_commit: bool_setting("auto.commit.enable", request.auto_commit_enable.as_ref())?
            .unwrap_or(config.auto_commit_enable),
        fetch_min_bytes: usize::try_from(fetch_min_bytes.clamp(0, config.request_max_bytes as i64)).unwrap_or(0),
        request_timeout_ms,
        group_instance_id: request.group_instance_id.filter(|id| !id.is_empty()),
    })
}

/// Percent-encodes a path segment (group ids may hold any character).
fn percent_encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[utoipa::path(
    delete,
    path = "/consumers/{group}/instances/{instance}",
    tag = "consume",
    summary = "Delete the consumer instance (it commits what it returned when auto-commit is on and leaves the group)",
    params(crate::http::openapi::InstancePath),
    responses((status = 204, description = "Deleted"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn delete(State(state): State<AppState>, Path((group, name)): InstancePath) -> ApiResult {
    state.consumers.delete(&group, &name).await?;
    no_content()
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/subscription",
    tag = "consume",
    summary = "Subscribe to topics or a topic pattern (seed 002 also says subscriptions)",
    params(crate::http::openapi::InstancePath),
    request_body(content((SubscriptionRequest = "application/json"), (SubscriptionRequest = "application/vnd.kafka.v2+json"))),
    responses((status = 204, description = "Subscribed"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn subscribe(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: SubscriptionRequest = parse(&body_bytes(body)?, "subscription")?;
    let subscription = request.into_subscription()?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::subscription(&subscription));
    instance(&state, &path)?.subscribe(subscription).await?;
    Ok((audit, StatusCode::NO_CONTENT).into_response())
}

/// The subscribed topics.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerSubscriptionResponse)]
struct TopicsResponse {
    topics: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/consumers/{group}/instances/{instance}/subscription",
    tag = "consume",
    summary = "The subscribed topics",
    params(crate::http::openapi::InstancePath),
    responses((status = 200, description = "The subscription", content((TopicsResponse = "application/json"), (TopicsResponse = "application/vnd.kafka.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn subscription(State(state): State<AppState>, Path(path): InstancePath, headers: HeaderMap) -> ApiResult {
    let current = instance(&state, &path)?.state().await?;
    json(StatusCode::OK, &headers, &TopicsResponse { topics: current.subscription })
}

#[utoipa::path(
    delete,
    path = "/consumers/{group}/instances/{instance}/subscription",
    tag = "consume",
    summary = "Unsubscribe from every topic",
    params(crate::http::openapi::InstancePath),
    responses((status = 204, description = "Unsubscribed"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn unsubscribe(State(state): State<AppState>, Path(path): InstancePath) -> ApiResult {
    instance(&state, &path)?.unsubscribe().await?;
    no_content()
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/assignments",
    tag = "consume",
    summary = "Assign partitions manually",
    params(crate::http::openapi::InstancePath),
    request_body(content((Option<PartitionsRequest> = "application/json"), (Option<PartitionsRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 204, description = "Assigned"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn assign(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: PartitionsRequest = parse(&body_bytes(body)?, "assignment")?;
    let partitions = request.checked()?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::partitions(partitions.clone()));
    instance(&state, &path)?.assign(partitions).await?;
    Ok((audit, StatusCode::NO_CONTENT).into_response())
}

/// A topic and partition.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AssignedPartition)]
struct PartitionJson {
    topic: String,
    partition: i32,
}

/// The manually assigned partitions.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerAssignmentResponse)]
struct PartitionsResponse {
    partitions: Vec<PartitionJson>,
}

#[utoipa::path(
    get,
    path = "/consumers/{group}/instances/{instance}/assignments",
    tag = "consume",
    summary = "The manually assigned partitions",
    params(crate::http::openapi::InstancePath),
    responses((status = 200, description = "The assignment", content((PartitionsResponse = "application/json"), (PartitionsResponse = "application/vnd.kafka.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn assignments(State(state): State<AppState>, Path(path): InstancePath, headers: HeaderMap) -> ApiResult {
    let current = instance(&state, &path)?.state().await?;
    let partitions = current
        .assignment
        .into_iter()
        .map(|TopicPartition { topic, partition }| PartitionJson { topic, partition })
        .collect();
    json(StatusCode::OK, &headers, &PartitionsResponse { partitions })
}

#[utoipa::path(
    get,
    path = "/consumers/{group}/instances/{instance}/records",
    tag = "consume",
    summary = "Fetch records (long poll up to the timeout)",
    params(crate::http::openapi::InstancePath, crate::http::openapi::RecordsQuery),
    responses((status = 200, description = "Records, keys and values rendered in the format", content((Vec<super::render::RecordJson> = "application/json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.binary.v2+json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.json.v2+json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.string.v2+json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.avro.v2+json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.jsonschema.v2+json"), (Vec<super::render::RecordJson> = "application/vnd.kafka.protobuf.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn records(
    State(state): State<AppState>,
    Path(path): InstancePath,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let instance = instance(&state, &path)?;
    let config = state.consumers.config();
    let format = response_format(&instance, query.get("format"), &headers)?;
    require_registry(format, state.schemas.as_deref())?;
    let number = |name: &str| -> Result<Option<u64>, SidecarError> {
        query
            .get(name)
            .map(|text| {
                text.trim().parse::<u64>().map_err(|_| {
                    SidecarError::new(ErrorCode::InvalidRequest, format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    let max_bytes = number("max_bytes")?.map_or(config.request_max_bytes, |asked| {
        usize::try_from(asked).unwrap_or(usize::MAX).min(config.request_max_bytes)
    });
    let timeout_ms =
        number("timeout")?.unwrap_or(instance.settings.request_timeout_ms).min(config.max_request_timeout_ms);
    let limits =
        FetchLimits { max_bytes, max_records: config.max_poll_records, timeout: Duration::from_millis(timeout_ms) };
    let fetched = instance.fetch(limits).await?;
    let formats = RecordFormats::both(format, state.schemas.clone());
    let (decoder, fetched) = load_schemas_or_restore(&instance, &formats, fetched).await?;
    let body = records_json(fetched.iter(), &decoder).map_err(|error| internal(&error))?;
    let vendor_type = match format {
        EmbeddedFormatName::Json => "application/vnd.kafka.json.v2+json",
        EmbeddedFormatName::String => "application/vnd.kafka.string.v2+json",
        EmbeddedFormatName::Avro => "application/vnd.kafka.avro.v2+json",
        EmbeddedFormatName::Jsonschema => "application/vnd.kafka.jsonschema.v2+json",
        EmbeddedFormatName::Protobuf => "application/vnd.kafka.protobuf.v2+json",
        EmbeddedFormatName::Binary => "application/vnd.kafka.binary.v2+json",
    };
    Ok(with_content_type(StatusCode::OK, &headers, vendor_type, body))
}

/// Records a fetch took but has not handed to the app yet: put back into the instance if the
/// handler is dropped first (the caller disconnected while schemas were loading).
struct Unreturned {
    instance: Arc<ConsumerInstance>,
    records: Option<Vec<ConsumedRecord>>,
}

impl Drop for Unreturned {
    fn drop(&mut self) {
        if let Some(records) = self.records.take() {
            let instance = Arc::clone(&self.instance);
            tokio::spawn(async move {
                if let Err(error) = instance.restore(records).await {
                    tracing::warn!(error = %error, "cannot put undelivered records back");
                }
            });
        }
    }
}

/// Loads the schemas `fetched` needs. When the registry cannot give them (unavailable, or it
/// refuses the sidecar), the records go back into the instance for the next fetch instead of out
/// undecoded, and the caller gets the registry's error with its retry hint.
async fn load_schemas_or_restore(
    instance: &Arc<ConsumerInstance>,
    formats: &RecordFormats,
    fetched: Vec<ConsumedRecord>,
) -> Result<(BatchDecoder, Vec<ConsumedRecord>), SidecarError> {
    let mut pending = Unreturned { instance: Arc::clone(instance), records: Some(fetched) };
    let loaded = formats.load_schemas(&pending.records.iter().flatten().collect::<Vec<_>>()).await;
    let records = pending.records.take().unwrap_or_default();
    match loaded {
        Ok(decoder) => Ok((decoder, records)),
        Err(error) => {
            instance.restore(records).await?;
            Err(error)
        }
    }
}

/// The format records are rendered in: the `format` query parameter (seed 002) or the instance's;
/// an `Accept: application/vnd.kafka.X.v2+json` naming another format is 406 (Confluent v2).
fn response_format(
    instance: &ConsumerInstance,
    asked: Option<&String>,
    headers: &HeaderMap,
) -> Result<EmbeddedFormatName, SidecarError> {
    let mismatch = |what: String| SidecarError::new(ErrorCode::FormatMismatch, what);
    let format = match asked {
        None => instance.settings.format,
        Some(name) => {
            serde_json::from_value::<EmbeddedFormat>(serde_json::Value::String(name.clone()))
                .map_err(|_| SidecarError::new(ErrorCode::InvalidRequest, format!("unknown format {name:?}")))?
                .0
        }
    };
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).unwrap_or("");
    for wanted in accept.split(',').filter_map(|item| item.trim().strip_prefix("application/vnd.kafka.")) {
        let Some(name) = wanted.split(';').next().and_then(|media| media.strip_suffix(".v2+json")) else { continue };
        let named = serde_json::from_value::<EmbeddedFormat>(serde_json::Value::String(name.to_string()));
        if named.is_ok_and(|named| named.0 != format) {
            return Err(mismatch(format!("the instance returns {format:?} records; Accept asks for {name}",)));
        }
    }
    Ok(format)
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/offsets",
    tag = "consume",
    summary = "Commit offsets: the listed ones (last processed + 1 is stored), or everything returned when none are listed",
    params(crate::http::openapi::InstancePath),
    request_body(content((Option<CommitRequest> = "application/json"), (Option<CommitRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 200, description = "Committed"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn commit(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: CommitRequest = parse(&body_bytes(body)?, "offset commit request")?;
    let committed = instance(&state, &path)?.commit(request.checked()?).await?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::committed(&committed));
    Ok((audit, StatusCode::OK).into_response())
}

/// Committed offsets.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerCommittedResponse)]
struct OffsetsResponse {
    offsets: Vec<OffsetJson>,
}

/// A partition's committed offset and metadata.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CommittedOffset)]
struct OffsetJson {
    topic: String,
    partition: i32,
    offset: i64,
    metadata: String,
}

#[utoipa::path(
    method(get, put),
    path = "/consumers/{group}/instances/{instance}/offsets",
    tag = "consume",
    summary = "The last committed offsets of the given partitions (all assigned when none are given); GET is Confluent v2's, PUT seed 002's",
    params(crate::http::openapi::InstancePath),
    request_body(content((Option<PartitionsRequest> = "application/json"), (Option<PartitionsRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 200, description = "Committed offsets", content((OffsetsResponse = "application/json"), (OffsetsResponse = "application/vnd.kafka.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn committed(
    State(state): State<AppState>,
    Path(path): InstancePath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: PartitionsRequest = parse(&body_bytes(body)?, "committed offsets request")?;
    let instance = instance(&state, &path)?;
    let mut partitions = request.checked()?;
    if partitions.is_empty() {
        partitions = instance.state().await?.assignment;
    }
    let offsets = instance
        .committed(partitions)
        .await?
        .into_iter()
        .map(|CommittedOffset { topic, partition, offset, metadata }| OffsetJson { topic, partition, offset, metadata })
        .collect();
    json(StatusCode::OK, &headers, &OffsetsResponse { offsets })
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/positions",
    tag = "consume",
    summary = "Seek partitions to offsets or timestamps",
    params(crate::http::openapi::InstancePath),
    request_body(content((SeekRequest = "application/json"), (SeekRequest = "application/vnd.kafka.v2+json"))),
    responses((status = 204, description = "Sought"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn seek(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: SeekRequest = parse(&body_bytes(body)?, "seek request")?;
    let landed = instance(&state, &path)?.seek(request.checked()?).await?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::sought(&landed, None));
    Ok((audit, StatusCode::NO_CONTENT).into_response())
}

async fn seek_to(state: &AppState, path: &(String, String), body: Bytes, position: SeekPosition) -> ApiResult {
    let request: PartitionsRequest = parse(&body, "seek request")?;
    let instance = instance(state, path)?;
    let mut partitions = request.checked()?;
    if partitions.is_empty() {
        partitions = instance.state().await?.assignment;
    }
    let landed = instance.seek(partitions.into_iter().map(|partition| (partition, position)).collect()).await?;
    let audit = AuditDetails::when(state.auditing, || AuditDetails::sought(&landed, Some(position)));
    Ok((audit, StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/positions/beginning",
    tag = "consume",
    summary = "Seek partitions (all assigned when none are given) to the beginning (seed 002 says positions/first)",
    params(crate::http::openapi::InstancePath),
    request_body(content((Option<PartitionsRequest> = "application/json"), (Option<PartitionsRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 204, description = "Sought"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn seek_beginning(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    seek_to(&state, &path, body_bytes(body)?, SeekPosition::Beginning).await
}

#[utoipa::path(
    post,
    path = "/consumers/{group}/instances/{instance}/positions/end",
    tag = "consume",
    summary = "Seek partitions (all assigned when none are given) to the end (seed 002 says positions/last)",
    params(crate::http::openapi::InstancePath),
    request_body(content((Option<PartitionsRequest> = "application/json"), (Option<PartitionsRequest> = "application/vnd.kafka.v2+json"))),
    responses((status = 204, description = "Sought"), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn seek_end(
    State(state): State<AppState>,
    Path(path): InstancePath,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    seek_to(&state, &path, body_bytes(body)?, SeekPosition::End).await
}

/// A group's lag.
#[derive(Serialize, utoipa::ToSchema)]
struct LagResponse {
    group: String,
    total_lag: i64,
    partitions: Vec<PartitionLagJson>,
}

/// One partition's lag: committed vs log end, and in seconds when known.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PartitionLag)]
struct PartitionLagJson {
    topic: String,
    partition: i32,
    committed_offset: i64,
    log_end_offset: i64,
    lag: i64,
    lag_seconds: Option<f64>,
}

#[utoipa::path(
    get,
    path = "/consumers/{group}/lag",
    tag = "consume",
    summary = "A group's lag on the topics its instances here consume (and any listed)",
    params(crate::http::openapi::GroupPath, crate::http::openapi::LagQuery),
    responses((status = 200, description = "The lag", content((LagResponse = "application/json"), (LagResponse = "application/vnd.kafka.v2+json"))), crate::http::openapi::ConsumerErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
async fn group_lag(
    State(state): State<AppState>,
    Path(group): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let mut topics: BTreeSet<String> = lag::group_topics(&state.consumers, &group).await;
    if let Some(listed) = query.get("topics") {
        for topic in listed.split(',').map(str::trim).filter(|topic| !topic.is_empty()) {
            crate::record::validate_topic_name(topic)?;
            topics.insert(topic.to_string());
        }
    }
    let lags = if topics.is_empty() { Vec::new() } else { lag::group_lag(&state.consumers, &group, topics).await? };
    let partitions: Vec<PartitionLagJson> = lags
        .into_iter()
        .map(|lag| PartitionLagJson {
            topic: lag.topic,
            partition: lag.partition,
            committed_offset: lag.committed,
            log_end_offset: lag.log_end,
            lag: lag.lag,
            lag_seconds: lag.lag_seconds,
        })
        .collect();
    let total_lag = partitions.iter().map(|partition| partition.lag).sum();
    json(StatusCode::OK, &headers, &LagResponse { group, total_lag, partitions })
}
