//! TLS on the sidecar's own listeners, over real sockets: HTTPS produce with a custom CA, gRPC over
//! mutual TLS (refused without a client certificate), plain HTTP on a TLS port refused while the
//! sidecar keeps serving, a bad certificate refused at start naming the key, and a certificate
//! rotated in place served without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
mod test_pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use kafka_sidecar::config::ListenerTlsConfig;
use kafka_sidecar::{Config, Listeners, run};
use kafka_sidecar_proto::v1 as pb;
use kafka_sidecar_proto::v1::producer_sidecar_client::ProducerSidecarClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use support::{TestSidecar, broker, create_topic, eventually, read_back, test_config, unique};
use test_pki::TestPki;
use tonic::transport::{Channel, Endpoint, Uri};

fn tls(dir: &Path, name: &str, client_ca: Option<&str>) -> ListenerTlsConfig {
    ListenerTlsConfig {
        cert_file: dir.join(format!("{name}.pem")),
        key_file: dir.join(format!("{name}.key")),
        client_ca_file: client_ca.map(|ca| dir.join(format!("{ca}.pem"))),
    }
}

fn https_client(dir: &Path, ca: &str, identity: Option<&str>) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(dir.join(format!("{ca}.pem"))).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder().add_root_certificate(root).tls_built_in_root_certs(false);
    if let Some(name) = identity {
        let pem = [
            std::fs::read(dir.join(format!("{name}.pem"))).unwrap(),
            std::fs::read(dir.join(format!("{name}.key"))).unwrap(),
        ]
        .concat();
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// A gRPC channel over TLS (ALPN h2) that trusts CA `ca`, presenting `identity` when given.
async fn grpc_over_tls(
    address: String,
    dir: &Path,
    ca: &str,
    identity: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join(format!("{ca}.pem"))).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(name) => {
            let chain =
                CertificateDer::pem_file_iter(dir.join(format!("{name}.pem"))).unwrap().map(Result::unwrap).collect();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = tower::service_fn(move |_: Uri| {
        let (connector, address) = (connector.clone(), address.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&address).await?;
            let server = ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
            let tls = connector.connect(server, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_static("http://sidecar.invalid").connect_with_connector(connect).await
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate ("worker") it signed.
fn certificates() -> (TestPki, PathBuf) {
    let pki = TestPki::new();
    pki.authority("ca").issue("ca", "server", "/CN=127.0.0.1", test_pki::SERVER).issue(
        "ca",
        "worker",
        "/CN=worker",
        test_pki::CLIENT,
    );
    let dir = pki.path("");
    (pki, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_and_mutual_tls_grpc_produce_and_plain_clients_are_refused() {
    let topic = unique("listener-tls");
    create_topic(broker(), &topic, 1).await;
    let (_pki, dir) = certificates();
    let mut config = test_config(broker());
    config.http.tls = Some(tls(&dir, "server", None));
    config.grpc.tls = Some(tls(&dir, "server", Some("ca")));
    let sidecar = TestSidecar::start(config).await;

    let https = format!("https://{}/producers/{topic}", sidecar.addresses.http);
    let body = json!({"records": [{"value": "aHR0cHM="}]});
    let response = https_client(&dir, "ca", None).post(&https).json(&body).send().await.expect("https answers");
    assert_eq!(response.status().as_u16(), 200);
    let plain = reqwest::Client::new().post(sidecar.http_url(&format!("/producers/{topic}"))).json(&body).send().await;
    assert!(plain.is_err(), "plain HTTP on the TLS port must fail, got {plain:?}");
    let untrusting = reqwest::Client::builder().tls_built_in_root_certs(false).build().unwrap();
    assert!(untrusting.post(&https).json(&body).send().await.is_err(), "a client that does not trust the CA");

    let grpc = sidecar.addresses.grpc.to_string();
    let channel = grpc_over_tls(grpc.clone(), &dir, "ca", Some("worker")).await.expect("mutual TLS connects");
    let record = pb::ProduceRequest { topic: topic.clone(), value: Bytes::from_static(b"grpc"), ..Default::default() };
    ProducerSidecarClient::new(channel).emit(record.clone()).await.expect("emit over mutual TLS");
    // Without a client certificate the handshake (or, TLS 1.3, the first read) fails.
    let refused = match grpc_over_tls(grpc, &dir, "ca", None).await {
        Ok(channel) => ProducerSidecarClient::new(channel).emit(record).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    assert!(refused.is_err(), "a gRPC client without a certificate must be refused");

    let values: Vec<_> =
        read_back(broker(), &topic, 2, Duration::from_secs(20)).into_iter().map(|r| r.value.unwrap()).collect();
    assert_eq!(values, [b"https".to_vec(), b"grpc".to_vec()]);
    // The refused clients cost nothing: the listener still serves.
    let again = https_client(&dir, "ca", None).post(&https).json(&body).send().await.expect("still serving");
    assert_eq!(again.status().as_u16(), 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_rotated_in_place_is_served_without_a_restart() {
    let (pki, dir) = certificates();
    pki.authority("next-ca").issue("next-ca", "next", "/CN=127.0.0.1", test_pki::SERVER);
    let mut config = test_config(broker());
    config.http.tls = Some(tls(&dir, "server", None));
    let sidecar = TestSidecar::start(config).await;
    let url = format!("https://{}/topics", sidecar.addresses.http);
    let (old, new) = (https_client(&dir, "ca", None), https_client(&dir, "next-ca", None));
    assert!(old.get(&url).send().await.is_ok_and(|r| r.status().is_success()));
    assert!(new.get(&url).send().await.is_err(), "the next CA does not vouch for the first certificate");

    // The way a secret mount rotates: new files moved over the old ones.
    for extension in ["pem", "key"] {
        std::fs::copy(dir.join(format!("next.{extension}")), dir.join(format!("rotating.{extension}"))).unwrap();
        std::fs::rename(dir.join(format!("rotating.{extension}")), dir.join(format!("server.{extension}"))).unwrap();
    }
    eventually(Duration::from_secs(30), "the rotated certificate", async || {
        new.get(&url).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    // A new client: the first one's pooled connection keeps the session it began with.
    let old = https_client(&dir, "ca", None);
    assert!(old.get(&url).send().await.is_err(), "the first certificate is no longer served");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_match_its_certificate_stops_the_start_naming_the_setting() {
    let (_pki, dir) = certificates();
    let mut config: Config = test_config(broker());
    config.grpc.tls = Some(ListenerTlsConfig { key_file: dir.join("worker.key"), ..tls(&dir, "server", None) });
    let listeners = Listeners::bind(&config).await.expect("bind");
    let error = run(config, listeners, std::future::pending()).await.expect_err("must not start");
    let message = format!("{error:#}");
    assert!(message.contains("grpc.tls.cert_file") && message.contains("does not match"), "{message}");
}
