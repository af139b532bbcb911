//! The reactive consumer's loop: fetch from its consumer instance, queue records in their lanes,
//! keep up to `max_in_flight_batches` pushes going, apply each push's dispositions, and commit the
//! per-partition commit points every [`COMMIT_INTERVAL`].
//!
//! While the backend is down or the app is busy, fetching stops; the instance's bounded prefetch
//! then pauses its partitions while its worker keeps polling, so the group never sees a dead
//! member. Revoked partitions' queued records are dropped (the next owner reads them from the last
//! commit, which the revoke hook made include everything finished here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::lanes::Lanes;
use super::progress::Progress;
use super::push::{Disposition, PushContext, PushResult, push};
use super::{AdminRequest, ReactiveShared};
use crate::config::ReactiveConsumerConfig;
use crate::consumer::{ConsumedRecord, ConsumerInstance, DoneOffsets, FetchLimits, ProcessedOffset, RebalanceEvent};
use crate::error::SidecarError;

/// How often finished work is committed.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long one fetch waits for records.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How often a down backend is probed.
const DOWN_PROBE: Duration = Duration::from_millis(500);

type Fetched = Result<Result<Vec<ConsumedRecord>, SidecarError>, tokio::task::JoinError>;
type Fetch = JoinHandle<Result<Vec<ConsumedRecord>, SidecarError>>;

/// What woke the loop.
enum Woken {
    Pushed(Result<PushResult, tokio::task::JoinError>),
    Fetched(Fetched),
    Rebalanced(RebalanceEvent),
    Admin(AdminRequest),
    Tick,
}

/// The loop's state.
pub struct Dispatcher {
    pub(super) instance: Arc<ConsumerInstance>,
    pub(super) lanes: Lanes,
    pub(super) progress: Progress,
    pub(super) shared: Arc<ReactiveShared>,
    pub(super) done: DoneOffsets,
    pub(super) context: PushContext,
    pub(super) config: ReactiveConsumerConfig,
    pub(super) events: mpsc::UnboundedReceiver<RebalanceEvent>,
    pub(super) admin: mpsc::Receiver<AdminRequest>,
    in_flight: JoinSet<PushResult>,
    fetch: Option<Fetch>,
    down_until: Option<Instant>,
    last_commit: Instant,
}

impl Dispatcher {
    pub(super) fn new(
        instance: Arc<ConsumerInstance>,
        shared: Arc<ReactiveShared>,
        done: DoneOffsets,
        context: PushContext,
        config: ReactiveConsumerConfig,
        events: mpsc::UnboundedReceiver<RebalanceEvent>,
        admin: mpsc::Receiver<AdminRequest>,
    ) -> Self {
        Self {
            instance,
            lanes: Lanes::default(),
            progress: Progress::default(),
            shared,
            done,
            context,
            config,
            events,
            admin,
            in_flight: JoinSet::new(),
            fetch: None,
            down_until: None,
            last_commit: Instant::now(),
        }
    }

    /// Open records above which fetching stops.
    fn open_limit(&self) -> usize {
        self.config.max_batch_records * self.config.max_in_flight_batches * 2
    }

    /// Runs until `stop` turns true, then lets in-flight pushes finish (until `deadline`) and
    /// commits what is done.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, deadline: watch::Receiver<Option<Instant>>) {
        self.wait_for_backend(&mut stop).await;
        while !*stop.borrow() {
            self.dispatch();
            self.start_fetch();
            if self.last_commit.elapsed() >= COMMIT_INTERVAL {
                self.commit().await;
            }
            let wake = self.next_wake();
            match self.next_event(&mut stop, wake).await {
                Woken::Pushed(Ok(result)) => self.apply(result),
                Woken::Pushed(Err(error)) => tracing::error!(error = %error, "a push task failed"),
                Woken::Fetched(fetched) => {
                    self.fetch = None;
                    self.accept(fetched);
                }
                Woken::Rebalanced(event) => self.rebalanced(event),
                Woken::Admin(request) => self.serve(request).await,
                Woken::Tick => {}
            }
        }
        let deadline = deadline.borrow().unwrap_or_else(Instant::now);
        self.drain(deadline).await;
    }

    /// Waits for whatever comes first. Each source is borrowed on its own, and the fetch task is
    /// only polled, never dropped, so nothing is lost when another source wins.
    async fn next_event(&mut self, stop: &mut watch::Receiver<bool>, wake: Instant) -> Woken {
        let Self { in_flight, fetch, events, admin, .. } = self;
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => Woken::Pushed(joined),
            fetched = async { match fetch.as_mut() { Some(task) => task.await, None => std::future::pending().await } },
                if fetch.is_some() => Woken::Fetched(fetched),
            Some(event) = events.recv() => Woken::Rebalanced(event),
            Some(request) = admin.recv() => Woken::Admin(request),
            _ = tokio::time::sleep_until(wake.into()) => Woken::Tick,
            _ = stop.changed() => Woken::Tick,
        }
    }

    async fn wait_for_backend(&mut self, stop: &mut watch::Receiver<bool>) {
        while !*stop.borrow() && !self.context.backend.healthy().await {
            self.shared.set_backend_up(false, Some("the backend health check fails".into()));
            tokio::select! {
                _ = tokio::time::sleep(DOWN_PROBE) => {}
                _ = stop.changed() => {}
            }
        }
        self.shared.set_backend_up(true, None);
    }

    fn next_wake(&mut self) -> Instant {
        let mut wake = self.last_commit + COMMIT_INTERVAL;
        if let Some(until) = self.lanes.wake_delayed(Instant::now()) {
            wake = wake.min(until);
        }
        if let Some(until) = self.down_until {
            wake = wake.min(until);
        }
        wake.max(Instant::now() + Duration::from_millis(1))
    }

    /// Starts pushes while there is room, the backend is up and lanes are ready.
    fn dispatch(&mut self) {
        if let Some(until) = self.down_until {
            if Instant::now() < until {
                return;
            }
            self.down_until = None;
        }
        while self.in_flight.len() < self.config.max_in_flight_batches {
            let batch = self.lanes.take_batch(self.config.max_batch_records, self.config.max_batch_bytes);
            if batch.is_empty() {
                break;
            }
            self.shared.metrics.reactive.in_flight.set(i64::try_from(self.in_flight.len() + 1).unwrap_or(i64::MAX));
            self.in_flight.spawn(push(self.context.clone(), batch));
        }
    }

    fn start_fetch(&mut self) {
        let room = self.open_limit().saturating_sub(self.progress.open());
        if self.fetch.is_some() || self.down_until.is_some() || room == 0 {
            return;
        }
        let instance = Arc::clone(&self.instance);
        let limits = FetchLimits {
            max_bytes: self.config.max_batch_bytes * self.config.max_in_flight_batches,
            max_records: room,
            timeout: FETCH_WAIT,
        };
        // A spawned fetch is never cancelled halfway, so no answer can be lost between the worker
        // and this loop.
        self.fetch = Some(tokio::spawn(async move { instance.fetch(limits).await }));
    }

    /// Waits for a fetch in progress and queues what it brought, so that a seek or revoke that
    /// follows sees (and drops) every record fetched before it.
    pub(super) async fn settle_fetch(&mut self) {
        if let Some(fetch) = self.fetch.take() {
            let fetched = fetch.await;
            self.accept(fetched);
        }
    }

    fn accept(&mut self, fetched: Fetched) {
        match fetched {
            Ok(Ok(records)) => {
                for record in records {
                    self.progress.fetched(&record);
                    if self.is_own_dead_letter(&record) {
                        // A pattern can match our own dead letter topics: never push those back.
                        self.progress.done(&record);
                        continue;
                    }
                    self.lanes.push(record);
                }
            }
            Ok(Err(error)) => tracing::warn!(error = %error, "reactive fetch failed"),
            Err(error) => tracing::error!(error = %error, "reactive fetch task failed"),
        }
    }

    fn is_own_dead_letter(&self, record: &ConsumedRecord) -> bool {
        self.config.topic_pattern.is_some() && record.topic.ends_with(&self.config.dead_letter_topic_suffix)
    }

    /// Applies one push's dispositions.
    fn apply(&mut self, result: PushResult) {
        let metrics = &self.shared.metrics.reactive;
        metrics.backend_latency.observe(result.latency.as_secs_f64());
        metrics.pushes(result.outcome).inc();
        metrics.in_flight.set(i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX));
        let mut went_down = None;
        for (lane, settled) in result.lanes {
            if !self.lanes.is_current(result.batch, &lane) {
                // Revoked or sought while in flight: the next owner or the next fetch has it.
                self.lanes.release(result.batch, lane);
                continue;
            }
            let mut retry = Vec::new();
            let mut not_before: Option<Instant> = None;
            for (mut pending, disposition) in settled {
                match disposition {
                    Disposition::Done(how) => {
                        metrics.records(how).inc();
                        self.progress.done(&pending.record);
                    }
                    Disposition::Retry { after, counted, error } => {
                        if counted {
                            pending.attempts += 1;
                            metrics.retries.inc();
                        }
                        let backoff = self.backoff(pending.attempts).max(after.unwrap_or_default());
                        not_before =
                            Some(not_before.map_or(Instant::now() + backoff, |t| t.max(Instant::now() + backoff)));
                        self.shared.set_last_error(error);
                        retry.push(pending);
                    }
                    Disposition::Down { error } => {
                        went_down = Some(error);
                        retry.push(pending);
                    }
                }
            }
            self.lanes.finish(result.batch, lane, retry, not_before);
        }
        match went_down {
            Some(error) => {
                if self.down_until.is_none() {
                    metrics.pauses.inc();
                    tracing::warn!(error = %error, "the backend is down: pushing paused, nothing dead-lettered");
                }
                self.down_until = Some(Instant::now() + DOWN_PROBE);
                self.shared.set_backend_up(false, Some(error));
            }
            None if result.outcome != "down" => self.shared.set_backend_up(true, None),
            None => {}
        }
        self.shared.metrics.reactive.open_records.set(i64::try_from(self.progress.open()).unwrap_or(i64::MAX));
    }

    /// Exponential backoff with jitter for a record that failed `attempts` times.
    fn backoff(&self, attempts: u32) -> Duration {
        let retry = &self.config.retry;
        let exponent = attempts.saturating_sub(1).min(20);
        let base = retry.initial_backoff_ms.saturating_mul(1 << exponent).min(retry.max_backoff_ms);
        let jitter = rand::random_range(0..=base / 5);
        Duration::from_millis((base - base / 10 + jitter).min(retry.max_backoff_ms))
    }

    fn rebalanced(&mut self, event: RebalanceEvent) {
        if let RebalanceEvent::Revoked(partitions) = event {
            self.lanes.drop_partitions(&partitions);
            for partition in &partitions {
                self.progress.reset(partition, None);
            }
            tracing::info!(partitions = partitions.len(), "reactive consumer: partitions revoked");
        }
    }

    /// Commits every partition whose commit point moved, and shares the points with the revoke
    /// hook.
    pub(super) async fn commit(&mut self) {
        self.last_commit = Instant::now();
        {
            let mut done = crate::sync::lock(&self.done);
            done.clear();
            done.extend(self.progress.commit_points());
        }
        let due = self.progress.to_commit();
        if due.is_empty() {
            return;
        }
        let offsets = due
            .iter()
            .map(|(partition, next)| ProcessedOffset {
                topic: partition.topic.clone(),
                partition: partition.partition,
                offset: next - 1,
                metadata: None,
            })
            .collect();
        match self.instance.commit(Some(offsets)).await {
            Ok(_) => {
                for (partition, next) in due {
                    self.progress.committed(&partition, next);
                }
            }
            Err(error) => tracing::warn!(error = %error, "reactive commit failed; retrying"),
        }
    }

    /// At shutdown: lets in-flight pushes finish until `deadline`, then commits what is done.
    async fn drain(&mut self, deadline: Instant) {
        if let Some(fetch) = self.fetch.take()
            && let Ok(Ok(fetched)) = fetch.await
        {
            for record in fetched {
                self.progress.fetched(&record);
                self.lanes.push(record);
            }
        }
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline.into(), self.in_flight.join_next()).await {
                Ok(Some(Ok(result))) => self.apply(result),
                Ok(Some(Err(_))) | Ok(None) => {}
                Err(_) => {
                    tracing::warn!(
                        in_flight = self.in_flight.len(),
                        "pushes still in flight at the end of the grace period"
                    );
                    self.in_flight.abort_all();
                    break;
                }
            }
        }
        self.commit().await;
        tracing::info!(open = self.progress.open(), "reactive consumer stopped; finished work committed");
    }
}
