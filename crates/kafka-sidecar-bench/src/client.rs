//! The benchmark's gRPC side: connecting to the sidecar over TCP or a Unix socket, sending
//! batches (resending a refused tail after the sidecar's retry hint), and reading delivery
//! reports for one session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use kafka_sidecar_proto::v1::{DeliveryReport, DeliveryStreamRequest, ProduceBatch, ProduceRequest, SchemaSpec};
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint, Uri};

/// A client of the sidecar's producer API.
pub type Client = ProducerSidecarClient<Channel>;

/// Connects to `host:port` or `unix:///path`.
pub async fn connect(address: &str) -> Result<Client> {
    let channel = if let Some(path) = address.strip_prefix("unix://") {
        let path = path.to_owned();
        // The URI is required by the API but unused: the connector dials the socket.
        Endpoint::try_from("http://[::1]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await
            .with_context(|| format!("connecting to {address}"))?
    } else {
        Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {address}"))?
    };
    Ok(ProducerSidecarClient::new(channel).max_decoding_message_size(64 << 20))
}

/// Records with ids `ids`, values taken round-robin from `values`.
pub fn records(topic: &str, ids: std::ops::Range<u64>, values: &[Bytes]) -> Vec<ProduceRequest> {
    ids.map(|id| ProduceRequest {
        topic: topic.to_owned(),
        value: values[(id as usize) % values.len()].clone(),
        record_id: id,
        ..ProduceRequest::default()
    })
    .collect()
}

/// Sends `records` with `EmitBatch`, resending the refused tail after the retry hint until
/// everything is accepted. Returns how many records were refused along the way.
pub async fn emit_all(client: &mut Client, session: &str, records: Vec<ProduceRequest>) -> Result<u64> {
    emit_all_as(client, session, records, None).await
}

/// [`emit_all`] with the batch's `value_schema` set: values are JSON text the sidecar encodes.
pub async fn emit_all_as(
    client: &mut Client,
    session: &str,
    mut records: Vec<ProduceRequest>,
    value_schema: Option<SchemaSpec>,
) -> Result<u64> {
    let mut refused = 0;
    while !records.is_empty() {
        let batch = ProduceBatch {
            batch_id: 0,
            client_id: "bench".into(),
            session_id: session.into(),
            records: records.clone(),
            value_schema: value_schema.clone(),
            ..ProduceBatch::default()
        };
        let ack = client.emit_batch(batch).await?.into_inner();
        let accepted = ack.acks.iter().take_while(|ack| ack.received).count();
        if let Some(first_refused) = ack.acks.get(accepted)
            && first_refused.error_code != "QUEUE_FULL"
        {
            bail!("record refused: {} {}", first_refused.error_code, first_refused.error_message);
        }
        records.drain(..accepted);
        if !records.is_empty() {
            refused += records.len() as u64;
            tokio::time::sleep(Duration::from_millis(u64::from(ack.retry_after_ms.max(1)))).await;
        }
    }
    Ok(refused)
}

/// Delivery reports counted for one session.
#[derive(Default)]
pub struct Deliveries {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    changed: Notify,
}

impl Deliveries {
    /// Waits until `delivered + failed >= target` or `limit` passes; returns whether it did.
    pub async fn wait_for(&self, target: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.delivered.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire) >= target {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

/// Reads `DeliveryStream(session)` in a task, counting reports and calling `on_report` for each
/// successful one (from the task, with the report).
pub async fn read_deliveries(
    client: &mut Client,
    session: &str,
    mut on_report: impl FnMut(&DeliveryReport) + Send + 'static,
) -> Result<Arc<Deliveries>> {
    let request = DeliveryStreamRequest { session_id: session.into(), after_seq: 0 };
    let mut stream = client.delivery_stream(request).await?.into_inner();
    let deliveries = Arc::new(Deliveries::default());
    let counts = Arc::clone(&deliveries);
    tokio::spawn(async move {
        while let Ok(Some(batch)) = stream.message().await {
            for report in &batch.reports {
                if report.error_code.is_empty() {
                    on_report(report);
                    counts.delivered.fetch_add(1, Ordering::AcqRel);
                } else {
                    counts.failed.fetch_add(1, Ordering::AcqRel);
                }
            }
            counts.changed.notify_waiters();
        }
    });
    Ok(deliveries)
}

/// A session id no other run uses.
pub fn session_id(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("bench-{label}-{}-{nanos}", std::process::id())
}
