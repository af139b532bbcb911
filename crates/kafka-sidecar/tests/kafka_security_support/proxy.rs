//! An enforcing front for tansu: terminates TLS (optionally requiring a client certificate signed
//! by the test CA) and runs the SASL exchange itself (PLAIN, SCRAM, OAUTHBEARER), then relays the
//! bytes to tansu. tansu advertises the proxy's address, so every connection of every client
//! comes through here. Before authentication only ApiVersions (relayed to tansu), SaslHandshake
//! and SaslAuthenticate are served, as a real broker does.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::sasl::{Credentials, Exchange, Step};

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// TLS settings of the proxy.
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Require a client certificate signed by this CA.
    pub client_ca: Option<std::path::PathBuf>,
}

/// What happened at the proxy, for the tests to check.
#[derive(Debug, Default)]
pub struct Observed {
    /// `mechanism:principal` of each successful authentication.
    pub authenticated: Vec<String>,
    /// Refusals, with the reason.
    pub refused: Vec<String>,
    /// TLS handshakes that failed.
    pub tls_failures: Vec<String>,
}

pub struct ProxySettings {
    pub tls: Option<TlsSettings>,
    pub sasl: Option<Credentials>,
}

/// Serves `listener`, relaying to `upstream`, until the runtime ends.
pub fn spawn(listener: TcpListener, upstream: String, settings: ProxySettings) -> Arc<Mutex<Observed>> {
    let observed = Arc::new(Mutex::new(Observed::default()));
    let acceptor = settings.tls.as_ref().map(acceptor);
    let credentials = settings.sasl.map(Arc::new);
    let seen = Arc::clone(&observed);
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let (acceptor, credentials, upstream, seen) =
                (acceptor.clone(), credentials.clone(), upstream.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                match acceptor {
                    Some(acceptor) => match acceptor.accept(socket).await {
                        Ok(stream) => serve(stream, &upstream, credentials.as_deref(), &seen).await,
                        Err(error) => seen.lock().unwrap().tls_failures.push(error.to_string()),
                    },
                    None => serve(socket, &upstream, credentials.as_deref(), &seen).await,
                }
            });
        }
    });
    observed
}

fn acceptor(tls: &TlsSettings) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&tls.cert).expect("cert file").map(|cert| cert.expect("cert")).collect();
    let key = PrivateKeyDer::from_pem_file(&tls.key).expect("key file");
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
                roots.add(cert.expect("ca cert")).expect("add ca");
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    TlsAcceptor::from(Arc::new(builder.with_single_cert(certs, key).expect("server cert")))
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    upstream: &str,
    credentials: Option<&Credentials>,
    seen: &Mutex<Observed>,
) {
    let Ok(mut broker) = TcpStream::connect(upstream).await else { return };
    let _ = broker.set_nodelay(true);
    if let Some(credentials) = credentials {
        match authenticate(&mut client, &mut broker, credentials).await {
            Ok(Some(principal)) => seen.lock().unwrap().authenticated.push(principal),
            Ok(None) => return,
            Err(reason) => {
                seen.lock().unwrap().refused.push(reason);
                return;
            }
        }
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
}

/// The pre-authentication phase; `Ok(Some(principal))` once authenticated, `Ok(None)` when the
/// client went away, `Err` when it was refused.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    broker: &mut TcpStream,
    credentials: &Credentials,
) -> Result<Option<String>, String> {
    let mut exchange: Option<(String, Exchange)> = None;
    loop {
        let Ok(request) = read_frame(client).await else { return Ok(None) };
        let header = RequestHeader::parse(&request).ok_or("short request")?;
        let body = &request[header.body_start..];
        match header.api_key {
            API_VERSIONS => {
                write_frame(broker, &request).await.map_err(|e| e.to_string())?;
                let response = read_frame(broker).await.map_err(|e| e.to_string())?;
                write_frame(client, &response).await.map_err(|e| e.to_string())?;
            }
            SASL_HANDSHAKE => {
                let mechanism = read_string(body, 0).unwrap_or_default();
                let started = Exchange::start(&mechanism, credentials);
                let error = if started.is_some() { 0 } else { UNSUPPORTED_SASL_MECHANISM };
                let mut response = header.correlation_id.to_be_bytes().to_vec();
                response.extend_from_slice(&error.to_be_bytes());
                response.extend_from_slice(&1i32.to_be_bytes());
                push_string(&mut response, &mechanism);
                write_frame(client, &response).await.map_err(|e| e.to_string())?;
                match started {
                    Some(started) => exchange = Some((mechanism, started)),
                    None => return Err(format!("unsupported mechanism {mechanism}")),
                }
            }
            SASL_AUTHENTICATE => {
                let Some((mechanism, state)) = exchange.as_mut() else {
                    respond_authenticate(client, &header, ILLEGAL_SASL_STATE, Some("no handshake"), &[]).await;
                    return Err("SaslAuthenticate before SaslHandshake".into());
                };
                let auth_bytes = read_bytes(body, 0).ok_or("short SaslAuthenticate")?;
                match state.step(auth_bytes, credentials) {
                    Step::Continue(answer) => respond_authenticate(client, &header, 0, None, &answer).await,
                    Step::Done(answer, principal) => {
                        respond_authenticate(client, &header, 0, None, &answer).await;
                        return Ok(Some(format!("{mechanism}:{principal}")));
                    }
                    Step::Refused(reason) => {
                        respond_authenticate(client, &header, SASL_AUTHENTICATION_FAILED, Some(&reason), &[]).await;
                        return Err(format!("{mechanism}: {reason}"));
                    }
                }
            }
            other => return Err(format!("api key {other} before authentication")),
        }
    }
}

async fn respond_authenticate<S: AsyncWrite + Unpin>(
    client: &mut S,
    header: &RequestHeader,
    error: i16,
    message: Option<&str>,
    auth_bytes: &[u8],
) {
    let mut response = header.correlation_id.to_be_bytes().to_vec();
    response.extend_from_slice(&error.to_be_bytes());
    match message {
        Some(message) => push_string(&mut response, message),
        None => response.extend_from_slice(&(-1i16).to_be_bytes()),
    }
    response.extend_from_slice(&(auth_bytes.len() as i32).to_be_bytes());
    response.extend_from_slice(auth_bytes);
    if header.api_version >= 1 {
        response.extend_from_slice(&0i64.to_be_bytes());
    }
    let _ = write_frame(client, &response).await;
}

struct RequestHeader {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    body_start: usize,
}

impl RequestHeader {
    /// Header v1 (non-flexible): what SaslHandshake v0-1 and SaslAuthenticate v0-1 use.
    fn parse(request: &[u8]) -> Option<Self> {
        let api_key = i16::from_be_bytes(request.get(0..2)?.try_into().ok()?);
        let api_version = i16::from_be_bytes(request.get(2..4)?.try_into().ok()?);
        let correlation_id = i32::from_be_bytes(request.get(4..8)?.try_into().ok()?);
        let client_id_length = i16::from_be_bytes(request.get(8..10)?.try_into().ok()?);
        let body_start = 10 + usize::try_from(client_id_length.max(0)).ok()?;
        Some(Self { api_key, api_version, correlation_id, body_start })
    }
}

fn read_string(body: &[u8], at: usize) -> Option<String> {
    let length = usize::try_from(i16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?)).ok()?;
    Some(String::from_utf8_lossy(body.get(at + 2..at + 2 + length)?).to_string())
}

fn read_bytes(body: &[u8], at: usize) -> Option<&[u8]> {
    let length = usize::try_from(i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?)).ok()?;
    body.get(at + 4..at + 4 + length)
}

fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as i16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let length = reader.read_i32().await?;
    if !(0..=64 << 20).contains(&length) {
        return Err(std::io::Error::other("bad frame length"));
    }
    let mut frame = vec![0; length as usize];
    reader.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &[u8]) -> std::io::Result<()> {
    writer.write_i32(frame.len() as i32).await?;
    writer.write_all(frame).await?;
    writer.flush().await
}

/// A PEM file's first certificate, for tests that build their own TLS clients.
pub fn first_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path).expect("pem").next().expect("a cert").expect("cert")
}
