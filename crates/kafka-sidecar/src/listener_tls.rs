//! TLS on the sidecar's own listeners (`http.tls`, `grpc.tls`, `admin.tls`), with rustls.
//!
//! A [`TlsListener`] takes over a bound `TcpListener`: one task accepts connections and runs each
//! handshake in a task of its own, bounded by [`HANDSHAKE_TIMEOUT`], so a client that connects and
//! says nothing never holds up the next one; finished handshakes queue for the server, which
//! reads them through axum's [`axum::serve::Listener`] or, for tonic, [`TlsListener::incoming`].
//! A failed handshake (no client certificate under mutual TLS, an untrusted one, plain HTTP on a
//! TLS port) closes that connection and is logged at DEBUG: a client's mistake, not an incident.
//!
//! Certificates rotate in place (cert-manager, Kubernetes secret mounts): [`RotatingCertificate`]
//! looks at the files' modification times at most every [`ROTATION_CHECK`] and loads a changed
//! pair; a pair that does not load keeps the previous one serving and is logged.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::ListenerTlsConfig;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at for a rotation.
pub const ROTATION_CHECK: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// What ALPN protocols a listener offers: gRPC is HTTP/2 only.
#[derive(Debug, Clone, Copy)]
pub enum Protocols {
    /// HTTP/2 and HTTP/1.1 (the HTTP API and the admin routes).
    Http,
    /// HTTP/2 (gRPC).
    Grpc,
}

/// Builds the acceptor for one listener; `key` names the config section in errors.
pub fn acceptor(config: &ListenerTlsConfig, protocols: Protocols, key: &str) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificate = RotatingCertificate::load(config, Arc::clone(&provider))
        .with_context(|| format!("{key}.cert_file / {key}.key_file"))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?;
    let builder = match &config.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in pem_certificates(path).with_context(|| format!("{key}.client_ca_file"))? {
                roots.add(certificate).with_context(|| format!("{key}.client_ca_file {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{key}.client_ca_file {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_cert_resolver(Arc::new(certificate));
    server.alpn_protocols = match protocols {
        Protocols::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Protocols::Grpc => vec![b"h2".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn pem_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certificates)
}

/// The served certificate, reloaded when its files change.
#[derive(Debug)]
pub struct RotatingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    modified: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl RotatingCertificate {
    fn load(config: &ListenerTlsConfig, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let (cert_file, key_file) = (config.cert_file.clone(), config.key_file.clone());
        let modified = (modified(&cert_file), modified(&key_file));
        let key = Arc::new(certified_key(&cert_file, &key_file, &provider)?);
        let current = Mutex::new(Current { key, modified, checked: Instant::now() });
        Ok(Self { cert_file, key_file, provider, current })
    }

    /// The certificate to serve, after a look at the files if the last one is old enough.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.checked.elapsed() >= ROTATION_CHECK {
            current.checked = Instant::now();
            let modified = (modified(&self.cert_file), modified(&self.key_file));
            if modified != current.modified {
                match certified_key(&self.cert_file, &self.key_file, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert_file = %self.cert_file.display(), "listener certificate reloaded");
                        current.key = Arc::new(key);
                        current.modified = modified;
                    }
                    // Half-written during a rotation, most likely: keep serving the old pair and
                    // look again next time.
                    Err(error) => tracing::warn!(
                        cert_file = %self.cert_file.display(), error = %format!("{error:#}"),
                        "listener certificate changed but does not load; serving the previous one"
                    ),
                }
            }
        }
        Arc::clone(&current.key)
    }
}

impl ResolvesServerCert for RotatingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok()
}

fn certified_key(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = pem_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("{} is not a PEM private key", key_file.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("{} is not a usable private key", key_file.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| format!("{} does not match {}", key_file.display(), cert_file.display()))?;
    Ok(certified)
}

/// A TCP listener whose connections come out handshaken.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`; the accept task ends when this value is dropped.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(listener, acceptor, sender));
        Ok(Self { accepted, local })
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<TlsConnection>> + Send + 'static {
        futures::stream::unfold(self.accepted, |mut accepted| async move {
            accepted.recv().await.map(|(connection, _)| (Ok(connection), accepted))
        })
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, sender: mpsc::Sender<(TlsConnection, SocketAddr)>) {
    loop {
        let (stream, peer) = tokio::select! {
            () = sender.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %error, "accepting a TLS connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
        let (acceptor, sender) = (acceptor.clone(), sender.clone());
        tokio::spawn(async move {
            let local = stream.local_addr().ok();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let connection = TlsConnection { stream, local, peer };
                    // The server stopped meanwhile: the connection just closes.
                    let _ = sender.send((connection, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, error = %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when this listener is dropped; never resolve meanwhile.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// One handshaken connection.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    local: Option<SocketAddr>,
    peer: SocketAddr,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo { local_addr: self.local, remote_addr: Some(self.peer) }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
