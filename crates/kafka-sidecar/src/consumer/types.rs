//! Domain types of the consume path, shared by the active (REST) consumer and, later, the reactive
//! one: what a caller asks of an instance and what it gets back. No HTTP types appear here.

use std::sync::Arc;

use bytes::Bytes;

use crate::config::{EmbeddedFormatName, OffsetReset};

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number (never negative: the edge checks).
    pub partition: i32,
}

/// What an instance reads: named topics or a regular expression over topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches this regular expression.
    Pattern(String),
}

/// Per-instance settings from the create request, with configuration defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSettings {
    /// Consumer group.
    pub group: String,
    /// Instance name, unique in the group on this sidecar.
    pub name: String,
    /// How keys and values are rendered for the app.
    pub format: EmbeddedFormatName,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Commit what was returned to the app, periodically and on leave.
    pub auto_commit: bool,
    /// A fetch waits until this many bytes are buffered (or its timeout); 0 answers at once.
    pub fetch_min_bytes: usize,
    /// Default fetch wait.
    pub request_timeout_ms: u64,
    /// Static membership (`group.instance.id`), when set.
    pub group_instance_id: Option<String>,
}

/// Where a seek moves a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekPosition {
    /// This offset (the next record read is the one at it).
    Offset(i64),
    /// The first record whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
    /// The oldest record kept.
    Beginning,
    /// After the newest record.
    End,
}

/// How a record's timestamp was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

impl TimestampKind {
    /// Kafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateTime => "CREATE_TIME",
            Self::LogAppendTime => "LOG_APPEND_TIME",
        }
    }
}

/// One record read from Kafka, copied out of librdkafka's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    /// Topic (shared between the records of one topic).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes, if any.
    pub key: Option<Bytes>,
    /// Value bytes; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order; names may repeat.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch and how they were set, when the record has a timestamp.
    pub timestamp: Option<(i64, TimestampKind)>,
}

impl ConsumedRecord {
    /// Key and value bytes: what `max_bytes` and the prefetch bound count.
    pub fn payload_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len)
    }

    /// Memory the record holds in a buffer, roughly: payload, headers and a fixed overhead.
    pub fn held_bytes(&self) -> usize {
        let headers: usize =
            self.headers.iter().map(|(name, value)| name.len() + value.as_ref().map_or(0, Bytes::len) + 32).sum();
        self.payload_bytes() + headers + 96
    }
}

/// A committed offset as Kafka stores it: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to read; -1 when the group has committed nothing for the partition.
    pub offset: i64,
    /// Metadata stored with the commit.
    pub metadata: String,
}

/// An offset to commit, named as Confluent v2 names it: the last record the app processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset of the last processed record; Kafka stores this + 1.
    pub offset: i64,
    /// Metadata to store with the commit.
    pub metadata: Option<String>,
}

/// What a fetch may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most key and value bytes (at least one record is returned if any is buffered).
    pub max_bytes: usize,
    /// Most records.
    pub max_records: usize,
    /// How long to wait for records.
    pub timeout: std::time::Duration,
}

/// An instance's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceState {
    /// Topics subscribed (the pattern, for a pattern subscription).
    pub subscription: Vec<String>,
    /// Partitions assigned, by the group or by hand.
    pub assignment: Vec<TopicPartition>,
    /// Whether the assignment was made by hand.
    pub manual: bool,
}
