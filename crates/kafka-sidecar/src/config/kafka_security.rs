//! The `kafka.security` section: how the sidecar's Kafka clients (the producer, every consumer
//! instance, the reactive consumer and the short-lived lag and admin clients) authenticate to the
//! brokers and protect the connection: TLS with a custom CA and an optional client certificate
//! (mTLS), and SASL PLAIN, SCRAM-SHA-256/512 or OAUTHBEARER.
//!
//! Secrets come inline (`password`), from a file (`password_file`, e.g. a Kubernetes secret
//! mount; re-read whenever a client is created, so a rotated secret reaches new consumers), or from
//! the environment through the usual layer (`KAFKA_SIDECAR_KAFKA__SECURITY__SASL__PASSWORD`).
//! Inline secrets are [`Secret`]s: `Debug`, `/admin/config` and `--print-config` never show them.
//!
//! Every check that can be made before connecting is made at start-up, with the failing key
//! named: files exist and are readable, a SASL mechanism has what it needs, TLS keys are not set
//! on a plaintext connection, and raw `*.properties` do not fight the typed keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigError, Secret};

/// `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL (librdkafka's default).
    #[default]
    Plaintext,
    /// TLS, no SASL (a client certificate, when configured, authenticates).
    Ssl,
    /// SASL over a plaintext connection.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User name and password in the clear (use it over TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// A bearer token (from a file or an OAuth2 token endpoint), refreshed by the sidecar.
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Outbound security to Kafka. The default is plaintext without SASL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurityConfig {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// TLS settings, for `ssl` and `sasl_ssl`.
    pub tls: KafkaTlsConfig,
    /// SASL settings, for `sasl_plaintext` and `sasl_ssl`.
    pub sasl: KafkaSaslConfig,
}

/// TLS to the brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTlsConfig {
    /// PEM CA certificates that sign the brokers' certificates; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for mTLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
    /// The private key's password, when it is encrypted.
    #[serde(deserialize_with = "optional_scalar_secret")]
    pub key_password: Option<Secret>,
    /// A file holding the private key's password.
    pub key_password_file: Option<PathBuf>,
    /// Check that the broker's certificate names the host connected to.
    pub verify_hostname: bool,
}

impl Default for KafkaTlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            key_password_file: None,
            verify_hostname: true,
        }
    }
}

/// SASL authentication to the brokers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub mechanism: Option<SaslMechanism>,
    /// User name (PLAIN, SCRAM).
    pub username: Option<String>,
    /// A file holding the user name.
    pub username_file: Option<PathBuf>,
    /// Password (PLAIN, SCRAM); prefer `password_file`.
    #[serde(deserialize_with = "optional_scalar_secret")]
    pub password: Option<Secret>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// OAUTHBEARER's token source.
    pub oauthbearer: OAuthBearerConfig,
}

/// Where OAUTHBEARER tokens come from: a file re-read at every refresh (a Kubernetes projected
/// service account token), or an OAuth2 client-credentials token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthBearerConfig {
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// An OAuth2 token endpoint (client-credentials grant).
    pub token_endpoint_url: Option<String>,
    /// The client id at the token endpoint.
    pub client_id: Option<String>,
    /// The client secret at the token endpoint.
    #[serde(deserialize_with = "optional_scalar_secret")]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// Requested scope(s), space-separated.
    pub scope: Option<String>,
    /// The principal named to the broker; the token's `sub` claim when unset.
    pub principal: Option<String>,
    /// Lifetime assumed for a token without an `exp` claim (and for a file's token: it is re-read
    /// at least this often). librdkafka refreshes at 80% of it.
    pub default_lifetime_ms: u64,
    /// How long one token endpoint request may take.
    pub request_timeout_ms: u64,
}

impl Default for OAuthBearerConfig {
    fn default() -> Self {
        Self {
            token_file: None,
            token_endpoint_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scope: None,
            principal: None,
            default_lifetime_ms: 300_000,
            request_timeout_ms: 10_000,
        }
    }
}

/// librdkafka properties the typed keys set: raw properties may not set them as well.
const TYPED_PROPERTIES: &[(&str, &str)] = &[
    ("security.protocol", "protocol"),
    ("ssl.ca.location", "tls.ca_file"),
    ("ssl.ca.pem", "tls.ca_file"),
    ("ssl.certificate.location", "tls.cert_file"),
    ("ssl.certificate.pem", "tls.cert_file"),
    ("ssl.key.location", "tls.key_file"),
    ("ssl.key.pem", "tls.key_file"),
    ("ssl.key.password", "tls.key_password"),
    ("ssl.endpoint.identification.algorithm", "tls.verify_hostname"),
    ("sasl.mechanism", "sasl.mechanism"),
    ("sasl.mechanisms", "sasl.mechanism"),
    ("sasl.username", "sasl.username"),
    ("sasl.password", "sasl.password"),
    ("sasl.oauthbearer.method", "sasl.oauthbearer"),
    ("sasl.oauthbearer.config", "sasl.oauthbearer"),
];

/// A secret or value file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {key} {path}: {source}")]
pub struct SecretFileError {
    /// The configuration key naming the file.
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("kafka.security.{key}"), reason: reason.into() }
}

impl KafkaSecurityConfig {
    /// Whether anything but plaintext is configured.
    pub fn is_configured(&self) -> bool {
        self.protocol != SecurityProtocol::Plaintext
    }

    /// Start-up checks; `properties` are the raw librdkafka maps (section name, map).
    pub fn validate(
        &self,
        dev_broker: bool,
        properties: &[(&str, &BTreeMap<String, String>)],
    ) -> Result<(), ConfigError> {
        if self.is_configured() && dev_broker {
            return Err(invalid(
                "protocol",
                "needs kafka.bootstrap_servers: the embedded dev broker speaks plaintext only",
            ));
        }
        if self.is_configured() {
            for (section, map) in properties {
                if let Some((property, key)) = TYPED_PROPERTIES.iter().find(|(property, _)| map.contains_key(*property))
                {
                    return Err(ConfigError::Invalid {
                        key: format!("{section}.{property}"),
                        reason: format!("kafka.security is configured: set kafka.security.{key} instead"),
                    });
                }
            }
        }
        self.validate_tls()?;
        self.validate_sasl()
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        let files = [("tls.ca_file", &tls.ca_file), ("tls.cert_file", &tls.cert_file), ("tls.key_file", &tls.key_file)];
        let any_set = files.iter().any(|(_, file)| file.is_some())
            || tls.key_password.is_some()
            || tls.key_password_file.is_some()
            || !tls.verify_hostname;
        if any_set && !self.protocol.uses_tls() {
            return Err(invalid("tls", format!("is set but kafka.security.protocol is {}", self.protocol.as_str())));
        }
        for (key, file) in files {
            if let Some(path) = file {
                check_readable(key, path)?;
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid("tls.cert_file", "tls.cert_file and tls.key_file go together"));
        }
        one_of("tls.key_password", tls.key_password.is_some(), "tls.key_password_file", &tls.key_password_file)?;
        if (tls.key_password.is_some() || tls.key_password_file.is_some()) && tls.key_file.is_none() {
            return Err(invalid("tls.key_password", "needs tls.key_file"));
        }
        Ok(())
    }

    fn validate_sasl(&self) -> Result<(), ConfigError> {
        let sasl = &self.sasl;
        let Some(mechanism) = sasl.mechanism else {
            if self.protocol.uses_sasl() {
                return Err(invalid("sasl.mechanism", format!("is needed with protocol {}", self.protocol.as_str())));
            }
            if sasl != &KafkaSaslConfig::default() {
                return Err(invalid("sasl", "is set but kafka.security.sasl.mechanism is not"));
            }
            return Ok(());
        };
        if !self.protocol.uses_sasl() {
            return Err(invalid(
                "sasl.mechanism",
                format!(
                    "is set but kafka.security.protocol is {} (use sasl_ssl or sasl_plaintext)",
                    self.protocol.as_str()
                ),
            ));
        }
        one_of("sasl.username", sasl.username.is_some(), "sasl.username_file", &sasl.username_file)?;
        one_of("sasl.password", sasl.password.is_some(), "sasl.password_file", &sasl.password_file)?;
        if mechanism == SaslMechanism::OAuthBearer {
            return self.validate_oauthbearer();
        }
        if sasl.username.as_ref().is_none_or(|name| name.is_empty()) && sasl.username_file.is_none() {
            return Err(invalid("sasl.username", format!("is needed with mechanism {}", mechanism.as_str())));
        }
        if sasl.password.is_none() && sasl.password_file.is_none() {
            return Err(invalid(
                "sasl.password",
                format!("(or sasl.password_file) is needed with mechanism {}", mechanism.as_str()),
            ));
        }
        if sasl.oauthbearer != OAuthBearerConfig::default() {
            return Err(invalid("sasl.oauthbearer", "is only for mechanism OAUTHBEARER"));
        }
        for (key, file) in [("sasl.username_file", &sasl.username_file), ("sasl.password_file", &sasl.password_file)] {
            if let Some(path) = file {
                check_readable(key, path)?;
            }
        }
        Ok(())
    }

    fn validate_oauthbearer(&self) -> Result<(), ConfigError> {
        let oauth = &self.sasl.oauthbearer;
        if self.sasl.password.is_some() || self.sasl.password_file.is_some() {
            return Err(invalid("sasl.password", "is not used by OAUTHBEARER: configure sasl.oauthbearer"));
        }
        match (&oauth.token_file, &oauth.token_endpoint_url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "sasl.oauthbearer.token_file",
                    "set it or sasl.oauthbearer.token_endpoint_url, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "sasl.oauthbearer",
                    "OAUTHBEARER needs sasl.oauthbearer.token_file or sasl.oauthbearer.token_endpoint_url",
                ));
            }
            (Some(path), None) => check_readable("sasl.oauthbearer.token_file", path)?,
            (None, Some(url)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid("sasl.oauthbearer.token_endpoint_url", "must be an http:// or https:// URL"));
                }
                if oauth.client_id.as_ref().is_none_or(|id| id.is_empty()) {
                    return Err(invalid("sasl.oauthbearer.client_id", "is needed with a token endpoint"));
                }
                one_of(
                    "sasl.oauthbearer.client_secret",
                    oauth.client_secret.is_some(),
                    "sasl.oauthbearer.client_secret_file",
                    &oauth.client_secret_file,
                )?;
                match &oauth.client_secret_file {
                    Some(path) => check_readable("sasl.oauthbearer.client_secret_file", path)?,
                    None if oauth.client_secret.is_none() => {
                        return Err(invalid("sasl.oauthbearer.client_secret", "is needed with a token endpoint"));
                    }
                    None => {}
                }
            }
        }
        if !(1_000..=86_400_000).contains(&oauth.default_lifetime_ms) {
            return Err(invalid("sasl.oauthbearer.default_lifetime_ms", "must be between 1000 and 86400000"));
        }
        if oauth.request_timeout_ms == 0 {
            return Err(invalid("sasl.oauthbearer.request_timeout_ms", "must be positive"));
        }
        Ok(())
    }

    /// The librdkafka properties of this section, secrets read from their files now. OAUTHBEARER
    /// sets only the mechanism: the token comes from the clients' refresh callback
    /// (`kafka::oauth`).
    pub fn librdkafka_properties(&self) -> Result<Vec<(&'static str, String)>, SecretFileError> {
        let mut properties = Vec::new();
        if !self.is_configured() {
            return Ok(properties);
        }
        properties.push(("security.protocol", self.protocol.as_str().to_string()));
        if self.protocol.uses_tls() {
            let tls = &self.tls;
            let ca = tls.ca_file.as_ref().map_or_else(|| "probe".to_string(), |path| path.display().to_string());
            properties.push(("ssl.ca.location", ca));
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                properties.push(("ssl.certificate.location", cert.display().to_string()));
                properties.push(("ssl.key.location", key.display().to_string()));
            }
            if let Some(password) =
                resolve("tls.key_password_file", tls.key_password.as_ref(), tls.key_password_file.as_deref())?
            {
                properties.push(("ssl.key.password", password.expose().to_string()));
            }
            let algorithm = if tls.verify_hostname { "https" } else { "none" };
            properties.push(("ssl.endpoint.identification.algorithm", algorithm.to_string()));
        }
        if let (true, Some(mechanism)) = (self.protocol.uses_sasl(), self.sasl.mechanism) {
            let sasl = &self.sasl;
            properties.push(("sasl.mechanism", mechanism.as_str().to_string()));
            if mechanism != SaslMechanism::OAuthBearer {
                let username = match (&sasl.username, &sasl.username_file) {
                    (Some(name), _) => Some(name.clone()),
                    (None, Some(path)) => Some(read_trimmed("sasl.username_file", path)?),
                    (None, None) => None,
                };
                if let Some(username) = username {
                    properties.push(("sasl.username", username));
                }
                if let Some(password) =
                    resolve("sasl.password_file", sasl.password.as_ref(), sasl.password_file.as_deref())?
                {
                    properties.push(("sasl.password", password.expose().to_string()));
                }
            }
        }
        Ok(properties)
    }

    /// Whether clients need the OAUTHBEARER refresh callback.
    pub fn uses_oauthbearer(&self) -> bool {
        self.protocol.uses_sasl() && self.sasl.mechanism == Some(SaslMechanism::OAuthBearer)
    }
}

/// An inline secret or the (trimmed) content of its file.
pub fn resolve(key: &str, inline: Option<&Secret>, file: Option<&Path>) -> Result<Option<Secret>, SecretFileError> {
    match (inline, file) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, Some(path)) => read_trimmed(key, path).map(|text| Some(Secret::new(text))),
        (None, None) => Ok(None),
    }
}

/// A file's content without the trailing newline a secret mount or `echo` leaves.
pub fn read_trimmed(key: &str, path: &Path) -> Result<String, SecretFileError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|source| SecretFileError { key: format!("kafka.security.{key}"), path: path.to_path_buf(), source })
}

fn check_readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    let file =
        std::fs::File::open(path).map_err(|error| invalid(key, format!("cannot read {}: {error}", path.display())))?;
    let is_file = file.metadata().map(|metadata| metadata.is_file()).unwrap_or(false);
    if !is_file {
        return Err(invalid(key, format!("{} is not a file", path.display())));
    }
    Ok(())
}

fn one_of(key: &str, inline: bool, file_key: &str, file: &Option<PathBuf>) -> Result<(), ConfigError> {
    if inline && file.is_some() {
        return Err(invalid(key, format!("set it or kafka.security.{file_key}, not both")));
    }
    Ok(())
}

/// A secret given as any YAML scalar: an environment variable's `12345` parses as a number.
fn optional_scalar_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    use serde::de::Error;
    let value = Option::<serde_norway::Value>::deserialize(deserializer)?;
    match value {
        None | Some(serde_norway::Value::Null) => Ok(None),
        Some(serde_norway::Value::String(text)) => Ok(Some(Secret::new(text))),
        Some(serde_norway::Value::Number(number)) => Ok(Some(Secret::new(number.to_string()))),
        Some(serde_norway::Value::Bool(flag)) => Ok(Some(Secret::new(flag.to_string()))),
        Some(_) => Err(D::Error::custom("a secret must be a string")),
    }
}

#[cfg(test)]
#[path = "kafka_security_tests.rs"]
mod tests;
