//! Fair admission under overload, on librdkafka's mock cluster: one worker flooding the sidecar
//! cannot starve the others (they keep at least half their fair share), and while the budget is
//! contended a sender over its share is refused first, record by record on gRPC (a refused tail)
//! and whole on HTTP (429).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kafka_sidecar::kafka::RECORD_OVERHEAD_BYTES;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use rdkafka::mocking::MockCluster;
use support::{TestSidecar, eventually, test_config, unique};
use tonic::transport::Channel;

const BROKER: i32 = 1;
const VALUE_BYTES: usize = 1000;

fn record(topic: &str, id: u64) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        value: Bytes::from(vec![b'x'; VALUE_BYTES]),
        record_id: id,
        ..Default::default()
    }
}

fn batch(client: &str, session: &str, ids: std::ops::Range<u64>, topic: &str) -> pb::ProduceBatch {
    pb::ProduceBatch {
        client_id: client.to_string(),
        session_id: session.to_string(),
        records: ids.map(|id| record(topic, id)).collect(),
        ..Default::default()
    }
}

/// What one sender offered and what became of it.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    offered: u64,
    accepted: u64,
    queue_full: u64,
}

impl Tally {
    fn add(&mut self, ack: &pb::ProduceBatchAck) {
        self.offered += ack.acks.len() as u64;
        self.accepted += u64::from(ack.accepted);
        self.queue_full += ack.acks.iter().filter(|a| a.error_code == "QUEUE_FULL").count() as u64;
        let other = ack.acks.iter().find(|a| !a.received && a.error_code != "QUEUE_FULL");
        assert!(other.is_none(), "only backpressure refuses: {other:?}");
        let first_refused = ack.acks.iter().position(|a| !a.received).unwrap_or(ack.acks.len());
        assert!(ack.acks[first_refused..].iter().all(|a| !a.received), "a refused tail");
    }
}

/// Counts the delivery reports of `session` until the stream ends.
fn count_reports(mut client: ProducerSidecarClient<Channel>, session: String) -> Arc<AtomicU64> {
    let delivered = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&delivered);
    tokio::spawn(async move {
        let request = pb::DeliveryStreamRequest { session_id: session, after_seq: 0 };
        let mut stream = client.delivery_stream(request).await.expect("delivery stream").into_inner();
        while let Some(Ok(batch)) = stream.next().await {
            assert!(batch.reports.iter().all(|r| r.error_code.is_empty()), "delivered");
            counter.fetch_add(batch.reports.len() as u64, Ordering::AcqRel);
        }
    });
    delivered
}

async fn metric(sidecar: &TestSidecar, line_start: &str) -> f64 {
    let text = reqwest::get(sidecar.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(line_start)?.strip_prefix(' ').map(|value| value.trim().parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_worker_cannot_starve_the_others() {
    const MODEST: usize = 3;
    const MODEST_BATCHES: u64 = 40;
    const MODEST_BATCH: u64 = 5;
    const MODEST_PERIOD: Duration = Duration::from_millis(50);
    const FLOOD_BATCH: u64 = 200;

    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique("fair");
    cluster.create_topic(&topic, 4, 1).expect("topic");
    let mut config = test_config(&cluster.bootstrap_servers());
    // A small budget and a slow broker: the flooder alone keeps the budget full.
    config.producer.max_buffered_bytes = 256 * 1024;
    config.producer.max_record_bytes = 2048;
    let sidecar = TestSidecar::start(config).await;
    let client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let flooder = unique("flooder");
    let modest: Vec<String> = (0..MODEST).map(|_| unique("modest")).collect();
    let mut reports = Vec::new();
    for session in std::iter::once(&flooder).chain(&modest) {
        let ack = client.clone().emit_batch(batch("warm-up", session, 0..1, &topic)).await.unwrap().into_inner();
        assert_eq!(ack.accepted, 1, "warm-up");
        reports.push(count_reports(client.clone(), session.clone()));
    }
    eventually(Duration::from_secs(30), "warm-up deliveries", async || {
        reports.iter().all(|delivered| delivered.load(Ordering::Acquire) == 1)
    })
    .await;
    cluster.broker_round_trip_time(BROKER, Duration::from_millis(50)).expect("slow broker");

    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn({
        let (mut client, session, topic, stop) = (client.clone(), flooder.clone(), topic.clone(), Arc::clone(&stop));
        async move {
            let (mut tally, mut next_id) = (Tally::default(), 1);
            // As fast as it can, ignoring every retry hint.
            while !stop.load(Ordering::Acquire) {
                let request = batch("flooder", &session, next_id..next_id + FLOOD_BATCH, &topic);
                let ack = client.emit_batch(request).await.unwrap().into_inner();
                tally.add(&ack);
                next_id += u64::from(ack.accepted);
            }
            tally
        }
    });
    let modest_runs: Vec<_> = modest
        .iter()
        .map(|session| {
            let (mut client, session, topic) = (client.clone(), session.clone(), topic.clone());
            tokio::spawn(async move {
                let (mut tally, mut next_id) = (Tally::default(), 1);
                let mut ticks = tokio::time::interval(MODEST_PERIOD);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for _ in 0..MODEST_BATCHES {
                    ticks.tick().await;
                    let request = batch("modest", &session, next_id..next_id + MODEST_BATCH, &topic);
                    let ack = client.emit_batch(request).await.unwrap().into_inner();
                    tally.add(&ack);
                    next_id += u64::from(ack.accepted);
                }
                tally
            })
        })
        .collect();
    let mut modest_tallies = Vec::new();
    for run in modest_runs {
        modest_tallies.push(run.await.expect("modest sender"));
    }
    stop.store(true, Ordering::Release);
    let flood = flood.await.expect("flooder");

    let total: u64 = flood.accepted + modest_tallies.iter().map(|t| t.accepted).sum::<u64>();
    let equal_share = total / (MODEST as u64 + 1);
    eprintln!("flooder {flood:?}; modest {modest_tallies:?}; accepted in all {total}, equal share {equal_share}");
    assert!(flood.queue_full > 0, "the flooder was pushed back");
    assert!(metric(&sidecar, "kafka_sidecar_fair_share_refusals_total{client=\"flooder\"}").await > 0.0);
    for tally in &modest_tallies {
        // Max-min fairness: a sender is owed what it asked for, up to an equal share.
        let fair = tally.offered.min(equal_share);
        assert!(tally.accepted * 2 >= fair, "a modest sender kept half its fair share: {tally:?} of {fair}");
    }
    assert!(flood.accepted >= modest_tallies.iter().map(|t| t.accepted).max().unwrap(), "nor is the flooder starved");

    cluster.broker_round_trip_time(BROKER, Duration::ZERO).expect("fast broker");
    eventually(Duration::from_secs(60), "every accepted record delivered", async || {
        let expected = std::iter::once(&flood).chain(&modest_tallies).map(|t| t.accepted + 1);
        reports.iter().zip(expected).all(|(delivered, expected)| delivered.load(Ordering::Acquire) == expected)
    })
    .await;
    assert_eq!(sidecar.stop().await.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_share_a_sender_is_refused_while_others_are_admitted() {
    const CAPACITY: u64 = 64 * 1024;
    const CONTENDED_ABOVE: u64 = CAPACITY - CAPACITY / 4;
    const SESSIONS: usize = 5;

    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = unique("share");
    cluster.create_topic(&topic, 1, 1).expect("topic");
    let mut config = test_config(&cluster.bootstrap_servers());
    config.producer.max_buffered_bytes = CAPACITY;
    config.producer.max_record_bytes = 2048;
    config.producer.delivery_timeout_ms = 120_000;
    // Senders stay counted for twice the longest hint: all of them, however slow this machine is.
    config.producer.max_retry_after_ms = 30_000;
    let sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let http = reqwest::Client::new();
    let url = sidecar.http_url(&format!("/producers/{topic}"));
    let post = |records: usize| {
        let record = format!(r#"{{"value":"{}"}}"#, "x".repeat(VALUE_BYTES));
        let body = format!(r#"{{"valueFormat":"string","records":[{}]}}"#, vec![record; records].join(","));
        http.post(&url).header("x-client-id", "http-worker").body(body).send()
    };

    // Six senders, each seen once: five sessions and a session-less HTTP client.
    let sessions: Vec<String> = (0..SESSIONS).map(|_| unique("session")).collect();
    let mut reports = Vec::new();
    for session in &sessions {
        let ack = client.emit_batch(batch("grpc-worker", session, 0..1, &topic)).await.unwrap().into_inner();
        assert_eq!(ack.accepted, 1);
        reports.push(count_reports(client.clone(), session.clone()));
    }
    assert_eq!(post(1).await.unwrap().status().as_u16(), 200);
    eventually(Duration::from_secs(30), "warm-up deliveries", async || {
        reports.iter().all(|delivered| delivered.load(Ordering::Acquire) == 1)
    })
    .await;
    let senders = SESSIONS as u64 + 1;
    assert_eq!(metric(&sidecar, "kafka_sidecar_admission_senders").await, senders as f64);

    // Nothing drains from now on, so every admitted byte stays held.
    cluster.broker_down(BROKER).expect("broker down");
    let size = (topic.len() + VALUE_BYTES) as u64 + RECORD_OVERHEAD_BYTES;
    let share = CAPACITY / senders;

    // One session takes three quarters freely, then is refused: it holds more than its share.
    let ack = client.emit_batch(batch("grpc-worker", &sessions[0], 1..201, &topic)).await.unwrap().into_inner();
    let mut flooder = Tally::default();
    flooder.add(&ack);
    assert_eq!(flooder.accepted, CONTENDED_ABOVE / size, "uncontended up to three quarters");
    let refused = &ack.acks[ack.accepted as usize];
    assert_eq!(refused.error_code, "QUEUE_FULL");
    assert!(refused.error_message.contains("fair share"), "{}", refused.error_message);
    assert!((20..=30_000).contains(&refused.retry_after_ms), "hint within floor and cap: {}", refused.retry_after_ms);
    let mut used = flooder.accepted * size;

    // HTTP, within its share, is admitted whole (and waits: nothing drains)...
    let records = share / size / 2 + 1;
    let pending = tokio::spawn(post(records as usize));
    used += records * size;
    eventually(Duration::from_secs(30), "the HTTP request admitted", async || {
        metric(&sidecar, "kafka_sidecar_queue_bytes").await == used as f64
    })
    .await;
    // ...and its next request, which would take it over its share, is refused whole although
    // it would fit.
    assert!(2 * records * size > share && used + records * size <= CAPACITY, "the arithmetic of this test");
    let refused = post(records as usize).await.unwrap();
    assert_eq!(refused.status().as_u16(), 429);
    let hint: u64 = refused.headers()["x-retry-after-ms"].to_str().unwrap().parse().unwrap();
    assert!((20..=30_000).contains(&hint), "{hint}");
    let status: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(status["code"], "QUEUE_FULL");

    // Another session, holding nothing, is admitted up to its share or until the budget is full.
    let ack = client.emit_batch(batch("grpc-worker", &sessions[1], 1..201, &topic)).await.unwrap().into_inner();
    let mut other = Tally::default();
    other.add(&ack);
    assert_eq!(other.accepted, ((CAPACITY - used) / size).min(share / size));
    assert!(other.accepted > 0);
    assert!(metric(&sidecar, "kafka_sidecar_fair_share_refusals_total{client=\"grpc-worker\"}").await >= 1.0);
    assert!(metric(&sidecar, "kafka_sidecar_fair_share_refusals_total{client=\"http-worker\"}").await >= 1.0);

    cluster.broker_up(BROKER).expect("broker up");
    let response = tokio::time::timeout(Duration::from_secs(60), pending).await.expect("in time").unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    eventually(Duration::from_secs(60), "every accepted record delivered", async || {
        reports[0].load(Ordering::Acquire) == 1 + flooder.accepted
            && reports[1].load(Ordering::Acquire) == 1 + other.accepted
    })
    .await;
    assert_eq!(sidecar.stop().await.undelivered, 0);
}
