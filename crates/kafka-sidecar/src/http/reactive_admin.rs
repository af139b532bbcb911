//! The reactive consumer's operator API on the admin listener: `GET /admin/reactive`,
//! `POST /admin/reactive/pause|resume|seek` and `POST /admin/dlq/redrive`. Every action is logged
//! with who asked (`X-Client-Id`, else the user agent).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::admin::AdminState;
use super::audit::AuditDetails;
use super::consumers::parse_body;
use super::status::{ApiError, body_bytes};
use crate::consumer::TopicPartition;
use crate::error::{ErrorCode, SidecarError};
use crate::reactive::{HoldRequest, ReactiveConsumer, RedriveRequest, SeekRequest};

/// The reactive operator routes' OpenAPI operations.
#[derive(utoipa::OpenApi)]
#[openapi(paths(state, pause, resume, seek, redrive))]
pub(super) struct ApiDoc;

/// What a pause, resume or seek touched.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct PartitionsTouched {
    partitions: Vec<TouchedPartition>,
}

/// One partition an action touched.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct TouchedPartition {
    topic: String,
    partition: i32,
}

/// The routes, merged into the admin router.
pub fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/reactive", get(state))
        .route("/admin/reactive/pause", post(pause))
        .route("/admin/reactive/resume", post(resume))
        .route("/admin/reactive/seek", post(seek))
        .route("/admin/dlq/redrive", post(redrive))
}

fn reactive(state: &AdminState) -> Result<&ReactiveConsumer, ApiError> {
    state.reactive.as_deref().ok_or_else(|| {
        ApiError(SidecarError::new(
            ErrorCode::NotFound,
            "the reactive consumer is not enabled (reactive_consumer.enabled)",
        ))
    })
}

/// `{"partitions": [{"topic", "partition"}]}`: what an action touched.
fn partitions_json(partitions: Vec<TopicPartition>) -> Response {
    // Operator actions are rare: the audit details go along whether or not audit is on.
    let audit = AuditDetails::partitions(partitions.clone());
    let partitions =
        partitions.into_iter().map(|tp| TouchedPartition { topic: tp.topic, partition: tp.partition }).collect();
    audit.attach(Json(PartitionsTouched { partitions }).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/reactive",
    tag = "admin",
    summary = "The reactive consumer's state (404 when it is not enabled)",
    responses((status = 200, description = "Its state", body = crate::reactive::ReactiveState), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn state(State(state): State<AdminState>) -> Result<Response, ApiError> {
    Ok(Json(reactive(&state)?.state().await?).into_response())
}

async fn hold(state: &AdminState, headers: &HeaderMap, body: Bytes, pause: bool) -> Result<Response, ApiError> {
    let mut request: HoldRequest = parse_body(&body, "pause/resume request")?;
    request.hold = pause;
    let partitions = reactive(state)?.hold(request).await?;
    tracing::info!(who = %super::admin::who(headers), action = if pause { "pause" } else { "resume" },
        partitions = partitions.len(), "admin: reactive consumer");
    Ok(partitions_json(partitions))
}

#[utoipa::path(
    post,
    path = "/admin/reactive/pause",
    tag = "admin",
    summary = "Pause every assigned partition, or some of one topic",
    request_body(content = Option<HoldRequest>, content_type = "application/json"),
    responses((status = 200, description = "The partitions it touched", body = PartitionsTouched), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn pause(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hold(&state, &headers, body_bytes(body)?, true).await
}

#[utoipa::path(
    post,
    path = "/admin/reactive/resume",
    tag = "admin",
    summary = "Resume every assigned partition, or some of one topic",
    request_body(content = Option<HoldRequest>, content_type = "application/json"),
    responses((status = 200, description = "The partitions it touched", body = PartitionsTouched), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn resume(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hold(&state, &headers, body_bytes(body)?, false).await
}

#[utoipa::path(
    post,
    path = "/admin/reactive/seek",
    tag = "admin",
    summary = "Move the reactive consumer to an offset, a time, the beginning or the end",
    request_body(content = SeekRequest, content_type = "application/json"),
    responses((status = 200, description = "The partitions it touched", body = PartitionsTouched), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn seek(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: SeekRequest = parse_body(&body_bytes(body)?, "seek request")?;
    let topic = request.topic.clone();
    let partitions = reactive(&state)?.seek(request).await?;
    tracing::info!(who = %super::admin::who(&headers), action = "seek", topic = %topic, partitions = partitions.len(),
        "admin: reactive consumer");
    Ok(partitions_json(partitions))
}

#[utoipa::path(
    post,
    path = "/admin/dlq/redrive",
    tag = "admin",
    summary = "Re-produce dead letters to their original topics",
    request_body(content = RedriveRequest, content_type = "application/json"),
    responses((status = 200, description = "What was redriven", body = crate::reactive::RedriveReport), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn redrive(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RedriveRequest = parse_body(&body_bytes(body)?, "redrive request")?;
    let topic = request.topic.clone();
    let report = reactive(&state)?.redrive(request).await?;
    tracing::info!(who = %super::admin::who(&headers), action = "redrive", topic = %topic, redriven = report.redriven,
        "admin: dead letters");
    let audit = AuditDetails { topic: Some(topic), records: Some(report.redriven as u64), ..Default::default() };
    Ok(audit.attach(Json(report).into_response()))
}
