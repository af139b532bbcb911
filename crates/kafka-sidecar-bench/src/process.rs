//! Reads another process's memory and CPU time from `/proc` (Linux only, as the benchmark is).

use std::time::Duration;

use anyhow::{Context, Result};

/// Resident set size of `pid` in bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_field(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Threads of `pid` (`Threads` in `/proc/PID/status`).
pub fn threads(pid: u32) -> Result<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, name: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {name} line in /proc/{pid}/status"))
}

/// User plus system CPU seconds of `pid`, all threads (`utime + stime` in `/proc/PID/stat`, in
/// clock ticks of `ticks_per_second`: the caller passes `sysconf(_SC_CLK_TCK)`, as this crate
/// forbids the `unsafe` a libc call would need).
pub fn cpu_seconds(pid: u32, ticks_per_second: u64) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks = |index: usize| -> Result<u64> {
        fields.get(index).and_then(|field| field.parse().ok()).with_context(|| format!("bad /proc/{pid}/stat"))
    };
    // Fields 14 and 15 of stat(5); the slice starts at field 3 (state).
    Ok((ticks(11)? + ticks(12)?) as f64 / ticks_per_second.max(1) as f64)
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
