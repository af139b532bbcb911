//! A handle on one consumer instance: async methods that send a [`Command`] to the instance's
//! worker thread and await its answer. Cancel-safe: a caller that goes away only drops its reply
//! (a fetch's records then stay buffered for the next fetch).

use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::types::{
    CommittedOffset, ConsumedRecord, FetchLimits, InstanceSettings, InstanceState, ProcessedOffset, SeekPosition,
    Subscription, TopicPartition,
};
use super::worker::{Command, Reply};
use crate::error::{ErrorCode, SidecarError};

/// How long a busy instance's callers are asked to wait.
const BUSY_RETRY: Duration = Duration::from_millis(100);

/// One consumer instance.
pub struct ConsumerInstance {
    /// Its settings.
    pub settings: InstanceSettings,
    commands: SyncSender<Command>,
    last_used: Mutex<Instant>,
}

impl ConsumerInstance {
    pub(super) fn new(settings: InstanceSettings, commands: SyncSender<Command>) -> Self {
        Self { settings, commands, last_used: Mutex::new(Instant::now()) }
    }

    /// When the app last used the instance.
    pub fn last_used(&self) -> Instant {
        *crate::sync::lock(&self.last_used)
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SidecarError> {
        *crate::sync::lock(&self.last_used) = Instant::now();
        self.send(command).await
    }

    async fn send<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SidecarError> {
        let (reply, answer) = oneshot::channel();
        match self.commands.try_send(command(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(SidecarError {
                    code: ErrorCode::QueueFull,
                    message: "the consumer instance has too many requests in progress".into(),
                    retry_after: Some(BUSY_RETRY),
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(gone()),
        }
        answer.await.map_err(|_| gone())?
    }

    /// Subscribes; the instance joins its group in the background right away.
    pub async fn subscribe(&self, subscription: Subscription) -> Result<(), SidecarError> {
        self.call(|reply| Command::Subscribe(subscription, reply)).await
    }

    /// Drops the subscription.
    pub async fn unsubscribe(&self) -> Result<(), SidecarError> {
        self.call(Command::Unsubscribe).await
    }

    /// Assigns partitions by hand.
    pub async fn assign(&self, partitions: Vec<TopicPartition>) -> Result<(), SidecarError> {
        self.call(|reply| Command::Assign(partitions, reply)).await
    }

    /// Returns buffered records, long-polling up to `limits.timeout`.
    pub async fn fetch(&self, limits: FetchLimits) -> Result<Vec<ConsumedRecord>, SidecarError> {
        self.call(|reply| Command::Fetch(limits, reply)).await
    }

    /// Takes back records [`Self::fetch`] returned that could not be handed to the app: the next
    /// fetch returns them again.
    pub async fn restore(&self, records: Vec<ConsumedRecord>) -> Result<(), SidecarError> {
        // Waits for room rather than refusing: these records must not be dropped for backpressure.
        let (reply, answer) = oneshot::channel();
        let mut command = Command::Restore(records, reply);
        loop {
            match self.commands.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) => {
                    command = again;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(gone()),
            }
        }
        answer.await.map_err(|_| gone())?
    }

    /// Commits processed offsets, or everything returned so far with `None`.
    pub async fn commit(&self, offsets: Option<Vec<ProcessedOffset>>) -> Result<Vec<CommittedOffset>, SidecarError> {
        self.call(|reply| Command::Commit(offsets, reply)).await
    }

    /// The group's committed offsets for `partitions`.
    pub async fn committed(&self, partitions: Vec<TopicPartition>) -> Result<Vec<CommittedOffset>, SidecarError> {
        self.call(|reply| Command::Committed(partitions, reply)).await
    }

    /// Moves partitions' positions; answers where each landed, when known.
    pub async fn seek(
        &self,
        targets: Vec<(TopicPartition, SeekPosition)>,
    ) -> Result<Vec<(TopicPartition, Option<i64>)>, SidecarError> {
        self.call(|reply| Command::Seek(targets, reply)).await
    }

    /// Subscription and assignment.
    pub async fn state(&self) -> Result<InstanceState, SidecarError> {
        self.call(Command::State).await
    }

    /// Subscription and assignment, for the sidecar's own use (lag export): does not count as
    /// the app using the instance, so it cannot keep an idle instance from expiring.
    pub async fn state_unobserved(&self) -> Result<InstanceState, SidecarError> {
        self.send(Command::State).await
    }

    /// Pauses (`hold`) or resumes partitions whatever the prefetch buffer says.
    pub async fn hold(&self, partitions: Vec<TopicPartition>, hold: bool) -> Result<(), SidecarError> {
        self.send(|reply| Command::Hold(partitions, hold, reply)).await
    }

    /// Leaves the group and stops the worker; waits until the consumer is closed.
    pub(super) async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        let commands = self.commands.clone();
        // A full queue must still get the close, so wait for room off the runtime.
        let sent = tokio::task::spawn_blocking(move || commands.send(Command::Close(reply)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = answer.await;
        }
    }
}

impl Drop for ConsumerInstance {
    /// A handle dropped without [`ConsumerInstance::close`] still stops its worker (the worker's
    /// own wake-up callback keeps the channel open, so it would otherwise poll forever).
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        let _ = self.commands.try_send(Command::Close(reply));
    }
}

fn gone() -> SidecarError {
    SidecarError::new(ErrorCode::ConsumerNotFound, "the consumer instance was closed")
}
