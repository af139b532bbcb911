//! Reads another process's memory and CPU time from `/proc` (Linux only, as the benchmark is).

use std::time::Duration;

use anyhow::{Context, Result};

/// Resident set size of `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmRSS line")
}

/// Samples the RSS of `pid` every `period` until `stop` turns true; returns the peak.
pub async fn peak_rss(pid: u32, period: Duration, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let mut peak = 0;
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        if let Ok(rss) = rss_bytes(pid) {
            peak = peak.max(rss);
        }
        if *stop.borrow() {
            return peak;
        }
    }
}
