//! A real Confluent-compatible schema registry for tests: the one `KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY`
//! names, or one started here with `scripts/schema-registry` on the test broker (reaped when the
//! test process exits), and helpers to register schemas the way an application would.
#![allow(dead_code)]

use std::net::TcpListener as StdTcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::support::{broker, unique};

/// The registry's base URL, once it accepts writes.
pub async fn registry() -> &'static str {
    static REGISTRY: OnceCell<String> = OnceCell::const_new();
    REGISTRY
        .get_or_init(|| async {
            let url = match std::env::var("KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY") {
                Ok(url) => url,
                Err(_) => start_registry(broker()),
            };
            wait_until_writable(&url).await;
            url
        })
        .await
}

fn start_registry(bootstrap: &str) -> String {
    let port = StdTcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    spawn_registry(bootstrap, port, &[]);
    format!("http://127.0.0.1:{port}")
}

/// Starts a registry of its own (own schemas topic and election group, so it shares nothing with
/// the shared one) with extra flags, e.g. TLS and basic auth; its URL once it accepts writes
/// through `client`, which must be able to talk to it.
pub async fn start_private_registry(scheme: &str, extra: &[String], client: &reqwest::Client) -> String {
    let port = StdTcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let mut arguments =
        vec!["--schemas-topic".to_string(), unique("_schemas"), "--group-id".to_string(), unique("schema-registry")];
    arguments.extend_from_slice(extra);
    spawn_registry(broker(), port, &arguments);
    let url = format!("{scheme}://127.0.0.1:{port}");
    wait_until_writable_with(&url, client).await;
    url
}

// The watchdog shell outlives this process by design: it reaps the registry when we exit.
#[allow(clippy::zombie_processes)]
fn spawn_registry(bootstrap: &str, port: u16, extra: &[String]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("scripts/schema-registry");
    let output = Command::new(&script).arg("path").output().expect("scripts/schema-registry path");
    assert!(output.status.success(), "scripts/schema-registry failed: {}", String::from_utf8_lossy(&output.stderr));
    let binary = String::from_utf8(output.stdout).expect("utf-8 path").trim().to_string();
    let extra: Vec<String> = extra.iter().map(|argument| format!("'{argument}'")).collect();
    let command = format!(
        "\"{binary}\" --bootstrap-servers {bootstrap} --listen-addr 127.0.0.1:{port} --schemas-topic-rf 1 {} \
         >/dev/null 2>&1 & r=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $r",
        extra.join(" "),
        parent = std::process::id()
    );
    Command::new("sh").arg("-c").arg(command).stdin(Stdio::null()).spawn().expect("start the schema registry");
}

/// Writes answer 503 until the registry has elected itself primary: probe with a deadline.
async fn wait_until_writable(url: &str) {
    wait_until_writable_with(url, &reqwest::Client::new()).await;
}

async fn wait_until_writable_with(url: &str, client: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = format!("{url}/subjects/{}/versions", unique("probe"));
    loop {
        let answer = client
            .post(&probe)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(json!({"schema": "\"string\""}).to_string())
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "the schema registry at {url} did not accept writes within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Registers `schema` of `schema_type` (`AVRO`, `JSON`, `PROTOBUF`) under `subject`; its id.
pub async fn register(subject: &str, schema_type: &str, schema: &str, references: Value) -> u32 {
    let (status, body) = register_answer(subject, schema_type, schema, references).await;
    assert_eq!(status, 200, "registering under {subject}: {body}");
    u32::try_from(body["id"].as_u64().expect("id")).expect("small id")
}

/// The registry's answer to a registration, whatever it is.
pub async fn register_answer(subject: &str, schema_type: &str, schema: &str, references: Value) -> (u16, Value) {
    let mut body = json!({"schema": schema, "references": references});
    if schema_type != "AVRO" {
        body["schemaType"] = json!(schema_type);
    }
    let response = reqwest::Client::new()
        .post(format!("{}/subjects/{subject}/versions", registry().await))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .expect("registry answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sets a subject's compatibility level (e.g. `BACKWARD`).
pub async fn set_compatibility(subject: &str, level: &str) {
    let response = reqwest::Client::new()
        .put(format!("{}/config/{subject}", registry().await))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({"compatibility": level}).to_string())
        .send()
        .await
        .expect("registry answers");
    assert!(response.status().is_success(), "setting compatibility: {}", response.status());
}
