//! The reactive consumer with schema formats, against a real broker, a real registry and a real
//! HTTP backend: records written by another producer in Confluent's wire format reach the backend
//! as decoded JSON with their schema id; a record not in the wire format is dead-lettered with the
//! reason, never dropped, and the commit still passes it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod reactive_support;
mod schema_support;
mod support;

use std::time::Duration;

use consumer_support::committed;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use reactive_support::{TestBackend, accept_all};
use schema_support::{register, registry};
use serde_json::json;
use support::{TestSidecar, broker, create_topic, eventually, read_back, unique};

/// An avro `{"id": long, "name": string}` in the wire format, as any Confluent serializer writes it.
fn framed_user(schema_id: u32, id: u8, name: &str) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&schema_id.to_be_bytes());
    bytes.push(id * 2); // zigzag long, small ids only
    bytes.push(u8::try_from(name.len() * 2).expect("short name"));
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_records_reach_the_backend_decoded_and_undecodable_ones_are_dead_lettered() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let (topic, group) = (unique("reactive-avro"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    let namespace = unique("ns").replace('-', "_");
    let schema = format!(
        r#"{{"type": "record", "name": "User", "namespace": "{namespace}",
            "fields": [{{"name": "id", "type": "long"}}, {{"name": "name", "type": "string"}}]}}"#
    );
    let id = register(&format!("{topic}-value"), "AVRO", &schema, json!([])).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("producer");
    let values = [framed_user(id, 1, "ada"), b"plain text, not avro".to_vec(), framed_user(id, 2, "bob")];
    for value in &values {
        let record = FutureRecord::to(&topic).key("k").payload(value);
        producer.send(record, Duration::from_secs(10)).await.expect("produced");
    }

    let backend = TestBackend::start(accept_all(), 0).await;
    let mut config = consumer_support::reactive_config(bootstrap, &topic, &group, &backend.url(), 3);
    config.schema_registry.url = registry_url.to_string();
    config.reactive_consumer.key_format = kafka_sidecar::config::EmbeddedFormatName::String;
    config.reactive_consumer.value_format = kafka_sidecar::config::EmbeddedFormatName::Avro;
    let sidecar = TestSidecar::start(config).await;
    eventually(Duration::from_secs(60), "the commit past every record", async || {
        committed(bootstrap, &group, &topic, 1) == vec![3]
    })
    .await;

    let pushed = backend.pushes();
    let decoded: Vec<_> = pushed.iter().map(|record| (record["offset"].clone(), record["value"].clone())).collect();
    assert_eq!(decoded, [(json!(0), json!({"id": 1, "name": "ada"})), (json!(2), json!({"id": 2, "name": "bob"}))]);
    assert!(pushed.iter().all(|record| record["value_schema_id"] == json!(id) && record["key"] == json!("k")));

    let dead_letters = read_back(bootstrap, &format!("{topic}.dlq"), 1, Duration::from_secs(10));
    assert_eq!(dead_letters.len(), 1);
    assert_eq!(dead_letters[0].value.as_deref(), Some(values[1].as_slice()), "the original bytes");
    let reason = dead_letters[0]
        .headers
        .iter()
        .find(|(name, _)| name == "kafka-sidecar-dlq-error")
        .map(|(_, value)| String::from_utf8_lossy(value).to_string())
        .unwrap_or_default();
    assert!(reason.contains("not in the schema registry's wire format"), "reason: {reason}");
    sidecar.stop().await;
}
