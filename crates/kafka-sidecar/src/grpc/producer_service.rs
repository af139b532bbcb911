//! The `ProducerSidecar` gRPC service: decodes requests into domain records (encoding schema
//! formats first, see `schemas.rs`), hands them to the shared producer, encodes acks and delivery
//! reports. No produce logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_server::ProducerSidecar;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::audit::CallAudit;
use super::convert::{
    Group, ack, batch_groups, origin_of, record_from_proto, refusal_ack, report_to_proto, status_from_error,
    trace_context,
};
use super::schemas;
use crate::audit::AuditLog;
use crate::auth::{Access, Authenticator, Identity};
use crate::config::TraceConfig;
use crate::delivery::DeliveryHub;
use crate::error::SidecarError;
use crate::kafka::SharedProducer;
use crate::metrics::{Metrics, RequestLabels};
use crate::schema::SchemaRegistry;
use crate::trace::{RecordTrace, TraceContext};

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
    /// Which trace and correlation ids a call without them gets.
    trace: Arc<TraceConfig>,
    /// The audit log, when `audit.enabled`.
    audit: Option<AuditLog>,
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
        Self { producer, hub, schemas, authenticator, metrics, instance, trace: Arc::default(), audit: None }
    }

    /// The same service auditing every produce call (and each stream batch) to `audit`.
    pub fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// The same service generating trace and correlation ids as `config` says (default: on).
    pub fn with_trace(mut self, config: Arc<TraceConfig>) -> Self {
        self.trace = config;
        self
    }

    /// A produce call's trace context (from its metadata) and its log span.
    fn traced(&self, method: &'static str, metadata: &tonic::metadata::MetadataMap) -> (TraceContext, tracing::Span) {
        let context = trace_context(metadata, &self.trace);
        let span = tracing::info_span!(
            "grpc",
            method,
            trace_id = context.trace_id().as_deref(),
            correlation_id = context.correlation_id.as_deref(),
            traceability_id = context.traceability_id.as_deref(),
        );
        let context = crate::telemetry::adopt(&span, context);
        (context, span)
    }

    /// A produce call's answer, echoing its trace and correlation ids.
    fn respond_traced<T>(&self, message: T, context: &TraceContext) -> Response<T> {
        let mut response = self.respond(message);
        let values = [
            ("traceparent", context.traceparent()),
            ("x-correlation-id", context.correlation_id.clone()),
            ("x-traceability-id", context.traceability_id.clone()),
        ];
        for (name, value) in values {
            if let Some(value) = value.and_then(|value| tonic::metadata::MetadataValue::try_from(value).ok()) {
                response.metadata_mut().insert(name, value);
            }
        }
        response
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
        trace: &RecordTrace,
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
            let (origin, mut records) = match group {
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
            if !trace.is_empty() {
                records.iter_mut().for_each(|record| trace.stamp(&mut record.headers));
            }
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

    /// `Emit`: one record, its trace headers stamped from the call's `context`.
    async fn emit_one(
        &self,
        identity: Option<&Identity>,
        request: Request<pb::ProduceRequest>,
        context: &TraceContext,
    ) -> Result<pb::ProduceAck, Status> {
        let request = request.into_inner();
        if let Some(error) = self.topic_refusal(identity, std::iter::once(request.topic.as_str())) {
            return Err(status_from_error(&error));
        }
        self.count_request("grpc_emit", &request.client_id, 1);
        let origin = origin_of(&request);
        let record_id = request.record_id;
        let mut record = if schemas::record_has_specs(&request) {
            schemas::encode_record(self.schemas.as_deref(), request).await.map_err(|error| status_from_error(&error))?
        } else {
            record_from_proto(request)
        };
        context.record_trace().stamp(&mut record.headers);
        let results = self.producer.send(&origin, vec![record]).await;
        match results.into_iter().next() {
            Some(Ok(())) => Ok(ack(record_id, &Ok(()))),
            Some(Err(error)) => Err(status_from_error(&error)),
            None => Err(Status::internal("no result for the record")),
        }
    }
}

#[tonic::async_trait]
impl ProducerSidecar for ProducerService {
    async fn emit(&self, request: Request<pb::ProduceRequest>) -> Result<Response<pb::ProduceAck>, Status> {
        let (context, span) = self.traced("Emit", request.metadata());
        let audit = CallAudit::start(self.audit.as_ref(), &context, request.remote_addr());
        let acked = async {
            let identity = self.caller(request.metadata()).await.inspect_err(|status| audit.refused(status))?;
            let facts = audit.record_facts(request.get_ref());
            let acked = self.emit_one(identity.as_ref(), request, &context).await;
            audit.single(identity.as_ref(), facts, &acked);
            acked
        };
        acked.instrument(span).await.map(|ack| self.respond_traced(ack, &context))
    }

    async fn emit_batch(&self, request: Request<pb::ProduceBatch>) -> Result<Response<pb::ProduceBatchAck>, Status> {
        let (context, span) = self.traced("EmitBatch", request.metadata());
        let trace = context.record_trace();
        let audit = CallAudit::start(self.audit.as_ref(), &context, request.remote_addr());
        let acked = async {
            let identity = self.caller(request.metadata()).await.inspect_err(|status| audit.refused(status))?;
            let batch = request.into_inner();
            let facts = audit.batch_facts(&batch);
            let ack = self.emit_batch_inner("grpc_emit_batch", identity.as_ref(), &trace, batch).await;
            audit.batch(identity.as_ref(), facts, &ack);
            Ok(ack)
        };
        acked.instrument(span).await.map(|ack| self.respond_traced(ack, &context))
    }

    type EmitStreamStream = BoxStream<pb::ProduceBatchAck>;

    async fn emit_stream(
        &self,
        request: Request<Streaming<pb::ProduceBatch>>,
    ) -> Result<Response<Self::EmitStreamStream>, Status> {
        // One context for the whole stream: its metadata is the call's.
        let (context, span) = self.traced("EmitStream", request.metadata());
        let audit = Arc::new(CallAudit::start(self.audit.as_ref(), &context, request.remote_addr()));
        let identity = self
            .caller(request.metadata())
            .instrument(span.clone())
            .await
            .inspect_err(|status| audit.refused(status))?;
        let service = self.clone();
        let trace = context.record_trace();
        // `then` handles one batch at a time, so batches of one stream are enqueued in order.
        let acks = request.into_inner().then(move |batch| {
            let service = service.clone();
            let identity = identity.clone();
            let trace = trace.clone();
            let span = span.clone();
            let audit = Arc::clone(&audit);
            async move {
                match batch {
                    Ok(batch) => {
                        let facts = audit.batch_facts(&batch);
                        let acked = service.emit_batch_inner("grpc_emit_stream", identity.as_ref(), &trace, batch);
                        let ack = acked.instrument(span).await;
                        audit.batch(identity.as_ref(), facts, &ack);
                        Ok(ack)
                    }
                    Err(status) => Err(status),
                }
            }
        });
        Ok(self.respond_traced(Box::pin(acks), &context))
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
