//! kafka-sidecar: one shared Kafka producer per pod, behind local gRPC and HTTP.
//!
//! [`run`] is the whole daemon: it takes a validated [`Config`], already-bound [`Listeners`] and a
//! shutdown future, and returns when the sidecar has drained. `main` only parses flags and binds.
//! See `ARCHITECTURE.md` for the produce path end to end.

pub mod audit;
pub mod auth;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod error;
pub mod grpc;
pub mod http;
pub mod kafka;
pub mod listener_tls;
pub mod metrics;
pub mod reactive;
pub mod record;
pub mod schema;
mod server;
mod sync;
pub mod telemetry;
pub mod trace;

pub use config::Config;
pub use server::{BoundAddresses, Listeners, RunReport, run};
