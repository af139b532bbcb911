//! The `auth` section: bearer JWTs on the HTTP and gRPC APIs and the admin port, the scopes each
//! kind of route needs, and whether a listener may leave loopback without them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Inbound authentication. Off by default, in which case every listener must be on loopback
/// unless `allow_insecure_bind` says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Require a valid bearer token on every API and admin route (health and metrics excepted).
    pub enabled: bool,
    /// A JWKS document on disk (RS256/ES256/EdDSA keys); re-read every `jwks_refresh_ms`.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL; fetched at start, every `jwks_refresh_ms`, and when a token names an unknown key.
    pub jwks_url: String,
    /// How often the key set is refreshed (key rotation).
    pub jwks_refresh_ms: u64,
    /// A shared secret for HS256 tokens; prefer `hs256_secret_file`.
    pub hs256_secret: Option<Secret>,
    /// A file holding the HS256 secret.
    pub hs256_secret_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Scope needed to produce (seed 002: `kafka:w`).
    pub produce_scope: String,
    /// Scope needed to consume and read topic metadata (seed 002: `kafka:r`).
    pub consume_scope: String,
    /// Scope needed for the admin port's operator routes.
    pub admin_scope: String,
    /// Extra scopes per topic: `orders.*: orders:w` means producing to `orders.eu` also needs
    /// `orders:w`. A trailing `*` matches any suffix; otherwise the name must match exactly.
    pub topic_scopes: BTreeMap<String, String>,
    /// Let listeners bind non-loopback addresses without auth (`--allow-insecure-bind`).
    pub allow_insecure_bind: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            jwks_file: None,
            jwks_url: String::new(),
            jwks_refresh_ms: 300_000,
            hs256_secret: None,
            hs256_secret_file: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            produce_scope: "kafka:w".into(),
            consume_scope: "kafka:r".into(),
            admin_scope: "kafka:admin".into(),
            topic_scopes: BTreeMap::new(),
            allow_insecure_bind: false,
        }
    }
}

impl AuthConfig {
    /// The extra scopes producing to or consuming `topic` needs.
    pub fn topic_scopes_for<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.topic_scopes
            .iter()
            .filter(move |(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => pattern.as_str() == topic,
            })
            .map(|(_, scope)| scope.as_str())
    }
}
