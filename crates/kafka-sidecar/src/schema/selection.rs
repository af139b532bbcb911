//! How a produce request names the schema of its keys or values: inline text, a registry id, a
//! subject version, or nothing (the latest version of the subject). Subjects default to Confluent's
//! TopicNameStrategy: `<topic>-key` and `<topic>-value`.

use crate::error::{ErrorCode, SidecarError};

/// Keys or values: which subject a schema defaults to and how errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRole {
    /// Record keys.
    Key,
    /// Record values.
    Value,
}

impl SchemaRole {
    /// The TopicNameStrategy subject for `topic`.
    pub fn subject(self, topic: &str) -> String {
        format!("{topic}-{self}")
    }
}

impl std::fmt::Display for SchemaRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Key => "key",
            Self::Value => "value",
        })
    }
}

/// The schema a request selected; `subject: None` means the TopicNameStrategy subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaSelection {
    /// The latest version of the subject: what a request that names nothing gets.
    Latest {
        /// An explicit subject.
        subject: Option<String>,
    },
    /// One version of the subject.
    Version {
        /// An explicit subject.
        subject: Option<String>,
        /// The version number.
        version: i32,
    },
    /// A registry id.
    Id(u32),
    /// Schema text, registered under the subject (or found there) before use.
    Inline {
        /// The schema text.
        schema: String,
        /// An explicit subject.
        subject: Option<String>,
    },
}

impl SchemaSelection {
    /// The selection from a request's fields (`keySchema`, `keySchemaId`, `keySchemaVersion`,
    /// `keySchemaSubject`, or their value twins). Inline text, an id and a version exclude each other.
    pub fn from_fields(
        role: SchemaRole,
        schema: Option<String>,
        id: Option<i64>,
        version: Option<i64>,
        subject: Option<String>,
    ) -> Result<Self, SidecarError> {
        let invalid = |message: String| SidecarError::new(ErrorCode::InvalidRequest, message);
        if let Some(subject) = &subject
            && subject.trim().is_empty()
        {
            return Err(invalid(format!("the {role} schema subject must not be empty")));
        }
        match (schema, id, version) {
            (None, None, None) => Ok(Self::Latest { subject }),
            (Some(schema), None, None) => {
                if schema.trim().is_empty() {
                    return Err(invalid(format!("the {role} schema must not be empty")));
                }
                Ok(Self::Inline { schema, subject })
            }
            (None, Some(id), None) => {
                let id = u32::try_from(id).map_err(|_| invalid(format!("{role} schema id {id} is out of range")))?;
                Ok(Self::Id(id))
            }
            (None, None, Some(version)) => {
                let version = i32::try_from(version)
                    .ok()
                    .filter(|version| *version > 0)
                    .ok_or_else(|| invalid(format!("{role} schema version {version} must be a positive integer")))?;
                Ok(Self::Version { subject, version })
            }
            _ => Err(invalid(format!("give at most one of the {role} schema, its id and its version"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_select_one_schema_and_subjects_follow_the_topic() {
        let select = |schema: Option<&str>, id, version, subject: Option<&str>| {
            SchemaSelection::from_fields(
                SchemaRole::Value,
                schema.map(Into::into),
                id,
                version,
                subject.map(Into::into),
            )
        };
        assert_eq!(select(None, None, None, None), Ok(SchemaSelection::Latest { subject: None }));
        assert_eq!(select(None, Some(7), None, None), Ok(SchemaSelection::Id(7)));
        assert_eq!(
            select(None, None, Some(2), Some("s")),
            Ok(SchemaSelection::Version { subject: Some("s".into()), version: 2 })
        );
        assert_eq!(select(Some("\"int\""), Some(7), None, None).expect_err("both").code, ErrorCode::InvalidRequest);
        assert!(select(None, Some(-1), None, None).is_err());
        assert!(select(None, None, Some(0), None).is_err());
        assert!(select(None, None, None, Some(" ")).is_err());
        assert_eq!(SchemaRole::Key.subject("orders"), "orders-key");
        assert_eq!(SchemaRole::Value.subject("orders"), "orders-value");
    }
}
