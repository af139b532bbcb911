//! TLS for the sidecar's own listeners: `http.tls`, `grpc.tls` and `admin.tls`, each optional and
//! off by default (the listeners are on loopback unless deliberately moved).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One listener's certificate, and optionally the CAs its clients' certificates must chain to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// PEM certificate chain the listener presents, leaf first. Re-read when the file changes
    /// (cert-manager and Kubernetes secret mounts rotate it in place).
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: when set, a client must present a certificate signed by one of them
    /// (mutual TLS); connections without one fail the handshake.
    pub client_ca_file: Option<PathBuf>,
}
