//! Generated protobuf and tonic code for `proto/kafka_sidecar/v1/producer.proto`.
//! Kept in its own crate so the daemon and any Rust client share one definition.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Version 1 of the producer sidecar API.
pub mod v1 {
    tonic::include_proto!("kafka_sidecar.v1");
}
