//! Why Kafka cannot be used, as librdkafka's error callback tells it: an authentication failure
//! (SASL: wrong password, unknown user, refused token) or a TLS failure (untrusted broker
//! certificate, refused client certificate). Readiness shows the reason (`/readyz`'s `reason`), and
//! the first failure after a good spell is logged once at ERROR: a human must fix the credentials.
//! librdkafka repeats the error at every reconnect; those repeats are logged at DEBUG.
//!
//! librdkafka's texts name the broker, the mechanism and OpenSSL's reason; they never hold the
//! password or the token.

use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The latest security failure, cleared once the producer has cluster metadata again.
#[derive(Debug, Default)]
pub struct BrokerStatus {
    problem: Mutex<Option<String>>,
}

impl BrokerStatus {
    /// Notes `error` when it is an authentication or TLS failure (then `true`); logs the first one
    /// at ERROR.
    pub fn note(&self, error: &KafkaError, reason: &str) -> bool {
        let Some(problem) = classify(error, reason) else { return false };
        let first = crate::sync::lock(&self.problem).replace(problem.clone()).is_none();
        if first {
            tracing::error!(reason = %problem, "cannot use Kafka: fix the credentials or certificates in kafka.security");
        } else {
            tracing::debug!(reason = %problem, "Kafka security failure again");
        }
        true
    }

    /// Whether a librdkafka log line is one of the failures [`note`](Self::note) reports, so the
    /// log callback keeps it at DEBUG instead of repeating it at ERROR at every reconnect.
    pub fn is_security_failure_log(message: &str) -> bool {
        message.contains("SASL authentication error") || is_tls_failure(message)
    }

    /// The reason Kafka is refused, when a security failure was seen since the last [`clear`](Self::clear).
    pub fn problem(&self) -> Option<String> {
        crate::sync::lock(&self.problem).clone()
    }

    /// Forgets the failure: the clients got through.
    pub fn clear(&self) {
        crate::sync::lock(&self.problem).take();
    }
}

/// `kafka authentication failed: ...` or `kafka TLS failed: ...`; `None` for other errors.
fn classify(error: &KafkaError, reason: &str) -> Option<String> {
    let code = error.rdkafka_error_code();
    let tls_text = is_tls_failure(reason);
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(format!("kafka authentication failed: {reason}"))
        }
        Some(RDKafkaErrorCode::SSL) => Some(format!("kafka TLS failed: {reason}")),
        _ if tls_text => Some(format!("kafka TLS failed: {reason}")),
        _ => None,
    }
}

/// OpenSSL's words for a refused handshake: an untrusted broker certificate, or the broker's alert
/// refusing ours (`tlsv13 alert certificate required`, reported as a transport failure).
fn is_tls_failure(text: &str) -> bool {
    ["SSL handshake failed", "certificate verify failed", "SSL routines::", "SSL alert number"]
        .iter()
        .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_failures_are_kept_and_others_ignored() {
        let status = BrokerStatus::default();
        status.note(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        assert_eq!(status.problem(), None);
        status.note(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9093/1: SASL authentication error: Authentication failed",
        );
        assert_eq!(
            status.problem().as_deref(),
            Some("kafka authentication failed: sasl_ssl://b:9093/1: SASL authentication error: Authentication failed")
        );
        status.note(&KafkaError::Global(RDKafkaErrorCode::SSL), "ssl://b:9093/bootstrap: SSL handshake failed");
        assert!(status.problem().is_some_and(|problem| problem.starts_with("kafka TLS failed: ")));
        let refused_certificate = "ssl://b:9093/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert \
                                   certificate required: SSL alert number 116";
        status.clear();
        assert!(status.note(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure), refused_certificate));
        assert!(BrokerStatus::is_security_failure_log(refused_certificate));
        assert!(!BrokerStatus::is_security_failure_log("Connect to ipv4#127.0.0.1:9093 failed: Connection refused"));
        status.clear();
        assert_eq!(status.problem(), None);
    }
}
