//! Open-loop produce-to-delivery-report latency at a fixed rate: directly through an
//! in-process rdkafka producer, or through the sidecar (`EmitStream`, one batch per due
//! range, reports from `DeliveryStream`) over TCP or a Unix socket.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use kafka_sidecar_proto::v1::ProduceBatch;
use serde_json::{Value, json};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::generator::Schedule;
use crate::{client, producer, summary};

const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Records handed over at once when the generator has fallen behind.
const MAX_BATCH: u64 = 1000;

/// How records reach Kafka.
#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Direct,
    Sidecar,
}

/// Arguments of `latency`.
#[derive(Args)]
pub struct LatencyArgs {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value = "")]
    bootstrap: String,
    /// Sidecar gRPC address: host:port or unix:///path.
    #[arg(long, default_value = "")]
    sidecar: String,
    #[arg(long)]
    topic: String,
    /// Records per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds sent first and left out of the histogram.
    #[arg(long, default_value_t = 2.0)]
    warm_up_seconds: f64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

/// Runs one latency measurement and returns its summary.
pub fn run(args: &LatencyArgs) -> Result<Value> {
    let warm_up = (args.rate * args.warm_up_seconds) as u64;
    let total = warm_up + (args.rate * args.seconds) as u64;
    let (histogram, worst_lag) = match args.mode {
        Mode::Direct => direct(args, warm_up, total)?,
        Mode::Sidecar => sidecar(args, warm_up, total)?,
    };
    let mut result = summary::summarize(&histogram);
    result["rate"] = json!(args.rate);
    result["seconds"] = json!(args.seconds);
    result["generator_worst_lag_ms"] = json!(worst_lag.as_secs_f64() * 1000.0);
    Ok(result)
}

fn direct(args: &LatencyArgs, warm_up: u64, total: u64) -> Result<(hdrhistogram::Histogram<u64>, Duration)> {
    let values = summary::values(args.value_size, 256);
    let schedule = Schedule::new(args.rate, total);
    let producer = producer::create(&args.bootstrap, producer::Tracker::new(Some((schedule, warm_up)))?)?;
    let mut failure = None;
    let lag = schedule.run(MAX_BATCH, warm_up, |ids| {
        for id in ids {
            if let Err(error) = producer::send(&producer, &args.topic, &values[id as usize % values.len()], id) {
                failure.get_or_insert(error);
            }
        }
    });
    if let Some(error) = failure {
        return Err(error);
    }
    if !producer::wait_for(&producer, total, DRAIN_LIMIT) {
        bail!("direct latency run was not acknowledged in time");
    }
    producer::close(&producer);
    let histogram = match producer::tracker(&producer).histogram.lock() {
        Ok(histogram) => histogram.clone(),
        Err(_) => bail!("histogram lock poisoned"),
    };
    Ok((histogram, lag))
}

fn sidecar(args: &LatencyArgs, warm_up: u64, total: u64) -> Result<(hdrhistogram::Histogram<u64>, Duration)> {
    let values = summary::values(args.value_size, 256);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut client = runtime.block_on(client::connect(&args.sidecar))?;
    let session = client::session_id("latency");
    let histogram = Arc::new(Mutex::new(summary::new_histogram()?));
    let schedule = Schedule::new(args.rate, total);
    let recorder = Arc::clone(&histogram);
    let deliveries = runtime.block_on(client::read_deliveries(&mut client, &session, move |report| {
        if report.record_id >= warm_up
            && let Ok(mut histogram) = recorder.lock()
        {
            summary::record(&mut histogram, schedule.micros_since_due(report.record_id));
        }
    }))?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<ProduceBatch>();
    let mut acks = runtime.block_on(client.emit_stream(UnboundedReceiverStream::new(receiver)))?.into_inner();
    let refused = runtime.spawn(async move {
        let mut refused = 0u64;
        while let Ok(Some(ack)) = acks.message().await {
            refused += u64::from(ack.rejected);
        }
        refused
    });
    // Set-up time before the first due time is covered by the warm-up, which is not recorded.
    let lag = schedule.run(MAX_BATCH, warm_up, |ids| {
        let first = ids.start;
        let records = client::records(&args.topic, ids, &values);
        let batch = ProduceBatch {
            batch_id: first,
            client_id: "bench".into(),
            session_id: session.clone(),
            records,
            ..ProduceBatch::default()
        };
        let _ = sender.send(batch);
    });
    drop(sender);
    if !runtime.block_on(deliveries.wait_for(total, DRAIN_LIMIT)) {
        bail!("sidecar latency run was not acknowledged in time");
    }
    let refused = runtime.block_on(refused)?;
    if refused > 0 || deliveries.failed.load(Ordering::Acquire) > 0 {
        bail!("sidecar refused {refused} records during a latency run");
    }
    let histogram = match histogram.lock() {
        Ok(histogram) => histogram.clone(),
        Err(_) => bail!("histogram lock poisoned"),
    };
    Ok((histogram, lag))
}
