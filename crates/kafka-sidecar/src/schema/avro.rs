//! Avro values for the sidecar: parses a registry schema (with the named types its references
//! define) once, turns JSON in Avro's JSON encoding, as Confluent REST Proxy v2 reads it, into Avro
//! binary, and turns Avro binary back into that JSON. The Confluent header is not written here.
//!
//! The mapping is the Avro specification's JSON encoding:
//! - `bytes` and `fixed` are strings whose characters are code points U+0000..U+00FF, one a byte.
//! - An enum is its symbol; a map and a record are objects; a record field that is missing takes
//!   the schema's default, and a field the record does not have is an error.
//! - A union value is `null` or `{"<branch>": value}`, the branch named by its primitive type
//!   (`"string"`, `"array"`, ...) or the full name of its named type (`"com.example.Address"`).
//!   Decoding always writes that form. Encoding also takes a bare value when exactly one non-null
//!   branch takes its JSON kind (say `"x"` for `["null", "string"]`), as Confluent's tools do; a
//!   one-key object whose key names a branch is always read as the wrapper.
//! - Logical types are their underlying type (`date` an int, `timestamp-millis` a long, `uuid` a
//!   string, `decimal` bytes or fixed). A decimal also takes a JSON number, scaled by the schema's
//!   scale; not a numeric string, which is already valid bytes (`"1"` is the byte 0x31).
//! - Floats that JSON cannot hold are the strings `"NaN"`, `"Infinity"` and `"-Infinity"`.
//! - `big-decimal` is not supported.
//!
//! Error paths name the value, not the union tags around it: `.address.zip`, `.items[2]`,
//! `.tags["k"]`.
//!
//! Records, arrays and maps nest at most [`MAX_DEPTH`] deep, either way: with a recursive type a
//! few bytes of a consumed record can ask for any depth. Decoding reads the bytes itself, on a stack
//! of its own, and trusts no length further than the bytes left (`avro_decode.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Once;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use serde_json::Value as Json;

use super::codec::{ConversionError, Reference};

// Declared here rather than in `schema/mod.rs`: the conversions are this codec's private halves.
#[path = "avro_decode.rs"]
mod decode;
#[path = "avro_json.rs"]
mod json;

/// How deeply records, arrays and maps may nest in one value. The writer spends a few stack frames
/// a level, and the decoded JSON, dropped and serialized recursively, is up to twice as deep (a
/// union adds a level): 60 keeps it, with the response around it, under the 128 levels that
/// serde_json and many other parsers accept by default, so what the sidecar renders the app can
/// read. Far more than a real record needs, far less than a stack holds.
const MAX_DEPTH: usize = 60;

/// What apache-avro may allocate for one length it reads, instead of its default of 512 MiB. This
/// codec decodes with its own reader, which allocates nothing a length prefix alone asks for; the
/// cap is for whatever else in the process reaches the crate's reader.
const CRATE_MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// The depth inside one more record, array or map, if that is still allowed.
fn deeper(depth: usize) -> Result<usize, ConversionError> {
    if depth < MAX_DEPTH {
        Ok(depth + 1)
    } else {
        Err(ConversionError::new("", format!("nested deeper than {MAX_DEPTH} levels")))
    }
}

/// A parsed Avro schema that converts values between JSON and Avro binary.
pub struct AvroCodec {
    /// The schema with every referenced definition inlined, so that walking it needs no list of
    /// other schemas.
    root: Schema,
    /// Its named types by full name, for the `Ref`s left in it (recursion, a type used twice).
    names: HashMap<Name, Schema>,
}

impl fmt::Debug for AvroCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AvroCodec").field("schema", &self.root).finish()
    }
}

impl AvroCodec {
    /// Parses `schema` (Avro JSON schema text). `references` are the schemas it references by
    /// name (named types defined in other registry subjects), already flattened in dependency
    /// order (dependencies first).
    pub fn parse(schema: &str, references: &[Reference]) -> Result<Self, String> {
        static CAP_CRATE_ALLOCATIONS: Once = Once::new();
        CAP_CRATE_ALLOCATIONS.call_once(|| {
            apache_avro::util::max_allocation_bytes(CRATE_MAX_ALLOCATION_BYTES);
        });
        let (mut root, named) =
            Schema::parse_str_with_list(schema, references.iter().map(|reference| reference.schema.as_str()))
                .map_err(|error| format!("invalid Avro schema: {error}"))?;
        let mut definitions = Vec::new();
        for schema in &named {
            collect_definitions(schema, &mut definitions);
        }
        // Inlining once here spares every call a walk over the referenced schemas.
        root.denormalize(&definitions).map_err(|error| format!("unresolved Avro reference: {error}"))?;
        // The crate resolves names only as borrows of the schema, so the codec keeps its own copy.
        let names = ResolvedSchema::try_from(&root)
            .map_err(|error| format!("invalid Avro schema: {error}"))?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        Ok(Self { root, names })
    }

    /// Appends the Avro binary encoding of `value` (Avro's JSON encoding as Confluent REST Proxy
    /// v2 reads it) to `out`. On error `out` is left as it was.
    pub fn encode_into(&self, value: &Json, out: &mut Vec<u8>) -> Result<(), ConversionError> {
        let start = out.len();
        self.converter().write(&self.root, value, 0, out).inspect_err(|_| out.truncate(start))
    }

    /// Decodes Avro binary (the bytes after the Confluent header) to JSON in the same mapping.
    pub fn decode(&self, body: &[u8]) -> Result<Json, ConversionError> {
        decode::decode(&self.root, &self.names, body)
    }

    fn converter(&self) -> json::Converter<'_> {
        json::Converter { names: &self.names }
    }
}

/// Follows a reference to the named type it names.
fn resolve<'s>(names: &'s HashMap<Name, Schema>, schema: &'s Schema) -> Result<&'s Schema, ConversionError> {
    match schema {
        Schema::Ref { name } => {
            names.get(name).ok_or_else(|| ConversionError::new("", format!("the schema does not define {name}")))
        }
        other => Ok(other),
    }
}

/// Every named type `schema` defines, nested ones too: the root may name a type that a reference
/// defines inside another, and `denormalize` looks only at the top of the list it is given.
fn collect_definitions(schema: &Schema, into: &mut Vec<Schema>) {
    match schema {
        Schema::Record(record) => {
            into.push(schema.clone());
            for field in &record.fields {
                collect_definitions(&field.schema, into);
            }
        }
        Schema::Array(array) => collect_definitions(&array.items, into),
        Schema::Map(map) => collect_definitions(&map.types, into),
        Schema::Union(union) => union.variants().iter().for_each(|variant| collect_definitions(variant, into)),
        Schema::Ref { .. } => {}
        other if other.is_named() => into.push(other.clone()),
        _ => {}
    }
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
