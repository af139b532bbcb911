//! The verification keys: a JWKS document from a file or a URL, refreshed on a timer (key
//! rotation) and, for a URL, again when a token names a key id the set does not have (at most
//! once per [`UNKNOWN_KID_REFETCH`]), plus the optional HS256 secret.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::AuthConfig;

/// A token naming an unknown key refetches the URL at most this often.
const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(10);

/// One public key from the set: what it verifies and with which algorithms.
pub struct PublicKey {
    /// The JWK `kid`, when it has one.
    pub kid: Option<String>,
    /// Algorithms of this key's family (RSA: RS*/PS*, EC: ES256/ES384, OKP: EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

/// Where the public keys come from.
enum Source {
    None,
    File(PathBuf),
    Url(String),
}

/// The keys tokens are verified with.
pub struct KeyStore {
    source: Source,
    public: RwLock<Arc<Vec<PublicKey>>>,
    secret: Option<DecodingKey>,
    http: reqwest::Client,
    last_unknown_refetch: RwLock<Option<Instant>>,
}

impl KeyStore {
    /// Loads the keys once; start-up fails when the configured ones cannot be read.
    pub async fn load(config: &AuthConfig) -> anyhow::Result<Arc<Self>> {
        let secret = match (&config.hs256_secret, &config.hs256_secret_file) {
            (Some(secret), _) => Some(DecodingKey::from_secret(secret.expose().as_bytes())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("auth.hs256_secret_file {}: {error}", path.display()))?;
                let secret = text.trim();
                anyhow::ensure!(secret.len() >= 32, "auth.hs256_secret_file: the secret must be at least 32 bytes");
                Some(DecodingKey::from_secret(secret.as_bytes()))
            }
            (None, None) => None,
        };
        let source = match (&config.jwks_file, config.jwks_url.is_empty()) {
            (Some(path), _) => Source::File(path.clone()),
            (None, false) => Source::Url(config.jwks_url.clone()),
            (None, true) => Source::None,
        };
        let store = Arc::new(Self {
            source,
            public: RwLock::new(Arc::new(Vec::new())),
            secret,
            http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?,
            last_unknown_refetch: RwLock::new(None),
        });
        store.refresh().await?;
        Ok(store)
    }

    /// The HS256 secret, when configured.
    pub fn secret(&self) -> Option<&DecodingKey> {
        self.secret.as_ref()
    }

    /// The current public keys.
    pub fn public_keys(&self) -> Arc<Vec<PublicKey>> {
        self.public.read().map(|keys| Arc::clone(&keys)).unwrap_or_default()
    }

    /// Whether a JWKS URL may be refetched now for a token naming an unknown key: the first time
    /// at once, then at most once per [`UNKNOWN_KID_REFETCH`], so made-up key ids cannot make the
    /// sidecar hammer the identity provider. Claims the refetch when it answers yes.
    pub fn claim_unknown_key_refetch(&self) -> bool {
        if !matches!(self.source, Source::Url(_)) {
            return false;
        }
        let Ok(mut last) = self.last_unknown_refetch.write() else { return false };
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Reads the key set again. A failure keeps the keys already held.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let text = match &self.source {
            Source::None => return Ok(()),
            Source::File(path) => std::fs::read_to_string(path)
                .map_err(|error| anyhow::anyhow!("auth.jwks_file {}: {error}", path.display()))?,
            Source::Url(url) => {
                let response = self.http.get(url).send().await.and_then(reqwest::Response::error_for_status);
                let response = response.map_err(|error| anyhow::anyhow!("auth.jwks_url {url}: {error}"))?;
                response.text().await.map_err(|error| anyhow::anyhow!("auth.jwks_url {url}: {error}"))?
            }
        };
        let set: JwkSet =
            serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("the JWKS does not parse: {error}"))?;
        let keys = public_keys(&set);
        anyhow::ensure!(!keys.is_empty() || set.keys.is_empty(), "the JWKS holds no usable public key");
        if let Ok(mut public) = self.public.write() {
            *public = Arc::new(keys);
        }
        Ok(())
    }

    /// Refreshes the key set every `every` until the task is dropped; failures are logged and the
    /// old keys kept.
    pub async fn refresh_forever(self: Arc<Self>, every: Duration) {
        if matches!(self.source, Source::None) {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = self.refresh().await {
                tracing::warn!(error = %error, "cannot refresh the JWKS; keeping the keys held");
            }
        }
    }
}

/// The set's public keys usable for signatures, each with its family's algorithms. Symmetric
/// (`oct`) keys in a JWKS are ignored: HS256 only ever uses the configured secret, so a public
/// key can never be turned into an HMAC secret (algorithm confusion).
fn public_keys(set: &JwkSet) -> Vec<PublicKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => vec![
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                AlgorithmParameters::EllipticCurve(_) => vec![Algorithm::ES256, Algorithm::ES384],
                AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(PublicKey { kid: jwk.common.key_id.clone(), algorithms, key })
        })
        .collect()
}
