//! The `kafka-sidecar` binary: parse flags, load configuration, bind, run until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kafka_sidecar::config::ConfigSources;
use kafka_sidecar::{Config, Listeners, run, telemetry};

/// One shared Kafka producer per pod, behind local gRPC and HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, env = "KAFKA_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    /// Use the embedded in-memory dev broker even if bootstrap servers are set.
    #[arg(long)]
    dev: bool,
    /// Kafka bootstrap servers (kafka.bootstrap_servers).
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// gRPC TCP address (grpc.listen).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// gRPC Unix socket path (grpc.unix_socket).
    #[arg(long)]
    grpc_unix_socket: Option<PathBuf>,
    /// HTTP API address (http.listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Admin address for metrics and health (admin.listen).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Let listeners bind non-loopback addresses with auth off (auth.allow_insecure_bind).
    #[arg(long)]
    allow_insecure_bind: bool,
    /// Any configuration key: --set producer.linger_ms=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Write the bound addresses as JSON to this file once listening.
    #[arg(long)]
    listen_info: Option<PathBuf>,
    /// Print the effective configuration as YAML, secrets redacted, and exit.
    #[arg(long)]
    print_config: bool,
}

impl Cli {
    fn sources(&self) -> ConfigSources {
        let mut overrides = Vec::new();
        let mut flag = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                overrides.push(format!("{key}={value}"));
            }
        };
        flag("kafka.dev", self.dev.then(|| "true".to_string()));
        flag("kafka.bootstrap_servers", self.bootstrap_servers.clone());
        flag("grpc.listen", self.grpc_listen.map(|a| a.to_string()));
        flag("grpc.unix_socket", self.grpc_unix_socket.as_ref().map(|p| p.display().to_string()));
        flag("http.listen", self.http_listen.map(|a| a.to_string()));
        flag("admin.listen", self.admin_listen.map(|a| a.to_string()));
        flag("auth.allow_insecure_bind", self.allow_insecure_bind.then(|| "true".to_string()));
        overrides.extend(self.overrides.iter().cloned());
        ConfigSources { file: self.config.clone(), env: std::env::vars().collect(), overrides }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.sources()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kafka-sidecar: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        return match kafka_sidecar::config::redacted(&config).and_then(|tree| serde_norway::to_string(&tree)) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("kafka-sidecar: cannot print configuration: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // Span export (trace.otlp) rides on the logging subscriber; it is built first so a bad
    // exporter set-up stops the start with a message.
    let export = match telemetry::SpanExport::start(&config.trace.otlp) {
        Ok(export) => export,
        Err(error) => {
            eprintln!("kafka-sidecar: {error}");
            return ExitCode::from(2);
        }
    };
    // The filter's control is process-global; the admin port picks it up (`/admin/logging`).
    telemetry::init_with_export(&config.log, export);
    let outcome = serve(config, cli.listen_info).await;
    // The last spans (shutdown included) go out before exit; the SDK's flush blocks.
    let _ = tokio::task::spawn_blocking(telemetry::shutdown_export).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("kafka-sidecar failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, listen_info: Option<PathBuf>) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    if let Some(path) = listen_info {
        let json = serde_json::to_vec_pretty(&listeners.addresses()?)?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, json)?;
        std::fs::rename(&partial, &path)?;
    }
    run(config, listeners, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the sidecar");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}
