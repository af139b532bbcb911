//! The reactive consumer against a real tansu broker and a real HTTP backend: per-key order with
//! parallel pushes, verdicts, poison records to the dead letter topic and back by redrive, a
//! backend outage that pauses without dead letters, and commits an independent client reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod reactive_support;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use consumer_support::{committed, produce, produce_keyed};
use kafka_sidecar::Config;
use reactive_support::{TestBackend, Verdicts, accept_all, verdict};
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, eventually, read_back, unique};

fn reactive_config(bootstrap: &str, topic: &str, group: &str, backend_url: &str) -> Config {
    consumer_support::reactive_config(bootstrap, topic, group, backend_url, 3)
}

/// Waits until the backend answered `count` distinct records as processed.
async fn processed(backend: &TestBackend, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let pushes = backend.pushes();
        let distinct: std::collections::BTreeSet<(i64, i64)> = pushes
            .iter()
            .map(|record| (record["partition"].as_i64().unwrap(), record["offset"].as_i64().unwrap()))
            .collect();
        if distinct.len() >= count {
            return pushes;
        }
        assert!(Instant::now() < deadline, "only {} of {count} records pushed", distinct.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_flow_in_order_per_key_in_parallel_and_the_commit_reaches_the_log_end() {
    let bootstrap = broker();
    let (topic, group) = (unique("push"), unique("group"));
    create_topic(bootstrap, &topic, 2).await;
    produce_keyed(bootstrap, &topic, 2, 60, 6).await;
    let backend = TestBackend::start(accept_all(), 15).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url())).await;
    let pushes = processed(&backend, 60, Duration::from_secs(60)).await;

    let (overlaps, requests) = {
        let seen = backend.seen.lock().unwrap();
        (seen.overlaps.clone(), seen.requests)
    };
    assert!(overlaps.is_empty(), "a key was pushed while in flight: {overlaps:?}");
    assert!(requests > 1, "several batches");
    let mut by_key: HashMap<(String, i64), Vec<i64>> = HashMap::new();
    for record in &pushes {
        let lane = (record["key"].to_string(), record["partition"].as_i64().unwrap());
        by_key.entry(lane).or_default().push(record["offset"].as_i64().unwrap());
    }
    assert_eq!(by_key.len(), 6, "six keys, each in one partition");
    assert!(by_key.values().all(|offsets| offsets.len() == 10));
    for (key, offsets) in &by_key {
        assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]), "{key:?} out of order: {offsets:?}");
    }
    assert_eq!(pushes.len(), 60, "each record pushed once");
    assert_eq!(pushes[0]["headers"], json!({"origin": "test"}));
    eventually(Duration::from_secs(10), "the commit at the log end", async || {
        committed(bootstrap, &group, &topic, 2) == vec![30, 30]
    })
    .await;
    let metrics = reqwest::get(sidecar.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kafka_sidecar_reactive_records_total{outcome=\"processed\"} 60"), "{metrics}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_go_to_the_dead_letter_topic_with_provenance_and_can_be_redriven() {
    let bootstrap = broker();
    let (topic, group) = (unique("poison"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 12).await;
    // value-3 breaks every batch it is in (500); value-7 is refused by verdict; value-9 is skipped.
    let verdicts: Verdicts = std::sync::Arc::new(|records: &[Value], _| {
        if records.iter().any(|record| record["value"] == json!("value-3")) {
            return (StatusCode::INTERNAL_SERVER_ERROR, json!("boom"));
        }
        let answers: Vec<Value> = records
            .iter()
            .filter_map(|record| match record["value"].as_str() {
                Some("value-7") => Some(json!({"record": {"topic": record["topic"], "partition": record["partition"],
                    "offset": record["offset"]}, "processed": false, "stacktrace": "IllegalState"})),
                Some("value-9") => Some(verdict(record, "skip")),
                _ => None,
            })
            .collect();
        (StatusCode::OK, Value::Array(answers))
    });
    let backend = TestBackend::start(verdicts, 0).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url())).await;
    eventually(Duration::from_secs(60), "the commit past every record", async || {
        committed(bootstrap, &group, &topic, 1) == vec![12]
    })
    .await;

    let dead_letters = read_back(bootstrap, &format!("{topic}.dlq"), 2, Duration::from_secs(10));
    assert_eq!(dead_letters.len(), 2, "value-3 and value-7, nothing else: {dead_letters:?}");
    let header = |record: &support::ReadRecord, name: &str| {
        record.headers.iter().find(|(key, _)| key == name).map(|(_, value)| String::from_utf8_lossy(value).to_string())
    };
    let poison = dead_letters.iter().find(|r| r.value.as_deref() == Some(b"value-3".as_slice())).expect("value-3");
    assert_eq!(header(poison, "kafka-sidecar-dlq-topic").as_deref(), Some(topic.as_str()));
    assert_eq!(header(poison, "kafka-sidecar-dlq-offset").as_deref(), Some("3"));
    assert_eq!(header(poison, "kafka-sidecar-dlq-attempts").as_deref(), Some("3"));
    assert_eq!(header(poison, "kafka-sidecar-dlq-group").as_deref(), Some(group.as_str()));
    assert!(header(poison, "kafka-sidecar-dlq-error").unwrap_or_default().contains("HTTP 500"));
    assert_eq!(header(poison, "origin").as_deref(), Some("test"), "original headers kept");
    assert_eq!(poison.key.as_deref(), Some(b"key-3".as_slice()));
    let refused = dead_letters.iter().find(|r| r.value.as_deref() == Some(b"value-7".as_slice())).expect("value-7");
    assert_eq!(header(refused, "kafka-sidecar-dlq-error").as_deref(), Some("IllegalState"));
    let processed: Vec<Value> = backend.pushes();
    for healthy in ["value-2", "value-4", "value-11"] {
        assert!(processed.iter().any(|record| record["value"] == json!(healthy)), "{healthy} reached the backend");
    }

    let state: Value = reqwest::get(sidecar.admin_url("/admin/reactive")).await.unwrap().json().await.unwrap();
    assert_eq!(state["group"], json!(group));
    let redrive = reqwest::Client::new()
        .post(sidecar.admin_url("/admin/dlq/redrive"))
        .header("x-client-id", "operator-test")
        .json(&json!({"topic": format!("{topic}.dlq")}))
        .send()
        .await
        .unwrap();
    assert_eq!(redrive.status(), 200);
    let report: Value = redrive.json().await.unwrap();
    assert_eq!(report["redriven"], json!(2), "{report}");
    let topic_now = read_back(bootstrap, &topic, 14, Duration::from_secs(10));
    let redriven: Vec<_> = topic_now.iter().filter(|record| record.offset >= 12).collect();
    assert_eq!(redriven.len(), 2);
    assert!(redriven.iter().all(|record| header(record, "kafka-sidecar-redrive-count").as_deref() == Some("1")));
    assert!(redriven.iter().all(|record| header(record, "kafka-sidecar-dlq-topic").is_none()));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backend_outage_pauses_pushing_without_dead_letters_and_resumes() {
    let bootstrap = broker();
    let (topic, group) = (unique("outage"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 10).await;
    // Reserve a port, close it: the backend is "down" (connection refused) until it binds there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/records");
    let sidecar = TestSidecar::start_without_readiness(reactive_config(bootstrap, &topic, &group, &url)).await;
    let metrics_url = sidecar.admin_url("/metrics");
    eventually(Duration::from_secs(30), "pushing to pause", async || {
        let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        text.contains("kafka_sidecar_reactive_pauses_total 1")
    })
    .await;
    let ready = reqwest::get(sidecar.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the backend is down");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let backend = TestBackend::serve(listener, accept_all(), 0).await;
    processed(&backend, 10, Duration::from_secs(30)).await;
    eventually(Duration::from_secs(10), "the commit", async || committed(bootstrap, &group, &topic, 1) == vec![10])
        .await;
    let dead_letters = read_back(bootstrap, &format!("{topic}.dlq"), 1, Duration::from_millis(500));
    assert!(dead_letters.is_empty(), "nothing dead-lettered because the app was down");
    eventually(Duration::from_secs(10), "readiness", async || {
        reqwest::get(sidecar.admin_url("/readyz")).await.is_ok_and(|response| response.status() == 200)
    })
    .await;
    sidecar.stop().await;
}
