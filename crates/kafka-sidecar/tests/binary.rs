//! The `kafka-sidecar` binary as an operator runs it: bad configuration exits at start naming the
//! key; with no Kafka configured it serves on the embedded dev broker; SIGTERM drains and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-sidecar");

fn clean_command() -> Command {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KAFKA_SIDECAR_")) {
        command.env_remove(name);
    }
    command.stdin(Stdio::null());
    command
}

/// Arguments, environment, and the key the error must name.
type BadConfigCase = (&'static [&'static str], &'static [(&'static str, &'static str)], &'static str);

#[test]
fn bad_configuration_exits_at_start_naming_the_key() {
    let cases: [BadConfigCase; 5] = [
        (&["--set", "producer.lingr_ms=5"], &[], "lingr_ms"),
        (&[], &[("KAFKA_SIDECAR_PRODUCER__LINGER_MS", "soon")], "producer.linger_ms"),
        (&["--set", "kafka.properties.bootstrap.servers=x:1"], &[], "kafka.properties.bootstrap.servers"),
        (&["--set", "producer.max_buffered_bytes=1"], &[], "producer.max_buffered_bytes"),
        (&["--http-listen", "0.0.0.0:0"], &[], "--allow-insecure-bind"),
    ];
    for (args, env, key) in cases {
        let output = clean_command().args(args).envs(env.iter().copied()).output().expect("run binary");
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

#[test]
fn print_config_never_prints_a_secret() {
    let output = clean_command()
        .args(["--print-config", "--set", "schema_registry.url=http://registry:8081"])
        .args(["--set", "schema_registry.basic_auth_user=sidecar"])
        .args(["--set", "schema_registry.basic_auth_password=registry-pass-0451"])
        .args(["--set", "kafka.properties.sasl.password=kafka-pass-0451"])
        .args(["--set", "auth.hs256_secret=hmac-pass-0451-hmac-pass-0451-hmac-pass"])
        .output()
        .expect("run binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("pass-0451"), "a secret was printed:\n{stdout}");
    assert!(stdout.contains("basic_auth_password: '[redacted]'"), "{stdout}");
    assert!(stdout.contains("sasl.password: '[redacted]'"), "{stdout}");
    assert!(stdout.contains("basic_auth_user: sidecar"), "{stdout}");
}

#[test]
fn unknown_librdkafka_property_fails_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let output = clean_command()
        .args(["--set", "kafka.properties.no.such.property=1", "--listen-info"])
        .arg(dir.path().join("listen.json"))
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .output()
        .expect("run binary");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no.such.property"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_the_dev_broker_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let info = dir.path().join("listen.json");
    let socket = dir.path().join("grpc.sock");
    let child = clean_command()
        .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--grpc-unix-socket")
        .arg(&socket)
        .arg("--listen-info")
        .arg(&info)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start binary");
    support::eventually(Duration::from_secs(30), "listen info", async || info.exists()).await;
    let addresses: serde_json::Value = serde_json::from_slice(&std::fs::read(&info).unwrap()).unwrap();
    assert_eq!(addresses["grpc_unix"], socket.display().to_string());
    let http = addresses["http"].as_str().unwrap().to_string();
    let ready = format!("http://{}/readyz", addresses["admin"].as_str().unwrap());
    support::eventually(Duration::from_secs(30), "readiness", async || {
        reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success())
    })
    .await;

    let body = r#"{"valueFormat":"string","records":[{"key":"a","value":"hello"}]}"#;
    let response =
        reqwest::Client::new().post(format!("http://{http}/producers/demo")).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert!(json["offsets"][0]["offset"].as_i64().is_some(), "{json}");

    // gRPC over the Unix socket works too.
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(socket).await?))
            }
        }))
        .await
        .expect("unix channel");
    let mut client = kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient::new(channel);
    let request =
        kafka_sidecar_proto::v1::ProduceRequest { topic: "demo".into(), value: "v".into(), ..Default::default() };
    assert!(client.emit(request).await.expect("emit over uds").into_inner().received);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("DEV MODE"), "dev mode is announced loudly: {stderr}");
    assert!(stderr.contains("every accepted record was delivered"), "{stderr}");
}
