//! Topic metadata for clients that need it (Confluent REST Proxy v2's shapes): `GET /topics`,
//! `GET /topics/{topic}` and `GET /topics/{topic}/partitions`. Read from the cluster each time.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::status::ApiError;
use crate::kafka::PartitionDescription;

#[derive(Serialize)]
pub struct TopicJson {
    name: String,
    configs: serde_json::Map<String, serde_json::Value>,
    partitions: Vec<PartitionJson>,
}

#[derive(Serialize)]
pub struct PartitionJson {
    partition: i32,
    leader: i32,
    replicas: Vec<ReplicaJson>,
}

#[derive(Serialize)]
struct ReplicaJson {
    broker: i32,
    leader: bool,
    in_sync: bool,
}

fn partition_json(partition: PartitionDescription) -> PartitionJson {
    let replicas = partition
        .replicas
        .iter()
        .map(|broker| ReplicaJson {
            broker: *broker,
            leader: *broker == partition.leader,
            in_sync: partition.in_sync.contains(broker),
        })
        .collect();
    PartitionJson { partition: partition.partition, leader: partition.leader, replicas }
}

/// `GET /topics`: topic names.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<String>>, ApiError> {
    let mut names: Vec<String> =
        state.producer.describe_topics(None).await?.into_iter().map(|topic| topic.name).collect();
    names.sort();
    Ok(Json(names))
}

/// `GET /topics/{topic}`.
pub async fn describe(State(state): State<AppState>, Path(topic): Path<String>) -> Result<Json<TopicJson>, ApiError> {
    crate::record::validate_topic_name(&topic)?;
    let found = state.producer.describe_topics(Some(&topic)).await?;
    let partitions = found.into_iter().flat_map(|topic| topic.partitions).map(partition_json).collect();
    Ok(Json(TopicJson { name: topic, configs: serde_json::Map::new(), partitions }))
}

/// `GET /topics/{topic}/partitions`.
pub async fn partitions(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Vec<PartitionJson>>, ApiError> {
    crate::record::validate_topic_name(&topic)?;
    let found = state.producer.describe_topics(Some(&topic)).await?;
    Ok(Json(found.into_iter().flat_map(|topic| topic.partitions).map(partition_json).collect()))
}
