//! Consumed records as JSON (for the active consumer's fetches and the reactive consumer's pushes)
//! in a key format and a value format: binary as base64, json embedded as JSON, string as UTF-8
//! text, and avro, jsonschema and protobuf decoded with their registry schema into JSON (with the
//! schema id in `key_schema_id`/`value_schema_id`). A key, value or header that does not decode in
//! its format is returned with an `error` field and its raw bytes in base64 (`key_base64`,
//! `value_base64`), never skipped.
//!
//! Records are serialized straight from their bytes (embedded JSON is validated, not rebuilt).
//! Schema formats need their schemas loaded first: [`RecordFormats::load_schemas`] does that for a
//! batch and returns its [`BatchDecoder`], so rendering itself never waits on the registry.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::config::EmbeddedFormatName;
use crate::consumer::ConsumedRecord;
use crate::error::{ErrorCode, SidecarError};
use crate::schema::{LoadedSchemas, SchemaKind, SchemaRegistry, decode_with};

/// How consumed keys and values become JSON: their formats, and the registry that schema formats
/// decode with.
#[derive(Clone)]
pub struct RecordFormats {
    /// Key format.
    pub key: EmbeddedFormatName,
    /// Value format.
    pub value: EmbeddedFormatName,
    /// The schema registry; schema formats without one render as errors.
    pub schemas: Option<Arc<SchemaRegistry>>,
}

impl RecordFormats {
    /// Both sides in one format.
    pub fn both(format: EmbeddedFormatName, schemas: Option<Arc<SchemaRegistry>>) -> Self {
        Self { key: format, value: format, schemas }
    }

    /// Loads the schemas `records` are written with, for the formats that use one, into the
    /// decoder for this batch. Fails when the registry is unavailable or refuses the sidecar, so
    /// the caller can hold the records back and retry.
    pub async fn load_schemas(&self, records: &[&ConsumedRecord]) -> Result<BatchDecoder, SidecarError> {
        let keys = self.key.needs_registry();
        let values = self.value.needs_registry();
        let loaded = match &self.schemas {
            Some(schemas) if keys || values => {
                let mut ids = Vec::new();
                for record in records {
                    let key = record.key.as_deref().filter(|_| keys);
                    let value = record.value.as_deref().filter(|_| values);
                    ids.extend(key.into_iter().chain(value).filter_map(SchemaRegistry::id_of));
                }
                Some(schemas.load_ids(ids).await?)
            }
            _ => None,
        };
        Ok(BatchDecoder { key: self.key, value: self.value, loaded })
    }
}

/// Renders one batch of records: the formats and the schemas the batch needs, already loaded.
pub struct BatchDecoder {
    key: EmbeddedFormatName,
    value: EmbeddedFormatName,
    loaded: Option<LoadedSchemas>,
}

impl BatchDecoder {
    /// A decoder for plain formats (binary, json, string), which need no schemas.
    pub fn plain(key: EmbeddedFormatName, value: EmbeddedFormatName) -> Self {
        Self { key, value, loaded: None }
    }

    /// Whether either side uses a schema format.
    pub fn uses_schemas(&self) -> bool {
        self.key.needs_registry() || self.value.needs_registry()
    }

    /// Why `record`'s key or value does not decode in its format, if it does not.
    pub fn undecodable(&self, record: &ConsumedRecord) -> Option<String> {
        let loaded = self.loaded.as_ref();
        let key = render(self.key, loaded, record.key.as_ref()).err().map(|why| format!("key is {why}"));
        let value = || render(self.value, loaded, record.value.as_ref()).err().map(|why| format!("value is {why}"));
        key.or_else(value)
    }
}

/// A schema format with no registry configured: refused where a consumer is set up.
pub fn require_registry(format: EmbeddedFormatName, schemas: Option<&SchemaRegistry>) -> Result<(), SidecarError> {
    if format.needs_registry() && schemas.is_none() {
        return Err(SidecarError::new(
            ErrorCode::UnsupportedFormat,
            format!("the {format:?} format needs schema_registry.url, which is not configured"),
        ));
    }
    Ok(())
}

/// A key, value or header value rendered in a format.
enum Rendered<'a> {
    Null,
    Text(Cow<'a, str>),
    Json(&'a RawValue),
    /// Decoded with a registry schema, and that schema's id.
    Decoded(serde_json::Value, u32),
}

impl Rendered<'_> {
    fn schema_id(&self) -> Option<u32> {
        match self {
            Self::Decoded(_, id) => Some(*id),
            _ => None,
        }
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_none(),
            Self::Text(text) => serializer.serialize_str(text),
            Self::Json(raw) => raw.serialize(serializer),
            Self::Decoded(value, _) => value.serialize(serializer),
        }
    }
}

fn render<'a>(
    format: EmbeddedFormatName,
    loaded: Option<&LoadedSchemas>,
    bytes: Option<&'a Bytes>,
) -> Result<Rendered<'a>, String> {
    let Some(bytes) = bytes else { return Ok(Rendered::Null) };
    if let Some(kind) = SchemaKind::of_format(format) {
        let loaded = loaded.ok_or("not decodable: no schema registry is configured")?;
        let (value, id) = decode_with(loaded, kind, bytes)?;
        return Ok(Rendered::Decoded(value, id));
    }
    match format {
        EmbeddedFormatName::Json => serde_json::from_slice::<&RawValue>(bytes)
            .map(Rendered::Json)
            .map_err(|error| format!("not valid JSON: {error}")),
        EmbeddedFormatName::String => std::str::from_utf8(bytes)
            .map(|text| Rendered::Text(Cow::Borrowed(text)))
            .map_err(|error| format!("not valid UTF-8: {error}")),
        _ => Ok(Rendered::Text(Cow::Owned(STANDARD.encode(bytes)))),
    }
}

/// Header values: base64 when values are binary, UTF-8 text otherwise (base64 when not UTF-8).
struct HeadersJson<'a>(&'a [(String, Option<Bytes>)], EmbeddedFormatName);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            let rendered = match (value, self.1) {
                (None, _) => Rendered::Null,
                (Some(bytes), EmbeddedFormatName::Binary) => Rendered::Text(Cow::Owned(STANDARD.encode(bytes))),
                (Some(bytes), _) => match std::str::from_utf8(bytes) {
                    Ok(text) => Rendered::Text(Cow::Borrowed(text)),
                    Err(_) => Rendered::Text(Cow::Owned(STANDARD.encode(bytes))),
                },
            };
            map.serialize_entry(name, &rendered)?;
        }
        map.end()
    }
}

/// One record of a fetch response. `key` and `value` are base64 text (binary), embedded JSON
/// (json), text (string) or the schema's JSON (schema formats); `null` when absent or when they
/// do not decode (then `error` says why and `key_base64`/`value_base64` hold the bytes).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ConsumerRecord)]
pub struct RecordJson<'a> {
    topic: &'a str,
    #[schema(value_type = serde_json::Value)]
    key: Rendered<'a>,
    #[schema(value_type = serde_json::Value)]
    value: Rendered<'a>,
    partition: i32,
    offset: i64,
    /// Header values: base64 when values are binary, else text (base64 when not UTF-8).
    #[schema(value_type = std::collections::BTreeMap<String, Option<String>>)]
    headers: HeadersJson<'a>,
    timestamp: Option<i64>,
    /// CREATE_TIME or LOG_APPEND_TIME.
    timestamp_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_schema_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_schema_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

impl<'a> RecordJson<'a> {
    /// Renders `record`'s key and value in their formats.
    pub fn new(record: &'a ConsumedRecord, formats: &BatchDecoder) -> Self {
        let mut errors = Vec::new();
        let loaded = formats.loaded.as_ref();
        let mut raw = |field: &str, format, bytes: Option<&'a Bytes>| match render(format, loaded, bytes) {
            Ok(rendered) => (rendered, None),
            Err(why) => {
                errors.push(format!("{field} is {why}"));
                (Rendered::Null, bytes.map(|bytes| STANDARD.encode(bytes)))
            }
        };
        let (key, key_base64) = raw("key", formats.key, record.key.as_ref());
        let (value, value_base64) = raw("value", formats.value, record.value.as_ref());
        Self {
            topic: &record.topic,
            key_schema_id: key.schema_id(),
            value_schema_id: value.schema_id(),
            key,
            value,
            partition: record.partition,
            offset: record.offset,
            headers: HeadersJson(&record.headers, formats.value),
            timestamp: record.timestamp.map(|(ms, _)| ms),
            timestamp_type: record.timestamp.map(|(_, kind)| kind.as_str()),
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            key_base64,
            value_base64,
        }
    }
}

/// A JSON array of records, keys and values each in their format.
pub fn records_json<'a>(
    records: impl ExactSizeIterator<Item = &'a ConsumedRecord>,
    formats: &BatchDecoder,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::with_capacity(records.len() * 256 + 2);
    let mut serializer = serde_json::Serializer::new(&mut body);
    serializer.collect_seq(records.map(|record| RecordJson::new(record, formats)))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::consumer::TimestampKind;

    fn record(key: &[u8], value: &[u8]) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: 7,
            key: Some(Bytes::copy_from_slice(key)),
            value: Some(Bytes::copy_from_slice(value)),
            headers: vec![("trace".into(), Some(Bytes::from_static(b"abc"))), ("empty".into(), None)],
            timestamp: Some((1_700_000_000_000, TimestampKind::CreateTime)),
        }
    }

    fn rendered(record: &ConsumedRecord, format: EmbeddedFormatName) -> Value {
        let body = records_json(std::iter::once(record), &BatchDecoder::plain(format, format)).expect("serialize");
        serde_json::from_slice::<Value>(&body).expect("json")[0].clone()
    }

    #[test]
    fn each_format_renders_keys_values_and_headers() {
        let json_record = rendered(&record(b"\"k\"", br#"{"a":[1,2]}"#), EmbeddedFormatName::Json);
        assert_eq!(json_record["value"], json!({"a": [1, 2]}));
        assert_eq!(json_record["key"], json!("k"));
        assert_eq!(json_record["headers"], json!({"trace": "abc", "empty": null}));
        assert_eq!(json_record["timestamp_type"], json!("CREATE_TIME"));
        let binary = rendered(&record(b"k", b"abc"), EmbeddedFormatName::Binary);
        assert_eq!(binary["value"], json!("YWJj"));
        assert_eq!(binary["headers"]["trace"], json!("YWJj"));
        let string = rendered(&record(b"k", b"hello"), EmbeddedFormatName::String);
        assert_eq!(string["value"], json!("hello"));
        assert!(string.get("error").is_none());
    }

    #[test]
    fn undecodable_values_come_back_with_an_error_and_their_bytes() {
        let bad = rendered(&record(b"k", b"not json"), EmbeddedFormatName::Json);
        assert_eq!(bad["value"], Value::Null);
        assert_eq!(bad["value_base64"], json!(STANDARD.encode("not json")));
        assert!(bad["error"].as_str().expect("error").starts_with("key is not valid JSON"), "{bad}");
        let not_utf8 = rendered(&record(b"k", &[0xff, 0xfe]), EmbeddedFormatName::String);
        assert!(not_utf8["error"].as_str().expect("error").contains("value is not valid UTF-8"));
        assert_eq!(not_utf8["key"], json!("k"));
    }
}
