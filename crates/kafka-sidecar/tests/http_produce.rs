//! HTTP produce against a real tansu broker: seed 002's request shape in, partitions and offsets
//! out, read back by an independent client; bad input gets a 4xx `Status` body and the sidecar
//! keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, read_back, test_config, unique};

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = client.post(url).header("content-type", "application/json").body(body).send().await.expect("post");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await.expect("json body");
    (status, body, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_in_every_format_arrive_with_headers_and_trace_ids() {
    let topic = unique("http-formats");
    create_topic(broker(), &topic, 2).await;
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let client = reqwest::Client::new();
    let url = sidecar.http_url(&format!("/producers/{topic}"));

    let string_key_binary_value = json!({
        "records": [
            {"key": "alice", "value": "YWJj", "headers": {"source": "test"}, "traceabilityId": "trace-1"},
            {"key": "alice", "value": "ZGVm", "correlationId": "corr-2"}
        ]
    });
    let (status, body, _) = post(&client, &url, string_key_binary_value.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let offsets = body["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    assert!(offsets.iter().all(|o| o["offset"].as_i64().is_some() && o["errorCode"].is_null()), "{body}");
    assert_eq!(offsets[0]["partition"], offsets[1]["partition"], "same key, same partition");
    assert!(offsets[0]["offset"].as_i64() < offsets[1]["offset"].as_i64(), "in order");

    let numeric_formats = json!({"keyFormat": 0, "valueFormat": 2, "records": [{"key": "Ym9i", "value": {"n": 1}}]});
    let (status, body, _) = post(&client, &url, numeric_formats.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let named_formats =
        json!({"keyFormat": "string", "valueFormat": "string", "records": [{"key": "carol", "value": "plain"}]});
    let (status, _, _) = post(&client, &url, named_formats.to_string()).await;
    assert_eq!(status, 200);

    let records = read_back(broker(), &topic, 4, Duration::from_secs(30));
    assert_eq!(records.len(), 4);
    let find = |value: &[u8]| records.iter().find(|r| r.value.as_deref() == Some(value)).expect("record present");
    let first = find(b"abc");
    assert_eq!(first.key.as_deref(), Some(&b"alice"[..]));
    assert!(first.headers.contains(&("source".into(), b"test".to_vec())));
    assert!(first.headers.contains(&("X-Traceability-Id".into(), b"trace-1".to_vec())));
    assert!(find(b"def").headers.contains(&("X-Correlation-Id".into(), b"corr-2".to_vec())));
    assert_eq!(find(b"{\"n\":1}").key.as_deref(), Some(&b"bob"[..]));
    assert_eq!(find(b"plain").key.as_deref(), Some(&b"carol"[..]));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_status_bodies_and_the_sidecar_keeps_serving() {
    let topic = unique("http-bad");
    create_topic(broker(), &topic, 1).await;
    let mut config = test_config(broker());
    config.http.max_body_bytes = 4096;
    config.producer.max_record_bytes = 1024;
    let sidecar = TestSidecar::start(config).await;
    let client = reqwest::Client::new();
    let url = sidecar.http_url(&format!("/producers/{topic}"));
    let big_value = "A".repeat(2000);
    let cases: Vec<(String, String, u16, &str)> = vec![
        (
            sidecar.http_url(&format!("/producers/{}", unique("missing"))),
            r#"{"records":[{"value":"YWJj"}]}"#.into(),
            404,
            "UNKNOWN_TOPIC",
        ),
        (sidecar.http_url("/producers/bad%20topic"), r#"{"records":[{"value":"YWJj"}]}"#.into(), 400, "INVALID_TOPIC"),
        (url.clone(), r#"{"records":[{"value":"***"}]}"#.into(), 400, "INVALID_BASE64"),
        (url.clone(), r#"{"records":[{"value":"YWJj"}"#.into(), 400, "INVALID_JSON"),
        (url.clone(), r#"{"recrods":[]}"#.into(), 400, "INVALID_REQUEST"),
        (url.clone(), r#"{}"#.into(), 400, "INVALID_REQUEST"),
        (url.clone(), r#"{"records":[]}"#.into(), 400, "INVALID_REQUEST"),
        (url.clone(), r#"{"valueFormat":"avro","records":[{"value":{}}]}"#.into(), 400, "UNSUPPORTED_FORMAT"),
        (url.clone(), r#"{"valueFormat":9,"records":[{"value":"x"}]}"#.into(), 400, "INVALID_REQUEST"),
        (
            url.clone(),
            format!(r#"{{"valueFormat":"string","records":[{{"value":"{big_value}"}}]}}"#),
            413,
            "RECORD_TOO_LARGE",
        ),
        (url.clone(), format!(r#"{{"records":[{{"value":"{}"}}]}}"#, "A".repeat(8000)), 413, "BODY_TOO_LARGE"),
        (url.clone(), r#"{"records":[{"value":"YWJj","partition":3}]}"#.into(), 400, "INVALID_PARTITION"),
        (sidecar.http_url("/nowhere"), "{}".into(), 404, "NOT_FOUND"),
    ];
    for (target, body, expected_status, expected_code) in cases {
        let (status, json, _) = post(&client, &target, body.clone()).await;
        assert_eq!(status, expected_status, "{body}: {json}");
        assert_eq!(json["code"], expected_code, "{body}: {json}");
        assert_eq!(json["statusCode"], expected_status);
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(json["description"].as_str().is_some());
    }
    let (status, body, _) = post(&client, &url, r#"{"records":[{"value":"YWJj"}]}"#).await;
    assert_eq!(status, 200, "still serving: {body}");
    assert_eq!(read_back(broker(), &topic, 1, Duration::from_secs(30)).len(), 1, "nothing bad was produced");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_health_and_metrics_for_what_was_produced() {
    let topic = unique("http-metrics");
    create_topic(broker(), &topic, 1).await;
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let client = reqwest::Client::new();
    let url = sidecar.http_url(&format!("/producers/{topic}"));
    let response = client
        .post(&url)
        .header("x-client-id", "billing")
        .body(r#"{"records":[{"value":"YWJj"},{"value":"YWJj"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // A request refused whole counts each of its records, as gRPC's refusals do.
    let missing = unique("http-missing");
    let refused = client
        .post(sidecar.http_url(&format!("/producers/{missing}")))
        .header("x-client-id", "billing")
        .body(r#"{"records":[{"value":"YWJj"},{"value":"YWJj"},{"value":"YWJj"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    assert_eq!(reqwest::get(sidecar.admin_url("/healthz")).await.unwrap().status().as_u16(), 200);
    assert_eq!(reqwest::get(sidecar.admin_url("/readyz")).await.unwrap().status().as_u16(), 200);
    let metrics_url = sidecar.admin_url("/metrics");
    let delivered = format!("kafka_sidecar_records_delivered_total{{topic=\"{topic}\",client=\"billing\"}} 2");
    support::eventually(Duration::from_secs(10), "broker connection metric", async || {
        reqwest::get(&metrics_url).await.unwrap().text().await.unwrap().contains("kafka_sidecar_broker_connections 1")
    })
    .await;
    let text = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert!(text.contains(&delivered), "{text}");
    assert!(text.contains(&format!("kafka_sidecar_records_accepted_total{{topic=\"{topic}\",client=\"billing\"}} 2")));
    assert!(text.contains("kafka_sidecar_requests_total{api=\"http_produce\",client=\"billing\"} 2"), "both requests");
    assert!(text.contains("kafka_sidecar_queue_records 0"));
    let rejected = format!(
        "kafka_sidecar_records_rejected_total{{topic=\"{missing}\",client=\"billing\",code=\"UNKNOWN_TOPIC\"}} 3"
    );
    assert!(text.contains(&rejected), "{rejected} missing from {text}");
    assert!(text.contains("kafka_sidecar_delivery_latency_seconds_count 2"));
    sidecar.stop().await;
}
