//! The HTTP edge: the produce API router (other APIs join it later) and the admin router.

pub mod admin;
mod formats;
mod produce;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

pub use formats::EmbeddedFormat;
pub use produce::{CLIENT_ID_HEADER, CORRELATION_HEADER, TRACEABILITY_HEADER};
pub use status::{ApiError, StatusBody};

use crate::config::{EmbeddedFormatName, HttpConfig};
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::SharedProducer;
use crate::metrics::Metrics;

/// What the API handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The shared producer.
    pub producer: Arc<SharedProducer>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Key format when a request names none.
    pub default_key_format: EmbeddedFormatName,
    /// Value format when a request names none.
    pub default_value_format: EmbeddedFormatName,
}

/// The API router.
pub fn router(config: &HttpConfig, producer: Arc<SharedProducer>, metrics: Arc<Metrics>) -> Router {
    let state = AppState {
        producer,
        metrics,
        default_key_format: config.default_key_format,
        default_value_format: config.default_value_format,
    };
    Router::new()
        .route("/producers/{topic}", post(produce::produce))
        .fallback(|| async { ApiError(SidecarError::new(ErrorCode::NotFound, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            ApiError(SidecarError::new(ErrorCode::InvalidRequest, "method not allowed on this endpoint"))
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}
