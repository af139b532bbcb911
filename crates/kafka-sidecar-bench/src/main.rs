//! The benchmark's Rust half: a librdkafka mock cluster process, topic creation, and the
//! scenarios that need a precise Rust load generator or client (in-process producer vs the
//! sidecar's batched gRPC path, open-loop latency, overload, consume throughput and idle consumer
//! memory, direct vs the active consumer API; an HTTP backend for the reactive consumer's push
//! throughput; produce throughput by value format, avro vs binary). Each scenario prints one JSON object on stdout;
//! `bench/run.py` orchestrates them and writes the report.

mod backend;
mod client;
mod cluster;
mod compare;
mod consume;
mod formats;
mod generator;
mod idle;
mod latency;
mod orders;
mod overload;
mod process;
mod producer;
mod rest;
mod summary;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Command line of `kafka-sidecar-bench`.
#[derive(Parser)]
#[command(version, about = "kafka-sidecar benchmark driver (run by scripts/bench)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run librdkafka's mock cluster until stdin closes; prints {"bootstrap": ...}.
    MockCluster(cluster::MockClusterArgs),
    /// Create topics on a real broker through the admin API.
    CreateTopics(cluster::CreateTopicsArgs),
    /// Records/s: an in-process rdkafka producer vs the sidecar's batched gRPC path.
    Compare(compare::CompareArgs),
    /// Open-loop produce-to-delivery-report latency, direct or through the sidecar.
    Latency(latency::LatencyArgs),
    /// Offer a multiple of the sustained rate to the sidecar and watch backpressure and RSS.
    Overload(overload::OverloadArgs),
    /// Write records round-robin over a topic's partitions, for `consume` to read.
    Fill(consume::FillArgs),
    /// Read a topic once, by a direct rdkafka consumer or through the sidecar's active API.
    Consume(consume::ConsumeArgs),
    /// RSS, threads and CPU of idle consumers, direct or as the sidecar's instances.
    Idle(idle::IdleArgs),
    /// An HTTP backend for the reactive consumer: answers pushes, measures records/s received.
    Backend(backend::BackendArgs),
    /// Produce records/s by value format: avro with a cached schema vs binary of the same bytes.
    Formats(formats::FormatsArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let output = match cli.command {
        Command::MockCluster(args) => return cluster::run_mock_cluster(&args),
        Command::CreateTopics(args) => return cluster::create_topics(&args),
        Command::Compare(args) => compare::run(&args)?,
        Command::Latency(args) => latency::run(&args)?,
        Command::Overload(args) => overload::run(&args)?,
        Command::Fill(args) => consume::fill(&args)?,
        Command::Consume(args) => consume::run(&args)?,
        Command::Idle(args) => idle::run(&args)?,
        Command::Backend(args) => backend::run(&args)?,
        Command::Formats(args) => formats::run(&args)?,
    };
    println!("{}", serde_json::to_string(&output)?);
    Ok(())
}
