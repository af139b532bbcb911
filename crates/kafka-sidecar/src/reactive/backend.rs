//! The contract with the app's backend: one POST per batch (a JSON array of records), and what the
//! answer means for each record. Pure parsing is separate from the HTTP call so it is unit-tested.
//!
//! * 2xx, empty body, `[]` or no entry for a record: processed.
//! * 2xx with per-record results, seed 002's shape (`{"record":{...},"processed":false,
//!   "stacktrace":"..."}` = dead letter) or the richer one (`{"topic","partition","offset",
//!   "status":"ok"|"retry"|"dead_letter"|"skip","retry_after_ms","error"}`).
//! * 429 / 503 (with `Retry-After`), other 5xx, timeouts: the whole batch is retried.
//! * other 4xx: the whole batch is dead-lettered with the response as the error.
//! * connection refused: the backend is down; nothing is counted against the records.
//!
//! Trace headers (`traceparent`, `tracestate`, `X-Correlation-Id`, `X-Traceability-Id`) go on the
//! push request from the batch's first record (valid values only, see
//! [`crate::trace::forwardable`]); every record also carries its own in the body's
//! `headers`, so a batch that mixes traces loses nothing (the request headers name the first).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::consumer::ConsumedRecord;

/// How much of a failing response body an error keeps.
const BODY_EXCERPT: usize = 512;

/// What to do with one record after a push.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Processed.
    Ok,
    /// Deliberately not processed; done all the same.
    Skip,
    /// Push it again later (after at least the hint).
    Retry { after: Option<Duration>, error: String },
    /// Send it to the dead letter topic.
    DeadLetter { error: String },
}

/// What a push achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// The backend answered 2xx: a verdict per (partition, offset) that has one; others are Ok.
    Answered(HashMap<(String, i32, i64), Verdict>),
    /// Retry the whole batch.
    RetryAll { after: Option<Duration>, error: String },
    /// Dead-letter the whole batch.
    DeadLetterAll { error: String },
    /// The backend cannot be reached: wait, do not count an attempt.
    Down { error: String },
}

#[derive(Deserialize)]
struct SeedResult {
    record: RecordId,
    processed: bool,
    #[serde(default)]
    stacktrace: Option<String>,
}

#[derive(Deserialize)]
struct RecordId {
    topic: String,
    partition: i32,
    offset: i64,
}

#[derive(Deserialize)]
struct RichResult {
    topic: String,
    partition: i32,
    offset: i64,
    status: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ResultEntry {
    Seed(SeedResult),
    Rich(RichResult),
}

/// Reads a 2xx body into per-record verdicts.
pub fn parse_answer(body: &[u8]) -> Result<HashMap<(String, i32, i64), Verdict>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    let entries: Vec<ResultEntry> =
        serde_json::from_slice(body).map_err(|error| format!("the backend's answer is not a result list: {error}"))?;
    let mut verdicts = HashMap::new();
    for entry in entries {
        let (id, verdict) = match entry {
            ResultEntry::Seed(seed) => {
                let verdict = if seed.processed {
                    Verdict::Ok
                } else {
                    Verdict::DeadLetter { error: seed.stacktrace.unwrap_or_else(|| "processed: false".into()) }
                };
                ((seed.record.topic, seed.record.partition, seed.record.offset), verdict)
            }
            ResultEntry::Rich(rich) => {
                let error = rich.error.unwrap_or_else(|| format!("status {}", rich.status));
                let verdict = match rich.status.as_str() {
                    "ok" => Verdict::Ok,
                    "skip" => Verdict::Skip,
                    "retry" => Verdict::Retry { after: rich.retry_after_ms.map(Duration::from_millis), error },
                    "dead_letter" => Verdict::DeadLetter { error },
                    other => return Err(format!("unknown status {other:?} in the backend's answer")),
                };
                ((rich.topic, rich.partition, rich.offset), verdict)
            }
        };
        verdicts.insert(id, verdict);
    }
    Ok(verdicts)
}

/// What a non-2xx status means.
pub fn classify_status(status: u16, retry_after: Option<Duration>, body: &str) -> PushOutcome {
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    let error = format!("HTTP {status}: {excerpt}");
    match status {
        429 | 503 | 500..=599 | 408 => PushOutcome::RetryAll { after: retry_after, error },
        _ => PushOutcome::DeadLetterAll { error },
    }
}

/// The HTTP side of pushing.
#[derive(Clone)]
pub struct Backend {
    client: reqwest::Client,
    url: String,
    health_url: Option<String>,
}

impl Backend {
    /// A backend at `url`, each push bounded by `timeout`.
    pub fn new(url: &str, health_url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(64).build()?;
        let health_url = (!health_url.is_empty()).then(|| health_url.to_string());
        Ok(Self { client, url: url.to_string(), health_url })
    }

    /// POSTs one batch; `body` is the JSON array of `records`.
    pub async fn push(&self, records: &[&ConsumedRecord], body: Vec<u8>) -> PushOutcome {
        let mut request = self.client.post(&self.url).header("content-type", "application/json").body(body);
        if let Some(record) = records.first() {
            let headers = record.headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.as_deref()?)));
            for (name, value) in crate::trace::forwardable(headers) {
                request = request.header(name, value);
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_connect() => return PushOutcome::Down { error: error.to_string() },
            Err(error) => return PushOutcome::RetryAll { after: None, error: format!("push failed: {error}") },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return PushOutcome::RetryAll { after: None, error: format!("reading the answer: {error}") },
        };
        if (200..300).contains(&status) {
            return match parse_answer(&body) {
                Ok(verdicts) => PushOutcome::Answered(verdicts),
                Err(error) => PushOutcome::RetryAll { after: None, error },
            };
        }
        classify_status(status, retry_after, &String::from_utf8_lossy(&body))
    }

    /// Whether the backend says it is healthy (always, without a health URL).
    pub async fn healthy(&self) -> bool {
        let Some(url) = &self.health_url else { return true };
        matches!(self.client.get(url).timeout(Duration::from_secs(2)).send().await,
            Ok(response) if response.status().is_success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(offset: i64) -> (String, i32, i64) {
        ("t".to_string(), 0, offset)
    }

    #[test]
    fn empty_and_empty_list_mean_everything_processed() {
        assert!(parse_answer(b"").expect("empty").is_empty());
        assert!(parse_answer(b" [] ").expect("list").is_empty());
    }

    #[test]
    fn both_result_shapes_are_honoured() {
        let body = br#"[
            {"record": {"topic": "t", "partition": 0, "offset": 1}, "processed": false, "stacktrace": "NPE"},
            {"record": {"topic": "t", "partition": 0, "offset": 2}, "processed": true},
            {"topic": "t", "partition": 0, "offset": 3, "status": "retry", "retry_after_ms": 50},
            {"topic": "t", "partition": 0, "offset": 4, "status": "skip"},
            {"topic": "t", "partition": 0, "offset": 5, "status": "dead_letter", "error": "bad"}
        ]"#;
        let verdicts = parse_answer(body).expect("parse");
        assert_eq!(verdicts[&id(1)], Verdict::DeadLetter { error: "NPE".into() });
        assert_eq!(verdicts[&id(2)], Verdict::Ok);
        assert!(
            matches!(verdicts[&id(3)], Verdict::Retry { after: Some(after), .. } if after == Duration::from_millis(50))
        );
        assert_eq!(verdicts[&id(4)], Verdict::Skip);
        assert_eq!(verdicts[&id(5)], Verdict::DeadLetter { error: "bad".into() });
        assert!(parse_answer(br#"[{"topic":"t","partition":0,"offset":1,"status":"maybe"}]"#).is_err());
    }

    #[test]
    fn statuses_split_into_retry_and_dead_letter() {
        assert!(matches!(
            classify_status(503, Some(Duration::from_secs(2)), ""),
            PushOutcome::RetryAll { after: Some(_), .. }
        ));
        assert!(matches!(classify_status(500, None, "boom"), PushOutcome::RetryAll { .. }));
        assert!(matches!(classify_status(429, None, ""), PushOutcome::RetryAll { .. }));
        match classify_status(400, None, "bad record") {
            PushOutcome::DeadLetterAll { error } => assert!(error.contains("HTTP 400: bad record")),
            other => panic!("{other:?}"),
        }
    }
}
