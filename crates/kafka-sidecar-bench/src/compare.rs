//! Records/s of the sidecar's batched gRPC path against an rdkafka producer inside this
//! process with the same configuration and broker. Both count a record when Kafka has
//! acknowledged it (delivery callback in process, DeliveryStream report via the sidecar).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Args;
use serde_json::{Value, json};

use crate::{client, producer, summary};

const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// Arguments of `compare`.
#[derive(Args)]
pub struct CompareArgs {
    #[arg(long)]
    bootstrap: String,
    /// Sidecar gRPC address: host:port or unix:///path.
    #[arg(long)]
    sidecar: String,
    #[arg(long)]
    topic: String,
    /// Records per measured run.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records sent and acknowledged before timing starts.
    #[arg(long, default_value_t = 20_000)]
    warm_up: u64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Records per EmitBatch call.
    #[arg(long, default_value_t = 1000)]
    batch_records: u64,
    /// EmitBatch calls in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    #[arg(long, default_value_t = 3)]
    repetitions: u32,
}

/// Runs both sides `repetitions` times, alternating which goes first.
pub fn run(args: &CompareArgs) -> Result<Value> {
    let values = summary::values(args.value_size, 256);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut in_process = Vec::new();
    let mut sidecar = Vec::new();
    let mut refused = Vec::new();
    for repetition in 0..args.repetitions {
        let sidecar_first = repetition % 2 == 1;
        if sidecar_first {
            let (rate, count) = runtime.block_on(sidecar_once(args, &values))?;
            sidecar.push(rate);
            refused.push(count);
        }
        in_process.push(in_process_once(args, &values)?);
        if !sidecar_first {
            let (rate, count) = runtime.block_on(sidecar_once(args, &values))?;
            sidecar.push(rate);
            refused.push(count);
        }
        eprintln!(
            "compare rep {repetition}: in-process {:.0} rec/s, sidecar {:.0} rec/s",
            in_process[in_process.len() - 1],
            sidecar[sidecar.len() - 1]
        );
    }
    Ok(json!({
        "in_process_rps": in_process,
        "sidecar_rps": sidecar,
        "sidecar_refused_records": refused,
        "records": args.records,
        "warm_up": args.warm_up,
        "value_size": args.value_size,
        "batch_records": args.batch_records,
        "concurrency": args.concurrency,
    }))
}

fn in_process_once(args: &CompareArgs, values: &[Bytes]) -> Result<f64> {
    let producer = producer::create(&args.bootstrap, producer::Tracker::new(None)?)?;
    for id in 0..args.warm_up {
        producer::send(&producer, &args.topic, &values[id as usize % values.len()], id)?;
    }
    if !producer::wait_for(&producer, args.warm_up, DRAIN_LIMIT) {
        bail!("in-process warm-up was not acknowledged in time");
    }
    let end = args.warm_up + args.records;
    let start = Instant::now();
    for id in args.warm_up..end {
        producer::send(&producer, &args.topic, &values[id as usize % values.len()], id)?;
    }
    if !producer::wait_for(&producer, end, DRAIN_LIMIT) {
        bail!("in-process run was not acknowledged in time");
    }
    let elapsed = start.elapsed().as_secs_f64();
    if producer::tracker(&producer).failed.load(Ordering::Acquire) > 0 {
        bail!("in-process deliveries failed");
    }
    producer::close(&producer);
    Ok(args.records as f64 / elapsed)
}

async fn sidecar_once(args: &CompareArgs, values: &[Bytes]) -> Result<(f64, u64)> {
    let mut client = client::connect(&args.sidecar).await?;
    let session = client::session_id("compare");
    let deliveries = client::read_deliveries(&mut client, &session, |_| {}).await?;
    client::emit_all(&mut client, &session, client::records(&args.topic, 0..args.warm_up, values)).await?;
    if !deliveries.wait_for(args.warm_up, DRAIN_LIMIT).await {
        bail!("sidecar warm-up was not acknowledged in time");
    }
    let end = args.warm_up + args.records;
    let cursor = Arc::new(AtomicU64::new(args.warm_up));
    let values: Arc<[Bytes]> = values.into();
    let start = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..args.concurrency {
        let (mut client, cursor, values) = (client.clone(), Arc::clone(&cursor), Arc::clone(&values));
        let (session, topic, batch) = (session.clone(), args.topic.clone(), args.batch_records);
        senders.push(tokio::spawn(async move {
            let mut refused = 0;
            loop {
                let first = cursor.fetch_add(batch, Ordering::AcqRel);
                if first >= end {
                    return Ok::<u64, anyhow::Error>(refused);
                }
                let records = client::records(&topic, first..(first + batch).min(end), &values);
                refused += client::emit_all(&mut client, &session, records).await?;
            }
        }));
    }
    let mut refused = 0;
    for sender in senders {
        refused += sender.await??;
    }
    if !deliveries.wait_for(end, DRAIN_LIMIT).await {
        bail!("sidecar run was not acknowledged in time");
    }
    let elapsed = start.elapsed().as_secs_f64();
    if deliveries.failed.load(Ordering::Acquire) > 0 {
        bail!("sidecar deliveries failed");
    }
    Ok((args.records as f64 / elapsed, refused))
}
