//! Reaching a registry that wants TLS and basic auth: a private registry serves HTTPS with a
//! certificate from a test CA and requires a password. With the CA and the password the sidecar
//! produces; with a wrong password it says the registry refused it; without the CA it says the
//! registry is unavailable and names the certificate problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod schema_support;
mod support;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use schema_support::start_private_registry;
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, unique};

/// A CA and a server certificate for 127.0.0.1 signed by it, written into `dir` by openssl.
fn certificates(dir: &Path) {
    let run = |arguments: &[&str]| {
        let output = Command::new("openssl").args(arguments).current_dir(dir).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca"]]
        .concat());
    run(&[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

async fn produce(sidecar: &TestSidecar, topic: &str) -> (u16, Value) {
    let request = json!({"valueFormat": "avro", "valueSchema": "\"string\"", "records": [{"value": "hi"}]});
    let response =
        reqwest::Client::new().post(sidecar.http_url(&format!("/producers/{topic}"))).json(&request).send().await;
    let response = response.expect("sidecar answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_custom_ca_and_basic_auth_reach_the_registry_and_failures_are_named() {
    let bootstrap = broker();
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path());
    let password = unique("secret");
    let pem = std::fs::read(dir.path().join("ca.pem")).expect("ca");
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("sidecar:{password}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Basic {credentials}").parse().expect("header"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .default_headers(headers)
        .build()
        .expect("client");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let flags = [
        "--tls-cert".into(),
        path("server.pem"),
        "--tls-key".into(),
        path("server.key"),
        "--require-auth".into(),
        "--basic-user".into(),
        format!("sidecar:{password}"),
    ];
    let url = start_private_registry("https", &flags, &client).await;
    let topic = unique("secure");
    create_topic(bootstrap, &topic, 1).await;

    let configured = |password: &str, ca: bool| {
        let mut config = support::test_config(bootstrap);
        config.schema_registry.url = url.clone();
        config.schema_registry.basic_auth_user = Some("sidecar".into());
        config.schema_registry.basic_auth_password = Some(password.into());
        config.schema_registry.ca_file = ca.then(|| dir.path().join("ca.pem"));
        config
    };
    let trusted = TestSidecar::start(configured(&password, true)).await;
    let (status, answer) = produce(&trusted, &topic).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["valueSchemaId"].is_u64(), "{answer}");
    trusted.stop().await;

    let wrong_password = TestSidecar::start(configured("not-it", true)).await;
    let (status, answer) = produce(&wrong_password, &topic).await;
    assert_eq!((status, answer["code"].clone()), (502, json!("SCHEMA_REGISTRY_REFUSED")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("401"), "{answer}");
    wrong_password.stop().await;

    let untrusted = TestSidecar::start(configured(&password, false)).await;
    let (status, answer) = produce(&untrusted, &topic).await;
    assert_eq!((status, answer["code"].clone()), (503, json!("SCHEMA_REGISTRY_UNAVAILABLE")), "{answer}");
    assert!(answer["message"].as_str().unwrap().to_lowercase().contains("certificate"), "{answer}");
    untrusted.stop().await;
}
