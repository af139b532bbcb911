//! The operator routes on the admin port against a real broker: `/admin/info` says what runs,
//! `/admin/config` shows the effective configuration with every secret redacted, and
//! `/admin/logging` reads and changes the live log filter.
//!
//! The log filter's control is process-global (`telemetry::init`); every test here installs it
//! first, so every sidecar in this binary has it whichever test starts first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kafka_sidecar::config::{LogConfig, LogFormat};
use kafka_sidecar::telemetry;
use serde_json::{Value, json};
use support::{TestSidecar, broker, test_config, unique};

/// Installs this process's logging once, quiet enough for test output.
fn install_logging() {
    telemetry::init(&LogConfig { level: "warn".into(), format: LogFormat::Text }).expect("log control");
}

async fn get(url: String) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn put(url: String, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new().put(url).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_names_the_build_and_what_runs() {
    install_logging();
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let (status, info) = get(sidecar.admin_url("/admin/info")).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["name"], "kafka-sidecar");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let commit = info["git_commit"].as_str().unwrap();
    assert!(commit == "unknown" || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{commit}");
    assert!(info["build_time"].as_str().unwrap().ends_with('Z'), "{info}");
    assert!(info["rustc"].as_str().unwrap().starts_with("rustc "), "{info}");
    assert!(chrono::DateTime::parse_from_rfc3339(info["started_at"].as_str().unwrap()).is_ok(), "{info}");
    assert!(info["uptime_seconds"].as_u64().is_some(), "{info}");
    let summary = &info["config"];
    assert_eq!(summary["bootstrap_servers"], broker());
    assert_eq!(summary["dev_broker"], false);
    assert_eq!(summary["reactive_consumer"], false);
    assert_eq!(summary["schema_registry"], false);
    assert_eq!(summary["listeners"]["http"], sidecar.addresses.http.to_string());
    assert_eq!(summary["listeners"]["admin"], sidecar.addresses.admin.to_string());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_comes_back_with_secrets_redacted() {
    install_logging();
    let (registry_password, kafka_password) = (unique("registry-pass"), unique("kafka-pass"));
    let mut config = test_config(broker());
    config.schema_registry.url = "http://127.0.0.1:9".into();
    config.schema_registry.basic_auth_user = Some("sidecar".into());
    config.schema_registry.basic_auth_password = Some(registry_password.as_str().into());
    // Set but unused: the broker speaks plaintext, so librdkafka never sends it.
    config.kafka.properties.insert("sasl.password".into(), kafka_password.clone());
    config.kafka.properties.insert("socket.timeout.ms".into(), "5000".into());
    let sidecar = TestSidecar::start(config).await;

    let response = reqwest::get(sidecar.admin_url("/admin/config")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&registry_password) && !text.contains(&kafka_password), "a secret leaked: {text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["schema_registry"]["basic_auth_password"], "[redacted]");
    assert_eq!(shown["kafka"]["properties"]["sasl.password"], "[redacted]");
    assert_eq!(shown["schema_registry"]["basic_auth_user"], "sidecar");
    assert_eq!(shown["kafka"]["properties"]["socket.timeout.ms"], "5000");
    assert_eq!(shown["kafka"]["bootstrap_servers"], broker());

    let (_, info) = get(sidecar.admin_url("/admin/info")).await;
    assert_eq!(info["config"]["schema_registry"], true);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_reads_and_changes_the_live_filter() {
    install_logging();
    let sidecar = TestSidecar::start(test_config(broker())).await;
    let logging = || sidecar.admin_url("/admin/logging");
    let quiet = "kafka_sidecar::reactive";

    let (status, before) = get(logging()).await;
    assert_eq!(status, 200, "{before}");
    assert!(before["filter"].as_str().is_some() && before["modules"].is_object(), "{before}");

    let (status, applied) = put(logging(), json!({"level": "warn", "modules": {quiet: "debug"}})).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["level"], "warn");
    assert_eq!(applied["modules"][quiet], "debug");
    assert_eq!(get(logging()).await.1, applied);
    // The change is live in this process's subscriber.
    assert!(tracing::enabled!(target: "kafka_sidecar::reactive", tracing::Level::DEBUG));
    assert!(!tracing::enabled!(target: "kafka_sidecar::kafka", tracing::Level::INFO));

    for (body, named) in [
        (json!({"filter": "warn,kafka_sidecar=chatty"}), "chatty"),
        (json!({"level": "loud"}), "loud"),
        (json!({"filter": "warn", "level": "warn"}), "not both"),
    ] {
        let (status, error) = put(logging(), body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["code"], "INVALID_REQUEST");
        assert!(error["message"].as_str().unwrap().contains(named), "{body}: {error}");
    }
    assert_eq!(get(logging()).await.1, applied, "a refused change changes nothing");

    let (status, restored) = put(logging(), json!({"filter": before["filter"]})).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["filter"], before["filter"]);
    sidecar.stop().await;
}
