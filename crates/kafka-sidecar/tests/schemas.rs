//! Schema formats over HTTP against a real broker and a real Confluent-compatible registry: each
//! format round-trips on key and value through produce and the active consumer; schemas are
//! selected inline, by id, by version and by latest; bad records are refused naming the field;
//! the registry is asked once per schema; a warm cache keeps working while the registry is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod schema_support;
mod support;

use std::time::Duration;

use consumer_support::{RestConsumer, consumer_sidecar};
use schema_support::{register, register_answer, registry, set_compatibility};
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, read_back, unique};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

const USER_AVRO: &str = r#"{"type": "record", "name": "User", "namespace": "test", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "email", "type": ["null", "string"], "default": null},
    {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["FREE", "PRO"]}}]}"#;

/// [`USER_AVRO`] in a namespace of its own. The registry dedupes schemas by a fingerprint that
/// ignores field defaults, so tests that register variants must not share a namespace.
fn user_avro_in_own_namespace() -> String {
    USER_AVRO.replace(r#""namespace": "test""#, &format!(r#""namespace": "{}""#, unique("ns").replace('-', "_")))
}

const ORDER_PROTO: &str = r#"syntax = "proto3";
package test;
message Order {
  string id = 1;
  int64 cents = 2;
  repeated Line lines = 3;
}
message Line {
  string sku = 1;
  int32 quantity = 2;
}
"#;

const ADDRESS_JSON_SCHEMA: &str = r#"{"type": "object", "required": ["street", "zip"],
    "properties": {"street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
    "additionalProperties": false}"#;

async fn schema_sidecar(bootstrap: &str, registry_url: &str) -> TestSidecar {
    let url = registry_url.to_string();
    consumer_sidecar(bootstrap, move |config| config.schema_registry.url = url).await
}

async fn post(sidecar: &TestSidecar, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(sidecar.http_url(path))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("sidecar answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn produce(sidecar: &TestSidecar, topic: &str, body: Value) -> (u16, Value) {
    post(sidecar, &format!("/producers/{topic}"), "application/json", &body).await
}

/// Reads `count` records of `topic` back through a new active-consumer instance in `format`.
async fn consume(sidecar: &TestSidecar, topic: &str, format: &str, count: usize) -> Vec<Value> {
    let consumer = RestConsumer::create(
        sidecar,
        &unique("schema-group"),
        json!({"format": format, "auto.offset.reset": "earliest"}),
    )
    .await;
    consumer.subscribe(&[topic]).await;
    let records = consumer.fetch_until(count, Duration::from_secs(40)).await;
    consumer.delete().await;
    records
}

fn schema_id_in(bytes: &[u8]) -> u32 {
    assert_eq!(bytes[0], 0, "magic byte");
    u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"))
}

async fn metric(sidecar: &TestSidecar, series: &str) -> f64 {
    let text = reqwest::get(sidecar.admin_url("/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_keys_and_values_round_trip_and_the_registry_is_asked_once() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let topic = unique("avro");
    create_topic(bootstrap, &topic, 1).await;
    let sidecar = schema_sidecar(bootstrap, registry_url).await;
    let user = json!({"id": 7, "name": "ada", "email": {"string": "ada@example.com"}, "tier": "PRO"});
    let request = json!({
        "keyFormat": "avro", "keySchema": "\"long\"",
        "valueFormat": 1, "valueSchema": USER_AVRO,
        "records": [{"key": 7, "value": user}, {"key": 8, "value": {"id": 8, "name": "bob", "tier": "FREE"}}],
    });
    let (status, answer) = produce(&sidecar, &topic, request.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (key_id, value_id) = (answer["keySchemaId"].as_u64().unwrap(), answer["value_schema_id"].as_u64().unwrap());
    let registrations =
        metric(&sidecar, "kafka_sidecar_schema_registry_request_seconds_count{operation=\"register\"").await;
    let (status, _) = produce(&sidecar, &topic, request).await;
    assert_eq!(status, 200);
    let after = metric(&sidecar, "kafka_sidecar_schema_registry_request_seconds_count").await;
    assert_eq!(registrations, 2.0, "one registration per inline schema");
    assert_eq!(after, 2.0, "the second produce asked the registry nothing");

    let raw = read_back(bootstrap, &topic, 4, Duration::from_secs(20));
    let first = &raw[0];
    assert_eq!(u64::from(schema_id_in(first.value.as_deref().unwrap())), value_id);
    assert_eq!(u64::from(schema_id_in(first.key.as_deref().unwrap())), key_id);
    // long 7 zigzags to 14; the value starts id (long 7 = 0x0e), "ada" (len 3 = 0x06).
    assert_eq!(&first.key.as_deref().unwrap()[5..], &[0x0e]);
    assert_eq!(&first.value.as_deref().unwrap()[5..10], &[0x0e, 0x06, b'a', b'd', b'a']);

    let records = consume(&sidecar, &topic, "avro", 4).await;
    assert_eq!(records[0]["key"], json!(7));
    assert_eq!(records[0]["value"], user, "unions come back wrapped, enums as symbols");
    assert_eq!(records[1]["value"]["email"], Value::Null, "the default filled the missing union");
    assert_eq!(records[0]["value_schema_id"].as_u64(), Some(value_id));
    assert_eq!(records[0]["key_schema_id"].as_u64(), Some(key_id));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protobuf_and_json_schema_round_trip_through_the_v2_paths() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let (orders, addresses) = (unique("proto"), unique("jsonschema"));
    create_topic(bootstrap, &orders, 2).await;
    create_topic(bootstrap, &addresses, 1).await;
    let sidecar = schema_sidecar(bootstrap, registry_url).await;

    let order = json!({"id": "o-1", "cents": "1250", "lines": [{"sku": "A", "quantity": 2}]});
    let body = json!({"value_schema": ORDER_PROTO, "records": [{"value": order}]});
    let (status, answer) =
        post(&sidecar, &format!("/topics/{orders}/partitions/1"), "application/vnd.kafka.protobuf.v2+json", &body)
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offsets"][0]["partition"], json!(1));
    let raw = read_back(bootstrap, &orders, 1, Duration::from_secs(20));
    let value = raw[0].value.as_deref().unwrap();
    assert_eq!(u64::from(schema_id_in(value)), answer["value_schema_id"].as_u64().unwrap());
    assert_eq!(value[5], 0x00, "the first message's index list is the single byte 0");
    let records = consume(&sidecar, &orders, "protobuf", 1).await;
    assert_eq!(records[0]["value"], order);

    let address = json!({"street": "1 Main St", "zip": "12345"});
    let body = json!({"key_schema": "{\"type\": \"string\"}", "value_schema": ADDRESS_JSON_SCHEMA,
        "records": [{"key": "home", "value": address}]});
    let (status, answer) =
        post(&sidecar, &format!("/topics/{addresses}"), "application/vnd.kafka.jsonschema.v2+json", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["key_schema_id"].is_u64() && answer["value_schema_id"].is_u64(), "{answer}");
    let raw = read_back(bootstrap, &addresses, 1, Duration::from_secs(20));
    assert_eq!(&raw[0].value.as_deref().unwrap()[5..], address.to_string().as_bytes());
    let records = consume(&sidecar, &addresses, "jsonschema", 1).await;
    assert_eq!((records[0]["key"].clone(), records[0]["value"].clone()), (json!("home"), address));

    // v2 names no schema for records that have keys (values): Confluent's 42201 (42202), no guess.
    let avro = "application/vnd.kafka.avro.v2+json";
    let keys_only_value_schema = json!({"value_schema": "\"string\"", "records": [{"key": "k", "value": "v"}]});
    let values_without_schema = json!({"records": [{"value": "v"}]});
    for (body, code, machine) in
        [(keys_only_value_schema, 42201, "KEY_SCHEMA_MISSING"), (values_without_schema, 42202, "VALUE_SCHEMA_MISSING")]
    {
        let (status, answer) = post(&sidecar, &format!("/topics/{addresses}"), avro, &body).await;
        assert_eq!((status, answer["error_code"].clone(), answer["code"].clone()), (422, json!(code), json!(machine)));
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemas_are_selected_by_id_version_and_latest_and_bad_records_name_the_field() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let topic = unique("select");
    create_topic(bootstrap, &topic, 1).await;
    let subject = format!("{topic}-value");
    let user_avro = user_avro_in_own_namespace();
    let v1 = register(&subject, "AVRO", &user_avro, json!([])).await;
    let with_age = user_avro.replace(
        r#"{"name": "id", "type": "long"},"#,
        r#"{"name": "id", "type": "long"}, {"name": "age", "type": "int", "default": 0},"#,
    );
    let v2 = register(&subject, "AVRO", &with_age, json!([])).await;
    assert_ne!(v1, v2);
    let sidecar = schema_sidecar(bootstrap, registry_url).await;
    let user = json!({"id": 1, "name": "a", "email": null, "tier": "FREE"});
    let cases = [
        (json!({"valueSchemaId": v1}), v1),
        (json!({"valueSchemaVersion": 1, "valueSchemaSubject": subject}), v1),
        (json!({"valueSchemaVersion": 2}), v2),
        (json!({}), v2),
    ];
    for (selection, expected) in cases {
        let mut request = json!({"valueFormat": "avro", "records": [{"value": user}]});
        request.as_object_mut().unwrap().extend(selection.as_object().unwrap().clone());
        let (status, answer) = produce(&sidecar, &topic, request.clone()).await;
        assert_eq!((status, answer["valueSchemaId"].as_u64()), (200, Some(u64::from(expected))), "{request}: {answer}");
    }

    let bad = [
        (json!({"id": "x", "name": "a", "tier": "FREE"}), 422, "records[1].value.id"),
        (json!({"id": 1, "tier": "FREE"}), 422, "records[1].value.name"),
        (json!({"id": 1, "name": "a", "tier": "GOLD"}), 422, "records[1].value.tier"),
    ];
    for (value, status, field) in bad {
        let request =
            json!({"valueFormat": "avro", "valueSchemaId": v1, "records": [{"value": user}, {"value": value}]});
        let (got, answer) = produce(&sidecar, &topic, request).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["code"], json!("RECORD_INVALID"));
        assert!(answer["message"].as_str().unwrap().contains(field), "{answer} names {field}");
    }
    let (status, answer) = produce(&sidecar, &topic, json!({"keyFormat": "binary", "records": [{"key": "%%%"}]})).await;
    assert_eq!((status, answer["code"].clone()), (400, json!("INVALID_BASE64")));
    let (status, answer) =
        produce(&sidecar, &topic, json!({"valueFormat": "avro", "valueSchemaId": 999_999, "records": [{"value": 1}]}))
            .await;
    assert_eq!((status, answer["code"].clone()), (404, json!("SCHEMA_NOT_FOUND")), "{answer}");
    // The registry's 404 is remembered for a while: asking again costs it nothing.
    let asked =
        metric(&sidecar, "kafka_sidecar_schema_registry_request_seconds_count{operation=\"schema_by_id\"").await;
    let (status, answer) =
        produce(&sidecar, &topic, json!({"valueFormat": "avro", "valueSchemaId": 999_999, "records": [{"value": 1}]}))
            .await;
    assert_eq!((status, answer["code"].clone()), (404, json!("SCHEMA_NOT_FOUND")), "{answer}");
    let asked_again =
        metric(&sidecar, "kafka_sidecar_schema_registry_request_seconds_count{operation=\"schema_by_id\"").await;
    assert_eq!(asked_again, asked, "the unknown id was answered from memory");
    let (status, answer) =
        produce(&sidecar, &topic, json!({"valueFormat": "protobuf", "valueSchemaId": v1, "records": [{"value": {}}]}))
            .await;
    assert_eq!((status, answer["code"].clone()), (422, json!("SCHEMA_INVALID")), "avro id for protobuf: {answer}");
    // Ask for one more than the good requests made: nothing else may turn up.
    let produced = read_back(bootstrap, &topic, 5, Duration::from_secs(8));
    assert_eq!(produced.len(), 4, "only the four good requests were produced");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incompatible_schema_is_refused_with_the_registry_409() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let topic = unique("compat");
    create_topic(bootstrap, &topic, 1).await;
    let subject = format!("{topic}-value");
    set_compatibility(&subject, "BACKWARD").await;
    let user_avro = user_avro_in_own_namespace();
    register(&subject, "AVRO", &user_avro, json!([])).await;
    let breaking = user_avro.replace(
        r#"{"name": "id", "type": "long"},"#,
        r#"{"name": "id", "type": "long"}, {"name": "age", "type": "int"},"#,
    );
    let (registry_status, _) = register_answer(&unique("scratch"), "AVRO", &breaking, json!([])).await;
    assert_eq!(registry_status, 200, "the schema itself is valid");
    let sidecar = schema_sidecar(bootstrap, registry_url).await;
    let value = json!({"id": 1, "age": 3, "name": "a", "email": null, "tier": "FREE"});
    let (status, answer) = produce(
        &sidecar,
        &topic,
        json!({"valueFormat": "avro", "valueSchema": breaking, "records": [{"value": value}]}),
    )
    .await;
    assert_eq!((status, answer["code"].clone()), (409, json!("SCHEMA_INCOMPATIBLE")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains(&subject), "{answer}");
    sidecar.stop().await;
}

/// A TCP proxy to the registry that the test can cut: the registry "goes down" for the sidecar
/// without disturbing other tests that share it.
async fn cuttable_proxy(target: String) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let (cut, cut_seen) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if *cut_seen.borrow() {
                continue; // dropped: the connection is refused-like
            }
            let target = target.clone();
            let mut cut_seen = cut_seen.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                tokio::select! {
                    _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut_seen.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    (format!("http://{address}"), cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_schemas_keep_working_while_the_registry_is_down() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let topic = unique("down");
    create_topic(bootstrap, &topic, 1).await;
    let warm = register(&unique("warm"), "AVRO", "\"string\"", json!([])).await;
    let cold = register(&unique("cold"), "AVRO", "\"int\"", json!([])).await;
    let (proxy, cut) = cuttable_proxy(registry_url.trim_start_matches("http://").to_string()).await;
    // A dead URL first: failover moves on to the proxy.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("address");
    let sidecar = schema_sidecar(bootstrap, &format!("http://{dead},{proxy}")).await;
    let by_id =
        |id: u32, value: Value| json!({"valueFormat": "avro", "valueSchemaId": id, "records": [{"value": value}]});
    let (status, answer) = produce(&sidecar, &topic, by_id(warm, json!("hello"))).await;
    assert_eq!(status, 200, "failover to the second URL: {answer}");

    cut.send(true).expect("cut");
    let (status, answer) = produce(&sidecar, &topic, by_id(warm, json!("still here"))).await;
    assert_eq!(status, 200, "a cached schema needs no registry: {answer}");
    let response = reqwest::Client::new()
        .post(sidecar.http_url(&format!("/producers/{topic}")))
        .json(&by_id(cold, json!(5)))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some(), "a retry hint");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["code"], json!("SCHEMA_REGISTRY_UNAVAILABLE"));

    cut.send(false).expect("heal");
    support::eventually(Duration::from_secs(10), "the registry is back", async || {
        produce(&sidecar, &topic, by_id(cold, json!(5))).await.0 == 200
    })
    .await;
    let records = consume(&sidecar, &topic, "avro", 3).await;
    let values: Vec<Value> = records.iter().map(|record| record["value"].clone()).collect();
    assert_eq!(values, [json!("hello"), json!("still here"), json!(5)]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn references_to_other_subjects_resolve_for_avro_named_types_and_protobuf_imports() {
    let (bootstrap, registry_url) = (broker(), registry().await);
    let (users, orders) = (unique("avro-refs"), unique("proto-refs"));
    create_topic(bootstrap, &users, 1).await;
    create_topic(bootstrap, &orders, 1).await;
    let namespace = unique("ns").replace('-', "_");
    let address = format!(
        r#"{{"type": "record", "name": "Address", "namespace": "{namespace}",
            "fields": [{{"name": "city", "type": "string"}}]}}"#
    );
    let address_subject = unique("address");
    register(&address_subject, "AVRO", &address, json!([])).await;
    let user = format!(
        r#"{{"type": "record", "name": "User", "namespace": "{namespace}",
            "fields": [{{"name": "name", "type": "string"}}, {{"name": "home", "type": "{namespace}.Address"}}]}}"#
    );
    let reference = json!([{"name": format!("{namespace}.Address"), "subject": address_subject, "version": 1}]);
    register(&format!("{users}-value"), "AVRO", &user, reference).await;

    let package = unique("pkg").replace('-', "_");
    let money = format!("syntax = \"proto3\";\npackage {package};\nmessage Money {{\n  int64 cents = 1;\n}}\n");
    let money_subject = unique("money");
    register(&money_subject, "PROTOBUF", &money, json!([])).await;
    let order = format!(
        "syntax = \"proto3\";\npackage {package};\nimport \"money.proto\";\n\
         message Order {{\n  string id = 1;\n  Money total = 2;\n}}\n"
    );
    let import = json!([{"name": "money.proto", "subject": money_subject, "version": 1}]);
    register(&format!("{orders}-value"), "PROTOBUF", &order, import).await;

    let sidecar = schema_sidecar(bootstrap, registry_url).await;
    let user_value = json!({"name": "ada", "home": {"city": "London"}});
    let (status, answer) =
        produce(&sidecar, &users, json!({"valueFormat": "avro", "records": [{"value": user_value}]})).await;
    assert_eq!(status, 200, "latest of the subject, with its reference: {answer}");
    let order_value = json!({"id": "o-9", "total": {"cents": "995"}});
    let (status, answer) =
        produce(&sidecar, &orders, json!({"valueFormat": "protobuf", "records": [{"value": order_value}]})).await;
    assert_eq!(status, 200, "latest of the subject, with its import: {answer}");

    assert_eq!(consume(&sidecar, &users, "avro", 1).await[0]["value"], user_value);
    assert_eq!(consume(&sidecar, &orders, "protobuf", 1).await[0]["value"], order_value);
    sidecar.stop().await;
}
