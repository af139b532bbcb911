//! The OpenAPI 3.1 contract of both HTTP listeners, generated from the code so it cannot drift:
//! each handler carries its `#[utoipa::path]` and each body type its `ToSchema` derive; this module
//! assembles them. The API listener serves [`api_document`] and the admin listener
//! [`admin_document`], each at its own `GET /openapi.json`, open like the probes (no token: the
//! contract is no secret). Two documents rather than one, so a client's base URL is simply the
//! listener it talks to.
//!
//! What the attributes cannot say is added here: the error responses (one per status, its body the
//! seed 002 `Status` narrowed to the codes that status carries), the bearer security scheme, and
//! the alias paths that the routers serve with the same handlers (seed 002 and Confluent v2 spell
//! some consumer paths differently).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, PathItem, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use super::formats::EmbeddedFormat;
use super::{admin, consumers, produce, produce_v2, reactive_admin, topics};
use crate::error::ErrorCode;

/// The bearer scheme's name in the documents.
pub const BEARER: &str = "bearer";

/// Every error code, in `ErrorCode`'s declaration order; a unit test holds it to the derived
/// schema, so a new code fails the tests until it is listed here (meanwhile error responses only
/// narrow `statusCode`, not `code`, so the document stays true).
const EVERY_CODE: &[ErrorCode] = &[
    ErrorCode::QueueFull,
    ErrorCode::UnknownTopic,
    ErrorCode::InvalidTopic,
    ErrorCode::InvalidPartition,
    ErrorCode::RecordTooLarge,
    ErrorCode::BodyTooLarge,
    ErrorCode::InvalidBase64,
    ErrorCode::InvalidJson,
    ErrorCode::InvalidRequest,
    ErrorCode::UnsupportedFormat,
    ErrorCode::DeliveryFailed,
    ErrorCode::NotDeliveredAtShutdown,
    ErrorCode::ShuttingDown,
    ErrorCode::UnknownSession,
    ErrorCode::KafkaUnavailable,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::LoggingNotReloadable,
    ErrorCode::ConsumerNotFound,
    ErrorCode::ConsumerExists,
    ErrorCode::ConsumerState,
    ErrorCode::FormatMismatch,
    ErrorCode::TooManyConsumers,
    ErrorCode::InvalidConsumerConfig,
    ErrorCode::KafkaError,
    ErrorCode::SchemaNotFound,
    ErrorCode::SchemaIncompatible,
    ErrorCode::SchemaInvalid,
    ErrorCode::RecordInvalid,
    ErrorCode::KeySchemaMissing,
    ErrorCode::ValueSchemaMissing,
    ErrorCode::SchemaRegistryUnavailable,
    ErrorCode::SchemaRegistryRefused,
    ErrorCode::Unauthenticated,
    ErrorCode::Forbidden,
    ErrorCode::Internal,
];

/// The error response for `status`: a `Status` body whose `code` is one this status carries.
fn error_response(status: u16) -> RefOr<utoipa::openapi::Response> {
    let codes: Vec<&str> =
        EVERY_CODE.iter().filter(|code| code.http_status() == status).map(|code| code.as_str()).collect();
    let reason = StatusCode::from_u16(status).ok().and_then(|status| status.canonical_reason()).unwrap_or("Error");
    let mut narrowed = ObjectBuilder::new()
        .property("statusCode", ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some([status])));
    if every_code_listed() {
        narrowed =
            narrowed.property("code", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.clone())));
    }
    let schema = AllOfBuilder::new().item(Ref::from_schema_name("Status")).item(narrowed);
    let mut response = ResponseBuilder::new()
        .description(format!("{reason}: {}", codes.join(", ")))
        .content("application/json", Content::new(Some(schema)));
    if status == 429 {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let millis = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        response = response
            .header("Retry-After", header_of(seconds, "Whole seconds to wait before retrying"))
            .header("X-Retry-After-Ms", header_of(millis, "The same hint in milliseconds"));
    }
    if status == 401 {
        let challenge = ObjectBuilder::new().schema_type(Type::String);
        response = response.header("WWW-Authenticate", header_of(challenge, "The bearer challenge"));
    }
    RefOr::T(response.build())
}

/// Whether [`EVERY_CODE`] has as many codes as the derived `ErrorCode` schema.
fn every_code_listed() -> bool {
    match ErrorCode::schema() {
        RefOr::T(Schema::Object(object)) => object.enum_values.is_some_and(|codes| codes.len() == EVERY_CODE.len()),
        _ => false,
    }
}

fn header_of(schema: ObjectBuilder, description: &str) -> Header {
    let mut header = Header::new(schema);
    header.description = Some(description.to_string());
    header
}

/// Sets of error responses by route family; a handler lists its set in `responses(...)`.
macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident: $($status:literal),+) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                [$($status),+].into_iter().map(|status: u16| (status.to_string(), error_response(status))).collect()
            }
        }
    };
}

error_set!(
    /// Produce routes: bad requests, unknown topics, limits, schemas, backpressure, Kafka.
    ProduceErrors: 400, 401, 403, 404, 413, 422, 429, 500, 502, 503
);
error_set!(
    /// Topic metadata routes.
    TopicErrors: 400, 401, 403, 404, 500, 503
);
error_set!(
    /// Consumer routes: instances, their state, formats, schemas, Kafka.
    ConsumerErrors: 400, 401, 403, 404, 406, 409, 413, 422, 429, 500, 502, 503
);
error_set!(
    /// Operator routes on the admin listener.
    AdminErrors: 400, 401, 403, 404, 409, 413, 500, 502, 503
);

/// `{group}` in a consumer path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The consumer group.
    pub group: String,
}

/// `{group}` and `{instance}` in a consumer instance's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    /// The consumer group.
    pub group: String,
    /// The consumer instance's name (from its create answer).
    pub instance: String,
}

/// `{topic}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPath {
    /// The Kafka topic name.
    #[param(pattern = "^[A-Za-z0-9._-]{1,249}$")]
    pub topic: String,
}

/// `{topic}` and `{partition}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TopicPartitionPath {
    /// The Kafka topic name.
    #[param(pattern = "^[A-Za-z0-9._-]{1,249}$")]
    pub topic: String,
    /// The partition every record of the request goes to.
    #[param(minimum = 0)]
    pub partition: i32,
}

/// The query of a fetch (`GET .../records`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Longest wait for records, in milliseconds (capped by `consumer.max_request_timeout_ms`).
    #[param(minimum = 0)]
    pub timeout: Option<u64>,
    /// Most bytes of keys and values in the answer (capped by `consumer.request_max_bytes`).
    #[param(minimum = 0)]
    pub max_bytes: Option<u64>,
    /// The format to render records in (seed 002); the instance's format when absent.
    #[param(value_type = Option<String>, pattern = "^(binary|avro|json|jsonschema|protobuf|string)$")]
    pub format: Option<String>,
}

/// The query of `GET /consumers/{group}/lag`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LagQuery {
    /// More topics to report, comma-separated, besides those the group's instances here consume.
    pub topics: Option<String>,
}

/// The `/readyz` answer (built with `json!` in `admin::readyz`; the test suite checks the two agree).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    /// `ready` or `not ready`.
    status: String,
    /// The same as a boolean.
    ready: bool,
    /// Why not, when not ready.
    reason: Option<String>,
}

/// Seed 002's `EmbeddedFormat`: a name, or its number (binary 0, avro 1, json 2, jsonschema 3,
/// protobuf 4, string 5).
impl PartialSchema for EmbeddedFormat {
    fn schema() -> RefOr<Schema> {
        let names = ObjectBuilder::new().schema_type(Type::String).enum_values(Some([
            "binary",
            "avro",
            "json",
            "jsonschema",
            "protobuf",
            "string",
        ]));
        let numbers = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(5));
        OneOfBuilder::new()
            .item(names)
            .item(numbers)
            .description(Some("binary, avro, json, jsonschema, protobuf or string; or 0-5 in that order"))
            .into()
    }
}

impl ToSchema for EmbeddedFormat {}

/// Adds the bearer scheme (used when `auth.enabled`).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A JWT, checked only when `auth.enabled`. Scopes (configurable): `kafka:w` to produce, \
                 `kafka:r` to consume and read metadata, `kafka:admin` for the operator routes.",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The API listener's document (produce, both consumer dialects, topic metadata).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kafka-sidecar HTTP API",
        description = "Produce to and consume from Kafka through the pod's sidecar. Seed 002's paths and \
                       Confluent REST Proxy v2's side by side. Errors are seed 002's `Status` body with \
                       Confluent's `error_code`. The operator routes are in the admin listener's own \
                       `/openapi.json`."
    ),
    paths(
        produce::produce,
        produce_v2::produce_to_topic,
        produce_v2::produce_to_partition,
        topics::list,
        topics::describe,
        topics::partitions,
        serve_api_document,
    ),
    components(schemas(crate::http::StatusBody, ErrorCode)),
    modifiers(&Security),
    tags(
        (name = "produce", description = "Records to Kafka, answered once Kafka acknowledged them"),
        (name = "consume", description = "The active consumer: instances that fetch on request"),
        (name = "topics", description = "Topic metadata"),
        (name = "contract", description = "This document"),
    )
)]
struct ApiDoc;

/// The admin listener's document (probes, metrics, operator routes).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kafka-sidecar admin API",
        description = "The admin listener: probes and metrics (always open) and the operator routes \
                       (the admin scope when `auth.enabled`)."
    ),
    paths(serve_admin_document),
    components(schemas(crate::http::StatusBody, ErrorCode)),
    modifiers(&Security),
    tags(
        (name = "probes", description = "Liveness, readiness and metrics"),
        (name = "admin", description = "Operator routes"),
        (name = "contract", description = "This document"),
    )
)]
struct AdminDoc;

/// Paths the routers serve with the handler of another path: (alias, documented path). Seed 002
/// says `subscriptions` and `positions/first|last` where Confluent v2 says `subscription` and
/// `positions/beginning|end`.
const ALIASES: [(&str, &str); 3] = [
    ("/consumers/{group}/instances/{instance}/subscriptions", "/consumers/{group}/instances/{instance}/subscription"),
    (
        "/consumers/{group}/instances/{instance}/positions/first",
        "/consumers/{group}/instances/{instance}/positions/beginning",
    ),
    ("/consumers/{group}/instances/{instance}/positions/last", "/consumers/{group}/instances/{instance}/positions/end"),
];

/// The API listener's document.
pub fn api_document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.merge(consumers::ApiDoc::openapi());
    for (alias, documented) in ALIASES {
        if let Some(item) = document.paths.paths.get(documented).cloned() {
            document.paths.paths.insert(alias.to_string(), renamed(item, alias));
        }
    }
    unique_operation_ids(&mut document);
    document
}

/// The admin listener's document.
pub fn admin_document() -> utoipa::openapi::OpenApi {
    let mut document = AdminDoc::openapi();
    document.merge(admin::ApiDoc::openapi());
    document.merge(reactive_admin::ApiDoc::openapi());
    unique_operation_ids(&mut document);
    document
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
}

/// An alias's operations get ids of their own (`<id>_<last path segment>`).
fn renamed(mut item: PathItem, alias: &str) -> PathItem {
    let suffix = alias.rsplit('/').next().unwrap_or("alias").to_string();
    for (_, operation) in operations(&mut item) {
        operation.operation_id = operation.operation_id.take().map(|id| format!("{id}_{suffix}"));
    }
    item
}

/// One handler serving two methods gives two operations one id: the later ones get `_<method>`.
fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::HashSet::new();
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            if let Some(id) = operation.operation_id.as_mut()
                && !seen.insert(id.clone())
            {
                id.push('_');
                id.push_str(method);
                seen.insert(id.clone());
            }
        }
    }
}

fn json_response(document: &Result<String, String>) -> Response {
    match document {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot render the OpenAPI document");
            super::ApiError(crate::error::SidecarError::new(ErrorCode::Internal, "cannot render the OpenAPI document"))
                .into_response()
        }
    }
}

static API_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| api_document().to_json().map_err(|error| error.to_string()));
static ADMIN_JSON: LazyLock<Result<String, String>> =
    LazyLock::new(|| admin_document().to_json().map_err(|error| error.to_string()));

/// `GET /openapi.json` on the API listener: this document. Open even when `auth.enabled`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "contract",
    responses((status = 200, description = "The API listener's OpenAPI 3.1 document", body = Object)),
)]
pub async fn serve_api_document() -> Response {
    json_response(&API_JSON)
}

/// `GET /openapi.json` on the admin listener: this document. Open even when `auth.enabled`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "contract",
    responses((status = 200, description = "The admin listener's OpenAPI 3.1 document", body = Object)),
)]
pub async fn serve_admin_document() -> Response {
    json_response(&ADMIN_JSON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_in_the_schema_order() {
        let schema = serde_json::to_value(ErrorCode::schema()).expect("schema");
        let listed: Vec<&str> = EVERY_CODE.iter().map(|code| code.as_str()).collect();
        let derived: Vec<&str> =
            schema["enum"].as_array().expect("enum").iter().map(|code| code.as_str().expect("text")).collect();
        assert_eq!(listed, derived);
    }

    #[test]
    fn documents_render_with_unique_operation_ids_and_resolvable_refs() {
        for document in [api_document(), admin_document()] {
            let json = serde_json::to_value(&document).expect("json");
            assert_eq!(json["openapi"], "3.1.0");
            let mut ids = std::collections::HashSet::new();
            for (path, item) in json["paths"].as_object().expect("paths") {
                for (method, operation) in item.as_object().expect("item") {
                    let id = operation["operationId"].as_str().unwrap_or_default().to_string();
                    assert!(ids.insert(id.clone()), "{method} {path}: duplicate operation id {id}");
                }
            }
            let text = json.to_string();
            for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = reference.split('"').next().unwrap_or_default();
                assert!(json["components"]["schemas"].get(name).is_some(), "unresolved ref {name}");
            }
        }
    }
}
