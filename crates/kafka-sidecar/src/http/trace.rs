//! Trace propagation on the API router: the outermost middleware builds the request's
//! [`TraceContext`] from its headers, writes the final values back into the request headers (so
//! handlers and other middleware only read headers), runs the request inside a `request` span with
//! `trace_id`, `correlation_id` and `traceability_id` fields, and echoes the ids on the response.
//!
//! The `traceparent` written back is the sidecar's own (the caller's trace id, the sidecar's span
//! id): what produced records carry. Invalid incoming values are replaced or removed; see
//! [`crate::trace`] for the rules.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::config::TraceConfig;
use crate::trace::{
    CORRELATION_ID, RecordTrace, TRACEABILITY_ID, TRACEPARENT, TRACESTATE, TraceContext, read_incoming,
};

/// Middleware for the API router; `config` says which values to generate.
pub async fn propagate(State(config): State<Arc<TraceConfig>>, mut request: Request, next: Next) -> Response {
    let context = read_incoming(request.headers(), |incoming| TraceContext::resolve(incoming, &config));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = context.trace_id().as_deref(),
        correlation_id = context.correlation_id.as_deref(),
        traceability_id = context.traceability_id.as_deref(),
    );
    let context = crate::telemetry::adopt(&span, context);
    let values = [
        (TRACEPARENT, context.traceparent()),
        (TRACESTATE, context.tracestate.clone()),
        (CORRELATION_ID, context.correlation_id.clone()),
        (TRACEABILITY_ID, context.traceability_id.clone()),
    ];
    let values = values.map(|(name, value)| (name, value.and_then(|value| HeaderValue::try_from(value).ok())));
    for (name, value) in &values {
        set(request.headers_mut(), name, value.clone());
    }
    let mut response = next.run(request).instrument(span).await;
    for (name, value) in values {
        if name != TRACESTATE
            && let Some(value) = value
        {
            response.headers_mut().insert(HeaderName::from_static(lower(name)), value);
        }
    }
    response
}

/// The trace header values a handler stamps on each record of its request: the request headers
/// as [`propagate`] left them.
pub fn record_trace(headers: &HeaderMap) -> RecordTrace {
    read_incoming(headers, RecordTrace::from_incoming)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: Option<HeaderValue>) {
    let name = HeaderName::from_static(lower(name));
    match value {
        Some(value) => {
            headers.insert(name, value);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// Header names as `http` wants them (lowercase).
fn lower(name: &'static str) -> &'static str {
    match name {
        CORRELATION_ID => "x-correlation-id",
        TRACEABILITY_ID => "x-traceability-id",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;
    use crate::trace::single_header;

    type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

    /// Keeps every new span's name and fields.
    struct Capture(Spans);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_string(), format!("{value:?}").trim_matches('"').to_string());
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_new_span(&self, attributes: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            attributes.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push((attributes.metadata().name().to_string(), fields));
        }
    }

    /// Generation on for traces and correlation ids (off by default).
    fn generating() -> TraceConfig {
        TraceConfig { generate_traceparent: true, generate_correlation_id: true, ..TraceConfig::default() }
    }

    /// A router whose handler answers with the trace headers it saw.
    fn app() -> Router {
        let seen = |headers: HeaderMap| async move {
            let names = [TRACEPARENT, TRACESTATE, CORRELATION_ID, TRACEABILITY_ID];
            names.map(|name| single_header(&headers, name).unwrap_or("-").to_string()).join(" ")
        };
        Router::new()
            .route("/seen", get(seen))
            .layer(axum::middleware::from_fn_with_state(Arc::new(generating()), propagate))
    }

    async fn call(headers: &[(&str, &str)]) -> (Response, String) {
        let mut request = Request::get("/seen");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (Response::from_parts(parts, Body::empty()), String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn handlers_see_final_values_and_the_span_and_response_carry_them() {
        let spans = Spans::default();
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(Capture(spans.clone())));
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (response, seen) =
            call(&[("traceparent", given), ("tracestate", "a=1"), ("tracestate", "b=2"), ("x-correlation-id", "c-1")])
                .await;
        let seen: Vec<&str> = seen.split(' ').collect();
        let parent = crate::trace::TraceParent::parse(seen[0]).expect("a valid traceparent");
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(seen[0], given, "the sidecar's span is the new parent");
        assert_eq!(seen[1..], ["a=1,b=2", "c-1", "-"]);
        assert_eq!(response.headers()["traceparent"], seen[0]);
        assert_eq!(response.headers()["x-correlation-id"], "c-1");
        assert!(response.headers().get("x-traceability-id").is_none());

        let spans = spans.lock().unwrap().clone();
        let (_, fields) = spans.iter().find(|(name, _)| name == "request").expect("a request span");
        assert_eq!(fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(fields["correlation_id"], "c-1");
        assert_eq!(fields["path"], "/seen");
    }

    #[tokio::test]
    async fn repeated_or_invalid_values_are_replaced_before_the_handler_sees_them() {
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (_, seen) =
            call(&[("traceparent", given), ("traceparent", given), ("tracestate", "a=1"), ("x-correlation-id", "a b")])
                .await;
        let seen: Vec<&str> = seen.split(' ').collect();
        let parent = crate::trace::TraceParent::parse(seen[0]).expect("a new valid traceparent");
        assert_ne!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736", "a repeated traceparent is invalid");
        assert_eq!(seen[1], "-", "no tracestate without its traceparent");
        assert_eq!(seen[2].len(), 36, "a generated correlation id replaces an invalid one");
    }
}
