//! The registry of consumer instances: create (bounded by `consumer.max_instances`), look up,
//! delete, expire idle ones, and close them all at shutdown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;

use tokio::sync::mpsc::UnboundedSender;

use super::context::{DoneOffsets, InstanceContext, RebalanceEvent};
use super::instance::ConsumerInstance;
use super::types::InstanceSettings;
use super::worker::{COMMAND_QUEUE, Worker, wake_on_messages};
use crate::config::{Config, ConsumerConfig};
use crate::error::{ErrorCode, SidecarError};
use crate::kafka::consumer_config;
use crate::metrics::{ConsumerCounters, Metrics};

/// How long a caller refused by the instance cap is asked to wait.
const CAP_RETRY: Duration = Duration::from_secs(1);
/// Lag lookups at once (each builds a client and reads watermarks).
const LAG_LOOKUPS: usize = 2;
/// Stack of an instance's worker thread; it holds no large values.
const WORKER_STACK_BYTES: usize = 256 * 1024;

type InstanceKey = (String, String);

/// Every consumer instance of this sidecar.
pub struct ConsumerManager {
    config: Config,
    bootstrap: String,
    metrics: Arc<Metrics>,
    instances: Mutex<HashMap<InstanceKey, Arc<ConsumerInstance>>>,
    starting: Mutex<HashSet<InstanceKey>>,
    internal: Mutex<Vec<Arc<ConsumerInstance>>>,
    lag_lookups: tokio::sync::Semaphore,
    closed: AtomicBool,
}

/// What an internal instance reports back to its owner.
#[derive(Default)]
pub struct InstanceHooks {
    /// Rebalance events, after the worker has acted on them.
    pub events: Option<UnboundedSender<RebalanceEvent>>,
    /// Finished offsets to commit before partitions are revoked.
    pub done: Option<DoneOffsets>,
}

impl ConsumerManager {
    /// A manager whose instances connect to `bootstrap`.
    pub fn new(config: &Config, bootstrap: &str, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            config: config.clone(),
            bootstrap: bootstrap.to_string(),
            metrics,
            instances: Mutex::new(HashMap::new()),
            starting: Mutex::new(HashSet::new()),
            internal: Mutex::new(Vec::new()),
            lag_lookups: tokio::sync::Semaphore::new(LAG_LOOKUPS),
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

    /// A permit for one lag lookup, so lag requests cannot exhaust the blocking pool.
    pub async fn lag_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.lag_lookups.acquire().await.ok()
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
        {
            // Reserve the name under the lock; build the consumer without holding it.
            let instances = crate::sync::lock(&self.instances);
            let mut starting = crate::sync::lock(&self.starting);
            if instances.contains_key(&key) || starting.contains(&key) {
                return Err(SidecarError::new(
                    ErrorCode::ConsumerExists,
                    format!("consumer instance {:?} already exists in group {:?}", settings.name, settings.group),
                ));
            }
            if instances.len() + starting.len() >= self.config.consumer.max_instances {
                return Err(SidecarError {
                    code: ErrorCode::TooManyConsumers,
                    message: format!("the sidecar holds its maximum of {} consumer instances", instances.len()),
                    retry_after: Some(CAP_RETRY),
                });
            }
            starting.insert(key.clone());
        }
        let started = self.start_worker(settings, InstanceHooks::default(), &self.config);
        let mut instances = crate::sync::lock(&self.instances);
        crate::sync::lock(&self.starting).remove(&key);
        let instance = Arc::new(started?);
        instances.insert(key, Arc::clone(&instance));
        self.metrics.consumer.instances.set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
        Ok(instance)
    }

    /// Creates an instance for the sidecar's own use (the reactive consumer): never expired, not
    /// reachable through the REST API, closed at shutdown; its rebalances go to `hooks.events` and
    /// `hooks.done` offsets are committed before partitions are revoked.
    /// `config` may differ from the manager's (e.g. `reactive_consumer.properties` merged in).
    pub fn create_internal_with(
        &self,
        settings: InstanceSettings,
        hooks: InstanceHooks,
        config: &Config,
    ) -> Result<Arc<ConsumerInstance>, SidecarError> {
        let instance = Arc::new(self.start_worker(settings, hooks, config)?);
        crate::sync::lock(&self.internal).push(Arc::clone(&instance));
        Ok(instance)
    }

    fn start_worker(
        &self,
        settings: InstanceSettings,
        hooks: InstanceHooks,
        config: &Config,
    ) -> Result<ConsumerInstance, SidecarError> {
        let label = format!("{}/{}", settings.group, settings.name);
        let client = consumer_config(config, &self.bootstrap, &settings);
        let oauth = crate::kafka::oauth::OAuthTokenSource::from_config(&config.kafka.security).map_err(|error| {
            SidecarError::new(ErrorCode::InvalidConsumerConfig, format!("cannot create the consumer: {error}"))
        })?;
        let context = InstanceContext::new(label.clone(), hooks.done).with_oauth(oauth);
        let mut consumer: BaseConsumer<InstanceContext> = client.create_with_context(context).map_err(|error| {
            SidecarError::new(ErrorCode::InvalidConsumerConfig, format!("cannot create the consumer: {error}"))
        })?;
        let (commands, receiver) = sync_channel(COMMAND_QUEUE);
        let wake_flag = wake_on_messages(&mut consumer, commands.clone());
        let counters = ConsumerCounters::new(Arc::clone(&self.metrics), &settings.group);
        let operation_timeout = Duration::from_millis(self.config.kafka.metadata_timeout_ms);
        let worker =
            Worker::new(consumer, &settings, self.config.consumer.prefetch_max_bytes, operation_timeout, counters)
                .with_events(hooks.events)
                .with_wake_flag(wake_flag);
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

    /// Removes an instance only if it is still idle (the app may have used it since the scan).
    fn remove_if_idle(&self, key: &InstanceKey, timeout: Duration) -> Option<Arc<ConsumerInstance>> {
        let mut instances = crate::sync::lock(&self.instances);
        let idle = instances.get(key).is_some_and(|instance| instance.last_used().elapsed() >= timeout);
        let instance = if idle { instances.remove(key) } else { None };
        self.metrics.consumer.instances.set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
        instance
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
            if let Some(instance) = self.remove_if_idle(&key, timeout) {
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
        for instance in crate::sync::lock(&self.internal).iter() {
            groups.entry(instance.settings.group.clone()).or_default().push(Arc::clone(instance));
        }
        groups
    }

    /// Refuses new instances and closes every instance (each commits with auto-commit and leaves
    /// its group), all at once.
    pub async fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let mut instances: Vec<Arc<ConsumerInstance>> =
            crate::sync::lock(&self.instances).drain().map(|(_, instance)| instance).collect();
        instances.append(&mut crate::sync::lock(&self.internal));
        let count = instances.len();
        futures::future::join_all(instances.iter().map(|instance| instance.close())).await;
        self.metrics.consumer.instances.set(0);
        if count > 0 {
            tracing::info!(instances = count, "consumer instances closed");
        }
    }
}
