//! Reaching a registry that wants TLS and basic auth: a private registry serves HTTPS with a
//! certificate from a test CA and requires a password. With the CA and the password the sidecar
//! produces; with a wrong password it says the registry refused it; without the CA it says the
//! registry is unavailable and names the certificate problem.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod schema_support;
mod support;
mod test_pki;

use base64::Engine;
use schema_support::start_private_registry;
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, unique};
use test_pki::TestPki;

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
    let pki = TestPki::new();
    pki.authority("ca").issue("ca", "server", "/CN=127.0.0.1", test_pki::SERVER);
    let password = unique("secret");
    let pem = std::fs::read(pki.path("ca.pem")).expect("ca");
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("sidecar:{password}"));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Basic {credentials}").parse().expect("header"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .default_headers(headers)
        .build()
        .expect("client");
    let path = |name: &str| pki.path(name).display().to_string();
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
        config.schema_registry.ca_file = ca.then(|| pki.path("ca.pem"));
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
