//! Keeps secrets out of every view of the configuration: [`redacted`] for `GET /admin/config` and
//! `--print-config`, [`Secret`] for typed secret fields (its `Debug` never shows the value).
//!
//! Redaction goes by key name, at any depth, so raw librdkafka properties (`kafka.properties`,
//! `consumer.properties`, `reactive_consumer.properties`) and any future `*_password`, `*_secret`
//! or `*_token` field are covered without a list to keep in step. Credentials written into a
//! URL (`https://user:password@host`) are redacted wherever they appear.

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::Config;

/// What a redacted value reads as.
pub const REDACTED: &str = "[redacted]";

/// Key fragments (lowercase) that mark a value as secret.
const SECRET_KEY_FRAGMENTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "credential",
    "authorization",
    "sasl.jaas.config",
    "sasl.oauthbearer.config",
    "ssl.key.pem",
    "ssl_key",
    ".key.",
];

/// A secret string from configuration: (de)serialized as the plain string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it (e.g. an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_string())
    }
}

/// The configuration as a tree with every secret replaced by `"[redacted]"`. A YAML value keeps
/// the struct's key order; it serializes as JSON too (`axum::Json`).
pub fn redacted(config: &Config) -> Result<Value, serde_norway::Error> {
    let mut tree = serde_norway::to_value(config)?;
    redact_tree(&mut tree);
    Ok(tree)
}

/// Whether a configuration key or librdkafka property name holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_FRAGMENTS.iter().any(|fragment| key.contains(fragment))
}

fn redact_tree(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping.iter_mut() {
                let secret = key.as_str().is_some_and(is_secret_key);
                if secret && !child.is_null() {
                    *child = Value::String(REDACTED.to_string());
                } else {
                    redact_tree(child);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(redact_tree),
        Value::String(text) => {
            if let Some(clean) = redact_url_credentials(text) {
                *text = clean;
            }
        }
        Value::Tagged(tagged) => redact_tree(&mut tagged.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `scheme://user:password@host` -> `scheme://user:[redacted]@host` for every URL in `text`
/// (`schema_registry.url` holds several); `None` when there is nothing to redact.
fn redact_url_credentials(text: &str) -> Option<String> {
    if !text.contains("://") || !text.contains('@') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(start) = rest.find("://") {
        let authority_start = start + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest.find(['/', '?', '#', ',', ' ']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@').and_then(|at| authority[..at].find(':').map(|colon| (colon, at))) {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Config {
        let mut config = Config::default();
        config.schema_registry.url = "http://registry:8081".into();
        config.schema_registry.basic_auth_user = Some("sidecar".into());
        config.schema_registry.basic_auth_password = Some("registry-pass".into());
        for (key, value) in [
            ("sasl.password", "kafka-pass"),
            ("sasl.jaas.config", "org.apache.kafka...required password=\"jaas-pass\";"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----pem"),
            ("ssl.key.password", "key-pass"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
            ("sasl.username", "alice"),
            ("socket.timeout.ms", "5000"),
        ] {
            config.kafka.properties.insert(key.into(), value.into());
        }
        config.consumer.properties.insert("SSL_KEY".into(), "consumer-key".into());
        config.reactive_consumer.properties.insert("sasl.oauthbearer.token".into(), "reactive-token".into());
        config
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_is_kept() {
        let tree = redacted(&configured()).unwrap();
        let text = serde_norway::to_string(&tree).unwrap();
        for secret in [
            "registry-pass",
            "kafka-pass",
            "jaas-pass",
            "PRIVATE KEY",
            "key-pass",
            "oauth-secret",
            "consumer-key",
            "reactive-token",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert_eq!(tree["schema_registry"]["basic_auth_password"].as_str(), Some(REDACTED));
        assert_eq!(tree["kafka"]["properties"]["sasl.password"].as_str(), Some(REDACTED));
        assert_eq!(tree["consumer"]["properties"]["SSL_KEY"].as_str(), Some(REDACTED));
        assert_eq!(tree["reactive_consumer"]["properties"]["sasl.oauthbearer.token"].as_str(), Some(REDACTED));
        assert_eq!(tree["schema_registry"]["basic_auth_user"].as_str(), Some("sidecar"));
        assert_eq!(tree["kafka"]["properties"]["sasl.username"].as_str(), Some("alice"));
        assert_eq!(tree["kafka"]["properties"]["socket.timeout.ms"].as_str(), Some("5000"));
        assert_eq!(tree["producer"]["linger_ms"].as_u64(), Some(5));
    }

    #[test]
    fn an_unset_secret_stays_null() {
        let tree = redacted(&Config::default()).unwrap();
        assert!(tree["schema_registry"]["basic_auth_password"].is_null());
    }

    #[test]
    fn the_redacted_tree_keeps_the_key_order_and_serializes_as_json() {
        let tree = redacted(&configured()).unwrap();
        let yaml = serde_norway::to_string(&tree).unwrap();
        assert!(yaml.find("kafka:").unwrap() < yaml.find("producer:").unwrap());
        let json = serde_json::to_value(&tree).unwrap();
        assert_eq!(json["schema_registry"]["basic_auth_password"], REDACTED);
        assert_eq!(json["producer"]["linger_ms"], 5);
    }

    #[test]
    fn secret_keys_by_name() {
        for key in ["sasl.password", "ssl.keystore.password", "SASL.JAAS.CONFIG", "ssl.key.location", "hs256_secret"] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["sasl.username", "ssl.ca.location", "bootstrap_servers", "key_format", "ssl.certificate.pem"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(
            redact_url_credentials("https://u:p@a:8081/x,http://b:8081,http://v:q@c").as_deref(),
            Some("https://u:[redacted]@a:8081/x,http://b:8081,http://v:[redacted]@c")
        );
        assert_eq!(redact_url_credentials("http://user@host/path"), None);
        assert_eq!(redact_url_credentials("http://host/a@b:c"), None);
        assert_eq!(redact_url_credentials("no url at all"), None);

        let mut config = Config::default();
        config.reactive_consumer.backend_url = "http://app:s3cret@localhost:8000/events".into();
        let tree = redacted(&config).unwrap();
        assert_eq!(
            tree["reactive_consumer"]["backend_url"].as_str(),
            Some("http://app:[redacted]@localhost:8000/events")
        );
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let config = configured();
        let debug = format!("{:?}", config.schema_registry);
        assert!(!debug.contains("registry-pass"), "{debug}");
        assert!(debug.contains(REDACTED));
        assert_eq!(config.schema_registry.basic_auth_password.as_ref().map(Secret::expose), Some("registry-pass"));
    }

    #[test]
    fn a_secret_reads_and_writes_as_a_plain_string() {
        let secret: Secret = serde_norway::from_str("\"hunter2\"").unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"hunter2\"");
    }
}
