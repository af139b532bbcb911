//! The `ProducerSidecar` gRPC service: decodes requests into domain records (encoding schema
//! formats first, see `schemas.rs`), hands them to the shared producer, encodes acks and delivery
//! reports. No produce logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_server::ProducerSidecar;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{
    Group, ack, batch_groups, origin_of, record_from_proto, refusal_ack, report_to_proto, status_from_error,
};
use super::schemas;
use crate::auth::{Access, Authenticator, Identity};
use crate::delivery::DeliveryHub;
use crate::error::SidecarError;
use crate::kafka::SharedProducer;
use crate::metrics::{Metrics, RequestLabels};
use crate::schema::SchemaRegistry;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC face of the shared producer.
#[derive(Clone)]
pub struct ProducerService {
    producer: Arc<SharedProducer>,
    hub: Arc<DeliveryHub>,
    /// The schema registry, for records that ask for a schema format; `None` when not configured.
    schemas: Option<Arc<SchemaRegistry>>,
    /// Token checks, when `auth.enabled`.
    authenticator: Option<Arc<Authenticator>>,
    metrics: Arc<Metrics>,
    instance: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

/// Response metadata naming this sidecar process: a client that sees it change knows the sidecar
/// restarted and that reports for records the old one accepted will not come.
pub const INSTANCE_METADATA: &str = "kafka-sidecar-instance";

impl ProducerService {
    /// A service over the shared producer and delivery hub, with a fresh instance id.
    pub fn new(
        producer: Arc<SharedProducer>,
        hub: Arc<DeliveryHub>,
        schemas: Option<Arc<SchemaRegistry>>,
        authenticator: Option<Arc<Authenticator>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let id = format!("{:016x}", rand::random::<u64>());
        let instance = tonic::metadata::MetadataValue::try_from(id.as_str())
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static("unknown"));
        Self { producer, hub, schemas, authenticator, metrics, instance }
    }

    fn respond<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        response.metadata_mut().insert(INSTANCE_METADATA, self.instance.clone());
        response
    }

    /// The caller's identity when auth is on: a token with the produce scope, from the call's
    /// `authorization` metadata; `None` when auth is off.
    async fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Option<Identity>, Status> {
        let Some(authenticator) = &self.authenticator else { return Ok(None) };
        let header = metadata.get("authorization").and_then(|value| value.to_str().ok());
        let identity = authenticator.authenticate(header).await.map_err(|failure| status_from_error(&failure.error))?;
        authenticator
            .authorize(&identity, Access::Produce, None)
            .map_err(|failure| status_from_error(&failure.error))?;
        Ok(Some(identity))
    }

    /// The refusal for the first topic among `topics` the caller lacks a topic scope for.
    fn topic_refusal<'a>(
        &self,
        identity: Option<&Identity>,
        topics: impl Iterator<Item = &'a str>,
    ) -> Option<SidecarError> {
        let (authenticator, identity) = (self.authenticator.as_ref()?, identity?);
        let mut checked: Vec<&str> = Vec::new();
        for topic in topics {
            if checked.contains(&topic) {
                continue;
            }
            if let Err(failure) = authenticator.authorize(identity, Access::Produce, Some(topic)) {
                return Some(failure.error);
            }
            checked.push(topic);
        }
        None
    }

    fn count_request(&self, api: &'static str, client_id: &str, records: usize) {
        let client = self.metrics.client_label(client_id);
        self.metrics.requests.get_or_create(&RequestLabels { api, client }).inc();
        self.metrics.request_records.observe(records as f64);
    }

    /// Enqueues a batch; once one record is refused for backpressure (or the schema registry is
    /// unavailable), every later record is refused too.
    async fn emit_batch_inner(
        &self,
        api: &'static str,
        identity: Option<&Identity>,
        batch: pb::ProduceBatch,
    ) -> pb::ProduceBatchAck {
        self.count_request(api, &batch.client_id, batch.records.len());
        let batch_id = batch.batch_id;
        // A batch naming a topic the caller may not produce to is refused whole.
        if let Some(error) = self.topic_refusal(identity, batch.records.iter().map(|record| record.topic.as_str())) {
            let acks: Vec<pb::ProduceAck> =
                batch.records.iter().map(|record| refusal_ack(record.record_id, &error)).collect();
            let rejected = u32::try_from(acks.len()).unwrap_or(u32::MAX);
            return pb::ProduceBatchAck { batch_id, acks, accepted: 0, rejected, retry_after_ms: 0 };
        }
        let mut acks = Vec::with_capacity(batch.records.len());
        let groups = if schemas::batch_has_specs(&batch) {
            schemas::encode_batch(self.schemas.as_deref(), batch).await
        } else {
            batch_groups(batch)
        };
        let mut refused: Option<SidecarError> = None;
        for group in groups {
            let (origin, records) = match group {
                Group::Send(origin, records) => (origin, records),
                // A record refused here keeps its own error even after an earlier refusal: more specific.
                Group::Refused(refusal) => {
                    acks.push(refusal_ack(refusal.record_id, &refusal.error));
                    if refusal.error.code.is_retriable() {
                        refused.get_or_insert(refusal.error);
                    }
                    continue;
                }
            };
            let ids: Vec<u64> = records.iter().map(|record| record.record_id).collect();
            let results = match &refused {
                Some(error) => vec![Err(error.clone()); records.len()],
                None => self.producer.send(&origin, records).await,
            };
            for (record_id, result) in ids.into_iter().zip(&results) {
                acks.push(ack(record_id, result));
            }
            refused = refused.or_else(|| results.into_iter().filter_map(Result::err).find(|e| e.code.is_retriable()));
        }
        let accepted = acks.iter().filter(|ack| ack.received).count();
        let retry_after_ms = acks.iter().map(|ack| ack.retry_after_ms).max().unwrap_or(0);
        pb::ProduceBatchAck {
            batch_id,
            rejected: u32::try_from(acks.len() - accepted).unwrap_or(u32::MAX),
            accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
            retry_after_ms,
            acks,
        }
    }
}

#[tonic::async_trait]
impl ProducerSidecar for ProducerService {
    async fn emit(&self, request: Request<pb::ProduceRequest>) -> Result<Response<pb::ProduceAck>, Status> {
        let identity = self.caller(request.metadata()).await?;
        let request = request.into_inner();
        if let Some(error) = self.topic_refusal(identity.as_ref(), std::iter::once(request.topic.as_str())) {
            return Err(status_from_error(&error));
        }
        self.count_request("grpc_emit", &request.client_id, 1);
        let origin = origin_of(&request);
        let record_id = request.record_id;
        let record = if schemas::record_has_specs(&request) {
            schemas::encode_record(self.schemas.as_deref(), request).await.map_err(|error| status_from_error(&error))?
        } else {
            record_from_proto(request)
        };
        let results = self.producer.send(&origin, vec![record]).await;
        match results.into_iter().next() {
            Some(Ok(())) => Ok(self.respond(ack(record_id, &Ok(())))),
            Some(Err(error)) => Err(status_from_error(&error)),
            None => Err(Status::internal("no result for the record")),
        }
    }

    async fn emit_batch(&self, request: Request<pb::ProduceBatch>) -> Result<Response<pb::ProduceBatchAck>, Status> {
        let identity = self.caller(request.metadata()).await?;
        Ok(self.respond(self.emit_batch_inner("grpc_emit_batch", identity.as_ref(), request.into_inner()).await))
    }

    type EmitStreamStream = BoxStream<pb::ProduceBatchAck>;

    async fn emit_stream(
        &self,
        request: Request<Streaming<pb::ProduceBatch>>,
    ) -> Result<Response<Self::EmitStreamStream>, Status> {
        let identity = self.caller(request.metadata()).await?;
        let service = self.clone();
        // `then` handles one batch at a time, so batches of one stream are enqueued in order.
        let acks = request.into_inner().then(move |batch| {
            let service = service.clone();
            let identity = identity.clone();
            async move {
                match batch {
                    Ok(batch) => Ok(service.emit_batch_inner("grpc_emit_stream", identity.as_ref(), batch).await),
                    Err(status) => Err(status),
                }
            }
        });
        Ok(self.respond(Box::pin(acks)))
    }

    type DeliveryStreamStream = BoxStream<pb::DeliveryReportBatch>;

    async fn delivery_stream(
        &self,
        request: Request<pb::DeliveryStreamRequest>,
    ) -> Result<Response<Self::DeliveryStreamStream>, Status> {
        self.caller(request.metadata()).await?;
        let request = request.into_inner();
        if request.session_id.is_empty() {
            return Err(Status::invalid_argument("session_id is required"));
        }
        let reports =
            self.hub.stream(&request.session_id, request.after_seq).map_err(|error| status_from_error(&error))?;
        let batches = reports
            .map(|batch| Ok(pb::DeliveryReportBatch { reports: batch.into_iter().map(report_to_proto).collect() }));
        Ok(self.respond(Box::pin(batches)))
    }
}
