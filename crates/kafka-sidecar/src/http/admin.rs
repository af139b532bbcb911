//! The admin port: `/metrics` (Prometheus text), `/healthz` (the process is alive), `/readyz`
//! (the producer has cluster metadata, the sidecar is not shutting down and, when enabled, the
//! reactive consumer's backend answers), and the reactive consumer's operator API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::kafka::SharedProducer;
use crate::metrics::Metrics;
use crate::reactive::ReactiveConsumer;

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
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { (StatusCode::OK, "{\"status\":\"alive\"}") }))
        .route("/readyz", get(readyz))
        .merge(super::reactive_admin::routes())
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let (records, bytes) = state.producer.queue_depth();
    state.metrics.queue_records.set(i64::try_from(records).unwrap_or(i64::MAX));
    state.metrics.queue_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.encode())
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let reactive_ready = state.reactive.as_ref().is_none_or(|reactive| reactive.is_ready());
    if state.ready.load(Ordering::Acquire) && reactive_ready {
        (StatusCode::OK, "{\"status\":\"ready\"}")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"not ready\"}")
    }
}
