//! A small client of the sidecar's active consumer API (Confluent REST Proxy v2 paths): create
//! an instance, assign partitions by hand (no group join, which tansu delays), fetch records in
//! the binary format and decode them as an app would, delete the instance.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

/// Media type of a binary-format fetch response.
const BINARY_RECORDS: &str = "application/vnd.kafka.binary.v2+json";

/// An HTTP client for one sidecar (keep-alive connections, no proxy).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// One consumer instance on the sidecar.
pub struct RestConsumer {
    http: reqwest::Client,
    instance_uri: String,
}

/// One record of a fetch response, as much of it as the benchmark reads.
#[derive(Deserialize)]
pub struct FetchedRecord {
    pub partition: i32,
    pub offset: i64,
    pub value: Option<String>,
}

impl RestConsumer {
    /// Creates instance `name` in `group` (binary format, from the earliest offset, no
    /// auto-commit) on the sidecar whose HTTP listener is `address` (`host:port`).
    pub async fn create(http: &reqwest::Client, address: &str, group: &str, name: &str) -> Result<Self> {
        let body = json!({
            "name": name,
            "format": "binary",
            "auto.offset.reset": "earliest",
            "auto.commit.enable": "false",
        });
        let response = http
            .post(format!("http://{address}/consumers/{group}"))
            .header(reqwest::header::CONTENT_TYPE, "application/vnd.kafka.v2+json")
            .body(body.to_string())
            .send()
            .await
            .context("creating a consumer instance")?;
        let answer = expect(response, reqwest::StatusCode::OK, "creating a consumer instance").await?;
        let created: serde_json::Value = serde_json::from_slice(&answer).context("the create answer")?;
        let Some(instance) = created.get("instance_id").and_then(serde_json::Value::as_str) else {
            bail!("the create answer has no instance_id: {created}");
        };
        Ok(Self {
            http: http.clone(),
            instance_uri: format!("http://{address}/consumers/{group}/instances/{instance}"),
        })
    }

    /// Assigns `partitions` of `topic` by hand; reading starts at the group's committed offsets,
    /// else (a fresh group) at the earliest offset.
    pub async fn assign(&self, topic: &str, partitions: impl Iterator<Item = i32>) -> Result<()> {
        let partitions: Vec<_> = partitions.map(|partition| json!({"topic": topic, "partition": partition})).collect();
        let response = self
            .http
            .post(format!("{}/assignments", self.instance_uri))
            .header(reqwest::header::CONTENT_TYPE, "application/vnd.kafka.v2+json")
            .body(json!({ "partitions": partitions }).to_string())
            .send()
            .await
            .context("assigning partitions")?;
        expect(response, reqwest::StatusCode::NO_CONTENT, "assigning partitions").await?;
        Ok(())
    }

    /// One long-poll fetch (up to `timeout`, at most `max_bytes`, which the sidecar clamps).
    pub async fn fetch(&self, timeout: Duration, max_bytes: u64) -> Result<Vec<FetchedRecord>> {
        let response = self
            .http
            .get(format!("{}/records?timeout={}&max_bytes={max_bytes}", self.instance_uri, timeout.as_millis()))
            .header(reqwest::header::ACCEPT, BINARY_RECORDS)
            .send()
            .await
            .context("fetching records")?;
        let body = expect(response, reqwest::StatusCode::OK, "fetching records").await?;
        serde_json::from_slice(&body).context("the records answer")
    }

    /// Deletes the instance (it leaves its group, which a manual assignment never joined).
    pub async fn delete(self) -> Result<()> {
        let response = self.http.delete(&self.instance_uri).send().await.context("deleting the instance")?;
        expect(response, reqwest::StatusCode::NO_CONTENT, "deleting the instance").await?;
        Ok(())
    }
}

/// Decodes a binary-format value, as an app would before using it; returns its length.
pub fn decoded_len(value: Option<&str>, scratch: &mut Vec<u8>) -> Result<usize> {
    let Some(value) = value else { return Ok(0) };
    scratch.clear();
    STANDARD.decode_vec(value, scratch).context("a value that is not base64")?;
    Ok(scratch.len())
}

async fn expect(response: reqwest::Response, wanted: reqwest::StatusCode, what: &str) -> Result<bytes::Bytes> {
    let status = response.status();
    let body = response.bytes().await.with_context(|| format!("{what}: reading the answer"))?;
    if status != wanted {
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]));
    }
    Ok(body)
}
