//! JSON Schema schemas from the registry: values are validated on the way to Kafka and written as
//! JSON text after the Confluent header; consumed values are parsed back without validation.
//!
//! The draft is the one `$schema` names, or draft 7 when it names none, as with Confluent's
//! serializers. References are registered under the name the registry gives them (the `$ref` URL
//! they are referred to by); nothing is ever fetched over the network.

use jsonschema::{Draft, Registry, Resource, Validator};
use serde_json::Value;

use super::codec::{ConversionError, Reference};

/// Confluent's default when a schema does not say which draft it is.
const DEFAULT_DRAFT: Draft = Draft::Draft7;

/// A compiled JSON Schema.
#[derive(Debug)]
pub struct JsonSchemaCodec {
    validator: Validator,
}

impl JsonSchemaCodec {
    /// Compiles `schema`, resolving `$ref`s to `references` by their names. Relative names resolve
    /// against the schema's `$id` as well, since a `$ref` inside it is relative to that.
    pub fn parse(schema: &str, references: &[Reference]) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(schema).map_err(|e| format!("the JSON schema is not JSON: {e}"))?;
        let base = schema.get("$id").and_then(Value::as_str);

        let mut resources = Vec::new();
        for reference in references {
            let contents: Value = serde_json::from_str(&reference.schema)
                .map_err(|e| format!("referenced schema {:?} is not JSON: {e}", reference.name))?;
            for uri in reference_uris(&reference.name, base) {
                resources.push((uri, resource(contents.clone())));
            }
        }
        let registry = if resources.is_empty() {
            None
        } else {
            let prepared = Registry::new().extend(resources).and_then(|builder| builder.prepare());
            Some(prepared.map_err(|e| format!("invalid schema reference: {e}"))?)
        };

        let mut options = jsonschema::options().offline();
        if let Some(registry) = &registry {
            options = options.with_registry(registry);
        }
        // An unrecognized `$schema` (a custom meta-schema) is left for jsonschema to resolve.
        let draft = DEFAULT_DRAFT.detect(&schema);
        if draft != Draft::Unknown {
            options = options.with_draft(draft);
        }
        let validator = options.build(&schema).map_err(|e| format!("invalid JSON schema: {e}"))?;
        Ok(Self { validator })
    }

    /// Validates `value` and appends its compact JSON text. The error is the first violation,
    /// at the place in `value` that violates it.
    pub fn encode_into(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), ConversionError> {
        if let Err(error) = self.validator.validate(value) {
            return Err(ConversionError::new(instance_path(error.instance_path().as_str(), value), error.to_string()));
        }
        serde_json::to_writer(out, value).map_err(|e| ConversionError::new("", format!("cannot write JSON: {e}")))
    }

    /// Parses the JSON after the header as it is: a consumer must see what was written, even if it
    /// no longer fits the schema.
    pub fn decode(&self, body: &[u8]) -> Result<Value, ConversionError> {
        serde_json::from_slice(body).map_err(|e| ConversionError::new("", format!("invalid JSON: {e}")))
    }
}

/// A referenced schema as a resource of its own draft: each document may declare a different one.
fn resource(contents: Value) -> Resource {
    match DEFAULT_DRAFT.detect(&contents) {
        Draft::Unknown => Resource::from_contents(contents),
        draft => draft.create_resource(contents),
    }
}

/// The URIs a reference can be reached by: its name as given (a relative one is taken against
/// jsonschema's default base, which a schema without `$id` also has) and, for a relative name, that
/// name against the referring schema's `$id`.
fn reference_uris(name: &str, base: Option<&str>) -> Vec<String> {
    let mut uris = vec![name.to_owned()];
    let is_relative = jsonschema::uri::from_str(name).is_ok_and(|uri| uri.as_str() != name);
    if let Some(base) = base.filter(|_| is_relative) {
        let resolved = jsonschema::uri::from_str(base)
            .and_then(|base| jsonschema::uri::resolve_against(&base.borrow(), name))
            .map(|uri| uri.as_str().to_owned());
        if let Ok(resolved) = resolved {
            uris.push(resolved);
        }
    }
    uris
}

/// Turns a JSON pointer into `instance` (`/a/0/b`) into our path form (`.a[0].b`). Whether a
/// segment is an array index or an object key (which may be all digits) is read off the value.
fn instance_path(pointer: &str, instance: &Value) -> String {
    let mut path = String::new();
    let mut current = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match (current, segment.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(index)) => {
                path.push_str(&format!("[{index}]"));
                current = items.get(index);
            }
            (Some(Value::Object(fields)), _) => {
                path.push('.');
                path.push_str(&segment);
                current = fields.get(&segment);
            }
            _ => {
                path.push('.');
                path.push_str(&segment);
                current = None;
            }
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PERSON: &str = r#"{
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["zip"]
            }
        },
        "required": ["name"]
    }"#;

    fn encode(codec: &JsonSchemaCodec, value: &Value) -> Result<Vec<u8>, ConversionError> {
        let mut out = Vec::new();
        codec.encode_into(value, &mut out).map(|()| out)
    }

    #[test]
    fn valid_value_round_trips() {
        let codec = JsonSchemaCodec::parse(PERSON, &[]).expect("schema compiles");
        let value = json!({"name": "Ada", "tags": ["x"], "address": {"zip": "12345"}});
        let body = encode(&codec, &value).expect("valid");
        assert_eq!(body, serde_json::to_vec(&value).expect("serializes"));
        assert_eq!(codec.decode(&body).expect("decodes"), value);
    }

    #[test]
    fn nested_violation_names_its_path() {
        let codec = JsonSchemaCodec::parse(PERSON, &[]).expect("schema compiles");
        let error = encode(&codec, &json!({"name": "Ada", "address": {"zip": "12"}})).expect_err("bad zip");
        assert_eq!(error.path, ".address.zip");
        assert!(error.message.contains("does not match"), "{}", error.message);

        let error = encode(&codec, &json!({"name": "Ada", "tags": ["ok", 7]})).expect_err("bad tag");
        assert_eq!(error.path, ".tags[1]");

        let error = encode(&codec, &json!({"tags": []})).expect_err("no name");
        assert_eq!(error.path, "");
        assert!(error.message.contains("name"), "{}", error.message);
    }

    #[test]
    fn digit_keys_stay_object_keys() {
        assert_eq!(instance_path("/a/0/b~1c", &json!({"a": {"0": {"b/c": 1}}})), ".a.0.b/c");
        assert_eq!(instance_path("/a/0/b", &json!({"a": [{"b": 1}]})), ".a[0].b");
    }

    #[test]
    fn refs_resolve_to_references() {
        let address = r#"{"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"]}"#;
        let schema = r#"{"type": "object", "properties": {"address": {"$ref": "address.json"}}}"#;
        let references = [Reference { name: "address.json".into(), schema: address.into() }];
        let codec = JsonSchemaCodec::parse(schema, &references).expect("schema compiles");
        assert!(encode(&codec, &json!({"address": {"zip": "1"}})).is_ok());
        let error = encode(&codec, &json!({"address": {"zip": 1}})).expect_err("wrong type");
        assert_eq!(error.path, ".address.zip");

        // The same reference from a schema with an absolute `$id`, and by an absolute name.
        let with_id =
            r#"{"$id": "https://example.com/person.json", "properties": {"address": {"$ref": "address.json"}}}"#;
        let codec = JsonSchemaCodec::parse(with_id, &references).expect("schema with $id compiles");
        assert!(encode(&codec, &json!({"address": {}})).is_err());
        let absolute = [Reference { name: "https://example.com/address.json".into(), schema: address.into() }];
        let codec = JsonSchemaCodec::parse(with_id, &absolute).expect("absolute reference compiles");
        assert!(encode(&codec, &json!({"address": {}})).is_err());
    }

    #[test]
    fn unresolvable_ref_is_rejected_at_parse() {
        let schema = r#"{"properties": {"a": {"$ref": "https://example.com/missing.json"}}}"#;
        assert!(JsonSchemaCodec::parse(schema, &[]).is_err());
    }

    #[test]
    fn invalid_schema_is_rejected_at_parse() {
        assert!(JsonSchemaCodec::parse("{not json", &[]).expect_err("not JSON").contains("not JSON"));
        assert!(
            JsonSchemaCodec::parse(r#"{"type": 12}"#, &[]).expect_err("bad type").starts_with("invalid JSON schema")
        );
        let bad_reference = [Reference { name: "a.json".into(), schema: "[".into() }];
        assert!(JsonSchemaCodec::parse("{}", &bad_reference).expect_err("bad reference").contains("a.json"));
    }

    #[test]
    fn draft_defaults_to_7_and_follows_schema_keyword() {
        // Draft 7 asserts `format`; in 2020-12 it is only an annotation.
        let codec = JsonSchemaCodec::parse(r#"{"format": "email"}"#, &[]).expect("compiles");
        assert!(encode(&codec, &json!("not an address")).is_err());
        let schema = r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "format": "email"}"#;
        let codec = JsonSchemaCodec::parse(schema, &[]).expect("compiles");
        assert!(encode(&codec, &json!("not an address")).is_ok());
    }

    #[test]
    fn decode_does_not_validate() {
        let codec = JsonSchemaCodec::parse(PERSON, &[]).expect("schema compiles");
        assert_eq!(codec.decode(br#"{"other": true}"#).expect("decodes"), json!({"other": true}));
        assert!(codec.decode(b"{").is_err());
    }
}
