//! The active consumer API against a real tansu broker: round trips, commits an independent client
//! reads, seeks, formats, group rebalances, many instances at once, and expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod support;

use std::time::{Duration, Instant};

use consumer_support::{RestConsumer, committed, consumer_sidecar, positions, produce};
use reqwest::Method;
use serde_json::json;
use support::{broker, create_topic, eventually, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_fetch_commit_round_trip_keeps_keys_headers_and_commits_what_was_returned() {
    let bootstrap = broker();
    let topic = unique("consume");
    let group = unique("group");
    create_topic(bootstrap, &topic, 2).await;
    produce(bootstrap, &topic, 2, 10).await;
    let sidecar = consumer_sidecar(bootstrap, |_| {}).await;
    let consumer = RestConsumer::create(
        &sidecar,
        &group,
        json!({"format": "string", "auto.offset.reset": "earliest", "auto.commit.enable": "false"}),
    )
    .await;
    consumer.subscribe(&[&topic]).await;
    let (status, subscription) = consumer.call(Method::GET, "/subscription", None).await;
    assert_eq!((status, subscription), (200, json!({"topics": [topic]})));

    let records = consumer.fetch_until(10, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 10, "every record, once: {records:?}");
    for record in &records {
        let key = record["key"].as_str().expect("key");
        assert_eq!(record["value"], json!(key.replace("key", "value")));
        assert_eq!(record["headers"], json!({"origin": "test"}));
        assert!(record["timestamp"].as_i64().expect("timestamp") > 0);
        assert_eq!(record["topic"], json!(topic));
    }
    assert_eq!(committed(bootstrap, &group, &topic, 2), vec![-1, -1], "nothing committed before the commit");
    consumer.commit_returned().await;
    assert_eq!(committed(bootstrap, &group, &topic, 2), vec![5, 5], "an independent client sees the commit");

    let partitions = json!({"partitions": [{"topic": topic, "partition": 0}, {"topic": topic, "partition": 1}]});
    let (status, offsets) = consumer.call(Method::GET, "/offsets", Some(partitions)).await;
    assert_eq!(status, 200);
    assert_eq!(offsets["offsets"][0]["offset"], json!(5));
    let (status, error) = consumer.call(Method::POST, "/assignments", Some(json!({"partitions": []}))).await;
    assert_eq!((status, error["error_code"].clone()), (409, json!(40903)), "subscribe and assign are exclusive");
    consumer.delete().await;
    let (status, error) = consumer.call(Method::GET, "/records", None).await;
    assert_eq!(
        (status, error["error_code"].clone(), error["code"].clone()),
        (404, json!(40403), json!("CONSUMER_NOT_FOUND"))
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn explicit_commits_store_the_next_offset_and_seeks_move_by_offset_time_first_and_last() {
    let bootstrap = broker();
    let topic = unique("seek");
    let group = unique("group");
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 6).await;
    let sidecar = consumer_sidecar(bootstrap, |_| {}).await;
    let settings = json!({"format": "binary", "auto.commit.enable": "false", "autoOffsetReset": "earliest"});
    let consumer = RestConsumer::create(&sidecar, &group, settings).await;
    consumer.assign(&topic, 0..1).await;
    let first = consumer.fetch_until(6, Duration::from_secs(20)).await;
    assert_eq!(positions(&first), (0..6).map(|offset| (0, offset)).collect::<Vec<_>>(), "from the earliest");
    assert_eq!(first[0]["key"], json!("a2V5LTA="), "binary keys are base64");

    let commit = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 2}]});
    assert_eq!(consumer.call(Method::POST, "/offsets", Some(commit)).await.0, 200);
    assert_eq!(committed(bootstrap, &group, &topic, 1), vec![3], "last processed 2 stores 3");

    let seek = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 4}]});
    assert_eq!(consumer.call(Method::POST, "/positions", Some(seek)).await.0, 204);
    assert_eq!(positions(&consumer.fetch_until(2, Duration::from_secs(10)).await), vec![(0, 4), (0, 5)]);

    let partitions = json!({"partitions": [{"topic": topic, "partition": 0}]});
    assert_eq!(consumer.call(Method::POST, "/positions/beginning", Some(partitions.clone())).await.0, 204);
    assert_eq!(positions(&consumer.fetch_until(6, Duration::from_secs(10)).await).len(), 6);
    assert_eq!(consumer.call(Method::POST, "/positions/last", Some(partitions.clone())).await.0, 204);
    assert!(consumer.fetch(300).await.is_empty(), "nothing after the end");

    let third_timestamp = first[3]["timestamp"].as_i64().expect("timestamp");
    let by_time = json!({"timestamps": [{"topic": topic, "partition": 0, "timestamp": third_timestamp}]});
    assert_eq!(consumer.call(Method::POST, "/positions", Some(by_time)).await.0, 204);
    let from_time = consumer.fetch_until(1, Duration::from_secs(10)).await;
    let first_offset = from_time[0]["offset"].as_i64().expect("offset");
    assert!(first_offset <= 3, "the record at the timestamp or an earlier one with the same time: {first_offset}");
    let iso = json!({"timestamps": [{"topic": topic, "partition": 0, "timestamp": "2000-01-01T00:00:00Z"}]});
    assert_eq!(consumer.call(Method::POST, "/positions", Some(iso)).await.0, 204);
    assert_eq!(consumer.fetch_until(1, Duration::from_secs(10)).await[0]["offset"], json!(0));

    let unowned = json!({"offsets": [{"topic": topic, "partition": 7, "offset": 0}]});
    let (status, error) = consumer.call(Method::POST, "/positions", Some(unowned)).await;
    assert_eq!((status, error["error_code"].clone()), (409, json!(40903)));
    sidecar.stop().await;
}

/// Waits until every member owns partitions and together they own all four.
async fn settled(members: &[&RestConsumer], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut owned = Vec::new();
        for member in members {
            owned.push(member.owned().await);
        }
        if owned.iter().all(|count| *count > 0) && owned.iter().sum::<usize>() == 4 {
            return;
        }
        assert!(Instant::now() < deadline, "the rebalance did not settle: {owned:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_splits_partitions_and_a_joining_member_loses_and_repeats_nothing_committed() {
    let bootstrap = broker();
    let topic = unique("rebalance");
    let group = unique("group");
    create_topic(bootstrap, &topic, 4).await;
    produce(bootstrap, &topic, 4, 20).await;
    let sidecar = consumer_sidecar(bootstrap, |_| {}).await;
    let settings = json!({"format": "string", "auto.offset.reset": "earliest", "auto.commit.enable": "false"});
    let first = RestConsumer::create(&sidecar, &group, settings.clone()).await;
    let second = RestConsumer::create(&sidecar, &group, settings.clone()).await;
    first.subscribe(&[&topic]).await;
    second.subscribe(&[&topic]).await;
    settled(&[&first, &second], Duration::from_secs(60)).await;
    let mut seen = Vec::new();
    let mut by_member = [0_usize; 3];
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.len() < 20 && Instant::now() < deadline {
        for (index, member) in [&first, &second].into_iter().enumerate() {
            let fetched = member.fetch(300).await;
            by_member[index] += fetched.len();
            seen.extend(fetched);
            member.commit_returned().await;
        }
    }
    assert_eq!(positions(&seen).len(), 20, "the first half, once each");
    assert!(by_member[0] > 0 && by_member[1] > 0, "two members split the partitions: {by_member:?}");

    // The third joins while nothing is in flight: the members only keep polling (inside their
    // workers) until the cooperative rebalance has given the third member its partitions.
    let third = RestConsumer::create(&sidecar, &group, settings).await;
    third.subscribe(&[&topic]).await;
    settled(&[&first, &second, &third], Duration::from_secs(60)).await;
    produce(bootstrap, &topic, 4, 20).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.len() < 40 && Instant::now() < deadline {
        for (index, member) in [&first, &second, &third].into_iter().enumerate() {
            let fetched = member.fetch(200).await;
            by_member[index] += fetched.len();
            seen.extend(fetched);
            member.commit_returned().await;
        }
    }
    let all = positions(&seen);
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), 40, "every record consumed");
    assert_eq!(all.len(), 40, "none delivered twice: committed records are not redelivered after the rebalance");
    assert!(by_member[2] > 0, "the third member consumed its share: {by_member:?}");
    eventually(Duration::from_secs(10), "the commits", async || committed(bootstrap, &group, &topic, 4) == vec![10; 4])
        .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_instances_fetch_at_once_without_one_long_poll_blocking_another() {
    let bootstrap = broker();
    let topic = unique("many");
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 1).await;
    let sidecar = consumer_sidecar(bootstrap, |_| {}).await;
    let mut instances = Vec::new();
    for _ in 0..50 {
        let instance = RestConsumer::create(&sidecar, &unique("group"), json!({"format": "string"})).await;
        instance.assign(&topic, 0..1).await;
        instances.push(instance);
    }
    // 49 instances at the end of the log long-poll for 8 s while one reads from the beginning: the
    // reader's answer must come while every other long poll is still waiting.
    let reader = instances.pop().expect("reader");
    let partitions = json!({"partitions": [{"topic": topic, "partition": 0}]});
    assert_eq!(reader.call(Method::POST, "/positions/beginning", Some(partitions)).await.0, 204);
    let instances: Vec<std::sync::Arc<RestConsumer>> = instances.into_iter().map(std::sync::Arc::new).collect();
    let waiting: Vec<_> = instances
        .iter()
        .map(|instance| {
            let instance = std::sync::Arc::clone(instance);
            tokio::spawn(async move { instance.fetch(8_000).await })
        })
        .collect();
    let read = reader.fetch_until(1, Duration::from_secs(10)).await;
    assert_eq!(read.len(), 1);
    assert!(waiting.iter().all(|fetch| !fetch.is_finished()), "no long poll blocked the reader");
    let metrics = reqwest::get(sidecar.admin_url("/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("kafka_sidecar_consumer_instances 50"), "{metrics}");
    for fetch in waiting {
        assert!(fetch.await.expect("fetch").is_empty(), "nothing new for the waiting instances");
    }
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn formats_mismatch_expiry_and_bad_requests_get_clear_errors() {
    let bootstrap = broker();
    let topic = unique("errors");
    create_topic(bootstrap, &topic, 1).await;
    let sidecar = consumer_sidecar(bootstrap, |config| {
        config.consumer.instance_timeout_ms = 1_500;
        config.consumer.max_instances = 3;
    })
    .await;
    let group = unique("group");
    let http = reqwest::Client::new();
    let create = |body: serde_json::Value| {
        http.post(sidecar.http_url(&format!("/consumers/{group}/"))).body(body.to_string()).send()
    };
    let consumer = RestConsumer::create(&sidecar, &group, json!({"format": "json"})).await;
    let duplicate = create(json!({"name": consumer.name})).await.expect("dup");
    assert_eq!(duplicate.status(), 409);
    assert_eq!(duplicate.json::<serde_json::Value>().await.expect("json")["error_code"], json!(40902));
    for (body, status) in [
        (json!({"format": "xml"}), 422),
        (json!({"auto.offset.reset": "middle"}), 422),
        (json!({"nmae": "typo"}), 400),
        (json!({"name": "bad name!"}), 422),
        (json!({"format": "avro"}), 422),
    ] {
        let response = create(body.clone()).await.expect("create");
        assert_eq!(response.status(), status, "{body}");
    }
    let not_json = http.post(sidecar.http_url(&format!("/consumers/{group}"))).body("{").send().await.expect("send");
    assert_eq!(not_json.status(), 400);

    let mismatch = consumer
        .http
        .get(format!("{}/records", consumer.base))
        .header("accept", "application/vnd.kafka.binary.v2+json")
        .send()
        .await
        .expect("fetch");
    assert_eq!(mismatch.status(), 406);
    assert_eq!(mismatch.json::<serde_json::Value>().await.expect("json")["error_code"], json!(40601));
    for (path, status) in
        [("/records?max_bytes=lots", 400), ("/records?timeout=-1", 400), ("/records?max_bytes=99999999999", 200)]
    {
        assert_eq!(consumer.call(Method::GET, path, None).await.0, status, "{path}");
    }
    let negative = json!({"partitions": [{"topic": topic, "partition": -1}]});
    assert_eq!(consumer.call(Method::POST, "/assignments/", Some(negative)).await.0, 400);
    let (status, _) = consumer.call(Method::POST, "/subscription", Some(json!({"topics": []}))).await;
    assert_eq!(status, 400);

    let second = RestConsumer::create(&sidecar, &group, json!({})).await;
    let _third = RestConsumer::create(&sidecar, &group, json!({})).await;
    let over = create(json!({})).await.expect("over the cap");
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("x-retry-after-ms"));

    // Idle instances expire and leave; one in use stays. Watch the gauge: any call would touch them.
    let metrics_url = sidecar.admin_url("/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        consumer.fetch(100).await;
        let metrics = reqwest::get(&metrics_url).await.expect("metrics").text().await.expect("text");
        if metrics.contains("kafka_sidecar_consumer_instances 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "idle instances did not expire: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(second.call(Method::GET, "/subscription", None).await.0, 404, "the idle instance expired");
    assert_eq!(consumer.call(Method::GET, "/subscription", None).await.0, 200, "the busy one did not");
    sidecar.stop().await;
}
