//! gRPC produce with schema formats, over a real socket against a real broker and a real schema
//! registry: JSON keys and values become Confluent wire format (magic 0, schema id, body) that an
//! independent consumer reads back; a record that does not fit is refused alone; without a
//! registry, specs are UNSUPPORTED_FORMAT; an unreachable registry refuses the rest of the batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod schema_support;
mod support;

use std::time::Duration;

use bytes::Bytes;
use kafka_sidecar::schema::{Schema, SchemaKind};
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use schema_support::{register, registry};
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, read_back, test_config, unique};

const USER: &str =
    r#"{"type":"record","name":"User","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;

fn record(topic: &str, key: Option<&str>, value: &str, id: u64) -> pb::ProduceRequest {
    pb::ProduceRequest {
        topic: topic.to_string(),
        key: key.map(|key| Bytes::from(key.to_string())),
        value: Bytes::from(value.to_string()),
        record_id: id,
        ..Default::default()
    }
}

fn avro(schema: &str) -> pb::SchemaSpec {
    pb::SchemaSpec { format: "avro".into(), schema: schema.into(), ..Default::default() }
}

/// Magic byte 0 and the big-endian schema id, then `body`.
fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

async fn latest_id(subject: &str) -> u32 {
    let url = format!("{}/subjects/{subject}/versions/latest", registry().await);
    let answer: Value = reqwest::get(url).await.expect("registry answers").json().await.expect("json");
    u32::try_from(answer["id"].as_u64().expect("id")).expect("small id")
}

async fn sidecar_with_registry() -> TestSidecar {
    let mut config = test_config(broker());
    config.schema_registry.url = registry().await.to_string();
    TestSidecar::start(config).await
}

fn codes(ack: &pb::ProduceBatchAck) -> Vec<&str> {
    ack.acks.iter().map(|ack| if ack.received { "OK" } else { ack.error_code.as_str() }).collect()
}

fn error_code(status: &tonic::Status) -> Option<&str> {
    status.metadata().get("kafka-sidecar-error-code").and_then(|value| value.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_avro_values_arrive_framed_and_misfits_are_refused_alone() {
    let topic = unique("grpc-avro");
    create_topic(broker(), &topic, 1).await;
    let sidecar = sidecar_with_registry().await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let mut keyed = record(&topic, Some("\"k\""), r#"{"id": 1, "name": "a"}"#, 1);
    keyed.key_schema = Some(avro("\"string\""));
    let batch = pb::ProduceBatch {
        batch_id: 7,
        value_schema: Some(avro(USER)),
        records: vec![
            keyed,
            record(&topic, None, r#"{"id": "one", "name": "b"}"#, 2),
            record(&topic, None, "{not json", 3),
            record(&topic, None, r#"{"id": 2, "name": "c"}"#, 4),
        ],
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("emit_batch").into_inner();
    assert_eq!(codes(&ack), vec!["OK", "RECORD_INVALID", "RECORD_INVALID", "OK"], "{ack:?}");
    assert_eq!((ack.accepted, ack.rejected, ack.retry_after_ms), (2, 2, 0));
    assert!(ack.acks[1].error_message.starts_with("records[1].value.id"), "{}", ack.acks[1].error_message);
    assert!(ack.acks[2].error_message.starts_with("records[2].value is not JSON"), "{}", ack.acks[2].error_message);

    let value_id = latest_id(&format!("{topic}-value")).await;
    let key_id = latest_id(&format!("{topic}-key")).await;
    let records = read_back(broker(), &topic, 2, Duration::from_secs(30));
    assert_eq!(records.len(), 2, "the two records that fit are in the topic");
    // An avro record {"id": long 1, "name": "a"} is zigzag 1, length 1, "a".
    assert_eq!(records[0].value.as_deref(), Some(&framed(value_id, &[0x02, 0x02, 0x61])[..]));
    assert_eq!(records[0].key.as_deref(), Some(&framed(key_id, &[0x02, b'k'])[..]));
    assert_eq!(records[1].key, None, "an absent key stays absent");
    // The second decodes with the schema, as any Confluent consumer would.
    let schema = Schema::parse(value_id, SchemaKind::Avro, USER, &[]).expect("schema");
    let value = records[1].value.as_deref().expect("value");
    assert_eq!(value[..5], framed(value_id, &[])[..]);
    assert_eq!(schema.decode_body(&value[5..]).expect("decodes"), json!({"id": 2, "name": "c"}));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_schemas_are_used_by_id_version_or_latest_and_emit_answers_with_a_status() {
    let topic = unique("grpc-by-id");
    create_topic(broker(), &topic, 1).await;
    let subject = unique("users");
    let id = register(&subject, "AVRO", USER, json!([])).await;
    let sidecar = sidecar_with_registry().await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let by_id = pb::SchemaSpec { format: "AVRO".into(), id: Some(id), ..Default::default() };
    let by_version =
        pb::SchemaSpec { format: "avro".into(), version: Some(1), subject: subject.clone(), ..Default::default() };
    let latest = pb::SchemaSpec { format: "Avro".into(), subject: subject.clone(), ..Default::default() };
    let mut own_spec = record(&topic, None, r#"{"id": 3, "name": "a"}"#, 3);
    own_spec.value_schema = Some(latest);
    let batch = pb::ProduceBatch {
        value_schema: Some(by_id.clone()),
        records: vec![
            record(&topic, None, r#"{"id": 1, "name": "a"}"#, 1),
            pb::ProduceRequest {
                value_schema: Some(by_version),
                ..record(&topic, None, r#"{"id": 2, "name": "a"}"#, 2)
            },
            own_spec,
        ],
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("emit_batch").into_inner();
    assert_eq!(codes(&ack), vec!["OK", "OK", "OK"], "{ack:?}");

    let single = pb::ProduceRequest {
        value_schema: Some(by_id.clone()),
        ..record(&topic, None, r#"{"id": 4, "name": "a"}"#, 4)
    };
    let ack = client.emit(single).await.expect("emit").into_inner();
    assert!(ack.received);
    let misfit = pb::ProduceRequest { value_schema: Some(by_id.clone()), ..record(&topic, None, r#"{"id": 5}"#, 5) };
    let status = client.emit(misfit).await.expect_err("does not fit");
    assert_eq!((status.code(), error_code(&status)), (tonic::Code::InvalidArgument, Some("RECORD_INVALID")));
    assert!(status.message().starts_with("value"), "{}", status.message());
    let unknown = pb::SchemaSpec { id: Some(2_000_000_000), ..by_id };
    let status = client
        .emit(pb::ProduceRequest { value_schema: Some(unknown), ..record(&topic, None, "{}", 6) })
        .await
        .expect_err("no such schema");
    assert_eq!(error_code(&status), Some("SCHEMA_NOT_FOUND"));

    let records = read_back(broker(), &topic, 4, Duration::from_secs(30));
    let bodies: Vec<Vec<u8>> = records.iter().map(|record| record.value.clone().expect("value")).collect();
    let expected: Vec<Vec<u8>> = (1u8..=4).map(|n| framed(id, &[n * 2, 0x02, 0x61])).collect();
    assert_eq!(bodies, expected, "every record is written with the registered schema's id");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_registry_schema_specs_are_unsupported_and_plain_records_still_go() {
    let topic = unique("grpc-no-registry");
    create_topic(broker(), &topic, 1).await;
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let with_spec = pb::ProduceRequest { value_schema: Some(avro(USER)), ..record(&topic, None, "{}", 2) };
    let batch = pb::ProduceBatch {
        records: vec![record(&topic, None, "plain", 1), with_spec.clone(), record(&topic, None, "plain", 3)],
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("emit_batch").into_inner();
    assert_eq!(codes(&ack), vec!["OK", "UNSUPPORTED_FORMAT", "OK"], "{ack:?}");
    let status = client.emit(with_spec).await.expect_err("no registry");
    assert_eq!((status.code(), error_code(&status)), (tonic::Code::Unimplemented, Some("UNSUPPORTED_FORMAT")));
    assert_eq!(read_back(broker(), &topic, 2, Duration::from_secs(30)).len(), 2);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_refuses_the_rest_of_the_batch_with_a_retry_hint() {
    let topic = unique("grpc-registry-down");
    create_topic(broker(), &topic, 1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
    let mut config = test_config(broker());
    config.schema_registry.url = format!("http://{closed}");
    config.schema_registry.request_timeout_ms = 1_000;
    let sidecar = TestSidecar::start(config).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");

    let batch = pb::ProduceBatch {
        records: vec![
            record(&topic, None, "plain", 1),
            pb::ProduceRequest { value_schema: Some(avro(USER)), ..record(&topic, None, "{}", 2) },
            record(&topic, None, "plain", 3),
        ],
        ..Default::default()
    };
    let ack = client.emit_batch(batch).await.expect("emit_batch").into_inner();
    let unavailable = "SCHEMA_REGISTRY_UNAVAILABLE";
    assert_eq!(codes(&ack), vec!["OK", unavailable, unavailable], "{ack:?}");
    assert!(ack.retry_after_ms > 0, "a retry hint: {ack:?}");
    assert_eq!(read_back(broker(), &topic, 1, Duration::from_secs(30)).len(), 1);
    sidecar.stop().await;
}
