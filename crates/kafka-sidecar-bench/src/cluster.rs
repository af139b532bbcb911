//! Brokers for the benchmark: librdkafka's mock cluster as a separate process (so its broker
//! sockets are real loopback TCP connections the kernel can count) and topic creation on tansu.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

/// Arguments of `mock-cluster`.
#[derive(Args)]
pub struct MockClusterArgs {
    /// Number of brokers.
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Partitions of each created topic (leaders are spread over the brokers).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Topics to create.
    #[arg(long = "topic")]
    topics: Vec<String>,
}

/// Arguments of `create-topics`.
#[derive(Args)]
pub struct CreateTopicsArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
}

/// Runs the mock cluster until stdin reaches end of file (the parent closed it or exited).
pub fn run_mock_cluster(args: &MockClusterArgs) -> Result<()> {
    let cluster = MockCluster::new(args.brokers).context("starting the mock cluster")?;
    let replication = args.brokers.min(3);
    for topic in &args.topics {
        cluster.create_topic(topic, args.partitions, replication).with_context(|| format!("creating topic {topic}"))?;
    }
    let line = serde_json::json!({ "bootstrap": cluster.bootstrap_servers() });
    println!("{line}");
    let mut sink = Vec::new();
    // Any read error also means the parent is gone: stop either way.
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
    Ok(())
}

/// Creates topics (an existing topic is fine) and waits until they are usable.
pub fn create_topics(args: &CreateTopicsArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create().context("admin client")?;
        let topics: Vec<NewTopic<'_>> =
            args.topics.iter().map(|name| NewTopic::new(name, args.partitions, TopicReplication::Fixed(1))).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics(&topics, &options).await?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    eprintln!("topic {name} exists");
                }
                Err((name, code)) => bail!("creating topic {name}: {code}"),
            }
        }
        Ok(())
    })
}
