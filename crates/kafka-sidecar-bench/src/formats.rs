//! Produce throughput by value format: avro with a schema registered beforehand and named by id
//! (so the sidecar resolves it from its cache after the first request) vs binary values of exactly
//! the same length, through the same sidecar, to the same topic, with the same keys, batch size
//! and concurrency. Over HTTP (`POST /producers/{topic}`, answered once Kafka has acknowledged
//! every record) and over gRPC (`EmitBatch` with the batch's `value_schema`, counted by delivery
//! reports). Request bodies and batches are built before timing, so the client's own work is
//! sending and reading answers, the same for both formats.
//!
//! Each run sends a warm-up, then the measured records; CPU seconds of the sidecar and of this
//! process are read from `/proc` around the measured part. Repetitions alternate which format
//! goes first.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_sidecar_proto::v1::{ProduceRequest, SchemaSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::orders::{self, Order};
use crate::{client, process, rest};

/// Distinct orders; records take them round-robin.
const ORDERS: usize = 256;
/// Distinct request bodies (or gRPC batches) per format, sent round-robin.
const DISTINCT_BATCHES: usize = 8;
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// A produce API.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Api {
    Http,
    Grpc,
}

/// A value format.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Binary,
    Avro,
}

/// Arguments of `formats`.
#[derive(Args)]
pub struct FormatsArgs {
    /// The sidecar's HTTP listener, host:port.
    #[arg(long)]
    sidecar_http: String,
    /// The sidecar's gRPC address: host:port or unix:///path.
    #[arg(long)]
    sidecar_grpc: String,
    /// The schema registry the sidecar uses (its `schema_registry.url`).
    #[arg(long)]
    registry: String,
    /// The sidecar's process id, for its CPU time.
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    topic: String,
    /// Records per measured run (rounded up to whole batches).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records sent and acknowledged before each measured run.
    #[arg(long, default_value_t = 20_000)]
    warm_up: u64,
    /// Records per HTTP request or EmitBatch call.
    #[arg(long, default_value_t = 1000)]
    batch_records: u64,
    /// Requests (calls) in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    #[arg(long, default_value_t = 3)]
    repetitions: u32,
    /// The APIs to measure (repeatable).
    #[arg(long = "api", value_enum, default_values_t = [Api::Http, Api::Grpc])]
    apis: Vec<Api>,
    /// The formats to measure (repeatable; one alone is for profiling the sidecar).
    #[arg(long = "format", value_enum, default_values_t = [Format::Binary, Format::Avro])]
    formats: Vec<Format>,
    /// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
}

/// One measured run.
struct Run {
    records_per_s: f64,
    sidecar_cpu_s: f64,
    client_cpu_s: f64,
    refused_records: u64,
}

/// What each format sends, built once.
struct Load {
    http_bodies: Arc<[Bytes]>,
    grpc_batches: Arc<[Vec<ProduceRequest>]>,
    value_schema: Option<SchemaSpec>,
}

/// Registers the schema, then measures both formats on every API `repetitions` times.
pub fn run(args: &FormatsArgs) -> Result<Value> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run_all(args))
}

async fn run_all(args: &FormatsArgs) -> Result<Value> {
    let http = rest::http_client()?;
    let subject = format!("{}-value", args.topic);
    let schema_id = orders::register(&http, &args.registry, &subject).await?;
    let orders = orders::orders(ORDERS);
    let binary = load(args, &orders, Format::Binary, schema_id)?;
    let avro = load(args, &orders, Format::Avro, schema_id)?;
    let mut output = json!({
        "schema_id": schema_id,
        "subject": subject,
        "schema": orders::ORDER_SCHEMA,
        "records": whole_batches(args.records, args.batch_records) * args.batch_records,
        "warm_up": whole_batches(args.warm_up, args.batch_records) * args.batch_records,
        "batch_records": args.batch_records,
        "concurrency": args.concurrency,
        "value_bytes_mean": mean(orders.iter().map(|order| order.binary.len())),
        "avro_json_bytes_mean": mean(orders.iter().map(|order| order.json.to_string().len())),
        "http_body_bytes_per_record": {
            "binary": mean(binary.http_bodies.iter().map(Bytes::len)) / args.batch_records as f64,
            "avro": mean(avro.http_bodies.iter().map(Bytes::len)) / args.batch_records as f64,
        },
    });
    for api in &args.apis {
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for repetition in 0..args.repetitions {
            let order =
                if repetition % 2 == 0 { [Format::Binary, Format::Avro] } else { [Format::Avro, Format::Binary] };
            for format in order.into_iter().filter(|format| args.formats.contains(format)) {
                let sent = if format == Format::Binary { &binary } else { &avro };
                let run = match api {
                    Api::Http => http_run(args, &http, sent).await?,
                    Api::Grpc => grpc_run(args, sent).await?,
                };
                runs[usize::from(format == Format::Avro)].push(run);
            }
            let last = |side: &Vec<Run>| side.last().map_or(0.0, |run| run.records_per_s);
            eprintln!(
                "formats {} rep {repetition}: binary {:.0} rec/s, avro {:.0} rec/s",
                api.name(),
                last(&runs[0]),
                last(&runs[1])
            );
        }
        let [binary_runs, avro_runs] = runs;
        output[api.name()] = json!({ "binary": summary(&binary_runs), "avro": summary(&avro_runs) });
    }
    Ok(output)
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// The request bodies and gRPC batches of one format: batch `b` holds orders `b * batch_records`
/// onwards, round-robin.
fn load(args: &FormatsArgs, orders: &[Order], format: Format, schema_id: u32) -> Result<Load> {
    let batch = |index: usize| {
        (0..args.batch_records as usize)
            .map(move |offset| &orders[(index * args.batch_records as usize + offset) % orders.len()])
    };
    let mut http_bodies = Vec::new();
    let mut grpc_batches = Vec::new();
    for index in 0..DISTINCT_BATCHES {
        let records: Vec<Value> = batch(index)
            .map(|order| match format {
                Format::Binary => json!({"key": order.key, "value": STANDARD.encode(&order.binary)}),
                Format::Avro => json!({"key": order.key, "value": order.json}),
            })
            .collect();
        let body = match format {
            Format::Binary => json!({"valueFormat": "binary", "records": records}),
            Format::Avro => json!({"valueFormat": "avro", "valueSchemaId": schema_id, "records": records}),
        };
        http_bodies.push(Bytes::from(serde_json::to_vec(&body)?));
        grpc_batches.push(
            batch(index)
                .enumerate()
                .map(|(offset, order)| ProduceRequest {
                    topic: args.topic.clone(),
                    key: Some(Bytes::from(order.key.clone())),
                    value: match format {
                        Format::Binary => order.binary.clone(),
                        Format::Avro => Bytes::from(order.json.to_string()),
                    },
                    record_id: offset as u64,
                    ..ProduceRequest::default()
                })
                .collect(),
        );
    }
    let value_schema = (format == Format::Avro).then(|| SchemaSpec {
        format: "avro".into(),
        id: Some(schema_id),
        ..SchemaSpec::default()
    });
    Ok(Load { http_bodies: http_bodies.into(), grpc_batches: grpc_batches.into(), value_schema })
}

async fn http_run(args: &FormatsArgs, http: &reqwest::Client, load: &Load) -> Result<Run> {
    let url: Arc<str> = format!("http://{}/producers/{}", args.sidecar_http, args.topic).into();
    let send = |batches: std::ops::Range<u64>| {
        let (http, url, bodies) = (http.clone(), Arc::clone(&url), Arc::clone(&load.http_bodies));
        in_parallel(batches, args.concurrency, move |batch| {
            let (http, url) = (http.clone(), Arc::clone(&url));
            let body = bodies[batch as usize % bodies.len()].clone();
            async move { post_until_accepted(&http, &url, body).await }
        })
    };
    let warm_up = whole_batches(args.warm_up, args.batch_records);
    send(0..warm_up).await?;
    let measured = whole_batches(args.records, args.batch_records);
    let window = Window::open(args)?;
    let refused_requests = send(warm_up..warm_up + measured).await?;
    window.close(args, measured * args.batch_records, refused_requests * args.batch_records)
}

/// The answer of `POST /producers/{topic}`, as much as is checked.
#[derive(Deserialize)]
struct ProduceAnswer {
    offsets: Vec<RecordAnswer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordAnswer {
    error_code: Option<String>,
}

/// Posts one request until it is accepted (a 429 is retried after its hint); fails on any other
/// refusal or on a record Kafka did not take. Returns how many times it was refused.
async fn post_until_accepted(http: &reqwest::Client, url: &str, body: Bytes) -> Result<u64> {
    let mut refused = 0;
    loop {
        let response = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .context("producing over HTTP")?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let hint = response.headers().get("x-retry-after-ms").and_then(|value| value.to_str().ok());
            let hint = hint.and_then(|value| value.parse().ok()).unwrap_or(20);
            refused += 1;
            tokio::time::sleep(Duration::from_millis(hint)).await;
            continue;
        }
        let answer = response.bytes().await.context("reading a produce answer")?;
        if status != reqwest::StatusCode::OK {
            bail!("produce: HTTP {status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(500)]));
        }
        let answer: ProduceAnswer = serde_json::from_slice(&answer).context("the produce answer")?;
        if let Some(code) = answer.offsets.iter().find_map(|record| record.error_code.as_deref()) {
            bail!("a record was not produced: {code}");
        }
        return Ok(refused);
    }
}

async fn grpc_run(args: &FormatsArgs, load: &Load) -> Result<Run> {
    let mut grpc = client::connect(&args.sidecar_grpc).await?;
    let session: Arc<str> = client::session_id("formats").into();
    let deliveries = client::read_deliveries(&mut grpc, &session, |_| {}).await?;
    let send = |batches: std::ops::Range<u64>| {
        let (grpc, session, load_batches) = (grpc.clone(), Arc::clone(&session), Arc::clone(&load.grpc_batches));
        let spec = load.value_schema.clone();
        in_parallel(batches, args.concurrency, move |batch| {
            let (mut grpc, session, spec) = (grpc.clone(), Arc::clone(&session), spec.clone());
            let records = load_batches[batch as usize % load_batches.len()].clone();
            async move { client::emit_all_as(&mut grpc, &session, records, spec).await }
        })
    };
    let warm_up = whole_batches(args.warm_up, args.batch_records);
    send(0..warm_up).await?;
    if !deliveries.wait_for(warm_up * args.batch_records, DRAIN_LIMIT).await {
        bail!("the gRPC warm-up was not acknowledged in time");
    }
    let measured = whole_batches(args.records, args.batch_records);
    let window = Window::open(args)?;
    let refused = send(warm_up..warm_up + measured).await?;
    if !deliveries.wait_for((warm_up + measured) * args.batch_records, DRAIN_LIMIT).await {
        bail!("the gRPC run was not acknowledged in time");
    }
    if deliveries.failed.load(Ordering::Acquire) > 0 {
        bail!("gRPC deliveries failed");
    }
    window.close(args, measured * args.batch_records, refused)
}

/// Sends `batches` with `concurrency` senders, each taking the next batch number when its last
/// send is done; returns the sum of what the sends returned (the refusals).
async fn in_parallel<SendBatch, Sending>(
    batches: std::ops::Range<u64>,
    concurrency: u64,
    send: SendBatch,
) -> Result<u64>
where
    SendBatch: Fn(u64) -> Sending + Clone + Send + 'static,
    Sending: Future<Output = Result<u64>> + Send,
{
    let cursor = Arc::new(AtomicU64::new(batches.start));
    let senders: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (cursor, send, end) = (Arc::clone(&cursor), send.clone(), batches.end);
            tokio::spawn(async move {
                let mut refused = 0;
                loop {
                    let batch = cursor.fetch_add(1, Ordering::AcqRel);
                    if batch >= end {
                        return Ok::<u64, anyhow::Error>(refused);
                    }
                    refused += send(batch).await?;
                }
            })
        })
        .collect();
    let mut refused = 0;
    for sender in senders {
        refused += sender.await??;
    }
    Ok(refused)
}

/// The measured part of a run: its start time and the CPU seconds spent so far.
struct Window {
    start: Instant,
    sidecar_cpu_s: f64,
    client_cpu_s: f64,
}

impl Window {
    fn open(args: &FormatsArgs) -> Result<Self> {
        let (sidecar_cpu_s, client_cpu_s) = cpu(args)?;
        Ok(Self { start: Instant::now(), sidecar_cpu_s, client_cpu_s })
    }

    fn close(self, args: &FormatsArgs, records: u64, refused_records: u64) -> Result<Run> {
        let elapsed = self.start.elapsed().as_secs_f64();
        let (sidecar_cpu_s, client_cpu_s) = cpu(args)?;
        Ok(Run {
            records_per_s: records as f64 / elapsed,
            sidecar_cpu_s: sidecar_cpu_s - self.sidecar_cpu_s,
            client_cpu_s: client_cpu_s - self.client_cpu_s,
            refused_records,
        })
    }
}

/// CPU seconds so far of the sidecar and of this process.
fn cpu(args: &FormatsArgs) -> Result<(f64, f64)> {
    Ok((process::cpu_seconds(args.pid, args.clock_ticks)?, process::cpu_seconds(std::process::id(), args.clock_ticks)?))
}

fn summary(runs: &[Run]) -> Value {
    json!({
        "records_per_s": runs.iter().map(|run| run.records_per_s).collect::<Vec<_>>(),
        "sidecar_cpu_s": runs.iter().map(|run| run.sidecar_cpu_s).collect::<Vec<_>>(),
        "client_cpu_s": runs.iter().map(|run| run.client_cpu_s).collect::<Vec<_>>(),
        "refused_records": runs.iter().map(|run| run.refused_records).collect::<Vec<_>>(),
    })
}

fn whole_batches(records: u64, batch_records: u64) -> u64 {
    records.div_ceil(batch_records.max(1))
}

fn mean(values: impl Iterator<Item = usize>) -> f64 {
    let (sum, count) = values.fold((0, 0), |(sum, count), value| (sum + value, count + 1));
    sum as f64 / count.max(1) as f64
}
