//! The OpenAPI contract against the real sidecar: both listeners serve their document at
//! `/openapi.json`, every route the routers register is documented (and nothing else is), and real
//! answers (produce, both consumer dialects, topic metadata, the admin routes, errors) have a
//! documented status and a body that validates against the documented schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, eventually, test_config, unique};

/// A fetched document and the checks made against it.
struct Contract {
    document: Value,
}

/// One real answer.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl Contract {
    async fn fetch(url: String) -> Self {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["openapi"], "3.1.0", "{document}");
        Self { document }
    }

    /// Checks that `answer` to `method template` is documented: its status, its content type (for a
    /// body), and its body against the schema.
    fn check(&self, method: &str, template: &str, answer: &Answer) {
        let operation = &self.document["paths"][template][method];
        assert!(operation.is_object(), "{method} {template} is not documented");
        let responses = &operation["responses"];
        let documented = responses.get(answer.status.to_string()).or_else(|| responses.get("default"));
        let documented =
            documented.unwrap_or_else(|| panic!("{method} {template}: status {} is not documented", answer.status));
        let media_type = answer.content_type.split(';').next().unwrap_or("").trim().to_string();
        if answer.body.is_null() || !media_type.ends_with("json") {
            return;
        }
        let content = &documented["content"];
        let schema = content
            .get(&media_type)
            .or_else(|| {
                let all = content.as_object()?;
                all.iter().find(|(name, _)| name.starts_with(&media_type)).map(|(_, media)| media)
            })
            .map(|media| &media["schema"])
            .unwrap_or_else(|| panic!("{method} {template} {}: {media_type} is not documented", answer.status));
        // OpenAPI 3.1 schemas are JSON Schema 2020-12; `#/components/...` resolves against a root
        // that holds the components.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&root).unwrap();
        let errors: Vec<String> = validator.iter_errors(&answer.body).map(|error| error.to_string()).collect();
        assert!(errors.is_empty(), "{method} {template} {}: {errors:?}\nbody: {}", answer.status, answer.body);
    }

    /// Every (path, method) the document lists.
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for (path, item) in self.document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                operations.insert((path.clone(), method.clone()));
            }
        }
        operations
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() || !content_type.contains("json") {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{status}: not JSON ({error}): {bytes:?}"))
    };
    Answer { status, content_type, body }
}

/// The `.route(...)` calls of a router source file, as (path, method) pairs. `instance` is the
/// consumer routes' path prefix variable.
fn routes_in(source: &str) -> BTreeSet<(String, String)> {
    let instance = "/consumers/{group}/instances/{instance}";
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        // The call's text up to its closing parenthesis.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(index, _)| index)
            .expect("balanced .route(");
        let call = &call[..end];
        let (path, handlers) = call.split_once(',').expect("path, handlers");
        let path = path.trim();
        let path = if path == "instance" {
            instance.to_string()
        } else {
            let literal = path.split('"').nth(1).unwrap_or_else(|| panic!("route path {path:?}"));
            literal.replace("{instance}/", &format!("{instance}/")).replace("{instance}\"", instance)
        };
        let mut found = false;
        for method in ["get", "post", "put", "delete", "patch"] {
            let pattern = format!("{method}(");
            let calls = handlers.match_indices(&pattern).filter(|(index, _)| {
                // A whole word: `get(`, `.get(`, `routing::delete(`, not `budget(`.
                handlers[..*index].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_')
            });
            if calls.count() > 0 {
                routes.insert((path.clone(), method.to_string()));
                found = true;
            }
        }
        assert!(found, "no method in route {path}: {handlers}");
    }
    routes
}

fn source(file: &str) -> String {
    std::fs::read_to_string(format!("{}/src/http/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_nothing_else() {
    let sidecar = TestSidecar::start(test_config(broker())).await;
    for (contract, files) in [
        (Contract::fetch(sidecar.http_url("/openapi.json")).await, ["mod.rs", "consumers/mod.rs"]),
        (Contract::fetch(sidecar.admin_url("/openapi.json")).await, ["admin.rs", "reactive_admin.rs"]),
    ] {
        let routes: BTreeSet<_> = files.iter().flat_map(|file| routes_in(&source(file))).collect();
        assert!(routes.len() > 5, "{routes:?}");
        let documented = contract.operations();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routes without documentation: {undocumented:?}");
        let stale: Vec<_> = documented.difference(&routes).collect();
        assert!(stale.is_empty(), "documented operations no router serves: {stale:?}");
        // Every error answer is the Status body, its code one of the error code enum.
        let codes = &contract.document["components"]["schemas"]["ErrorCode"]["enum"];
        assert!(codes.as_array().unwrap().iter().any(|code| code == "UNKNOWN_TOPIC"), "{codes}");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_document() {
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let api = Contract::fetch(sidecar.http_url("/openapi.json")).await;
    let admin = Contract::fetch(sidecar.admin_url("/openapi.json")).await;
    let client = reqwest::Client::new();
    let topic = unique("openapi");
    create_topic(broker(), &topic, 2).await;

    // Seed 002 produce: ok, unknown topic, bad base64.
    let produce = "/producers/{topic}";
    let record = json!({"records": [{"key": STANDARD.encode("k"), "value": STANDARD.encode("v"), "partition": 0}]});
    let ok = answer(client.post(sidecar.http_url(&format!("/producers/{topic}"))).json(&record)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    api.check("post", produce, &ok);
    assert_eq!(ok.body["offsets"][0]["partition"], 0);
    let missing =
        answer(client.post(sidecar.http_url(&format!("/producers/{}", unique("absent")))).json(&record)).await;
    assert_eq!((missing.status, missing.body["code"].as_str()), (404, Some("UNKNOWN_TOPIC")), "{}", missing.body);
    api.check("post", produce, &missing);
    let bad = json!({"records": [{"value": "not base64!"}]});
    let bad = answer(client.post(sidecar.http_url(&format!("/producers/{topic}"))).json(&bad)).await;
    assert_eq!((bad.status, bad.body["code"].as_str()), (400, Some("INVALID_BASE64")), "{}", bad.body);
    api.check("post", produce, &bad);

    // Confluent v2 produce, to the topic and to a partition.
    let v2 = json!({"records": [{"value": {"n": 1}, "partition": 1}]});
    let to_topic = client
        .post(sidecar.http_url(&format!("/topics/{topic}")))
        .header("Content-Type", "application/vnd.kafka.json.v2+json")
        .body(v2.to_string());
    let to_topic = answer(to_topic).await;
    assert_eq!(to_topic.status, 200, "{}", to_topic.body);
    api.check("post", "/topics/{topic}", &to_topic);
    let to_partition = client
        .post(sidecar.http_url(&format!("/topics/{topic}/partitions/1")))
        .header("Content-Type", "application/vnd.kafka.json.v2+json")
        .body(v2.to_string());
    let to_partition = answer(to_partition).await;
    assert_eq!(to_partition.body["offsets"][0]["partition"], 1, "{}", to_partition.body);
    api.check("post", "/topics/{topic}/partitions/{partition}", &to_partition);

    // Topic metadata.
    for (template, path) in [
        ("/topics", "/topics".to_string()),
        ("/topics/{topic}", format!("/topics/{topic}")),
        ("/topics/{topic}/partitions", format!("/topics/{topic}/partitions")),
    ] {
        let metadata = answer(client.get(sidecar.http_url(&path))).await;
        assert_eq!(metadata.status, 200, "{path}: {}", metadata.body);
        api.check("get", template, &metadata);
    }

    consume_in_both_dialects(&sidecar, &api, &topic).await;

    // Admin: info, config, logging, the probes, and an error (reactive consumer not enabled).
    for (template, expected) in [
        ("/admin/info", 200),
        ("/admin/config", 200),
        ("/admin/reactive", 404),
        ("/healthz", 200),
        ("/readyz", 200),
        ("/metrics", 200),
    ] {
        let got = answer(client.get(sidecar.admin_url(template))).await;
        assert_eq!(got.status, expected, "{template}: {}", got.body);
        admin.check("get", template, &got);
    }
    let logging = answer(client.get(sidecar.admin_url("/admin/logging"))).await;
    assert!(logging.status == 200 || logging.body["code"] == "LOGGING_NOT_RELOADABLE", "{}", logging.body);
    admin.check("get", "/admin/logging", &logging);
    let refused = answer(client.put(sidecar.admin_url("/admin/logging")).json(&json!({"levels": "info"}))).await;
    assert_eq!(refused.status / 100, 4, "{}", refused.body);
    admin.check("put", "/admin/logging", &refused);
    sidecar.stop().await;
}

/// Create, subscribe, fetch, commit, read committed, delete: seed 002's spellings for some
/// steps and Confluent v2's (vendor media types) for others.
async fn consume_in_both_dialects(sidecar: &TestSidecar, api: &Contract, topic: &str) {
    let client = reqwest::Client::new();
    let vendor = "application/vnd.kafka.v2+json";
    let group = unique("openapi-group");
    let create = json!({"name": "one", "format": "binary", "auto.offset.reset": "earliest"});
    let created = client
        .post(sidecar.http_url(&format!("/consumers/{group}")))
        .header("Content-Type", vendor)
        .header("Accept", vendor)
        .body(create.to_string());
    let created = answer(created).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.content_type.starts_with(vendor), "{}", created.content_type);
    api.check("post", "/consumers/{group}", &created);
    let instance = format!("/consumers/{group}/instances/one");
    let template = "/consumers/{group}/instances/{instance}";

    let subscribe =
        answer(client.post(sidecar.http_url(&format!("{instance}/subscriptions"))).json(&json!({"topics": [topic]})))
            .await;
    assert_eq!(subscribe.status, 204);
    api.check("post", &format!("{template}/subscriptions"), &subscribe);
    let subscription = answer(client.get(sidecar.http_url(&format!("{instance}/subscription")))).await;
    assert_eq!(subscription.body["topics"], json!([topic]));
    api.check("get", &format!("{template}/subscription"), &subscription);

    let records_url = sidecar.http_url(&format!("{instance}/records?timeout=1000"));
    let mut fetched = 0;
    eventually(Duration::from_secs(30), "records fetched", async || {
        let got = answer(client.get(&records_url).header("Accept", "application/vnd.kafka.binary.v2+json")).await;
        assert_eq!(got.status, 200, "{}", got.body);
        api.check("get", &format!("{template}/records"), &got);
        fetched += got.body.as_array().unwrap().len();
        fetched >= 3
    })
    .await;

    let commit = answer(client.post(sidecar.http_url(&format!("{instance}/offsets")))).await;
    assert_eq!(commit.status, 200);
    api.check("post", &format!("{template}/offsets"), &commit);
    let partitions = json!({"partitions": [{"topic": topic, "partition": 0}]});
    let committed =
        answer(client.get(sidecar.http_url(&format!("{instance}/offsets"))).header("Accept", vendor).json(&partitions))
            .await;
    assert_eq!(committed.status, 200, "{}", committed.body);
    assert_eq!(committed.body["offsets"][0]["offset"], 1, "{}", committed.body);
    api.check("get", &format!("{template}/offsets"), &committed);
    let lag = answer(client.get(sidecar.http_url(&format!("/consumers/{group}/lag")))).await;
    api.check("get", "/consumers/{group}/lag", &lag);

    let wrong_format = answer(client.get(&records_url).header("Accept", "application/vnd.kafka.json.v2+json")).await;
    assert_eq!((wrong_format.status, wrong_format.body["code"].as_str()), (406, Some("FORMAT_MISMATCH")));
    api.check("get", &format!("{template}/records"), &wrong_format);
    let deleted = answer(client.delete(sidecar.http_url(&instance))).await;
    assert_eq!(deleted.status, 204);
    api.check("delete", template, &deleted);
    let gone = answer(client.get(&records_url)).await;
    assert_eq!((gone.status, gone.body["code"].as_str()), (404, Some("CONSUMER_NOT_FOUND")), "{}", gone.body);
    assert_eq!(gone.body["error_code"], 40403);
    api.check("get", &format!("{template}/records"), &gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_stay_open_with_auth_on_and_refusals_are_documented() {
    let mut config = test_config(broker());
    config.auth.enabled = true;
    config.auth.hs256_secret = Some("0123456789abcdef0123456789abcdef-openapi-secret".to_string().into());
    let sidecar = TestSidecar::start(config).await;
    let api = Contract::fetch(sidecar.http_url("/openapi.json")).await;
    let admin = Contract::fetch(sidecar.admin_url("/openapi.json")).await;
    let client = reqwest::Client::new();
    let topics = answer(client.get(sidecar.http_url("/topics"))).await;
    assert_eq!((topics.status, topics.body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{}", topics.body);
    api.check("get", "/topics", &topics);
    let info = answer(client.get(sidecar.admin_url("/admin/info"))).await;
    assert_eq!(info.status, 401, "{}", info.body);
    admin.check("get", "/admin/info", &info);
    sidecar.stop().await;
}

#[test]
fn the_route_parser_finds_every_path_and_method() {
    let source = r#"
        .route("/a/{x}", get(handler).post(other))
        .route(instance, axum::routing::delete(delete))
        .route(&format!("{instance}/records"), get(records))
        .route("/budget", put(set_budget(1)))
    "#;
    let routes: Vec<(String, String)> = routes_in(source).into_iter().collect();
    let expected = [
        ("/a/{x}", "get"),
        ("/a/{x}", "post"),
        ("/budget", "put"),
        ("/consumers/{group}/instances/{instance}", "delete"),
        ("/consumers/{group}/instances/{instance}/records", "get"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(routes, expected);
}
