//! JSON in Avro's JSON encoding to Avro binary for [`super::AvroCodec`] (the mapping is described
//! there), and the pieces of that mapping that decoding shares (branch names, bytes as code points).
//!
//! Encoding writes the bytes itself instead of building the crate's `Value` for its writer: that
//! path cost about 3 µs for an eight-field record against a few hundred ns here, mostly the crate
//! resolving names and building a field lookup for every record it writes.
//!
//! The walk recurses once per level of the JSON, which serde_json has already limited to 128, and
//! through the schema defaults it writes for missing fields. A default can hold its own type
//! without end (a union default is written as its first branch, but the crate accepts one that
//! fits any branch), so nesting stops at [`super::MAX_DEPTH`] here as when decoding, which also
//! keeps the sidecar from writing a record it would refuse to read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use apache_avro::schema::{DecimalSchema, EnumSchema, InnerDecimalSchema, Name, RecordSchema, UnionSchema, UuidSchema};
use apache_avro::{Schema, Uuid};
use serde_json::{Number, Value as Json};

use super::{deeper, resolve};
use crate::schema::codec::ConversionError;

/// Converts values of one schema, looking up the named types its references point to.
pub(super) struct Converter<'a> {
    pub(super) names: &'a HashMap<Name, Schema>,
}

impl Converter<'_> {
    fn resolve<'s>(&'s self, schema: &'s Schema) -> Result<&'s Schema, ConversionError> {
        resolve(self.names, schema)
    }

    /// Appends the binary encoding of `json` as `schema`, inside `depth` records, arrays and maps,
    /// to `out`; on error `out` holds part of it.
    pub(super) fn write(
        &self,
        schema: &Schema,
        json: &Json,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ConversionError> {
        match self.resolve(schema)? {
            Schema::Null if json.is_null() => {}
            Schema::Null => return Err(mismatch("null", json)),
            Schema::Boolean => out.push(u8::from(json.as_bool().ok_or_else(|| mismatch("boolean", json))?)),
            Schema::Int => write_long(int(json, "int")?.into(), out),
            Schema::Date => write_long(int(json, "int (date)")?.into(), out),
            Schema::TimeMillis => write_long(int(json, "int (time-millis)")?.into(), out),
            Schema::Long => write_long(long(json, "long")?, out),
            Schema::TimeMicros => write_long(long(json, "long (time-micros)")?, out),
            Schema::TimestampMillis => write_long(long(json, "long (timestamp-millis)")?, out),
            Schema::TimestampMicros => write_long(long(json, "long (timestamp-micros)")?, out),
            Schema::TimestampNanos => write_long(long(json, "long (timestamp-nanos)")?, out),
            Schema::LocalTimestampMillis => write_long(long(json, "long (local-timestamp-millis)")?, out),
            Schema::LocalTimestampMicros => write_long(long(json, "long (local-timestamp-micros)")?, out),
            Schema::LocalTimestampNanos => write_long(long(json, "long (local-timestamp-nanos)")?, out),
            Schema::Float => out.extend_from_slice(&float(json)?.to_le_bytes()),
            Schema::Double => out.extend_from_slice(&double(json, "double")?.to_le_bytes()),
            Schema::String => write_bytes(json.as_str().ok_or_else(|| mismatch("string", json))?.as_bytes(), out),
            Schema::Bytes => write_bytes(&code_points(json, "bytes")?, out),
            Schema::Fixed(fixed) | Schema::Uuid(UuidSchema::Fixed(fixed)) => {
                out.extend_from_slice(&sized(
                    code_points(json, "fixed")?,
                    fixed.size,
                    format_args!("fixed {}", fixed.name),
                )?);
            }
            Schema::Enum(enumeration) => write_long(enum_index(json, enumeration)?, out),
            Schema::Array(array) => {
                let Json::Array(items) = json else { return Err(mismatch("array", json)) };
                let depth = deeper(depth)?;
                // One block with its count, then the empty block that ends the array.
                if !items.is_empty() {
                    write_long(items.len() as i64, out);
                }
                for (index, item) in items.iter().enumerate() {
                    self.write(&array.items, item, depth, out).map_err(|e| e.within(&format!("[{index}]")))?;
                }
                out.push(0);
            }
            Schema::Map(map) => {
                let Json::Object(entries) = json else { return Err(mismatch("map (object)", json)) };
                let depth = deeper(depth)?;
                if !entries.is_empty() {
                    write_long(entries.len() as i64, out);
                }
                for (key, value) in entries {
                    write_bytes(key.as_bytes(), out);
                    self.write(&map.types, value, depth, out).map_err(|e| e.within(&key_step(key)))?;
                }
                out.push(0);
            }
            Schema::Record(record) => self.write_record(record, json, deeper(depth)?, out)?,
            Schema::Union(union) => {
                let (index, branch) = self.union_branch(union, json)?;
                write_long(index as i64, out);
                self.write(&union.variants()[index], branch, depth, out)?;
            }
            Schema::Decimal(decimal) => write_decimal(json, decimal, out)?,
            Schema::Uuid(UuidSchema::String) => {
                let text = json.as_str().ok_or_else(|| mismatch("string (uuid)", json))?;
                // Readers (this crate's among them) reject a non-UUID, so it would make unreadable data.
                Uuid::parse_str(text).map_err(|e| ConversionError::new("", format!("not a UUID: {e}")))?;
                write_bytes(text.as_bytes(), out);
            }
            Schema::Uuid(UuidSchema::Bytes) => {
                write_bytes(&sized(code_points(json, "bytes (uuid)")?, 16, "uuid")?, out)
            }
            Schema::Duration(_) => {
                out.extend_from_slice(&sized(code_points(json, "fixed (duration)")?, 12, "duration")?)
            }
            Schema::BigDecimal => {
                return Err(ConversionError::new("", "the big-decimal logical type is not supported"));
            }
            Schema::Ref { name } => return Err(ConversionError::new("", format!("{name} refers to another name"))),
        }
        Ok(())
    }

    fn write_record(
        &self,
        record: &RecordSchema,
        json: &Json,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ConversionError> {
        let Json::Object(object) = json else { return Err(mismatch(&format!("record {}", record.name), json)) };
        let mut present = 0;
        for field in &record.fields {
            let written = match (object.get(&field.name), &field.default) {
                (Some(value), _) => {
                    present += 1;
                    self.write(&field.schema, value, depth, out)
                }
                (None, Some(default)) => self.write_default(&field.schema, default, depth, out),
                (None, None) => Err(ConversionError::new("", "missing required field")),
            };
            written.map_err(|e| e.within(&format!(".{}", field.name)))?;
        }
        // Only when some key matched no field is it worth finding which one.
        if present < object.len()
            && let Some(unknown) = object.keys().find(|key| !record.fields.iter().any(|field| &field.name == *key))
        {
            let known: Vec<&str> = record.fields.iter().map(|field| field.name.as_str()).collect();
            let message = format!("unknown field; record {} has fields {known:?}", record.name);
            return Err(ConversionError::new("", message).within(&format!(".{unknown}")));
        }
        Ok(())
    }

    /// A field's default is written in the schema as a bare value of a union's first branch.
    fn write_default(
        &self,
        schema: &Schema,
        default: &Json,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ConversionError> {
        let written = match self.resolve(schema)? {
            Schema::Union(union) => match union.variants().first() {
                Some(first) => {
                    write_long(0, out);
                    self.write(first, default, depth, out)
                }
                None => Err(ConversionError::new("", "empty union")),
            },
            other => self.write(other, default, depth, out),
        };
        // Said once, though a default may hold a field that takes its own default.
        const PREFIX: &str = "the schema's default does not fit: ";
        written.map_err(|mut e| {
            if !e.message.starts_with(PREFIX) {
                e.message.insert_str(0, PREFIX);
            }
            e
        })
    }

    /// The branch a union value takes and the value inside any `{"<branch>": value}` wrapper.
    fn union_branch<'j>(&self, union: &UnionSchema, json: &'j Json) -> Result<(usize, &'j Json), ConversionError> {
        let variants = union.variants();
        if json.is_null() {
            let index = variants.iter().position(|variant| matches!(variant, Schema::Null));
            return index.map(|index| (index, json)).ok_or_else(|| self.union_mismatch(union, json));
        }
        if let Json::Object(object) = json
            && object.len() == 1
            && let Some((key, inner)) = object.iter().next()
            && let Some(index) = variants.iter().position(|variant| branch_is(variant, key))
        {
            return Ok((index, inner));
        }
        let mut takers = variants.iter().enumerate().filter(|(_, variant)| self.takes_kind(variant, json));
        match (takers.next(), takers.next()) {
            (Some((index, _)), None) => Ok((index, json)),
            _ => Err(self.union_mismatch(union, json)),
        }
    }

    /// Whether a branch takes a bare value of this JSON kind; a union branch's value is not
    /// looked at further, so two branches of one kind (`string` and `bytes`) need the wrapper.
    fn takes_kind(&self, schema: &Schema, json: &Json) -> bool {
        let Ok(schema) = self.resolve(schema) else { return false };
        match json {
            Json::Bool(_) => matches!(schema, Schema::Boolean),
            Json::Number(number) => match schema {
                Schema::Float | Schema::Double | Schema::Decimal(_) => true,
                other => matches!(primitive_name(other), "int" | "long") && (number.is_i64() || number.is_u64()),
            },
            Json::String(_) => matches!(
                schema,
                Schema::String
                    | Schema::Bytes
                    | Schema::Enum(_)
                    | Schema::Fixed(_)
                    | Schema::Uuid(_)
                    | Schema::Decimal(_)
                    | Schema::Duration(_)
            ),
            Json::Array(_) => matches!(schema, Schema::Array(_)),
            Json::Object(_) => matches!(schema, Schema::Map(_) | Schema::Record(_)),
            Json::Null => false,
        }
    }

    fn union_mismatch(&self, union: &UnionSchema, json: &Json) -> ConversionError {
        let branches: Vec<String> = union.variants().iter().map(branch_name).collect();
        let expected = format!("null or {{\"<branch>\": value}} with a branch of {branches:?}");
        mismatch(&expected, json)
    }
}

fn mismatch(expected: &str, found: &Json) -> ConversionError {
    let found = match found {
        Json::Null => "null".to_owned(),
        Json::Bool(value) => format!("boolean {value}"),
        Json::Number(number) => format!("number {number}"),
        Json::String(text) if text.chars().count() > 40 => {
            format!("string {:?}...", text.chars().take(40).collect::<String>())
        }
        Json::String(text) => format!("string {text:?}"),
        Json::Array(_) => "array".to_owned(),
        Json::Object(_) => "object".to_owned(),
    };
    ConversionError::new("", format!("expected {expected}, found {found}"))
}

/// A map key as a path step: `["k"]`, quoted so that any key reads unambiguously.
pub(super) fn key_step(key: &str) -> String {
    format!("[{}]", Json::from(key))
}

fn long(json: &Json, expected: &str) -> Result<i64, ConversionError> {
    let Json::Number(number) = json else { return Err(mismatch(expected, json)) };
    number.as_i64().ok_or_else(|| {
        let problem = if number.is_u64() { "out of range" } else { "not an integer" };
        ConversionError::new("", format!("expected {expected}, found number {number} ({problem})"))
    })
}

fn int(json: &Json, expected: &str) -> Result<i32, ConversionError> {
    let wide = long(json, expected)?;
    i32::try_from(wide)
        .map_err(|_| ConversionError::new("", format!("expected {expected}, found number {wide} (out of range)")))
}

fn double(json: &Json, expected: &str) -> Result<f64, ConversionError> {
    match json {
        Json::Number(number) => number.as_f64().ok_or_else(|| mismatch(expected, json)),
        // JSON has no numbers for these; Jackson, which Confluent's tools use, writes them so.
        Json::String(text) if text == "NaN" => Ok(f64::NAN),
        Json::String(text) if text == "Infinity" => Ok(f64::INFINITY),
        Json::String(text) if text == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(mismatch(expected, json)),
    }
}

fn float(json: &Json) -> Result<f32, ConversionError> {
    let wide = double(json, "float")?;
    let narrow = wide as f32;
    if narrow.is_infinite() && wide.is_finite() {
        return Err(ConversionError::new("", format!("expected float, found number {wide} (out of range)")));
    }
    Ok(narrow)
}

pub(super) fn float_json(value: f64) -> Json {
    match Number::from_f64(value) {
        Some(number) => Json::Number(number),
        None if value.is_nan() => Json::from("NaN"),
        None if value > 0.0 => Json::from("Infinity"),
        None => Json::from("-Infinity"),
    }
}

/// Bytes in Avro's JSON encoding: each character is the code point of one byte's value.
fn code_points<'j>(json: &'j Json, expected: &str) -> Result<Cow<'j, [u8]>, ConversionError> {
    let Some(text) = json.as_str() else { return Err(mismatch(expected, json)) };
    if text.is_ascii() {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|character| {
            u8::try_from(character).map_err(|_| {
                let message = format!("expected {expected} as characters U+0000..U+00FF, found {character:?}");
                ConversionError::new("", message)
            })
        })
        .collect()
}

/// Avro's variable-length zig-zag encoding of `int` and `long`.
pub(super) fn write_long(value: i64, out: &mut Vec<u8>) {
    let mut rest = ((value << 1) ^ (value >> 63)) as u64;
    while rest >= 0x80 {
        out.push((rest as u8) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    write_long(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

pub(super) fn code_point_string(bytes: &[u8]) -> Json {
    Json::String(bytes.iter().map(|&byte| char::from(byte)).collect())
}

pub(super) fn sized<'b>(
    bytes: Cow<'b, [u8]>,
    size: usize,
    what: impl fmt::Display,
) -> Result<Cow<'b, [u8]>, ConversionError> {
    if bytes.len() == size {
        Ok(bytes)
    } else {
        Err(ConversionError::new("", format!("expected {size} bytes for {what}, found {}", bytes.len())))
    }
}

fn enum_index(json: &Json, enumeration: &EnumSchema) -> Result<i64, ConversionError> {
    let Some(symbol) = json.as_str() else { return Err(mismatch(&format!("enum {}", enumeration.name), json)) };
    match enumeration.symbols.iter().position(|known| known == symbol) {
        Some(index) => Ok(index as i64),
        None => {
            let (name, symbols) = (&enumeration.name, &enumeration.symbols);
            Err(ConversionError::new(
                "",
                format!("unknown symbol {symbol:?} for enum {name}; expected one of {symbols:?}"),
            ))
        }
    }
}

/// A decimal from its bytes, or from a JSON number scaled by the schema's scale.
fn write_decimal(json: &Json, decimal: &DecimalSchema, out: &mut Vec<u8>) -> Result<(), ConversionError> {
    let size = match &decimal.inner {
        InnerDecimalSchema::Fixed(fixed) => Some(fixed.size),
        InnerDecimalSchema::Bytes => None,
    };
    let bytes = match json {
        Json::Number(number) => Cow::Owned(two_complement(unscaled_decimal(number, decimal)?, size)?),
        _ => code_points(json, "decimal (bytes or a number)")?,
    };
    match size {
        Some(size) => out.extend_from_slice(&sized(bytes, size, "a fixed decimal")?),
        None => write_bytes(&bytes, out),
    }
    Ok(())
}

/// The number times 10^scale, exactly: from the number's text, so 0.1 is 1 at scale 1.
fn unscaled_decimal(number: &Number, decimal: &DecimalSchema) -> Result<i128, ConversionError> {
    let (precision, scale) = (decimal.precision, decimal.scale);
    let fail = |why: &str| ConversionError::new("", format!("decimal {number} {why}"));
    let text = number.to_string();
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().map_err(|_| fail("has a bad exponent"))?),
        None => (text.as_str(), 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: i128 = format!("{whole}{fraction}").parse().map_err(|_| fail("has too many digits"))?;
    let shift = i64::try_from(scale).unwrap_or(i64::MAX).saturating_add(exponent) - fraction.len() as i64;
    let power = |exponent: i64| u32::try_from(exponent).ok().and_then(|exponent| 10i128.checked_pow(exponent));
    let unscaled = if digits == 0 {
        0
    } else if shift >= 0 {
        power(shift).and_then(|power| digits.checked_mul(power)).ok_or_else(|| fail("is too large"))?
    } else {
        let divisor = power(-shift).unwrap_or(i128::MAX);
        if digits % divisor != 0 {
            return Err(fail(&format!("has more decimal places than the scale {scale}")));
        }
        digits / divisor
    };
    if unscaled.unsigned_abs().checked_ilog10().map_or(1, |log| log as usize + 1) > precision {
        return Err(fail(&format!("has more digits than the precision {precision}")));
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// Big-endian two's complement, as short as the value allows or sign-extended to `size`.
fn two_complement(value: i128, size: Option<usize>) -> Result<Vec<u8>, ConversionError> {
    let full = value.to_be_bytes();
    let sign = if value < 0 { 0xFF } else { 0x00 };
    // Drop leading sign bytes while the next byte still carries the sign bit.
    let start = (0..full.len() - 1).find(|&i| full[i] != sign || (full[i + 1] & 0x80) != (sign & 0x80));
    let minimal = &full[start.unwrap_or(full.len() - 1)..];
    match size {
        None => Ok(minimal.to_vec()),
        Some(size) if minimal.len() <= size => {
            let mut bytes = vec![sign; size - minimal.len()];
            bytes.extend_from_slice(minimal);
            Ok(bytes)
        }
        Some(size) => Err(ConversionError::new("", format!("decimal {value} does not fit in {size} bytes"))),
    }
}

/// The branch name of an unnamed type: its primitive (underlying, for a logical type) name.
/// Named types are told apart by name, so what this says of them does not matter.
fn primitive_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Date | Schema::TimeMillis => "int",
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::String | Schema::Uuid(UuidSchema::String) => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        _ => "bytes",
    }
}

pub(super) fn branch_name(schema: &Schema) -> String {
    schema.name().map_or_else(|| primitive_name(schema).to_owned(), |name| name.fullname(None))
}

/// Whether `key` names this branch, without building the full name for every value.
fn branch_is(schema: &Schema, key: &str) -> bool {
    match schema.name() {
        Some(name) => match name.namespace() {
            Some(namespace) => key.strip_prefix(namespace).and_then(|rest| rest.strip_prefix('.')) == Some(name.name()),
            None => key == name.name(),
        },
        None => primitive_name(schema) == key,
    }
}
