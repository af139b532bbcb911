//! The HTTP edge: one API router (produce, the active consumer, topic metadata) and the admin
//! router. Trailing slashes are trimmed before routing, so `/topics/` and `/topics` are one route.

pub mod admin;
mod audit;
mod auth;
mod consumers;
mod formats;
pub mod openapi;
mod produce;
mod produce_v2;
mod reactive_admin;
pub mod render;
mod status;
mod topics;
mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower::Layer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

pub use auth::require_admin_scope;
pub use consumers::timestamp_ms as parse_timestamp_ms;
pub use formats::EmbeddedFormat;
pub use produce::{CLIENT_ID_HEADER, CORRELATION_HEADER, TRACEABILITY_HEADER};
pub use status::{ApiError, StatusBody};

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::{EmbeddedFormatName, HttpConfig, TraceConfig};
use crate::consumer::ConsumerManager;
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::metrics::Metrics;
use crate::schema::SchemaRegistry;

/// What the API handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The shared producer.
    pub producer: Arc<SharedProducer>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Active consumer instances.
    pub consumers: Arc<ConsumerManager>,
    /// Key format when a request names none.
    pub default_key_format: EmbeddedFormatName,
    /// Value format when a request names none.
    pub default_value_format: EmbeddedFormatName,
    /// The schema registry, when one is configured.
    pub schemas: Option<Arc<SchemaRegistry>>,
    /// Whether actions are audited: handlers then add [`audit::AuditDetails`] to answers.
    pub auditing: bool,
}

/// What the API router needs besides its handlers' state.
pub struct ApiParts {
    /// The shared producer.
    pub producer: Arc<SharedProducer>,
    /// Active consumer instances.
    pub consumers: Arc<ConsumerManager>,
    /// The schema registry, when one is configured.
    pub schemas: Option<Arc<SchemaRegistry>>,
    /// Token checks, when `auth.enabled`.
    pub authenticator: Option<Arc<Authenticator>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The audit log, when `audit.enabled`.
    pub audit: Option<AuditLog>,
    /// Which trace and correlation ids to generate.
    pub trace: Arc<TraceConfig>,
}

/// The API service: the router behind trailing-slash normalization.
pub fn router(config: &HttpConfig, parts: ApiParts) -> NormalizePath<Router> {
    let ApiParts { producer, consumers, schemas, authenticator, metrics, audit, trace } = parts;
    let state = AppState {
        producer,
        metrics,
        consumers,
        schemas,
        auditing: audit.is_some(),
        default_key_format: config.default_key_format,
        default_value_format: config.default_value_format,
    };
    let router = Router::new()
        .route("/producers/{topic}", post(produce::produce))
        .route("/topics", get(topics::list))
        .route("/topics/{topic}", get(topics::describe).post(produce_v2::produce_to_topic))
        .route("/topics/{topic}/partitions", get(topics::partitions))
        .route("/topics/{topic}/partitions/{partition}", post(produce_v2::produce_to_partition))
        .merge(consumers::routes())
        .fallback(|| async { ApiError(SidecarError::new(ErrorCode::NotFound, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            ApiError(SidecarError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint"))
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(authenticator, auth::require_api_scope))
        // Outside auth: refusals are audited too (auth leaves the identity in the response).
        .layer(axum::middleware::from_fn_with_state(audit, audit::audit_requests))
        // After the auth layer: the contract is open, like the admin listener's probes.
        .route("/openapi.json", get(openapi::serve_api_document))
        // Outermost: every layer and handler inside reads the final trace headers.
        .layer(axum::middleware::from_fn_with_state(trace, trace::propagate))
        .with_state(state);
    NormalizePathLayer::trim_trailing_slash().layer(router)
}
