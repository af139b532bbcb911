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
use serde_json::json;

use super::admin::AdminState;
use super::consumers::parse_body;
use super::status::{ApiError, body_bytes};
use crate::consumer::TopicPartition;
use crate::error::{ErrorCode, SidecarError};
use crate::reactive::{HoldRequest, ReactiveConsumer, RedriveRequest, SeekRequest};

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
    let listed: Vec<_> =
        partitions.into_iter().map(|tp| json!({"topic": tp.topic, "partition": tp.partition})).collect();
    Json(json!({ "partitions": listed })).into_response()
}

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

async fn pause(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hold(&state, &headers, body_bytes(body)?, true).await
}

async fn resume(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    hold(&state, &headers, body_bytes(body)?, false).await
}

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
    Ok(Json(report).into_response())
}
