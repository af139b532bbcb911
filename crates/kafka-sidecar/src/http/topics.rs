//! Topic metadata for clients that need it (Confluent REST Proxy v2's shapes): `GET /topics`,
//! `GET /topics/{topic}` and `GET /topics/{topic}/partitions`. Read from the cluster each time.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::status::ApiError;
use crate::kafka::PartitionDescription;

/// A topic (Confluent v2's shape; `configs` is always empty).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TopicJson {
    name: String,
    #[schema(value_type = Object)]
    configs: serde_json::Map<String, serde_json::Value>,
    partitions: Vec<PartitionJson>,
}

/// A partition, its leader and replicas.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TopicPartitionInfo)]
pub struct PartitionJson {
    partition: i32,
    leader: i32,
    replicas: Vec<ReplicaJson>,
}

/// One replica of a partition.
#[derive(Serialize, utoipa::ToSchema)]
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
#[utoipa::path(
    get,
    path = "/topics",
    tag = "topics",
    summary = "List topic names",
    responses((status = 200, description = "Topic names, sorted", body = Vec<String>), crate::http::openapi::TopicErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<String>>, ApiError> {
    let mut names: Vec<String> =
        state.producer.describe_topics(None).await?.into_iter().map(|topic| topic.name).collect();
    names.sort();
    Ok(Json(names))
}

/// `GET /topics/{topic}`.
#[utoipa::path(
    get,
    path = "/topics/{topic}",
    tag = "topics",
    summary = "Describe a topic",
    params(crate::http::openapi::TopicPath),
    responses((status = 200, description = "The topic and its partitions", body = TopicJson), crate::http::openapi::TopicErrors),
    security((), ("bearer" = ["kafka:r"])),
)]
pub async fn describe(State(state): State<AppState>, Path(topic): Path<String>) -> Result<Json<TopicJson>, ApiError> {
    crate::record::validate_topic_name(&topic)?;
    let found = state.producer.describe_topics(Some(&topic)).await?;
    let partitions = found.into_iter().flat_map(|topic| topic.partitions).map(partition_json).collect();
    Ok(Json(TopicJson { name: topic, configs: serde_json::Map::new(), partitions }))
}

/// `GET /topics/{topic}/partitions`.
#[utoipa::path(
    get,
    path = "/topics/{topic}/partitions",
    tag = "topics",
    summary = "List a topic's partitions",
    params(crate::http::openapi::TopicPath),
    responses(
        (status = 200, description = "The topic's partitions", body = Vec<PartitionJson>),
        crate::http::openapi::TopicErrors,
    ),
    security((), ("bearer" = ["kafka:r"])),
)]
pub async fn partitions(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Vec<PartitionJson>>, ApiError> {
    crate::record::validate_topic_name(&topic)?;
    let found = state.producer.describe_topics(Some(&topic)).await?;
    Ok(Json(found.into_iter().flat_map(|topic| topic.partitions).map(partition_json).collect()))
}
