//! Unit tests of `kafka.security`: mapping to librdkafka, secret files, validation naming the key,
//! redaction.

use super::*;

fn sasl_ssl(mechanism: SaslMechanism) -> KafkaSecurityConfig {
    let mut security = KafkaSecurityConfig { protocol: SecurityProtocol::SaslSsl, ..Default::default() };
    security.sasl.mechanism = Some(mechanism);
    security.sasl.username = Some("alice".into());
    security.sasl.password = Some("s3cret".into());
    security
}

fn key_of(error: ConfigError) -> String {
    match error {
        ConfigError::Invalid { key, .. } => key,
        other => panic!("{other}"),
    }
}

#[test]
fn plaintext_sets_nothing() {
    assert!(KafkaSecurityConfig::default().librdkafka_properties().unwrap().is_empty());
    KafkaSecurityConfig::default().validate(true, &[]).unwrap();
}

#[test]
fn sasl_ssl_scram_maps_to_librdkafka() {
    let security = sasl_ssl(SaslMechanism::ScramSha512);
    security.validate(false, &[]).unwrap();
    let properties: BTreeMap<_, _> = security.librdkafka_properties().unwrap().into_iter().collect();
    assert_eq!(properties["security.protocol"], "sasl_ssl");
    assert_eq!(properties["sasl.mechanism"], "SCRAM-SHA-512");
    assert_eq!(properties["sasl.username"], "alice");
    assert_eq!(properties["sasl.password"], "s3cret");
    assert_eq!(properties["ssl.ca.location"], "probe");
    assert_eq!(properties["ssl.endpoint.identification.algorithm"], "https");
}

#[test]
fn secrets_come_from_files_without_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "from-file\n").unwrap();
    let mut security = sasl_ssl(SaslMechanism::Plain);
    security.sasl.password = None;
    security.sasl.password_file = Some(file);
    security.validate(false, &[]).unwrap();
    let properties: BTreeMap<_, _> = security.librdkafka_properties().unwrap().into_iter().collect();
    assert_eq!(properties["sasl.password"], "from-file");
}

#[test]
fn mistakes_name_the_key() {
    let mut missing_password = sasl_ssl(SaslMechanism::ScramSha256);
    missing_password.sasl.password = None;
    assert_eq!(key_of(missing_password.validate(false, &[]).unwrap_err()), "kafka.security.sasl.password");

    let mut no_mechanism = sasl_ssl(SaslMechanism::Plain);
    no_mechanism.sasl.mechanism = None;
    assert_eq!(key_of(no_mechanism.validate(false, &[]).unwrap_err()), "kafka.security.sasl.mechanism");

    let mut missing_ca = KafkaSecurityConfig { protocol: SecurityProtocol::Ssl, ..Default::default() };
    missing_ca.tls.ca_file = Some("/nonexistent/ca.pem".into());
    assert_eq!(key_of(missing_ca.validate(false, &[]).unwrap_err()), "kafka.security.tls.ca_file");

    let mut tls_on_plaintext = sasl_ssl(SaslMechanism::Plain);
    tls_on_plaintext.protocol = SecurityProtocol::SaslPlaintext;
    tls_on_plaintext.tls.verify_hostname = false;
    assert_eq!(key_of(tls_on_plaintext.validate(false, &[]).unwrap_err()), "kafka.security.tls");

    let mut oauth_without_source = sasl_ssl(SaslMechanism::OAuthBearer);
    oauth_without_source.sasl.password = None;
    assert_eq!(key_of(oauth_without_source.validate(false, &[]).unwrap_err()), "kafka.security.sasl.oauthbearer");

    assert_eq!(key_of(sasl_ssl(SaslMechanism::Plain).validate(true, &[]).unwrap_err()), "kafka.security.protocol");

    let raw = BTreeMap::from([("sasl.password".to_string(), "x".to_string())]);
    let error = sasl_ssl(SaslMechanism::Plain).validate(false, &[("kafka.properties", &raw)]).unwrap_err();
    assert_eq!(key_of(error), "kafka.properties.sasl.password");
}

#[test]
fn config_views_redact_the_typed_secrets() {
    let mut config = crate::config::Config::default();
    config.kafka.security = sasl_ssl(SaslMechanism::ScramSha256);
    config.kafka.security.tls.key_password = Some("key-pass-0451".into());
    config.kafka.security.sasl.oauthbearer.client_secret = Some("client-0451".into());
    let text = serde_norway::to_string(&crate::config::redacted(&config).unwrap()).unwrap();
    for secret in ["s3cret", "key-pass-0451", "client-0451"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("username: alice"), "{text}");
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn numeric_secrets_from_the_environment_layer_are_strings() {
    let security: KafkaSecurityConfig =
        serde_norway::from_str("protocol: sasl_plaintext\nsasl: {mechanism: PLAIN, username: u, password: 12345}")
            .unwrap();
    assert_eq!(security.sasl.password.as_ref().map(Secret::expose), Some("12345"));
    assert!(!format!("{security:?}").contains("12345"));
}
