//! The gRPC face of [`crate::audit`]: one audit record per `Emit` call, per `EmitBatch` call and
//! per batch of an `EmitStream`, plus one per call refused by auth. The fast path pays one small
//! event per batch: the client id, the batch's distinct topics (at most [`MAX_TOPICS`] listed) and
//! the ack's counts; nothing at all when audit is off.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use kafka_sidecar_proto::v1 as pb;
use tonic::Status;

use crate::audit::{AuditEvent, AuditIdentity, AuditLog, Transport};
use crate::auth::Identity;
use crate::trace::TraceContext;

/// Topics of one batch listed in its record; a batch over more topics lists the first ones.
pub const MAX_TOPICS: usize = 16;

/// What one call's audit records share; inert when audit is off.
#[derive(Clone)]
pub(super) struct CallAudit {
    log: Option<AuditLog>,
    trace_id: Option<String>,
    peer: Option<String>,
}

/// What an audit record needs from a batch before the batch is consumed.
pub(super) struct BatchFacts {
    client_id: String,
    topics: Vec<String>,
    started: Instant,
}

impl CallAudit {
    /// The audit of a call with trace `context` from `peer`.
    pub(super) fn start(log: Option<&AuditLog>, context: &TraceContext, peer: Option<SocketAddr>) -> Self {
        let Some(log) = log else { return Self { log: None, trace_id: None, peer: None } };
        let trace_id =
            context.trace_id().or_else(|| context.traceability_id.clone()).or_else(|| context.correlation_id.clone());
        Self { log: Some(log.clone()), trace_id, peer: peer.map(|address| address.to_string()) }
    }

    fn event(&self, identity: Option<&Identity>, client_id: Option<&str>) -> AuditEvent {
        let mut event = AuditEvent::new("produce", Transport::Grpc);
        event.identity = AuditIdentity::of(identity, client_id, self.peer.clone());
        event.trace_id = self.trace_id.clone();
        event
    }

    /// A call refused before any record (no or a bad token, a missing scope).
    pub(super) fn refused(&self, status: &Status) {
        let Some(log) = &self.log else { return };
        let mut event = self.event(None, None);
        event.outcome = Cow::Owned(outcome_of(status));
        log.record(event);
    }

    /// The facts of `batch` an audit record needs, when auditing.
    pub(super) fn batch_facts(&self, batch: &pb::ProduceBatch) -> Option<BatchFacts> {
        self.log.as_ref()?;
        let mut topics: Vec<String> = Vec::new();
        for record in &batch.records {
            if topics.len() < MAX_TOPICS && !topics.contains(&record.topic) {
                topics.push(record.topic.clone());
            }
        }
        Some(BatchFacts { client_id: batch.client_id.clone(), topics, started: Instant::now() })
    }

    /// The facts of a single record (`Emit`), when auditing.
    pub(super) fn record_facts(&self, request: &pb::ProduceRequest) -> Option<BatchFacts> {
        self.log.as_ref()?;
        Some(BatchFacts {
            client_id: request.client_id.clone(),
            topics: vec![request.topic.clone()],
            started: Instant::now(),
        })
    }

    /// One batch's record: records accepted and refused, the first refusal's code as the outcome
    /// when nothing was accepted.
    pub(super) fn batch(&self, identity: Option<&Identity>, facts: Option<BatchFacts>, ack: &pb::ProduceBatchAck) {
        let (Some(log), Some(facts)) = (&self.log, facts) else { return };
        let mut event = self.event(identity, Some(&facts.client_id));
        event.records = Some(u64::from(ack.accepted));
        event.failed = Some(u64::from(ack.rejected));
        if ack.accepted == 0
            && let Some(refused) = ack.acks.iter().find(|ack| !ack.received && !ack.error_code.is_empty())
        {
            event.outcome = Cow::Owned(refused.error_code.clone());
        }
        with_topics(&mut event, facts.topics);
        log.record(event.took(facts.started));
    }

    /// An `Emit` call's record.
    pub(super) fn single<T>(&self, identity: Option<&Identity>, facts: Option<BatchFacts>, result: &Result<T, Status>) {
        let (Some(log), Some(facts)) = (&self.log, facts) else { return };
        let mut event = self.event(identity, Some(&facts.client_id));
        let accepted = u64::from(result.is_ok());
        (event.records, event.failed) = (Some(accepted), Some(1 - accepted));
        if let Err(status) = result {
            event.outcome = Cow::Owned(outcome_of(status));
        }
        with_topics(&mut event, facts.topics);
        log.record(event.took(facts.started));
    }
}

fn with_topics(event: &mut AuditEvent, mut topics: Vec<String>) {
    if topics.len() == 1 {
        event.topic = topics.pop();
    } else {
        event.topics = topics;
    }
}

/// A refusal's machine code: the sidecar's own (from the status metadata), else the gRPC code.
fn outcome_of(status: &Status) -> String {
    match status.metadata().get("kafka-sidecar-error-code").and_then(|value| value.to_str().ok()) {
        Some(code) => code.to_string(),
        None => format!("{:?}", status.code()).to_ascii_uppercase(),
    }
}
