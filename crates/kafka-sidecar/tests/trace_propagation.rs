//! Trace and correlation propagation against a real tansu broker: W3C `traceparent`/`tracestate`,
//! `X-Correlation-Id` and `X-Traceability-Id` from HTTP headers and gRPC metadata reach every
//! record (read back by an independent client) with the caller's trace id and the sidecar's own
//! span as parent; missing ones are generated, invalid ones replaced; and a produced trace reaches
//! the reactive consumer's backend and the active consumer's records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod support;
mod trace_support;

use std::time::Duration;

use bytes::Bytes;
use consumer_support::RestConsumer;
use futures::StreamExt;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use serde_json::{Value, json};
use support::{ReadRecord, TestSidecar, broker, create_topic, eventually, read_back, test_config, unique};
use trace_support::{HeaderBackend, one, parse_traceparent, values};

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const GIVEN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const OWN: &str = "00-11111111111111111111111111111111-2222222222222222-01";

/// Records in offset order (one partition).
/// A test sidecar that also makes up missing traces and correlation ids (off by default).
fn traced_config() -> kafka_sidecar::Config {
    let mut config = test_config(broker());
    config.trace.generate_traceparent = true;
    config.trace.generate_correlation_id = true;
    config
}

fn in_order(mut records: Vec<ReadRecord>) -> Vec<ReadRecord> {
    records.sort_by_key(|record| record.offset);
    records
}

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_produce_continues_the_callers_trace_and_fills_in_what_is_missing() {
    let topic = unique("trace-http");
    create_topic(broker(), &topic, 1).await;
    let sidecar = TestSidecar::start(traced_config()).await;
    let url = sidecar.http_url(&format!("/producers/{topic}"));

    // 1. Everything given; the second record brings its own trace and correlation id.
    let given = [
        ("traceparent", GIVEN),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("X-Correlation-Id", "corr-http"),
        ("X-Traceability-Id", "order-42"),
    ];
    let body = json!({"records": [
        {"value": "YQ=="},
        {"value": "Yg==", "correlationId": "own-corr", "headers": {"traceparent": OWN}}
    ]});
    let response = post(&url, &given, body).await;
    assert_eq!(response.status(), 200);
    let echoed = parse_traceparent(response.headers()["traceparent"].to_str().unwrap());
    assert_eq!(echoed.trace_id, GIVEN_TRACE);
    assert_ne!(echoed.parent_id, "00f067aa0ba902b7", "the sidecar's own span");
    assert_eq!(response.headers()["x-correlation-id"], "corr-http");
    assert_eq!(response.headers()["x-traceability-id"], "order-42");

    // 2. Confluent v2's route, a trace but no ids: a correlation id is made up.
    let v2 = sidecar.http_url(&format!("/topics/{topic}"));
    let response = post(&v2, &[("traceparent", OTHER)], json!({"records": [{"value": "Yw=="}]})).await;
    assert_eq!(response.status(), 200);

    // 3. Nothing given: a new trace and a correlation id, no traceability id (off by default).
    let response = post(&url, &[], json!({"records": [{"value": "ZA=="}, {"value": "ZQ=="}]})).await;
    assert_eq!(response.status(), 200);
    let generated = parse_traceparent(response.headers()["traceparent"].to_str().unwrap());

    // 4. An invalid traceparent is replaced, never propagated; its tracestate goes with it.
    let invalid = [("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), ("tracestate", "a=1")];
    let response = post(&url, &invalid, json!({"records": [{"value": "Zg=="}]})).await;
    assert_eq!(response.status(), 200);

    // 5. Seed 002's per-record ids are explicit fields: a bad one is refused, naming it.
    let response = post(&url, &[], json!({"records": [{"value": "Zw==", "traceabilityId": "has space"}]})).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], json!("INVALID_REQUEST"), "{error}");
    assert!(error.to_string().contains("records[0].traceabilityId"), "{error}");

    let records = in_order(read_back(broker(), &topic, 6, Duration::from_secs(30)));
    assert_eq!(records.len(), 6);
    let [first, second, third, fourth, fifth, sixth] = records.as_slice() else { unreachable!() };

    let parent = parse_traceparent(&one(&first.headers, "traceparent"));
    assert_eq!((parent.trace_id.as_str(), parent.parent_id.as_str()), (GIVEN_TRACE, echoed.parent_id.as_str()));
    assert_eq!(one(&first.headers, "tracestate"), "congo=t61rcWkgMzE");
    assert_eq!(one(&first.headers, "X-Correlation-Id"), "corr-http");
    assert_eq!(one(&first.headers, "X-Traceability-Id"), "order-42");
    assert_eq!(one(&second.headers, "traceparent"), OWN, "a record's own trace wins");
    assert!(values(&second.headers, "tracestate").is_empty(), "the call's tracestate is not the record's");
    assert_eq!(one(&second.headers, "X-Correlation-Id"), "own-corr");
    assert_eq!(one(&second.headers, "X-Traceability-Id"), "order-42");

    let v2_parent = parse_traceparent(&one(&third.headers, "traceparent"));
    assert_eq!(v2_parent.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(v2_parent.parent_id, "b7ad6b7169203331");
    assert_eq!(v2_parent.flags, "00", "the caller's sampling decision is kept");
    assert_eq!(one(&third.headers, "X-Correlation-Id").len(), 36, "a generated UUID");

    let (fourth_parent, fifth_parent) = (
        parse_traceparent(&one(&fourth.headers, "traceparent")),
        parse_traceparent(&one(&fifth.headers, "traceparent")),
    );
    assert_eq!(fourth_parent, generated, "one request, one sidecar span");
    assert_eq!(fifth_parent, generated);
    assert_eq!(one(&fourth.headers, "X-Correlation-Id"), one(&fifth.headers, "X-Correlation-Id"));
    assert!(values(&fourth.headers, "X-Traceability-Id").is_empty());

    let replaced = parse_traceparent(&one(&sixth.headers, "traceparent"));
    assert_ne!(replaced.trace_id, GIVEN_TRACE, "an invalid traceparent starts a new trace");
    assert!(values(&sixth.headers, "tracestate").is_empty());
    sidecar.stop().await;
}

fn grpc_record(topic: &str, id: u64, headers: Vec<pb::Header>) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        value: Bytes::from(format!("value-{id}")),
        headers,
        record_id: id,
        ..Default::default()
    }
}

fn with_metadata<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().expect("metadata value"));
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_metadata_reaches_every_record_of_emit_batch_emit_and_emit_stream() {
    let topic = unique("trace-grpc");
    create_topic(broker(), &topic, 1).await;
    let sidecar = TestSidecar::start(traced_config()).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let own = vec![
        pb::Header { key: "traceparent".into(), value: Bytes::from_static(OWN.as_bytes()) },
        pb::Header { key: "X-Correlation-Id".into(), value: Bytes::from_static(b"bad id with spaces") },
    ];
    let batch = pb::ProduceBatch {
        batch_id: 1,
        records: vec![grpc_record(&topic, 1, Vec::new()), grpc_record(&topic, 2, own)],
        ..Default::default()
    };
    let metadata = [("traceparent", GIVEN), ("x-correlation-id", "corr-grpc"), ("x-traceability-id", "order-7")];
    let response = client.emit_batch(with_metadata(batch, &metadata)).await.expect("emit_batch");
    let echoed = parse_traceparent(response.metadata().get("traceparent").unwrap().to_str().unwrap());
    assert_eq!(echoed.trace_id, GIVEN_TRACE);
    assert_eq!(response.into_inner().accepted, 2);

    let ack = client.emit(grpc_record(&topic, 3, Vec::new())).await.expect("emit");
    assert!(ack.metadata().get("traceparent").is_some(), "a generated trace is echoed");

    let stream_metadata = [("traceparent", "00-not-a-trace"), ("x-correlation-id", "corr-stream")];
    let batches = futures::stream::iter([pb::ProduceBatch {
        batch_id: 2,
        records: vec![grpc_record(&topic, 4, Vec::new())],
        ..Default::default()
    }]);
    let mut acks =
        client.emit_stream(with_metadata(batches, &stream_metadata)).await.expect("emit_stream").into_inner();
    assert_eq!(acks.next().await.expect("an ack").expect("ok").accepted, 1);

    let records = in_order(read_back(broker(), &topic, 4, Duration::from_secs(30)));
    assert_eq!(records.len(), 4);
    let parent = parse_traceparent(&one(&records[0].headers, "traceparent"));
    assert_eq!(parent.trace_id, GIVEN_TRACE);
    assert_eq!(parent.parent_id, echoed.parent_id, "the sidecar's span is the parent");
    assert_ne!(parent.parent_id, "00f067aa0ba902b7");
    assert_eq!(one(&records[0].headers, "X-Correlation-Id"), "corr-grpc");
    assert_eq!(one(&records[0].headers, "X-Traceability-Id"), "order-7");
    assert_eq!(one(&records[1].headers, "traceparent"), OWN, "a record's own trace wins");
    assert_eq!(one(&records[1].headers, "X-Correlation-Id"), "corr-grpc", "an invalid own id is replaced");

    let generated = parse_traceparent(&one(&records[2].headers, "traceparent"));
    assert_ne!(generated.trace_id, GIVEN_TRACE);
    assert_eq!(one(&records[2].headers, "X-Correlation-Id").len(), 36);
    assert!(values(&records[2].headers, "X-Traceability-Id").is_empty());

    let replaced = parse_traceparent(&one(&records[3].headers, "traceparent"));
    assert_ne!(replaced.trace_id, generated.trace_id);
    assert_eq!(one(&records[3].headers, "X-Correlation-Id"), "corr-stream");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_produced_trace_reaches_the_reactive_backend_and_the_active_consumer() {
    let bootstrap = broker();
    let (topic, group) = (unique("trace-consume"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    let backend = HeaderBackend::start().await;
    let config = consumer_support::reactive_config(bootstrap, &topic, &group, &backend.url(), 3);
    let sidecar = TestSidecar::start(config).await;

    let given = [("traceparent", GIVEN), ("tracestate", "congo=t61rcWkgMzE"), ("X-Correlation-Id", "corr-e2e")];
    let url = sidecar.http_url(&format!("/producers/{topic}"));
    let response = post(&url, &given, json!({"records": [{"value": "YQ=="}]})).await;
    assert_eq!(response.status(), 200);
    let sidecar_span = parse_traceparent(response.headers()["traceparent"].to_str().unwrap());

    eventually(Duration::from_secs(60), "a push to the backend", async || !backend.received().is_empty()).await;
    let push = backend.received().remove(0);
    let header = |name: &str| push.headers.get(name).map(|value| value.to_str().unwrap().to_string());
    let pushed = parse_traceparent(&header("traceparent").expect("traceparent on the push"));
    assert_eq!(pushed, sidecar_span, "the record's traceparent: the caller's trace, the producing sidecar's span");
    assert_eq!(header("tracestate").as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(header("x-correlation-id").as_deref(), Some("corr-e2e"));
    assert_eq!(push.records[0]["headers"]["traceparent"], json!(sidecar_span_text(&sidecar_span)));

    let consumer = RestConsumer::create(
        &sidecar,
        &unique("active"),
        json!({"format": "string", "auto.offset.reset": "earliest", "auto.commit.enable": "false"}),
    )
    .await;
    consumer.assign(&topic, 0..1).await;
    let fetched = consumer.fetch_until(1, Duration::from_secs(30)).await;
    assert_eq!(fetched.len(), 1);
    let headers = &fetched[0]["headers"];
    assert_eq!(parse_traceparent(headers["traceparent"].as_str().expect("traceparent")).trace_id, GIVEN_TRACE);
    assert_eq!(headers["X-Correlation-Id"], json!("corr-e2e"));
    assert_eq!(headers["tracestate"], json!("congo=t61rcWkgMzE"));
    consumer.delete().await;
    sidecar.stop().await;
}

fn sidecar_span_text(parent: &trace_support::Parent) -> String {
    format!("00-{}-{}-{}", parent.trace_id, parent.parent_id, parent.flags)
}

/// Installs the process's subscriber (once per test binary: only this test does), so it must be
/// the only test here that needs the global subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_over_otlp_as_part_of_the_callers_trace() {
    use kafka_sidecar::config::{LogConfig, LogFormat, OtlpConfig};
    use kafka_sidecar::telemetry;

    let collector = trace_support::Collector::start().await;
    let otlp = OtlpConfig {
        endpoint: collector.endpoint(),
        service_name: "sidecar-under-test".into(),
        ..OtlpConfig::default()
    };
    let export = telemetry::SpanExport::start(&otlp).expect("exporter").expect("export on");
    // Request spans only: the other tests of this binary stay quiet on stderr.
    let log = LogConfig {
        level: "off,kafka_sidecar::http::trace=info,kafka_sidecar::grpc=info".into(),
        format: LogFormat::Text,
    };
    assert!(telemetry::init_with_export(&log, Some(export)).is_some(), "this test installs the subscriber");

    let topic = unique("trace-otlp");
    create_topic(broker(), &topic, 1).await;
    let sidecar = TestSidecar::start(traced_config()).await;
    let given = [("traceparent", GIVEN), ("X-Correlation-Id", "corr-otlp")];
    let response =
        post(&sidecar.http_url(&format!("/producers/{topic}")), &given, json!({"records": [{"value": "YQ=="}]})).await;
    assert_eq!(response.status(), 200);
    let sidecar_span = parse_traceparent(response.headers()["traceparent"].to_str().unwrap());

    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let batch =
        pb::ProduceBatch { batch_id: 1, records: vec![grpc_record(&topic, 1, Vec::new())], ..Default::default() };
    let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let grpc = client.emit_batch(with_metadata(batch, &[("traceparent", sampled)])).await.expect("emit_batch");
    let grpc_span = parse_traceparent(grpc.metadata().get("traceparent").unwrap().to_str().unwrap());
    // The caller's sampling decision holds: an unsampled call's span is not exported.
    let batch =
        pb::ProduceBatch { batch_id: 2, records: vec![grpc_record(&topic, 2, Vec::new())], ..Default::default() };
    let unsampled = client.emit_batch(with_metadata(batch, &[("traceparent", OTHER)])).await.expect("emit_batch");
    let unsampled = parse_traceparent(unsampled.metadata().get("traceparent").unwrap().to_str().unwrap());

    eventually(Duration::from_secs(30), "both spans at the collector", async || {
        tokio::task::spawn_blocking(telemetry::flush_spans).await.unwrap();
        let spans = collector.spans();
        [&sidecar_span, &grpc_span].iter().all(|wanted| spans.iter().any(|span| span.span_id == wanted.parent_id))
    })
    .await;
    let spans = collector.spans();
    let request = spans.iter().find(|span| span.span_id == sidecar_span.parent_id).expect("the request span");
    assert_eq!(request.name, "request");
    assert_eq!(request.trace_id, GIVEN_TRACE, "the caller's trace");
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7", "the caller's span is the parent");
    assert_eq!(request.service_name.as_deref(), Some("sidecar-under-test"));
    assert!(request.attributes.contains(&("correlation_id".into(), "corr-otlp".into())), "{:?}", request.attributes);
    let emit = spans.iter().find(|span| span.span_id == grpc_span.parent_id).expect("the gRPC span");
    assert_eq!((emit.name.as_str(), emit.trace_id.as_str()), ("grpc", "0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(emit.parent_span_id, "b7ad6b7169203331");
    assert!(!spans.iter().any(|span| span.span_id == unsampled.parent_id), "unsampled spans stay home");

    let records = in_order(read_back(broker(), &topic, 3, Duration::from_secs(30)));
    let parents: Vec<_> =
        records.iter().map(|record| parse_traceparent(&one(&record.headers, "traceparent"))).collect();
    assert_eq!(parents, [sidecar_span, grpc_span, unsampled], "records name the exported spans");
    sidecar.stop().await;
}
