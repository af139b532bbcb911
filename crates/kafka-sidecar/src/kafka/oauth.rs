//! OAUTHBEARER tokens for librdkafka, made in Rust (the build has no libcurl, so librdkafka's own
//! OIDC client is not there). librdkafka asks for a token through the clients' refresh callback
//! (`ClientContext::generate_oauth_token`, enabled in the producer's and the consumer instances'
//! contexts) at start and again at 80% of the previous token's lifetime.
//!
//! Two sources:
//! * a token file, re-read at every refresh: a Kubernetes projected service account token is
//!   rotated in place by the kubelet;
//! * an OAuth2 token endpoint, client-credentials grant (client id and secret in HTTP basic auth,
//!   optional scope).
//!
//! A JWT's `exp` sets the lifetime and its `sub` the principal (unless `principal` is configured);
//! an opaque token lives `default_lifetime_ms`. The callback runs on a librdkafka polling thread,
//! never on the async runtime: an endpoint request runs on a short-lived thread of its own with its
//! own small runtime, so it works whichever thread librdkafka polls from.
//!
//! The short-lived lag client uses [`OAuthClientContext`] and polls once after creation, which
//! hands librdkafka its first token. The reactive consumer's admin client (dead letter topic
//! creation) and redrive reader keep librdkafka's default context: with OAUTHBEARER, create dead
//! letter topics beforehand, and redrive is not available.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;

use crate::config::{KafkaSecurityConfig, Secret};

/// Why no token could be made. The text never holds a secret or the token.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The token file cannot be read.
    #[error("cannot read the OAUTHBEARER token file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file or the endpoint's answer holds no token.
    #[error("the OAUTHBEARER token from {0} is empty")]
    Empty(String),
    /// The token endpoint failed or answered something else than a token.
    #[error("OAUTHBEARER token endpoint {url}: {reason}")]
    Endpoint {
        /// The endpoint.
        url: String,
        /// Why.
        reason: String,
    },
    /// OAUTHBEARER was asked for without `kafka.security.sasl.oauthbearer`.
    #[error("OAUTHBEARER needs kafka.security.sasl.oauthbearer (token_file or token_endpoint_url)")]
    NotConfigured,
}

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Endpoint { url: String, client_id: String, client_secret: Secret, scope: Option<String>, timeout: Duration },
}

/// Makes OAUTHBEARER tokens from the configured source.
#[derive(Debug)]
pub struct OAuthTokenSource {
    source: Source,
    principal: Option<String>,
    default_lifetime: Duration,
}

impl OAuthTokenSource {
    /// The token source of `security`, when it uses OAUTHBEARER. The client secret file is read
    /// here (validated at start-up); an unreadable one is an error.
    pub fn from_config(security: &KafkaSecurityConfig) -> Result<Option<Self>, crate::config::SecretFileError> {
        if !security.uses_oauthbearer() {
            return Ok(None);
        }
        let oauth = &security.sasl.oauthbearer;
        let source = match (&oauth.token_file, &oauth.token_endpoint_url) {
            (Some(path), _) => Source::File(path.clone()),
            (None, Some(url)) => {
                let secret = crate::config::kafka_security_resolve(
                    "sasl.oauthbearer.client_secret_file",
                    oauth.client_secret.as_ref(),
                    oauth.client_secret_file.as_deref(),
                )?;
                Source::Endpoint {
                    url: url.clone(),
                    client_id: oauth.client_id.clone().unwrap_or_default(),
                    client_secret: secret.unwrap_or_else(|| Secret::new("")),
                    scope: oauth.scope.clone(),
                    timeout: Duration::from_millis(oauth.request_timeout_ms),
                }
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Self {
            source,
            principal: oauth.principal.clone(),
            default_lifetime: Duration::from_millis(oauth.default_lifetime_ms),
        }))
    }

    /// A fresh token for librdkafka.
    pub fn token(&self) -> Result<OAuthToken, OAuthError> {
        let (token, expires_in) = match &self.source {
            Source::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| OAuthError::File { path: path.clone(), source })?;
                (text.trim().to_string(), None)
            }
            Source::Endpoint { url, .. } => self.fetch(url)?,
        };
        if token.is_empty() {
            return Err(OAuthError::Empty(self.describe()));
        }
        let claims = jwt_claims(&token);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64);
        let lifetime_ms = claims
            .as_ref()
            .and_then(|claims| claims.get("exp"))
            .and_then(serde_json::Value::as_i64)
            .map(|exp| exp.saturating_mul(1000))
            .or_else(|| expires_in.map(|seconds| now_ms.saturating_add(seconds.saturating_mul(1000))))
            .unwrap_or_else(|| now_ms.saturating_add(self.default_lifetime.as_millis() as i64));
        let principal_name = self
            .principal
            .clone()
            .or_else(|| claims.as_ref().and_then(|claims| claims.get("sub")?.as_str().map(str::to_string)))
            .unwrap_or_else(|| "kafka-sidecar".to_string());
        Ok(OAuthToken { token, principal_name, lifetime_ms })
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Endpoint { url, .. } => url.clone(),
        }
    }

    /// One client-credentials request, on a thread of its own (see the module doc).
    fn fetch(&self, url: &str) -> Result<(String, Option<i64>), OAuthError> {
        let Source::Endpoint { client_id, client_secret, scope, timeout, .. } = &self.source else {
            return Err(OAuthError::NotConfigured);
        };
        let failed = |reason: String| OAuthError::Endpoint { url: url.to_string(), reason };
        let request = async {
            let client =
                reqwest::Client::builder().timeout(*timeout).build().map_err(|error| failed(error.to_string()))?;
            let mut form = vec![("grant_type", "client_credentials")];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            let response = client
                .post(url)
                .basic_auth(client_id, Some(client_secret.expose()))
                .form(&form)
                .send()
                .await
                .map_err(|error| failed(error.without_url().to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(failed(format!("answered HTTP {status}")));
            }
            let body: serde_json::Value = response
                .json()
                .await
                .map_err(|error| failed(format!("not a token answer: {}", error.without_url())))?;
            let token = body.get("access_token").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
            Ok((token, body.get("expires_in").and_then(serde_json::Value::as_i64)))
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|error| failed(format!("cannot start a runtime: {error}")))?;
                    runtime.block_on(request)
                })
                .join()
                .unwrap_or_else(|_| Err(failed("the request thread panicked".into())))
        })
    }
}

/// A context for short-lived consumers (lag lookups): only the token callback.
pub struct OAuthClientContext {
    source: Option<OAuthTokenSource>,
}

impl OAuthClientContext {
    /// Tokens from `security`'s source, when it uses OAUTHBEARER.
    pub fn new(security: &KafkaSecurityConfig) -> Result<Self, crate::config::SecretFileError> {
        Ok(Self { source: OAuthTokenSource::from_config(security)? })
    }
}

impl ClientContext for OAuthClientContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        generate(self.source.as_ref())
    }
}

impl ConsumerContext for OAuthClientContext {}

/// The claims of a JWT (`header.claims.signature`, base64url); `None` for an opaque token.
fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (_, claims, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else { return None };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The callback's answer: a token, or an error librdkafka reports (and retries).
pub fn generate(source: Option<&OAuthTokenSource>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
    let token = source.ok_or(OAuthError::NotConfigured)?.token();
    if let Err(error) = &token {
        tracing::warn!(error = %error, "cannot make an OAUTHBEARER token");
    }
    Ok(token?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslMechanism, SecurityProtocol};

    fn file_source(path: PathBuf) -> OAuthTokenSource {
        let mut security = KafkaSecurityConfig { protocol: SecurityProtocol::SaslPlaintext, ..Default::default() };
        security.sasl.mechanism = Some(SaslMechanism::OAuthBearer);
        security.sasl.oauthbearer.token_file = Some(path);
        OAuthTokenSource::from_config(&security).unwrap().unwrap()
    }

    #[test]
    fn a_jwt_sets_principal_and_lifetime_and_the_file_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"svc-a","exp":4102444800}"#);
        let jwt = format!("eyJhbGciOiJub25lIn0.{claims}.sig");
        std::fs::write(&path, format!("{jwt}\n")).unwrap();
        let source = file_source(path.clone());
        let token = source.token().unwrap();
        assert_eq!(token.token, jwt);
        assert_eq!(token.principal_name, "svc-a");
        assert_eq!(token.lifetime_ms, 4_102_444_800_000);

        std::fs::write(&path, "opaque-token").unwrap();
        let token = source.token().unwrap();
        assert_eq!(token.token, "opaque-token");
        assert_eq!(token.principal_name, "kafka-sidecar");
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((token.lifetime_ms - now_ms - 300_000).abs() < 10_000);
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let source = file_source(path.clone());
        assert!(matches!(source.token(), Err(OAuthError::Empty(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(source.token(), Err(OAuthError::File { .. })));
        assert!(generate(None).is_err());
    }
}
