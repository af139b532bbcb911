//! Tests of the Avro codec.

use serde_json::json;

use super::*;

fn codec(schema: &str) -> AvroCodec {
    AvroCodec::parse(schema, &[]).expect("schema parses")
}

fn encode(codec: &AvroCodec, value: &Json) -> Result<Vec<u8>, ConversionError> {
    let mut out = Vec::new();
    codec.encode_into(value, &mut out).map(|()| out)
}

/// Encodes, decodes and returns what came back.
fn round_trip(codec: &AvroCodec, value: &Json) -> Json {
    let bytes = encode(codec, value).expect("encodes");
    codec.decode(&bytes).expect("decodes")
}

fn assert_error(codec: &AvroCodec, value: &Json, path: &str, message_part: &str) {
    let error = encode(codec, value).expect_err("should not encode");
    assert_eq!(error.path, path, "{error}");
    assert!(error.message.contains(message_part), "{error}");
}

const USER: &str = r#"{"type": "record", "name": "User", "namespace": "com.example", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "zip", "type": "string"}]}},
    {"name": "items", "type": {"type": "array", "items": "int"}},
    {"name": "tags", "type": {"type": "map", "values": "string"}},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "score", "type": "int", "default": 7}
]}"#;

fn user() -> Json {
    json!({"id": 1, "name": "a", "address": {"zip": "12345"}, "items": [1, 2, 3],
           "tags": {"k": "v"}, "color": "GREEN", "note": {"string": "hi"}, "score": 3})
}

#[test]
fn encodes_bytes_as_hand_computed() {
    let codec = codec(
        r#"{"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}"#,
    );
    assert_eq!(encode(&codec, &json!({"id": 1, "name": "a"})).expect("encodes"), [0x02, 0x02, 0x61]);
    let union = AvroCodec::parse(r#"["null", "int"]"#, &[]).expect("parses");
    assert_eq!(encode(&union, &json!({"int": -2})).expect("encodes"), [0x02, 0x03]);
}

#[test]
fn writes_what_the_crate_writes() {
    use apache_avro::types::Value as Avro;
    use apache_avro::writer::datum::GenericDatumWriter;

    let codec = codec(USER);
    let string = |text: &str| Avro::String(text.to_owned());
    let expected = Avro::Record(vec![
        ("id".to_owned(), Avro::Long(-300)),
        ("name".to_owned(), string("a")),
        ("address".to_owned(), Avro::Record(vec![("zip".to_owned(), string("12345"))])),
        ("items".to_owned(), Avro::Array((0..200).map(Avro::Int).collect())),
        ("tags".to_owned(), Avro::Map([("k".to_owned(), string("v"))].into())),
        ("color".to_owned(), Avro::Enum(1, "GREEN".to_owned())),
        ("note".to_owned(), Avro::Union(1, Box::new(string("hi")))),
        ("score".to_owned(), Avro::Int(i32::MIN)),
    ]);
    let crate_bytes = GenericDatumWriter::builder(&codec.root)
        .build()
        .and_then(|writer| writer.write_value_to_vec(expected))
        .expect("the crate writes it");
    let value = json!({"id": -300, "name": "a", "address": {"zip": "12345"}, "items": (0..200).collect::<Vec<_>>(),
        "tags": {"k": "v"}, "color": "GREEN", "note": {"string": "hi"}, "score": i32::MIN});
    assert_eq!(encode(&codec, &value).expect("encodes"), crate_bytes);
}

#[test]
fn encode_appends_after_what_is_there() {
    let codec = codec(r#""string""#);
    let mut out = vec![0, 0, 0, 0, 1];
    codec.encode_into(&json!("a"), &mut out).expect("encodes");
    assert_eq!(out, [0, 0, 0, 0, 1, 0x02, 0x61]);
    codec.encode_into(&json!(5), &mut out).expect_err("not a string");
    assert_eq!(out.len(), 7);
}

#[test]
fn primitives_round_trip() {
    let cases = [
        (r#""null""#, json!(null)),
        (r#""boolean""#, json!(true)),
        (r#""int""#, json!(-2147483648)),
        (r#""long""#, json!(9007199254740993_i64)),
        (r#""float""#, json!(0.1)),
        (r#""double""#, json!(-1.25e300)),
        (r#""string""#, json!("héllo ✓")),
        (r#""bytes""#, json!("\u{0}\u{ff}ab")),
        (r#""double""#, json!("NaN")),
        (r#""float""#, json!("-Infinity")),
    ];
    for (schema, value) in cases {
        assert_eq!(round_trip(&codec(schema), &value), value, "{schema}");
    }
}

#[test]
fn records_arrays_maps_enums_round_trip() {
    let codec = codec(USER);
    assert_eq!(round_trip(&codec, &user()), user());
}

#[test]
fn missing_fields_take_their_defaults() {
    let codec = codec(USER);
    let mut value = user();
    let object = value.as_object_mut().expect("object");
    object.remove("note");
    object.remove("score");
    let decoded = round_trip(&codec, &value);
    assert_eq!(decoded["note"], json!(null));
    assert_eq!(decoded["score"], json!(7));
}

#[test]
fn fixed_round_trips_and_checks_its_size() {
    let codec = codec(r#"{"type": "fixed", "name": "Two", "size": 2}"#);
    assert_eq!(round_trip(&codec, &json!("\u{1}\u{fe}")), json!("\u{1}\u{fe}"));
    assert_error(&codec, &json!("abc"), "", "expected 2 bytes");
    assert_error(&codec, &json!("a\u{100}"), "", "U+0000..U+00FF");
}

#[test]
fn unions_use_the_wrapped_form() {
    let codec = codec(
        r#"{"type": "record", "name": "R", "namespace": "com.example", "fields": [
        {"name": "u", "type": ["null", "string", "int",
            {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "int"}]},
            {"type": "array", "items": "string"}]}]}"#,
    );
    for value in [json!(null), json!({"string": "x"}), json!({"int": 3}), json!({"com.example.Point": {"x": 1}})] {
        let record = json!({ "u": value });
        assert_eq!(round_trip(&codec, &record), record);
    }
    // Bare values that only one branch can take are accepted; decoding wraps them.
    assert_eq!(round_trip(&codec, &json!({"u": ["a"]})), json!({"u": {"array": ["a"]}}));
    assert_eq!(round_trip(&codec, &json!({"u": {"x": 2}})), json!({"u": {"com.example.Point": {"x": 2}}}));
    assert_eq!(round_trip(&codec, &json!({"u": "s"})), json!({"u": {"string": "s"}}));
    assert_error(&codec, &json!({"u": 1.5}), ".u", "with a branch of [\"null\", \"string\", \"int\"");
    assert_error(&codec, &json!({"u": {"int": "x"}}), ".u", "expected int, found string \"x\"");
}

#[test]
fn ambiguous_bare_union_values_are_refused() {
    let codec = codec(r#"["null", "string", "bytes"]"#);
    assert_eq!(round_trip(&codec, &json!({"bytes": "\u{ff}"})), json!({"bytes": "\u{ff}"}));
    assert_error(&codec, &json!("x"), "", "found string \"x\"");
}

#[test]
fn logical_types_are_their_underlying_types() {
    let codec = codec(
        r#"{"type": "record", "name": "R", "fields": [
        {"name": "date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "time_ms", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "time_us", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "local_us", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
        {"name": "maybe", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]}
    ]}"#,
    );
    let value = json!({"date": 19000, "time_ms": 1000, "time_us": 1_000_000, "ts_ms": 1_700_000_000_000_i64,
        "ts_us": 1_700_000_000_000_000_i64, "local_ms": 5, "local_us": 6,
        "id": "123e4567-e89b-12d3-a456-426614174000", "price": "\u{4}\u{e2}", "maybe": {"long": 9}});
    assert_eq!(round_trip(&codec, &value), value);
    let mut bad = value.clone();
    bad["id"] = json!("not-a-uuid");
    assert_error(&codec, &bad, ".id", "not a UUID");
}

#[test]
fn decimals_take_numbers_scaled() {
    let bytes = codec(r#"{"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}"#);
    // 12.5 at scale 2 is 1250 = 0x04E2; -1 is -100, one byte 0x9C; -1.28 is -128, still one.
    assert_eq!(encode(&bytes, &json!(12.5)).expect("encodes"), [0x04, 0x04, 0xE2]);
    assert_eq!(round_trip(&bytes, &json!(-1)), json!("\u{9c}"));
    assert_eq!(round_trip(&bytes, &json!(-1.28)), json!("\u{80}"));
    assert_eq!(round_trip(&bytes, &json!(-1.29)), json!("\u{ff}\u{7f}"));
    assert_eq!(round_trip(&bytes, &json!(1.28)), json!("\u{0}\u{80}"));
    assert_eq!(round_trip(&bytes, &json!(0)), json!("\u{0}"));
    assert_error(&bytes, &json!(0.125), "", "more decimal places than the scale 2");
    assert_error(&bytes, &json!(1000), "", "more digits than the precision 5");
    let fixed = codec(
        r#"{"type": "fixed", "name": "Money", "size": 4, "logicalType": "decimal",
        "precision": 9, "scale": 2}"#,
    );
    assert_eq!(round_trip(&fixed, &json!(-1)), json!("\u{ff}\u{ff}\u{ff}\u{9c}"));
    assert_eq!(round_trip(&fixed, &json!(1.28)), json!("\u{0}\u{0}\u{0}\u{80}"));
}

#[test]
fn named_types_come_from_references() {
    // Country is defined in its own subject; Address defines Kind inside itself.
    let country = Reference {
        name: "com.example.Country".to_owned(),
        schema: r#"{"type": "enum", "name": "Country", "namespace": "com.example", "symbols": ["DE", "FR"]}"#
            .to_owned(),
    };
    let address = Reference {
        name: "com.example.Address".to_owned(),
        schema: r#"{"type": "record", "name": "Address", "namespace": "com.example", "fields": [
            {"name": "zip", "type": "string"}, {"name": "country", "type": "Country"},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["HOME", "WORK"]}}]}"#
            .to_owned(),
    };
    let codec = AvroCodec::parse(
        r#"{"type": "record", "name": "Order", "namespace": "com.example", "fields": [
            {"name": "kind", "type": "com.example.Kind"},
            {"name": "ship_to", "type": "com.example.Address"},
            {"name": "bill_to", "type": ["null", "Address"], "default": null}]}"#,
        &[country, address],
    )
    .expect("parses with its references");
    let value = json!({"kind": "WORK", "ship_to": {"zip": "1", "country": "DE", "kind": "HOME"},
        "bill_to": {"com.example.Address": {"zip": "2", "country": "FR", "kind": "WORK"}}});
    assert_eq!(round_trip(&codec, &value), value);
    let mut bad = value.clone();
    bad["ship_to"]["zip"] = json!(5);
    assert_error(&codec, &bad, ".ship_to.zip", "expected string, found number 5");
    assert!(
        AvroCodec::parse(
            r#"{"type": "record", "name": "O", "fields": [
        {"name": "a", "type": "com.example.Missing"}]}"#,
            &[]
        )
        .is_err()
    );
}

#[test]
fn recursive_types_round_trip() {
    let codec = codec(
        r#"{"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}"#,
    );
    let value = json!({"value": 1, "next": {"Node": {"value": 2, "next": null}}});
    assert_eq!(round_trip(&codec, &value), value);
}

#[test]
fn recursive_types_resolve_in_their_namespace() {
    let codec = codec(
        r#"{"type": "record", "name": "Node", "namespace": "com.example", "fields": [
        {"name": "next", "type": ["null", "Node"]}]}"#,
    );
    let value = json!({"next": {"com.example.Node": {"next": {"com.example.Node": {"next": null}}}}});
    assert_eq!(codec.decode(&[0x02, 0x02, 0x00]).expect("decodes"), value);
    assert_eq!(round_trip(&codec, &value), value);
}

#[test]
fn uuids_and_durations_in_bytes_round_trip() {
    let duration = "\u{1}\u{0}\u{0}\u{0}\u{2}\u{0}\u{0}\u{0}\u{3}\u{0}\u{0}\u{ff}";
    let cases = [
        (r#"{"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}"#, "0123456789abcdef"),
        (r#"{"type": "fixed", "name": "D", "size": 12, "logicalType": "duration"}"#, duration),
    ];
    for (schema, text) in cases {
        assert_eq!(round_trip(&codec(schema), &json!(text)), json!(text), "{schema}");
    }
}

#[test]
fn errors_name_the_path_and_what_was_found() {
    let codec = codec(USER);
    let with = |pointer: &str, replacement: Json| {
        let mut value = user();
        *value.pointer_mut(pointer).expect("pointer exists") = replacement;
        value
    };
    assert_error(&codec, &with("/address/zip", json!(123)), ".address.zip", "expected string, found number 123");
    assert_error(&codec, &with("/items/2", json!("x")), ".items[2]", "expected int, found string \"x\"");
    assert_error(&codec, &with("/tags/k", json!(true)), ".tags[\"k\"]", "expected string, found boolean true");
    assert_error(&codec, &with("/color", json!("BLUE")), ".color", r#"expected one of ["RED", "GREEN"]"#);
    assert_error(&codec, &with("/id", json!(1.5)), ".id", "expected long, found number 1.5 (not an integer)");
    assert_error(&codec, &with("/score", json!(3_000_000_000_u64)), ".score", "(out of range)");
    let mut missing = user();
    missing.as_object_mut().expect("object").remove("name");
    assert_error(&codec, &missing, ".name", "missing required field");
    let mut extra = user();
    extra.as_object_mut().expect("object").insert("nickname".to_owned(), json!("b"));
    assert_error(&codec, &extra, ".nickname", "unknown field");
}

#[test]
fn decode_refuses_truncated_and_trailing_bytes() {
    let codec = codec(
        r#"{"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}"#,
    );
    assert!(codec.decode(&[0x02, 0x02]).is_err());
    assert!(codec.decode(&[0x02, 0x02, 0x61, 0x00]).is_err());
    assert_eq!(codec.decode(&[0x02, 0x02, 0x61]).expect("decodes"), json!({"id": 1, "name": "a"}));
}

#[test]
fn decode_says_what_is_wrong_with_the_bytes() {
    let cases: [(&str, &[u8], &str); 14] = [
        (r#""boolean""#, &[0x02], "boolean byte [2] is not 0 or 1"),
        (r#"["null", "int"]"#, &[0x04], "union branch index 2 is not in 0..2"),
        (r#"["null", "int"]"#, &[0x01], "union branch index -1 is not in 0..2"),
        (r#"{"type": "enum", "name": "E", "symbols": ["A"]}"#, &[0x02], "enum E symbol index 1 is not in 0..1"),
        (r#""string""#, &[0x02, 0xFF], "a string is not UTF-8"),
        (r#""int""#, &[0x80, 0x80, 0x80, 0x80, 0x10], "int 2147483648 is out of range"),
        (r#""long""#, &[0xFF; 11], "an integer longer than ten bytes"),
        (r#""long""#, &[0xFF; 3], "the data ends early"),
        (r#""double""#, &[0; 7], "the data ends early: 8 more bytes needed, 7 left"),
        (r#"{"type": "fixed", "name": "F", "size": 4}"#, &[0; 3], "4 more bytes needed, 3 left"),
        (r#"{"type": "string", "logicalType": "uuid"}"#, &[0x02, b'x'], "not a UUID"),
        (r#"{"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}"#, &[0x00], "no bytes"),
        (r#""null""#, &[0x00], "1 bytes left after the Avro value"),
        (r#"["null", "int"]"#, &[], "the data ends early"),
    ];
    for (schema, body, message) in cases {
        let error = codec(schema).decode(body).expect_err("should not decode");
        assert!(error.message.contains(message), "{schema}: {error}");
    }
}

#[test]
fn codec_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<AvroCodec>();
}

/// A rough decode timing, the consumer's hot path:
/// `cargo test --release -p kafka-sidecar --lib decode_speed -- --ignored --nocapture`.
#[test]
#[ignore = "a timing, not a check"]
fn decode_speed() {
    let node = r#"{"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}"#;
    let chain = (0..20).fold(json!(null), |next, value| json!({"value": value, "next": next}));
    for (label, codec, value) in [("user record", codec(USER), user()), ("20-node chain", codec(node), chain)] {
        let (body, rounds, start) = (encode(&codec, &value).expect("encodes"), 200_000, std::time::Instant::now());
        for _ in 0..rounds {
            std::hint::black_box(codec.decode(std::hint::black_box(&body)).expect("decodes"));
        }
        println!("{label}: {} ns per decode", start.elapsed().as_nanos() / rounds);
    }
}
