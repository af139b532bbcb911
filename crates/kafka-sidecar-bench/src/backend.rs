//! Push throughput: the app's side of the sidecar's reactive consumer. An HTTP backend that
//! answers every pushed batch with 200 and an empty body (every record processed), at once or
//! after a fixed delay standing in for the app's work, counts the distinct records it received,
//! and measures records/s from the first batch to the one that completed the target, with the
//! sidecar's and its own CPU over the same window.
//!
//! The orchestrator needs the backend's address before it can start the sidecar, and the
//! sidecar's process id before the window opens, so the backend speaks a two-line protocol:
//! it prints `{"listening": ..., "url": ...}`, then reads the sidecar's process id from stdin.
//! Requests that arrive before that wait unanswered, so no record is counted outside the window.
//! The result is the last stdout line, as with every scenario of this tool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::process;

/// The path batches are POSTed to.
const PATH: &str = "/records";
/// How often the main task checks the time budget.
const TICK: Duration = Duration::from_millis(20);

/// Arguments of `backend`.
#[derive(Args)]
pub struct BackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// How long each answer waits, in milliseconds (the app's processing time per batch).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Distinct records to receive before stopping.
    #[arg(long)]
    records: u64,
    /// Stop this many seconds after the first batch, whatever arrived by then.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Give up when no batch arrived this many seconds after the sidecar's process id was read.
    #[arg(long, default_value_t = 60.0)]
    first_record_seconds: f64,
    /// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
}

/// The part of a pushed record the backend reads (serde skips the rest).
#[derive(Deserialize)]
struct Pushed {
    partition: i32,
    offset: i64,
}

/// CPU seconds of the sidecar and of this process at one moment.
#[derive(Clone, Copy)]
struct Cpu {
    sidecar: f64,
    backend: f64,
}

/// What arrived so far.
#[derive(Default)]
struct Tally {
    /// Per partition, a bit per offset received.
    seen: HashMap<i32, Vec<u64>>,
    distinct: u64,
    duplicates: u64,
    requests: u64,
    largest_request: usize,
    first: Option<(Instant, u64, Cpu)>,
    last: Option<Instant>,
    /// Completed: when, and the CPU then.
    done: Option<Cpu>,
    /// Time requests spent in the handler, summed (mean concurrency = busy / window).
    busy: Duration,
}

impl Tally {
    /// Counts one batch; returns the records in it that were new.
    fn count(&mut self, records: &[Pushed]) -> u64 {
        let before = self.distinct;
        for record in records {
            let Ok(offset) = usize::try_from(record.offset) else { continue };
            let bits = self.seen.entry(record.partition).or_default();
            let (word, bit) = (offset / 64, 1u64 << (offset % 64));
            if bits.len() <= word {
                bits.resize(word + 1, 0);
            }
            if bits[word] & bit == 0 {
                bits[word] |= bit;
                self.distinct += 1;
            } else {
                self.duplicates += 1;
            }
        }
        self.requests += 1;
        self.largest_request = self.largest_request.max(records.len());
        self.distinct - before
    }
}

/// What the handlers share.
struct Shared {
    tally: Mutex<Tally>,
    delay: Duration,
    target: u64,
    sidecar: u32,
    clock_ticks: u64,
    armed: watch::Receiver<bool>,
    finished: watch::Sender<bool>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

impl Shared {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cpu(&self) -> Cpu {
        let read = |pid| process::cpu_seconds(pid, self.clock_ticks).unwrap_or(f64::NAN);
        Cpu { sidecar: read(self.sidecar), backend: read(std::process::id()) }
    }
}

/// Runs the backend until the target or a time budget is reached; returns the result line.
pub fn run(args: &BackendArgs) -> Result<Value> {
    // One thread, as a small app's backend would have; its CPU is reported beside the sidecar's.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &BackendArgs) -> Result<Value> {
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("{}", json!({ "listening": address.to_string(), "url": format!("http://{address}{PATH}") }));
    let (arm, armed) = watch::channel(false);
    let (finished, mut finishing) = watch::channel(false);
    let sidecar = read_pid().await?;
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::default()),
        delay: Duration::from_millis(args.delay_ms),
        target: args.records,
        sidecar,
        clock_ticks: args.clock_ticks,
        armed,
        finished,
        in_flight: AtomicUsize::new(0),
        peak_in_flight: AtomicUsize::new(0),
    });
    let router = Router::new().route(PATH, post(receive)).with_state(Arc::clone(&shared));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let (stop_sampling, sampling) = watch::channel(false);
    let rss = tokio::spawn(process::peak_rss(sidecar, Duration::from_millis(50), sampling));
    let armed_at = Instant::now();
    let _ = arm.send(true);
    let first_limit = Duration::from_secs_f64(args.first_record_seconds);
    let budget = Duration::from_secs_f64(args.max_seconds);
    loop {
        tokio::select! {
            _ = finishing.changed() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
        if server.is_finished() {
            bail!("the HTTP server stopped");
        }
        let first = shared.tally().first.map(|(at, _, _)| at);
        let out_of_time = match first {
            Some(first) => first.elapsed() >= budget,
            None => armed_at.elapsed() >= first_limit,
        };
        if out_of_time {
            break;
        }
    }
    let end_cpu = shared.cpu();
    let _ = stop_sampling.send(true);
    let peak_rss = rss.await?;
    let result = summarize(&shared, armed_at, end_cpu, peak_rss);
    server.abort();
    result
}

/// The sidecar's process id: the first stdin line.
async fn read_pid() -> Result<u32> {
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    line.trim().parse().with_context(|| format!("expected the sidecar's process id on stdin, got {line:?}"))
}

/// One pushed batch: counted on arrival, answered after the delay.
async fn receive(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let mut armed = shared.armed.clone();
    if armed.wait_for(|armed| *armed).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let arrived = Instant::now();
    let now = shared.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    shared.peak_in_flight.fetch_max(now, Ordering::AcqRel);
    let status = match serde_json::from_slice::<Vec<Pushed>>(&body) {
        Ok(records) => {
            record(&shared, &records, arrived);
            if !shared.delay.is_zero() {
                tokio::time::sleep(shared.delay).await;
            }
            StatusCode::OK
        }
        Err(error) => {
            eprintln!("backend: a push is not a JSON array of records: {error}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    shared.tally().busy += arrived.elapsed();
    status
}

fn record(shared: &Shared, records: &[Pushed], arrived: Instant) {
    let mut tally = shared.tally();
    if tally.done.is_some() {
        return;
    }
    let new = tally.count(records);
    if tally.first.is_none() {
        tally.first = Some((arrived, new, shared.cpu()));
    }
    if new > 0 {
        tally.last = Some(arrived);
    }
    if tally.distinct >= shared.target {
        tally.done = Some(shared.cpu());
        let _ = shared.finished.send(true);
    }
}

fn summarize(shared: &Shared, armed_at: Instant, end_cpu: Cpu, peak_rss: u64) -> Result<Value> {
    let tally = shared.tally();
    let (Some((first, first_batch, start_cpu)), Some(last)) = (tally.first, tally.last) else {
        bail!("no record arrived within the time limit");
    };
    if tally.distinct <= first_batch {
        bail!("only one batch ({} records) arrived", tally.distinct);
    }
    let end_cpu = tally.done.unwrap_or(end_cpu);
    let window = (last - first).as_secs_f64().max(1e-6);
    let in_handler = tally.busy.as_secs_f64();
    Ok(json!({
        "records": tally.distinct,
        "complete": tally.distinct >= shared.target,
        "duplicates": tally.duplicates,
        "requests": tally.requests,
        "records_per_request": (tally.distinct + tally.duplicates) as f64 / tally.requests.max(1) as f64,
        "largest_request_records": tally.largest_request,
        // The first batch opens the clock, as the first record does for the consume scenario.
        "records_per_s": (tally.distinct - first_batch) as f64 / window,
        "seconds": window,
        "first_record_ms": (first - armed_at).as_secs_f64() * 1000.0,
        "sidecar_cpu_s": end_cpu.sidecar - start_cpu.sidecar,
        "backend_cpu_s": end_cpu.backend - start_cpu.backend,
        "peak_in_flight": shared.peak_in_flight.load(Ordering::Acquire),
        "mean_in_flight": in_handler / window,
        "mean_answer_ms": in_handler * 1000.0 / tally.requests.max(1) as f64,
        "delay_ms": shared.delay.as_secs_f64() * 1000.0,
        "sidecar_peak_rss_bytes": peak_rss,
    }))
}
