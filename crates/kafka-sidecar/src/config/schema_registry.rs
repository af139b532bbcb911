//! The `schema_registry` section: where the Confluent-compatible registry is, how to authenticate
//! to it, and how much of it the sidecar keeps in memory.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

/// How to reach the schema registry. No URL means schema formats are refused with
/// `UNSUPPORTED_FORMAT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaRegistryConfig {
    /// One or several registry URLs, comma-separated; the next is tried when one does not answer.
    pub url: String,
    /// Basic auth user name.
    pub basic_auth_user: Option<String>,
    /// Basic auth password; `Debug` and the config views redact it.
    pub basic_auth_password: Option<Secret>,
    /// A PEM file of CA certificates to trust for `https` URLs, besides the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// How long one registry request may take.
    pub request_timeout_ms: u64,
    /// Schemas kept by id (ids are immutable, so entries live until this bound evicts them).
    pub cache_max_schemas: usize,
    /// How long "the latest version of a subject" is trusted before it is asked again.
    pub latest_ttl_ms: u64,
    /// After the registry failed to answer, requests that need it fail fast for this long.
    pub unavailable_backoff_ms: u64,
    /// How long an id the registry does not know (or whose schema does not parse) is answered
    /// from memory: a topic full of records with made-up ids then costs one registry request per
    /// id per period instead of one per fetch. 0 asks every time.
    pub unknown_id_ttl_ms: u64,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            basic_auth_user: None,
            basic_auth_password: None,
            ca_file: None,
            request_timeout_ms: 5_000,
            cache_max_schemas: 1_000,
            latest_ttl_ms: 30_000,
            unavailable_backoff_ms: 1_000,
            unknown_id_ttl_ms: 2_000,
        }
    }
}

impl SchemaRegistryConfig {
    /// The registry URLs, trimmed, without trailing slashes.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(|url| url.trim().trim_end_matches('/').to_string())
            .filter(|url| !url.is_empty())
            .collect()
    }

    /// Whether a registry is configured.
    pub fn is_configured(&self) -> bool {
        !self.urls().is_empty()
    }
}
