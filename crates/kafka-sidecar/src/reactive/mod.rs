//! The reactive consumer: polls Kafka inside the sidecar and POSTs batches to the app's HTTP
//! endpoint, in order per key and in parallel across keys, committing only what is finished and
//! sending what the app cannot process to a dead letter topic.
//!
//! * `lanes` orders records per key; `progress` turns out-of-order completion into in-order
//!   commit points; `dispatcher` runs the loop; `push` is one batch's trip (backend, then dead
//!   letters); `backend` is the HTTP contract; `dead_letter` and `redrive` own the dead letter
//!   topic; `admin` serves the operators' requests inside the loop.
//! * It reuses the consumer core: one internal instance of [`ConsumerManager`], whose worker keeps
//!   polling (and pauses partitions when the bounded prefetch is full) whatever the backend does,
//!   and whose revoke hook commits finished work before partitions go.

mod admin;
mod backend;
mod dead_letter;
mod dispatcher;
mod lanes;
mod progress;
mod push;
mod redrive;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use admin::{AdminRequest, HoldRequest, PartitionState, ReactiveState, SeekRequest};
pub use redrive::{RedriveReport, RedriveRequest};

use self::backend::Backend;
use self::dead_letter::DeadLetters;
use self::dispatcher::Dispatcher;
use self::push::PushContext;
use crate::config::Config;
use crate::consumer::{ConsumerManager, InstanceHooks, InstanceSettings, Subscription};
use crate::error::{ErrorCode, SidecarError};
use crate::http::render::RecordFormats;
use crate::kafka::SharedProducer;
use crate::metrics::Metrics;
use crate::schema::SchemaRegistry;

/// What the loop and the admin edge share.
pub struct ReactiveShared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    backend_up: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl ReactiveShared {
    fn set_backend_up(&self, up: bool, error: Option<String>) {
        self.backend_up.store(up, Ordering::Release);
        if let Some(error) = error {
            self.set_last_error(error);
        }
    }

    fn set_last_error(&self, error: String) {
        *crate::sync::lock(&self.last_error) = Some(error);
    }

    fn last_error(&self) -> Option<String> {
        crate::sync::lock(&self.last_error).clone()
    }
}

/// A running reactive consumer.
pub struct ReactiveConsumer {
    shared: Arc<ReactiveShared>,
    admin: mpsc::Sender<AdminRequest>,
    stop: watch::Sender<bool>,
    deadline: watch::Sender<Option<Instant>>,
    task: Mutex<Option<JoinHandle<()>>>,
    redrive: redrive::Redriver,
}

impl ReactiveConsumer {
    /// Starts it when `reactive_consumer.enabled`: checks (and creates) the dead letter topics of
    /// named topics, creates its consumer instance, subscribes, and starts the loop. Start-up
    /// fails with a clear error when a dead letter topic is missing and cannot be created.
    pub async fn start(
        config: &Config,
        bootstrap: &str,
        consumers: &ConsumerManager,
        producer: Arc<SharedProducer>,
        schemas: Option<Arc<SchemaRegistry>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let reactive = &config.reactive_consumer;
        if !reactive.enabled {
            return Ok(None);
        }
        let mut admin_client = rdkafka::ClientConfig::new();
        admin_client.set("bootstrap.servers", bootstrap);
        for (key, value) in crate::kafka::shared_consumer_properties(config) {
            admin_client.set(key, value);
        }
        let dead_letters = Arc::new(DeadLetters::new(
            Arc::clone(&producer),
            admin_client.clone(),
            &reactive.dead_letter_topic_suffix,
            &reactive.group_id,
        ));
        for topic in &reactive.topics {
            dead_letters.ensure_topic(topic).await.with_context(|| {
                format!(
                    "reactive_consumer: dead letter topic {:?} is missing and cannot be created",
                    dead_letters.topic_for(topic)
                )
            })?;
        }
        let backend = Backend::new(
            &reactive.backend_url,
            &reactive.backend_health_url,
            Duration::from_millis(reactive.request_timeout_ms),
        )
        .context("reactive_consumer: cannot build the backend HTTP client")?;
        let (events, events_received) = mpsc::unbounded_channel();
        let done = Arc::new(Mutex::new(HashMap::new()));
        let settings = InstanceSettings {
            group: reactive.group_id.clone(),
            name: "reactive".into(),
            format: crate::config::EmbeddedFormatName::Binary,
            auto_offset_reset: reactive.auto_offset_reset,
            auto_commit: false,
            fetch_min_bytes: 0,
            request_timeout_ms: 500,
            group_instance_id: None,
        };
        let mut instance_config = config.clone();
        instance_config.consumer.properties.extend(reactive.properties.clone());
        let hooks = InstanceHooks { events: Some(events), done: Some(Arc::clone(&done)) };
        let instance = consumers
            .create_internal_with(settings, hooks, &instance_config)
            .map_err(|error| anyhow::anyhow!("reactive_consumer: {error}"))?;
        let subscription = match &reactive.topic_pattern {
            Some(pattern) => Subscription::Pattern(pattern.clone()),
            None => Subscription::Topics(reactive.topics.clone()),
        };
        instance.subscribe(subscription).await.map_err(|error| anyhow::anyhow!("reactive_consumer: {error}"))?;
        let shared =
            Arc::new(ReactiveShared { metrics, backend_up: AtomicBool::new(false), last_error: Mutex::new(None) });
        let context = PushContext {
            backend,
            dead_letters: Arc::clone(&dead_letters),
            max_attempts: reactive.retry.max_attempts,
            formats: RecordFormats { key: reactive.key_format, value: reactive.value_format, schemas },
        };
        let (admin, admin_received) = mpsc::channel(16);
        let (stop, stopped) = watch::channel(false);
        let (deadline, deadline_received) = watch::channel(None);
        let dispatcher = Dispatcher::new(
            Arc::clone(&instance),
            Arc::clone(&shared),
            done,
            context,
            reactive.clone(),
            events_received,
            admin_received,
        );
        let task = tokio::spawn(dispatcher.run(stopped, deadline_received));
        tracing::info!(group = %reactive.group_id, backend = %reactive.backend_url, "reactive consumer started");
        let redrive = redrive::Redriver::new(producer, admin_client);
        Ok(Some(Arc::new(Self { shared, admin, stop, deadline, task: Mutex::new(Some(task)), redrive })))
    }

    /// Ready: the backend answers (and its health URL, when configured, says healthy).
    pub fn is_ready(&self) -> bool {
        self.shared.backend_up.load(Ordering::Acquire)
    }

    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> AdminRequest) -> Result<T, SidecarError> {
        let (reply, answer) = oneshot::channel();
        let unavailable = || SidecarError::new(ErrorCode::ShuttingDown, "the reactive consumer is stopping");
        self.admin.send(request(reply)).await.map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())
    }

    /// Assignment, paused partitions, in-flight work, commits, last error.
    pub async fn state(&self) -> Result<ReactiveState, SidecarError> {
        let mut state = self.ask(AdminRequest::State).await?;
        state.backend_up = self.is_ready();
        state.last_error = self.shared.last_error();
        Ok(state)
    }

    /// Pauses or resumes partitions (all with an empty request).
    pub async fn hold(&self, request: HoldRequest) -> Result<Vec<crate::consumer::TopicPartition>, SidecarError> {
        self.ask(|reply| AdminRequest::Hold(request, reply)).await?
    }

    /// Moves the group's position on partitions of a topic.
    pub async fn seek(&self, request: SeekRequest) -> Result<Vec<crate::consumer::TopicPartition>, SidecarError> {
        self.ask(|reply| AdminRequest::Seek(request, reply)).await?
    }

    /// Re-produces dead letters to their original topics.
    pub async fn redrive(&self, request: RedriveRequest) -> Result<RedriveReport, SidecarError> {
        self.redrive.run(request).await
    }

    /// Stops pushing, lets in-flight pushes finish until `deadline`, commits what is done.
    pub async fn stop(&self, deadline: Instant) {
        let _ = self.deadline.send(Some(deadline));
        let _ = self.stop.send(true);
        let task = crate::sync::lock(&self.task).take();
        if let Some(task) = task {
            let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
            if tokio::time::timeout(wait, task).await.is_err() {
                tracing::warn!("the reactive consumer did not stop within the grace period");
            }
        }
    }
}
