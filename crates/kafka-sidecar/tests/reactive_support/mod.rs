//! A real HTTP backend for the reactive consumer tests: records every push it receives, answers
//! with a verdict per record chosen by the test, can stall randomly, and detects two pushes of the
//! same key at once.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How the backend answers one push.
pub type Verdicts = Arc<dyn Fn(&[Value], u32) -> (StatusCode, Value) + Send + Sync>;

/// What the backend saw.
#[derive(Default)]
pub struct Seen {
    /// Every record pushed, in arrival order (retries included).
    pub pushes: Vec<Value>,
    /// Keys in flight right now.
    in_flight: HashSet<String>,
    /// A key pushed while already in flight (an ordering violation).
    pub overlaps: Vec<String>,
    /// Pushes per record key+offset.
    pub attempts: HashMap<(String, i64, i64), u32>,
    /// HTTP requests received.
    pub requests: u32,
}

#[derive(Clone)]
struct Backend {
    seen: Arc<Mutex<Seen>>,
    verdicts: Verdicts,
    max_delay_ms: u64,
}

/// A running backend.
pub struct TestBackend {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
}

impl TestBackend {
    /// Serves on `listener` (so a test can pick the port before the backend exists).
    pub async fn serve(listener: TcpListener, verdicts: Verdicts, max_delay_ms: u64) -> Self {
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let backend = Backend { seen: Arc::clone(&seen), verdicts, max_delay_ms };
        let app = Router::new().route("/records", post(receive)).with_state(backend);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { address, seen }
    }

    /// Starts on a free port.
    pub async fn start(verdicts: Verdicts, max_delay_ms: u64) -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.expect("bind"), verdicts, max_delay_ms).await
    }

    pub fn url(&self) -> String {
        format!("http://{}/records", self.address)
    }

    /// Distinct (partition, offset) pairs answered as processed.
    pub fn pushes(&self) -> Vec<Value> {
        self.seen.lock().unwrap().pushes.clone()
    }
}

/// Answers every record as processed.
pub fn accept_all() -> Verdicts {
    Arc::new(|_, _| (StatusCode::OK, Value::Null))
}

fn key_of(record: &Value) -> String {
    format!("{}/{}/{}", record["topic"], record["partition"], record["key"])
}

async fn receive(State(backend): State<Backend>, body: axum::body::Bytes) -> Response {
    let records: Vec<Value> = serde_json::from_slice(&body).expect("a JSON array of records");
    let request = {
        let mut seen = backend.seen.lock().unwrap();
        seen.requests += 1;
        let keys: HashSet<String> = records.iter().map(key_of).collect();
        for key in keys {
            if !seen.in_flight.insert(key.clone()) {
                seen.overlaps.push(key);
            }
        }
        for record in &records {
            let id = (key_of(record), record["partition"].as_i64().unwrap(), record["offset"].as_i64().unwrap());
            *seen.attempts.entry(id).or_default() += 1;
            seen.pushes.push(record.clone());
        }
        seen.requests
    };
    if backend.max_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..=backend.max_delay_ms))).await;
    }
    let (status, answer) = (backend.verdicts)(&records, request);
    {
        let mut seen = backend.seen.lock().unwrap();
        for record in &records {
            seen.in_flight.remove(&key_of(record));
        }
    }
    if answer.is_null() { status.into_response() } else { (status, axum::Json(answer)).into_response() }
}

/// The rich verdict for one record.
pub fn verdict(record: &Value, status: &str) -> Value {
    json!({"topic": record["topic"], "partition": record["partition"], "offset": record["offset"], "status": status})
}
