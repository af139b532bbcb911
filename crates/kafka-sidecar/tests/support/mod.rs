//! Test harness: a real tansu broker (started once per test binary, or taken from
//! `KAFKA_SIDECAR_TEST_BOOTSTRAP`), an in-process sidecar on port 0, and an independent Kafka client
//! to create topics and read them back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener as StdTcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kafka_sidecar::{BoundAddresses, Config, Listeners, RunReport, run};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Polls `condition` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A random name, so tests never share topics.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Bootstrap servers of the test broker.
pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| {
        if let Ok(bootstrap) = std::env::var("KAFKA_SIDECAR_TEST_BOOTSTRAP") {
            return bootstrap;
        }
        start_tansu()
    })
}

// The watchdog shell outlives this process by design: it reaps the broker when we exit.
#[allow(clippy::zombie_processes)]
fn start_tansu() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("scripts/tansu")).arg("path").output().expect("scripts/tansu path");
    assert!(output.status.success(), "scripts/tansu failed: {}", String::from_utf8_lossy(&output.stderr));
    let binary = String::from_utf8(output.stdout).expect("utf-8 path").trim().to_string();
    let port = StdTcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    // A watchdog shell ends the broker when this test process exits.
    let script = format!(
        "\"{binary}\" broker --listener-url tcp://127.0.0.1:{port} --advertised-listener-url tcp://127.0.0.1:{port} \
         --storage-engine memory://tansu/ >/dev/null 2>&1 & b=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $b",
        parent = std::process::id()
    );
    Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().expect("start tansu");
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let consumer: BaseConsumer = client_config(&bootstrap).create().expect("probe client");
    while consumer.fetch_metadata(None, Duration::from_millis(500)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start on {bootstrap}");
    }
    bootstrap
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("group.id", unique("reader")).set("enable.auto.commit", "false");
    config
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().expect("admin client");
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin.create_topics([&new_topic], &AdminOptions::new()).await.expect("create_topics");
    for result in results {
        result.expect("topic created");
    }
}

/// A record as read back from Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Reads `topic` from the beginning with an independent consumer until `count` records arrived.
pub fn read_back(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < count && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.expect("consume");
        let headers = message
            .headers()
            .map(|headers| {
                headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect()
            })
            .unwrap_or_default();
        records.push(ReadRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records
}

/// A sidecar running in this process on port-0 listeners.
pub struct TestSidecar {
    pub addresses: BoundAddresses,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<RunReport>>,
}

/// A configuration for tests: loopback port 0 everywhere, the given broker.
pub fn test_config(bootstrap: &str) -> Config {
    let mut config = Config::default();
    let any_port = "127.0.0.1:0".parse().expect("address");
    config.grpc.listen = any_port;
    config.http.listen = any_port;
    config.admin.listen = any_port;
    config.kafka.bootstrap_servers = bootstrap.to_string();
    config.producer.statistics_interval_ms = 500;
    config
}

impl TestSidecar {
    /// Starts a sidecar and waits until it is ready.
    pub async fn start(config: Config) -> Self {
        let sidecar = Self::start_without_readiness(config).await;
        let ready = format!("http://{}/readyz", sidecar.addresses.admin);
        eventually(Duration::from_secs(30), "sidecar readiness", async || {
            reqwest::get(&ready).await.is_ok_and(|response| response.status().is_success())
        })
        .await;
        sidecar
    }

    /// Starts a sidecar and waits only until it is alive (for tests where it must not be ready).
    pub async fn start_without_readiness(config: Config) -> Self {
        config.validate().expect("valid test config");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let addresses = listeners.addresses().expect("addresses");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listeners, async move {
            let _ = stopped.await;
        }));
        let sidecar = Self { addresses, shutdown: Some(shutdown), task };
        let alive = format!("http://{}/healthz", sidecar.addresses.admin);
        eventually(Duration::from_secs(30), "sidecar liveness", async || {
            reqwest::get(&alive).await.is_ok_and(|response| response.status().is_success())
        })
        .await;
        sidecar
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addresses.grpc)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.http)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.admin)
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts down and returns the run's report.
    pub async fn stop(mut self) -> RunReport {
        self.begin_shutdown();
        self.task.await.expect("sidecar task").expect("sidecar run")
    }
}
