//! Signing keys and tokens for the auth tests: RSA, EC P-256 and Ed25519 keys made by openssl,
//! their JWKS, and JWTs with chosen claims, signed the way an identity provider would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key with its algorithm and key id.
pub struct SigningKey {
    pub algorithm: Algorithm,
    pub kid: String,
    pub key: EncodingKey,
}

/// Makes a private key with `openssl genpkey` in `dir`; `kind` is `rsa`, `ec` or `ed25519`.
pub fn signing_key(dir: &Path, kind: &str, kid: &str) -> SigningKey {
    let file = dir.join(format!("{kid}.pem"));
    let mut command = Command::new("openssl");
    command.arg("genpkey").arg("-out").arg(&file);
    match kind {
        "rsa" => command.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        "ec" => command.args(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        _ => command.args(["-algorithm", "ed25519"]),
    };
    let output = command.output().expect("openssl runs");
    assert!(output.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&output.stderr));
    let pem = std::fs::read(&file).expect("key file");
    let (algorithm, key) = match kind {
        "rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).expect("rsa key")),
        "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).expect("ec key")),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).expect("ed25519 key")),
    };
    SigningKey { algorithm, kid: kid.to_string(), key }
}

/// The public JWKS of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    let keys = keys
        .iter()
        .map(|signing| {
            let mut jwk = Jwk::from_encoding_key(&signing.key, signing.algorithm).expect("jwk");
            jwk.common.key_id = Some(signing.kid.clone());
            jwk
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).expect("jwks json")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()).expect("now")
}

/// Claims valid for ten minutes with these scopes, issuer and audience.
pub fn claims(scope: &str) -> Value {
    json!({"sub": "worker-7", "client_id": "orders-api", "scope": scope, "iss": "https://issuer.test",
        "aud": "kafka-sidecar", "iat": now(), "exp": now() + 600})
}

/// A token signed with `key`.
pub fn token(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.key).expect("sign")
}

/// A token signed with an HS256 secret.
pub fn hs256_token(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// An unsigned `alg: none` token, which must never be accepted.
pub fn unsigned_token(claims: &Value) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.", engine.encode(br#"{"alg":"none","typ":"JWT"}"#), engine.encode(claims.to_string()))
}
