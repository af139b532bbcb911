//! The HTTP face of [`crate::audit`]: one middleware on the API and admin routers writes one audit
//! record per request whose route is in the action table ([`action`]).
//!
//! Everything comes from the request and the response, so handlers stay as they are:
//! * the action from the matched route and method; group, instance and topic from the path;
//! * who from the [`Identity`] the auth middleware (which runs inside this one) copies into the
//!   response's extensions, plus `X-Client-Id` and the peer address;
//! * the trace id from `traceparent` / `X-Traceability-Id` / `X-Correlation-Id` (the trace
//!   middleware, outside this one, has already filled them in);
//! * the outcome from the status and the [`ErrorCode`] that `ApiError` leaves in the response;
//! * counts and partitions from the [`AuditDetails`] a handler may add to its response.
//!
//! Reads are audited only with `audit.include_reads`; refused requests (401, 403) always.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::audit::{AuditEvent, AuditIdentity, AuditLog, AuditPartition, Transport, trace_id};
use crate::auth::Identity;
use crate::consumer::{CommittedOffset, SeekPosition, Subscription, TopicPartition};
use crate::error::ErrorCode;
use crate::record::DeliveryOutcome;

/// What a route does, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// The record's `action`.
    pub name: &'static str,
    /// A read: audited only with `audit.include_reads`.
    pub read: bool,
}

const fn change(name: &'static str) -> Option<Action> {
    Some(Action { name, read: false })
}

const fn read(name: &'static str) -> Option<Action> {
    Some(Action { name, read: true })
}

/// The action table: a matched route (as registered, e.g. `/producers/{topic}`) and method to
/// the action. Probes and `/metrics` are never audited.
pub fn action(method: &Method, route: &str) -> Option<Action> {
    const INSTANCE: &str = "/consumers/{group}/instances/{instance}";
    let is = |wanted: Method| *method == wanted;
    if let Some(rest) = route.strip_prefix(INSTANCE) {
        return match (rest, method.as_str()) {
            ("", "DELETE") => change("consumer.delete"),
            ("/subscription" | "/subscriptions", "POST") => change("consumer.subscribe"),
            ("/subscription" | "/subscriptions", "DELETE") => change("consumer.unsubscribe"),
            ("/subscription" | "/subscriptions", _) => read("consumer.subscription"),
            ("/assignments", "POST") => change("consumer.assign"),
            ("/assignments", _) => read("consumer.assignments"),
            ("/records", _) => read("consumer.fetch"),
            ("/offsets", "POST") => change("consumer.commit"),
            ("/offsets", _) => read("consumer.committed"),
            ("/positions" | "/positions/beginning" | "/positions/first", "POST") => change("consumer.seek"),
            ("/positions/end" | "/positions/last", "POST") => change("consumer.seek"),
            _ => None,
        };
    }
    match route {
        "/producers/{topic}" | "/topics/{topic}/partitions/{partition}" if is(Method::POST) => change("produce"),
        "/topics/{topic}" if is(Method::POST) => change("produce"),
        "/topics" | "/topics/{topic}" | "/topics/{topic}/partitions" => read("topic.describe"),
        "/consumers/{group}" if is(Method::POST) => change("consumer.create"),
        "/consumers/{group}/lag" => read("consumer.lag"),
        "/admin/logging" if is(Method::PUT) => change("admin.logging"),
        "/admin/logging" => read("admin.logging.read"),
        "/admin/info" => read("admin.info"),
        "/admin/config" => read("admin.config"),
        "/admin/reactive" => read("reactive.state"),
        "/admin/reactive/pause" => change("reactive.pause"),
        "/admin/reactive/resume" => change("reactive.resume"),
        "/admin/reactive/seek" => change("reactive.seek"),
        "/admin/dlq/redrive" => change("reactive.redrive"),
        _ => None,
    }
}

/// Audit details as a response part: present only while auditing.
pub type Audited = Option<axum::Extension<AuditDetails>>;

/// What a handler knows about its action beyond the path: put into the response's extensions
/// (see [`AuditDetails::attach`]), read by the audit middleware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditDetails {
    /// The one topic, when the path does not name it.
    pub topic: Option<String>,
    /// Several topics (a subscription).
    pub topics: Vec<String>,
    /// Partitions written, committed, sought or paused.
    pub partitions: Vec<AuditPartition>,
    /// Records produced or redriven.
    pub records: Option<u64>,
    /// Records that failed.
    pub failed: Option<u64>,
    /// The instance created.
    pub instance: Option<String>,
    /// What was set, or where a seek went.
    pub detail: Option<String>,
}

impl AuditDetails {
    /// Details naming `partitions`.
    pub fn partitions(partitions: impl IntoIterator<Item = TopicPartition>) -> Self {
        Self { partitions: partitions.into_iter().map(AuditPartition::from).collect(), ..Self::default() }
    }

    /// Details of a subscription: its topics, or its pattern.
    pub fn subscription(subscription: &Subscription) -> Self {
        match subscription {
            Subscription::Topics(topics) => Self { topics: topics.clone(), ..Self::default() },
            Subscription::Pattern(pattern) => Self { detail: Some(format!("pattern {pattern}")), ..Self::default() },
        }
    }

    /// Details of a commit: the offsets Kafka now holds for the group.
    pub fn committed(offsets: &[CommittedOffset]) -> Self {
        let partitions = offsets
            .iter()
            .map(|committed| AuditPartition {
                topic: committed.topic.clone(),
                partition: committed.partition,
                offset: Some(committed.offset),
            })
            .collect();
        Self { partitions, ..Self::default() }
    }

    /// Details of a seek: where each partition landed (when known), and to which end it was sent.
    pub fn sought(landed: &[(TopicPartition, Option<i64>)], position: Option<SeekPosition>) -> Self {
        let partitions = landed
            .iter()
            .map(|(target, offset)| AuditPartition {
                topic: target.topic.clone(),
                partition: target.partition,
                offset: *offset,
            })
            .collect();
        let detail = match position {
            Some(SeekPosition::Beginning) => Some("beginning".to_string()),
            Some(SeekPosition::End) => Some("end".to_string()),
            _ => None,
        };
        Self { partitions, detail, ..Self::default() }
    }

    /// Details of a produce request: records delivered and failed, and the partitions written.
    pub fn produced(topic: &str, outcomes: &[DeliveryOutcome]) -> Self {
        let mut partitions: Vec<i32> =
            outcomes.iter().filter_map(|outcome| Some(outcome.as_ref().ok()?.partition)).collect();
        let delivered = partitions.len() as u64;
        partitions.sort_unstable();
        partitions.dedup();
        Self {
            partitions: partitions
                .into_iter()
                .map(|partition| AuditPartition { topic: topic.to_string(), partition, offset: None })
                .collect(),
            records: Some(delivered),
            failed: Some(outcomes.len() as u64 - delivered),
            ..Self::default()
        }
    }

    /// `response` carrying these details.
    pub fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }

    /// The details `make` builds, as a response part, only when `auditing` (no work otherwise).
    pub fn when(auditing: bool, make: impl FnOnce() -> Self) -> Audited {
        auditing.then(|| axum::Extension(make()))
    }
}

/// The middleware. With no audit log (`audit.enabled` off) it only passes the request on.
pub async fn audit_requests(State(audit): State<Option<AuditLog>>, request: Request, next: Next) -> Response {
    let Some(audit) = audit else { return next.run(request).await };
    let route = request.extensions().get::<MatchedPath>().map(|matched| matched.as_str());
    let Some(action) = route.and_then(|route| action(request.method(), route)) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await.ok();
    let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
    let mut event = AuditEvent::new(action.name, Transport::Http);
    event.trace_id =
        trace_id(header("traceparent"), header(super::TRACEABILITY_HEADER), header(super::CORRELATION_HEADER));
    let client_id = header(super::CLIENT_ID_HEADER).map(str::to_string);
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(address)| address.to_string());
    for (name, value) in params.iter().flat_map(|params| params.iter()) {
        match name {
            "topic" => event.topic = Some(value.to_string()),
            "group" => event.group = Some(value.to_string()),
            "instance" => event.instance = Some(value.to_string()),
            _ => {}
        }
    }
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    if action.read && !refused && !audit.include_reads() {
        return response;
    }
    let extensions = response.extensions();
    event.identity = AuditIdentity::of(extensions.get::<Identity>(), client_id.as_deref(), peer);
    event.status = Some(status.as_u16());
    event.outcome = Cow::Borrowed(match extensions.get::<ErrorCode>() {
        Some(code) => code.as_str(),
        None if status.is_client_error() || status.is_server_error() => "error",
        None => "ok",
    });
    if let Some(details) = extensions.get::<AuditDetails>() {
        let details = details.clone();
        event.topic = details.topic.or(event.topic);
        event.instance = details.instance.or(event.instance);
        event.topics = details.topics;
        event.partitions = details.partitions;
        event.records = details.records;
        event.failed = details.failed;
        event.detail = details.detail;
    }
    audit.record(event.took(started));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: Method, route: &str) -> Option<(&'static str, bool)> {
        action(&method, route).map(|action| (action.name, action.read))
    }

    #[test]
    fn every_change_has_an_action_and_reads_are_marked() {
        let instance = "/consumers/{group}/instances/{instance}";
        for (method, route, expected) in [
            (Method::POST, "/producers/{topic}".to_string(), "produce"),
            (Method::POST, "/topics/{topic}".to_string(), "produce"),
            (Method::POST, "/topics/{topic}/partitions/{partition}".to_string(), "produce"),
            (Method::POST, "/consumers/{group}".to_string(), "consumer.create"),
            (Method::DELETE, instance.to_string(), "consumer.delete"),
            (Method::POST, format!("{instance}/subscription"), "consumer.subscribe"),
            (Method::POST, format!("{instance}/subscriptions"), "consumer.subscribe"),
            (Method::DELETE, format!("{instance}/subscription"), "consumer.unsubscribe"),
            (Method::POST, format!("{instance}/assignments"), "consumer.assign"),
            (Method::POST, format!("{instance}/offsets"), "consumer.commit"),
            (Method::POST, format!("{instance}/positions"), "consumer.seek"),
            (Method::POST, format!("{instance}/positions/beginning"), "consumer.seek"),
            (Method::POST, format!("{instance}/positions/last"), "consumer.seek"),
            (Method::PUT, "/admin/logging".to_string(), "admin.logging"),
            (Method::POST, "/admin/reactive/pause".to_string(), "reactive.pause"),
            (Method::POST, "/admin/reactive/resume".to_string(), "reactive.resume"),
            (Method::POST, "/admin/reactive/seek".to_string(), "reactive.seek"),
            (Method::POST, "/admin/dlq/redrive".to_string(), "reactive.redrive"),
        ] {
            assert_eq!(name(method.clone(), &route), Some((expected, false)), "{method} {route}");
        }
        for (method, route) in [
            (Method::GET, format!("{instance}/records")),
            (Method::GET, format!("{instance}/offsets")),
            (Method::PUT, format!("{instance}/offsets")),
            (Method::GET, format!("{instance}/subscription")),
            (Method::GET, format!("{instance}/assignments")),
            (Method::GET, "/topics/{topic}".to_string()),
            (Method::GET, "/topics".to_string()),
            (Method::GET, "/consumers/{group}/lag".to_string()),
            (Method::GET, "/admin/logging".to_string()),
            (Method::GET, "/admin/config".to_string()),
            (Method::GET, "/admin/reactive".to_string()),
        ] {
            assert!(name(method.clone(), &route).is_some_and(|(_, read)| read), "{method} {route} is a read");
        }
        for route in ["/metrics", "/healthz", "/readyz", "/nowhere"] {
            assert_eq!(name(Method::GET, route), None, "{route}");
        }
    }

    #[test]
    fn produce_details_count_delivered_and_failed_records_and_distinct_partitions() {
        use crate::error::SidecarError;
        use crate::record::Delivered;
        let delivered = |partition| Ok(Delivered { partition, offset: 1, timestamp_ms: None });
        let outcomes =
            vec![delivered(1), delivered(0), delivered(1), Err(SidecarError::new(ErrorCode::DeliveryFailed, "x"))];
        let details = AuditDetails::produced("orders", &outcomes);
        assert_eq!((details.records, details.failed), (Some(3), Some(1)));
        let partitions: Vec<i32> = details.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(partitions, [0, 1]);
    }
}
