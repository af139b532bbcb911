//! librdkafka callbacks: delivery reports (routed to a waiter or a session ring), statistics
//! (broker metrics) and errors. They run on the producer's polling thread, never on the runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rdkafka::ClientContext;
use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use tokio::sync::oneshot;

use super::admission::Permit;
use crate::delivery::ReportSlot;
use crate::error::{ErrorCode, SidecarError};
use crate::metrics::{Metrics, RecordCounters};
use crate::record::{Delivered, DeliveryOutcome};

/// Where a record's outcome goes.
pub enum ReportRoute {
    /// Into the slot reserved in the session's ring, for its `DeliveryStream`.
    Session {
        /// The reserved slot.
        slot: ReportSlot,
        /// The caller's record id.
        record_id: u64,
    },
    /// To a request waiting for it (HTTP).
    Waiter(oneshot::Sender<DeliveryOutcome>),
    /// Nowhere but metrics: the caller asked for no report.
    MetricsOnly,
}

/// Travels with each record through librdkafka and comes back in its delivery callback.
pub struct DeliveryTicket {
    /// Where the outcome goes.
    pub route: ReportRoute,
    /// Counters of the record's (topic, client).
    pub counters: Arc<RecordCounters>,
    /// When the record was accepted.
    pub accepted_at: Instant,
    /// The record's admitted bytes, released when the ticket drops.
    pub permit: Permit,
}

/// The producer's librdkafka context.
pub struct SidecarContext {
    metrics: Arc<Metrics>,
    shutting_down: Arc<AtomicBool>,
    broker_status: Arc<super::BrokerStatus>,
    oauth: Option<super::oauth::OAuthTokenSource>,
}

impl SidecarContext {
    /// A context reporting into `metrics`; `shutting_down` reclassifies failures during drain.
    pub fn new(metrics: Arc<Metrics>, shutting_down: Arc<AtomicBool>) -> Self {
        Self { metrics, shutting_down, broker_status: Arc::default(), oauth: None }
    }

    /// OAUTHBEARER tokens come from `oauth` (`kafka.security.sasl.oauthbearer`).
    pub fn with_oauth(mut self, oauth: Option<super::oauth::OAuthTokenSource>) -> Self {
        self.oauth = oauth;
        self
    }

    /// Authentication and TLS failures seen by the producer, for readiness.
    pub fn broker_status(&self) -> &Arc<super::BrokerStatus> {
        &self.broker_status
    }

    fn failure(&self, error: &KafkaError) -> SidecarError {
        let purged =
            matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight));
        if purged || self.shutting_down.load(Ordering::Acquire) {
            SidecarError::new(ErrorCode::NotDeliveredAtShutdown, format!("not delivered before shutdown: {error}"))
        } else {
            SidecarError::new(ErrorCode::DeliveryFailed, error.to_string())
        }
    }
}

impl ClientContext for SidecarContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        super::oauth::generate(self.oauth.as_ref())
    }

    fn stats(&self, statistics: Statistics) {
        let brokers = statistics.brokers.values().filter(|broker| broker.nodeid >= 0);
        let (mut up, mut errors) = (0i64, 0u64);
        for broker in brokers {
            if broker.state == "UP" {
                up += 1;
            }
            errors += broker.txerrs + broker.rxerrs + broker.req_timeouts;
        }
        self.metrics.broker_connections.set(up);
        self.metrics.broker_errors.set(i64::try_from(errors).unwrap_or(i64::MAX));
        let batches = statistics.topics.values().map(|topic| (topic.batchsize.avg, topic.batchcnt.cnt));
        let (weighted, count) = batches.fold((0i64, 0i64), |(sum, n), (avg, cnt)| (sum + avg * cnt, n + cnt));
        if count > 0 {
            self.metrics.broker_batch_bytes.set(weighted / count);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().map_or_else(|| "unknown".to_string(), |code| format!("{code:?}"));
        self.metrics.librdkafka_errors.get_or_create(&crate::metrics::CodeLabels { code }).inc();
        if !self.broker_status.note(&error, reason) {
            tracing::warn!(error = %error, reason, "librdkafka error");
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        use RDKafkaLogLevel::{Alert, Critical, Debug, Emerg, Error, Info, Notice, Warning};
        // Authentication and TLS failures are reported once by the error callback (BrokerStatus).
        if super::BrokerStatus::is_security_failure_log(log_message) {
            tracing::debug!(target: "librdkafka", facility = fac, "librdkafka: {log_message}");
            return;
        }
        match level {
            Emerg | Alert | Critical | Error => {
                tracing::error!(target: "librdkafka", facility = fac, "librdkafka: {log_message}")
            }
            Warning => tracing::warn!(target: "librdkafka", facility = fac, "librdkafka: {log_message}"),
            Notice | Info => tracing::info!(target: "librdkafka", facility = fac, "librdkafka: {log_message}"),
            Debug => tracing::debug!(target: "librdkafka", facility = fac, "librdkafka: {log_message}"),
        }
    }
}

impl ProducerContext for SidecarContext {
    type DeliveryOpaque = Box<DeliveryTicket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Self::DeliveryOpaque) {
        let latency = ticket.accepted_at.elapsed();
        let (topic, outcome) = match result {
            Ok(message) => (
                message.topic(),
                Ok(Delivered {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms: message.timestamp().to_millis(),
                }),
            ),
            Err((error, message)) => (message.topic(), Err(self.failure(error))),
        };
        match &outcome {
            Ok(_) => {
                ticket.counters.delivered.inc();
                self.metrics.delivery_latency.observe(latency.as_secs_f64());
            }
            Err(error) => {
                self.metrics.record_failed(&ticket.counters, error.code.as_str());
                tracing::debug!(topic, error = %error, "record not delivered");
            }
        }
        let DeliveryTicket { route, permit, .. } = *ticket;
        drop(permit);
        match route {
            ReportRoute::Session { slot, record_id } => {
                let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                slot.fill(record_id, topic, outcome, latency_us);
            }
            // The waiter may have given up (client went away); the outcome is counted above.
            ReportRoute::Waiter(waiter) => drop(waiter.send(outcome)),
            ReportRoute::MetricsOnly => {}
        }
    }
}
