//! Helpers for `tests/deploy_artefacts.rs`: the metric families the sidecar exports
//! (`exposition`), a small PromQL scanner (`promql`) and readers for the Kubernetes and Docker
//! artefacts (`manifests`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod exposition;
pub mod manifests;
pub mod promql;

use std::path::{Path, PathBuf};

/// Peak RSS under full load, from README.md's Performance table: the sidecar's memory request.
pub const PEAK_RSS_BYTES: u64 = 68 << 20;

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// A repository file's text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}
