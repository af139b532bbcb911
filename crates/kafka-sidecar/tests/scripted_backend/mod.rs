//! A scripted HTTP backend for the reactive consumer's fault tests: the test chooses, per push, the
//! status, `Retry-After`, body and a delay before answering; every push is logged with its arrival
//! time, and every record the backend answered as processed (2xx, no other verdict for it) is
//! logged in the order of the answers. Several sidecars can share one backend, each on its own
//! route (`/records/{route}`), so a test can tell who pushed what.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One push as the script sees it.
pub struct Call<'a> {
    /// 1 for the first request the backend received, on any route.
    pub number: u32,
    /// The route it came on.
    pub route: &'a str,
    /// The records, in the order they were sent.
    pub records: &'a [Value],
    /// Per record, which push of that record this is (1 = first).
    pub attempts: Vec<u32>,
}

/// How the backend answers one push.
pub struct Answer {
    pub status: StatusCode,
    /// `Retry-After` in seconds.
    pub retry_after_seconds: Option<u64>,
    /// A JSON body; none means an empty body.
    pub body: Option<Value>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// 200 with an empty body: every record processed.
    pub fn ok() -> Self {
        Self::status(StatusCode::OK)
    }

    pub fn status(status: StatusCode) -> Self {
        Self { status, retry_after_seconds: None, body: None, delay: Duration::ZERO }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The test's choice of answer for each push.
pub type Script = Arc<dyn Fn(&Call<'_>) -> Answer + Send + Sync>;

/// A push the backend received.
#[derive(Debug, Clone)]
pub struct Push {
    pub number: u32,
    pub route: String,
    pub at: Instant,
    pub records: Vec<Value>,
}

/// A record the backend answered as processed.
#[derive(Debug, Clone)]
pub struct Processed {
    pub number: u32,
    pub route: String,
    pub at: Instant,
    pub partition: i64,
    pub offset: i64,
    pub key: Value,
}

/// Everything the backend saw and answered.
#[derive(Default)]
pub struct Log {
    pub pushes: Vec<Push>,
    pub processed: Vec<Processed>,
    /// A lane (topic/partition/key) pushed while an earlier push of it was unanswered, with the
    /// push number.
    pub overlaps: Vec<(u32, String)>,
    attempts: HashMap<(String, i64, i64), u32>,
    in_flight: HashMap<String, u32>,
}

/// A record's lane: topic, partition, key.
pub fn lane(record: &Value) -> String {
    format!("{}/{}/{}", record["topic"], record["partition"], record["key"])
}

/// Ends a push's flight even when the sidecar gave up and the handler is dropped.
struct Flight {
    log: Arc<Mutex<Log>>,
    lanes: Vec<String>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        let mut log = self.log.lock().unwrap();
        for lane in &self.lanes {
            if let Some(count) = log.in_flight.get_mut(lane) {
                *count -= 1;
            }
        }
    }
}

#[derive(Clone)]
struct Backend {
    log: Arc<Mutex<Log>>,
    script: Script,
}

/// A running scripted backend.
pub struct ScriptedBackend {
    pub address: SocketAddr,
    log: Arc<Mutex<Log>>,
}

/// `(topic, partition, offset)` of a pushed record.
pub fn position(record: &Value) -> (String, i64, i64) {
    (
        record["topic"].as_str().expect("topic").to_string(),
        record["partition"].as_i64().expect("partition"),
        record["offset"].as_i64().expect("offset"),
    )
}

/// The rich verdict for one record.
pub fn verdict(record: &Value, status: &str) -> Value {
    json!({"topic": record["topic"], "partition": record["partition"], "offset": record["offset"], "status": status})
}

impl ScriptedBackend {
    /// Starts on a free port.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(Log::default()));
        let backend = Backend { log: Arc::clone(&log), script };
        let app = Router::new().route("/records/{route}", post(receive)).with_state(backend);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, log }
    }

    /// The URL a sidecar pushes to, on `route`.
    pub fn url(&self, route: &str) -> String {
        format!("http://{}/records/{route}", self.address)
    }

    pub fn pushes(&self) -> Vec<Push> {
        self.log.lock().unwrap().pushes.clone()
    }

    pub fn overlaps(&self) -> Vec<(u32, String)> {
        self.log.lock().unwrap().overlaps.clone()
    }

    pub fn processed(&self) -> Vec<Processed> {
        self.log.lock().unwrap().processed.clone()
    }

    /// Distinct `(partition, offset)` answered as processed.
    pub fn processed_positions(&self) -> BTreeSet<(i64, i64)> {
        self.log.lock().unwrap().processed.iter().map(|processed| (processed.partition, processed.offset)).collect()
    }

    /// When each push of one record arrived, in order.
    pub fn arrivals(&self, partition: i64, offset: i64) -> Vec<Instant> {
        let log = self.log.lock().unwrap();
        log.pushes
            .iter()
            .filter(|push| {
                push.records.iter().any(|record| {
                    record["partition"].as_i64() == Some(partition) && record["offset"].as_i64() == Some(offset)
                })
            })
            .map(|push| push.at)
            .collect()
    }

    /// Waits until `count` distinct records were answered as processed.
    pub async fn wait_processed(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let done = self.processed_positions().len();
            if done >= count {
                return;
            }
            assert!(Instant::now() < deadline, "only {done} of {count} records processed in {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether a 2xx answer leaves `record` processed (no entry, or an entry that says so).
fn answered_processed(body: Option<&Value>, record: &Value) -> bool {
    let Some(entries) = body.and_then(Value::as_array) else { return true };
    let wanted = position(record);
    for entry in entries {
        let id = if entry.get("record").is_some() { &entry["record"] } else { entry };
        let same = id["topic"].as_str() == Some(wanted.0.as_str())
            && id["partition"].as_i64() == Some(wanted.1)
            && id["offset"].as_i64() == Some(wanted.2);
        if same {
            return match entry.get("status") {
                Some(status) => status == "ok",
                None => entry["processed"] != json!(false),
            };
        }
    }
    true
}

async fn receive(State(backend): State<Backend>, Path(route): Path<String>, body: axum::body::Bytes) -> Response {
    let records: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array of records");
    let lanes: BTreeSet<String> = records.iter().map(lane).collect();
    let (number, attempts) = {
        let mut log = backend.log.lock().unwrap();
        let number = u32::try_from(log.pushes.len() + 1).expect("push count");
        for lane in &lanes {
            let count = log.in_flight.entry(lane.clone()).or_default();
            *count += 1;
            if *count > 1 {
                log.overlaps.push((number, lane.clone()));
            }
        }
        let attempts = records
            .iter()
            .map(|record| {
                let count = log.attempts.entry(position(record)).or_default();
                *count += 1;
                *count
            })
            .collect();
        log.pushes.push(Push { number, route: route.clone(), at: Instant::now(), records: records.clone() });
        (number, attempts)
    };
    let _flight = Flight { log: Arc::clone(&backend.log), lanes: lanes.into_iter().collect() };
    let answer = (backend.script)(&Call { number, route: &route, records: &records, attempts });
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    if answer.status.is_success() {
        let mut log = backend.log.lock().unwrap();
        let at = Instant::now();
        for record in records.iter().filter(|record| answered_processed(answer.body.as_ref(), record)) {
            let (_, partition, offset) = position(record);
            log.processed.push(Processed {
                number,
                route: route.clone(),
                at,
                partition,
                offset,
                key: record["key"].clone(),
            });
        }
    }
    let mut response = match answer.body {
        Some(body) => (answer.status, axum::Json(body)).into_response(),
        None => answer.status.into_response(),
    };
    if let Some(seconds) = answer.retry_after_seconds {
        response.headers_mut().insert("retry-after", seconds.into());
    }
    response
}
