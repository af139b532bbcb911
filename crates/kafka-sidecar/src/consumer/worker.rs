//! The thread that owns one instance's librdkafka consumer. Everything reaches it as a
//! [`Command`] over a bounded channel; it answers each on a oneshot. No lock is held across a poll.
//!
//! The loop waits on the command channel (woken early by librdkafka's "queue non-empty" callback),
//! then drains librdkafka into the [`FetchBuffer`] up to `consumer.prefetch_max_bytes`, applies
//! rebalances, and answers a waiting long-poll fetch. It calls `poll` at least every [`TICK`]
//! whatever the app does, so a slow or absent HTTP client never exceeds `max.poll.interval.ms`:
//! when the app stops fetching, the buffer fills and the assigned partitions are paused, not
//! starved (see `flow_control`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use super::buffer::{FetchBuffer, next_positions};
use super::context::{InstanceContext, RebalanceEvent};
use super::types::{
    CommittedOffset, ConsumedRecord, FetchLimits, InstanceState, ProcessedOffset, SeekPosition, Subscription,
    TimestampKind, TopicPartition,
};
use crate::error::SidecarError;
use crate::metrics::ConsumerCounters;

/// The longest the worker goes without calling `poll`.
pub const TICK: Duration = Duration::from_millis(200);
/// Commands queued per instance before callers get `TOO_MANY_CONSUMERS`-style backpressure.
pub const COMMAND_QUEUE: usize = 64;

/// An answer to a command.
pub type Reply<T> = oneshot::Sender<Result<T, SidecarError>>;

/// What an instance can be asked to do.
pub enum Command {
    /// Subscribe to topics or a pattern.
    Subscribe(Subscription, Reply<()>),
    /// Drop the subscription (and the assignment it brought).
    Unsubscribe(Reply<()>),
    /// Assign partitions by hand; an empty list unassigns.
    Assign(Vec<TopicPartition>, Reply<()>),
    /// Return buffered records, waiting up to the limits' timeout for some.
    Fetch(FetchLimits, Reply<Vec<ConsumedRecord>>),
    /// Commit the given processed offsets, or with `None` everything returned so far.
    Commit(Option<Vec<ProcessedOffset>>, Reply<Vec<CommittedOffset>>),
    /// Read the group's committed offsets.
    Committed(Vec<TopicPartition>, Reply<Vec<CommittedOffset>>),
    /// Move partitions' positions.
    Seek(Vec<(TopicPartition, SeekPosition)>, Reply<Vec<(TopicPartition, Option<i64>)>>),
    /// Report subscription and assignment.
    State(Reply<InstanceState>),
    /// Hold (pause) or release partitions regardless of the buffer (operators, the reactive
    /// consumer); held partitions stay paused across rebalances.
    Hold(Vec<TopicPartition>, bool, Reply<()>),
    /// Take back records a fetch returned but the edge could not hand over (e.g. their schemas
    /// could not be loaded), so the next fetch returns them again and commits do not pass them.
    Restore(Vec<ConsumedRecord>, Reply<()>),
    /// Leave the group (committing returned records with auto-commit) and stop.
    Close(Reply<()>),
    /// librdkafka has something queued.
    Wake,
}

/// What an instance reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    Idle,
    Subscribed(Subscription),
    Assigned(Vec<TopicPartition>),
}

struct Waiter {
    limits: FetchLimits,
    deadline: Instant,
    reply: Reply<Vec<ConsumedRecord>>,
}

/// A seek librdkafka refused because the partition was not fetching yet; retried until it sticks.
pub(super) struct PendingSeek {
    pub partition: TopicPartition,
    pub offset: Offset,
    pub until: Instant,
}

/// One instance's consumer and state, owned by its thread.
pub(super) struct Worker {
    pub consumer: BaseConsumer<InstanceContext>,
    pub buffer: FetchBuffer,
    pub mode: Mode,
    pub auto_commit: bool,
    pub fetch_min_bytes: usize,
    pub prefetch_max_bytes: usize,
    pub operation_timeout: Duration,
    pub counters: ConsumerCounters,
    pub pending_seeks: Vec<PendingSeek>,
    paused: bool,
    held: HashSet<TopicPartition>,
    events: Option<UnboundedSender<RebalanceEvent>>,
    wake_pending: Arc<AtomicBool>,
    waiter: Option<Waiter>,
    topic_names: HashMap<String, Arc<str>>,
}

/// Wires librdkafka's "queue became non-empty" callback to a [`Command::Wake`]; one Wake at a
/// time, so wake-ups never crowd the app's commands out of the queue.
pub(super) fn wake_on_messages(
    consumer: &mut BaseConsumer<InstanceContext>,
    commands: SyncSender<Command>,
) -> Arc<AtomicBool> {
    let pending = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&pending);
    consumer.set_nonempty_callback(move || {
        if !flag.swap(true, Ordering::AcqRel) {
            match commands.try_send(Command::Wake) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => flag.store(false, Ordering::Release),
            }
        }
    });
    pending
}

impl Worker {
    pub(super) fn new(
        consumer: BaseConsumer<InstanceContext>,
        settings: &super::InstanceSettings,
        prefetch_max_bytes: usize,
        operation_timeout: Duration,
        counters: ConsumerCounters,
    ) -> Self {
        Self {
            consumer,
            buffer: FetchBuffer::default(),
            mode: Mode::Idle,
            auto_commit: settings.auto_commit,
            fetch_min_bytes: settings.fetch_min_bytes,
            prefetch_max_bytes,
            operation_timeout,
            counters,
            pending_seeks: Vec::new(),
            paused: false,
            held: HashSet::new(),
            events: None,
            wake_pending: Arc::new(AtomicBool::new(false)),
            waiter: None,
            topic_names: HashMap::new(),
        }
    }

    /// Shares the flag [`wake_on_messages`] sets while a Wake is queued.
    pub(super) fn with_wake_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.wake_pending = flag;
        self
    }

    /// Forwards rebalance events to `events` (after the worker has acted on them).
    pub(super) fn with_events(mut self, events: Option<UnboundedSender<RebalanceEvent>>) -> Self {
        self.events = events;
        self
    }

    /// Serves commands until `Close` or until every sender is gone.
    pub(super) fn run(mut self, commands: Receiver<Command>) {
        loop {
            match commands.recv_timeout(self.next_wait()) {
                Ok(Command::Close(reply)) => {
                    self.close();
                    // Dropping the consumer closes it and leaves the group; answer once it has.
                    drop(self);
                    let _ = reply.send(Ok(()));
                    return;
                }
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            }
            self.drain_kafka();
            // Failures were logged; the seek's caller had its answer already.
            let _ = self.retry_pending_seeks();
            self.answer_waiter(false);
            self.flow_control();
        }
    }

    fn next_wait(&self) -> Duration {
        let mut wait = TICK;
        if let Some(waiter) = &self.waiter {
            wait = wait.min(waiter.deadline.saturating_duration_since(Instant::now()));
        }
        if !self.pending_seeks.is_empty() {
            wait = wait.min(Duration::from_millis(20));
        }
        wait
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Subscribe(subscription, reply) => {
                let _ = reply.send(self.subscribe(subscription));
            }
            Command::Unsubscribe(reply) => {
                let _ = reply.send(self.unsubscribe());
            }
            Command::Assign(partitions, reply) => {
                let _ = reply.send(self.assign(partitions));
            }
            Command::Fetch(limits, reply) => {
                // One long poll at a time: a newer fetch ends the older one with what is there.
                self.answer_waiter(true);
                self.counters.fetch_requests.inc();
                let deadline = Instant::now() + limits.timeout;
                self.waiter = Some(Waiter { limits, deadline, reply });
                self.drain_kafka();
                self.answer_waiter(false);
            }
            Command::Commit(offsets, reply) => {
                let _ = reply.send(self.commit(offsets));
            }
            Command::Committed(partitions, reply) => {
                let _ = reply.send(self.committed(&partitions));
            }
            Command::Seek(targets, reply) => {
                let _ = reply.send(self.seek(targets));
            }
            Command::State(reply) => {
                let _ = reply.send(Ok(self.state()));
            }
            Command::Hold(partitions, hold, reply) => {
                self.set_paused(&partitions, hold);
                for partition in partitions {
                    if hold {
                        self.held.insert(partition);
                    } else {
                        self.held.remove(&partition);
                    }
                }
                let _ = reply.send(Ok(()));
            }
            Command::Restore(records, reply) => {
                self.restore(records);
                let _ = reply.send(Ok(()));
            }
            Command::Close(reply) => {
                let _ = reply.send(Ok(()));
            }
            Command::Wake => self.wake_pending.store(false, Ordering::Release),
        }
    }

    /// Moves what librdkafka holds into the buffer, up to the prefetch bound; while the buffer is
    /// full it still polls once, which keeps the group membership alive.
    pub(super) fn drain_kafka(&mut self) {
        loop {
            let full = self.buffer.held_bytes() >= self.prefetch_max_bytes;
            let polled = match self.consumer.poll(Duration::ZERO) {
                None => None,
                Some(Ok(message)) => Some(Ok(to_record(&mut self.topic_names, &message))),
                Some(Err(error)) => Some(Err(error)),
            };
            // A rebalance ran inside that poll: act on it before keeping the record it returned.
            self.apply_rebalances();
            match polled {
                None => break,
                // A record fetched before a pending seek applies is from the old position.
                Some(Ok(record)) if self.awaits_seek(&record) => {}
                Some(Ok(record)) => self.buffer.push(record),
                Some(Err(error)) => {
                    tracing::debug!(error = %error, "consumer poll error");
                    continue;
                }
            }
            if full {
                break;
            }
        }
    }

    fn awaits_seek(&self, record: &ConsumedRecord) -> bool {
        self.pending_seeks
            .iter()
            .any(|seek| seek.partition.partition == record.partition && *seek.partition.topic == *record.topic)
    }

    fn apply_rebalances(&mut self) {
        for event in self.consumer.context().take_events() {
            if let Some(events) = &self.events {
                let _ = events.send(event.clone());
            }
            match event {
                RebalanceEvent::Revoked(partitions) => {
                    self.buffer.purge(&partitions, true);
                    self.pending_seeks.retain(|seek| !partitions.contains(&seek.partition));
                    self.counters.rebalances.inc();
                }
                RebalanceEvent::Assigned(partitions) => {
                    self.counters.rebalances.inc();
                    if self.paused {
                        self.set_paused(&partitions, true);
                    } else {
                        let held: Vec<TopicPartition> =
                            partitions.into_iter().filter(|partition| self.held.contains(partition)).collect();
                        self.set_paused(&held, true);
                    }
                }
                RebalanceEvent::Failed(reason) => tracing::warn!(reason = %reason, "consumer rebalance failed"),
            }
        }
    }

    /// Answers the waiting fetch when enough is buffered, its time is up, or `now` says so.
    fn answer_waiter(&mut self, now: bool) {
        let Some(waiter) = &self.waiter else { return };
        let expired = Instant::now() >= waiter.deadline;
        // A paused (full) buffer will not grow: answer rather than wait for fetch.min.bytes.
        let enough = !self.buffer.is_empty()
            && (self.fetch_min_bytes == 0 || self.paused || self.buffer.payload_bytes() >= self.fetch_min_bytes);
        if !(now || expired || enough || waiter.reply.is_closed()) {
            return;
        }
        let Some(waiter) = self.waiter.take() else { return };
        if waiter.reply.is_closed() {
            return; // the caller went away: keep the records for the next fetch
        }
        let records = self.buffer.take(waiter.limits.max_bytes, waiter.limits.max_records);
        let positions = next_positions(&records);
        self.counters.count_returned(&records);
        match waiter.reply.send(Ok(records)) {
            Ok(()) => {
                self.buffer.mark_returned(&positions);
                if self.auto_commit {
                    self.store_returned(&positions);
                }
            }
            // The caller went away between the check and the answer: nothing was handed over.
            Err(Ok(records)) => self.buffer.restore(records),
            Err(Err(_)) => {}
        }
    }

    /// Pauses fetching once the buffer holds twice its bound and resumes below the bound.
    ///
    /// Between one and two bounds the worker stops draining librdkafka (whose own queue is
    /// capped to the bound) and polls once per tick only to stay in the group, so an app that
    /// fetches steadily never meets a pause: librdkafka takes most of a second to fetch again
    /// after a resume. Only an app that stops fetching for long gets its partitions paused.
    fn flow_control(&mut self) {
        let held = self.buffer.held_bytes();
        if !self.paused && held >= self.prefetch_max_bytes * 2 {
            self.paused = true;
            let assigned = self.assigned();
            self.set_paused(&assigned, true);
        } else if self.paused && held < self.prefetch_max_bytes {
            self.paused = false;
            let released: Vec<TopicPartition> =
                self.assigned().into_iter().filter(|partition| !self.held.contains(partition)).collect();
            self.set_paused(&released, false);
        }
    }

    /// Puts returned records back at the front of the buffer and moves the returned positions (and,
    /// with auto-commit, the stored offsets) back to the first of them. Records of partitions the
    /// instance no longer owns are left to their new owner.
    fn restore(&mut self, mut records: Vec<ConsumedRecord>) {
        let owned = self.state().assignment;
        records.retain(|record| owned.iter().any(|tp| tp.partition == record.partition && *tp.topic == *record.topic));
        let mut firsts: Vec<(TopicPartition, i64)> = Vec::new();
        for record in &records {
            if !firsts.iter().any(|(tp, _)| tp.partition == record.partition && *tp.topic == *record.topic) {
                let partition = TopicPartition { topic: record.topic.to_string(), partition: record.partition };
                firsts.push((partition, record.offset));
            }
        }
        self.buffer.mark_returned(&firsts);
        if self.auto_commit {
            self.store_returned(&firsts);
        }
        self.buffer.restore(records);
    }

    fn set_paused(&self, partitions: &[TopicPartition], pause: bool) {
        if partitions.is_empty() {
            return;
        }
        let list = partition_list(partitions);
        let result = if pause { self.consumer.pause(&list) } else { self.consumer.resume(&list) };
        if let Err(error) = result {
            tracing::warn!(error = %error, pause, "cannot pause or resume partitions");
        }
    }

    /// The partitions librdkafka currently assigns to this instance.
    pub(super) fn assigned(&self) -> Vec<TopicPartition> {
        match self.consumer.assignment() {
            Ok(list) => list
                .elements()
                .iter()
                .map(|element| TopicPartition { topic: element.topic().to_string(), partition: element.partition() })
                .collect(),
            Err(error) => {
                tracing::debug!(error = %error, "cannot read the assignment");
                Vec::new()
            }
        }
    }

    fn state(&self) -> InstanceState {
        let (subscription, manual) = match &self.mode {
            Mode::Idle => (Vec::new(), false),
            Mode::Subscribed(Subscription::Topics(topics)) => (topics.clone(), false),
            Mode::Subscribed(Subscription::Pattern(pattern)) => (vec![pattern.clone()], false),
            Mode::Assigned(_) => (Vec::new(), true),
        };
        let mut assignment = match &self.mode {
            Mode::Assigned(partitions) => partitions.clone(),
            _ => self.assigned(),
        };
        assignment.sort();
        InstanceState { subscription, assignment, manual }
    }

    fn close(&mut self) {
        if self.auto_commit
            && let Err(error) = self.commit(None)
        {
            tracing::warn!(error = %error, "cannot commit returned records while closing the instance");
        }
        if let Some(waiter) = self.waiter.take() {
            let _ = waiter.reply.send(Ok(Vec::new()));
        }
    }
}

/// Copies a librdkafka message into a [`ConsumedRecord`], sharing topic names between records.
fn to_record(topic_names: &mut HashMap<String, Arc<str>>, message: &BorrowedMessage<'_>) -> ConsumedRecord {
    let topic = match topic_names.get(message.topic()) {
        Some(name) => Arc::clone(name),
        None => {
            let name: Arc<str> = Arc::from(message.topic());
            topic_names.insert(message.topic().to_string(), Arc::clone(&name));
            name
        }
    };
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_string(), header.value.map(bytes::Bytes::copy_from_slice)))
                .collect()
        })
        .unwrap_or_default();
    let timestamp = match message.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(ms) => Some((ms, TimestampKind::CreateTime)),
        Timestamp::LogAppendTime(ms) => Some((ms, TimestampKind::LogAppendTime)),
    };
    ConsumedRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(bytes::Bytes::copy_from_slice),
        value: message.payload().map(bytes::Bytes::copy_from_slice),
        headers,
        timestamp,
    }
}

/// A librdkafka partition list without offsets.
pub(super) fn partition_list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for partition in partitions {
        list.add_partition(&partition.topic, partition.partition);
    }
    list
}
