//! Translation between the protobuf types and the domain types, both ways. Nothing else.

use kafka_sidecar_proto::v1 as pb;

use crate::error::SidecarError;
use crate::record::{DeliveryReport, Origin, OutgoingRecord};

/// A protobuf record as a domain record.
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

/// The origin of a single record: its own ids.
pub fn origin_of(request: &pb::ProduceRequest) -> Origin {
    Origin { client_id: request.client_id.clone(), session_id: request.session_id.clone() }
}

/// Splits a batch into groups of consecutive records with the same origin (usually one group:
/// the batch-level ids, overridden per record only when a record sets its own).
pub fn batch_groups(batch: pb::ProduceBatch) -> Vec<(Origin, Vec<OutgoingRecord>)> {
    let mut groups: Vec<(Origin, Vec<OutgoingRecord>)> = Vec::new();
    for request in batch.records {
        let origin = Origin {
            client_id: if request.client_id.is_empty() { batch.client_id.clone() } else { request.client_id.clone() },
            session_id: if request.session_id.is_empty() {
                batch.session_id.clone()
            } else {
                request.session_id.clone()
            },
        };
        let record = record_from_proto(request);
        match groups.last_mut() {
            Some((last, records)) if *last == origin => records.push(record),
            _ => groups.push((origin, vec![record])),
        }
    }
    groups
}

/// One record's admission result as an ack.
pub fn ack(record_id: u64, result: &Result<(), SidecarError>) -> pb::ProduceAck {
    match result {
        Ok(()) => pb::ProduceAck { record_id, received: true, ..Default::default() },
        Err(error) => pb::ProduceAck {
            record_id,
            received: false,
            error_code: error.code.as_str().to_string(),
            error_message: error.message.clone(),
            retry_after_ms: error.retry_after_ms(),
        },
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
        assert_eq!(groups[0].0, Origin { client_id: "app".into(), session_id: "s1".into() });
        assert_eq!(groups[0].1.len(), 2);
        assert_eq!(groups[1].0.session_id, "s2");
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
