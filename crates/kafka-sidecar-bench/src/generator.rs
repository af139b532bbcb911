//! The open-loop schedule: record `id` is due at `base + id / rate`, whatever happened to the
//! records before it, so a slow response never delays later sends (no coordinated omission).
//! Latency is measured from a record's due time, not from when it was actually sent.

use std::ops::Range;
use std::time::{Duration, Instant};

/// When each record of an open-loop run is due.
#[derive(Clone, Copy)]
pub struct Schedule {
    base: Instant,
    interval_ns: f64,
    total: u64,
}

impl Schedule {
    /// `total` records at `rate` per second, starting a little after now.
    pub fn new(rate: f64, total: u64) -> Self {
        Self { base: Instant::now() + Duration::from_millis(20), interval_ns: 1e9 / rate, total }
    }

    /// When record `id` is due.
    pub fn due(&self, id: u64) -> Instant {
        self.base + Duration::from_nanos((id as f64 * self.interval_ns) as u64)
    }

    /// Microseconds from record `id`'s due time to now.
    pub fn micros_since_due(&self, id: u64) -> u64 {
        Instant::now().saturating_duration_since(self.due(id)).as_micros() as u64
    }

    /// Records due by now (exclusive upper bound), capped at the total.
    fn due_by(&self, now: Instant) -> u64 {
        if now < self.base {
            return 0;
        }
        let elapsed = now.duration_since(self.base).as_nanos() as f64;
        ((elapsed / self.interval_ns) as u64 + 1).min(self.total)
    }

    /// Runs the schedule on the calling thread: hands every due range (at most `max_batch`
    /// records) to `send`, sleeping until the next record is due. Returns how late the
    /// generator fell behind at worst from record `measure_from` on.
    pub fn run(&self, max_batch: u64, measure_from: u64, mut send: impl FnMut(Range<u64>)) -> Duration {
        let mut next = 0;
        let mut worst_lag = Duration::ZERO;
        while next < self.total {
            let now = Instant::now();
            let due = self.due_by(now);
            if due > next {
                if next >= measure_from {
                    worst_lag = worst_lag.max(now.saturating_duration_since(self.due(next)));
                }
                let end = due.min(next + max_batch);
                send(next..end);
                next = end;
            } else {
                std::thread::sleep(self.due(next).saturating_duration_since(now));
            }
        }
        worst_lag
    }
}
