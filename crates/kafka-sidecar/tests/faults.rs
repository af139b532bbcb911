//! Fault tests on librdkafka's mock cluster: a broker outage fills the budget (backpressure), then
//! recovery delivers everything accepted exactly once; injected produce errors are retried without
//! duplicates; at shutdown, what cannot be delivered is counted and reported failed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::{TestSidecar, read_back, test_config, unique};
use tonic::transport::Channel;

const BROKER: i32 = 1;

fn record(topic: &str, id: u64) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        key: Some(Bytes::from(format!("key-{}", id % 7))),
        value: Bytes::from(format!("{id:08}:{}", "x".repeat(500))),
        record_id: id,
        ..Default::default()
    }
}

fn batch(session: &str, records: Vec<pb::ProduceRequest>) -> pb::ProduceBatch {
    pb::ProduceBatch { session_id: session.to_string(), records, ..Default::default() }
}

async fn reports(client: &mut ProducerSidecarClient<Channel>, session: &str, count: usize) -> Vec<pb::DeliveryReport> {
    let request = pb::DeliveryStreamRequest { session_id: session.to_string(), after_seq: 0 };
    let stream = client.delivery_stream(request).await.expect("stream").into_inner();
    let reports = stream.flat_map(|batch| futures::stream::iter(batch.expect("report batch").reports));
    let collect = reports.take(count).collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(60), collect).await.expect("reports in time")
}

fn ids_in_topic(bootstrap: &str, topic: &str, count: usize) -> Vec<u64> {
    read_back(bootstrap, topic, count, Duration::from_secs(30))
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value.clone().unwrap()[..8]).parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_backpressures_then_recovers_without_loss_or_duplicates() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique("outage");
    cluster.create_topic(&topic, 2, 1).expect("topic");
    let mut config = test_config(&cluster.bootstrap_servers());
    config.producer.max_buffered_bytes = 64 * 1024;
    config.producer.max_record_bytes = 1024;
    config.producer.delivery_timeout_ms = 120_000;
    config.producer.retry_after_ms = 10;
    let sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let session = unique("session");

    // Warm up: the topic is known and a report flows.
    let ack = client.emit_batch(batch(&session, vec![record(&topic, 0)])).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 1);
    assert!(reports(&mut client, &session, 1).await[0].error_code.is_empty());

    cluster.broker_down(BROKER).expect("broker down");
    let mut accepted: Vec<u64> = vec![0];
    let mut next_id = 1u64;
    let mut refused_tail: Vec<pb::ProduceRequest> = Vec::new();
    while refused_tail.is_empty() {
        assert!(next_id < 10_000, "the budget never filled");
        let records: Vec<_> = (next_id..next_id + 20).map(|id| record(&topic, id)).collect();
        next_id += 20;
        let ack = client.emit_batch(batch(&session, records.clone())).await.unwrap().into_inner();
        let first_refused = ack.acks.iter().position(|a| !a.received).unwrap_or(ack.acks.len());
        assert!(ack.acks[first_refused..].iter().all(|a| !a.received && a.error_code == "QUEUE_FULL"), "refused tail");
        if first_refused < ack.acks.len() {
            assert!(ack.retry_after_ms >= 10, "retry hint {}", ack.retry_after_ms);
        }
        accepted.extend(ack.acks[..first_refused].iter().map(|a| a.record_id));
        refused_tail = records[first_refused..].to_vec();
    }
    let metrics = reqwest::get(sidecar.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("code=\"QUEUE_FULL\""), "backpressure is counted");
    assert!(!metrics.contains("kafka_sidecar_queue_bytes 0\n"), "queue depth is visible");

    // HTTP is refused whole with 429 and a retry hint while the budget is full; as nothing drains,
    // the hint grows to the longest one.
    let body = format!(r#"{{"valueFormat":"string","records":[{{"value":"{}"}}]}}"#, "y".repeat(900));
    let url = sidecar.http_url(&format!("/producers/{topic}"));
    let http = reqwest::Client::new();
    support::eventually(Duration::from_secs(10), "the longest retry hint", async || {
        let response = http.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 429);
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let (seconds, millis) = (header("retry-after").unwrap(), header("x-retry-after-ms").unwrap());
        assert_eq!(seconds, millis.div_ceil(1000), "Retry-After is the hint in whole seconds");
        let status: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status["code"], "QUEUE_FULL");
        millis >= 1000
    })
    .await;

    cluster.broker_up(BROKER).expect("broker up");
    // The client's side of backpressure: retry the refused tail until it is taken.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !refused_tail.is_empty() {
        assert!(Instant::now() < deadline, "never recovered");
        let ack = client.emit_batch(batch(&session, refused_tail.clone())).await.unwrap().into_inner();
        let taken = ack.acks.iter().take_while(|a| a.received).count();
        accepted.extend(refused_tail.drain(..taken).map(|r| r.record_id));
        if !refused_tail.is_empty() {
            tokio::time::sleep(Duration::from_millis(u64::from(ack.retry_after_ms))).await;
        }
    }

    let delivered = reports(&mut client, &session, accepted.len()).await;
    assert!(delivered.iter().all(|r| r.error_code.is_empty()), "every accepted record delivered");
    let reported: HashSet<u64> = delivered.iter().map(|r| r.record_id).collect();
    assert_eq!(reported, accepted.iter().copied().collect::<HashSet<_>>());

    let mut in_topic = ids_in_topic(&cluster.bootstrap_servers(), &topic, accepted.len());
    in_topic.sort_unstable();
    let mut expected = accepted.clone();
    expected.sort_unstable();
    assert_eq!(in_topic, expected, "each accepted record exactly once");
    assert_eq!(sidecar.stop().await.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_produce_errors_are_retried_without_duplicates() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique("retry");
    cluster.create_topic(&topic, 1, 1).expect("topic");
    let sidecar = TestSidecar::start(test_config(&cluster.bootstrap_servers())).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let session = unique("session");
    let transient = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 4];
    cluster.request_errors(RDKafkaApiKey::Produce, &transient);
    let ack = client.emit_batch(batch(&session, (0..100).map(|id| record(&topic, id)).collect())).await.unwrap();
    assert_eq!(ack.into_inner().accepted, 100);
    let delivered = reports(&mut client, &session, 100).await;
    assert!(delivered.iter().all(|r| r.error_code.is_empty()));
    let mut in_topic = ids_in_topic(&cluster.bootstrap_servers(), &topic, 100);
    in_topic.sort_unstable();
    in_topic.dedup();
    assert_eq!(in_topic, (0..100).collect::<Vec<_>>());
    assert_eq!(
        read_back(&cluster.bootstrap_servers(), &topic, 101, Duration::from_secs(2)).len(),
        100,
        "no duplicates"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_every_undelivered_record_as_failed() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique("shutdown");
    cluster.create_topic(&topic, 1, 1).expect("topic");
    let mut config = test_config(&cluster.bootstrap_servers());
    config.shutdown.grace_period_ms = 1_000;
    config.producer.delivery_timeout_ms = 120_000;
    let mut sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let session = unique("session");
    client.emit_batch(batch(&session, vec![record(&topic, 0)])).await.unwrap();
    let mut stream = client
        .delivery_stream(pb::DeliveryStreamRequest { session_id: session.clone(), after_seq: 0 })
        .await
        .unwrap()
        .into_inner();
    let warm = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(warm.reports.len(), 1);
    assert!(warm.reports[0].error_code.is_empty());

    cluster.broker_down(BROKER).expect("broker down");
    let ack = client.emit_batch(batch(&session, (1..=30).map(|id| record(&topic, id)).collect())).await.unwrap();
    assert_eq!(ack.into_inner().accepted, 30);

    sidecar.begin_shutdown();
    let mut failed = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("report or end") {
        failed.extend(batch.expect("report batch").reports);
    }
    assert_eq!(failed.len(), 30, "every undelivered record reported, then the stream ended");
    assert!(failed.iter().all(|r| r.error_code == "NOT_DELIVERED_AT_SHUTDOWN"), "{failed:?}");
    assert_eq!(sidecar.stop().await.undelivered, 30);
}
