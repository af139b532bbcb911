//! Consumer lag on librdkafka's mock cluster (exact watermarks, unlike tansu's): the lag endpoint
//! and the Prometheus gauges follow what the group commits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod support;

use std::time::Duration;

use consumer_support::{RestConsumer, consumer_sidecar, produce};
use rdkafka::mocking::MockCluster;
use reqwest::Method;
use serde_json::{Value, json};
use support::{eventually, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_endpoint_and_gauges_follow_commits() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topic = unique("lag");
    let group = unique("group");
    cluster.create_topic(&topic, 2, 1).expect("topic");
    produce(&bootstrap, &topic, 2, 10).await;
    let sidecar = consumer_sidecar(&bootstrap, |_| {}).await;
    let consumer = RestConsumer::create(
        &sidecar,
        &group,
        json!({"format": "string", "auto.offset.reset": "earliest", "auto.commit.enable": "false"}),
    )
    .await;
    consumer.assign(&topic, 0..2).await;
    let lag_url = sidecar.http_url(&format!("/consumers/{group}/lag"));
    let lag: Value = reqwest::get(&lag_url).await.expect("lag").json().await.expect("json");
    assert_eq!(lag["total_lag"], json!(10), "nothing committed: the whole log is lag: {lag}");

    let processed = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 1}]});
    assert_eq!(consumer.call(Method::POST, "/offsets", Some(processed)).await.0, 200);
    let lag: Value = reqwest::get(&lag_url).await.expect("lag").json().await.expect("json");
    let partition0 = &lag["partitions"][0];
    assert_eq!(
        (partition0["committed_offset"].clone(), partition0["log_end_offset"].clone(), partition0["lag"].clone()),
        (json!(2), json!(5), json!(3)),
        "{lag}"
    );
    assert!(partition0["lag_seconds"].as_f64().expect("time lag") >= 0.0);
    assert_eq!(lag["total_lag"], json!(8));

    let gauge = format!("kafka_sidecar_consumer_lag_records{{group=\"{group}\",topic=\"{topic}\",partition=\"0\"}} 3");
    let metrics_url = sidecar.admin_url("/metrics");
    eventually(Duration::from_secs(10), "the lag gauge", async || {
        let text = reqwest::get(&metrics_url).await.expect("metrics").text().await.expect("text");
        text.contains(&gauge)
    })
    .await;

    // Deleting the group's last instance removes its lag series.
    consumer.delete().await;
    eventually(Duration::from_secs(10), "the lag series to go", async || {
        let text = reqwest::get(&metrics_url).await.expect("metrics").text().await.expect("text");
        !text.contains(&format!("group=\"{group}\""))
            || !text
                .lines()
                .any(|line| line.starts_with("kafka_sidecar_consumer_lag_records{") && line.contains(&group))
    })
    .await;
    let unknown = reqwest::get(sidecar.http_url(&format!("/consumers/{group}/lag?topics=missing-{topic}"))).await;
    assert_eq!(unknown.expect("lag").status(), 404);
    sidecar.stop().await;
}
