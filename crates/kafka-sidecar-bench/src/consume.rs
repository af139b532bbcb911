//! Consume throughput: a direct rdkafka consumer inside this process vs the sidecar's active API
//! (one instance, partitions assigned by hand, one long-poll fetch at a time, values decoded from
//! base64 as an app would), both reading the records `fill` wrote, from the beginning of every
//! partition, until `records` are read or `max_seconds` have passed (a slow side is measured over
//! a bounded time instead of holding up the run). Records/s are counted from the first record to
//! the last, so connection and offset lookup do not dilute them; the time from the assignment to
//! the first record is reported beside. CPU seconds cover the assignment to the last record (this
//! process from `/proc/self/stat`, the sidecar's from `/proc/PID/stat`).
//!
//! Both sides take the same path to their first offset: a fresh group, no committed offset,
//! `auto.offset.reset=earliest`. With `--subscribe` the direct consumer joins its group and is
//! assigned the partitions by it instead (the baseline of the reactive consumer, which does the
//! same); the time to join is then part of `first_record_ms`, not of records/s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, TopicPartitionList};
use serde_json::{Value, json};

use crate::rest::{self, RestConsumer};
use crate::{client, process, producer, summary};

/// How long one fetch waits for records (the sidecar's default `consumer.request_timeout_ms`).
const FETCH_WAIT: Duration = Duration::from_millis(1000);
const ACK_LIMIT: Duration = Duration::from_secs(120);
/// How long a subscribing consumer may take to join its group and read its first record.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// Who reads the records.
#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// An rdkafka `BaseConsumer` in this process (librdkafka's default fetch settings).
    Direct,
    /// A consumer instance of the sidecar, over HTTP.
    Sidecar,
}

/// Arguments of `fill`.
#[derive(Args)]
pub struct FillArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    /// Partitions of the topic; records go to them round-robin.
    #[arg(long)]
    partitions: i32,
    #[arg(long)]
    records: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Distinct keys, `key-{id % keys}` (a multiple of `partitions` keeps each key in one
    /// partition); 0 writes records without keys.
    #[arg(long, default_value_t = 0)]
    keys: u64,
}

/// Arguments of `consume`.
#[derive(Args)]
pub struct ConsumeArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Broker bootstrap servers (direct).
    #[arg(long, default_value = "")]
    bootstrap: String,
    /// The sidecar's HTTP listener, host:port (sidecar).
    #[arg(long, default_value = "")]
    sidecar_http: String,
    /// The sidecar's process id, for its CPU time and RSS (sidecar).
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long)]
    topic: String,
    /// Partitions to read, 0..partitions.
    #[arg(long)]
    partitions: i32,
    /// Records to read.
    #[arg(long)]
    records: u64,
    /// `max_bytes` asked of each fetch; the sidecar clamps it to `consumer.request_max_bytes`.
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: u64,
    /// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
    /// A librdkafka property for the direct consumer, over its defaults (repeatable).
    #[arg(long = "direct-property", value_name = "KEY=VALUE")]
    direct_properties: Vec<String>,
    /// Stop reading after this many seconds, whatever was read by then (with `--subscribe`: this
    /// many seconds after the first record).
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Direct: join a consumer group and subscribe to the topic (as the reactive consumer does)
    /// instead of assigning the partitions by hand.
    #[arg(long)]
    subscribe: bool,
}

/// Writes `records` values round-robin over the partitions and waits until all are acknowledged.
pub fn fill(args: &FillArgs) -> Result<Value> {
    let values = summary::values(args.value_size, 256);
    let producer = producer::create(&args.bootstrap, producer::Tracker::new(None)?)?;
    let start = Instant::now();
    let mut key = String::new();
    for id in 0..args.records {
        let partition = (id % args.partitions.max(1) as u64) as i32;
        key.clear();
        if args.keys > 0 {
            write!(key, "key-{}", id % args.keys)?;
        }
        let key = (args.keys > 0).then_some(key.as_bytes());
        producer::send_to(&producer, &args.topic, partition, key, &values[id as usize % values.len()], id)?;
    }
    if !producer::wait_for(&producer, args.records, ACK_LIMIT) {
        bail!("the fill was not acknowledged in time");
    }
    if producer::tracker(&producer).failed.load(std::sync::atomic::Ordering::Acquire) > 0 {
        bail!("some fill records failed");
    }
    producer::close(&producer);
    Ok(json!({
        "records": args.records,
        "value_size": args.value_size,
        "keys": args.keys,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

/// Reads the records once, on the side `mode` names.
pub fn run(args: &ConsumeArgs) -> Result<Value> {
    match args.mode {
        Mode::Direct => direct(args),
        Mode::Sidecar => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(sidecar(args))
        }
    }
}

/// What was read so far; refuses a record that goes back in its partition (a duplicate).
struct Progress {
    next: HashMap<i32, i64>,
    records: u64,
    bytes: u64,
    first: Option<Instant>,
    start: Instant,
    deadline: Instant,
    /// Set when the budget runs from the first record rather than from the start.
    budget_from_first: Option<Duration>,
}

impl Progress {
    /// Reading starts now and stops at `max_seconds` from now.
    fn new(max_seconds: f64) -> Self {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(max_seconds);
        Self { next: HashMap::new(), records: 0, bytes: 0, first: None, start, deadline, budget_from_first: None }
    }

    /// Reading starts now and stops at `max_seconds` after the first record, or when none came
    /// within [`JOIN_LIMIT`] (a group join's length depends on the broker, not on the reader).
    fn from_first_record(max_seconds: f64) -> Self {
        let budget = Duration::from_secs_f64(max_seconds);
        let mut progress = Self::new(0.0);
        progress.deadline = progress.start + JOIN_LIMIT + budget;
        progress.budget_from_first = Some(budget);
        progress
    }

    /// Whether to keep reading.
    fn reading(&self, target: u64) -> bool {
        self.records < target && Instant::now() < self.deadline
    }

    fn record(&mut self, partition: i32, offset: i64, value_len: usize) -> Result<()> {
        let next = self.next.entry(partition).or_insert(0);
        if offset < *next {
            bail!("partition {partition}: offset {offset} read again (expected {next} or later)");
        }
        *next = offset + 1;
        self.records += 1;
        self.bytes += value_len as u64;
        if self.first.is_none() {
            let now = Instant::now();
            self.first = Some(now);
            if let Some(budget) = self.budget_from_first {
                self.deadline = now + budget;
            }
        }
        Ok(())
    }

    /// Ends the run: fails when nothing was read, else summarizes it.
    fn finish(&self, target: u64) -> Result<Value> {
        let end = Instant::now();
        let Some(first) = self.first.filter(|_| self.records > 1) else {
            bail!("read {} records in {:?}", self.records, end - self.start);
        };
        let steady = (end - first).as_secs_f64().max(1e-6);
        Ok(json!({
            "records": self.records,
            "complete": self.records >= target,
            "value_bytes": self.bytes,
            "seconds": (end - self.start).as_secs_f64(),
            "records_per_s": (self.records - 1) as f64 / steady,
            "records_per_s_from_assign": self.records as f64 / (end - self.start).as_secs_f64(),
            "first_record_ms": (first - self.start).as_secs_f64() * 1000.0,
        }))
    }
}

fn all_partitions(topic: &str, partitions: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.max(0) as usize);
    for partition in 0..partitions {
        // No offset: start at the committed one, else at auto.offset.reset, as the sidecar does.
        list.add_partition(topic, partition);
    }
    list
}

/// A direct consumer: librdkafka's defaults, a fresh group, no commits, then `properties`.
pub fn direct_consumer(bootstrap: &str, group: &str, properties: &[String]) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for property in properties {
        let Some((key, value)) = property.split_once('=') else { bail!("{property:?} is not KEY=VALUE") };
        config.set(key, value);
    }
    config.create().context("creating the direct consumer")
}

fn direct(args: &ConsumeArgs) -> Result<Value> {
    let consumer = direct_consumer(&args.bootstrap, &client::session_id("consume-direct"), &args.direct_properties)?;
    // Connected and the topic known before timing, as a sidecar instance is once created.
    consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10)).context("topic metadata")?;
    let me = std::process::id();
    let cpu_before = process::cpu_seconds(me, args.clock_ticks)?;
    let mut progress =
        if args.subscribe { Progress::from_first_record(args.max_seconds) } else { Progress::new(args.max_seconds) };
    if args.subscribe {
        consumer.subscribe(&[&args.topic]).context("subscribing")?;
    } else {
        consumer.assign(&all_partitions(&args.topic, args.partitions)).context("assigning partitions")?;
    }
    while progress.reading(args.records) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                progress.record(message.partition(), message.offset(), message.payload().map_or(0, <[u8]>::len))?;
            }
            Some(Err(error)) => eprintln!("direct consumer: {error}"),
            None => {}
        }
    }
    let cpu = process::cpu_seconds(me, args.clock_ticks)? - cpu_before;
    let mut result = progress.finish(args.records)?;
    result["mode"] = json!("direct");
    result["subscribed"] = json!(args.subscribe);
    result["client_cpu_s"] = json!(cpu);
    Ok(result)
}

async fn sidecar(args: &ConsumeArgs) -> Result<Value> {
    let Some(pid) = args.pid else { bail!("--pid is required with --mode sidecar") };
    let http = rest::http_client()?;
    let group = client::session_id("consume-sidecar");
    let consumer = RestConsumer::create(&http, &args.sidecar_http, &group, "bench").await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let rss = tokio::spawn(process::peak_rss(pid, Duration::from_millis(50), stopped));
    let me = std::process::id();
    let (cpu_before, sidecar_before) =
        (process::cpu_seconds(me, args.clock_ticks)?, process::cpu_seconds(pid, args.clock_ticks)?);
    let mut progress = Progress::new(args.max_seconds);
    consumer.assign(&args.topic, 0..args.partitions).await?;
    let (mut fetches, mut empty, mut largest, mut slowest) = (0u64, 0u64, 0usize, Duration::ZERO);
    let mut scratch = Vec::new();
    while progress.reading(args.records) {
        let asked = Instant::now();
        let records = consumer.fetch(FETCH_WAIT, args.max_bytes).await?;
        slowest = slowest.max(asked.elapsed());
        fetches += 1;
        empty += u64::from(records.is_empty());
        largest = largest.max(records.len());
        for record in &records {
            let length = rest::decoded_len(record.value.as_deref(), &mut scratch)?;
            progress.record(record.partition, record.offset, length)?;
        }
    }
    let cpu = process::cpu_seconds(me, args.clock_ticks)? - cpu_before;
    let sidecar_cpu = process::cpu_seconds(pid, args.clock_ticks)? - sidecar_before;
    let _ = stop.send(true);
    let peak_rss = rss.await?;
    let mut result = progress.finish(args.records)?;
    consumer.delete().await?;
    result["mode"] = json!("sidecar");
    result["client_cpu_s"] = json!(cpu);
    result["sidecar_cpu_s"] = json!(sidecar_cpu);
    result["fetches"] = json!(fetches);
    result["empty_fetches"] = json!(empty);
    result["records_per_fetch"] = json!(progress.records as f64 / fetches.max(1) as f64);
    result["largest_fetch_records"] = json!(largest);
    result["slowest_fetch_ms"] = json!(slowest.as_secs_f64() * 1000.0);
    result["sidecar_peak_rss_bytes"] = json!(peak_rss);
    Ok(result)
}
