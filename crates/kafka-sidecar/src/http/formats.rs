//! Key and value formats of the HTTP API (seed 002's `EmbeddedFormat`), by name or integer, and
//! how each turns a JSON value into Kafka bytes. Schema formats are the seam for the registry.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::EmbeddedFormatName;
use crate::error::{ErrorCode, SidecarError};

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
                return Err(SidecarError::new(
                    ErrorCode::UnsupportedFormat,
                    format!("{field}: the {:?} format needs the schema registry, which is not configured", self.0),
                ));
            }
        };
        Ok(Some(bytes))
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

    #[test]
    fn schema_formats_are_not_yet_supported() {
        let avro = EmbeddedFormat(EmbeddedFormatName::Avro);
        assert_eq!(avro.encode("value", &json!({})).expect_err("avro").code, ErrorCode::UnsupportedFormat);
    }
}
