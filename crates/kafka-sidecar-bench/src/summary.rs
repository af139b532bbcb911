//! Latency histograms (HdrHistogram, microseconds) and their JSON summary.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A histogram of microseconds from 1 µs to 10 minutes at 3 significant digits.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// Records a duration in microseconds, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.max(1));
}

/// `{count, p50_ms, p99_ms, p999_ms, max_ms, mean_ms}`.
pub fn summarize(histogram: &Histogram<u64>) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p90_ms": ms(histogram.value_at_quantile(0.90)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "p999_ms": ms(histogram.value_at_quantile(0.999)),
        "max_ms": ms(histogram.max()),
        "mean_ms": histogram.mean() / 1000.0,
    })
}

/// Values to send: `count` distinct alphanumeric strings of `size` bytes (deterministic
/// pseudo-random, so lz4 sees realistic, barely compressible data in every mode).
pub fn values(size: usize, count: usize) -> Vec<bytes::Bytes> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            (0..size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize]
                })
                .collect::<Vec<u8>>()
                .into()
        })
        .collect()
}
