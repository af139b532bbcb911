//! The server side of SASL PLAIN, SCRAM-SHA-256/512 (RFC 5802, RFC 7677) and OAUTHBEARER
//! (RFC 7628), for the enforcing test proxy: it checks what a real broker checks.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// What the proxy accepts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// PLAIN and SCRAM: this user and password.
    pub password: Option<(String, String)>,
    /// OAUTHBEARER: this exact bearer token.
    pub token: Option<String>,
}

impl Credentials {
    pub fn password(username: &str, password: &str) -> Self {
        Self { password: Some((username.into(), password.into())), token: None }
    }

    pub fn token(token: &str) -> Self {
        Self { password: None, token: Some(token.into()) }
    }
}

/// One authentication exchange's state.
pub enum Exchange {
    Plain,
    Scram { hash: Hash, state: ScramState },
    OAuthBearer,
}

#[derive(Clone, Copy, Debug)]
pub enum Hash {
    Sha256,
    Sha512,
}

pub enum ScramState {
    First,
    Final { auth_message_start: String, salted_password: Vec<u8>, nonce: String },
}

/// The answer to one SaslAuthenticate.
pub enum Step {
    /// Send these bytes and wait for the next message.
    Continue(Vec<u8>),
    /// Authenticated; send these bytes.
    Done(Vec<u8>, String),
    /// Refused, with the broker's message.
    Refused(String),
}

const ITERATIONS: u32 = 4096;

impl Exchange {
    /// An exchange for `mechanism`, or `None` when it is not enabled.
    pub fn start(mechanism: &str, credentials: &Credentials) -> Option<Self> {
        let password = credentials.password.is_some();
        match mechanism {
            "PLAIN" if password => Some(Self::Plain),
            "SCRAM-SHA-256" if password => Some(Self::Scram { hash: Hash::Sha256, state: ScramState::First }),
            "SCRAM-SHA-512" if password => Some(Self::Scram { hash: Hash::Sha512, state: ScramState::First }),
            "OAUTHBEARER" if credentials.token.is_some() => Some(Self::OAuthBearer),
            _ => None,
        }
    }

    /// Handles the client's next message.
    pub fn step(&mut self, message: &[u8], credentials: &Credentials) -> Step {
        let text = String::from_utf8_lossy(message).to_string();
        let (username, password) = credentials.password.clone().unwrap_or_default();
        let expected_token = credentials.token.clone().unwrap_or_default();
        match self {
            Self::Plain => {
                let parts: Vec<&str> = text.split('\0').collect();
                match parts.as_slice() {
                    [_, user, pass] if *user == username && *pass == password => {
                        Step::Done(Vec::new(), user.to_string())
                    }
                    _ => Step::Refused("Authentication failed: Invalid username or password".into()),
                }
            }
            Self::OAuthBearer => {
                let token = text
                    .split('\u{1}')
                    .find_map(|part| part.strip_prefix("auth=Bearer "))
                    .unwrap_or_default()
                    .to_string();
                if !expected_token.is_empty() && token == expected_token {
                    Step::Done(Vec::new(), token)
                } else {
                    Step::Refused(format!("Authentication failed: invalid token {}", token.len()))
                }
            }
            Self::Scram { hash, state } => scram_step(*hash, state, &text, &username, &password),
        }
    }
}

fn scram_step(hash: Hash, state: &mut ScramState, text: &str, username: &str, password: &str) -> Step {
    match std::mem::replace(state, ScramState::First) {
        ScramState::First => {
            // gs2 header "n,," (or "n,a=authzid,"), then "n=user,r=nonce".
            let Some(bare) = text.splitn(3, ',').nth(2) else { return Step::Refused("bad client-first".into()) };
            let user = field(bare, "n").unwrap_or_default();
            let client_nonce = field(bare, "r").unwrap_or_default();
            let salt = b"kafka-sidecar-test-salt".to_vec();
            let nonce = format!("{client_nonce}{:016x}", rand::random::<u64>());
            let server_first = format!("r={nonce},s={},i={ITERATIONS}", STANDARD.encode(&salt));
            if user != username {
                // Kafka answers an unknown user only at the end; keep the same shape.
                *state = ScramState::Final {
                    auth_message_start: format!("{bare},{server_first}"),
                    salted_password: vec![0; 32],
                    nonce,
                };
                return Step::Continue(server_first.into_bytes());
            }
            *state = ScramState::Final {
                auth_message_start: format!("{bare},{server_first}"),
                salted_password: hi(hash, password.as_bytes(), &salt, ITERATIONS),
                nonce,
            };
            Step::Continue(server_first.into_bytes())
        }
        ScramState::Final { auth_message_start, salted_password, nonce } => {
            let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
                return Step::Refused("bad client-final".into());
            };
            if field(without_proof, "r") != Some(nonce.as_str()) {
                return Step::Refused("Authentication failed: nonce mismatch".into());
            }
            let auth_message = format!("{auth_message_start},{without_proof}");
            let client_key = hmac(hash, &salted_password, b"Client Key");
            let stored_key = digest(hash, &client_key);
            let client_signature = hmac(hash, &stored_key, auth_message.as_bytes());
            let Ok(proof) = STANDARD.decode(proof) else { return Step::Refused("bad proof".into()) };
            let recovered: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
            if proof.len() != client_signature.len() || digest(hash, &recovered) != stored_key {
                return Step::Refused(
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM"
                        .into(),
                );
            }
            let server_key = hmac(hash, &salted_password, b"Server Key");
            let server_signature = hmac(hash, &server_key, auth_message.as_bytes());
            Step::Done(format!("v={}", STANDARD.encode(server_signature)).into_bytes(), username.to_string())
        }
    }
}

fn field<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.split(',').find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
}

fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Hash::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn digest(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// PBKDF2 with one output block: SCRAM's Hi().
fn hi(hash: Hash, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = hmac(hash, password, &block);
    let mut result = previous.clone();
    for _ in 1..iterations {
        previous = hmac(hash, password, &previous);
        result.iter_mut().zip(&previous).for_each(|(r, p)| *r ^= p);
    }
    result
}
