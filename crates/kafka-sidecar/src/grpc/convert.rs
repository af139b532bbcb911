//! Translation between the protobuf types and the domain types, both ways. Nothing else.

use kafka_sidecar_proto::v1 as pb;
use serde_json::Value;

use crate::config::{EmbeddedFormatName, TraceConfig};
use crate::error::{ErrorCode, SidecarError};
use crate::record::{DeliveryReport, Origin, OutgoingRecord};
use crate::schema::{SchemaKind, SchemaRole, SchemaSelection};
use crate::trace::{TraceContext, read_incoming};

/// A protobuf record as a domain record (its schema specs, if any, are not looked at).
pub fn record_from_proto(request: pb::ProduceRequest) -> OutgoingRecord {
    OutgoingRecord {
        topic: request.topic,
        key: request.key,
        value: Some(request.value),
        headers: request.headers.into_iter().map(|header| (header.key, header.value)).collect(),
        partition: request.partition,
        timestamp_ms: request.timestamp_ms,
        record_id: request.record_id,
    }
}

/// The call's trace context from its metadata (`traceparent`, `tracestate`, `x-correlation-id`,
/// `x-traceability-id`), validated and completed as `config` says.
pub fn trace_context(metadata: &tonic::metadata::MetadataMap, config: &TraceConfig) -> TraceContext {
    read_incoming(metadata.as_ref(), |incoming| TraceContext::resolve(incoming, config))
}

/// The origin of a single record: its own ids.
pub fn origin_of(request: &pb::ProduceRequest) -> Origin {
    Origin { client_id: request.client_id.clone(), session_id: request.session_id.clone() }
}

/// The origin of a record of a batch: the batch's ids, each overridden when the record sets its own.
pub fn origin_in_batch(client_id: &str, session_id: &str, request: &pb::ProduceRequest) -> Origin {
    let pick = |own: &str, batch: &str| if own.is_empty() { batch.to_string() } else { own.to_string() };
    Origin { client_id: pick(&request.client_id, client_id), session_id: pick(&request.session_id, session_id) }
}

/// A record refused before it reached the producer (e.g. it does not fit its schema).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The caller's id for the record.
    pub record_id: u64,
    /// Why.
    pub error: SidecarError,
}

/// A run of a batch, in request order: consecutive records of one origin to send, or one refusal.
#[derive(Debug, PartialEq)]
pub enum Group {
    /// Records to hand to the producer together.
    Send(Origin, Vec<OutgoingRecord>),
    /// A record answered without being sent.
    Refused(Refusal),
}

/// Groups records in order: consecutive sendable records of the same origin share a group (usually
/// one group for a whole batch); each refusal stands alone, so its ack keeps its place.
pub fn group_records(items: impl IntoIterator<Item = (Origin, Result<OutgoingRecord, Refusal>)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (origin, item) in items {
        match item {
            Err(refusal) => groups.push(Group::Refused(refusal)),
            Ok(record) => match groups.last_mut() {
                Some(Group::Send(last, records)) if *last == origin => records.push(record),
                _ => groups.push(Group::Send(origin, vec![record])),
            },
        }
    }
    groups
}

/// A batch without schema specs, split into groups of consecutive records with the same origin.
pub fn batch_groups(batch: pb::ProduceBatch) -> Vec<Group> {
    let (client_id, session_id) = (batch.client_id, batch.session_id);
    group_records(batch.records.into_iter().map(|request| {
        let origin = origin_in_batch(&client_id, &session_id, &request);
        (origin, Ok(record_from_proto(request)))
    }))
}

/// A key or value schema a request asked for, as the registry is to be asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedSchema {
    /// The format's schema type.
    pub kind: SchemaKind,
    /// Which schema of the registry.
    pub selection: SchemaSelection,
}

/// A `SchemaSpec` as a domain selection; errors name `field` (e.g. `records[2].value_schema`).
pub fn schema_from_proto(role: SchemaRole, spec: pb::SchemaSpec, field: &str) -> Result<RequestedSchema, SidecarError> {
    let invalid = |message: String| SidecarError::new(ErrorCode::InvalidRequest, format!("{field}: {message}"));
    let name = spec.format.trim().to_ascii_lowercase();
    let format = serde_json::from_value::<EmbeddedFormatName>(Value::String(name)).ok();
    let Some(kind) = format.and_then(SchemaKind::of_format) else {
        return Err(invalid(format!(
            "format {:?} is not a schema format: use avro, jsonschema or protobuf",
            spec.format
        )));
    };
    let schema = (!spec.schema.is_empty()).then_some(spec.schema);
    let subject = (!spec.subject.is_empty()).then_some(spec.subject);
    let selection =
        SchemaSelection::from_fields(role, schema, spec.id.map(i64::from), spec.version.map(i64::from), subject)
            .map_err(|error| invalid(error.message))?;
    Ok(RequestedSchema { kind, selection })
}

/// One refused record's ack.
pub fn refusal_ack(record_id: u64, error: &SidecarError) -> pb::ProduceAck {
    pb::ProduceAck {
        record_id,
        received: false,
        error_code: error.code.as_str().to_string(),
        error_message: error.message.clone(),
        retry_after_ms: error.retry_after_ms(),
    }
}

/// One record's admission result as an ack.
pub fn ack(record_id: u64, result: &Result<(), SidecarError>) -> pb::ProduceAck {
    match result {
        Ok(()) => pb::ProduceAck { record_id, received: true, ..Default::default() },
        Err(error) => refusal_ack(record_id, error),
    }
}

/// A kept delivery report as sent on the stream.
pub fn report_to_proto(report: DeliveryReport) -> pb::DeliveryReport {
    let mut proto = pb::DeliveryReport {
        seq: report.seq,
        record_id: report.record_id,
        topic: report.topic,
        latency_us: report.latency_us,
        partition: -1,
        offset: -1,
        ..Default::default()
    };
    match report.outcome {
        Ok(delivered) => {
            proto.partition = delivered.partition;
            proto.offset = delivered.offset;
            proto.timestamp_ms = delivered.timestamp_ms.unwrap_or(0);
        }
        Err(error) => {
            proto.error_code = error.code.as_str().to_string();
            proto.error_message = error.message;
        }
    }
    proto
}

/// A caller-facing error as a gRPC status, with its code (and retry hint) in metadata.
pub fn status_from_error(error: &SidecarError) -> tonic::Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("kafka-sidecar-error-code", tonic::metadata::MetadataValue::from_static(error.code.as_str()));
    if error.retry_after.is_some() {
        metadata.insert("retry-after-ms", tonic::metadata::MetadataValue::from(error.retry_after_ms()));
    }
    tonic::Status::with_metadata(error.code.grpc_code(), error.message.clone(), metadata)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn batch_ids_fill_records_and_record_ids_win() {
        let batch = pb::ProduceBatch {
            client_id: "app".into(),
            session_id: "s1".into(),
            records: vec![
                pb::ProduceRequest { topic: "t".into(), record_id: 1, ..Default::default() },
                pb::ProduceRequest { topic: "t".into(), record_id: 2, ..Default::default() },
                pb::ProduceRequest { topic: "t".into(), record_id: 3, session_id: "s2".into(), ..Default::default() },
            ],
            ..Default::default()
        };
        let groups = batch_groups(batch);
        assert_eq!(groups.len(), 2);
        let Group::Send(origin, records) = &groups[0] else { panic!("a send group") };
        assert_eq!(*origin, Origin { client_id: "app".into(), session_id: "s1".into() });
        assert_eq!(records.len(), 2);
        let Group::Send(origin, _) = &groups[1] else { panic!("a send group") };
        assert_eq!(origin.session_id, "s2");
    }

    #[test]
    fn a_refusal_splits_a_group_and_keeps_its_place() {
        let origin = Origin::default();
        let record = |id| OutgoingRecord { topic: "t".into(), record_id: id, ..Default::default() };
        let refusal = Refusal { record_id: 2, error: SidecarError::new(ErrorCode::RecordInvalid, "value: no") };
        let groups = group_records([
            (origin.clone(), Ok(record(1))),
            (origin.clone(), Err(refusal.clone())),
            (origin.clone(), Ok(record(3))),
            (origin.clone(), Ok(record(4))),
        ]);
        assert_eq!(
            groups,
            vec![
                Group::Send(origin.clone(), vec![record(1)]),
                Group::Refused(refusal),
                Group::Send(origin, vec![record(3), record(4)]),
            ]
        );
    }

    fn spec(format: &str) -> pb::SchemaSpec {
        pb::SchemaSpec { format: format.into(), ..Default::default() }
    }

    #[test]
    fn specs_select_a_schema_by_text_id_version_or_latest() {
        let convert = |spec| schema_from_proto(SchemaRole::Value, spec, "value_schema");
        let latest = convert(spec("avro")).expect("latest");
        assert_eq!(
            latest,
            RequestedSchema { kind: SchemaKind::Avro, selection: SchemaSelection::Latest { subject: None } }
        );
        let by_id = convert(pb::SchemaSpec { id: Some(7), ..spec("Protobuf") }).expect("id");
        assert_eq!(by_id, RequestedSchema { kind: SchemaKind::Protobuf, selection: SchemaSelection::Id(7) });
        let by_version = convert(pb::SchemaSpec { version: Some(2), subject: "s".into(), ..spec("JSONSCHEMA") });
        assert_eq!(
            by_version.expect("version"),
            RequestedSchema {
                kind: SchemaKind::Json,
                selection: SchemaSelection::Version { subject: Some("s".into()), version: 2 }
            }
        );
        let inline = convert(pb::SchemaSpec { schema: "\"long\"".into(), ..spec("avro") }).expect("inline");
        assert_eq!(inline.selection, SchemaSelection::Inline { schema: "\"long\"".into(), subject: None });
        // Id 0 is a value the caller set, not an absent id.
        assert_eq!(
            convert(pb::SchemaSpec { id: Some(0), ..spec("avro") }).expect("id 0").selection,
            SchemaSelection::Id(0)
        );
    }

    #[test]
    fn bad_specs_are_invalid_requests_naming_the_field() {
        let convert = |spec| schema_from_proto(SchemaRole::Key, spec, "records[3].key_schema");
        for bad in [
            spec(""),
            spec("json"),
            spec("binary"),
            spec("xml"),
            pb::SchemaSpec { id: Some(1), version: Some(1), ..spec("avro") },
            pb::SchemaSpec { schema: "\"long\"".into(), id: Some(1), ..spec("avro") },
            pb::SchemaSpec { version: Some(0), ..spec("avro") },
            pb::SchemaSpec { version: Some(-3), ..spec("avro") },
            pb::SchemaSpec { subject: "  ".into(), ..spec("avro") },
        ] {
            let error = convert(bad.clone()).expect_err(&format!("{bad:?} is refused"));
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{bad:?}");
            assert!(error.message.starts_with("records[3].key_schema: "), "{}", error.message);
        }
    }

    #[test]
    fn queue_full_status_carries_code_and_retry_hint() {
        let status = status_from_error(&SidecarError::queue_full(std::time::Duration::from_millis(30)));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("kafka-sidecar-error-code").and_then(|v| v.to_str().ok()), Some("QUEUE_FULL"));
        assert_eq!(status.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()), Some("30"));
    }

    #[test]
    fn headers_keep_order_and_duplicates() {
        let record = record_from_proto(pb::ProduceRequest {
            topic: "t".into(),
            headers: vec![
                pb::Header { key: "a".into(), value: Bytes::from_static(b"1") },
                pb::Header { key: "a".into(), value: Bytes::from_static(b"2") },
            ],
            ..Default::default()
        });
        assert_eq!(record.headers.len(), 2);
        assert_eq!(record.headers[1].1, Bytes::from_static(b"2"));
    }
}
