//! The metric families the sidecar exports: parsed from a text exposition, or taken from the
//! sidecar's own `Metrics` with one sample in every family.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_sidecar::metrics::{CodeLabels, ConsumerCounters, GroupTopicLabels, LagLabels, Metrics, RequestLabels};

use super::promql::scan;
use super::repo;

#[derive(Debug, PartialEq)]
pub struct Family {
    pub kind: String,
    pub labels: BTreeSet<String>,
}

/// Families of a Prometheus text exposition: names and types from `# TYPE`, label names from samples.
pub fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
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
pub fn every_family() -> BTreeMap<String, Family> {
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
    metrics.audit.dropped("queue_full").inc();
    parse_exposition(&metrics.encode())
}

/// Every series name the families print, with its label names.
pub fn series(families: &BTreeMap<String, Family>) -> BTreeMap<String, BTreeSet<String>> {
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

pub fn source_files(folder: &Path, files: &mut Vec<PathBuf>) {
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
pub fn sidecar_source() -> String {
    let mut files = Vec::new();
    source_files(&repo("crates/kafka-sidecar/src"), &mut files);
    files.iter().map(|file| std::fs::read_to_string(file).expect("source")).collect()
}
