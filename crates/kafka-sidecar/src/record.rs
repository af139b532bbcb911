//! Domain types of the produce path, shared by every edge: what a caller asks to send and what
//! Kafka answered. No HTTP or gRPC types appear here.

use bytes::Bytes;

use crate::error::{ErrorCode, SidecarError};

/// The longest legal Kafka topic name.
const MAX_TOPIC_LENGTH: usize = 249;

/// One record a caller wants produced, already decoded from its wire format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingRecord {
    /// Target topic.
    pub topic: String,
    /// Record key; `None` lets the partitioner spread records.
    pub key: Option<Bytes>,
    /// Record value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order; names may repeat, as Kafka allows.
    pub headers: Vec<(String, Bytes)>,
    /// Explicit partition, or `None` for the partitioner.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch, or `None` for "now".
    pub timestamp_ms: Option<i64>,
    /// The caller's id, echoed on acks and delivery reports.
    pub record_id: u64,
}

impl OutgoingRecord {
    /// Bytes this record holds in the queue: what admission control counts.
    pub fn size_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.len() + value.len()).sum();
        self.topic.len() + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + headers
    }
}

/// Who sent a record: the application (metrics label) and the producer instance (report routing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The application's name; bounded metrics label.
    pub client_id: String,
    /// One producer instance; its delivery reports are kept for `DeliveryStream`.
    pub session_id: String,
}

/// Where Kafka stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition the record landed in.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The record's timestamp in milliseconds, when known.
    pub timestamp_ms: Option<i64>,
}

/// The final outcome of one accepted record.
pub type DeliveryOutcome = Result<Delivered, SidecarError>;

/// A delivery report as kept for a session and streamed back to it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// Per-session sequence number, from 1.
    pub seq: u64,
    /// The caller's record id.
    pub record_id: u64,
    /// Topic of the record.
    pub topic: String,
    /// Delivered partition and offset, or why not.
    pub outcome: DeliveryOutcome,
    /// Microseconds from acceptance to Kafka's answer.
    pub latency_us: u64,
}

/// Checks a topic name against Kafka's rules: 1..=249 characters of `[a-zA-Z0-9._-]`, not `.`/`..`.
pub fn validate_topic_name(topic: &str) -> Result<(), SidecarError> {
    let invalid =
        |why: &str| Err(SidecarError::new(ErrorCode::InvalidTopic, format!("invalid topic name {topic:?}: {why}")));
    if topic.is_empty() {
        return invalid("it is empty");
    }
    if topic.len() > MAX_TOPIC_LENGTH {
        return invalid("it is longer than 249 characters");
    }
    if topic == "." || topic == ".." {
        return invalid("'.' and '..' are reserved");
    }
    if !topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "has space", "slash/topic", "ümlaut", &"x".repeat(250)] {
            let error = validate_topic_name(bad).expect_err(bad);
            assert_eq!(error.code, ErrorCode::InvalidTopic, "{bad}");
        }
    }

    #[test]
    fn size_counts_key_value_headers_and_topic() {
        let record = OutgoingRecord {
            topic: "t".into(),
            key: Some(Bytes::from_static(b"kk")),
            value: Some(Bytes::from_static(b"vvv")),
            headers: vec![("h".into(), Bytes::from_static(b"1234"))],
            ..OutgoingRecord::default()
        };
        assert_eq!(record.size_bytes(), 1 + 2 + 3 + 5);
    }
}
