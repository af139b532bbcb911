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
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consumer_support::RestConsumer;
use kafka_sidecar::Config;
use kafka_sidecar::config::ConfigSources;
use kafka_sidecar::metrics::{CodeLabels, ConsumerCounters, GroupTopicLabels, LagLabels, Metrics, RequestLabels};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use serde_norway::Value as Yaml;
use support::{TestSidecar, eventually, unique};

/// Labels Prometheus' Kubernetes discovery adds to every series: the artefacts may use them.
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod", "container"];
/// PromQL functions, aggregations and keywords the artefacts may use; anything else must be ours.
const PROMQL_WORDS: &str =
    "sum avg max min count rate increase delta deriv histogram_quantile vector clamp_min or and unless bool offset";
/// Aggregations whose `by (...)` list names the labels their result keeps.
const AGGREGATIONS: &[&str] = &["sum", "avg", "max", "min", "count"];
/// PromQL keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Grafana's own variables.
const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];
/// Peak RSS under full load, from README.md's Performance table: the sidecar's memory request.
const PEAK_RSS_BYTES: u64 = 68 << 20;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

// ----------------------------------------------------------------------------- exported metrics

#[derive(Debug, PartialEq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// Families of a Prometheus text exposition: names and types from `# TYPE`, label names from samples.
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            families.insert(name.to_string(), Family { kind: kind.to_string(), labels: BTreeSet::new() });
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).expect("sample line");
            let sample = &line[..end];
            let family = ["", "_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| sample.strip_suffix(suffix).filter(|base| families.contains_key(*base)))
                .unwrap_or_else(|| panic!("sample {sample} belongs to no family"));
            let labels = scan(&line[end..]).labels.into_iter().filter(|label| label != "le");
            families.get_mut(family).expect("family").labels.extend(labels);
        }
    }
    families
}

/// The sidecar's registry with one sample in every family, as `/metrics` would print it.
fn every_family() -> BTreeMap<String, Family> {
    let metrics = Metrics::new();
    let client = metrics.client_label("app");
    metrics.requests.get_or_create(&RequestLabels { api: "http_produce", client: client.clone() }).inc();
    let counters = metrics.record_counters("orders", &client);
    counters.accepted.inc();
    counters.delivered.inc();
    metrics.record_rejected(&counters, "QUEUE_FULL");
    metrics.record_failed(&counters, "DELIVERY_FAILED");
    metrics.librdkafka_errors.get_or_create(&CodeLabels { code: "BrokerTransportFailure".into() }).inc();
    metrics.fair_share_refused(&client);
    let _instance = ConsumerCounters::new(Arc::clone(&metrics), "billing");
    let group_topic = GroupTopicLabels { group: "billing".into(), topic: "orders".into() };
    metrics.consumer.records.get_or_create(&group_topic).inc();
    metrics.consumer.bytes.get_or_create(&group_topic).inc();
    let partition = LagLabels { group: "billing".into(), topic: "orders".into(), partition: 0 };
    metrics.consumer.lag_records.get_or_create(&partition).set(1);
    metrics.consumer.lag_seconds.get_or_create(&partition).set(1.0);
    metrics.reactive.pushes("answered").inc();
    metrics.reactive.records("dead_lettered").inc();
    metrics.schema.hit("id");
    metrics.schema.miss("id");
    metrics.schema.call("schema_by_id", "ok", 0.001);
    parse_exposition(&metrics.encode())
}

/// Every series name the families print, with its label names.
fn series(families: &BTreeMap<String, Family>) -> BTreeMap<String, BTreeSet<String>> {
    let mut series = BTreeMap::new();
    for (name, family) in families {
        let labels = family.labels.clone();
        match family.kind.as_str() {
            "counter" => {
                series.insert(format!("{name}_total"), labels);
            }
            "histogram" => {
                let mut bucket = labels.clone();
                bucket.insert("le".to_string());
                series.insert(format!("{name}_bucket"), bucket);
                series.insert(format!("{name}_sum"), labels.clone());
                series.insert(format!("{name}_count"), labels);
            }
            _ => {
                series.insert(name.clone(), labels);
            }
        }
    }
    series
}

fn source_files(folder: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).expect("source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// All of the crate's source, for label values that must appear in it as string literals.
fn sidecar_source() -> String {
    let mut files = Vec::new();
    source_files(&repo("crates/kafka-sidecar/src"), &mut files);
    files.iter().map(|file| std::fs::read_to_string(file).expect("source")).collect()
}

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

// ----------------------------------------------------------------------------- PromQL

/// What a PromQL expression names.
#[derive(Debug, Default)]
struct References {
    metrics: BTreeSet<String>,
    /// In matchers and in by/without/on/ignoring lists.
    labels: BTreeSet<String>,
    /// `label="value"` and `label!="value"` matchers.
    values: BTreeSet<(String, String)>,
    /// Grafana variables (`$name`).
    variables: BTreeSet<String>,
    /// Other identifiers: functions, aggregations, keywords.
    words: BTreeSet<String>,
    /// The labels a result keeps, when the expression opens with `sum by (...)` or the like.
    output: Option<BTreeSet<String>>,
}

fn identifier(chars: &[char], mut index: usize) -> (String, usize) {
    let start = index;
    while index < chars.len() && (chars[index].is_ascii_alphanumeric() || chars[index] == '_' || chars[index] == ':') {
        index += 1;
    }
    (chars[start..index].iter().collect(), index)
}

/// A quoted string starting at `index`: its text and the index after it.
fn string(chars: &[char], index: usize) -> (String, usize) {
    let quote = chars[index];
    let mut text = String::new();
    let mut at = index + 1;
    while at < chars.len() && chars[at] != quote {
        if chars[at] == '\\' {
            at += 1;
        }
        text.extend(chars.get(at));
        at += 1;
    }
    (text, at + 1)
}

fn skip_spaces(chars: &[char], mut index: usize) -> usize {
    while index < chars.len() && chars[index].is_whitespace() {
        index += 1;
    }
    index
}

fn note_variables(text: &str, references: &mut References) {
    let chars: Vec<char> = text.chars().collect();
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '$') {
        references.variables.insert(identifier(&chars, at + 1).0);
    }
}

/// `{label op "value", ...}` from just after the `{`; returns the index after the `}`.
fn matchers(chars: &[char], mut index: usize, references: &mut References) -> usize {
    loop {
        index = skip_spaces(chars, index);
        match chars.get(index) {
            None => return index,
            Some('}') => return index + 1,
            Some(',') => index += 1,
            Some(_) => {
                let (label, after) = identifier(chars, index);
                assert!(!label.is_empty(), "bad matcher at {index} in {}", chars.iter().collect::<String>());
                let operator_start = skip_spaces(chars, after);
                let mut at = operator_start;
                while matches!(chars.get(at), Some('=' | '!' | '~')) {
                    at += 1;
                }
                let operator: String = chars[operator_start..at].iter().collect();
                let (value, after) = string(chars, skip_spaces(chars, at));
                note_variables(&value, references);
                if operator == "=" || operator == "!=" {
                    references.values.insert((label.clone(), value));
                }
                references.labels.insert(label);
                index = after;
            }
        }
    }
}

/// The names a PromQL expression uses, or those of a Grafana `label_values(...)` query.
fn scan(expression: &str) -> References {
    let mut references = References::default();
    let mut text = expression.trim();
    if let Some(inner) = text.strip_prefix("label_values(").and_then(|rest| rest.strip_suffix(')')) {
        let (selector, label) = inner.rsplit_once(',').unwrap_or(("", inner));
        references.labels.insert(label.trim().to_string());
        text = selector;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if matches!(c, '"' | '\'' | '`') {
            index = string(&chars, index).1;
        } else if c == '$' {
            let (name, after) = identifier(&chars, index + 1);
            references.variables.insert(name);
            index = after;
        } else if c.is_ascii_digit() {
            // Numbers and durations (`0.99`, `5m`).
            while index < chars.len() && (chars[index].is_ascii_alphanumeric() || chars[index] == '.') {
                index += 1;
            }
        } else if c == '{' {
            index = matchers(&chars, index + 1, &mut references);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let (word, after) = identifier(&chars, index);
            index = after;
            if word.starts_with("kafka_sidecar_") {
                references.metrics.insert(word);
            } else if LABEL_LISTS.contains(&word.as_str()) && chars.get(skip_spaces(&chars, index)) == Some(&'(') {
                let close = index + chars[index..].iter().position(|c| *c == ')').expect("closing )");
                let list: String = chars[skip_spaces(&chars, index) + 1..close].iter().collect();
                let list: BTreeSet<String> =
                    list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
                let opening = references.metrics.is_empty() && references.labels.is_empty();
                if word == "by" && opening && references.words.iter().all(|w| AGGREGATIONS.contains(&w.as_str())) {
                    references.output = Some(list.clone());
                }
                references.labels.extend(list);
                index = close + 1;
            } else {
                references.words.insert(word);
            }
        } else {
            index += 1;
        }
    }
    references
}

/// Checks one expression against the exported series; returns its references and the label
/// names its result can carry, for legends and annotations: those of an opening `sum by (...)`,
/// else those of its series and the target labels.
fn check_expression(
    context: &str,
    expression: &str,
    exported: &BTreeMap<String, BTreeSet<String>>,
    source: &str,
) -> (References, BTreeSet<String>) {
    let references = scan(expression);
    assert!(!references.metrics.is_empty(), "{context}: names no kafka_sidecar metric: {expression}");
    for word in &references.words {
        assert!(
            PROMQL_WORDS.split(' ').any(|known| known == word),
            "{context}: `{word}` is not a sidecar metric: {expression}"
        );
    }
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|label| label.to_string()).collect();
    for metric in &references.metrics {
        let Some(carried) = exported.get(metric) else {
            panic!("{context}: {metric} is not exported; these are: {:#?}", exported.keys())
        };
        labels.extend(carried.iter().cloned());
    }
    for label in &references.labels {
        assert!(labels.contains(label), "{context}: no series of {:?} has label `{label}`", references.metrics);
    }
    for (label, value) in &references.values {
        if !TARGET_LABELS.contains(&label.as_str()) && !value.contains('$') {
            let literal = format!("\"{value}\"");
            assert!(source.contains(&literal), "{context}: {label}={literal} is a value the sidecar never sets");
        }
    }
    let output = references.output.clone().unwrap_or(labels);
    (references, output)
}

/// Label names in `{{label}}` (Grafana legends) or `{{ $labels.label }}` (alert templates).
fn template_labels(template: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for piece in template.split("{{").skip(1) {
        let inner = piece.split("}}").next().unwrap_or_default().trim();
        if let Some(label) = inner.strip_prefix("$labels.") {
            labels.push(label.split_whitespace().next().unwrap_or_default().to_string());
        } else if !inner.starts_with('$') && !inner.contains(' ') {
            labels.push(inner.to_string());
        }
    }
    labels
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

// ----------------------------------------------------------------------------- Kubernetes

fn documents(path: &str) -> Vec<Yaml> {
    let text = read(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Yaml::deserialize(document).unwrap_or_else(|error| panic!("{path}: {error}")))
        .filter(|document| !document.is_null())
        .collect()
}

/// The first document of `kind` in the manifest at `path`.
fn manifest(path: &str, kind: &str) -> Yaml {
    of_kind(&documents(path), kind).clone()
}

fn of_kind<'a>(documents: &'a [Yaml], kind: &str) -> &'a Yaml {
    documents.iter().find(|document| document["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

/// `80Mi`, `1Gi`, `500M`, ... in bytes.
fn quantity_bytes(quantity: &str) -> u64 {
    let units =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)];
    let (number, factor) = units
        .iter()
        .find_map(|(unit, factor)| quantity.strip_suffix(unit).map(|number| (number, *factor)))
        .unwrap_or((quantity, 1));
    number.parse::<u64>().expect("a whole quantity") * factor
}

fn env_value<'a>(container: &'a Yaml, name: &str) -> Option<&'a str> {
    let variables = container["env"].as_sequence()?;
    variables.iter().find(|variable| variable["name"] == name).and_then(|variable| variable["value"].as_str())
}

/// The example's sidecar container, its configuration as the sidecar loads it, and the pod spec.
fn kubernetes_sidecar() -> (Yaml, Config, Yaml) {
    let documents = documents("deploy/kubernetes/deployment.yaml");
    let pod = of_kind(&documents, "Deployment")["spec"]["template"]["spec"].clone();
    let sidecar = pod["initContainers"]
        .as_sequence()
        .expect("the sidecar is a native sidecar (an init container)")
        .iter()
        .find(|container| container["name"] == "kafka-sidecar")
        .expect("a kafka-sidecar container")
        .clone();
    assert_eq!(sidecar["restartPolicy"], "Always", "an init container without restartPolicy Always blocks the app");
    let args: Vec<&str> = sidecar["args"].as_sequence().expect("args").iter().filter_map(Yaml::as_str).collect();
    let path = Path::new(args.iter().skip_while(|arg| **arg != "--config").nth(1).expect("--config FILE"));
    let mount = sidecar["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|mount| mount["mountPath"].as_str().map(Path::new) == path.parent())
        .expect("the config file's folder is mounted");
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    let config_map = of_kind(&documents, "ConfigMap");
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"], "the mount is the ConfigMap");
    let file_name = path.file_name().and_then(|name| name.to_str()).expect("file name");
    let yaml = config_map["data"][file_name].as_str().expect("the ConfigMap holds the config file");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), yaml).expect("write config");
    let env: Vec<(String, String)> = sidecar["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?.to_string(), v["value"].as_str()?.to_string())))
        .collect();
    let sources = ConfigSources { file: Some(file.path().to_path_buf()), env, overrides: Vec::new() };
    let config = Config::load(&sources).unwrap_or_else(|error| panic!("the ConfigMap's configuration: {error}"));
    (sidecar, config, pod)
}

/// The port a probe names (by name or number), resolved against the container's ports.
fn probe_port(container: &Yaml, probe: &Yaml) -> u64 {
    let port = &probe["httpGet"]["port"];
    port.as_u64().unwrap_or_else(|| {
        let ports = container["ports"].as_sequence().expect("ports");
        let named = ports.iter().find(|p| &p["name"] == port).expect("the probe's named port");
        named["containerPort"].as_u64().expect("containerPort")
    })
}

/// (probe, path) of the sidecar's probes, checked to target the admin listener.
fn sidecar_probes() -> Vec<(&'static str, String)> {
    let (sidecar, config, _) = kubernetes_sidecar();
    let mut probes = Vec::new();
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let probe = &sidecar[kind];
        assert_eq!(probe_port(&sidecar, probe), u64::from(config.admin.listen.port()), "{kind} is not on admin");
        probes.push((kind, probe["httpGet"]["path"].as_str().expect("path").to_string()));
    }
    probes
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
