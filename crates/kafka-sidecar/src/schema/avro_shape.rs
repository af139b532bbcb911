//! A bounded walk over an Avro body before anything decodes it: apache-avro's reader (and our JSON
//! conversion) recurse once per nesting level and trust length prefixes, so a few hundred bytes of
//! a recursive schema could overflow the stack and a ten-byte body could ask for 512 MiB. This
//! walk follows the schema to at most [`MAX_DEPTH`] levels of records, arrays and maps, checks every length
//! and count against the bytes left, and allocates nothing.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};

use crate::schema::codec::ConversionError;

/// The deepest nesting a consumed record may have.
pub const MAX_DEPTH: usize = 64;

/// Items an array or map block may claim beyond one per remaining byte (items of `null` take none).
const ZERO_SIZE_ITEMS_SLACK: u64 = 1024;

/// Checks that `body` holds exactly one value of `schema`, within the limits.
pub fn check(schema: &Schema, names: &HashMap<Name, Schema>, body: &[u8]) -> Result<(), ConversionError> {
    let mut walk = Walk { names, rest: body };
    walk.value(schema, 0)?;
    if !walk.rest.is_empty() {
        return Err(ConversionError::new("", format!("{} bytes left after the Avro value", walk.rest.len())));
    }
    Ok(())
}

struct Walk<'a> {
    names: &'a HashMap<Name, Schema>,
    rest: &'a [u8],
}

impl Walk<'_> {
    fn value(&mut self, schema: &Schema, depth: usize) -> Result<(), ConversionError> {
        if depth > MAX_DEPTH {
            return Err(ConversionError::new("", format!("nested deeper than {MAX_DEPTH} levels")));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.take(1),
            Schema::Int | Schema::Long | Schema::Date | Schema::TimeMillis | Schema::TimeMicros => {
                self.long().map(drop)
            }
            Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4),
            Schema::Double => self.take(8),
            Schema::Bytes | Schema::String | Schema::BigDecimal => self.sized(),
            Schema::Uuid(UuidSchema::String | UuidSchema::Bytes) => self.sized(),
            Schema::Uuid(UuidSchema::Fixed(fixed)) | Schema::Fixed(fixed) | Schema::Duration(fixed) => {
                self.take(fixed.size)
            }
            Schema::Decimal(decimal) => match &decimal.inner {
                InnerDecimalSchema::Bytes => self.sized(),
                InnerDecimalSchema::Fixed(fixed) => self.take(fixed.size),
            },
            Schema::Enum(enumeration) => {
                let index = self.long()?;
                if usize::try_from(index).is_ok_and(|index| index < enumeration.symbols.len()) {
                    Ok(())
                } else {
                    Err(ConversionError::new("", format!("enum index {index} is out of range")))
                }
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let variant = usize::try_from(index).ok().and_then(|index| union.variants().get(index));
                let variant =
                    variant.ok_or_else(|| ConversionError::new("", format!("union branch {index} is out of range")))?;
                // A union cannot hold a union, so this adds no level of its own.
                self.value(variant, depth)
            }
            Schema::Record(record) => {
                for field in &record.fields {
                    self.value(&field.schema, depth + 1).map_err(|error| error.within(&format!(".{}", field.name)))?;
                }
                Ok(())
            }
            Schema::Array(array) => self.blocks(|walk| walk.value(&array.items, depth + 1)),
            Schema::Map(map) => self.blocks(|walk| {
                walk.sized()?;
                walk.value(&map.types, depth + 1)
            }),
            Schema::Ref { name } => {
                let named =
                    self.names.get(name).ok_or_else(|| ConversionError::new("", format!("unknown type {name}")))?;
                // A name resolves to a record, enum or fixed, which count their own levels.
                self.value(named, depth)
            }
        }
    }

    /// Array and map blocks: a count (negative: followed by a byte size), items, until a 0 count.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), ConversionError>,
    ) -> Result<(), ConversionError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = count.unsigned_abs();
            if count > self.rest.len() as u64 + ZERO_SIZE_ITEMS_SLACK {
                return Err(ConversionError::new(
                    "",
                    format!("a block of {count} items exceeds the remaining {} bytes", self.rest.len()),
                ));
            }
            for index in 0..count {
                item(self).map_err(|error| error.within(&format!("[{index}]")))?;
            }
        }
    }

    fn take(&mut self, size: usize) -> Result<(), ConversionError> {
        if size > self.rest.len() {
            return Err(ConversionError::new("", format!("{size} bytes needed, {} left", self.rest.len())));
        }
        self.rest = &self.rest[size..];
        Ok(())
    }

    /// A length-prefixed value (bytes, string, a map key).
    fn sized(&mut self) -> Result<(), ConversionError> {
        let length = self.long()?;
        let length =
            usize::try_from(length).map_err(|_| ConversionError::new("", format!("negative length {length}")))?;
        if length > self.rest.len() {
            return Err(ConversionError::new(
                "",
                format!("length {length} exceeds the remaining {} bytes", self.rest.len()),
            ));
        }
        self.take(length)
    }

    /// A zigzag varint long.
    fn long(&mut self) -> Result<i64, ConversionError> {
        let mut value: u64 = 0;
        for (index, byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[index + 1..];
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(ConversionError::new("", "a truncated or overlong varint"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> (Schema, HashMap<Name, Schema>) {
        let schema =
            Schema::parse_str(r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#)
                .expect("schema");
        let names = apache_avro::schema::ResolvedSchema::try_from(&schema)
            .expect("resolved")
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        (schema, names)
    }

    #[test]
    fn deep_recursive_records_are_refused_without_deep_recursion() {
        let (schema, names) = node();
        let mut body = vec![0x02; 10_000];
        body.push(0x00);
        // A small stack proves the walk's recursion is bounded, not merely lucky.
        let refused = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || check(&schema, &names, &body))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert!(refused.expect_err("too deep").message.contains("deeper than 64"));
        let (schema, names) = node();
        let mut shallow = vec![0x02; 30];
        shallow.push(0x00);
        assert!(check(&schema, &names, &shallow).is_ok());
    }

    #[test]
    fn lengths_and_counts_beyond_the_body_are_refused() {
        let string = Schema::String;
        // Length 512 MiB (zigzag 2^30 = varint 0x80 0x80 0x80 0x80 0x08) in a ten-byte body.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x08, b'a', b'b', b'c', b'd', b'e'];
        let error = check(&string, &HashMap::new(), &huge).expect_err("huge");
        assert!(error.message.contains("exceeds the remaining"), "{error}");
        let array = Schema::parse_str(r#"{"type":"array","items":"null"}"#).expect("schema");
        let many = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(check(&array, &HashMap::new(), &many).expect_err("many").message.contains("items"));
        assert!(check(&Schema::Long, &HashMap::new(), &[0x80]).is_err(), "truncated varint");
    }
}
