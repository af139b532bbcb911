//! The audit topic against a real tansu broker: every audited action (HTTP produce, gRPC
//! EmitBatch, consumer instance actions, an admin change, a refused request) leaves one JSON
//! record that an independent Kafka consumer reads back, with who, what, where, how it went and
//! the trace id sent in `traceparent`; and a full audit queue drops and counts records while the
//! audited requests still succeed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_support;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_sidecar::Config;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, eventually, read_back, unique};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-audit-secret";

fn audited_config(bootstrap: &str, audit_topic: &str) -> Config {
    let mut config = support::test_config(bootstrap);
    config.audit.enabled = true;
    config.audit.topic = audit_topic.to_string();
    config.consumer.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.properties.insert("heartbeat.interval.ms".into(), "500".into());
    config
}

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

fn new_trace_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>() | 1, rand::random::<u64>())
}

/// One HTTP call with a bearer token and a trace; returns the status and the JSON body.
async fn call(url: String, method: Method, bearer: &str, trace_id: &str, body: Option<Value>) -> (u16, Value) {
    let mut request =
        reqwest::Client::new().request(method, url).bearer_auth(bearer).header("traceparent", traceparent(trace_id));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A counter's value in the Prometheus text, 0 when absent.
async fn metric(sidecar: &TestSidecar, series: &str) -> u64 {
    let text = reqwest::get(sidecar.admin_url("/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse::<f64>().ok()))
        .map_or(0, |value| value as u64)
}

/// The audit records on `topic`, read by an independent consumer, by action (in order).
fn audit_records(topic: &str, count: usize) -> HashMap<String, Vec<(Option<String>, Value)>> {
    let records = read_back(broker(), topic, count, Duration::from_secs(30));
    assert_eq!(records.len(), count, "audit records read back from {topic}");
    let mut by_action: HashMap<String, Vec<(Option<String>, Value)>> = HashMap::new();
    for record in records {
        let value: Value = serde_json::from_slice(&record.value.expect("a value")).expect("JSON audit record");
        let key = record.key.map(|key| String::from_utf8(key).expect("utf-8 key"));
        by_action.entry(value["action"].as_str().expect("action").to_string()).or_default().push((key, value));
    }
    by_action
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_action_leaves_one_record_with_identity_outcome_and_trace() {
    let bootstrap = broker();
    let (topic, audit_topic) = (unique("audited"), unique("audit"));
    create_topic(bootstrap, &topic, 2).await;
    let mut config = audited_config(bootstrap, &audit_topic);
    config.auth.enabled = true;
    config.auth.hs256_secret = Some(String::from_utf8(SECRET.to_vec()).expect("utf-8").into());
    config.auth.issuer = Some("https://issuer.test".into());
    config.auth.audience = Some("kafka-sidecar".into());
    let sidecar = TestSidecar::start(config).await;
    let token = auth_support::hs256_token(SECRET, &auth_support::claims("kafka:w kafka:r kafka:admin"));
    let reader = auth_support::hs256_token(SECRET, &auth_support::claims("kafka:r"));
    let traces: Vec<String> = (0..8).map(|_| new_trace_id()).collect();

    // HTTP produce: three records.
    let records = json!({"records": [{"value": "YQ=="}, {"value": "Yg=="}, {"value": "Yw=="}]});
    let produce = sidecar.http_url(&format!("/producers/{topic}"));
    let (status, body) = call(produce.clone(), Method::POST, &token, &traces[0], Some(records.clone())).await;
    assert_eq!(status, 200, "{body}");

    // gRPC EmitBatch: four records.
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let batch = pb::ProduceBatch {
        client_id: "grpc-worker".into(),
        records: (0..4u64)
            .map(|id| pb::ProduceRequest {
                topic: topic.clone(),
                value: Bytes::from(format!("v{id}")),
                record_id: id,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut request = tonic::Request::new(batch);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    request.metadata_mut().insert("traceparent", traceparent(&traces[1]).parse().expect("metadata"));
    let ack = client.emit_batch(request).await.expect("emit batch").into_inner();
    assert_eq!(ack.accepted, 4);

    // Consumer instances: one subscribes, one assigns, commits and seeks; both are deleted.
    let group = unique("group");
    let create = |name: &str| json!({"name": name, "format": "binary", "auto.commit.enable": "false"});
    let consumers = sidecar.http_url(&format!("/consumers/{group}"));
    let instance = |name: &str, path: &str| format!("{consumers}/instances/{name}{path}");
    let (status, body) = call(consumers.clone(), Method::POST, &token, &traces[2], Some(create("subscriber"))).await;
    assert_eq!(status, 200, "{body}");
    let subscription = json!({"topics": [topic]});
    let (status, body) =
        call(instance("subscriber", "/subscription"), Method::POST, &token, &traces[2], Some(subscription)).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(call(instance("subscriber", ""), Method::DELETE, &token, &traces[2], None).await.0, 204);
    let (status, body) = call(consumers.clone(), Method::POST, &token, &traces[3], Some(create("assigned"))).await;
    assert_eq!(status, 200, "{body}");
    let partition0 = json!({"partitions": [{"topic": topic, "partition": 0}]});
    let (status, body) =
        call(instance("assigned", "/assignments"), Method::POST, &token, &traces[3], Some(partition0.clone())).await;
    assert_eq!(status, 204, "{body}");
    let commit = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 1}]});
    let (status, body) = call(instance("assigned", "/offsets"), Method::POST, &token, &traces[3], Some(commit)).await;
    assert_eq!(status, 200, "{body}");
    let seek = instance("assigned", "/positions/beginning");
    let (status, body) = call(seek, Method::POST, &token, &traces[3], Some(partition0)).await;
    assert_eq!(status, 204, "{body}");
    // A read is not audited by default.
    let (status, _) = call(instance("assigned", "/records"), Method::GET, &token, &traces[3], None).await;
    assert_eq!(status, 200);
    assert_eq!(call(instance("assigned", ""), Method::DELETE, &token, &traces[3], None).await.0, 204);

    // An admin change (this process's logging is not the sidecar's, so it is refused with 409).
    let logging = sidecar.admin_url("/admin/logging");
    let (status, body) = call(logging, Method::PUT, &token, &traces[4], Some(json!({"level": "debug"}))).await;
    assert_eq!((status, body["code"].clone()), (409, json!("LOGGING_NOT_RELOADABLE")), "{body}");

    // An operator action on the reactive consumer (not enabled here: 404, audited all the same).
    let pause = sidecar.admin_url("/admin/reactive/pause");
    assert_eq!(call(pause, Method::POST, &token, &traces[6], Some(json!({}))).await.0, 404);

    // Refused requests: a reader may not produce; a gRPC call without a token.
    let (status, _) = call(produce, Method::POST, &reader, &traces[5], Some(records)).await;
    assert_eq!(status, 403);
    let mut request = tonic::Request::new(pb::ProduceBatch::default());
    request.metadata_mut().insert("traceparent", traceparent(&traces[7]).parse().expect("metadata"));
    let refused = client.emit_batch(request).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let by_action = audit_records(&audit_topic, 14);
    let one = |action: &str| -> (Option<String>, Value) {
        let found = by_action.get(action).unwrap_or_else(|| panic!("no {action} record: {by_action:?}"));
        found[0].clone()
    };
    let who = json!({"sub": "worker-7", "client_id": "orders-api"});
    let identity =
        |record: &Value| json!({"sub": record["identity"]["sub"], "client_id": record["identity"]["client_id"]});

    let produced = &by_action["produce"];
    assert_eq!(produced.len(), 4, "HTTP, gRPC and the refused produces: {produced:?}");
    let (key, http) = produced.iter().find(|(_, record)| record["trace_id"] == json!(traces[0])).expect("HTTP");
    assert_eq!(key.as_deref(), Some("worker-7"), "keyed by the subject");
    assert_eq!((http["transport"].clone(), identity(http)), (json!("http"), who.clone()), "{http}");
    assert_eq!(
        (http["topic"].clone(), http["records"].clone(), http["failed"].clone()),
        (json!(topic), json!(3), json!(0))
    );
    assert_eq!((http["outcome"].clone(), http["status"].clone()), (json!("ok"), json!(200)));
    assert!(!http["partitions"].as_array().expect("partitions").is_empty(), "{http}");
    assert!(http["time"].as_str().expect("time").ends_with('Z') && http["identity"]["peer"].is_string(), "{http}");
    let (_, grpc) = produced.iter().find(|(_, record)| record["trace_id"] == json!(traces[1])).expect("gRPC");
    assert_eq!((grpc["transport"].clone(), identity(grpc)), (json!("grpc"), who.clone()), "{grpc}");
    assert_eq!(
        (grpc["topic"].clone(), grpc["records"].clone(), grpc["outcome"].clone()),
        (json!(topic), json!(4), json!("ok"))
    );
    let (_, refused) = produced.iter().find(|(_, record)| record["trace_id"] == json!(traces[5])).expect("refused");
    assert_eq!((refused["outcome"].clone(), refused["status"].clone()), (json!("FORBIDDEN"), json!(403)));
    assert_eq!(identity(refused), who, "the refused caller is named");
    let (_, anonymous) = produced.iter().find(|(_, record)| record["trace_id"] == json!(traces[7])).expect("no token");
    assert_eq!(
        (anonymous["transport"].clone(), anonymous["outcome"].clone()),
        (json!("grpc"), json!("UNAUTHENTICATED"))
    );
    let (_, paused) = one("reactive.pause");
    assert_eq!((paused["outcome"].clone(), paused["status"].clone()), (json!("NOT_FOUND"), json!(404)));
    assert_eq!((paused["trace_id"].clone(), identity(&paused)), (json!(traces[6]), who.clone()));

    let creates = &by_action["consumer.create"];
    assert_eq!(creates.len(), 2);
    assert!(creates.iter().all(|(_, record)| record["group"] == json!(group) && record["outcome"] == json!("ok")));
    let (_, subscribed) = one("consumer.subscribe");
    assert_eq!((subscribed["instance"].clone(), subscribed["topics"].clone()), (json!("subscriber"), json!([topic])));
    assert_eq!((subscribed["trace_id"].clone(), identity(&subscribed)), (json!(traces[2]), who.clone()));
    let (_, assigned) = one("consumer.assign");
    assert_eq!(assigned["partitions"], json!([{"topic": topic, "partition": 0}]));
    let (_, committed) = one("consumer.commit");
    assert_eq!(committed["partitions"], json!([{"topic": topic, "partition": 0, "offset": 2}]), "{committed}");
    assert_eq!((committed["instance"].clone(), committed["trace_id"].clone()), (json!("assigned"), json!(traces[3])));
    let (_, sought) = one("consumer.seek");
    assert_eq!(
        (sought["detail"].clone(), sought["partitions"][0]["partition"].clone()),
        (json!("beginning"), json!(0))
    );
    assert_eq!(by_action["consumer.delete"].len(), 2);
    assert!(!by_action.contains_key("consumer.fetch"), "reads are not audited by default");
    let (_, admin) = one("admin.logging");
    assert_eq!((admin["outcome"].clone(), admin["status"].clone()), (json!("LOGGING_NOT_RELOADABLE"), json!(409)));
    assert_eq!((admin["trace_id"].clone(), identity(&admin)), (json!(traces[4]), who));

    eventually(Duration::from_secs(10), "written audit records counted", async || {
        metric(&sidecar, "kafka_sidecar_audit_records_written_total").await == 14
    })
    .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_audit_queue_drops_and_counts_records_and_requests_still_succeed() {
    let bootstrap = broker();
    let (topic, audit_topic) = (unique("audited"), unique("audit"));
    create_topic(bootstrap, &topic, 1).await;
    let mut config = audited_config(bootstrap, &audit_topic);
    config.audit.max_buffered_records = 1;
    config.audit.include_reads = true;
    let sidecar = TestSidecar::start(config).await;

    // Many audited reads at once: the writer takes a batch of one while the rest pile up.
    let requests = 200;
    let http = reqwest::Client::new();
    let calls = (0..requests).map(|_| http.get(sidecar.http_url(&format!("/topics/{topic}"))).send());
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.expect("answer").status(), 200, "auditing never fails the request");
    }

    let dropped = "kafka_sidecar_audit_records_dropped_total{reason=\"queue_full\"}";
    let written = "kafka_sidecar_audit_records_written_total";
    let mut accounted = (0, 0);
    eventually(Duration::from_secs(30), "every audit record written or counted as dropped", async || {
        accounted = (metric(&sidecar, written).await, metric(&sidecar, dropped).await);
        accounted.0 + accounted.1 == requests
    })
    .await;
    let (written, dropped) = accounted;
    assert!(dropped > 0 && written > 0, "written {written}, dropped {dropped}");
    let records = read_back(bootstrap, &audit_topic, written as usize, Duration::from_secs(30));
    assert_eq!(records.len() as u64, written, "what was counted as written is on the audit topic");
    let record: Value = serde_json::from_slice(records[0].value.as_deref().expect("value")).expect("JSON");
    assert_eq!((record["action"].clone(), record["topic"].clone()), (json!("topic.describe"), json!(topic)));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_queued_at_shutdown_are_written_before_the_producer_stops() {
    let bootstrap = broker();
    let (topic, audit_topic) = (unique("audited"), unique("audit"));
    create_topic(bootstrap, &topic, 1).await;
    let sidecar = TestSidecar::start(audited_config(bootstrap, &audit_topic)).await;
    let consumers = sidecar.http_url(&format!("/consumers/{}", unique("group")));
    let response =
        reqwest::Client::new().post(consumers).json(&json!({"format": "binary"})).send().await.expect("answer");
    assert_eq!(response.status(), 200);

    // Straight to shutdown: the audit writer may not have produced the record yet.
    let report = sidecar.stop().await;
    assert_eq!(report.undelivered, 0);
    let records = read_back(bootstrap, &audit_topic, 1, Duration::from_secs(30));
    assert_eq!(records.len(), 1, "the queued audit record was flushed at shutdown");
    let record: Value = serde_json::from_slice(records[0].value.as_deref().expect("value")).expect("JSON");
    assert_eq!((record["action"].clone(), record["outcome"].clone()), (json!("consumer.create"), json!("ok")));
}
