//! A PromQL scanner just good enough to list what an expression names (metrics, labels, label
//! values, Grafana variables), and the check of one expression against the exported series.

use std::collections::{BTreeMap, BTreeSet};

/// Labels Prometheus' Kubernetes discovery adds to every series: the artefacts may use them.
pub const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod", "container"];
/// PromQL functions, aggregations and keywords the artefacts may use; anything else must be ours.
pub const PROMQL_WORDS: &str =
    "sum avg max min count rate increase delta deriv histogram_quantile vector clamp_min or and unless bool offset";
/// Aggregations whose `by (...)` list names the labels their result keeps.
pub const AGGREGATIONS: &[&str] = &["sum", "avg", "max", "min", "count"];
/// PromQL keywords followed by a list of label names.
pub const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
/// Grafana's own variables.
pub const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

/// What a PromQL expression names.
#[derive(Debug, Default)]
pub struct References {
    pub metrics: BTreeSet<String>,
    /// In matchers and in by/without/on/ignoring lists.
    pub labels: BTreeSet<String>,
    /// `label="value"` and `label!="value"` matchers.
    pub values: BTreeSet<(String, String)>,
    /// Grafana variables (`$name`).
    pub variables: BTreeSet<String>,
    /// Other identifiers: functions, aggregations, keywords.
    pub words: BTreeSet<String>,
    /// The labels a result keeps, when the expression opens with `sum by (...)` or the like.
    pub output: Option<BTreeSet<String>>,
}

pub fn identifier(chars: &[char], mut index: usize) -> (String, usize) {
    let start = index;
    while index < chars.len() && (chars[index].is_ascii_alphanumeric() || chars[index] == '_' || chars[index] == ':') {
        index += 1;
    }
    (chars[start..index].iter().collect(), index)
}

/// A quoted string starting at `index`: its text and the index after it.
pub fn string(chars: &[char], index: usize) -> (String, usize) {
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

pub fn skip_spaces(chars: &[char], mut index: usize) -> usize {
    while index < chars.len() && chars[index].is_whitespace() {
        index += 1;
    }
    index
}

pub fn note_variables(text: &str, references: &mut References) {
    let chars: Vec<char> = text.chars().collect();
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == '$') {
        references.variables.insert(identifier(&chars, at + 1).0);
    }
}

/// `{label op "value", ...}` from just after the `{`; returns the index after the `}`.
pub fn matchers(chars: &[char], mut index: usize, references: &mut References) -> usize {
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
pub fn scan(expression: &str) -> References {
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
pub fn check_expression(
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
pub fn template_labels(template: &str) -> Vec<String> {
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
