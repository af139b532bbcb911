//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process is alive), `/readyz`
//! (the producer has cluster metadata, the sidecar is not shutting down and, when enabled, the
//! reactive consumer's backend answers), and the operator routes under `/admin`: build and run
//! facts (`/admin/info`), the effective configuration with secrets redacted (`/admin/config`),
//! the live log filter (`/admin/logging`) and the reactive consumer's operator API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::consumers::parse_body;
use super::status::{ApiError, body_bytes};
use crate::BoundAddresses;
use crate::config::{self, Config, LogFormat};
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::metrics::Metrics;
use crate::reactive::ReactiveConsumer;
use crate::telemetry::{LogControl, LogFilter, LogFilterError};

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// For queue depth at scrape time.
    pub producer: Arc<SharedProducer>,
    /// Set by the readiness loop, cleared at shutdown.
    pub ready: Arc<AtomicBool>,
    /// The reactive consumer, when enabled.
    pub reactive: Option<Arc<ReactiveConsumer>>,
    /// The effective configuration (shown redacted).
    pub config: Arc<Config>,
    /// Facts about this run for `/admin/info`.
    pub run: Arc<RunInfo>,
    /// The live log filter; `None` when this process's logging was not set up by
    /// `telemetry::init` (`/admin/logging` then answers `LOGGING_NOT_RELOADABLE`).
    pub logging: Option<LogControl>,
    /// Token checks for the operator routes, when `auth.enabled`.
    pub authenticator: Option<Arc<crate::auth::Authenticator>>,
    /// The audit log, when `audit.enabled`: operator actions are audited.
    pub audit: Option<crate::audit::AuditLog>,
}

/// Facts about this run, fixed when the sidecar starts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Wall-clock start, as reported.
    pub started_at: SystemTime,
    /// Monotonic start, for uptime.
    pub started: Instant,
    /// The brokers the clients use (the embedded dev broker's address when it runs).
    pub bootstrap_servers: String,
    /// The addresses actually bound.
    pub listeners: BoundAddresses,
}

impl RunInfo {
    /// A run starting now.
    pub fn starting_now(bootstrap_servers: String, listeners: BoundAddresses) -> Self {
        Self { started_at: SystemTime::now(), started: Instant::now(), bootstrap_servers, listeners }
    }
}

/// The admin routes' OpenAPI operations (the reactive ones are in `reactive_admin`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(metrics, healthz, readyz, info, effective_config, logging, set_logging))]
pub(super) struct ApiDoc;

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let require_scope = axum::middleware::from_fn_with_state(state.authenticator.clone(), super::require_admin_scope);
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(super::openapi::serve_admin_document))
        .merge(operator_routes().route_layer(require_scope))
        // Outside the scope check, so refused operator requests are audited too.
        .layer(axum::middleware::from_fn_with_state(state.audit.clone(), super::audit::audit_requests))
        .with_state(state)
}

/// Every `/admin` route: what an operator reads about the sidecar or changes in it. Probes and
/// `/metrics` stay outside; with inbound auth on, [`router`] puts these behind the admin scope.
pub fn operator_routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/info", get(info))
        .route("/admin/config", get(effective_config))
        .route("/admin/logging", get(logging).put(set_logging))
        .merge(super::reactive_admin::routes())
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    summary = "Prometheus metrics",
    responses((status = 200, description = "The text exposition format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let (records, bytes) = state.producer.queue_depth();
    state.metrics.queue_records.set(i64::try_from(records).unwrap_or(i64::MAX));
    state.metrics.queue_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`{\"status\":\"alive\"}`", body = String, content_type = "text/plain")),
)]
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "{\"status\":\"alive\"}")
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    summary = "Readiness: cluster metadata, not shutting down, the reactive backend up when enabled",
    responses(
        (status = 200, description = "Ready", body = crate::http::openapi::Readiness),
        (status = 503, description = "Not ready, and why", body = crate::http::openapi::Readiness),
    ),
)]
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let reactive_ready = state.reactive.as_ref().is_none_or(|reactive| reactive.is_ready());
    let kafka_ready = state.ready.load(Ordering::Acquire);
    if kafka_ready && reactive_ready {
        return (StatusCode::OK, Json(serde_json::json!({"status": "ready", "ready": true})));
    }
    // Why, for a human reading the probe: a refused login or certificate first (kafka.security).
    let reason = match state.producer.broker_status().problem() {
        Some(problem) if !kafka_ready => problem,
        _ if !kafka_ready => {
            "kafka: the producer has no cluster metadata (brokers unreachable, or shutting down)".into()
        }
        _ => "the reactive consumer's backend does not answer".into(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"status": "not ready", "ready": false, "reason": reason})),
    )
}

/// `GET /admin/info`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Info)]
struct InfoBody {
    name: &'static str,
    version: &'static str,
    /// `unknown` when built without git.
    git_commit: &'static str,
    /// When the build script last ran (RFC 3339).
    build_time: String,
    rustc: &'static str,
    started_at: String,
    uptime_seconds: u64,
    config: ConfigSummary,
}

/// What is switched on, without a single secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConfigSummary {
    bootstrap_servers: String,
    dev_broker: bool,
    listeners: BoundAddresses,
    reactive_consumer: bool,
    schema_registry: bool,
    log_format: LogFormat,
}

fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[utoipa::path(
    get,
    path = "/admin/info",
    tag = "admin",
    summary = "Build and run facts: version, git commit, build time, uptime, config summary",
    responses((status = 200, description = "The facts", body = InfoBody), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn info(State(state): State<AdminState>) -> Json<InfoBody> {
    let build_time = env!("BUILD_TIME_UNIX")
        .parse::<i64>()
        .ok()
        .and_then(|seconds| chrono::DateTime::from_timestamp(seconds, 0))
        .map_or_else(|| "unknown".to_string(), rfc3339);
    let (config, run) = (&state.config, &state.run);
    Json(InfoBody {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("BUILD_GIT_COMMIT"),
        build_time,
        rustc: env!("BUILD_RUSTC_VERSION"),
        started_at: rfc3339(run.started_at.into()),
        uptime_seconds: run.started.elapsed().as_secs(),
        config: ConfigSummary {
            bootstrap_servers: run.bootstrap_servers.clone(),
            dev_broker: config.kafka.uses_dev_broker(),
            listeners: run.listeners.clone(),
            reactive_consumer: config.reactive_consumer.enabled,
            schema_registry: config.schema_registry.is_configured(),
            log_format: config.log.format,
        },
    })
}

#[utoipa::path(
    get,
    path = "/admin/config",
    tag = "admin",
    summary = "The effective configuration, secrets redacted",
    responses((status = 200, description = "The configuration tree", body = Object), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn effective_config(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let tree = config::redacted(&state.config).map_err(|error| {
        tracing::error!(error = %error, "cannot render the configuration for /admin/config");
        SidecarError::new(ErrorCode::Internal, "the configuration cannot be rendered")
    })?;
    Ok(Json(tree).into_response())
}

/// `PUT /admin/logging`: a whole `tracing` filter, or a default level plus per-module levels.
/// Either way the filter is replaced, so a `GET` answer edited and sent back means what it says.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoggingRequest {
    filter: Option<String>,
    level: Option<String>,
    modules: Option<BTreeMap<String, String>>,
}

impl LoggingRequest {
    /// The filter string the request asks for.
    fn into_filter(self) -> Result<String, SidecarError> {
        let invalid = |message: String| SidecarError::new(ErrorCode::InvalidRequest, message);
        match (self.filter, self.level, self.modules) {
            (Some(filter), None, None) => Ok(filter),
            (Some(_), _, _) => Err(invalid("give either filter or level (with optional modules), not both".into())),
            (None, Some(level), modules) => LogFilter::compose(&level, &modules.unwrap_or_default()).map_err(invalid),
            (None, None, Some(_)) => {
                Err(invalid("modules need a level too: it applies to every target the modules do not name".into()))
            }
            (None, None, None) => {
                Err(invalid("give a filter, or a level and optional modules: {\"level\": \"info\"}".into()))
            }
        }
    }
}

fn log_control(control: Option<&LogControl>) -> Result<&LogControl, SidecarError> {
    control.ok_or_else(|| {
        SidecarError::new(
            ErrorCode::LoggingNotReloadable,
            "this process's logging was not set up by the sidecar (telemetry::init); its filter cannot be changed",
        )
    })
}

fn filter_error(error: LogFilterError) -> SidecarError {
    match error {
        LogFilterError::Invalid { .. } => SidecarError::new(ErrorCode::InvalidRequest, error.to_string()),
        LogFilterError::Unavailable(_) => {
            tracing::error!(error = %error, "admin: the log filter cannot be reached");
            SidecarError::new(ErrorCode::Internal, "the log filter cannot be reached")
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/logging",
    tag = "admin",
    summary = "The live log filter",
    responses((status = 200, description = "The filter, whole and taken apart", body = LogFilter), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn logging(State(state): State<AdminState>) -> Result<Json<LogFilter>, ApiError> {
    Ok(Json(log_control(state.logging.as_ref())?.current().map_err(filter_error)?))
}

#[utoipa::path(
    put,
    path = "/admin/logging",
    tag = "admin",
    summary = "Replace the live log filter: a whole filter, or a level and per-module levels",
    request_body(content = LoggingRequest, content_type = "application/json"),
    responses((status = 200, description = "The filter now in force", body = LogFilter), crate::http::openapi::AdminErrors),
    security((), ("bearer" = ["kafka:admin"])),
)]
async fn set_logging(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(axum::Extension<super::audit::AuditDetails>, Json<LogFilter>), ApiError> {
    let control = log_control(state.logging.as_ref())?;
    let request: LoggingRequest = parse_body(&body_bytes(body)?, "logging request")?;
    let filter = request.into_filter()?;
    let previous = control.current().map_err(filter_error)?;
    let applied = control.set(&filter).map_err(filter_error)?;
    tracing::info!(who = %who(&headers), from = %previous.filter, to = %applied.filter, "admin: log filter changed");
    let details = super::audit::AuditDetails { detail: Some(applied.filter.clone()), ..Default::default() };
    Ok((axum::Extension(details), Json(applied)))
}

/// Who asked: `X-Client-Id`, else the user agent.
pub(super) fn who(headers: &HeaderMap) -> &str {
    ["x-client-id", "user-agent"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
        .unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> LoggingRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_logging_request_becomes_one_filter() {
        assert_eq!(request(r#"{"filter": "warn,h2=off"}"#).into_filter().unwrap(), "warn,h2=off");
        assert_eq!(
            request(r#"{"level": "info", "modules": {"kafka_sidecar::consumer": "debug"}}"#).into_filter().unwrap(),
            "info,kafka_sidecar::consumer=debug"
        );
        assert_eq!(request(r#"{"level": "WARN"}"#).into_filter().unwrap(), "warn");
        for (body, named) in [
            (r#"{"filter": "info", "level": "info"}"#, "not both"),
            (r#"{"modules": {"a": "debug"}}"#, "need a level"),
            (r#"{"level": "loud"}"#, "loud"),
            (r#"{"level": "info", "modules": {"a": "chatty"}}"#, "chatty"),
            ("{}", "give a filter"),
        ] {
            let error = request(body).into_filter().unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{body}");
            assert!(error.message.contains(named), "{body}: {}", error.message);
        }
        assert!(serde_json::from_str::<LoggingRequest>(r#"{"levels": "info"}"#).is_err());
    }

    #[test]
    fn without_a_log_control_the_answer_says_why() {
        let error = log_control(None).unwrap_err();
        assert_eq!(error.code, ErrorCode::LoggingNotReloadable);
        assert_eq!(error.code.http_status(), 409);
    }
}
