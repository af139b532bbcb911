//! Wires the parts together and runs them: listeners, the shared producer, the consumer manager,
//! the gRPC, HTTP and admin servers, readiness, instance expiry, lag export, and the ordered
//! shutdown.
//!
//! Shutdown order: not ready -> refuse new records and stop accepting connections -> close consumer
//! instances (commit what was returned, leave groups) while the producer flushes within the grace
//! period -> purge and report what is left as failed -> end delivery streams -> stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::serve::ListenerExt;
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::config::{Config, ListenerTlsConfig};
use crate::consumer::{ConsumerManager, lag};
use crate::delivery::DeliveryHub;
use crate::grpc::{self, ProducerService};
use crate::http::{self, admin};
use crate::kafka::{DevBroker, SharedProducer};
use crate::listener_tls::{self, Protocols, TlsListener};
use crate::metrics::Metrics;
use crate::reactive::ReactiveConsumer;
use crate::schema::SchemaRegistry;
use crate::telemetry;

/// Readiness is re-checked this often while not ready, and every [`READY_RECHECK`] once ready
/// (each check is a full metadata request).
const READINESS_INTERVAL: Duration = Duration::from_secs(1);
const READY_RECHECK: Duration = Duration::from_secs(5);
const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const INSTANCE_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The sockets the sidecar serves on, bound before [`run`] so callers (and tests on port 0) know
/// the addresses.
pub struct Listeners {
    /// gRPC over TCP.
    pub grpc: TcpListener,
    /// gRPC over a Unix domain socket, when configured.
    pub grpc_unix: Option<(UnixListener, PathBuf)>,
    /// The HTTP produce API.
    pub http: TcpListener,
    /// Metrics and health.
    pub admin: TcpListener,
}

/// The addresses actually bound.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BoundAddresses {
    /// gRPC over TCP.
    #[schema(value_type = String)]
    pub grpc: SocketAddr,
    /// The HTTP API.
    #[schema(value_type = String)]
    pub http: SocketAddr,
    /// Metrics and health.
    #[schema(value_type = String)]
    pub admin: SocketAddr,
    /// gRPC over a Unix socket.
    #[schema(value_type = Option<String>)]
    pub grpc_unix: Option<PathBuf>,
}

impl Listeners {
    /// Binds every configured listener.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = |address: SocketAddr, name: &'static str| async move {
            TcpListener::bind(address).await.with_context(|| format!("cannot bind {name} to {address}"))
        };
        let grpc_unix = match &config.grpc.unix_socket {
            Some(path) => {
                let listener = grpc::bind_unix(path).with_context(|| format!("cannot bind {}", path.display()))?;
                Some((listener, path.clone()))
            }
            None => None,
        };
        Ok(Self {
            grpc: bind(config.grpc.listen, "grpc.listen").await?,
            grpc_unix,
            http: bind(config.http.listen, "http.listen").await?,
            admin: bind(config.admin.listen, "admin.listen").await?,
        })
    }

    /// The bound addresses.
    pub fn addresses(&self) -> std::io::Result<BoundAddresses> {
        Ok(BoundAddresses {
            grpc: self.grpc.local_addr()?,
            http: self.http.local_addr()?,
            admin: self.admin.local_addr()?,
            grpc_unix: self.grpc_unix.as_ref().map(|(_, path)| path.clone()),
        })
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Accepted records Kafka had not acknowledged when the grace period ended.
    pub undelivered: u64,
}

/// Runs the sidecar until `shutdown` resolves, then drains within the grace period.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunReport> {
    // Certificates first: a bad one stops the start before anything connects to Kafka.
    let grpc_tls = listener_acceptor(config.grpc.tls.as_ref(), Protocols::Grpc, "grpc.tls")?;
    let http_tls = listener_acceptor(config.http.tls.as_ref(), Protocols::Http, "http.tls")?;
    let admin_tls = listener_acceptor(config.admin.tls.as_ref(), Protocols::Http, "admin.tls")?;
    let dev_broker = if config.kafka.uses_dev_broker() {
        let broker = DevBroker::start(config.kafka.dev_broker_count).context("cannot start the embedded dev broker")?;
        tracing::warn!(
            bootstrap_servers = broker.bootstrap_servers(),
            "DEV MODE: no Kafka configured, using an embedded in-memory broker; all data is lost on exit"
        );
        Some(broker)
    } else {
        None
    };
    let bootstrap = dev_broker
        .as_ref()
        .map_or_else(|| config.kafka.bootstrap_servers.clone(), |broker| broker.bootstrap_servers().to_string());

    let metrics = Metrics::new();
    let hub = DeliveryHub::new(config.delivery.clone());
    let producer = Arc::new(
        SharedProducer::new(&config, &bootstrap, Arc::clone(&hub), Arc::clone(&metrics))
            .context("cannot create the Kafka producer")?,
    );
    let ready = Arc::new(AtomicBool::new(false));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    grpc::set_health(&health_reporter, false).await;

    let addresses = listeners.addresses()?;
    let (stop_api, api_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);

    let schemas = SchemaRegistry::from_config(&config.schema_registry, Arc::clone(&metrics))?;
    let authenticator = Authenticator::start(&config.auth).await.context("auth: cannot load the verification keys")?;
    let audit = AuditLog::start(&config, &bootstrap, Arc::clone(&producer), Arc::clone(&metrics));
    let service = ProducerService::new(
        Arc::clone(&producer),
        Arc::clone(&hub),
        schemas.clone(),
        authenticator.clone(),
        Arc::clone(&metrics),
    )
    .with_trace(Arc::new(config.trace.clone()))
    .with_audit(audit.clone());
    let grpc_serving = grpc::serve(
        service,
        health_service,
        match grpc_tls {
            Some(acceptor) => grpc::GrpcListener::Tls(TlsListener::new(listeners.grpc, acceptor)?),
            None => grpc::GrpcListener::Plain(listeners.grpc),
        },
        listeners.grpc_unix.map(|(listener, _)| listener),
        signal(api_stopped.clone()),
    );
    let grpc_server = tokio::spawn(async move { grpc_serving.await.map_err(|error| error.to_string()) });
    let consumers = ConsumerManager::new(&config, &bootstrap, Arc::clone(&metrics));
    let api = http::router(
        &config.http,
        http::ApiParts {
            producer: Arc::clone(&producer),
            consumers: Arc::clone(&consumers),
            schemas: schemas.clone(),
            authenticator: authenticator.clone(),
            metrics: Arc::clone(&metrics),
            audit: audit.clone(),
            trace: Arc::new(config.trace.clone()),
        },
    );
    let http_server = spawn_http(listeners.http, http_tls, api, signal(api_stopped.clone()))?;
    let reactive =
        ReactiveConsumer::start(&config, &bootstrap, &consumers, Arc::clone(&producer), schemas, Arc::clone(&metrics))
            .await?;
    let instance_sweeper = tokio::spawn(expire_instances(Arc::clone(&consumers)));
    let lag_exporter = (config.consumer.lag_interval_ms > 0).then(|| {
        let interval = Duration::from_millis(config.consumer.lag_interval_ms);
        tokio::spawn(lag::export_lag(Arc::clone(&consumers), Arc::clone(&metrics), interval))
    });
    let admin_state = admin::AdminState {
        metrics: Arc::clone(&metrics),
        producer: Arc::clone(&producer),
        ready: Arc::clone(&ready),
        reactive: reactive.clone(),
        config: Arc::new(config.clone()),
        run: Arc::new(admin::RunInfo::starting_now(bootstrap.clone(), addresses.clone())),
        logging: telemetry::log_control(),
        authenticator: authenticator.clone(),
        audit: audit.clone(),
    };
    let admin_server = spawn_http(listeners.admin, admin_tls, admin::router(admin_state), signal(admin_stopped))?;
    let readiness = tokio::spawn(track_readiness(
        Arc::clone(&producer),
        Arc::clone(&ready),
        Arc::clone(&metrics),
        health_reporter.clone(),
        api_stopped.clone(),
    ));
    let sweeper = tokio::spawn(sweep_sessions(Arc::clone(&hub), Arc::clone(&metrics), api_stopped));
    tracing::info!(grpc = %addresses.grpc, http = %addresses.http, admin = %addresses.admin,
        grpc_unix = ?addresses.grpc_unix, "kafka-sidecar serving");

    shutdown.await;
    let deadline = Instant::now() + Duration::from_millis(config.shutdown.grace_period_ms);
    tracing::info!(grace_period_ms = config.shutdown.grace_period_ms, "shutting down: not ready, draining");
    ready.store(false, Ordering::Release);
    metrics.ready.set(0);
    grpc::set_health(&health_reporter, false).await;
    // The reactive consumer finishes its in-flight pushes (and their dead letters) while the
    // producer still accepts, then commits what is done.
    if let Some(reactive) = &reactive {
        reactive.stop(deadline).await;
    }
    // Audit records queued so far are produced while the producer still accepts; its drain below
    // delivers them. Actions after this point are counted as dropped audit records.
    if let Some(audit) = &audit {
        audit.close(deadline).await;
    }
    producer.stop_accepting();
    let _ = stop_api.send(true);

    instance_sweeper.abort();
    if let Some(exporter) = lag_exporter {
        exporter.abort();
    }
    let (report, ()) = tokio::join!(producer.drain(deadline), close_consumers(&consumers, deadline));
    if report.undelivered > 0 {
        tracing::error!(
            undelivered = report.undelivered,
            "{} accepted records could not be delivered before the grace period ended; \
             each was reported failed (NOT_DELIVERED_AT_SHUTDOWN) to its sender",
            report.undelivered
        );
    } else {
        tracing::info!("every accepted record was delivered");
    }
    hub.close_all();

    let linger = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    for (name, server) in [("grpc", grpc_server), ("http", http_server)] {
        match tokio::time::timeout(linger, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(server = name, error = %error, "server ended with an error"),
            Ok(Err(error)) => tracing::warn!(server = name, error = %error, "server task failed"),
            Err(_) => tracing::warn!(server = name, "server did not stop within the grace period"),
        }
    }
    readiness.abort();
    sweeper.abort();
    let _ = stop_admin.send(true);
    let _ = admin_server.await;
    drop(producer);
    drop(dev_broker);
    Ok(RunReport { undelivered: report.undelivered })
}

async fn close_consumers(consumers: &ConsumerManager, deadline: Instant) {
    let wait = deadline.saturating_duration_since(Instant::now());
    if tokio::time::timeout(wait, consumers.close_all()).await.is_err() {
        tracing::warn!("consumer instances did not all leave their groups within the grace period");
    }
}

async fn expire_instances(consumers: Arc<ConsumerManager>) {
    loop {
        tokio::time::sleep(INSTANCE_SWEEP_INTERVAL).await;
        consumers.expire_idle().await;
    }
}

fn signal(mut stopped: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Clone + 'static {
    let future = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    futures::FutureExt::shared(Box::pin(future))
}

/// The TLS acceptor for a listener whose `tls` section is set; `key` names it in errors.
fn listener_acceptor(
    config: Option<&ListenerTlsConfig>,
    protocols: Protocols,
    key: &str,
) -> anyhow::Result<Option<TlsAcceptor>> {
    config.map(|config| listener_tls::acceptor(config, protocols, key)).transpose()
}

fn spawn_http<S>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<Result<(), String>>>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    // The peer address identifies an HTTP caller without X-Client-Id, for fair admission.
    let service =
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(service);
    if let Some(acceptor) = tls {
        // Through `tap_io` (doing nothing) because axum gives the peer address as ConnectInfo for
        // any tapped listener, and for no other listener but its own TcpListener.
        let listener = TlsListener::new(listener, acceptor)?.tap_io(|_| {});
        return Ok(tokio::spawn(async move {
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await.map_err(|error| error.to_string())
        }));
    }
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "cannot set TCP_NODELAY");
        }
    });
    Ok(tokio::spawn(async move {
        axum::serve(listener, service).with_graceful_shutdown(shutdown).await.map_err(|error| error.to_string())
    }))
}

async fn track_readiness(
    producer: Arc<SharedProducer>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    reporter: tonic_health::server::HealthReporter,
    stopped: watch::Receiver<bool>,
) {
    let mut was_ready = false;
    while !*stopped.borrow() {
        let now_ready = producer.has_cluster_metadata(Duration::from_secs(2)).await && !*stopped.borrow();
        if now_ready {
            // The clients got through: an old authentication or TLS failure is no reason any more.
            producer.broker_status().clear();
        }
        if now_ready != was_ready {
            ready.store(now_ready, Ordering::Release);
            metrics.ready.set(i64::from(now_ready));
            grpc::set_health(&reporter, now_ready).await;
            if now_ready {
                tracing::info!("ready: the producer has cluster metadata");
            } else {
                tracing::warn!("not ready: the producer cannot get cluster metadata");
            }
            was_ready = now_ready;
        }
        tokio::time::sleep(if was_ready { READY_RECHECK } else { READINESS_INTERVAL }).await;
    }
}

async fn sweep_sessions(hub: Arc<DeliveryHub>, metrics: Arc<Metrics>, stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        hub.maintain();
        metrics.delivery_sessions.set(i64::try_from(hub.session_count()).unwrap_or(i64::MAX));
        metrics.delivery_reports_pending.set(i64::try_from(hub.pending_reports()).unwrap_or(i64::MAX));
        tokio::time::sleep(SESSION_SWEEP_INTERVAL).await;
    }
}
