//! Helpers for the consumer API tests: a REST consumer instance driven over real HTTP, records
//! produced by an independent client, and committed offsets read by an independent client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::support::{TestSidecar, test_config, unique};

/// A sidecar whose consumers suit tansu (its JoinGroup waits about session.timeout / 2).
pub async fn consumer_sidecar(bootstrap: &str, tune: impl FnOnce(&mut kafka_sidecar::Config)) -> TestSidecar {
    let mut config = test_config(bootstrap);
    config.consumer.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.properties.insert("heartbeat.interval.ms".into(), "500".into());
    config.consumer.lag_interval_ms = 500;
    tune(&mut config);
    TestSidecar::start(config).await
}

/// A sidecar configuration with the reactive consumer on `topic` pushing to `backend_url`:
/// small batches, four in flight, quick retries (`max_attempts` given), tansu-friendly sessions.
pub fn reactive_config(
    bootstrap: &str,
    topic: &str,
    group: &str,
    backend_url: &str,
    max_attempts: u32,
) -> kafka_sidecar::Config {
    let mut config = crate::support::test_config(bootstrap);
    let reactive = &mut config.reactive_consumer;
    reactive.enabled = true;
    reactive.group_id = group.to_string();
    reactive.topics = vec![topic.to_string()];
    reactive.backend_url = backend_url.to_string();
    reactive.max_in_flight_batches = 4;
    reactive.max_batch_records = 5;
    reactive.retry.initial_backoff_ms = 20;
    reactive.retry.max_backoff_ms = 200;
    reactive.retry.max_attempts = max_attempts;
    config.consumer.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.properties.insert("heartbeat.interval.ms".into(), "500".into());
    config
}

/// Produces `count` records `key-i` / `value-i` with a header, round-robin over partitions.
pub async fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    produce_keyed(bootstrap, topic, partitions, count, usize::MAX).await;
}

/// Like [`produce`], with keys `key-(i % keys)`, so keys repeat (record i goes to partition
/// i % partitions: one key may span partitions, as with a custom partitioner).
pub async fn produce_keyed(bootstrap: &str, topic: &str, partitions: i32, count: usize, keys: usize) {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    for index in 0..count {
        let key = format!("key-{}", index % keys);
        let value = format!("value-{index}");
        let headers = OwnedHeaders::new().insert(Header { key: "origin", value: Some("test") });
        let partition = i32::try_from(index).expect("index") % partitions;
        let record = FutureRecord::to(topic).key(&key).payload(&value).partition(partition).headers(headers);
        producer.send(record, Duration::from_secs(10)).await.expect("produced");
    }
}

/// The group's committed offsets as an independent client reads them (-1 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed");
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        })
        .collect()
}

/// A consumer instance reached over HTTP.
pub struct RestConsumer {
    pub http: reqwest::Client,
    pub base: String,
    pub group: String,
    pub name: String,
}

impl RestConsumer {
    /// Creates an instance in `group` with extra create-body fields.
    pub async fn create(sidecar: &TestSidecar, group: &str, body: Value) -> Self {
        let http = reqwest::Client::new();
        let name = body.get("name").and_then(Value::as_str).map_or_else(|| unique("instance"), str::to_string);
        let mut request = body;
        request["name"] = json!(name);
        let response = http
            .post(sidecar.http_url(&format!("/consumers/{group}")))
            .header("content-type", "application/vnd.kafka.v2+json")
            .json(&request)
            .send()
            .await
            .expect("create");
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
        let created: Value = response.json().await.expect("json");
        assert_eq!(created["instance_id"], json!(name));
        assert_eq!(created["instanceId"], json!(name));
        let base = created["base_uri"].as_str().expect("base_uri").to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "absolute base_uri: {base}");
        Self { http, base, group: group.to_string(), name }
    }

    /// A request to `path` under the instance; returns status and JSON body (Null when empty).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json body") })
    }

    pub async fn subscribe(&self, topics: &[&str]) {
        let (status, body) = self.call(reqwest::Method::POST, "/subscription", Some(json!({"topics": topics}))).await;
        assert_eq!(status, 204, "{body}");
    }

    pub async fn assign(&self, topic: &str, partitions: std::ops::Range<i32>) {
        let partitions: Vec<Value> = partitions.map(|p| json!({"topic": topic, "partition": p})).collect();
        let (status, body) =
            self.call(reqwest::Method::POST, "/assignments", Some(json!({"partitions": partitions}))).await;
        assert_eq!(status, 204, "{body}");
    }

    /// One fetch; panics on a non-200 answer.
    pub async fn fetch(&self, timeout_ms: u64) -> Vec<Value> {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/records?timeout={timeout_ms}"), None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Fetches until `count` records arrived or `within` passed.
    pub async fn fetch_until(&self, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut records = Vec::new();
        while records.len() < count && Instant::now() < deadline {
            records.extend(self.fetch(500).await);
        }
        records
    }

    /// Commits what was returned, as a client should: a 409 means the group is rebalancing, so
    /// it commits again until the rebalance settles.
    pub async fn commit_returned(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.call(reqwest::Method::POST, "/offsets", None).await;
            if status == 409 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, 200, "{body}");
            return;
        }
    }

    /// Partitions the instance owns now.
    pub async fn owned(&self) -> usize {
        let (_, assignment) = self.call(reqwest::Method::GET, "/assignments", None).await;
        assignment["partitions"].as_array().map_or(0, Vec::len)
    }

    pub async fn delete(&self) {
        let response = self.http.delete(&self.base).send().await.expect("delete");
        assert_eq!(response.status(), 204);
    }
}

/// `(partition, offset)` of each record.
pub fn positions(records: &[Value]) -> Vec<(i64, i64)> {
    let mut positions: Vec<(i64, i64)> = records
        .iter()
        .map(|record| (record["partition"].as_i64().expect("partition"), record["offset"].as_i64().expect("offset")))
        .collect();
    positions.sort_unstable();
    positions
}
