//! The deployment artefacts (`Dockerfile`, `deploy/`) checked against the sidecar itself: every
//! metric and label the Grafana dashboard and the Prometheus rules use is one the sidecar exports,
//! the Kubernetes example's ConfigMap is a configuration the sidecar accepts, its probes reach the
//! admin routes on the admin port, and the image exposes the default ports and runs as non-root.
//!
//! Which names are exported: prometheus-client prints a family only once it has a sample, so a
//! fresh sidecar's `/metrics` lacks every labelled family (records by topic, lag, reactive
//! outcomes, schema cache). The reference list therefore comes from the sidecar's own `Metrics`
//! with one sample in every family; it is checked against the `register(...)` calls in
//! `src/metrics` (no family left out) and against a live sidecar's `/metrics` after a little
//! producing and consuming (the same names and types, as served).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod consumer_support;
mod deploy_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use consumer_support::RestConsumer;
use deploy_support::exposition::{every_family, parse_exposition, series, sidecar_source, source_files};
use deploy_support::manifests::*;
use deploy_support::promql::{GRAFANA_VARIABLES, References, check_expression, template_labels};
use deploy_support::{PEAK_RSS_BYTES, read, repo};
use kafka_sidecar::Config;
use kafka_sidecar::config::ConfigSources;
use serde_json::{Value as Json, json};
use serde_norway::Value as Yaml;
use support::{TestSidecar, eventually, unique};

#[test]
fn every_registered_family_is_in_the_reference_list() {
    let mut files = Vec::new();
    source_files(&repo("crates/kafka-sidecar/src/metrics"), &mut files);
    let mut registered = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("metrics source");
        // `registry.register("name", ...)`; the sections' own `register(registry)` name nothing.
        for (index, _) in text.match_indices(".register(") {
            let rest = text[index + ".register(".len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|rest| rest.split('"').next()) {
                registered.insert(format!("kafka_sidecar_{name}"));
            }
        }
        assert!(!text.contains("register_with_unit"), "units change the exported names: teach this test");
    }
    let listed: BTreeSet<String> = every_family().into_keys().collect();
    assert_eq!(listed, registered, "give every registered family a sample in every_family()");
}

// ----------------------------------------------------------------------------- Grafana

fn panels(list: &Json, out: &mut Vec<Json>) {
    for panel in list.as_array().expect("panels") {
        if panel["type"] == "row" {
            panels(&panel["panels"], out);
        }
        out.push(panel.clone());
    }
}

#[test]
fn grafana_dashboard_uses_exported_metrics() {
    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/kafka-sidecar.json")).expect("dashboard JSON");
    let exported = series(&every_family());
    let source = sidecar_source();
    assert_eq!(dashboard["uid"], "kafka-sidecar");
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    let defined: BTreeSet<&str> = variables.iter().filter_map(|v| v["name"].as_str()).collect();
    let datasource = variables.iter().find(|v| v["type"] == "datasource").expect("a data source variable");
    assert_eq!((&datasource["name"], &datasource["query"]), (&json!("datasource"), &json!("prometheus")));

    let mut used = BTreeSet::new();
    let check_variables = |context: &str, references: &References| {
        for variable in &references.variables {
            let known = defined.contains(variable.as_str()) || GRAFANA_VARIABLES.contains(&variable.as_str());
            assert!(known, "{context}: ${variable} is not defined");
        }
    };
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let context = format!("variable {}", variable["name"]);
        let (references, _) =
            check_expression(&context, variable["query"].as_str().expect("query"), &exported, &source);
        check_variables(&context, &references);
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut ids = BTreeSet::new();
    for panel in all {
        let context = format!("panel {:?}", panel["title"].as_str().expect("title"));
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{context}: id repeated");
        let grid = &panel["gridPos"];
        let (x, width) = (grid["x"].as_u64().expect("x"), grid["w"].as_u64().expect("w"));
        assert!(x + width <= 24, "{context}: wider than the grid");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{context}: not on the data source variable");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{context}: no queries");
        for target in targets {
            let expression = target["expr"].as_str().expect("expr");
            let (references, labels) = check_expression(&context, expression, &exported, &source);
            check_variables(&context, &references);
            for label in template_labels(target["legendFormat"].as_str().unwrap_or_default()) {
                assert!(labels.contains(&label), "{context}: legend names `{label}`, which its result lacks");
            }
            used.extend(references.metrics);
        }
    }
    let wanted = [
        "kafka_sidecar_records_accepted_total",
        "kafka_sidecar_records_failed_total",
        "kafka_sidecar_records_rejected_total",
        "kafka_sidecar_queue_bytes",
        "kafka_sidecar_delivery_latency_seconds_bucket",
        "kafka_sidecar_consumer_records_total",
        "kafka_sidecar_consumer_lag_records",
        "kafka_sidecar_consumer_lag_seconds",
        "kafka_sidecar_reactive_pushes_total",
        "kafka_sidecar_reactive_records_total",
        "kafka_sidecar_schema_cache_hits_total",
        "kafka_sidecar_schema_cache_misses_total",
    ];
    for metric in wanted {
        assert!(used.contains(metric), "the dashboard should show {metric}");
    }
}

// ----------------------------------------------------------------------------- Prometheus rules

#[test]
fn alert_rules_use_exported_metrics() {
    let rules: Yaml = serde_norway::from_str(&read("deploy/prometheus/alerts.yaml")).expect("rules YAML");
    let exported = series(&every_family());
    let source = sidecar_source();
    let mut names = BTreeSet::new();
    let mut expressions = String::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alerting rules only");
            assert!(names.insert(name.to_string()), "{name} defined twice");
            let expression = rule["expr"].as_str().expect("expr");
            let (references, labels) = check_expression(name, expression, &exported, &source);
            assert!(references.variables.is_empty(), "{name}: Grafana variables in a rule");
            let severity = rule["labels"]["severity"].as_str().expect("severity");
            assert!(["info", "warning", "critical"].contains(&severity), "{name}: severity {severity}");
            if let Some(wait) = rule.get("for") {
                let wait = wait.as_str().expect("for");
                let (number, unit) = wait.split_at(wait.len() - 1);
                assert!(number.parse::<u32>().is_ok() && "smhd".contains(unit), "{name}: for: {wait}");
            }
            for key in ["summary", "description"] {
                let text = rule["annotations"][key].as_str().unwrap_or_else(|| panic!("{name}: no {key}"));
                for label in template_labels(text) {
                    assert!(labels.contains(&label), "{name}: {key} names `{label}`, which its result lacks");
                }
            }
            expressions.push_str(expression);
        }
    }
    // What the rules are for: not ready, delivery failures, backpressure, lag, dead letters.
    for needle in [
        "kafka_sidecar_ready == 0",
        "kafka_sidecar_records_failed_total",
        "kafka_sidecar_records_rejected_total{code=\"QUEUE_FULL\"}",
        "deriv(kafka_sidecar_consumer_lag_records",
        "kafka_sidecar_consumer_lag_seconds",
        "kafka_sidecar_reactive_records_total{outcome=\"dead_lettered\"}",
    ] {
        assert!(expressions.contains(needle), "no rule uses {needle}");
    }
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests() {
    let folder = repo("deploy/prometheus");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]] {
        match std::process::Command::new("promtool").args(args).current_dir(&folder).output() {
            Ok(output) => assert!(
                output.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            // Optional: the names and labels are checked above whether or not it is installed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("promtool is not installed: `promtool {}` not run", args.join(" "));
            }
            Err(error) => panic!("promtool: {error}"),
        }
    }
}

#[test]
fn kubernetes_example_configures_the_sidecar() {
    let (sidecar, config, pod) = kubernetes_sidecar();
    let probes: BTreeMap<_, _> = sidecar_probes().into_iter().collect();
    assert_eq!(probes["livenessProbe"], "/healthz", "liveness must not depend on Kafka");
    assert_eq!(probes["startupProbe"], "/healthz");
    assert_eq!(probes["readinessProbe"], "/readyz");
    // The app reaches the APIs on loopback; the kubelet and Prometheus reach the admin port.
    assert!(config.grpc.listen.ip().is_loopback() && config.http.listen.ip().is_loopback());
    assert!(config.admin.listen.ip().is_unspecified(), "probes come from the node: admin must leave loopback");
    let admin_port = u64::from(config.admin.listen.port());
    let declared = sidecar["ports"].as_sequence().expect("ports");
    assert_eq!(declared.len(), 1, "only the admin port is reachable from outside the pod");
    assert_eq!((&declared[0]["name"], declared[0]["containerPort"].as_u64()), (&yaml_text("admin"), Some(admin_port)));

    // Shutdown: the pod's grace period holds the sidecar's drain with room to spare.
    let grace_ms = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds") * 1000;
    assert!(grace_ms >= config.shutdown.grace_period_ms + 5_000, "{grace_ms} ms leave no room to drain");
    // Kubernetes' service-link variables would be read as configuration and refused.
    let link = vec![("KAFKA_SIDECAR_SERVICE_HOST".to_string(), "10.0.0.1".to_string())];
    if Config::load(&ConfigSources { env: link, ..ConfigSources::default() }).is_err() {
        assert_eq!(pod["enableServiceLinks"], false, "service links would stop the sidecar from starting");
    }

    let resources = &sidecar["resources"];
    let request = quantity_bytes(resources["requests"]["memory"].as_str().expect("memory request"));
    let limit = quantity_bytes(resources["limits"]["memory"].as_str().expect("memory limit"));
    assert!(request >= PEAK_RSS_BYTES && limit > request, "memory {request} / {limit} below the measured peak");
    assert!(resources["requests"]["cpu"].as_str().is_some(), "a CPU request");
    let user = sidecar["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    assert_eq!(Some(user), dockerfile_user(), "the pod runs the image's user");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    // The app finds the sidecar through the names the Python client reads.
    let client = read("clients/python/kafka_sidecar/_config.py");
    assert!(
        client.contains("ENV_ADDRESS = \"KAFKA_SIDECAR_ADDRESS\"")
            && client.contains("ENV_MODE = \"KAFKA_SIDECAR_MODE\"")
    );
    let app = pod["containers"].as_sequence().expect("containers").iter().find(|c| c["name"] == "app").expect("app");
    assert_eq!(env_value(app, "KAFKA_SIDECAR_ADDRESS"), Some(config.grpc.listen.to_string().as_str()));
    assert!(["sidecar", "auto", "direct"].contains(&env_value(app, "KAFKA_SIDECAR_MODE").expect("mode")));

    // Scraping and the network policy use the same admin port and path.
    let annotations =
        &manifest("deploy/kubernetes/deployment.yaml", "Deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], admin_port.to_string().as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let monitor = manifest("deploy/kubernetes/podmonitor.yaml", "PodMonitor");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!((&endpoint["port"], &endpoint["path"]), (&yaml_text("admin"), &yaml_text("/metrics")));
    let policy = manifest("deploy/kubernetes/networkpolicy.yaml", "NetworkPolicy");
    let ports: Vec<u64> = policy["spec"]["ingress"]
        .as_sequence()
        .expect("ingress")
        .iter()
        .flat_map(|rule| rule["ports"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|port| port["port"].as_u64())
        .collect();
    assert!(ports.contains(&admin_port), "the network policy lets Prometheus reach the admin port");
}

fn yaml_text(text: &str) -> Yaml {
    Yaml::String(text.to_string())
}

// ----------------------------------------------------------------------------- Dockerfile

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile").replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
            (instruction.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

/// The final stage's numeric user.
fn dockerfile_user() -> Option<u64> {
    let instructions = dockerfile();
    let last_stage = instructions.iter().rposition(|(instruction, _)| instruction == "FROM")?;
    let user = instructions[last_stage..].iter().rev().find(|(instruction, _)| instruction == "USER")?;
    user.1.split(':').next()?.parse().ok()
}

#[test]
fn dockerfile_builds_a_small_non_root_image_with_the_default_ports() {
    let instructions = dockerfile();
    // Image names with the ARG defaults filled in.
    let defaults: Vec<(String, String)> = instructions
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, rest)| rest.split_once('=').map(|(name, value)| (format!("${{{name}}}"), value.to_string())))
        .collect();
    let stages: Vec<String> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, rest)| defaults.iter().fold(rest.clone(), |image, (name, value)| image.replace(name, value)))
        .collect();
    assert!(stages.len() >= 2 && stages[0].ends_with(" AS builder"), "multi-stage: {stages:?}");
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain.lines().find_map(|line| line.strip_prefix("channel = ")).expect("channel");
    let builder = format!("rust:{}-", channel.trim_matches('"'));
    assert!(stages[0].starts_with(&builder), "the builder's Rust is rust-toolchain.toml's: {}", stages[0]);
    let runtime = stages.last().expect("stages");
    assert!(!runtime.contains("rust"), "the runtime image holds no toolchain: {runtime}");
    // The binary links the builder's glibc: the runtime must be the same Debian release.
    let releases = [("bookworm", "debian12"), ("trixie", "debian13")];
    let same = releases.iter().any(|(name, number)| stages[0].contains(name) && runtime.contains(number));
    assert!(same, "builder {} and runtime {runtime} are different Debian releases", stages[0]);
    let builds = instructions.iter().filter(|(i, rest)| i == "RUN" && rest.contains("cargo build")).count();
    assert_eq!(builds, 1);
    let run = instructions.iter().find(|(i, rest)| i == "RUN" && rest.contains("cargo build")).expect("build");
    assert!(run.1.contains("--release") && run.1.contains("--locked") && run.1.contains("--bin kafka-sidecar"));
    assert!(dockerfile_user().is_some_and(|user| user != 0), "the image ends as a numeric non-root USER");

    let defaults = Config::default();
    let default_ports =
        BTreeSet::from([defaults.grpc.listen.port(), defaults.http.listen.port(), defaults.admin.listen.port()]);
    let exposed: BTreeSet<u16> = instructions
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, rest)| rest.split_whitespace().map(|port| port.parse::<u16>().expect("port")))
        .collect();
    assert_eq!(exposed, default_ports, "EXPOSE the default ports");

    // The image's own configuration: the pod layout on the default ports, accepted by the sidecar.
    let copy = instructions
        .iter()
        .find(|(i, rest)| i == "COPY" && rest.starts_with("deploy/"))
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .expect("COPY of the image's configuration");
    let env = instructions.iter().find(|(i, rest)| i == "ENV" && rest.starts_with("KAFKA_SIDECAR_CONFIG="));
    assert_eq!(env.map(|(_, rest)| &rest["KAFKA_SIDECAR_CONFIG=".len()..]), Some(copy[1]), "the image reads it");
    let sources = ConfigSources { file: Some(repo(copy[0])), ..ConfigSources::default() };
    let config = Config::load(&sources).unwrap_or_else(|error| panic!("{}: {error}", copy[0]));
    let ports = BTreeSet::from([config.grpc.listen.port(), config.http.listen.port(), config.admin.listen.port()]);
    assert_eq!(ports, default_ports);
    assert!(config.grpc.listen.ip().is_loopback() && config.http.listen.ip().is_loopback());
    assert!(config.admin.listen.ip().is_unspecified());

    // Everything the build copies from the context gets past .dockerignore's allow-list.
    let ignore = read(".dockerignore");
    let allowed: BTreeSet<&str> =
        ignore.lines().filter_map(|l| l.strip_prefix('!')).map(|l| l.trim_end_matches('/')).collect();
    for (_, rest) in instructions.iter().filter(|(i, rest)| i == "COPY" && !rest.starts_with("--from")) {
        let words: Vec<&str> = rest.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(allowed.contains(source.trim_end_matches('/')), ".dockerignore keeps {source} out");
        }
    }
}

// ----------------------------------------------------------------------------- a live sidecar

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_sidecar_serves_the_probes_and_the_reference_metrics() {
    let bootstrap = support::broker();
    let topic = unique("deploy");
    let group = unique("deploy-group");
    support::create_topic(bootstrap, &topic, 1).await;
    let mut config = support::test_config(bootstrap);
    config.consumer.lag_interval_ms = 200;
    let sidecar = TestSidecar::start(config).await;
    let http = reqwest::Client::new();

    for (kind, path) in sidecar_probes() {
        let status = http.get(sidecar.admin_url(&path)).send().await.expect("probe").status();
        assert_eq!(status, 200, "{kind} {path} on the admin listener");
    }

    // A record produced, then read back through a consumer instance: the labelled families.
    let record = json!({"records": [{"key": "k", "value": "dmFsdWU="}]});
    let produced =
        http.post(sidecar.http_url(&format!("/producers/{topic}"))).json(&record).send().await.expect("produce");
    assert_eq!(produced.status(), 200, "{}", produced.text().await.unwrap_or_default());
    let body = json!({"format": "binary", "auto.offset.reset": "earliest", "auto.commit.enable": "false"});
    let consumer = RestConsumer::create(&sidecar, &group, body).await;
    consumer.assign(&topic, 0..1).await;
    assert_eq!(consumer.fetch_until(1, Duration::from_secs(20)).await.len(), 1, "the record read back");
    let lag = format!("kafka_sidecar_consumer_lag_records{{group=\"{group}\"");
    let mut text = String::new();
    eventually(Duration::from_secs(20), "the lag gauge", async || {
        text = http.get(sidecar.admin_url("/metrics")).send().await.expect("scrape").text().await.expect("text");
        text.contains(&lag)
    })
    .await;

    let live = parse_exposition(&text);
    let reference = every_family();
    for (name, family) in &live {
        let known = reference.get(name).unwrap_or_else(|| panic!("{name} is served but not in the reference list"));
        assert_eq!(family.kind, known.kind, "{name}");
        assert!(family.labels.is_subset(&known.labels), "{name}: {:?} vs {:?}", family.labels, known.labels);
    }
    for name in [
        "kafka_sidecar_ready",
        "kafka_sidecar_requests",
        "kafka_sidecar_records_accepted",
        "kafka_sidecar_records_delivered",
        "kafka_sidecar_delivery_latency_seconds",
        "kafka_sidecar_queue_bytes",
        "kafka_sidecar_consumer_records",
        "kafka_sidecar_consumer_lag_records",
    ] {
        assert!(live.contains_key(name), "{name} is not served after producing and consuming");
    }
    assert!(text.lines().any(|line| line == "kafka_sidecar_ready 1"), "ready");
    consumer.delete().await;
    sidecar.stop().await;
}
