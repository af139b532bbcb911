//! gRPC produce against a real tansu broker: records arrive complete, in per-key order, with their
//! headers; delivery reports reach the sending session only, and a reconnecting stream resumes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use support::{TestSidecar, broker, create_topic, read_back, test_config, unique};

fn record(topic: &str, key: &str, id: u64) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        key: Some(Bytes::from(key.to_string())),
        value: Bytes::from(format!("{key}:{id}")),
        headers: vec![pb::Header { key: "seq".into(), value: Bytes::from(id.to_string()) }],
        record_id: id,
        ..Default::default()
    }
}

async fn collect_reports(
    client: &mut ProducerSidecarClient<tonic::transport::Channel>,
    session: &str,
    after: u64,
    count: usize,
) -> Vec<pb::DeliveryReport> {
    let request = pb::DeliveryStreamRequest { session_id: session.to_string(), after_seq: after };
    let mut stream = client.delivery_stream(request).await.expect("delivery stream").into_inner();
    let mut reports = Vec::new();
    while reports.len() < count {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next()).await.expect("report in time");
        reports.extend(next.expect("stream open").expect("report batch").reports);
    }
    // A worker may receive more than it processes before it disconnects; it resumes from the last
    // one it processed.
    reports.truncate(count);
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_per_key_order_with_headers_and_reports() {
    let topic = unique("grpc-order");
    create_topic(broker(), &topic, 3).await;
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let session = unique("session");
    let keys = ["alice", "bob", "carol", "dave"];
    let mut next_id = 0u64;
    for batch_id in 0..20u64 {
        let records = (0..50)
            .map(|_| {
                next_id += 1;
                record(&topic, keys[(next_id % 4) as usize], next_id)
            })
            .collect();
        let batch = pb::ProduceBatch {
            batch_id,
            client_id: "orders".into(),
            session_id: session.clone(),
            records,
            ..Default::default()
        };
        let ack = client.emit_batch(batch).await.expect("emit_batch").into_inner();
        assert_eq!((ack.batch_id, ack.accepted, ack.rejected), (batch_id, 50, 0));
    }
    let total = next_id as usize;

    let reports = collect_reports(&mut client, &session, 0, total).await;
    let mut ids: Vec<u64> = reports.iter().map(|r| r.record_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=next_id).collect::<Vec<_>>(), "one report per record");
    assert!(reports.iter().all(|r| r.error_code.is_empty() && r.offset >= 0), "all delivered");
    assert!(reports.windows(2).all(|w| w[1].seq == w[0].seq + 1), "seq has no gaps");

    let records = read_back(broker(), &topic, total, Duration::from_secs(30));
    assert_eq!(records.len(), total, "every record is in the topic");
    let mut last_per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut partition_of_key: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut by_position = records.clone();
    by_position.sort_by_key(|r| (r.partition, r.offset));
    for read in &by_position {
        let key = read.key.clone().expect("key");
        let header = read.headers.iter().find(|(name, _)| name == "seq").expect("seq header");
        let id: u64 = String::from_utf8(header.1.clone()).unwrap().parse().unwrap();
        assert_eq!(read.value.as_deref(), Some(format!("{}:{id}", String::from_utf8_lossy(&key)).as_bytes()));
        if let Some(previous) = last_per_key.insert(key.clone(), id) {
            assert!(previous < id, "key {key:?}: {previous} before {id}");
        }
        assert_eq!(*partition_of_key.entry(key).or_insert(read.partition), read.partition, "one partition per key");
    }
    assert_eq!(sidecar.stop().await.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_emit_and_resume_delivery_reports_after_reconnect() {
    let topic = unique("grpc-stream");
    create_topic(broker(), &topic, 2).await;
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let session = unique("session");
    let batches: Vec<pb::ProduceBatch> = (0..10u64)
        .map(|batch_id| pb::ProduceBatch {
            batch_id,
            session_id: session.clone(),
            records: (0..10).map(|i| record(&topic, "k", batch_id * 10 + i + 1)).collect(),
            ..Default::default()
        })
        .collect();
    let acks: Vec<pb::ProduceBatchAck> = client
        .emit_stream(futures::stream::iter(batches))
        .await
        .expect("emit_stream")
        .into_inner()
        .map(|ack| ack.expect("ack"))
        .collect()
        .await;
    assert_eq!(acks.iter().map(|a| a.batch_id).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>(), "acks in order");
    assert!(acks.iter().all(|a| a.accepted == 10));

    // Read half, "disconnect", then resume after the last seq seen: nothing lost, nothing repeated.
    let first = collect_reports(&mut client, &session, 0, 50).await;
    let last_seen = first.last().expect("reports").seq;
    let rest = collect_reports(&mut client, &session, last_seen, 50).await;
    assert_eq!(rest.first().map(|r| r.seq), Some(last_seen + 1));
    let mut ids: Vec<u64> = first.iter().chain(&rest).map(|r| r.record_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=100).collect::<Vec<_>>());

    // Another session sees none of these reports.
    let other = client
        .delivery_stream(pb::DeliveryStreamRequest { session_id: unique("other"), after_seq: 0 })
        .await
        .expect("stream")
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_millis(300), Box::pin(other).next()).await;
    assert!(nothing.is_err(), "a different session got a report");
    assert_eq!(read_back(broker(), &topic, 100, Duration::from_secs(30)).len(), 100);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_get_clear_statuses_and_the_sidecar_keeps_serving() {
    let topic = unique("grpc-bad");
    create_topic(broker(), &topic, 1).await;
    let mut config = test_config(broker());
    config.producer.max_record_bytes = 1024;
    let sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let cases = [
        (record(&unique("missing"), "k", 1), tonic::Code::NotFound, "UNKNOWN_TOPIC"),
        (record("", "k", 2), tonic::Code::InvalidArgument, "INVALID_TOPIC"),
        (record("bad topic!", "k", 3), tonic::Code::InvalidArgument, "INVALID_TOPIC"),
        (
            pb::ProduceRequest { value: Bytes::from(vec![0u8; 2048]), ..record(&topic, "k", 4) },
            tonic::Code::InvalidArgument,
            "RECORD_TOO_LARGE",
        ),
        (
            pb::ProduceRequest { partition: Some(7), ..record(&topic, "k", 5) },
            tonic::Code::InvalidArgument,
            "INVALID_PARTITION",
        ),
    ];
    for (request, code, machine_code) in cases {
        let status = client.emit(request).await.expect_err("must fail");
        assert_eq!(status.code(), code, "{}", status.message());
        let metadata = status.metadata().get("kafka-sidecar-error-code").and_then(|v| v.to_str().ok());
        assert_eq!(metadata, Some(machine_code));
        assert!(!status.message().is_empty());
    }
    let missing_session = client.delivery_stream(pb::DeliveryStreamRequest::default()).await.expect_err("no session");
    assert_eq!(missing_session.code(), tonic::Code::InvalidArgument);

    // In a batch, a bad record is refused alone and good ones still go through.
    let batch = pb::ProduceBatch {
        records: vec![record(&topic, "k", 10), record("", "k", 11), record(&topic, "k", 12)],
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("batch").into_inner();
    let received: Vec<bool> = ack.acks.iter().map(|a| a.received).collect();
    assert_eq!(received, vec![true, false, true]);
    assert_eq!(ack.acks[1].error_code, "INVALID_TOPIC");

    let ok = client.emit(record(&topic, "k", 13)).await.expect("still serving").into_inner();
    assert!(ok.received);
    assert_eq!(read_back(broker(), &topic, 3, Duration::from_secs(30)).len(), 3);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving_when_ready() {
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let channel = tonic::transport::Endpoint::from_shared(sidecar.grpc_url()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", kafka_sidecar::grpc::SERVICE_NAME] {
        let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
        let status = health.check(request).await.expect("health check").into_inner().status;
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sidecar_is_detectable_and_refuses_to_resume_old_sessions() {
    let topic = unique("grpc-restart");
    create_topic(broker(), &topic, 1).await;
    let session = unique("session");
    let instance_of = |metadata: &tonic::metadata::MetadataMap| {
        metadata.get(kafka_sidecar::grpc::INSTANCE_METADATA).and_then(|v| v.to_str().ok()).map(str::to_string)
    };

    let first = TestSidecar::start(test_config(broker())).await;
    let mut client = ProducerSidecarClient::connect(first.grpc_url()).await.expect("connect");
    let batch =
        pb::ProduceBatch { session_id: session.clone(), records: vec![record(&topic, "k", 1)], ..Default::default() };
    let response = client.emit_batch(batch).await.expect("emit");
    let first_instance = instance_of(response.metadata()).expect("instance id on acks");
    let seen = collect_reports(&mut client, &session, 0, 1).await;
    first.stop().await;

    let second = TestSidecar::start(test_config(broker())).await;
    let mut client = ProducerSidecarClient::connect(second.grpc_url()).await.expect("connect");
    let resume = pb::DeliveryStreamRequest { session_id: session.clone(), after_seq: seen[0].seq };
    let status = client.delivery_stream(resume).await.expect_err("old session cannot resume");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let code = status.metadata().get("kafka-sidecar-error-code").and_then(|v| v.to_str().ok());
    assert_eq!(code, Some("UNKNOWN_SESSION"));
    let fresh = pb::DeliveryStreamRequest { session_id: session, after_seq: 0 };
    let response = client.delivery_stream(fresh).await.expect("a fresh start is fine");
    let second_instance = instance_of(response.metadata()).expect("instance id on streams");
    assert_ne!(first_instance, second_instance);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_never_lost_a_session_that_does_not_read_is_refused_instead() {
    let topic = unique("grpc-flow");
    create_topic(broker(), &topic, 2).await;
    let mut config = test_config(broker());
    config.delivery.ring_capacity = 100;
    config.delivery.max_buffered_reports = 300;
    let sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    // Many sessions come and go (far more than the global bound): each gets every report.
    for round in 0..12u64 {
        let session = unique("churn");
        let records = (0..100).map(|i| record(&topic, "k", round * 1000 + i)).collect();
        let batch = pb::ProduceBatch { session_id: session.clone(), records, ..Default::default() };
        assert_eq!(client.emit_batch(batch).await.expect("emit").into_inner().accepted, 100, "round {round}");
        let reports = collect_reports(&mut client, &session, 0, 100).await;
        assert_eq!(reports.last().map(|r| r.seq), Some(100), "no gaps in round {round}");
    }

    // A session that never reads is refused once its share is reserved or unread...
    let silent = unique("silent");
    let batch = pb::ProduceBatch {
        session_id: silent.clone(),
        records: (0..150).map(|i| record(&topic, "k", i)).collect(),
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("emit").into_inner();
    assert_eq!((ack.accepted, ack.rejected), (100, 50));
    assert!(ack.acks[100..].iter().all(|a| a.error_code == "QUEUE_FULL" && a.retry_after_ms > 0));
    // ...and can go on once it has read them.
    let reports = collect_reports(&mut client, &silent, 0, 100).await;
    assert!(reports.iter().all(|r| r.error_code.is_empty()));
    let retry = pb::ProduceBatch { session_id: silent, records: vec![record(&topic, "k", 200)], ..Default::default() };
    assert_eq!(client.emit_batch(retry).await.expect("emit").into_inner().accepted, 1);
    sidecar.stop().await;
}
