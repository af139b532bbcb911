//! Tests of the Avro binary reader.

use serde_json::json;

use super::super::json::write_long;
use super::super::{AvroCodec, MAX_DEPTH};
use super::*;

/// A linked list: each node holds only the union that says whether another follows.
const NODE: &str = r#"{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}"#;

fn codec(schema: &str) -> AvroCodec {
    AvroCodec::parse(schema, &[]).expect("schema parses")
}

/// `levels` nodes: branch 1 (zig-zag 0x02, another node) but for the last, branch 0 (null).
fn chain(levels: usize) -> Vec<u8> {
    [vec![0x02; levels - 1], vec![0x00]].concat()
}

/// Their JSON, with unions in the bare form, which takes one JSON level a node.
fn chain_json(levels: usize) -> Json {
    (1..levels).fold(json!({"next": null}), |inner, _| json!({ "next": inner }))
}

fn long(value: i64) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_long(value, &mut bytes);
    bytes
}

fn refusal(codec: &AvroCodec, body: &[u8]) -> ConversionError {
    codec.decode(body).expect_err("should not decode")
}

#[test]
fn deep_nesting_is_refused_without_deep_recursion() {
    // The crate's reader overflowed a 2 MiB stack at 350 levels; this is an eighth of that.
    let (deepest, too_deep) = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let codec = codec(NODE);
            (codec.decode(&chain(MAX_DEPTH)).is_ok(), codec.decode(&chain(10_000)))
        })
        .expect("thread starts")
        .join()
        .expect("no stack overflow");
    assert!(deepest);
    let error = too_deep.expect_err("too deep");
    assert_eq!(error.message, format!("nested deeper than {MAX_DEPTH} levels"));
    assert_eq!(error.path, ".next".repeat(MAX_DEPTH));
}

#[test]
fn the_deepest_value_renders_to_json_a_default_parser_reads() {
    // Every node is a record inside a union: two JSON levels a level, inside a response body.
    let value = codec(NODE).decode(&chain(MAX_DEPTH)).expect("decodes");
    let response = json!({"records": [{"value": value}]}).to_string();
    assert!(serde_json::from_str::<Json>(&response).is_ok(), "serde_json refuses the rendered record");
}

#[test]
fn sixty_levels_decode_and_encode() {
    let codec = codec(NODE);
    let value = codec.decode(&chain(60)).expect("decodes");
    for json in [value, chain_json(60)] {
        let mut bytes = Vec::new();
        codec.encode_into(&json, &mut bytes).expect("encodes");
        assert_eq!(bytes, chain(60));
    }
}

#[test]
fn encoding_stops_at_the_same_depth() {
    let nodes = codec(NODE);
    let mut bytes = Vec::new();
    nodes.encode_into(&chain_json(MAX_DEPTH), &mut bytes).expect("encodes");
    let error = nodes.encode_into(&chain_json(MAX_DEPTH + 1), &mut bytes).expect_err("too deep");
    assert_eq!(error.message, format!("nested deeper than {MAX_DEPTH} levels"));
    // The writer takes a union's default as its first branch; this one holds its own type
    // without end. The crate lets it through: `{}` fits the second branch.
    let endless = codec(
        r#"{"type": "record", "name": "Loop", "fields": [
        {"name": "next", "type": ["Loop", {"type": "map", "values": "int"}], "default": {}}]}"#,
    );
    let error = endless.encode_into(&json!({}), &mut bytes).expect_err("never ends");
    assert_eq!(error.message, format!("the schema's default does not fit: nested deeper than {MAX_DEPTH} levels"));
}

#[test]
fn lengths_and_counts_beyond_the_body_are_refused_before_allocating() {
    // A 512 MiB string (zig-zag 2^30) in a ten-byte body.
    let body = [long(512 * 1024 * 1024), b"abcde".to_vec()].concat();
    assert_eq!(body.len(), 10);
    assert_eq!(refusal(&codec(r#""string""#), &body).message, "length 536870912 exceeds the remaining 5 bytes");
    let record = codec(r#"{"type": "record", "name": "R", "fields": [{"name": "data", "type": "bytes"}]}"#);
    assert_eq!(refusal(&record, &body).path, ".data");
    assert_eq!(refusal(&record, &long(-1)).message, "negative length -1");
    let (array, map) = (codec(r#"{"type": "array", "items": "int"}"#), codec(r#"{"type": "map", "values": "int"}"#));
    let huge = [long(1 << 40), vec![0x02, 0x00]].concat();
    assert_eq!(refusal(&array, &huge).message, "count 1099511627776 exceeds the remaining 2 bytes");
    assert_eq!(refusal(&map, &huge).message, "count 1099511627776 exceeds the remaining 2 bytes");
    // A negative count is followed by the block's size in bytes.
    let sized = [long(-3), long(3), vec![0x02, 0x04, 0x06], long(1), vec![0x08, 0x00]].concat();
    assert_eq!(array.decode(&sized).expect("decodes"), json!([1, 2, 3, 4]));
    let huge = [long(-(1 << 40)), long(3), vec![0x02, 0x00]].concat();
    assert_eq!(refusal(&array, &huge).message, "count 1099511627776 exceeds the remaining 2 bytes");
    let sized = [long(-1), long(3), vec![0x02, b'k', 0x02, 0x00]].concat();
    assert_eq!(map.decode(&sized).expect("decodes"), json!({"k": 1}));
}

#[test]
fn values_that_take_no_bytes_are_counted() {
    let nulls = codec(r#"{"type": "array", "items": "null"}"#);
    // More items than bytes is fine while they take none.
    assert_eq!(nulls.decode(&[0x06, 0x00]).expect("decodes"), json!([null, null, null]));
    let million = [long(1_000_000), vec![0x00]].concat();
    assert_eq!(refusal(&nulls, &million).message, "count 1000000 exceeds the remaining 1 bytes");
    // Each item is a record and two nulls: three values from no bytes.
    let empty = codec(
        r#"{"type": "array", "items": {"type": "record", "name": "E", "fields": [
        {"name": "a", "type": "null"}, {"name": "b", "type": "null"}]}}"#,
    );
    let error = refusal(&empty, &[long(4_000), vec![0x00]].concat());
    assert_eq!(error.to_string(), "[3333].b: more than 10000 values that take no bytes");
    let three_thousand = empty.decode(&[long(3_000), vec![0x00]].concat()).expect("decodes");
    assert_eq!(three_thousand.as_array().map(Vec::len), Some(3_000));
}
