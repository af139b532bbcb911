//! Memory of idle consumers: `instances` consumers, each assigned every partition of a topic
//! nobody writes to, and what they add to the resident set of the process holding them. Direct:
//! rdkafka consumers inside this process, polled every 200 ms as an app's loop would (after one
//! warm-up consumer, so librdkafka's one-time start-up is not counted; the sidecar has paid it
//! with its producer). Sidecar: active-API instances of a fresh sidecar, then deleted again.
//!
//! Also reported: threads per consumer, the CPU the idle consumers burn, and create time.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use crate::rest::{self, RestConsumer};
use crate::{client, consume, process};

/// How often the direct side polls its idle consumers (the sidecar's worker tick).
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Who holds the idle consumers.
#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Direct,
    Sidecar,
}

/// Arguments of `idle`.
#[derive(Args)]
pub struct IdleArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Broker bootstrap servers (direct).
    #[arg(long, default_value = "")]
    bootstrap: String,
    /// The sidecar's HTTP listener, host:port (sidecar).
    #[arg(long, default_value = "")]
    sidecar_http: String,
    /// The sidecar's process id (sidecar).
    #[arg(long)]
    pid: Option<u32>,
    /// A topic with nothing in it.
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partitions: i32,
    #[arg(long, default_value_t = 50)]
    instances: usize,
    /// Seconds to let the consumers connect and settle before RSS is read.
    #[arg(long, default_value_t = 3.0)]
    settle_seconds: f64,
    /// Seconds over which the idle consumers' CPU is measured.
    #[arg(long, default_value_t = 3.0)]
    idle_seconds: f64,
    /// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
}

/// Before and after: what `instances` idle consumers cost the process that holds them.
struct Footprint {
    rss_before: u64,
    rss_after: u64,
    threads_before: u64,
    threads_after: u64,
    cpu_s_per_s: f64,
    create_seconds: f64,
}

impl Footprint {
    fn json(&self, instances: usize) -> Value {
        let count = instances.max(1) as f64;
        json!({
            "instances": instances,
            "rss_before_bytes": self.rss_before,
            "rss_after_bytes": self.rss_after,
            "rss_per_instance_bytes": self.rss_after.saturating_sub(self.rss_before) as f64 / count,
            "threads_before": self.threads_before,
            "threads_after": self.threads_after,
            "threads_per_instance": self.threads_after.saturating_sub(self.threads_before) as f64 / count,
            "idle_cpu_s_per_s": self.cpu_s_per_s,
            "create_ms_each": self.create_seconds * 1000.0 / count,
        })
    }
}

/// Creates the idle consumers on the side `mode` names and measures them.
pub fn run(args: &IdleArgs) -> Result<Value> {
    match args.mode {
        Mode::Direct => direct(args),
        Mode::Sidecar => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(sidecar(args))
        }
    }
}

fn direct(args: &IdleArgs) -> Result<Value> {
    let me = std::process::id();
    let group = client::session_id("idle-direct");
    let assign = |consumer: &BaseConsumer| -> Result<()> {
        let mut list = TopicPartitionList::new();
        for partition in 0..args.partitions {
            list.add_partition(&args.topic, partition);
        }
        Ok(consumer.assign(&list)?)
    };
    let warm_up = consume::direct_consumer(&args.bootstrap, &group, &[])?;
    assign(&warm_up)?;
    let mut consumers = vec![warm_up];
    poll_for(&consumers, Duration::from_secs(1));
    let (rss_before, threads_before) = (process::rss_bytes(me)?, process::threads(me)?);
    let start = Instant::now();
    for _ in 0..args.instances {
        let consumer = consume::direct_consumer(&args.bootstrap, &group, &[])?;
        assign(&consumer)?;
        consumers.push(consumer);
    }
    let create_seconds = start.elapsed().as_secs_f64();
    poll_for(&consumers, Duration::from_secs_f64(args.settle_seconds));
    let (rss_after, threads_after) = (process::rss_bytes(me)?, process::threads(me)?);
    let cpu_before = process::cpu_seconds(me, args.clock_ticks)?;
    poll_for(&consumers, Duration::from_secs_f64(args.idle_seconds));
    let cpu_s_per_s = (process::cpu_seconds(me, args.clock_ticks)? - cpu_before) / args.idle_seconds;
    let rss_after = rss_after.max(process::rss_bytes(me)?);
    let footprint = Footprint { rss_before, rss_after, threads_before, threads_after, cpu_s_per_s, create_seconds };
    let mut result = footprint.json(args.instances);
    result["mode"] = json!("direct");
    Ok(result)
}

/// Polls every consumer every [`POLL_EVERY`] for `how_long`, as an app's loop would.
fn poll_for(consumers: &[BaseConsumer], how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        for consumer in consumers {
            if let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
                eprintln!("idle consumer read a record at offset {}", rdkafka::Message::offset(&message));
            }
        }
        std::thread::sleep(POLL_EVERY.min(until.saturating_duration_since(Instant::now())));
    }
}

async fn sidecar(args: &IdleArgs) -> Result<Value> {
    let Some(pid) = args.pid else { bail!("--pid is required with --mode sidecar") };
    let http = rest::http_client()?;
    let group = client::session_id("idle-sidecar");
    let (rss_before, threads_before) = (process::rss_bytes(pid)?, process::threads(pid)?);
    let start = Instant::now();
    let mut consumers = Vec::with_capacity(args.instances);
    for index in 0..args.instances {
        let consumer = RestConsumer::create(&http, &args.sidecar_http, &group, &format!("idle-{index}")).await?;
        consumer.assign(&args.topic, 0..args.partitions).await?;
        consumers.push(consumer);
    }
    let create_seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.settle_seconds)).await;
    let (rss_after, threads_after) = (process::rss_bytes(pid)?, process::threads(pid)?);
    let cpu_before = process::cpu_seconds(pid, args.clock_ticks)?;
    tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
    let cpu_s_per_s = (process::cpu_seconds(pid, args.clock_ticks)? - cpu_before) / args.idle_seconds;
    let rss_after = rss_after.max(process::rss_bytes(pid)?);
    let deleting = Instant::now();
    for consumer in consumers {
        consumer.delete().await?;
    }
    let delete_seconds = deleting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let footprint = Footprint { rss_before, rss_after, threads_before, threads_after, cpu_s_per_s, create_seconds };
    let mut result = footprint.json(args.instances);
    result["mode"] = json!("sidecar");
    result["delete_ms_each"] = json!(delete_seconds * 1000.0 / args.instances.max(1) as f64);
    result["rss_after_delete_bytes"] = json!(process::rss_bytes(pid)?);
    result["threads_after_delete"] = json!(process::threads(pid)?);
    Ok(result)
}
