//! Overload: offer the sidecar more records per second than it sustains, open loop, without
//! resending what it refuses. Reports the share refused with `QUEUE_FULL`, the latency of the
//! accepted records, and the sidecar's peak RSS sampled from `/proc` (its memory must stay
//! bounded by the admission budget, whatever the offered load).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use kafka_sidecar_proto::v1::ProduceBatch;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::generator::Schedule;
use crate::{client, process, summary};

/// Records per `EmitBatch` at most (the generator sends every due range at once).
const MAX_BATCH: u64 = 2000;
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Arguments of `overload`.
#[derive(Args)]
pub struct OverloadArgs {
    /// Sidecar gRPC address: host:port or unix:///path.
    #[arg(long)]
    sidecar: String,
    /// The sidecar's process id, for RSS sampling.
    #[arg(long)]
    pid: u32,
    #[arg(long)]
    topic: String,
    /// Offered records per second.
    #[arg(long)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// EmitBatch calls in flight at most; beyond that the generator waits (and reports lag).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    refused: AtomicU64,
    batches: AtomicU64,
    batches_refused: AtomicU64,
    errors: AtomicU64,
}

/// Runs the overload scenario.
pub fn run(args: &OverloadArgs) -> Result<Value> {
    let values = summary::values(args.value_size, 256);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut client = runtime.block_on(client::connect(&args.sidecar))?;
    let session = client::session_id("overload");
    let total = (args.rate * args.seconds) as u64;
    let schedule = Schedule::new(args.rate, total);
    let delivered = Arc::new(Mutex::new(summary::new_histogram()?));
    let accepted_latency = Arc::new(Mutex::new(summary::new_histogram()?));
    let recorder = Arc::clone(&delivered);
    let deliveries = runtime.block_on(client::read_deliveries(&mut client, &session, move |report| {
        if let Ok(mut histogram) = recorder.lock() {
            summary::record(&mut histogram, schedule.micros_since_due(report.record_id));
        }
    }))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let rss = runtime.spawn(process::peak_rss(args.pid, Duration::from_millis(20), stopped));
    let counts = Arc::new(Counts::default());
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let start = Instant::now();
    let lag = schedule.run(MAX_BATCH, 0, |ids| {
        let Ok(permit) = runtime.block_on(Arc::clone(&in_flight).acquire_owned()) else { return };
        let first = ids.start;
        let batch = ProduceBatch {
            batch_id: first,
            client_id: "bench".into(),
            session_id: session.clone(),
            records: client::records(&args.topic, ids, &values),
            ..ProduceBatch::default()
        };
        let (mut client, counts, latency) = (client.clone(), Arc::clone(&counts), Arc::clone(&accepted_latency));
        runtime.spawn(async move {
            counts.batches.fetch_add(1, Ordering::AcqRel);
            match client.emit_batch(batch).await {
                Ok(response) => {
                    let ack = response.into_inner();
                    counts.accepted.fetch_add(u64::from(ack.accepted), Ordering::AcqRel);
                    counts.refused.fetch_add(u64::from(ack.rejected), Ordering::AcqRel);
                    if ack.rejected > 0 {
                        counts.batches_refused.fetch_add(1, Ordering::AcqRel);
                    }
                    if ack.accepted > 0
                        && let Ok(mut histogram) = latency.lock()
                    {
                        summary::record(&mut histogram, schedule.micros_since_due(first));
                    }
                }
                Err(_) => {
                    counts.errors.fetch_add(1, Ordering::AcqRel);
                }
            }
            drop(permit);
        });
    });
    let offered_seconds = start.elapsed().as_secs_f64();
    let all_permits = u32::try_from(args.max_in_flight)?;
    let _all_done = runtime.block_on(in_flight.acquire_many(all_permits))?;
    let accepted = counts.accepted.load(Ordering::Acquire);
    let drained = runtime.block_on(deliveries.wait_for(accepted, DRAIN_LIMIT));
    let _ = stop.send(true);
    let peak_rss = runtime.block_on(rss)?;
    if !drained {
        bail!("accepted records were not acknowledged in time");
    }
    let refused = counts.refused.load(Ordering::Acquire);
    let batches = counts.batches.load(Ordering::Acquire).max(1);
    let delivered = match delivered.lock() {
        Ok(histogram) => summary::summarize(&histogram),
        Err(_) => bail!("histogram lock poisoned"),
    };
    let accept = match accepted_latency.lock() {
        Ok(histogram) => summary::summarize(&histogram),
        Err(_) => bail!("histogram lock poisoned"),
    };
    Ok(json!({
        "offered_rate": args.rate,
        "achieved_offered_rps": total as f64 / offered_seconds,
        "generator_worst_lag_ms": lag.as_secs_f64() * 1000.0,
        "records": total,
        "accepted": accepted,
        "refused": refused,
        "refused_share": refused as f64 / total.max(1) as f64,
        "batches": batches,
        "batches_refused_share": counts.batches_refused.load(Ordering::Acquire) as f64 / batches as f64,
        "rpc_errors": counts.errors.load(Ordering::Acquire),
        "accepted_rps": accepted as f64 / offered_seconds,
        "delivery_latency_accepted": delivered,
        "accept_latency": accept,
        "peak_rss_bytes": peak_rss,
        "delivery_failed": deliveries.failed.load(Ordering::Acquire),
    }))
}
