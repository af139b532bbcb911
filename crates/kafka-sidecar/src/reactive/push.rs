//! One batch's trip to the backend, run as its own task: push, read the verdicts, write the dead
//! letters the verdicts (or exhausted retries) call for, and say what became of each record.
//! The dispatcher only applies the dispositions; it never waits on the backend or on Kafka.
//!
//! With schema formats the batch's schemas are loaded first; a record whose key or value does not
//! decode (not in the wire format, unknown schema) is dead-lettered with the reason instead of
//! pushed. A registry outage holds the whole batch back without counting an attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backend::{Backend, PushOutcome, Verdict};
use super::dead_letter::DeadLetters;
use super::lanes::{Batch, LaneKey, Pending};
use crate::consumer::ConsumedRecord;
use crate::http::render::RecordFormats;

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Done; the label says how (`processed`, `skipped`, `dead_lettered`).
    Done(&'static str),
    /// Push it again, not before the hint (if any).
    Retry { after: Option<Duration>, counted: bool, error: String },
    /// The backend is down: push it again when it is back, with no attempt counted.
    Down { error: String },
}

/// A batch's result.
pub struct PushResult {
    /// The batch id.
    pub batch: u64,
    /// Each lane's records and what became of them, in offset order.
    pub lanes: Vec<(LaneKey, Vec<(Pending, Disposition)>)>,
    /// Time the backend took.
    pub latency: Duration,
    /// The push-level outcome, for metrics: `answered`, `retry`, `rejected`, `down`.
    pub outcome: &'static str,
}

/// What a push needs besides the batch.
#[derive(Clone)]
pub struct PushContext {
    /// The backend.
    pub backend: Backend,
    /// Dead letters.
    pub dead_letters: Arc<DeadLetters>,
    /// Attempts before a record is dead-lettered.
    pub max_attempts: u32,
    /// How keys and values are rendered.
    pub formats: RecordFormats,
}

/// Pushes `batch` and settles every record in it.
pub async fn push(context: PushContext, batch: Batch) -> PushResult {
    let all: Vec<&ConsumedRecord> =
        batch.lanes.iter().flat_map(|(_, pending)| pending.iter().map(|p| &p.record)).collect();
    let started = Instant::now();
    let decoder = match context.formats.load_schemas(&all).await {
        Ok(decoder) => decoder,
        Err(error) => return hold_back(batch, error.retry_after, error.message),
    };
    // Records whose schema-format key or value does not decode go to the dead letter topic, not
    // to the backend. (Plain formats keep today's behaviour: pushed with an `error` field.)
    let undecodable: Vec<Option<String>> = if decoder.uses_schemas() {
        all.iter().map(|record| decoder.undecodable(record)).collect()
    } else {
        vec![None; all.len()]
    };
    let records: Vec<&ConsumedRecord> =
        all.iter().zip(&undecodable).filter(|(_, why)| why.is_none()).map(|(record, _)| *record).collect();
    let outcome = if records.is_empty() {
        PushOutcome::Answered(Default::default())
    } else {
        match crate::http::render::records_json(records.iter().copied(), &decoder) {
            Ok(body) => context.backend.push(&records, body).await,
            Err(error) => PushOutcome::RetryAll { after: None, error: format!("cannot encode the batch: {error}") },
        }
    };
    let latency = started.elapsed();
    let label = match &outcome {
        PushOutcome::Answered(_) => "answered",
        PushOutcome::RetryAll { .. } => "retry",
        PushOutcome::DeadLetterAll { .. } => "rejected",
        PushOutcome::Down { .. } => "down",
    };
    let mut lanes = Vec::with_capacity(batch.lanes.len());
    let mut reasons = undecodable.into_iter();
    for (lane, pending) in batch.lanes {
        let mut settled = Vec::with_capacity(pending.len());
        for record in pending {
            let verdict = match reasons.next().flatten() {
                Some(why) => Some(Verdict::DeadLetter { error: format!("not decodable: {why}") }),
                None => verdict_for(&outcome, &record),
            };
            let disposition = settle(&context, &record, verdict).await;
            settled.push((record, disposition));
        }
        lanes.push((lane, settled));
    }
    PushResult { batch: batch.id, lanes, latency, outcome: label }
}

/// Every record of `batch` to be pushed again later, with no attempt counted.
fn hold_back(batch: Batch, after: Option<Duration>, error: String) -> PushResult {
    let lanes = batch
        .lanes
        .into_iter()
        .map(|(lane, pending)| {
            let retry = || Disposition::Retry { after, counted: false, error: error.clone() };
            (lane, pending.into_iter().map(|record| (record, retry())).collect())
        })
        .collect();
    PushResult { batch: batch.id, lanes, latency: Duration::ZERO, outcome: "held_back" }
}

/// The verdict the push outcome gives one record; `None` means "backend down".
fn verdict_for(outcome: &PushOutcome, pending: &Pending) -> Option<Verdict> {
    let record = &pending.record;
    match outcome {
        // A plain 2xx has no verdicts: skip building a lookup key per record.
        PushOutcome::Answered(verdicts) if verdicts.is_empty() => Some(Verdict::Ok),
        PushOutcome::Answered(verdicts) => Some(
            verdicts.get(&(record.topic.to_string(), record.partition, record.offset)).cloned().unwrap_or(Verdict::Ok),
        ),
        PushOutcome::RetryAll { after, error } => Some(Verdict::Retry { after: *after, error: error.clone() }),
        PushOutcome::DeadLetterAll { error } => Some(Verdict::DeadLetter { error: error.clone() }),
        PushOutcome::Down { .. } => None,
    }
}

async fn settle(context: &PushContext, pending: &Pending, verdict: Option<Verdict>) -> Disposition {
    let attempts = pending.attempts + 1;
    let dead_letter_error = match verdict {
        None => return Disposition::Down { error: "the backend cannot be reached".into() },
        Some(Verdict::Ok) => return Disposition::Done("processed"),
        Some(Verdict::Skip) => return Disposition::Done("skipped"),
        Some(Verdict::Retry { after, error }) if attempts < context.max_attempts => {
            return Disposition::Retry { after, counted: true, error };
        }
        Some(Verdict::Retry { error, .. }) => format!("gave up after {attempts} attempts: {error}"),
        Some(Verdict::DeadLetter { error }) => error,
    };
    match context.dead_letters.send(&pending.record, attempts, &dead_letter_error).await {
        Ok(()) => Disposition::Done("dead_lettered"),
        // Never move past a record whose dead letter Kafka did not take: try again later.
        Err(error) => Disposition::Retry {
            after: Some(Duration::from_secs(1)),
            counted: false,
            error: format!("dead letter not written: {error}"),
        },
    }
}
