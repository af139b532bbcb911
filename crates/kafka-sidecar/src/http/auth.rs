//! The HTTP face of [`crate::auth`]: finds the bearer token, works out what the route does (and on
//! which topic), and answers 401 or 403 with `WWW-Authenticate` and the usual JSON error body.
//! A verified caller's [`Identity`] goes into the request's extensions and onto its log span, and
//! into the response's extensions (refusals included) for the audit middleware outside.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::status::ApiError;
use crate::auth::{Access, AuthFailure, Authenticator, Identity};

/// What a request on the API listener does: producing to a topic, or consuming (records, consumer
/// instances, topic metadata).
pub fn api_access(method: &Method, path: &str) -> (Access, Option<String>) {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["producers", topic, ..] => (Access::Produce, Some((*topic).to_string())),
        ["topics", topic, ..] if *method == Method::POST => (Access::Produce, Some((*topic).to_string())),
        ["topics", topic, ..] => (Access::Consume, Some((*topic).to_string())),
        _ => (Access::Consume, None),
    }
}

/// Middleware for the API router: every route needs a token with the route's scope.
pub async fn require_api_scope(
    State(authenticator): State<Option<Arc<Authenticator>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(authenticator) = authenticator else { return next.run(request).await };
    let (access, topic) = api_access(request.method(), request.uri().path());
    authorize(&authenticator, access, topic.as_deref(), request, next).await
}

/// Middleware for the admin router: health, readiness and metrics stay open (probes and scrapers
/// carry no tokens); every other route needs the admin scope.
pub async fn require_admin_scope(
    State(authenticator): State<Option<Arc<Authenticator>>>,
    request: Request,
    next: Next,
) -> Response {
    let open = matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics");
    match authenticator {
        Some(authenticator) if !open => authorize(&authenticator, Access::Admin, None, request, next).await,
        _ => next.run(request).await,
    }
}

async fn authorize(
    authenticator: &Authenticator,
    access: Access,
    topic: Option<&str>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    let identity = match authenticator.authenticate(authorization).await {
        Ok(identity) => identity,
        Err(failure) => return refuse(failure),
    };
    if let Err(failure) = authenticator.authorize(&identity, access, topic) {
        tracing::info!(sub = %identity.subject, error = %failure.error.message, "request refused");
        let mut response = refuse(failure);
        // The audit middleware runs outside this one: it reads who was refused from the response.
        response.extensions_mut().insert(identity);
        return response;
    }
    let span = tracing::info_span!("authenticated", sub = %identity.subject, client_id = identity.client_id.as_deref());
    request.extensions_mut().insert::<Identity>(identity.clone());
    let mut response = next.run(request).instrument(span).await;
    response.extensions_mut().insert(identity);
    response
}

fn refuse(failure: AuthFailure) -> Response {
    let mut response = ApiError(failure.error).into_response();
    if let Ok(challenge) = HeaderValue::from_str(&failure.challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_produce_or_consume_with_their_topic() {
        assert_eq!(api_access(&Method::POST, "/producers/orders"), (Access::Produce, Some("orders".into())));
        assert_eq!(api_access(&Method::POST, "/topics/orders/partitions/1"), (Access::Produce, Some("orders".into())));
        assert_eq!(api_access(&Method::GET, "/topics/orders"), (Access::Consume, Some("orders".into())));
        assert_eq!(api_access(&Method::GET, "/topics"), (Access::Consume, None));
        assert_eq!(api_access(&Method::POST, "/consumers/g/instances/i/records"), (Access::Consume, None));
    }
}
