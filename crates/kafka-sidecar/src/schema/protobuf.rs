//! Protobuf schemas from the registry: `.proto` text compiled at runtime, JSON turned into the
//! Confluent protobuf body (message-index list, then the encoded message) and back.
//!
//! JSON follows the proto3 JSON mapping. Decoded JSON is shaped like Confluent REST Proxy's, whose
//! `ProtobufConverter` prints with `JsonFormat.printer().includingDefaultValueFields()`: fields
//! under their lowerCamelCase JSON names, 64-bit integers as strings, enums by name, bytes as
//! base64, and fields without presence (proto3 scalars, repeated, maps) printed even when they
//! hold their default, so a consumer sees every field; unset message and `optional` fields are
//! left out, as there. Encoding accepts both JSON names and original field names.

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FileDescriptor, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::codec::{ConversionError, Reference};

/// Confluent's own imports, which its serializers treat as built in rather than as registered
/// references; schemas written by Kafka Connect or Confluent tooling import them.
const CONFLUENT_BUILTINS: [(&str, &str); 2] = [
    (
        "confluent/meta.proto",
        r#"syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"#,
    ),
    (
        "confluent/type/decimal.proto",
        r#"syntax = "proto3";
package confluent.type;
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"#,
    ),
];

/// Guards against a corrupt header asking for a huge index list; Confluent's clients use the same
/// bound.
const MAX_INDEX_COUNT: i32 = 100_000;

/// A compiled `.proto` schema and the message type this sidecar produces with.
#[derive(Debug, Clone)]
pub struct ProtobufCodec {
    /// The schema file itself: index paths in the wire format are relative to its messages.
    file: FileDescriptor,
    /// The message `encode_into` writes.
    message: MessageDescriptor,
    /// The message-index list of `message`, already in wire form.
    index_prefix: Vec<u8>,
}

impl ProtobufCodec {
    /// Compiles `schema` (proto2 or proto3 text) with the files it imports: `references` by import
    /// path, then Confluent's and Google's well-known files. The message written is the first one
    /// of the file, as with Confluent's serializers, unless `message` names another by full name
    /// (or by name within the file's package).
    pub fn parse(schema: &str, references: &[Reference], message: Option<&str>) -> Result<Self, String> {
        let main_name = main_file_name(references);
        let mut files: Vec<(String, String)> = references.iter().map(|r| (r.name.clone(), r.schema.clone())).collect();
        files.push((main_name.clone(), schema.to_owned()));
        for (name, text) in CONFLUENT_BUILTINS {
            if !files.iter().any(|(known, _)| known == name) {
                files.push((name.to_owned(), text.to_owned()));
            }
        }

        let mut resolver = ChainFileResolver::new();
        // Google's files first: prost-reflect special-cases the well-known types by full name and
        // relies on their standard shape, so a registry copy must not shadow them.
        resolver.add(GoogleFileResolver::new());
        resolver.add(InMemoryFiles(files));
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.open_file(&main_name).map_err(|e| match e.file() {
            // Name the reference when that is where the mistake is.
            Some(file) if file != main_name => format!("invalid protobuf schema: {file}: {e}"),
            _ => format!("invalid protobuf schema: {e}"),
        })?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(&main_name)
            .ok_or_else(|| "invalid protobuf schema: the compiled file is missing".to_owned())?;

        let message = match message {
            None => file.messages().next().ok_or_else(|| "the protobuf schema defines no message".to_owned())?,
            Some(name) => find_message(&pool, &file, name)?,
        };
        let indexes = message_indexes(&file, &message)?;
        let mut index_prefix = Vec::new();
        write_indexes(&indexes, &mut index_prefix);
        Ok(Self { file, message, index_prefix })
    }

    /// Appends the message-index list, then `value` encoded as the chosen message by the proto3
    /// JSON mapping. Unknown fields and unknown enum names are errors rather than dropped, so a
    /// typo does not silently lose data.
    pub fn encode_into(&self, value: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), ConversionError> {
        let mut track = serde_path_to_error::Track::new();
        let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
        let message =
            DynamicMessage::deserialize_with_options(self.message.clone(), deserializer, &DeserializeOptions::new())
                .map_err(|error| json_error(&track.path(), &error.to_string()))?;
        out.extend_from_slice(&self.index_prefix);
        message.encode(out).map_err(|e| ConversionError::new("", format!("cannot encode protobuf: {e}")))
    }

    /// Reads the message-index list (the single-byte `0` shortcut or an explicit list), decodes the
    /// message type it names and returns it as proto3 JSON.
    pub fn decode(&self, body: &[u8]) -> Result<serde_json::Value, ConversionError> {
        let mut rest = body;
        let indexes = read_indexes(&mut rest)?;
        let descriptor = message_at(&self.file, &indexes)?;
        let message = DynamicMessage::decode(descriptor, rest)
            .map_err(|e| ConversionError::new("", format!("invalid protobuf message: {e}")))?;
        // Every field without presence is printed so consumers see the whole shape, like REST Proxy.
        let options = SerializeOptions::new().skip_default_fields(false);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| ConversionError::new("", format!("cannot convert protobuf to JSON: {e}")))
    }
}

/// Serves the schema and its references from memory: the registry, not the file system, is the
/// source of every import.
struct InMemoryFiles(Vec<(String, String)>);

impl FileResolver for InMemoryFiles {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.iter().find(|(known, _)| known == name) {
            Some((_, text)) => File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// A name for the schema itself that no reference uses, so it cannot shadow an import.
fn main_file_name(references: &[Reference]) -> String {
    let mut name = "schema.proto".to_owned();
    while references.iter().any(|r| r.name == name) {
        name.insert(0, '_');
    }
    name
}

/// The message `name` names, which must be defined in the schema file: the index list can only
/// point into that file.
fn find_message(pool: &DescriptorPool, file: &FileDescriptor, name: &str) -> Result<MessageDescriptor, String> {
    let name = name.trim_start_matches('.');
    let qualified = format!("{}.{name}", file.package_name());
    let found = pool
        .get_message_by_name(name)
        .or_else(|| (!file.package_name().is_empty()).then(|| pool.get_message_by_name(&qualified)).flatten());
    match found {
        Some(message) if message.parent_file() == *file => Ok(message),
        Some(message) => Err(format!("message {} is not defined in the schema itself", message.full_name())),
        None => Err(format!("the protobuf schema defines no message {name}")),
    }
}

/// Where `message` sits: its index among the file's top-level messages, then among each enclosing
/// message's nested types.
fn message_indexes(file: &FileDescriptor, message: &MessageDescriptor) -> Result<Vec<i32>, String> {
    let mut indexes = Vec::new();
    let mut current = message.clone();
    while let Some(parent) = current.parent_message() {
        indexes.push(position(nested_messages(&parent), &current)?);
        current = parent;
    }
    indexes.push(position(file.messages(), &current)?);
    indexes.reverse();
    Ok(indexes)
}

/// The messages declared inside `message`, as Confluent's Java `ProtobufSchema.toMessageIndexes`
/// counts them over the schema text: the entry types protoc synthesizes for `map<>` fields are
/// not declarations there, so they take no index. (Clients that count descriptor nested types
/// instead, such as the Python one, differ only for a message nested after a map field.)
fn nested_messages(message: &MessageDescriptor) -> impl Iterator<Item = MessageDescriptor> + '_ {
    message.child_messages().filter(|child| !child.is_map_entry())
}

fn position(mut siblings: impl Iterator<Item = MessageDescriptor>, wanted: &MessageDescriptor) -> Result<i32, String> {
    siblings
        .position(|m| m == *wanted)
        .and_then(|index| i32::try_from(index).ok())
        .ok_or_else(|| format!("message {} not found in its parent", wanted.full_name()))
}

/// The message an index list names in `file`.
fn message_at(file: &FileDescriptor, indexes: &[i32]) -> Result<MessageDescriptor, ConversionError> {
    let not_found = || ConversionError::new("", format!("the schema has no message at index path {indexes:?}"));
    let mut steps = indexes.iter().map(|&index| usize::try_from(index).map_err(|_| not_found()));
    let first = steps.next().ok_or_else(not_found)??;
    let mut message = file.messages().nth(first).ok_or_else(not_found)?;
    for index in steps {
        let child = nested_messages(&message).nth(index?);
        message = child.ok_or_else(not_found)?;
    }
    Ok(message)
}

/// Writes an index list as Confluent does: `[0]` as the single byte 0, anything else as a zigzag
/// varint count followed by zigzag varint indexes.
fn write_indexes(indexes: &[i32], out: &mut Vec<u8>) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.len() as i32, out);
    for &index in indexes {
        write_zigzag(index, out);
    }
}

/// Reads an index list, consuming it from the front of `body`; a count of 0 means `[0]`.
fn read_indexes(body: &mut &[u8]) -> Result<Vec<i32>, ConversionError> {
    let count = read_zigzag(body)?;
    if count == 0 {
        return Ok(vec![0]);
    }
    // Each index takes at least a byte, so a count beyond what is left is corrupt too.
    if !(1..=MAX_INDEX_COUNT).contains(&count) || count as usize > body.len() {
        return Err(ConversionError::new("", format!("invalid message-index count {count}")));
    }
    (0..count).map(|_| read_zigzag(body)).collect()
}

fn write_zigzag(value: i32, out: &mut Vec<u8>) {
    let mut bits = ((value << 1) ^ (value >> 31)) as u32;
    while bits >= 0x80 {
        out.push((bits as u8 & 0x7f) | 0x80);
        bits >>= 7;
    }
    out.push(bits as u8);
}

/// A zigzag varint of at most five bytes, as Kafka's `ByteUtils.readVarint` reads it.
fn read_zigzag(body: &mut &[u8]) -> Result<i32, ConversionError> {
    let mut bits: u32 = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, rest) =
            body.split_first().ok_or_else(|| ConversionError::new("", "truncated protobuf message-index list"))?;
        *body = rest;
        bits |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((bits >> 1) as i32 ^ -((bits & 1) as i32));
        }
    }
    Err(ConversionError::new("", "invalid varint in protobuf message-index list"))
}

/// Turns a deserializer error into one naming the field: an unknown field is reported at its own
/// path (prost-reflect raises it at the enclosing message), other errors where they happened.
fn json_error(path: &serde_path_to_error::Path, message: &str) -> ConversionError {
    use serde_path_to_error::Segment;
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => text.push_str(&format!(".{key}")),
            Segment::Unknown => text.push_str(".?"),
        }
    }
    if let Some(field) = message.strip_prefix("unrecognized field name '").and_then(|m| m.strip_suffix('\'')) {
        return ConversionError::new(format!("{text}.{field}"), "unknown field");
    }
    if let Some(name) = message.strip_prefix("unrecognized enum value '").and_then(|m| m.strip_suffix('\'')) {
        return ConversionError::new(text, format!("unknown enum value \"{name}\""));
    }
    // prost-reflect passes integer parse failures through bare, which do not say what was expected.
    const INTEGER_ERRORS: [&str; 5] = [
        "invalid digit found in string",
        "cannot parse integer from empty string",
        "number too large to fit in target type",
        "number too small to fit in target type",
        "out of range integral type conversion attempted",
    ];
    if INTEGER_ERRORS.contains(&message) {
        return ConversionError::new(text, format!("not a valid integer for this field ({message})"));
    }
    ConversionError::new(text, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "common/address.proto";
        import "google/protobuf/timestamp.proto";

        message Order {
          int64 id = 1;
          string customer_name = 2;
          common.Address address = 3;
          repeated Line lines = 4;
          map<string, int32> counts = 5;
          bytes payload = 6;
          google.protobuf.Timestamp placed_at = 7;
          Status status = 8;
          message Line { string sku = 1; uint32 quantity = 2; }
        }
        enum Status { UNKNOWN = 0; PAID = 1; }
        message Refund { string reason = 1; }
    "#;

    const ADDRESS: &str = r#"
        syntax = "proto3";
        package common;
        message Address { string street = 1; string zip = 2; }
    "#;

    fn order_codec(message: Option<&str>) -> ProtobufCodec {
        let references = [Reference { name: "common/address.proto".into(), schema: ADDRESS.into() }];
        ProtobufCodec::parse(ORDER, &references, message).expect("schema compiles")
    }

    fn encode(codec: &ProtobufCodec, value: &serde_json::Value) -> Result<Vec<u8>, ConversionError> {
        let mut out = Vec::new();
        codec.encode_into(value, &mut out).map(|()| out)
    }

    #[test]
    fn round_trips_nested_repeated_map_int64_bytes_reference_and_timestamp() {
        let codec = order_codec(None);
        let value = json!({
            "id": "9007199254740993",
            "customer_name": "Ada",
            "address": {"street": "Main St", "zip": "12345"},
            "lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B-2"}],
            "counts": {"a": 1},
            "payload": "AQID",
            "placedAt": "2024-05-01T12:00:00Z",
            "status": "PAID"
        });
        let body = encode(&codec, &value).expect("encodes");
        assert_eq!(body[0], 0, "first message of the file uses the one-byte index list");

        let decoded = codec.decode(&body).expect("decodes");
        assert_eq!(
            decoded,
            json!({
                "id": "9007199254740993",
                "customerName": "Ada",
                "address": {"street": "Main St", "zip": "12345"},
                "lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B-2", "quantity": 0}],
                "counts": {"a": 1},
                "payload": "AQID",
                "placedAt": "2024-05-01T12:00:00Z",
                "status": "PAID"
            })
        );
    }

    #[test]
    fn decode_prints_default_fields_but_not_unset_messages() {
        let codec = order_codec(None);
        let decoded = codec.decode(&[0]).expect("empty message decodes");
        assert_eq!(
            decoded,
            json!({"id": "0", "customerName": "", "lines": [], "counts": {}, "payload": "", "status": "UNKNOWN"})
        );
    }

    #[test]
    fn tiny_message_body_is_byte_exact() {
        let codec = ProtobufCodec::parse("syntax = \"proto3\"; message M { int32 a = 1; }", &[], None)
            .expect("schema compiles");
        assert_eq!(encode(&codec, &json!({"a": 1})).expect("encodes"), [0x00, 0x08, 0x01]);
    }

    #[test]
    fn non_first_and_nested_messages_use_explicit_index_lists() {
        let refund = order_codec(Some("shop.Refund"));
        let body = encode(&refund, &json!({"reason": "late"})).expect("encodes");
        // count 1, index 1, both zigzag: 0x02 0x02; then field 1 "late".
        assert_eq!(body[..2], [0x02, 0x02]);
        assert_eq!(order_codec(None).decode(&body).expect("decodes"), json!({"reason": "late"}));

        let line = order_codec(Some("Order.Line"));
        let body = encode(&line, &json!({"sku": "X"})).expect("encodes");
        assert_eq!(body[..3], [0x04, 0x00, 0x00], "Order is message 0, Line its nested type 0");
        assert_eq!(order_codec(None).decode(&body).expect("decodes"), json!({"sku": "X", "quantity": 0}));
    }

    #[test]
    fn decode_accepts_explicit_list_for_the_first_message() {
        let codec = ProtobufCodec::parse("syntax = \"proto3\"; message M { int32 a = 1; }", &[], None)
            .expect("schema compiles");
        assert_eq!(codec.decode(&[0x02, 0x00, 0x08, 0x05]).expect("decodes"), json!({"a": 5}));
    }

    #[test]
    fn decode_rejects_unknown_index_and_truncated_header() {
        let codec = order_codec(None);
        assert!(codec.decode(&[0x02, 0x0a]).expect_err("no message 5").message.contains("index path [5]"));
        assert!(codec.decode(&[]).expect_err("empty").message.contains("truncated"));
        assert!(codec.decode(&[0x01]).expect_err("negative count").message.contains("count -1"));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let error = encode(&order_codec(None), &json!({"lines": [{"sku": 5}]})).expect_err("wrong type");
        assert_eq!(error.path, ".lines[0].sku");
        assert!(error.message.contains("invalid type"), "{}", error.message);

        let error = encode(&order_codec(None), &json!({"id": "12x"})).expect_err("not an integer");
        assert_eq!(error.path, ".id");
        assert!(error.message.starts_with("not a valid integer"), "{}", error.message);
    }

    #[test]
    fn unknown_field_names_the_field() {
        let error = encode(&order_codec(None), &json!({"address": {"zip_code": "1"}})).expect_err("unknown field");
        assert_eq!(error, ConversionError::new(".address.zip_code", "unknown field"));
    }

    #[test]
    fn unknown_enum_value_names_the_field() {
        let error = encode(&order_codec(None), &json!({"status": "LOST"})).expect_err("unknown enum");
        assert_eq!(error, ConversionError::new(".status", "unknown enum value \"LOST\""));
    }

    #[test]
    fn parse_errors_are_reported() {
        assert!(ProtobufCodec::parse("message {", &[], None).is_err());
        let missing = ProtobufCodec::parse("syntax = \"proto3\"; import \"x.proto\"; message M {}", &[], None);
        assert!(missing.expect_err("missing import").contains("x.proto"));
        assert!(ProtobufCodec::parse("syntax = \"proto3\";", &[], None).is_err());
        let foreign = ProtobufCodec::parse(
            ORDER,
            &[Reference { name: "common/address.proto".into(), schema: ADDRESS.into() }],
            Some("common.Address"),
        );
        assert!(foreign.is_err(), "the index list cannot point into a reference");
    }

    #[test]
    fn confluent_builtin_imports_resolve() {
        let schema = r#"
            syntax = "proto3";
            import "confluent/meta.proto";
            import "confluent/type/decimal.proto";
            message Price { confluent.type.Decimal amount = 1 [(confluent.field_meta).doc = "money"]; }
        "#;
        let codec = ProtobufCodec::parse(schema, &[], None).expect("schema compiles");
        let value = json!({"amount": {"value": "AQ==", "precision": 4, "scale": 2}});
        let body = encode(&codec, &value).expect("encodes");
        assert_eq!(codec.decode(&body).expect("decodes"), value);
    }
}
