//! Key and value formats of the HTTP API (seed 002's `EmbeddedFormat`), by name or integer, and
//! how each turns a JSON value into Kafka bytes: plain formats here, schema formats through a
//! [`Schema`] the registry resolved once per request.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::EmbeddedFormatName;
use crate::error::{ErrorCode, SidecarError};
use crate::schema::{Schema, SchemaKind, SchemaRegistry, SchemaRole, SchemaSelection};

/// A key or value format. Integers follow seed 002: binary 0, avro 1, json 2, jsonschema 3,
/// protobuf 4, string 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedFormat(pub EmbeddedFormatName);

impl EmbeddedFormat {
    const BY_NUMBER: [EmbeddedFormatName; 6] = [
        EmbeddedFormatName::Binary,
        EmbeddedFormatName::Avro,
        EmbeddedFormatName::Json,
        EmbeddedFormatName::Jsonschema,
        EmbeddedFormatName::Protobuf,
        EmbeddedFormatName::String,
    ];

    /// Encodes one JSON key or value; `null` means absent (no key, or a tombstone value).
    pub fn encode(self, field: &str, value: &Value) -> Result<Option<Bytes>, SidecarError> {
        if value.is_null() {
            return Ok(None);
        }
        let bytes = match self.0 {
            EmbeddedFormatName::String => match value {
                Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
                _ => {
                    return Err(SidecarError::new(
                        ErrorCode::InvalidRequest,
                        format!("{field}: the string format needs a JSON string"),
                    ));
                }
            },
            EmbeddedFormatName::Binary => {
                let Value::String(text) = value else {
                    return Err(SidecarError::new(
                        ErrorCode::InvalidBase64,
                        format!("{field}: the binary format needs a base64 JSON string"),
                    ));
                };
                let decoded = STANDARD.decode(text).map_err(|error| {
                    SidecarError::new(ErrorCode::InvalidBase64, format!("{field}: invalid base64: {error}"))
                })?;
                Bytes::from(decoded)
            }
            EmbeddedFormatName::Json => Bytes::from(value.to_string()),
            EmbeddedFormatName::Avro | EmbeddedFormatName::Jsonschema | EmbeddedFormatName::Protobuf => {
                // Schema formats encode through `FieldEncoder::Schema`; reaching here is a bug.
                return Err(SidecarError::new(
                    ErrorCode::UnsupportedFormat,
                    format!("{field}: the {:?} format needs a schema", self.0),
                ));
            }
        };
        Ok(Some(bytes))
    }
}

/// How one side (keys or values) of a produce request becomes bytes: a plain format, or a schema
/// resolved once for the whole request.
pub enum FieldEncoder {
    /// binary, json or string.
    Plain(EmbeddedFormat),
    /// avro, jsonschema or protobuf with the selected schema.
    Schema(Arc<Schema>),
}

impl FieldEncoder {
    /// The encoder for `format`. A schema format resolves `selection` through the registry (only
    /// when `needed`: a request whose keys are all null needs no key schema); a plain format
    /// refuses a schema the request named.
    pub async fn resolve(
        format: EmbeddedFormat,
        selection: SchemaSelection,
        needed: bool,
        registry: Option<&SchemaRegistry>,
        topic: &str,
        role: SchemaRole,
    ) -> Result<Self, SidecarError> {
        let Some(kind) = SchemaKind::of_format(format.0) else {
            if !matches!(selection, SchemaSelection::Latest { subject: None }) {
                return Err(SidecarError::new(
                    ErrorCode::InvalidRequest,
                    format!("a {role} schema was given, but the {role} format {:?} uses none", format.0),
                ));
            }
            return Ok(Self::Plain(format));
        };
        let Some(registry) = registry else {
            return Err(SidecarError::new(
                ErrorCode::UnsupportedFormat,
                format!("the {role} format {:?} needs schema_registry.url, which is not configured", format.0),
            ));
        };
        if !needed {
            return Ok(Self::Plain(EmbeddedFormat(EmbeddedFormatName::Binary)));
        }
        Ok(Self::Schema(registry.for_produce(topic, role, kind, &selection).await?))
    }

    /// The schema id written into each record, for the produce response.
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            Self::Plain(_) => None,
            Self::Schema(schema) => Some(schema.id),
        }
    }

    /// Encodes one key or value named `field` in errors; `null` means absent.
    pub fn encode(&self, field: &str, value: &Value) -> Result<Option<Bytes>, SidecarError> {
        match self {
            Self::Plain(format) => format.encode(field, value),
            Self::Schema(_) if value.is_null() => Ok(None),
            Self::Schema(schema) => schema.encode(value).map(Some).map_err(|error| {
                let path = format!("{field}{}", error.path);
                SidecarError::new(ErrorCode::RecordInvalid, format!("{path}: {}", error.message))
            }),
        }
    }
}

impl<'de> Deserialize<'de> for EmbeddedFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Name(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(number) => usize::try_from(number)
                .ok()
                .and_then(|index| Self::BY_NUMBER.get(index).copied())
                .map(EmbeddedFormat)
                .ok_or_else(|| D::Error::custom(format!("unknown format number {number}, expected 0 to 5"))),
            Raw::Name(name) => {
                let lower = name.to_ascii_lowercase();
                serde_json::from_value::<EmbeddedFormatName>(Value::String(lower))
                    .map(EmbeddedFormat)
                    .map_err(|_| D::Error::custom(format!("unknown format {name:?}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn format(value: Value) -> EmbeddedFormat {
        serde_json::from_value(value).expect("format")
    }

    #[test]
    fn formats_by_name_and_number_agree() {
        assert_eq!(format(json!("binary")), format(json!(0)));
        assert_eq!(format(json!("JSON")), format(json!(2)));
        assert_eq!(format(json!("string")), format(json!(5)));
        assert!(serde_json::from_value::<EmbeddedFormat>(json!(6)).is_err());
        assert!(serde_json::from_value::<EmbeddedFormat>(json!("xml")).is_err());
    }

    #[test]
    fn binary_decodes_base64_and_rejects_garbage() {
        let binary = EmbeddedFormat(EmbeddedFormatName::Binary);
        assert_eq!(binary.encode("value", &json!("YWJj")).expect("valid"), Some(Bytes::from_static(b"abc")));
        assert_eq!(binary.encode("value", &json!("not base64!")).expect_err("bad").code, ErrorCode::InvalidBase64);
    }

    #[test]
    fn json_keeps_the_document_and_string_needs_a_string() {
        let json_format = EmbeddedFormat(EmbeddedFormatName::Json);
        assert_eq!(json_format.encode("value", &json!({"a": 1})).expect("json"), Some(Bytes::from("{\"a\":1}")));
        let string = EmbeddedFormat(EmbeddedFormatName::String);
        assert_eq!(string.encode("key", &json!(5)).expect_err("number").code, ErrorCode::InvalidRequest);
        assert_eq!(string.encode("key", &Value::Null).expect("null"), None);
    }

    #[tokio::test]
    async fn schema_formats_need_a_registry_and_plain_formats_refuse_schemas() {
        let avro = EmbeddedFormat(EmbeddedFormatName::Avro);
        let latest = SchemaSelection::Latest { subject: None };
        let refused = FieldEncoder::resolve(avro, latest, true, None, "t", SchemaRole::Value).await;
        assert_eq!(refused.err().map(|error| error.code), Some(ErrorCode::UnsupportedFormat));
        let binary = EmbeddedFormat(EmbeddedFormatName::Binary);
        let by_id = SchemaSelection::Id(3);
        let refused = FieldEncoder::resolve(binary, by_id, true, None, "t", SchemaRole::Key).await;
        assert_eq!(refused.err().map(|error| error.code), Some(ErrorCode::InvalidRequest));
    }
}
