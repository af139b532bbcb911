//! `kafka.security` against a broker that enforces it (tansu behind the enforcing TLS/SASL proxy of
//! `kafka_security_support`): TLS with a custom CA, mTLS, SASL PLAIN, SCRAM-SHA-256/512 and
//! OAUTHBEARER (token file and token endpoint) carry records both ways, checked by an independent
//! client; a wrong password, a missing client certificate or an untrusted CA make `/readyz` answer
//! 503 naming the failure; the password never shows in `/admin/config`, `--print-config` or the
//! process's logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod kafka_security_support;
mod sidecar_process;
mod support;
mod test_pki;

use std::time::{Duration, Instant};

use base64::Engine;
use consumer_support::RestConsumer;
use kafka_security_support::{
    Certificates, Credentials, ProxySettings, SecureBroker, client_config, create_topic, read_values, tls_client,
    write_file,
};
use kafka_sidecar::Config;
use kafka_sidecar::config::{SaslMechanism, SecurityProtocol};
use serde_json::{Value, json};
use support::{TestSidecar, eventually, test_config, unique};

fn sidecar_config(bootstrap: &str) -> Config {
    let mut config = test_config(bootstrap);
    config.consumer.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.properties.insert("heartbeat.interval.ms".into(), "500".into());
    config
}

fn sasl(config: &mut Config, protocol: SecurityProtocol, mechanism: SaslMechanism, user: &str, password: &str) {
    config.kafka.security.protocol = protocol;
    config.kafka.security.sasl.mechanism = Some(mechanism);
    config.kafka.security.sasl.username = Some(user.into());
    config.kafka.security.sasl.password = Some(password.into());
}

/// Produces `values` through the sidecar's HTTP API; panics unless all are delivered.
async fn produce(sidecar: &TestSidecar, topic: &str, values: &[&str]) {
    let records: Vec<Value> =
        values.iter().map(|value| json!({"value": base64::engine::general_purpose::STANDARD.encode(value)})).collect();
    let response = reqwest::Client::new()
        .post(sidecar.http_url(&format!("/producers/{topic}")))
        .json(&json!({"records": records}))
        .send()
        .await
        .expect("produce");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
}

/// Waits until `/readyz` answers 503 with a reason containing each of `needles`; returns it.
async fn not_ready_because(sidecar: &TestSidecar, needles: &[&str]) -> String {
    let url = sidecar.admin_url("/readyz");
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = reqwest::get(&url).await.expect("readyz");
        let status = response.status().as_u16();
        last = response.json().await.unwrap_or(last);
        let reason = last["reason"].as_str().unwrap_or_default().to_string();
        if status == 503 && needles.iter().all(|needle| reason.contains(needle)) {
            assert_eq!(last["ready"], false, "{last}");
            return reason;
        }
        assert!(Instant::now() < deadline, "readyz never named {needles:?}; last answer {status}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_custom_ca_carries_records_both_ways_and_an_untrusted_ca_is_named() {
    let certificates = Certificates::new();
    let broker = SecureBroker::start(ProxySettings { tls: Some(certificates.server_tls(false)), sasl: None }).await;
    let reader = client_config(&broker.bootstrap, &tls_client(&certificates, false));
    let topic = unique("tls");
    create_topic(&reader, &topic).await;

    let mut config = sidecar_config(&broker.bootstrap);
    config.kafka.security.protocol = SecurityProtocol::Ssl;
    config.kafka.security.tls.ca_file = Some(certificates.path("ca.pem"));
    let sidecar = TestSidecar::start(config.clone()).await;
    produce(&sidecar, &topic, &["one", "two"]).await;
    assert_eq!(read_values(&reader, &topic, 2, Duration::from_secs(20)), ["one", "two"]);

    // A consumer instance of the sidecar reads over TLS too.
    let consumer =
        RestConsumer::create(&sidecar, &unique("group"), json!({"format": "string", "auto.offset.reset": "earliest"}))
            .await;
    consumer.assign(&topic, 0..1).await;
    let fetched = consumer.fetch_until(2, Duration::from_secs(20)).await;
    let values: Vec<&str> = fetched.iter().filter_map(|record| record["value"].as_str()).collect();
    assert_eq!(values, ["one", "two"]);
    sidecar.stop().await;

    let mut untrusted = config;
    untrusted.kafka.security.tls.ca_file = Some(certificates.path("other-ca.pem"));
    let sidecar = TestSidecar::start_without_readiness(untrusted).await;
    let reason = not_ready_because(&sidecar, &["kafka TLS failed", "certificate verify failed"]).await;
    assert!(!broker.tls_failures().is_empty(), "the proxy saw no failed handshake; reason: {reason}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mtls_admits_a_client_certificate_and_refuses_its_absence() {
    let certificates = Certificates::new();
    let broker = SecureBroker::start(ProxySettings { tls: Some(certificates.server_tls(true)), sasl: None }).await;
    let reader = client_config(&broker.bootstrap, &tls_client(&certificates, true));
    let topic = unique("mtls");
    create_topic(&reader, &topic).await;

    let mut config = sidecar_config(&broker.bootstrap);
    config.kafka.security.protocol = SecurityProtocol::Ssl;
    config.kafka.security.tls.ca_file = Some(certificates.path("ca.pem"));
    config.kafka.security.tls.cert_file = Some(certificates.path("client.pem"));
    config.kafka.security.tls.key_file = Some(certificates.path("client.key"));
    let sidecar = TestSidecar::start(config.clone()).await;
    produce(&sidecar, &topic, &["with a certificate"]).await;
    assert_eq!(read_values(&reader, &topic, 1, Duration::from_secs(20)), ["with a certificate"]);
    sidecar.stop().await;

    let mut anonymous = config;
    anonymous.kafka.security.tls.cert_file = None;
    anonymous.kafka.security.tls.key_file = None;
    let failures_before = broker.tls_failures().len();
    let sidecar = TestSidecar::start_without_readiness(anonymous).await;
    eventually(Duration::from_secs(20), "the proxy refusing a client without a certificate", async || {
        broker.tls_failures().len() > failures_before
    })
    .await;
    not_ready_because(&sidecar, &["kafka TLS failed", "certificate required"]).await;
    assert!(
        broker.tls_failures().iter().any(|failure| failure.to_lowercase().contains("certificate")),
        "{:?}",
        broker.tls_failures()
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_plain_and_scram_with_the_right_password_deliver_and_a_wrong_one_is_named() {
    let certificates = Certificates::new();
    let password = unique("pw");
    let credentials = Credentials::password("sidecar", &password);
    let plaintext = SecureBroker::start(ProxySettings { tls: None, sasl: Some(credentials.clone()) }).await;
    let over_tls =
        SecureBroker::start(ProxySettings { tls: Some(certificates.server_tls(false)), sasl: Some(credentials) }).await;
    let cases = [
        (&plaintext, SecurityProtocol::SaslPlaintext, SaslMechanism::Plain, "PLAIN"),
        (&plaintext, SecurityProtocol::SaslPlaintext, SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
        (&over_tls, SecurityProtocol::SaslSsl, SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
    ];
    for (broker, protocol, mechanism, name) in cases {
        let mut reader_security = vec![
            ("security.protocol", protocol.as_str().to_string()),
            ("sasl.mechanism", name.to_string()),
            ("sasl.username", "sidecar".to_string()),
            ("sasl.password", password.clone()),
        ];
        if protocol.uses_tls() {
            reader_security.push(("ssl.ca.location", certificates.path("ca.pem").display().to_string()));
        }
        let reader = client_config(&broker.bootstrap, &reader_security);
        let topic = unique("sasl");
        create_topic(&reader, &topic).await;
        let mut config = sidecar_config(&broker.bootstrap);
        sasl(&mut config, protocol, mechanism, "sidecar", &password);
        config.kafka.security.tls.ca_file = protocol.uses_tls().then(|| certificates.path("ca.pem"));
        let sidecar = TestSidecar::start(config).await;
        produce(&sidecar, &topic, &[name]).await;
        assert_eq!(read_values(&reader, &topic, 1, Duration::from_secs(20)), [name], "{name}");
        assert!(broker.authenticated().contains(&format!("{name}:sidecar")), "{name}: {:?}", broker.authenticated());
        sidecar.stop().await;
    }

    for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha512] {
        let mut config = sidecar_config(&plaintext.bootstrap);
        sasl(&mut config, SecurityProtocol::SaslPlaintext, mechanism, "sidecar", "not-the-password");
        let sidecar = TestSidecar::start_without_readiness(config).await;
        let reason = not_ready_because(&sidecar, &["kafka authentication failed", "SASL authentication error"]).await;
        assert!(!reason.contains("not-the-password"), "{reason}");
        sidecar.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oauthbearer_sends_the_token_from_the_file_or_the_token_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = unique("token");
    let reader_password = unique("reader");
    // The proxy takes the sidecar's token, and a password for the independent reader.
    let credentials = Credentials { token: Some(token.clone()), ..Credentials::password("reader", &reader_password) };
    let broker = SecureBroker::start(ProxySettings { tls: None, sasl: Some(credentials) }).await;
    let reader = client_config(
        &broker.bootstrap,
        &[
            ("security.protocol", "sasl_plaintext".to_string()),
            ("sasl.mechanism", "PLAIN".to_string()),
            ("sasl.username", "reader".to_string()),
            ("sasl.password", reader_password),
        ],
    );

    let mut config = sidecar_config(&broker.bootstrap);
    config.kafka.security.protocol = SecurityProtocol::SaslPlaintext;
    config.kafka.security.sasl.mechanism = Some(SaslMechanism::OAuthBearer);
    config.kafka.security.sasl.oauthbearer.token_file = Some(write_file(dir.path(), "token", &format!("{token}\n")));
    config.kafka.security.sasl.oauthbearer.principal = Some("svc-orders".into());
    let topic = unique("oauth");
    create_topic(&reader, &topic).await;
    let sidecar = TestSidecar::start(config.clone()).await;
    produce(&sidecar, &topic, &["from a token file"]).await;
    assert_eq!(read_values(&reader, &topic, 1, Duration::from_secs(20)), ["from a token file"]);
    let token_seen = format!("OAUTHBEARER:{token}");
    assert!(broker.authenticated().contains(&token_seen), "{:?}", broker.authenticated());
    // The short-lived lag client authenticates with the token too.
    let lag_url = sidecar.http_url(&format!("/consumers/{}/lag?topics={topic}", unique("group")));
    let lag: Value = reqwest::get(&lag_url).await.expect("lag").json().await.expect("json");
    assert_eq!(lag["total_lag"], 1, "{lag}");
    sidecar.stop().await;

    // The token endpoint: client credentials in, the same token out.
    let (endpoint, requests) = token_endpoint(token.clone()).await;
    config.kafka.security.sasl.oauthbearer.token_file = None;
    config.kafka.security.sasl.oauthbearer.token_endpoint_url = Some(endpoint);
    config.kafka.security.sasl.oauthbearer.client_id = Some("sidecar-client".into());
    config.kafka.security.sasl.oauthbearer.client_secret = Some("client-secret-0451".into());
    config.kafka.security.sasl.oauthbearer.scope = Some("kafka".into());
    let sidecar = TestSidecar::start(config).await;
    produce(&sidecar, &topic, &["from a token endpoint"]).await;
    let values = read_values(&reader, &topic, 2, Duration::from_secs(20));
    assert_eq!(values, ["from a token file", "from a token endpoint"]);
    let seen = requests.lock().unwrap().clone();
    assert!(
        seen.iter().any(|request| request.contains("grant_type=client_credentials") && request.contains("scope=kafka")),
        "{seen:?}"
    );
    sidecar.stop().await;
}

/// A tiny OAuth2 token endpoint: checks basic auth, answers `token`; returns its URL and the form
/// bodies it received.
async fn token_endpoint(token: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&requests);
    let expected =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("sidecar-client:client-secret-0451"));
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (seen, token, expected) = (std::sync::Arc::clone(&seen), token.clone(), expected.clone());
            async move {
                seen.lock().unwrap().push(body);
                if headers.get("authorization").and_then(|value| value.to_str().ok()) != Some(expected.as_str()) {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"})));
                }
                (StatusCode::OK, axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/token"), requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_password_never_shows_in_config_views_or_logs() {
    let password = unique("pass-0451");
    let broker =
        SecureBroker::start(ProxySettings { tls: None, sasl: Some(Credentials::password("sidecar", &password)) }).await;
    let yaml = |password_line: &str| {
        format!(
            "kafka:\n  bootstrap_servers: {}\n  security:\n    protocol: sasl_plaintext\n    sasl:\n      \
             mechanism: SCRAM-SHA-256\n      username: sidecar\n{password_line}",
            broker.bootstrap
        )
    };
    let inline = yaml(&format!("      password: {password}\n"));

    let process = sidecar_process::SidecarProcess::start(&inline).await;
    let config = reqwest::get(process.admin_url("/admin/config")).await.expect("config").text().await.expect("body");
    assert!(!config.contains(&password), "/admin/config shows the password: {config}");
    assert!(config.contains("[redacted]"), "{config}");
    assert!(broker.authenticated().contains(&"SCRAM-SHA-256:sidecar".to_string()));
    drop(process);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "config.yaml", &inline);
    let printed = clean_command().arg("--config").arg(&file).arg("--print-config").output().expect("print-config");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("mechanism: SCRAM-SHA-256"), "{printed}");
    assert!(!printed.contains(&password), "--print-config shows the password:\n{printed}");

    // A wrong password from the environment: not ready, named once at ERROR, never printed.
    let wrong = unique("wrong-0451");
    let file = write_file(dir.path(), "no-password.yaml", &yaml(""));
    let info = dir.path().join("listen.json");
    let log = dir.path().join("stderr.log");
    let mut child = clean_command()
        .arg("--config")
        .arg(&file)
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--listen-info")
        .arg(&info)
        .env("KAFKA_SIDECAR_KAFKA__SECURITY__SASL__PASSWORD", &wrong)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the binary");
    eventually(Duration::from_secs(30), "the listen info", async || std::fs::read(&info).is_ok_and(|b| !b.is_empty()))
        .await;
    let addresses: Value = serde_json::from_slice(&std::fs::read(&info).expect("info")).expect("json");
    let readyz = format!("http://{}/readyz", addresses["admin"].as_str().expect("admin"));
    eventually(Duration::from_secs(30), "readyz naming the authentication failure", async || {
        let Ok(response) = reqwest::get(&readyz).await else { return false };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        status == 503 && body["reason"].as_str().is_some_and(|reason| reason.contains("kafka authentication failed"))
    })
    .await;
    eventually(Duration::from_secs(30), "librdkafka retrying the login", async || broker.refused().len() >= 3).await;
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains(&wrong), "the log shows the password:\n{logged}");
    // librdkafka repeats the failure at every reconnect; ERROR says it once.
    let errors = logged.lines().filter(|line| line.contains("ERROR") && line.contains("SASL authentication error"));
    assert_eq!(errors.count(), 1, "one ERROR naming the failure:\n{logged}");
    assert!(broker.refused().iter().any(|refusal| refusal.starts_with("SCRAM-SHA-256")), "{:?}", broker.refused());
}

fn clean_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-sidecar"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KAFKA_SIDECAR_")) {
        command.env_remove(name);
    }
    command.stdin(std::process::Stdio::null());
    command
}

#[test]
fn bad_security_configuration_stops_start_up_naming_the_key() {
    let cases: [(&[&str], &str); 3] = [
        (&["--set", "kafka.security.protocol=sasl_ssl"], "kafka.security.sasl.mechanism"),
        (
            &["--set", "kafka.security.protocol=ssl", "--set", "kafka.security.tls.ca_file=/nonexistent/ca.pem"],
            "kafka.security.tls.ca_file",
        ),
        (
            &[
                "--set",
                "kafka.security.protocol=sasl_plaintext",
                "--set",
                "kafka.security.sasl.mechanism=SCRAM-SHA-512",
            ],
            "kafka.security.sasl.username",
        ),
    ];
    for (args, key) in cases {
        let output =
            clean_command().args(["--bootstrap-servers", "127.0.0.1:1"]).args(args).output().expect("run the binary");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}
