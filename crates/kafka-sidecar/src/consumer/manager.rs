//! The registry of consumer instances: create (bounded by `consumer.max_instances`), look up,
//! delete, expire idle ones, and close them all at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;

use super::context::InstanceContext;
use super::instance::ConsumerInstance;
use super::types::InstanceSettings;
use super::worker::{COMMAND_QUEUE, Worker, wake_on_messages};
use crate::config::{Config, ConsumerConfig};
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::consumer_config;
use crate::metrics::{ConsumerCounters, Metrics};

/// How long a caller refused by the instance cap is asked to wait.
const CAP_RETRY: Duration = Duration::from_secs(1);
/// Stack of an instance's worker thread; it holds no large values.
const WORKER_STACK_BYTES: usize = 256 * 1024;

type InstanceKey = (String, String);

/// Every consumer instance of this sidecar.
pub struct ConsumerManager {
    config: Config,
    bootstrap: String,
    metrics: Arc<Metrics>,
    instances: Mutex<HashMap<InstanceKey, Arc<ConsumerInstance>>>,
    closed: AtomicBool,
}

impl ConsumerManager {
    /// A manager whose instances connect to `bootstrap`.
    pub fn new(config: &Config, bootstrap: &str, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            config: config.clone(),
            bootstrap: bootstrap.to_string(),
            metrics,
            instances: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// The consumer configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config.consumer
    }

    /// The whole configuration (lag lookups build their own clients from it).
    pub fn full_config(&self) -> &Config {
        &self.config
    }

    /// Bootstrap servers the instances use.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates an instance and starts its worker thread.
    pub fn create(&self, settings: InstanceSettings) -> Result<Arc<ConsumerInstance>, SidecarError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SidecarError::new(ErrorCode::ShuttingDown, "the sidecar is shutting down"));
        }
        let key = (settings.group.clone(), settings.name.clone());
        let mut instances = crate::sync::lock(&self.instances);
        if instances.contains_key(&key) {
            return Err(SidecarError::new(
                ErrorCode::ConsumerExists,
                format!("consumer instance {:?} already exists in group {:?}", settings.name, settings.group),
            ));
        }
        if instances.len() >= self.config.consumer.max_instances {
            return Err(SidecarError {
                code: ErrorCode::TooManyConsumers,
                message: format!("the sidecar holds its maximum of {} consumer instances", instances.len()),
                retry_after: Some(CAP_RETRY),
            });
        }
        let instance = Arc::new(self.start_worker(settings)?);
        instances.insert(key, Arc::clone(&instance));
        self.metrics.consumer.instances.set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
        Ok(instance)
    }

    fn start_worker(&self, settings: InstanceSettings) -> Result<ConsumerInstance, SidecarError> {
        let label = format!("{}/{}", settings.group, settings.name);
        let client = consumer_config(&self.config, &self.bootstrap, &settings);
        let mut consumer: BaseConsumer<InstanceContext> =
            client.create_with_context(InstanceContext::new(label.clone())).map_err(|error| {
                SidecarError::new(ErrorCode::InvalidConsumerConfig, format!("cannot create the consumer: {error}"))
            })?;
        let (commands, receiver) = sync_channel(COMMAND_QUEUE);
        wake_on_messages(&mut consumer, commands.clone());
        let counters = ConsumerCounters::new(Arc::clone(&self.metrics), &settings.group);
        let operation_timeout = Duration::from_millis(self.config.kafka.metadata_timeout_ms);
        let worker =
            Worker::new(consumer, &settings, self.config.consumer.prefetch_max_bytes, operation_timeout, counters);
        std::thread::Builder::new()
            .name(format!("consumer {label}"))
            .stack_size(WORKER_STACK_BYTES)
            .spawn(move || worker.run(receiver))
            .map_err(|error| {
                tracing::error!(error = %error, "cannot start a consumer thread");
                SidecarError::new(ErrorCode::Internal, "cannot start the consumer instance")
            })?;
        tracing::info!(instance = %label, format = ?settings.format, "consumer instance created");
        Ok(ConsumerInstance::new(settings, commands))
    }

    /// The instance `name` of `group`.
    pub fn get(&self, group: &str, name: &str) -> Result<Arc<ConsumerInstance>, SidecarError> {
        crate::sync::lock(&self.instances).get(&(group.to_string(), name.to_string())).cloned().ok_or_else(|| {
            SidecarError::new(
                ErrorCode::ConsumerNotFound,
                format!("consumer instance {name:?} not found in group {group:?}"),
            )
        })
    }

    /// Removes an instance; it commits (with auto-commit) and leaves its group before this returns.
    pub async fn delete(&self, group: &str, name: &str) -> Result<(), SidecarError> {
        let instance = self.remove(&(group.to_string(), name.to_string()))?;
        instance.close().await;
        tracing::info!(instance = %format!("{group}/{name}"), "consumer instance deleted");
        Ok(())
    }

    fn remove(&self, key: &InstanceKey) -> Result<Arc<ConsumerInstance>, SidecarError> {
        let mut instances = crate::sync::lock(&self.instances);
        let instance = instances.remove(key).ok_or_else(|| {
            SidecarError::new(
                ErrorCode::ConsumerNotFound,
                format!("consumer instance {:?} not found in group {:?}", key.1, key.0),
            )
        })?;
        self.metrics.consumer.instances.set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
        Ok(instance)
    }

    /// Closes instances unused for `consumer.instance_timeout_ms`; returns how many.
    pub async fn expire_idle(&self) -> usize {
        let timeout = Duration::from_millis(self.config.consumer.instance_timeout_ms);
        let now = Instant::now();
        let idle: Vec<InstanceKey> = crate::sync::lock(&self.instances)
            .iter()
            .filter(|(_, instance)| now.saturating_duration_since(instance.last_used()) >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        let mut expired = 0;
        for key in idle {
            if let Ok(instance) = self.remove(&key) {
                instance.close().await;
                tracing::info!(group = %key.0, instance = %key.1, "idle consumer instance expired");
                expired += 1;
            }
        }
        expired
    }

    /// Instances by group.
    pub fn groups(&self) -> BTreeMap<String, Vec<Arc<ConsumerInstance>>> {
        let mut groups: BTreeMap<String, Vec<Arc<ConsumerInstance>>> = BTreeMap::new();
        for ((group, _), instance) in crate::sync::lock(&self.instances).iter() {
            groups.entry(group.clone()).or_default().push(Arc::clone(instance));
        }
        groups
    }

    /// Refuses new instances and closes every instance (each commits with auto-commit and leaves
    /// its group), all at once.
    pub async fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let instances: Vec<Arc<ConsumerInstance>> =
            crate::sync::lock(&self.instances).drain().map(|(_, instance)| instance).collect();
        let count = instances.len();
        futures::future::join_all(instances.iter().map(|instance| instance.close())).await;
        self.metrics.consumer.instances.set(0);
        if count > 0 {
            tracing::info!(instances = count, "consumer instances closed");
        }
    }
}
