//! Inbound authentication and authorization, one code path for HTTP, gRPC and the admin port: a
//! bearer JWT is verified ([`Authenticator::authenticate`]) and its scopes checked against what
//! the route needs ([`Authenticator::authorize`]). The edges only find the token and translate
//! an [`AuthFailure`] into a 401/403 with `WWW-Authenticate`, or UNAUTHENTICATED/PERMISSION_DENIED.
//!
//! Verification: RS*/PS*/ES256/ES384/EdDSA against the JWKS (by `kid`, else every key of the
//! algorithm's family), HS256 against the configured secret only. `alg: none` and every other
//! algorithm are refused, and a key is only ever used with its own family's algorithms, so a public
//! key cannot be abused as an HMAC secret. `exp` is required; `exp`, `nbf`, `iss` and `aud` are
//! checked with `auth.leeway_seconds` of clock skew.

mod keys;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use self::keys::KeyStore;
use crate::config::AuthConfig;
use crate::error::{ErrorCode, SidecarError};

/// What a route does, and so which configured scope it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Produce records (`auth.produce_scope`, plus `auth.topic_scopes` of the topic).
    Produce,
    /// Consume records or read topic metadata (`auth.consume_scope`, plus topic scopes).
    Consume,
    /// Operator routes on the admin port (`auth.admin_scope`).
    Admin,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub subject: String,
    /// `client_id` (or `azp`), when the token has one.
    pub client_id: Option<String>,
    scopes: HashSet<String>,
}

impl Identity {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// A refusal: the error for the body or status, and the `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// `UNAUTHENTICATED` or `FORBIDDEN`, with a message naming the problem or the missing scope.
    pub error: SidecarError,
    /// The `WWW-Authenticate` header value (RFC 6750).
    pub challenge: String,
}

impl AuthFailure {
    fn unauthenticated(token_sent: bool, message: impl Into<String>) -> Self {
        let message = message.into();
        let challenge = if token_sent {
            format!(r#"Bearer realm="kafka-sidecar", error="invalid_token", error_description="{}""#, quoted(&message))
        } else {
            r#"Bearer realm="kafka-sidecar""#.to_string()
        };
        Self { error: SidecarError::new(ErrorCode::Unauthenticated, message), challenge }
    }

    fn forbidden(scope: &str) -> Self {
        Self {
            error: SidecarError::new(ErrorCode::Forbidden, format!("the token lacks the scope {scope:?}")),
            challenge: format!(
                r#"Bearer realm="kafka-sidecar", error="insufficient_scope", scope="{}""#,
                quoted(scope)
            ),
        }
    }
}

/// A header value cannot hold quotes or control characters inside a quoted string.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

/// Verifies tokens and checks scopes; shared by every edge.
pub struct Authenticator {
    keys: Arc<KeyStore>,
    config: AuthConfig,
}

impl Authenticator {
    /// The authenticator when `auth.enabled`, with its keys loaded and their refresh running.
    pub async fn start(config: &AuthConfig) -> anyhow::Result<Option<Arc<Self>>> {
        if !config.enabled {
            return Ok(None);
        }
        let keys = KeyStore::load(config).await?;
        tokio::spawn(Arc::clone(&keys).refresh_forever(Duration::from_millis(config.jwks_refresh_ms)));
        Ok(Some(Arc::new(Self { keys, config: config.clone() })))
    }

    /// Verifies the `Authorization` header's bearer token.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthFailure> {
        let Some(header) = authorization else {
            return Err(AuthFailure::unauthenticated(false, "a bearer token is required"));
        };
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
            _ => return Err(AuthFailure::unauthenticated(true, "the Authorization header must be 'Bearer <token>'")),
        };
        let header = jsonwebtoken::decode_header(token).map_err(|error| {
            // `alg: none` (or any algorithm we do not know) fails here, before any key is looked at.
            AuthFailure::unauthenticated(
                true,
                format!("the token does not parse or its algorithm is not accepted: {error}"),
            )
        })?;
        let claims = self.verify(token, header.alg, header.kid.as_deref()).await?;
        Ok(identity(&claims))
    }

    /// Checks that `identity` may do `access` (on `topic`, when the route names one).
    pub fn authorize(&self, identity: &Identity, access: Access, topic: Option<&str>) -> Result<(), AuthFailure> {
        let scope = match access {
            Access::Produce => &self.config.produce_scope,
            Access::Consume => &self.config.consume_scope,
            Access::Admin => &self.config.admin_scope,
        };
        if !identity.has_scope(scope) {
            return Err(AuthFailure::forbidden(scope));
        }
        if let Some(topic) = topic.filter(|_| access != Access::Admin)
            && let Some(missing) = self.config.topic_scopes_for(topic).find(|scope| !identity.has_scope(scope))
        {
            return Err(AuthFailure::forbidden(missing));
        }
        Ok(())
    }

    async fn verify(&self, token: &str, algorithm: Algorithm, kid: Option<&str>) -> Result<Value, AuthFailure> {
        let validation = self.validation(algorithm);
        if algorithm == Algorithm::HS256 {
            let secret = self.keys.secret().ok_or_else(|| refused_algorithm(algorithm))?;
            return decode(token, secret, &validation);
        }
        let mut keys = self.keys.public_keys();
        let matching = |keys: &Arc<Vec<keys::PublicKey>>| {
            keys.iter().any(|key| key.algorithms.contains(&algorithm) && (kid.is_none() || key.kid.as_deref() == kid))
        };
        if !matching(&keys) && kid.is_some() && self.keys.claim_unknown_key_refetch() {
            if let Err(error) = self.keys.refresh().await {
                tracing::warn!(error = %error, "cannot refetch the JWKS for an unknown key id");
            }
            keys = self.keys.public_keys();
        }
        let mut last = None;
        for key in keys.iter().filter(|key| key.algorithms.contains(&algorithm)) {
            if kid.is_some() && key.kid.as_deref() != kid {
                continue;
            }
            match decode(token, &key.key, &validation) {
                Ok(claims) => return Ok(claims),
                Err(failure) => last = Some(failure),
            }
        }
        Err(last.unwrap_or_else(|| match kid {
            Some(kid) => AuthFailure::unauthenticated(true, format!("no {algorithm:?} key with id {kid:?}")),
            None => refused_algorithm(algorithm),
        }))
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation
    }
}

fn refused_algorithm(algorithm: Algorithm) -> AuthFailure {
    AuthFailure::unauthenticated(true, format!("tokens signed with {algorithm:?} are not accepted here"))
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Value, AuthFailure> {
    jsonwebtoken::decode::<Value>(token, key, validation).map(|data| data.claims).map_err(|error| {
        let why = match error.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_string(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
            ErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_string(),
            ErrorKind::InvalidAudience => "the token's audience is not accepted".to_string(),
            ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
            ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".to_string(),
            ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                "the token is not well-formed".to_string()
            }
            other => format!("the token is not valid: {other:?}"),
        };
        AuthFailure::unauthenticated(true, why)
    })
}

/// Scopes from `scope` (space-separated, RFC 8693) or `scp` (a list or a string).
fn identity(claims: &Value) -> Identity {
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    let mut scopes = HashSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(list)) => scopes.extend(list.split_whitespace().map(str::to_string)),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    Identity { subject: text("sub").unwrap_or_default(), client_id: text("client_id").or_else(|| text("azp")), scopes }
}
