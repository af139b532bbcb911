//! A Kafka broker that enforces TLS, mTLS or SASL, for `tests/kafka_security.rs`: a tansu of its
//! own behind the enforcing proxy (`proxy.rs`; tansu 0.6 accepts any PLAIN password and has no
//! mTLS, and librdkafka's mock cluster has neither TLS nor SASL), test certificates made with the
//! `openssl` command, and independent librdkafka clients that speak the same security.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;
pub mod sasl;

use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

pub use proxy::{Observed, ProxySettings, TlsSettings};
pub use sasl::Credentials;

use crate::test_pki::{self, TestPki};

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, and a second CA
/// that signed nothing here (an untrusted CA).
pub struct Certificates {
    pki: TestPki,
}

impl Certificates {
    pub fn new() -> Self {
        let pki = TestPki::new();
        pki.authority("ca").authority("other-ca");
        pki.issue("ca", "server", "/CN=127.0.0.1", test_pki::SERVER);
        pki.issue("ca", "client", "/CN=kafka-sidecar", test_pki::CLIENT);
        Self { pki }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.pki.path(name)
    }

    /// The proxy's TLS settings; `mtls` requires a client certificate signed by `ca.pem`.
    pub fn server_tls(&self, mtls: bool) -> TlsSettings {
        TlsSettings {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: mtls.then(|| self.path("ca.pem")),
        }
    }
}

/// tansu behind the enforcing proxy; tansu advertises the proxy, so all traffic goes through it.
pub struct SecureBroker {
    pub bootstrap: String,
    pub observed: Arc<Mutex<Observed>>,
    tansu: Child,
}

impl SecureBroker {
    pub async fn start(settings: ProxySettings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let proxy_port = listener.local_addr().expect("address").port();
        let tansu_port = StdTcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let tansu = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{tansu_port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{proxy_port}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let upstream = format!("127.0.0.1:{tansu_port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&upstream).await.is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on {upstream}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let observed = proxy::spawn(listener, upstream, settings);
        Self { bootstrap: format!("127.0.0.1:{proxy_port}"), observed, tansu }
    }

    pub fn authenticated(&self) -> Vec<String> {
        self.observed.lock().unwrap().authenticated.clone()
    }

    pub fn refused(&self) -> Vec<String> {
        self.observed.lock().unwrap().refused.clone()
    }

    pub fn tls_failures(&self) -> Vec<String> {
        self.observed.lock().unwrap().tls_failures.clone()
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.tansu.kill();
        let _ = self.tansu.wait();
    }
}

fn tansu_binary() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("scripts/tansu")).arg("path").output().expect("scripts/tansu path");
    assert!(output.status.success(), "scripts/tansu failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 path").trim().to_string()
}

/// An independent librdkafka client configuration with `security` properties.
pub fn client_config(bootstrap: &str, security: &[(&str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::support::unique("reader"))
        .set("enable.auto.commit", "false");
    for (key, value) in security {
        config.set(*key, value);
    }
    config
}

/// Creates `topic` (one partition) through the secured broker.
pub async fn create_topic(config: &ClientConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let results = admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create_topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Reads `count` values of `topic` from the beginning with an independent consumer.
pub fn read_values(config: &ClientConfig, topic: &str, count: usize, timeout: Duration) -> Vec<String> {
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).expect("partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut values = Vec::new();
    while values.len() < count && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.expect("consume");
        values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).to_string());
    }
    values
}

/// `ssl.ca.location` (and a client certificate) for an independent client.
pub fn tls_client(certificates: &Certificates, client_cert: bool) -> Vec<(&'static str, String)> {
    let path = |name: &str| certificates.path(name).display().to_string();
    let mut properties = vec![("security.protocol", "ssl".to_string()), ("ssl.ca.location", path("ca.pem"))];
    if client_cert {
        properties.push(("ssl.certificate.location", path("client.pem")));
        properties.push(("ssl.key.location", path("client.key")));
    }
    properties
}

/// The file a test wrote, as a path string.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write file");
    path
}
