//! Layers the configuration: YAML file, then `KAFKA_SIDECAR_*` environment variables, then CLI
//! overrides; deserializes the result strictly and validates it.
//!
//! Environment variables name a path with `__` between levels:
//! `KAFKA_SIDECAR_PRODUCER__LINGER_MS=10` sets `producer.linger_ms`. Under `kafka.properties` the
//! last segment's `_` become `.`: `KAFKA_SIDECAR_KAFKA__PROPERTIES__SOCKET_TIMEOUT_MS` sets
//! `socket.timeout.ms`. The environment is passed in, never read from a global, so tests inject it.

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::Config;

/// Prefix of every environment variable the sidecar reads.
pub const ENV_PREFIX: &str = "KAFKA_SIDECAR_";

/// Variables with our prefix that belong to clients or tools, not to the daemon's configuration.
const ENV_NOT_CONFIG: &[&str] = &["MODE", "ADDRESS", "CACHE", "TEST_BOOTSTRAP", "CONFIG", "BINARY"];

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// YAML syntax error.
    #[error("configuration file {path} is not valid YAML: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_norway::Error,
    },
    /// An override is not of the form `a.b.c=value` or names no key.
    #[error("bad override {text:?}: {reason}")]
    Override {
        /// The override as given.
        text: String,
        /// Why.
        reason: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Where configuration comes from, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// Optional YAML file.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only `KAFKA_SIDECAR_*` are read).
    pub env: Vec<(String, String)>,
    /// `dotted.path=value` overrides from the command line.
    pub overrides: Vec<String>,
}

impl Config {
    /// Loads, layers, deserializes and validates the configuration.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let mut tree = match &sources.file {
            Some(path) => read_file(path)?,
            None => Value::Mapping(Mapping::new()),
        };
        for (name, value) in &sources.env {
            if let Some(path) = env_path(name)? {
                set_path(&mut tree, &path, parse_scalar(value));
            }
        }
        for text in &sources.overrides {
            let (key, value) = text.split_once('=').ok_or_else(|| ConfigError::Override {
                text: text.clone(),
                reason: "expected dotted.key=value".into(),
            })?;
            set_path(&mut tree, &dotted_path(key), parse_scalar(value));
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|error| {
            let key = error.path().to_string();
            ConfigError::Invalid { key, reason: error.into_inner().to_string() }
        })?;
        config.validate()?;
        Ok(config)
    }
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let value: Value =
        serde_norway::from_str(&text).map_err(|source| ConfigError::Syntax { path: path.to_path_buf(), source })?;
    // An empty file is an empty configuration.
    Ok(if value.is_null() { Value::Mapping(Mapping::new()) } else { value })
}

/// `KAFKA_SIDECAR_PRODUCER__LINGER_MS` -> `["producer", "linger_ms"]`; `None` for other variables.
fn env_path(name: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else { return Ok(None) };
    // Test harnesses own the `KAFKA_SIDECAR_TEST_` prefix (broker, schema registry, ...), and
    // Kubernetes injects `KAFKA_SIDECAR_SERVICE_HOST`, `KAFKA_SIDECAR_PORT_9644_TCP`, ... for a
    // Service named kafka-sidecar: none of them is configuration.
    let service_link = rest.starts_with("SERVICE_") || rest == "PORT" || rest.starts_with("PORT_");
    if ENV_NOT_CONFIG.contains(&rest) || rest.starts_with("TEST_") || service_link {
        return Ok(None);
    }
    if !rest.contains("__") {
        return Err(ConfigError::Invalid {
            key: name.to_string(),
            reason: "environment overrides name a path with `__` between levels, \
                     e.g. KAFKA_SIDECAR_PRODUCER__LINGER_MS"
                .into(),
        });
    }
    let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.len() == 3 && PASS_THROUGH_SECTIONS.contains(&path[0].as_str()) && path[1] == "properties" {
        path[2] = path[2].replace('_', ".");
    }
    Ok(Some(path))
}

/// Sections whose `properties` map passes raw librdkafka properties through.
const PASS_THROUGH_SECTIONS: &[&str] = &["kafka", "consumer", "reactive_consumer"];

/// `kafka.properties.socket.timeout.ms` (and `consumer.properties...`) keeps the property name whole.
fn dotted_path(key: &str) -> Vec<String> {
    for section in PASS_THROUGH_SECTIONS {
        if let Some(property) = key.strip_prefix(&format!("{section}.properties.")) {
            return vec![(*section).into(), "properties".into(), property.into()];
        }
    }
    key.split('.').map(str::to_string).collect()
}

/// Environment and CLI values are YAML scalars, so `10` is a number and `true` a bool.
fn parse_scalar(text: &str) -> Value {
    match serde_norway::from_str::<Value>(text) {
        Ok(value @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => value,
        Ok(Value::Null) if text.is_empty() => Value::String(String::new()),
        _ => Value::String(text.to_string()),
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = tree;
    for segment in parents {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        node = map.entry(Value::String(segment.clone())).or_insert(Value::Mapping(Mapping::new()));
    }
    if !node.is_mapping() {
        *node = Value::Mapping(Mapping::new());
    }
    if let Value::Mapping(map) = node {
        map.insert(Value::String(last.clone()), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;

    fn load(yaml: &str, env: &[(&str, &str)], overrides: &[&str]) -> Result<Config, ConfigError> {
        let file = tempfile::NamedTempFile::new()
            .map_err(|source| ConfigError::Read { path: PathBuf::from("tmp"), source })?;
        std::fs::write(file.path(), yaml)
            .map_err(|source| ConfigError::Read { path: file.path().to_path_buf(), source })?;
        Config::load(&ConfigSources {
            file: Some(file.path().to_path_buf()),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn defaults_are_sidecar_sized() {
        let config = load("", &[], &[]).expect("empty file loads");
        assert!(config.kafka.uses_dev_broker());
        assert_eq!(config.producer.max_buffered_bytes, 16 * 1024 * 1024);
        assert_eq!(config.producer.compression, Compression::Lz4);
        assert!(config.grpc.listen.ip().is_loopback());
        assert!(config.http.listen.ip().is_loopback());
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let config = load(
            "producer:\n  linger_ms: 1\nkafka:\n  bootstrap_servers: a:9092\n",
            &[
                ("KAFKA_SIDECAR_PRODUCER__LINGER_MS", "7"),
                ("KAFKA_SIDECAR_KAFKA__PROPERTIES__SOCKET_TIMEOUT_MS", "1234"),
                ("KAFKA_SIDECAR_MODE", "auto"),
                ("PATH", "/bin"),
            ],
            &[
                "producer.linger_ms=9",
                "kafka.properties.client.id=orders",
                "consumer.properties.session.timeout.ms=6000",
            ],
        )
        .expect("loads");
        assert_eq!(config.producer.linger_ms, 9);
        assert_eq!(config.kafka.bootstrap_servers, "a:9092");
        assert_eq!(config.kafka.properties["socket.timeout.ms"], "1234");
        assert_eq!(config.kafka.properties["client.id"], "orders");
        assert_eq!(config.consumer.properties["session.timeout.ms"], "6000");
    }

    #[test]
    fn unknown_key_is_named() {
        let error = load("producer:\n  lingr_ms: 5\n", &[], &[]).expect_err("unknown key");
        let text = error.to_string();
        assert!(text.contains("producer") && text.contains("lingr_ms"), "{text}");
    }

    #[test]
    fn wrong_type_is_named() {
        let error = load("", &[("KAFKA_SIDECAR_PRODUCER__LINGER_MS", "soon")], &[]).expect_err("bad type");
        assert!(error.to_string().contains("producer.linger_ms"), "{error}");
    }

    #[test]
    fn env_without_path_separator_is_rejected() {
        let error = load("", &[("KAFKA_SIDECAR_LINGER", "5")], &[]).expect_err("no __");
        assert!(error.to_string().contains("KAFKA_SIDECAR_LINGER"), "{error}");
        let harness = [("KAFKA_SIDECAR_TEST_SCHEMA_REGISTRY", "http://127.0.0.1:8081")];
        assert!(load("", &harness, &[]).is_ok(), "test harness variables are not configuration");
        let service_links = [
            ("KAFKA_SIDECAR_SERVICE_HOST", "10.0.0.7"),
            ("KAFKA_SIDECAR_PORT", "tcp://10.0.0.7:9644"),
            ("KAFKA_SIDECAR_PORT_9644_TCP_ADDR", "10.0.0.7"),
        ];
        assert!(load("", &service_links, &[]).is_ok(), "Kubernetes service links are not configuration");
    }

    #[test]
    fn override_without_equals_is_rejected() {
        assert!(matches!(load("", &[], &["producer.linger_ms"]), Err(ConfigError::Override { .. })));
    }
}
