//! The HTTP client for a Confluent-compatible schema registry: several URLs with failover, basic
//! auth, a custom CA, a timeout per request, and a fail-fast window after the registry stopped
//! answering so that requests needing an uncached schema do not queue up behind timeouts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::SchemaRegistryConfig;
use crate::metrics::Metrics;

/// The registry's media type; it also accepts plain JSON.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry call that did not give an answer to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No URL answered (connection refused, timeout, 5xx), or the fail-fast window is open.
    #[error("the schema registry is unavailable: {0}")]
    Unavailable(String),
    /// The registry answered with a client error, e.g. 404 (40401 subject, 40402 version,
    /// 40403 schema not found), 409 (incompatible) or 422 (invalid schema).
    #[error("the schema registry answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The registry's `error_code`, when it gave one.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
}

/// A schema reference as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceDto {
    /// The name the referencing schema uses (an avro full name, a `.proto` import path, a `$ref`).
    pub name: String,
    /// The subject holding the referenced schema.
    pub subject: String,
    /// Its version there.
    pub version: i32,
}

/// A schema as `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}` return it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaDto {
    /// Present on subject/version answers.
    pub id: Option<u32>,
    /// The schema text.
    pub schema: String,
    /// `AVRO` when absent.
    pub schema_type: Option<String>,
    /// Schemas it imports.
    #[serde(default)]
    pub references: Vec<ReferenceDto>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest<'a> {
    schema: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_type: Option<&'a str>,
}

#[derive(Deserialize)]
struct RegisterResponse {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

/// The registry client. Cheap to share; holds one connection pool.
pub struct RegistryClient {
    urls: Vec<Url>,
    http: reqwest::Client,
    basic_auth: Option<(String, String)>,
    /// The URL that answered last; tried first next time.
    preferred: AtomicUsize,
    unavailable_until: Mutex<Option<Instant>>,
    unavailable_backoff: Duration,
    metrics: std::sync::Arc<Metrics>,
}

impl RegistryClient {
    /// A client for the configured URLs. Fails on a bad URL or an unreadable CA file.
    pub fn new(config: &SchemaRegistryConfig, metrics: std::sync::Arc<Metrics>) -> anyhow::Result<Self> {
        let mut urls = Vec::new();
        for text in config.urls() {
            // A trailing slash makes `Url::join`-free segment pushes land under the base path.
            let url = Url::parse(&format!("{text}/"))
                .map_err(|error| anyhow::anyhow!("schema_registry.url {text:?}: {error}"))?;
            urls.push(url);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_millis(config.request_timeout_ms.min(2_000)));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| anyhow::anyhow!("schema_registry.ca_file {}: {error}", path.display()))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|error| anyhow::anyhow!("schema_registry.ca_file {}: {error}", path.display()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let basic_auth = config
            .basic_auth_user
            .clone()
            .zip(config.basic_auth_password.as_ref().map(|password| password.expose().to_string()));
        Ok(Self {
            urls,
            http: builder.build()?,
            basic_auth,
            preferred: AtomicUsize::new(0),
            unavailable_until: Mutex::new(None),
            unavailable_backoff: Duration::from_millis(config.unavailable_backoff_ms),
            metrics,
        })
    }

    /// How long callers should wait before asking again after [`RegistryError::Unavailable`].
    pub fn retry_hint(&self) -> Duration {
        self.unavailable_backoff.max(Duration::from_millis(100))
    }

    /// `GET /schemas/ids/{id}`.
    pub async fn schema_by_id(&self, id: u32) -> Result<SchemaDto, RegistryError> {
        self.call("schema_by_id", reqwest::Method::GET, &["schemas", "ids", &id.to_string()], None).await
    }

    /// `GET /subjects/{subject}/versions/{version}`; `version` may be `latest`.
    pub async fn subject_version(&self, subject: &str, version: &str) -> Result<SchemaDto, RegistryError> {
        self.call("subject_version", reqwest::Method::GET, &["subjects", subject, "versions", version], None).await
    }

    /// `POST /subjects/{subject}/versions`: registers (or finds) `schema`, returning its id.
    pub async fn register(&self, subject: &str, schema: &str, schema_type: &str) -> Result<u32, RegistryError> {
        let body = RegisterRequest { schema, schema_type: (schema_type != "AVRO").then_some(schema_type) };
        let body = serde_json::to_vec(&body).map_err(|error| RegistryError::Unavailable(error.to_string()))?;
        let answer: RegisterResponse =
            self.call("register", reqwest::Method::POST, &["subjects", subject, "versions"], Some(body)).await?;
        Ok(answer.id)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<Vec<u8>>,
    ) -> Result<T, RegistryError> {
        if let Some(until) = self.unavailable_until() {
            let left = until.saturating_duration_since(Instant::now());
            return Err(RegistryError::Unavailable(format!(
                "it did not answer recently; not asking again for {} ms",
                left.as_millis()
            )));
        }
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last_problem = String::from("no URL configured");
        for attempt in 0..self.urls.len() {
            let index = (first + attempt) % self.urls.len();
            let started = Instant::now();
            match self.call_once(&self.urls[index], method.clone(), segments, body.clone()).await {
                Ok(value) => {
                    self.metrics.schema.call(operation, "ok", started.elapsed().as_secs_f64());
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(RegistryError::Unavailable(problem)) => {
                    self.metrics.schema.call(operation, "unavailable", started.elapsed().as_secs_f64());
                    tracing::warn!(url = %self.urls[index], %problem, "schema registry did not answer");
                    last_problem = problem;
                }
                Err(refused) => {
                    self.metrics.schema.call(operation, "client_error", started.elapsed().as_secs_f64());
                    self.preferred.store(index, Ordering::Relaxed);
                    return Err(refused);
                }
            }
        }
        self.mark_unavailable();
        Err(RegistryError::Unavailable(last_problem))
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        base: &Url,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<Vec<u8>>,
    ) -> Result<T, RegistryError> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| RegistryError::Unavailable(format!("{base} cannot be a base URL")))?
            .pop_if_empty()
            .extend(segments);
        let mut request = self.http.request(method, url).header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(body);
        }
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|error| RegistryError::Unavailable(describe(error)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|error| RegistryError::Unavailable(describe(error)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|error| RegistryError::Unavailable(format!("unexpected answer: {error}")));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RegistryError::Unavailable(format!("answered {status}")));
        }
        let parsed = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        Err(RegistryError::Refused {
            status: status.as_u16(),
            error_code: parsed.as_ref().and_then(|body| body.error_code),
            message: parsed
                .and_then(|body| body.message)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
        })
    }

    fn unavailable_until(&self) -> Option<Instant> {
        let mut guard = self.unavailable_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *guard {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                *guard = None;
                None
            }
        }
    }

    fn mark_unavailable(&self) {
        let mut guard = self.unavailable_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(Instant::now() + self.unavailable_backoff);
    }
}

/// reqwest's error with its causes, which say whether it was a refusal, a timeout or TLS.
fn describe(error: reqwest::Error) -> String {
    // Without the URL: it may carry credentials, and the text reaches callers.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
