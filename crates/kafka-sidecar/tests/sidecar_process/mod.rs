//! The real `kafka-sidecar` binary as a child process, for tests that need what an in-process
//! sidecar cannot do: die abruptly (SIGKILL), with no graceful shutdown at all.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::eventually;

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-sidecar");

/// A sidecar process; killed (SIGKILL) when dropped.
pub struct SidecarProcess {
    child: Option<Child>,
    pub admin: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SidecarProcess {
    /// Starts the binary with `yaml` as its configuration file (listeners on port 0) and waits
    /// until it is ready.
    pub async fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let info = dir.path().join("listen.json");
        let log = dir.path().join("stderr.log");
        let mut command = Command::new(BINARY);
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KAFKA_SIDECAR_")) {
            command.env_remove(name);
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .args(["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--listen-info")
            .arg(&info)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the sidecar binary");
        let mut process = Self { child: Some(child), admin: String::new(), log, _dir: dir };
        eventually(Duration::from_secs(30), "the sidecar's listen info", async || {
            std::fs::read(&info).ok().and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok()).is_some()
        })
        .await;
        let addresses: Value = serde_json::from_slice(&std::fs::read(&info).expect("listen info")).expect("json");
        process.admin = format!("http://{}", addresses["admin"].as_str().expect("admin address"));
        let ready = format!("{}/readyz", process.admin);
        eventually(Duration::from_secs(30), "the sidecar process's readiness", async || {
            reqwest::get(&ready).await.is_ok_and(|response| response.status().is_success())
        })
        .await;
        process
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no commit, no leaving the group.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let pid = child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|status| status.success());
        let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
        signalled && status.success()
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
