//! What every schema codec (avro, jsonschema, protobuf) shares: the error a JSON value that does
//! not fit its schema produces, naming where in the value it went wrong.

/// A JSON value that does not fit its schema, or bytes that do not decode with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionError {
    /// Where in the value: a suffix for the field being converted, such as `.address.zip` or
    /// `.items[2]`; empty for the value itself.
    pub path: String,
    /// What is wrong there, for a human.
    pub message: String,
}

impl ConversionError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// The same error one level further out: `.name` or `[index]` is put in front of the path.
    pub fn within(mut self, step: &str) -> Self {
        self.path.insert_str(0, step);
        self
    }
}

impl std::fmt::Display for ConversionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// A schema the registry referenced: the name it is imported by (an avro full name is not needed:
/// avro references are parsed in order; for protobuf it is the import path, for JSON Schema the
/// `$ref` URL) and the schema text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The name the referencing schema uses for it.
    pub name: String,
    /// The referenced schema's text.
    pub schema: String,
}
