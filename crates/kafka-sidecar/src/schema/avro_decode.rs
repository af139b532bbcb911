//! Avro binary to JSON for [`super::AvroCodec`], in the mapping described there, read straight from
//! the bytes rather than through apache-avro's reader.
//!
//! Consumed records come from anyone who can write to the topic, so nothing read from them is
//! trusted further than the bytes behind it. The crate's reader recursed once per level of a
//! recursive type (a few hundred bytes overflowed a worker's stack and aborted the process) and
//! allocated whatever a length prefix asked for. Here:
//! - the walk keeps the values it has open on a stack of its own, not the thread's, and refuses
//!   nesting deeper than [`super::MAX_DEPTH`], which bounds that stack and the JSON handed on;
//! - a length or count is checked against the bytes left before anything is allocated for it;
//! - values that take no bytes at all (a `null` field, an empty record) are counted, since no
//!   amount of input bounds them.
//!
//! Reading the bytes directly also spares building the crate's values only to convert them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use apache_avro::schema::{InnerDecimalSchema, Name, RecordSchema, UuidSchema};
use apache_avro::{Schema, Uuid};
use serde_json::{Map, Value as Json};

use super::json::{branch_name, code_point_string, float_json, key_step, sized};
use super::{deeper, resolve};
use crate::schema::codec::ConversionError;

/// How many values that take no bytes one body may decode to: enough for any sane use of `null`
/// fields and empty records, few enough that a body cannot unfold into an unbounded document.
const MAX_EMPTY_VALUES: usize = 10_000;

/// How many items room is made for when an array begins; more is made as they are read.
const INITIAL_ITEMS: usize = 1024;

/// Decodes `body`, all of it, as one value of `schema`; `names` resolves the schema's references.
pub(super) fn decode(schema: &Schema, names: &HashMap<Name, Schema>, body: &[u8]) -> Result<Json, ConversionError> {
    let mut decoder = Decoder { names, rest: body, empty_values_left: MAX_EMPTY_VALUES, open: Vec::new(), depth: 0 };
    let value = decoder.run(schema).map_err(|error| decoder.locate(error))?;
    if !decoder.rest.is_empty() {
        return Err(ConversionError::new("", format!("{} bytes left after the Avro value", decoder.rest.len())));
    }
    Ok(value)
}

struct Decoder<'s, 'b> {
    names: &'s HashMap<Name, Schema>,
    /// The bytes not read yet.
    rest: &'b [u8],
    empty_values_left: usize,
    /// The values begun and not finished, outermost first.
    open: Vec<Open<'s>>,
    /// How many of them are records, arrays and maps.
    depth: usize,
}

/// A value whose parts are still being read.
enum Open<'s> {
    /// A union's chosen branch, `{"<branch>": value}` once its value is read.
    Union { branch: String },
    /// A record reading its field `field`; `start` is how many bytes were left when it began.
    Record { record: &'s RecordSchema, object: Map<String, Json>, field: usize, start: usize },
    /// An array with `left` more items in the block being read.
    Array { items: &'s Schema, values: Vec<Json>, left: usize },
    /// A map reading the value for `key`, with `left` more entries in the block being read.
    Map { values: &'s Schema, object: Map<String, Json>, key: String, left: usize },
}

/// What to do after a step: read a value of a schema, or hand a finished value outwards.
enum Step<'s> {
    Read(&'s Schema),
    Done(Json),
}

impl<'s, 'b> Decoder<'s, 'b> {
    /// Reads one value of `root`. A value with parts is left open while they are read; each
    /// finished value is handed to the innermost open one, which may then be finished too.
    fn run(&mut self, root: &'s Schema) -> Result<Json, ConversionError> {
        let mut step = self.begin(root)?;
        loop {
            step = match step {
                Step::Read(schema) => self.begin(schema)?,
                Step::Done(value) if self.open.is_empty() => return Ok(value),
                Step::Done(value) => self.hand_out(value)?,
            };
        }
    }

    /// Reads a value of `schema` that holds no others, or what starts one that does.
    fn begin(&mut self, schema: &'s Schema) -> Result<Step<'s>, ConversionError> {
        Ok(match self.resolve(schema)? {
            Schema::Union(union) => {
                let variants = union.variants();
                let index = self.index(variants.len(), || "union branch".to_owned())?;
                let variant = self.resolve(&variants[index])?;
                if matches!(variant, Schema::Null) {
                    return Ok(Step::Done(Json::Null));
                }
                self.open.push(Open::Union { branch: branch_name(variant) });
                Step::Read(variant)
            }
            Schema::Record(record) => {
                let (depth, start) = (deeper(self.depth)?, self.rest.len());
                let Some(first) = record.fields.first() else {
                    self.count_if_empty(start)?;
                    return Ok(Step::Done(Json::Object(Map::new())));
                };
                self.depth = depth;
                self.open.push(Open::Record { record, object: Map::new(), field: 0, start });
                Step::Read(&first.schema)
            }
            Schema::Array(array) => {
                let depth = deeper(self.depth)?;
                let Some(left) = self.block(self.empty_values_left)? else {
                    return Ok(Step::Done(Json::Array(Vec::new())));
                };
                self.depth = depth;
                // Room for some: a count is only known not to exceed the bytes left (and the values
                // that take none).
                let values = Vec::with_capacity(left.min(INITIAL_ITEMS));
                self.open.push(Open::Array { items: &array.items, values, left });
                Step::Read(&array.items)
            }
            Schema::Map(map) => {
                let depth = deeper(self.depth)?;
                // Every entry's key takes a byte at least: its length.
                let Some(left) = self.block(0)? else { return Ok(Step::Done(Json::Object(Map::new()))) };
                let key = self.string()?.to_owned();
                self.depth = depth;
                self.open.push(Open::Map { values: &map.types, object: Map::new(), key, left });
                Step::Read(&map.types)
            }
            other => {
                let start = self.rest.len();
                let value = self.scalar(other)?;
                self.count_if_empty(start)?;
                Step::Done(value)
            }
        })
    }

    /// Gives a finished value to the innermost open value, which then reads its next part or is
    /// finished too.
    fn hand_out(&mut self, value: Json) -> Result<Step<'s>, ConversionError> {
        // Taken off while it is worked on, and put back if it has more to read; an error in
        // between is then placed at the open value itself rather than at one of its parts.
        let Some(open) = self.open.pop() else { return Ok(Step::Done(value)) };
        match open {
            Open::Union { branch } => {
                let mut object = Map::new();
                object.insert(branch, value);
                Ok(Step::Done(Json::Object(object)))
            }
            Open::Record { record, mut object, field, start } => {
                object.insert(record.fields[field].name.clone(), value);
                let Some(next) = record.fields.get(field + 1) else {
                    self.depth -= 1;
                    self.count_if_empty(start)?;
                    return Ok(Step::Done(Json::Object(object)));
                };
                self.open.push(Open::Record { record, object, field: field + 1, start });
                Ok(Step::Read(&next.schema))
            }
            Open::Array { items, mut values, mut left } => {
                values.push(value);
                if !self.next_item(&mut left, self.empty_values_left)? {
                    self.depth -= 1;
                    return Ok(Step::Done(Json::Array(values)));
                }
                self.open.push(Open::Array { items, values, left });
                Ok(Step::Read(items))
            }
            Open::Map { values, mut object, key, mut left } => {
                object.insert(key, value);
                if !self.next_item(&mut left, 0)? {
                    self.depth -= 1;
                    return Ok(Step::Done(Json::Object(object)));
                }
                let key = self.string()?.to_owned();
                self.open.push(Open::Map { values, object, key, left });
                Ok(Step::Read(values))
            }
        }
    }

    /// Counts a value that began with `start` bytes left if it took none of them.
    fn count_if_empty(&mut self, start: usize) -> Result<(), ConversionError> {
        if self.rest.len() == start {
            self.empty_values_left = self.empty_values_left.checked_sub(1).ok_or_else(|| {
                ConversionError::new("", format!("more than {MAX_EMPTY_VALUES} values that take no bytes"))
            })?;
        }
        Ok(())
    }

    /// Puts the path of the innermost open value in front of an error's own.
    fn locate(&self, mut error: ConversionError) -> ConversionError {
        let mut path = String::new();
        for open in &self.open {
            match open {
                Open::Union { .. } => {}
                Open::Record { record, field, .. } => {
                    path.push('.');
                    path.push_str(&record.fields[*field].name);
                }
                Open::Array { values, .. } => {
                    let _ = write!(path, "[{}]", values.len());
                }
                Open::Map { key, .. } => path.push_str(&key_step(key)),
            }
        }
        error.path.insert_str(0, &path);
        error
    }

    fn resolve(&self, schema: &'s Schema) -> Result<&'s Schema, ConversionError> {
        resolve(self.names, schema)
    }

    /// A value that holds no other values.
    fn scalar(&mut self, schema: &Schema) -> Result<Json, ConversionError> {
        Ok(match schema {
            Schema::Null => Json::Null,
            Schema::Boolean => match self.take(1)? {
                [0] => Json::Bool(false),
                [1] => Json::Bool(true),
                other => return Err(ConversionError::new("", format!("boolean byte {other:?} is not 0 or 1"))),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => self.int()?.into(),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long()?.into(),
            Schema::Float => {
                let value = f32::from_le_bytes(self.bytes_array()?);
                // Through text, so 0.1f32 comes out as 0.1 rather than 0.10000000149011612.
                float_json(value.to_string().parse().unwrap_or(f64::from(value)))
            }
            Schema::Double => float_json(f64::from_le_bytes(self.bytes_array()?)),
            Schema::String => Json::String(self.string()?.to_owned()),
            Schema::Bytes => code_point_string(self.bytes()?),
            Schema::Fixed(fixed) => code_point_string(self.take(fixed.size)?),
            Schema::Enum(enumeration) => {
                let symbols = &enumeration.symbols;
                let index = self.index(symbols.len(), || format!("enum {} symbol", enumeration.name))?;
                Json::String(symbols[index].clone())
            }
            Schema::Decimal(decimal) => {
                let bytes = match &decimal.inner {
                    InnerDecimalSchema::Fixed(fixed) => self.take(fixed.size)?,
                    InnerDecimalSchema::Bytes => self.bytes()?,
                };
                if bytes.is_empty() {
                    return Err(ConversionError::new("", "a decimal of no bytes"));
                }
                code_point_string(bytes)
            }
            Schema::Uuid(UuidSchema::String) => {
                let text = self.string()?;
                let uuid = Uuid::parse_str(text).map_err(|e| ConversionError::new("", format!("not a UUID: {e}")))?;
                Json::String(uuid.to_string())
            }
            Schema::Uuid(UuidSchema::Bytes) => code_point_string(&sized(Cow::Borrowed(self.bytes()?), 16, "uuid")?),
            Schema::Uuid(UuidSchema::Fixed(fixed)) => {
                code_point_string(&sized(Cow::Borrowed(self.take(fixed.size)?), 16, "uuid")?)
            }
            Schema::Duration(fixed) => {
                code_point_string(&sized(Cow::Borrowed(self.take(fixed.size)?), 12, "duration")?)
            }
            Schema::BigDecimal => {
                return Err(ConversionError::new("", "the big-decimal logical type is not supported"));
            }
            other => {
                let message = format!("{} is not a scalar type", branch_name(other));
                return Err(ConversionError::new("", message));
            }
        })
    }

    /// The item count that starts a block of array items or map entries; `None` for the empty
    /// block that ends them. Each item takes a byte at least, except for `free_items` of them.
    fn block(&mut self, free_items: usize) -> Result<Option<usize>, ConversionError> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            // The block's size in bytes follows. Nothing is allocated or skipped by it, so it is
            // read and, as Avro's Java reader and apache-avro do, not checked.
            self.long()?;
        }
        let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        if count > self.rest.len().saturating_add(free_items) {
            let message = format!("count {count} exceeds the remaining {} bytes", self.rest.len());
            return Err(ConversionError::new("", message));
        }
        Ok(Some(count))
    }

    /// Counts off an item just read; whether another follows, reading the next block's count
    /// when this one is done.
    fn next_item(&mut self, left: &mut usize, free_items: usize) -> Result<bool, ConversionError> {
        *left -= 1;
        if *left == 0 {
            match self.block(free_items)? {
                Some(count) => *left = count,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The next `length` bytes.
    fn take(&mut self, length: usize) -> Result<&'b [u8], ConversionError> {
        let Some((taken, rest)) = self.rest.split_at_checked(length) else {
            let message = format!("the data ends early: {length} more bytes needed, {} left", self.rest.len());
            return Err(ConversionError::new("", message));
        };
        self.rest = rest;
        Ok(taken)
    }

    fn bytes_array<const N: usize>(&mut self) -> Result<[u8; N], ConversionError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// A length prefix, checked against the bytes left before anything is allocated for it.
    fn length(&mut self) -> Result<usize, ConversionError> {
        let length = self.long()?;
        match usize::try_from(length) {
            Ok(length) if length <= self.rest.len() => Ok(length),
            Ok(_) => {
                let message = format!("length {length} exceeds the remaining {} bytes", self.rest.len());
                Err(ConversionError::new("", message))
            }
            Err(_) => Err(ConversionError::new("", format!("negative length {length}"))),
        }
    }

    fn bytes(&mut self) -> Result<&'b [u8], ConversionError> {
        let length = self.length()?;
        self.take(length)
    }

    fn string(&mut self) -> Result<&'b str, ConversionError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| ConversionError::new("", format!("a string is not UTF-8: {e}")))
    }

    /// A union branch or enum symbol index, checked against `count`.
    fn index(&mut self, count: usize, what: impl FnOnce() -> String) -> Result<usize, ConversionError> {
        let index = self.long()?;
        match usize::try_from(index) {
            Ok(index) if index < count => Ok(index),
            _ => Err(ConversionError::new("", format!("{} index {index} is not in 0..{count}", what()))),
        }
    }

    fn int(&mut self) -> Result<i32, ConversionError> {
        let long = self.long()?;
        i32::try_from(long).map_err(|_| ConversionError::new("", format!("int {long} is out of range")))
    }

    /// Avro's variable-length zig-zag `long`: at most ten bytes, seven bits in each.
    fn long(&mut self) -> Result<i64, ConversionError> {
        let rest = self.rest;
        let mut bits = 0u64;
        for (position, &byte) in rest.iter().take(10).enumerate() {
            bits |= u64::from(byte & 0x7F) << (7 * position);
            if byte & 0x80 == 0 {
                self.rest = &rest[position + 1..];
                return Ok((bits >> 1) as i64 ^ -((bits & 1) as i64));
            }
        }
        let message = if self.rest.len() >= 10 { "an integer longer than ten bytes" } else { "the data ends early" };
        Err(ConversionError::new("", message))
    }
}

#[cfg(test)]
#[path = "avro_decode_tests.rs"]
mod tests;
