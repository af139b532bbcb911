//! Operators' requests, served inside the dispatcher's loop so they see and change its state
//! consistently: the state snapshot, pause/resume of partitions, and seeks that keep the order and
//! commit guarantees (queued and in-flight work of a sought partition is abandoned, and the new
//! position is committed so the whole group moves).

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::dispatcher::Dispatcher;
use crate::consumer::{SeekPosition, TopicPartition};
use crate::error::{ErrorCode, SidecarError};

/// `POST /admin/reactive/pause|resume`: every partition when empty, or some of one topic.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Topic; none means every assigned partition.
    pub topic: Option<String>,
    /// Partitions of the topic; none means all of its assigned partitions.
    pub partitions: Option<Vec<i32>>,
    /// Set by the route: pause (true) or resume.
    #[serde(skip)]
    pub hold: bool,
}

/// Where `POST /admin/reactive/seek` moves to.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReactiveSeekRequest)]
pub struct SeekRequest {
    /// Topic.
    pub topic: String,
    /// One partition, or every assigned partition of the topic.
    pub partition: Option<i32>,
    /// An offset...
    pub offset: Option<i64>,
    /// ...or a timestamp (ISO-8601 text or epoch ms)...
    pub timestamp: Option<serde_json::Value>,
    /// ...or `beginning` / `end`.
    pub position: Option<String>,
}

impl SeekRequest {
    fn target(&self) -> Result<SeekPosition, SidecarError> {
        let invalid = |message: &str| SidecarError::new(ErrorCode::InvalidRequest, message);
        crate::record::validate_topic_name(&self.topic)?;
        match (self.offset, &self.timestamp, self.position.as_deref()) {
            (Some(offset), None, None) if offset >= 0 => Ok(SeekPosition::Offset(offset)),
            (None, Some(timestamp), None) => crate::http::parse_timestamp_ms(timestamp).map(SeekPosition::Timestamp),
            (None, None, Some("beginning")) => Ok(SeekPosition::Beginning),
            (None, None, Some("end")) => Ok(SeekPosition::End),
            _ => Err(invalid("give exactly one of offset (>= 0), timestamp, or position beginning|end")),
        }
    }
}

/// One partition as the operator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ReactivePartitionState)]
pub struct PartitionState {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Paused by an operator.
    pub paused: bool,
    /// Records fetched and not finished.
    pub open_records: usize,
    /// The last offset committed here (the next to read), when one was.
    pub committed: Option<i64>,
}

/// `GET /admin/reactive`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReactiveState {
    /// Consumer group.
    pub group: String,
    /// Whether the backend answers.
    pub backend_up: bool,
    /// The last push or commit error.
    pub last_error: Option<String>,
    /// Pushes in flight.
    pub in_flight_batches: usize,
    /// Records waiting in their lanes.
    pub waiting_records: usize,
    /// Records fetched and not finished.
    pub open_records: usize,
    /// The assignment.
    pub partitions: Vec<PartitionState>,
}

/// A request from the admin edge.
pub enum AdminRequest {
    /// The state snapshot.
    State(oneshot::Sender<ReactiveState>),
    /// Pause or resume.
    Hold(HoldRequest, oneshot::Sender<Result<Vec<TopicPartition>, SidecarError>>),
    /// Seek.
    Seek(SeekRequest, oneshot::Sender<Result<Vec<TopicPartition>, SidecarError>>),
}

impl Dispatcher {
    pub(super) async fn serve(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::State(reply) => {
                let _ = reply.send(self.snapshot().await);
            }
            AdminRequest::Hold(request, reply) => {
                let _ = reply.send(self.hold(request).await);
            }
            AdminRequest::Seek(request, reply) => {
                let _ = reply.send(self.seek(request).await);
            }
        }
    }

    async fn assigned(&self) -> Result<Vec<TopicPartition>, SidecarError> {
        Ok(self.instance.state_unobserved().await?.assignment)
    }

    async fn snapshot(&self) -> ReactiveState {
        let held = self.lanes.held();
        let partitions = self
            .assigned()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|partition| PartitionState {
                paused: held.contains(&partition),
                open_records: self.progress.open_in(&partition),
                committed: self.progress.committed_of(&partition),
                topic: partition.topic,
                partition: partition.partition,
            })
            .collect();
        ReactiveState {
            group: self.config.group_id.clone(),
            backend_up: false,
            last_error: None,
            in_flight_batches: self.lanes.in_flight(),
            waiting_records: self.lanes.waiting(),
            open_records: self.progress.open(),
            partitions,
        }
    }

    /// The assigned partitions a request names.
    async fn select(
        &self,
        topic: Option<&str>,
        partitions: Option<&[i32]>,
    ) -> Result<Vec<TopicPartition>, SidecarError> {
        let selected: Vec<TopicPartition> = self
            .assigned()
            .await?
            .into_iter()
            .filter(|tp| topic.is_none_or(|topic| tp.topic == topic))
            .filter(|tp| partitions.is_none_or(|wanted| wanted.contains(&tp.partition)))
            .collect();
        if selected.is_empty() && (topic.is_some() || partitions.is_some()) {
            return Err(SidecarError::new(ErrorCode::ConsumerState, "no such partition is assigned to this sidecar"));
        }
        Ok(selected)
    }

    async fn hold(&mut self, request: HoldRequest) -> Result<Vec<TopicPartition>, SidecarError> {
        let selected = self.select(request.topic.as_deref(), request.partitions.as_deref()).await?;
        self.instance.hold(selected.clone(), request.hold).await?;
        for partition in &selected {
            self.lanes.hold(partition.clone(), request.hold);
        }
        tracing::info!(
            partitions = selected.len(),
            pause = request.hold,
            "reactive consumer: partitions held by an operator"
        );
        Ok(selected)
    }

    async fn seek(&mut self, request: SeekRequest) -> Result<Vec<TopicPartition>, SidecarError> {
        let target = request.target()?;
        let partitions = request.partition.map(|partition| vec![partition]);
        let selected = self.select(Some(&request.topic), partitions.as_deref()).await?;
        // Records already fetched from the old position are queued first, then dropped with the
        // rest of what is queued or in flight for these partitions.
        self.settle_fetch().await;
        self.lanes.drop_partitions(&selected);
        let landed = self.instance.seek(selected.iter().map(|partition| (partition.clone(), target)).collect()).await?;
        for (partition, offset) in &landed {
            self.progress.reset(partition, *offset);
        }
        // Commit the new position now, so the group (and a restart) continues from it.
        self.commit().await;
        tracing::info!(topic = %request.topic, partitions = selected.len(), target = ?target, "reactive consumer: seek");
        Ok(selected)
    }
}
