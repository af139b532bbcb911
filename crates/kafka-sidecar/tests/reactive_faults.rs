//! The reactive consumer when things go wrong, against a real tansu broker and a scripted HTTP
//! backend (issue 10): throttling with `Retry-After`, a backend slower than the push timeout,
//! per-record retry verdicts and per-key order across them, operators' seek and pause, a graceful
//! stop mid-stream, and a sidecar killed mid-stream in a two-member group; and two seek bugs found
//! here, fixed since (a seek to the end commits the end; an abandoned push keeps its key busy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod scripted_backend;
mod sidecar_process;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use consumer_support::{committed, produce, produce_keyed};
use kafka_sidecar::Config;
use scripted_backend::{Answer, Call, Script, ScriptedBackend, position, verdict};
use serde_json::{Value, json};
use sidecar_process::SidecarProcess;
use support::{TestSidecar, broker, create_topic, eventually, read_back, unique};

fn reactive_config(bootstrap: &str, topic: &str, group: &str, backend_url: &str) -> Config {
    consumer_support::reactive_config(bootstrap, topic, group, backend_url, 5)
}

/// Waits until the group's committed offsets, read by an independent client, are `expected`.
async fn committed_at(bootstrap: &str, group: &str, topic: &str, expected: &[i64], within: Duration) {
    let partitions = i32::try_from(expected.len()).unwrap();
    let deadline = Instant::now() + within;
    loop {
        let now = committed(bootstrap, group, topic, partitions);
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "committed offsets {now:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that nothing reached `topic`'s dead letter topic.
fn assert_no_dead_letters(bootstrap: &str, topic: &str) {
    let dead_letters = read_back(bootstrap, &format!("{topic}.dlq"), 1, Duration::from_secs(1));
    assert!(dead_letters.is_empty(), "dead-lettered: {dead_letters:?}");
}

/// One sample of the sidecar's metrics text, 0 when the series is absent.
async fn metric(admin_url: &str, series: &str) -> f64 {
    let text = reqwest::get(admin_url).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

async fn admin_post(url: &str, body: Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(url).header("x-client-id", "fault-test").json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn reactive_state(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Partitions the reactive consumer behind `url` (`.../admin/reactive`) owns; 0 if unreachable.
async fn owned(url: &str) -> usize {
    match reqwest::get(url).await {
        Ok(response) => {
            response.json::<Value>().await.ok().and_then(|state| state["partitions"].as_array().map(Vec::len))
        }
        Err(_) => None,
    }
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_with_retry_after_delays_the_retry_and_dead_letters_nothing() {
    let bootstrap = broker();
    let (topic, group) = (unique("throttled"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 10).await;
    let script: Script = Arc::new(|call: &Call<'_>| {
        if call.number <= 2 { Answer::status(StatusCode::TOO_MANY_REQUESTS).retry_after(1) } else { Answer::ok() }
    });
    let backend = ScriptedBackend::start(script).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url("a"))).await;
    backend.wait_processed(10, Duration::from_secs(60)).await;

    let throttled: BTreeSet<(i64, i64)> = backend
        .pushes()
        .iter()
        .filter(|push| push.number <= 2)
        .flat_map(|push| push.records.iter().map(|record| (position(record).1, position(record).2)))
        .collect();
    assert!(!throttled.is_empty(), "the first pushes were throttled");
    for (partition, offset) in throttled {
        let arrivals = backend.arrivals(partition, offset);
        assert!(arrivals.len() >= 2, "offset {offset} pushed again after the 429");
        let gap = arrivals[1] - arrivals[0];
        assert!(gap >= Duration::from_secs(1), "offset {offset} retried after {gap:?}, before Retry-After: 1");
    }
    assert_eq!(backend.overlaps(), vec![], "a key pushed while in flight");
    committed_at(bootstrap, &group, &topic, &[10], Duration::from_secs(15)).await;
    assert_no_dead_letters(bootstrap, &topic);
    let metrics = sidecar.admin_url("/metrics");
    assert_eq!(metric(&metrics, "kafka_sidecar_reactive_records_total{outcome=\"processed\"}").await, 10.0);
    assert_eq!(metric(&metrics, "kafka_sidecar_reactive_records_total{outcome=\"dead_lettered\"}").await, 0.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_slower_than_request_timeout_is_retried_and_processed() {
    let bootstrap = broker();
    let (topic, group) = (unique("stalled"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 10).await;
    // The first push stalls far beyond the 300 ms limit; whatever it answers then is too late.
    let script: Script = Arc::new(|call: &Call<'_>| {
        if call.number == 1 {
            Answer::status(StatusCode::INTERNAL_SERVER_ERROR).after(Duration::from_secs(3))
        } else {
            Answer::ok()
        }
    });
    let backend = ScriptedBackend::start(script).await;
    let mut config = reactive_config(bootstrap, &topic, &group, &backend.url("a"));
    config.reactive_consumer.request_timeout_ms = 300;
    let sidecar = TestSidecar::start(config).await;
    backend.wait_processed(10, Duration::from_secs(60)).await;

    let first = backend.pushes().into_iter().next().expect("a first push");
    for record in &first.records {
        let (_, partition, offset) = position(record);
        let arrivals = backend.arrivals(partition, offset);
        assert!(arrivals.len() >= 2, "offset {offset} pushed again after the timeout");
        let gap = arrivals[1] - arrivals[0];
        assert!(gap >= Duration::from_millis(300), "offset {offset} retried after {gap:?}, before the timeout");
    }
    committed_at(bootstrap, &group, &topic, &[10], Duration::from_secs(15)).await;
    assert_no_dead_letters(bootstrap, &topic);
    let metrics = sidecar.admin_url("/metrics");
    assert!(metric(&metrics, "kafka_sidecar_reactive_pushes_total{outcome=\"retry\"}").await >= 1.0);
    assert_eq!(metric(&metrics, "kafka_sidecar_reactive_records_total{outcome=\"processed\"}").await, 10.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_verdict_keeps_the_keys_order_and_holds_the_commit() {
    let bootstrap = broker();
    let (topic, group) = (unique("verdicts"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    // Three keys: key-0 holds offsets 0, 3, 6, ...; offset 3 is asked for again once.
    produce_keyed(bootstrap, &topic, 1, 24, 3).await;
    const AGAIN: i64 = 3;
    let script: Script = Arc::new(|call: &Call<'_>| {
        let Some(index) = call.records.iter().position(|record| record["offset"] == json!(AGAIN)) else {
            return Answer::ok();
        };
        if call.attempts[index] > 1 {
            return Answer::ok();
        }
        // An app that keeps its keys in order asks again for the record and for what follows it.
        let key = &call.records[index]["key"];
        let answers: Vec<Value> = call.records[index..]
            .iter()
            .filter(|record| record["key"] == *key)
            .map(|record| {
                let mut answer = verdict(record, "retry");
                answer["retry_after_ms"] = json!(1500);
                answer["error"] = json!("not yet");
                answer
            })
            .collect();
        Answer::ok().body(Value::Array(answers))
    });
    let backend = ScriptedBackend::start(script).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url("a"))).await;

    // Until the retried record succeeds, the commit never passes it.
    let answered = |backend: &ScriptedBackend| backend.processed_positions().contains(&(0, AGAIN));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let [commit] = committed(bootstrap, &group, &topic, 1)[..] else { unreachable!() };
        let done = answered(&backend);
        assert!(done || commit <= AGAIN, "committed {commit} while offset {AGAIN} waits for its retry");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "offset {AGAIN} never processed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.wait_processed(24, Duration::from_secs(60)).await;

    let pushes = backend.pushes();
    let arrivals = backend.arrivals(0, AGAIN);
    assert_eq!(arrivals.len(), 2, "asked again once, then processed");
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(1500), "retried after {gap:?}, before retry_after_ms");
    // Between the refused push and the successful one, nothing of that key was pushed; in the
    // successful push, the key's records start with it, in offset order.
    let has = |push: &scripted_backend::Push, offset: i64| push.records.iter().any(|r| r["offset"] == json!(offset));
    let refused = pushes.iter().find(|push| has(push, AGAIN)).unwrap().number;
    let succeeded = pushes.iter().rfind(|push| has(push, AGAIN)).unwrap();
    let key = json!("key-0");
    for push in pushes.iter().filter(|push| push.number > refused && push.number < succeeded.number) {
        let same_key: Vec<&Value> = push.records.iter().filter(|record| record["key"] == key).collect();
        assert!(same_key.is_empty(), "key-0 pushed while offset {AGAIN} waited: {same_key:?}");
    }
    let in_success: Vec<i64> =
        succeeded.records.iter().filter(|r| r["key"] == key).map(|r| r["offset"].as_i64().unwrap()).collect();
    assert_eq!(in_success.first(), Some(&AGAIN), "{in_success:?}");
    assert!(in_success.windows(2).all(|pair| pair[0] < pair[1]), "{in_success:?}");
    assert_eq!(backend.overlaps(), vec![], "a key pushed while in flight");
    // Each key was processed once per record, in offset order.
    for key in ["key-0", "key-1", "key-2"] {
        let offsets: Vec<i64> = backend.processed().iter().filter(|p| p.key == json!(key)).map(|p| p.offset).collect();
        let expected: Vec<i64> = (0..24).filter(|offset| format!("key-{}", offset % 3) == key).collect();
        assert_eq!(offsets, expected, "{key} processed out of order or twice");
    }
    committed_at(bootstrap, &group, &topic, &[24], Duration::from_secs(15)).await;
    assert_no_dead_letters(bootstrap, &topic);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_seek_pause_and_resume() {
    let bootstrap = broker();
    let (topic, group) = (unique("operated"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 10).await;
    let backend = ScriptedBackend::start(Arc::new(|_: &Call<'_>| Answer::ok())).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url("a"))).await;
    backend.wait_processed(10, Duration::from_secs(60)).await;
    committed_at(bootstrap, &group, &topic, &[10], Duration::from_secs(15)).await;

    // Seek back to offset 2: records 2..9 are pushed again, 0 and 1 are not.
    let (status, body) =
        admin_post(&sidecar.admin_url("/admin/reactive/seek"), json!({"topic": topic, "partition": 0, "offset": 2}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partitions"], json!([{"topic": topic, "partition": 0}]));
    eventually(Duration::from_secs(30), "records 2..9 pushed again", async || {
        (2..10).all(|offset| backend.arrivals(0, offset).len() >= 2)
    })
    .await;
    assert_eq!(backend.arrivals(0, 0).len(), 1, "offset 0 is before the seek target");
    assert_eq!(backend.arrivals(0, 1).len(), 1, "offset 1 is before the seek target");
    assert_eq!(backend.overlaps(), vec![], "a key pushed while in flight");
    committed_at(bootstrap, &group, &topic, &[10], Duration::from_secs(15)).await;

    // Pause everything: new records wait; the state says paused.
    let state_url = sidecar.admin_url("/admin/reactive");
    let (status, body) = admin_post(&sidecar.admin_url("/admin/reactive/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partitions"], json!([{"topic": topic, "partition": 0}]));
    let state = reactive_state(&state_url).await;
    assert_eq!(state["partitions"][0]["paused"], json!(true), "{state}");
    let before = backend.pushes().len();
    produce(bootstrap, &topic, 1, 5).await; // offsets 10..14
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        let pushed = backend.pushes().len();
        assert_eq!(pushed, before, "pushed while paused: {:?}", &backend.pushes()[before..]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = reactive_state(&state_url).await;
    assert_eq!(state["partitions"][0]["paused"], json!(true), "still paused: {state}");

    // Resume: the waiting records arrive and the commit reaches the new log end.
    let (status, body) = admin_post(&sidecar.admin_url("/admin/reactive/resume"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(30), "records 10..14 pushed after resume", async || {
        (10..15).all(|offset| backend.processed_positions().contains(&(0, offset)))
    })
    .await;
    committed_at(bootstrap, &group, &topic, &[15], Duration::from_secs(15)).await;
    let state = reactive_state(&state_url).await;
    assert_eq!(state["partitions"][0]["paused"], json!(false), "{state}");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_mid_stream_finishes_in_flight_pushes_and_commits_them() {
    let bootstrap = broker();
    let (topic, group) = (unique("stopping"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 30).await;
    let script: Script = Arc::new(|_: &Call<'_>| Answer::ok().after(Duration::from_millis(300)));
    let backend = ScriptedBackend::start(script).await;
    let mut config = reactive_config(bootstrap, &topic, &group, &backend.url("a"));
    config.reactive_consumer.max_batch_records = 1;
    config.reactive_consumer.max_in_flight_batches = 2;
    let sidecar = TestSidecar::start(config).await;
    backend.wait_processed(4, Duration::from_secs(60)).await;
    sidecar.stop().await;

    let processed = backend.processed_positions();
    let pushed: BTreeSet<(i64, i64)> = backend
        .pushes()
        .iter()
        .flat_map(|push| push.records.iter().map(|record| (position(record).1, position(record).2)))
        .collect();
    assert_eq!(pushed, processed, "every push in flight at the stop was let finish");
    assert_eq!(backend.overlaps(), vec![], "a key pushed while in flight");
    let prefix = i64::try_from((0..).take_while(|offset| processed.contains(&(0, *offset))).count()).unwrap();
    let [commit] = committed(bootstrap, &group, &topic, 1)[..] else { unreachable!() };
    assert!(commit > 0, "something was committed");
    assert!(commit < 30, "the stop came mid-stream (committed {commit})");
    assert_eq!(commit, prefix, "the commit covers exactly what was done: {processed:?}");
}

fn process_config(bootstrap: &str, topic: &str, group: &str, backend_url: &str) -> String {
    format!(
        r#"kafka:
  bootstrap_servers: "{bootstrap}"
consumer:
  properties:
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
reactive_consumer:
  enabled: true
  group_id: "{group}"
  topics: ["{topic}"]
  backend_url: "{backend_url}"
  max_batch_records: 2
  max_in_flight_batches: 2
  retry: {{ max_attempts: 5, initial_backoff_ms: 20, max_backoff_ms: 200 }}
log:
  level: "info,kafka_sidecar=debug"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_killed_mid_stream_loses_nothing_and_the_group_commits_to_the_log_end() {
    let bootstrap = broker();
    let (topic, group) = (unique("crash"), unique("group"));
    create_topic(bootstrap, &topic, 4).await;
    let backend = ScriptedBackend::start(Arc::new(|_: &Call<'_>| Answer::ok().after(Duration::from_millis(100)))).await;
    let mut config = reactive_config(bootstrap, &topic, &group, &backend.url("survivor"));
    config.reactive_consumer.max_batch_records = 2;
    config.reactive_consumer.max_in_flight_batches = 2;
    let survivor = TestSidecar::start(config).await;
    let survivor_state = survivor.admin_url("/admin/reactive");
    let mut victim = SidecarProcess::start(&process_config(bootstrap, &topic, &group, &backend.url("victim"))).await;
    let victim_state = victim.admin_url("/admin/reactive");
    eventually(Duration::from_secs(60), "both members to own partitions", async || {
        let (mine, theirs) = (owned(&survivor_state).await, owned(&victim_state).await);
        mine >= 1 && theirs >= 1 && mine + theirs == 4
    })
    .await;

    // The victim dies while records are still being produced and pushed.
    let producing = tokio::spawn({
        let topic = topic.clone();
        async move { produce_keyed(bootstrap, &topic, 4, 200, 8).await }
    });
    let victims_work = |backend: &ScriptedBackend| backend.processed().iter().filter(|p| p.route == "victim").count();
    eventually(Duration::from_secs(60), "the victim to process some records", async || victims_work(&backend) >= 10)
        .await;
    victim.kill();
    producing.await.expect("produced");
    let victim_log = victim.log();
    let done_by_victim = victims_work(&backend);

    // The group notices the dead member; the survivor takes everything over.
    eventually(Duration::from_secs(60), "the survivor to own every partition", async || {
        owned(&survivor_state).await == 4
    })
    .await;
    let mut restarted =
        SidecarProcess::start(&process_config(bootstrap, &topic, &group, &backend.url("restarted"))).await;
    let restarted_state = restarted.admin_url("/admin/reactive");
    eventually(Duration::from_secs(60), "the restarted member to own partitions", async || {
        owned(&restarted_state).await >= 1
    })
    .await;
    produce_keyed(bootstrap, &topic, 4, 40, 8).await;

    let all: BTreeSet<(i64, i64)> = (0..4).flat_map(|p| (0..60).map(move |o| (p, o))).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing: Vec<_> = all.difference(&backend.processed_positions()).copied().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never processed: {missing:?}\nvictim log:\n{victim_log}\nrestarted log:\n{}",
            restarted.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    committed_at(bootstrap, &group, &topic, &[60, 60, 60, 60], Duration::from_secs(30)).await;
    assert!(done_by_victim < 50, "the victim died mid-stream ({done_by_victim} records done)");
    assert!(
        backend.processed().iter().any(|p| p.route == "restarted"),
        "the restarted member took part: {}",
        restarted.log()
    );
    assert!(restarted.terminate().await, "the restarted member stops cleanly: {}", restarted.log());
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seek_to_the_end_commits_the_end_so_a_restart_skips_the_records() {
    let bootstrap = broker();
    let (topic, group) = (unique("skipped"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    let backend = ScriptedBackend::start(Arc::new(|_: &Call<'_>| Answer::ok())).await;
    let config = reactive_config(bootstrap, &topic, &group, &backend.url("a"));
    let sidecar = TestSidecar::start(config.clone()).await;
    let state_url = sidecar.admin_url("/admin/reactive");
    eventually(Duration::from_secs(60), "the assignment", async || owned(&state_url).await == 1).await;
    let (status, body) = admin_post(&sidecar.admin_url("/admin/reactive/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    produce(bootstrap, &topic, 1, 20).await;
    // The operator skips the backlog: the group's committed offset moves to the end.
    let (status, body) =
        admin_post(&sidecar.admin_url("/admin/reactive/seek"), json!({"topic": topic, "position": "end"})).await;
    assert_eq!(status, 200, "{body}");
    committed_at(bootstrap, &group, &topic, &[20], Duration::from_secs(10)).await;
    sidecar.stop().await;
    // A restart continues from there: nothing of the skipped backlog is pushed.
    let restarted = TestSidecar::start(config).await;
    let restarted_state = restarted.admin_url("/admin/reactive");
    eventually(Duration::from_secs(60), "the assignment", async || owned(&restarted_state).await == 1).await;
    produce(bootstrap, &topic, 1, 1).await;
    backend.wait_processed(1, Duration::from_secs(30)).await;
    let pushed: Vec<i64> = backend.pushes().iter().flat_map(|p| p.records.iter().map(|r| position(r).2)).collect();
    assert_eq!(pushed, vec![20], "only the record produced after the seek");
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seek_never_pushes_a_key_while_its_abandoned_push_is_in_flight() {
    let bootstrap = broker();
    let (topic, group) = (unique("seek-flight"), unique("group"));
    create_topic(bootstrap, &topic, 1).await;
    produce(bootstrap, &topic, 1, 10).await;
    // The first push (five keys) is still at the app when the operator seeks back.
    let script: Script =
        Arc::new(
            |call: &Call<'_>| if call.number == 1 { Answer::ok().after(Duration::from_secs(4)) } else { Answer::ok() },
        );
    let backend = ScriptedBackend::start(script).await;
    let sidecar = TestSidecar::start(reactive_config(bootstrap, &topic, &group, &backend.url("a"))).await;
    eventually(Duration::from_secs(60), "both batches pushed", async || backend.pushes().len() >= 2).await;
    let (status, body) =
        admin_post(&sidecar.admin_url("/admin/reactive/seek"), json!({"topic": topic, "partition": 0, "offset": 0}))
            .await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(30), "every record pushed again", async || {
        (0..10).all(|offset| backend.arrivals(0, offset).len() >= 2)
    })
    .await;
    assert_eq!(backend.overlaps(), vec![], "a key pushed while its earlier push was in flight");
    committed_at(bootstrap, &group, &topic, &[10], Duration::from_secs(15)).await;
    sidecar.stop().await;
}
