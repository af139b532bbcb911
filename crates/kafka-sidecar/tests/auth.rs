//! Bearer tokens on the APIs, against a real broker: what a token without `kafka:w` or `kafka:r`
//! cannot do, over HTTP and gRPC alike; RS256, ES256, EdDSA and HS256 tokens; expiry, issuer,
//! audience, `alg: none` and algorithm confusion refused; topic scopes; key rotation from a JWKS
//! file and from a JWKS URL; health open to probes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_support::{claims, hs256_token, jwks, now, signing_key, token, unsigned_token};
use kafka_sidecar::Config;
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use serde_json::{Value, json};
use support::{TestSidecar, broker, create_topic, eventually, unique};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

fn auth_config(bootstrap: &str, jwks_file: &std::path::Path) -> Config {
    let mut config = support::test_config(bootstrap);
    config.auth.enabled = true;
    config.auth.jwks_file = Some(jwks_file.to_path_buf());
    config.auth.jwks_refresh_ms = 1_000;
    config.auth.issuer = Some("https://issuer.test".into());
    config.auth.audience = Some("kafka-sidecar".into());
    config.auth.leeway_seconds = 5;
    config
}

/// `signed`'s header and signature around `other`'s claims: a token someone edited.
fn spliced(signed: &str, other: &str) -> String {
    let signed: Vec<&str> = signed.split('.').collect();
    let other: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", signed[0], other[1], signed[2])
}

async fn call(
    sidecar: &TestSidecar,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
) -> (u16, Value, String) {
    let mut request = reqwest::Client::new().request(method, sidecar.http_url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if path.starts_with("/producers") {
        request = request.json(&json!({"records": [{"key": "k", "value": "aGk="}]}));
    }
    let response = request.send().await.expect("answer");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, response.json().await.unwrap_or(Value::Null), challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scopes_gate_produce_and_consume_and_bad_tokens_are_refused() {
    let bootstrap = broker();
    let (topic, secured) = (unique("auth"), format!("orders.{}", unique("eu")));
    create_topic(bootstrap, &topic, 1).await;
    create_topic(bootstrap, &secured, 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let (rsa, ec, ed) = (
        signing_key(dir.path(), "rsa", "rsa-1"),
        signing_key(dir.path(), "ec", "ec-1"),
        signing_key(dir.path(), "ed25519", "ed-1"),
    );
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&rsa, &ec, &ed])).expect("jwks");
    let mut config = auth_config(bootstrap, &jwks_file);
    config.auth.hs256_secret = Some(String::from_utf8(SECRET.to_vec()).expect("utf-8").into());
    config.auth.topic_scopes.insert("orders.*".into(), "orders:w".into());
    let sidecar = TestSidecar::start(config).await;
    let produce = format!("/producers/{topic}");
    use reqwest::Method;

    let (status, body, challenge) = call(&sidecar, Method::POST, &produce, None).await;
    assert_eq!((status, body["code"].clone()), (401, json!("UNAUTHENTICATED")), "{body}");
    assert_eq!(challenge, r#"Bearer realm="kafka-sidecar""#);
    let reader = token(&rsa, &claims("kafka:r"));
    let (status, body, challenge) = call(&sidecar, Method::POST, &produce, Some(&reader)).await;
    assert_eq!((status, body["code"].clone()), (403, json!("FORBIDDEN")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("kafka:w") && challenge.contains("insufficient_scope"));
    let (status, _, _) = call(&sidecar, Method::GET, "/topics", Some(&reader)).await;
    assert_eq!(status, 200, "kafka:r reads topic metadata");
    let writer_only = token(&ec, &claims("kafka:w"));
    let (status, body, _) = call(&sidecar, Method::GET, "/topics", Some(&writer_only)).await;
    assert_eq!((status, body["code"].clone()), (403, json!("FORBIDDEN")), "kafka:w alone cannot consume");
    let (status, body, _) =
        call(&sidecar, Method::POST, &format!("/consumers/{}", unique("g")), Some(&writer_only)).await;
    assert_eq!(status, 403, "nor create a consumer: {body}");

    for (name, writer) in [
        ("RS256", token(&rsa, &claims("kafka:w kafka:r"))),
        ("ES256", token(&ec, &claims("kafka:w"))),
        ("EdDSA", token(&ed, &claims("kafka:w"))),
        ("HS256", hs256_token(SECRET, &claims("kafka:w"))),
    ] {
        let (status, body, _) = call(&sidecar, Method::POST, &produce, Some(&writer)).await;
        assert_eq!(status, 200, "{name}: {body}");
    }

    let mut expired = claims("kafka:w");
    expired["exp"] = json!(now() - 60);
    let mut early = claims("kafka:w");
    early["nbf"] = json!(now() + 600);
    let mut foreign = claims("kafka:w");
    foreign["iss"] = json!("https://elsewhere.test");
    let mut other_audience = claims("kafka:w");
    other_audience["aud"] = json!("someone-else");
    let mut no_expiry = claims("kafka:w");
    no_expiry.as_object_mut().unwrap().remove("exp");
    let bad = [
        (token(&rsa, &expired), "expired"),
        (token(&rsa, &early), "not valid yet"),
        (token(&rsa, &foreign), "issuer"),
        (token(&rsa, &other_audience), "audience"),
        (token(&rsa, &no_expiry), "exp"),
        (unsigned_token(&claims("kafka:w")), "algorithm is not accepted"),
        (hs256_token(b"another-secret-another-secret-another", &claims("kafka:w")), "signature"),
        (spliced(&token(&rsa, &claims("kafka:r")), &token(&rsa, &claims("kafka:w kafka:admin"))), "signature"),
        ("not-a-jwt".to_string(), "does not parse"),
    ];
    for (bad_token, why) in bad {
        let (status, body, challenge) = call(&sidecar, Method::POST, &produce, Some(&bad_token)).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(body["message"].as_str().unwrap().contains(why), "{why}: {body}");
        assert!(challenge.contains("invalid_token"), "{challenge}");
    }

    let (status, body, _) = call(&sidecar, Method::POST, &format!("/producers/{secured}"), Some(&writer_only)).await;
    assert_eq!((status, body["code"].clone()), (403, json!("FORBIDDEN")), "orders.* needs orders:w: {body}");
    let orders_writer = token(&rsa, &claims("kafka:w orders:w"));
    let (status, body, _) = call(&sidecar, Method::POST, &format!("/producers/{secured}"), Some(&orders_writer)).await;
    assert_eq!(status, 200, "{body}");

    let health = reqwest::get(sidecar.admin_url("/readyz")).await.expect("readyz");
    assert_eq!(health.status(), 200, "probes need no token");
    let admin = |bearer: Option<String>| {
        let mut request = reqwest::Client::new().get(sidecar.admin_url("/admin/info"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move { request.send().await.expect("admin answers").status().as_u16() }
    };
    assert_eq!(admin(None).await, 401, "operator routes need a token");
    assert_eq!(admin(Some(token(&rsa, &claims("kafka:w kafka:r")))).await, 403, "and the admin scope");
    assert_eq!(admin(Some(token(&rsa, &claims("kafka:admin")))).await, 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_calls_need_the_produce_scope_and_the_public_key_cannot_be_an_hmac_secret() {
    let bootstrap = broker();
    let topic = unique("auth-grpc");
    create_topic(bootstrap, &topic, 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let rsa = signing_key(dir.path(), "rsa", "rsa-1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&rsa])).expect("jwks");
    let sidecar = TestSidecar::start(auth_config(bootstrap, &jwks_file)).await;
    let mut client = ProducerSidecarClient::connect(sidecar.grpc_url()).await.expect("connect");
    let batch = || pb::ProduceBatch {
        records: vec![pb::ProduceRequest { topic: topic.clone(), value: "v".into(), ..Default::default() }],
        ..Default::default()
    };
    let with_token = |bearer: &str| {
        let mut request = tonic::Request::new(batch());
        request.metadata_mut().insert("authorization", format!("Bearer {bearer}").parse().expect("metadata"));
        request
    };
    let status = client.emit_batch(batch()).await.expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = client.emit_batch(with_token(&token(&rsa, &claims("kafka:r")))).await.expect_err("reader");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("kafka:w"), "{}", status.message());
    let ack = client.emit_batch(with_token(&token(&rsa, &claims("kafka:w")))).await.expect("writer").into_inner();
    assert_eq!(ack.accepted, 1, "{ack:?}");

    // Algorithm confusion: an HS256 token "signed" with the RSA public key's JWK text as secret.
    let public_jwk = jwks(&[&rsa]);
    let confused = hs256_token(public_jwk.as_bytes(), &claims("kafka:w"));
    let status = client.emit_batch(with_token(&confused)).await.expect_err("confused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(status.message().contains("not accepted"), "{}", status.message());

    let channel =
        tonic::transport::Channel::from_shared(sidecar.grpc_url()).expect("url").connect().await.expect("channel");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    assert!(check.is_ok(), "the health service needs no token");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_are_picked_up_from_the_jwks_file_and_url() {
    let bootstrap = broker();
    let topic = unique("auth-rotate");
    create_topic(bootstrap, &topic, 1).await;
    let dir = tempfile::tempdir().expect("dir");
    let (old, new) = (signing_key(dir.path(), "ec", "2025"), signing_key(dir.path(), "ec", "2026"));
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&old])).expect("jwks");
    let by_file = TestSidecar::start(auth_config(bootstrap, &jwks_file)).await;
    let produce = format!("/producers/{topic}");
    let fresh = token(&new, &claims("kafka:w"));
    assert_eq!(call(&by_file, reqwest::Method::POST, &produce, Some(&fresh)).await.0, 401, "unknown key");
    std::fs::write(&jwks_file, jwks(&[&old, &new])).expect("rotate");
    eventually(Duration::from_secs(10), "the rotated key is used", async || {
        call(&by_file, reqwest::Method::POST, &produce, Some(&fresh)).await.0 == 200
    })
    .await;
    by_file.stop().await;

    // A JWKS URL is refetched as soon as a token names a key id it does not hold.
    let served = Arc::new(Mutex::new(jwks(&[&old])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let document = Arc::clone(&served);
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let document = Arc::clone(&document);
            async move { document.lock().unwrap().clone() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = auth_config(bootstrap, &jwks_file);
    config.auth.jwks_file = None;
    config.auth.jwks_url = format!("http://{address}/jwks");
    config.auth.jwks_refresh_ms = 600_000;
    let by_url = TestSidecar::start(config).await;
    assert_eq!(call(&by_url, reqwest::Method::POST, &produce, Some(&token(&old, &claims("kafka:w")))).await.0, 200);
    *served.lock().unwrap() = jwks(&[&old, &new]);
    let (status, body, _) = call(&by_url, reqwest::Method::POST, &produce, Some(&fresh)).await;
    assert_eq!(status, 200, "refetched for the unknown kid without waiting for the refresh: {body}");
    by_url.stop().await;
}
