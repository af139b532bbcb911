//! The bounds of the backpressure retry hint as configured: `producer.retry_after_ms` (floor) and
//! `producer.max_retry_after_ms` (cap) load from flags and the environment, and a floor above the
//! cap, or a cap out of range, stops start-up naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kafka_sidecar::Config;
use kafka_sidecar::config::{ConfigError, ConfigSources};

fn load(env: &[(&str, &str)], overrides: &[&str]) -> Result<Config, ConfigError> {
    let sources = ConfigSources {
        file: None,
        env: env.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        overrides: overrides.iter().map(|o| o.to_string()).collect(),
    };
    Config::load(&sources)
}

#[test]
fn the_cap_defaults_to_one_second_and_loads_from_flags_and_environment() {
    let config = load(&[], &[]).unwrap();
    assert_eq!((config.producer.retry_after_ms, config.producer.max_retry_after_ms), (20, 1000));
    let config = load(&[("KAFKA_SIDECAR_PRODUCER__MAX_RETRY_AFTER_MS", "5000")], &["producer.retry_after_ms=50"]);
    let config = config.unwrap();
    assert_eq!((config.producer.retry_after_ms, config.producer.max_retry_after_ms), (50, 5000));
    let equal = load(&[], &["producer.retry_after_ms=300", "producer.max_retry_after_ms=300"]);
    assert!(equal.is_ok(), "a floor equal to the cap is a fixed hint");
}

#[test]
fn a_floor_above_the_cap_or_a_cap_out_of_range_names_the_key() {
    let cases: [(&[&str], &str); 3] = [
        (&["producer.retry_after_ms=2000"], "producer.retry_after_ms"),
        (&["producer.max_retry_after_ms=0"], "producer.max_retry_after_ms"),
        (&["producer.max_retry_after_ms=600000"], "producer.max_retry_after_ms"),
    ];
    for (overrides, key) in cases {
        let error = load(&[], overrides).expect_err(key).to_string();
        assert!(error.contains(key), "{overrides:?}: {error}");
    }
}
