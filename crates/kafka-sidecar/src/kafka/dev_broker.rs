//! The embedded development broker: librdkafka's in-process mock cluster, for running the sidecar
//! with no Kafka installed. Data lives in memory only.
//!
//! The mock cluster is not `Send`, so it lives on a thread of its own until the broker is dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

/// A running mock cluster.
pub struct DevBroker {
    bootstrap_servers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DevBroker {
    /// Starts a mock cluster of `brokers` brokers.
    pub fn start(brokers: u32) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let count = i32::try_from(brokers)?;
        let thread = std::thread::Builder::new().name("dev-broker".into()).spawn(move || {
            match MockCluster::new(count) {
                Ok(cluster) => {
                    let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                    // Keep the cluster alive until asked to stop (or the owner disappears).
                    let _ = stop_rx.recv();
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            }
        })?;
        let bootstrap_servers = ready_rx.recv()??;
        Ok(Self { bootstrap_servers, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// Bootstrap servers of the mock cluster.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
