//! The gRPC edge: the `ProducerSidecar` service and the standard health service, served on loopback
//! TCP and optionally on a Unix domain socket.

mod audit;
mod convert;
mod producer_service;
mod schemas;

use std::future::Future;
use std::path::Path;

use crate::listener_tls::TlsListener;
use kafka_sidecar_proto::v1::producer_sidecar_server::ProducerSidecarServer;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use producer_service::{INSTANCE_METADATA, ProducerService};

/// The name health checks use for the producer service.
pub const SERVICE_NAME: &str = "kafka_sidecar.v1.ProducerSidecar";

/// gRPC messages may carry a full batch of records up to this size.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The gRPC TCP listener: plain, or handing out TLS connections (`grpc.tls`).
pub enum GrpcListener {
    /// Plain TCP.
    Plain(TcpListener),
    /// TLS, handshaken before tonic sees the connection.
    Tls(TlsListener),
}

/// Serves gRPC on `listener` (and on `unix` when given) until `shutdown` resolves.
pub async fn serve(
    service: ProducerService,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    listener: GrpcListener,
    unix: Option<UnixListener>,
    shutdown: impl Future<Output = ()> + Send + Clone + 'static,
) -> Result<(), tonic::transport::Error> {
    let producer = ProducerSidecarServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = Server::builder().add_service(health).add_service(producer);
    let (tcp_router, tcp_shutdown) = (router.clone(), shutdown.clone());
    let tcp = async move {
        match listener {
            GrpcListener::Tls(listener) => {
                tcp_router.serve_with_incoming_shutdown(listener.incoming(), tcp_shutdown).await
            }
            GrpcListener::Plain(listener) => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                tcp_router.serve_with_incoming_shutdown(incoming, tcp_shutdown).await
            }
        }
    };
    match unix {
        Some(unix) => {
            let uds = router.serve_with_incoming_shutdown(UnixListenerStream::new(unix), shutdown);
            let (tcp, uds) = tokio::join!(tcp, uds);
            tcp.and(uds)
        }
        None => tcp.await,
    }
}

/// Binds a Unix socket, replacing a stale socket file left by a previous run.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// Reports readiness on the health service, for the service name and the server as a whole.
pub async fn set_health(reporter: &HealthReporter, ready: bool) {
    let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}
