//! Request bodies of the consumer API in both dialects (seed 002 and Confluent REST Proxy v2),
//! decoded into the consumer core's domain types. Every rejection is a 4xx naming the field.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::consumer::{ProcessedOffset, SeekPosition, Subscription, TopicPartition};
use crate::error::{ErrorCode, SidecarError};

/// Parses a JSON body; an empty body is `T::default()` where the endpoint allows one.
pub fn parse<T: DeserializeOwned + Default>(body: &[u8], what: &str) -> Result<T, SidecarError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::http::status::parse_json(body, what)
}

fn invalid(message: impl Into<String>) -> SidecarError {
    SidecarError::new(ErrorCode::InvalidRequest, message)
}

/// `POST /consumers/{group}`: seed names and Confluent names alike.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateConsumerInstanceRequest)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Instance name (Confluent and seed).
    pub name: Option<String>,
    /// Instance name (seed).
    pub id: Option<String>,
    /// Record format: binary, json, string (schema formats need the registry).
    #[schema(value_type = Option<crate::http::EmbeddedFormat>)]
    pub format: Option<Value>,
    /// earliest | latest (also Kafka's old smallest | largest).
    #[serde(rename = "auto.offset.reset", alias = "autoOffsetReset")]
    pub auto_offset_reset: Option<String>,
    /// "true" | "false" (a JSON boolean is accepted too).
    #[serde(rename = "auto.commit.enable", alias = "autoCommitEnable")]
    pub auto_commit_enable: Option<Value>,
    /// Bytes a fetch waits for; -1 or 0 answers as soon as any record is there.
    #[serde(rename = "fetch.min.bytes", alias = "responseMinBytes")]
    pub fetch_min_bytes: Option<Value>,
    /// Default fetch wait in ms.
    #[serde(rename = "consumer.request.timeout.ms", alias = "requestWaitMs")]
    pub request_timeout_ms: Option<Value>,
    /// Static group membership.
    #[serde(rename = "group.instance.id", alias = "groupInstanceId")]
    pub group_instance_id: Option<String>,
}

/// A setting given as a JSON number or a numeric string, as v2 clients send both.
pub fn integer_setting(field: &str, value: Option<&Value>) -> Result<Option<i64>, SidecarError> {
    let bad = || SidecarError::new(ErrorCode::InvalidConsumerConfig, format!("{field} must be an integer"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(text)) => text.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// A setting given as a JSON boolean or "true"/"false".
pub fn bool_setting(field: &str, value: Option<&Value>) -> Result<Option<bool>, SidecarError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => {
            Err(SidecarError::new(ErrorCode::InvalidConsumerConfig, format!("{field} must be \"true\" or \"false\"")))
        }
    }
}

/// `.../subscription(s)`: a topic list or a pattern.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ConsumerSubscriptionRecord)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    topics: Option<Vec<String>>,
    topic_pattern: Option<String>,
}

impl SubscriptionRequest {
    /// The subscription, checked.
    pub fn into_subscription(self) -> Result<Subscription, SidecarError> {
        match (self.topics, self.topic_pattern) {
            (Some(topics), None) if !topics.is_empty() => {
                for topic in &topics {
                    crate::record::validate_topic_name(topic)?;
                }
                Ok(Subscription::Topics(topics))
            }
            (None, Some(pattern)) if !pattern.trim().is_empty() && !pattern.chars().any(char::is_control) => {
                Ok(Subscription::Pattern(pattern))
            }
            _ => Err(invalid("give a non-empty `topics` list or a `topic_pattern`, not both")),
        }
    }
}

/// A topic and partition as JSON.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = TopicPartition)]
#[serde(deny_unknown_fields)]
pub struct PartitionJson {
    topic: String,
    partition: i64,
}

impl PartitionJson {
    /// Checked: legal topic name, partition in `0..=i32::MAX`.
    pub fn checked(&self) -> Result<TopicPartition, SidecarError> {
        crate::record::validate_topic_name(&self.topic)?;
        let partition = i32::try_from(self.partition)
            .ok()
            .filter(|partition| *partition >= 0)
            .ok_or_else(|| invalid(format!("partition {} of {:?} is out of range", self.partition, self.topic)))?;
        Ok(TopicPartition { topic: self.topic.clone(), partition })
    }
}

/// `{"partitions": [...]}` (assignments, seek to beginning/end, Confluent committed-offset reads);
/// the seed's committed-offset read names the list `offsets`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PartitionsRequest)]
pub struct PartitionsRequest {
    partitions: Option<Vec<PartitionJson>>,
    offsets: Option<Vec<PartitionJson>>,
}

impl PartitionsRequest {
    /// The partitions, checked; empty when none were given.
    pub fn checked(self) -> Result<Vec<TopicPartition>, SidecarError> {
        self.partitions.or(self.offsets).unwrap_or_default().iter().map(PartitionJson::checked).collect()
    }
}

/// One offset in a commit or seek body (a number or numeric text).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = TopicPartitionOffsetMetadata)]
#[serde(deny_unknown_fields)]
pub struct OffsetJson {
    topic: String,
    partition: i64,
    offset: Value,
    metadata: Option<String>,
}

fn offset_value(value: &Value) -> Result<i64, SidecarError> {
    let offset = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    offset.filter(|offset| *offset >= 0).ok_or_else(|| invalid(format!("offset {value} is not a non-negative integer")))
}

/// `POST .../offsets`: processed offsets, or none to commit everything returned.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ConsumerOffsetCommitRequest)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    offsets: Option<Vec<OffsetJson>>,
}

impl CommitRequest {
    /// `None` means "everything returned so far".
    pub fn checked(self) -> Result<Option<Vec<ProcessedOffset>>, SidecarError> {
        let offsets = self.offsets.unwrap_or_default();
        if offsets.is_empty() {
            return Ok(None);
        }
        offsets
            .iter()
            .map(|entry| {
                let partition = PartitionJson { topic: entry.topic.clone(), partition: entry.partition }.checked()?;
                Ok(ProcessedOffset {
                    topic: partition.topic,
                    partition: partition.partition,
                    offset: offset_value(&entry.offset)?,
                    metadata: entry.metadata.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// One timestamp in a seek body: ISO-8601 text or epoch milliseconds.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[schema(as = PartitionTimestamp)]
#[serde(deny_unknown_fields)]
pub struct TimestampJson {
    topic: String,
    partition: i64,
    timestamp: Value,
    /// Accepted for seed 002 compatibility; a seek stores no metadata.
    #[serde(rename = "metadata")]
    _metadata: Option<String>,
}

/// `POST .../positions`: offsets and/or timestamps.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = ConsumerSeekRequest)]
#[serde(deny_unknown_fields)]
pub struct SeekRequest {
    offsets: Option<Vec<OffsetJson>>,
    timestamps: Option<Vec<TimestampJson>>,
}

impl SeekRequest {
    /// The seek targets, checked; at least one.
    pub fn checked(self) -> Result<Vec<(TopicPartition, SeekPosition)>, SidecarError> {
        let mut targets = Vec::new();
        for entry in self.offsets.unwrap_or_default() {
            let partition = PartitionJson { topic: entry.topic, partition: entry.partition }.checked()?;
            targets.push((partition, SeekPosition::Offset(offset_value(&entry.offset)?)));
        }
        for entry in self.timestamps.unwrap_or_default() {
            let partition = PartitionJson { topic: entry.topic, partition: entry.partition }.checked()?;
            targets.push((partition, SeekPosition::Timestamp(timestamp_ms(&entry.timestamp)?)));
        }
        if targets.is_empty() {
            return Err(invalid("give `offsets` or `timestamps` to seek"));
        }
        Ok(targets)
    }
}

/// A timestamp as ISO-8601 (RFC 3339) text or milliseconds since the epoch.
pub fn timestamp_ms(value: &Value) -> Result<i64, SidecarError> {
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|time| time.timestamp_millis())),
        _ => None,
    };
    parsed.filter(|ms| *ms >= 0).ok_or_else(|| {
        invalid(format!("timestamp {value} is neither ISO-8601 (2024-05-01T12:00:00Z) nor epoch milliseconds"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn create_accepts_both_dialects_and_string_numbers() {
        let confluent: CreateRequest = parse(
            br#"{"name":"a","format":"json","auto.offset.reset":"earliest","auto.commit.enable":"false","fetch.min.bytes":"10"}"#,
            "create",
        )
        .expect("confluent");
        assert_eq!(bool_setting("x", confluent.auto_commit_enable.as_ref()).expect("bool"), Some(false));
        assert_eq!(integer_setting("x", confluent.fetch_min_bytes.as_ref()).expect("int"), Some(10));
        let seed: CreateRequest =
            parse(br#"{"id":"b","autoOffsetReset":"latest","responseMinBytes":-1,"requestWaitMs":500}"#, "create")
                .expect("seed");
        assert_eq!(seed.id.as_deref(), Some("b"));
        assert_eq!(integer_setting("x", seed.request_timeout_ms.as_ref()).expect("int"), Some(500));
        assert!(parse::<CreateRequest>(br#"{"nmae":"typo"}"#, "create").is_err());
        assert!(parse::<CreateRequest>(b"  ", "create").is_ok());
    }

    #[test]
    fn commit_offsets_are_checked_and_empty_means_everything_returned() {
        let all: CommitRequest = parse(b"", "commit").expect("empty");
        assert_eq!(all.checked().expect("ok"), None);
        let listed: CommitRequest =
            parse(br#"{"offsets":[{"topic":"t","partition":1,"offset":"41"}]}"#, "commit").expect("listed");
        assert_eq!(listed.checked().expect("ok").expect("some")[0].offset, 41);
        let negative: CommitRequest =
            parse(br#"{"offsets":[{"topic":"t","partition":-1,"offset":1}]}"#, "commit").expect("shape");
        assert_eq!(negative.checked().expect_err("negative").code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn timestamps_parse_as_iso_8601_or_epoch_ms() {
        assert_eq!(timestamp_ms(&json!("1970-01-01T00:00:01Z")).expect("iso"), 1000);
        assert_eq!(timestamp_ms(&json!("1970-01-01T01:00:01.5+01:00")).expect("offset"), 1500);
        assert_eq!(timestamp_ms(&json!(1234)).expect("ms"), 1234);
        assert_eq!(timestamp_ms(&json!("1234")).expect("ms text"), 1234);
        assert!(timestamp_ms(&json!("yesterday")).is_err());
    }

    #[test]
    fn subscription_needs_topics_or_a_pattern() {
        let pattern: SubscriptionRequest = parse(br#"{"topic_pattern":"orders\\..*"}"#, "s").expect("pattern");
        assert_eq!(pattern.into_subscription().expect("ok"), Subscription::Pattern("orders\\..*".into()));
        let empty: SubscriptionRequest = parse(br#"{"topics":[]}"#, "s").expect("shape");
        assert!(empty.into_subscription().is_err());
        let bad: SubscriptionRequest = parse(br#"{"topics":["bad topic!"]}"#, "s").expect("shape");
        assert!(bad.into_subscription().is_err());
    }
}
