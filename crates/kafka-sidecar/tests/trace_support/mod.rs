//! Helpers for the trace propagation tests: a backend for the reactive consumer that keeps each
//! push's request headers and body, and readers of trace headers on records.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;

/// One push as the backend received it.
#[derive(Debug, Clone)]
pub struct ReceivedPush {
    pub headers: HeaderMap,
    pub records: Vec<Value>,
}

/// A backend answering every push 200 (all processed) and keeping what it received.
pub struct HeaderBackend {
    pub address: SocketAddr,
    pub pushes: Arc<Mutex<Vec<ReceivedPush>>>,
}

impl HeaderBackend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let pushes = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/records", post(receive)).with_state(Arc::clone(&pushes));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, pushes }
    }

    pub fn url(&self) -> String {
        format!("http://{}/records", self.address)
    }

    pub fn received(&self) -> Vec<ReceivedPush> {
        self.pushes.lock().unwrap().clone()
    }
}

async fn receive(
    State(pushes): State<Arc<Mutex<Vec<ReceivedPush>>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let records: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array of records");
    pushes.lock().unwrap().push(ReceivedPush { headers, records });
    StatusCode::OK
}

/// A parsed `traceparent`: trace id and parent id, as hex text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

/// Parses a version-00 `traceparent`, checking it is valid (lowercase hex, ids not all zero).
pub fn parse_traceparent(text: &str) -> Parent {
    let parts: Vec<&str> = text.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {text:?}");
    let hex = |part: &str, len: usize| {
        assert_eq!(part.len(), len, "{text:?}");
        assert!(part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{text:?}");
        part.to_string()
    };
    assert_eq!(parts[0], "00", "{text:?}");
    let parent = Parent { trace_id: hex(parts[1], 32), parent_id: hex(parts[2], 16), flags: hex(parts[3], 2) };
    assert_ne!(parent.trace_id, "0".repeat(32), "{text:?}");
    assert_ne!(parent.parent_id, "0".repeat(16), "{text:?}");
    parent
}

/// The values of header `name` on a record read back from Kafka.
pub fn values(headers: &[(String, Vec<u8>)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| String::from_utf8(value.clone()).expect("utf-8 header"))
        .collect()
}

/// The one value of header `name`; panics unless there is exactly one.
pub fn one(headers: &[(String, Vec<u8>)], name: &str) -> String {
    let found = values(headers, name);
    assert_eq!(found.len(), 1, "{name} in {headers:?}");
    found[0].clone()
}

/// A span as an in-process OTLP collector received it.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
    pub service_name: Option<String>,
}

/// An OTLP/HTTP collector on 127.0.0.1:0: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, decoded and kept.
pub struct Collector {
    pub address: SocketAddr,
    pub spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

impl Collector {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route("/v1/traces", post(collect)).with_state(Arc::clone(&spans));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, spans }
    }

    /// The endpoint as an operator configures it (the sidecar adds `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn collect(
    State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use prost::Message;
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/x-protobuf"));
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let text = |value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match value
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans.resource.as_ref().and_then(|resource| {
            resource.attributes.iter().find(|kv| kv.key == "service.name").map(|kv| text(&kv.value))
        });
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ExportedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span.attributes.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect(),
                    service_name: service_name.clone(),
                });
            }
        }
    }
    spans.lock().unwrap().extend(received);
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}
