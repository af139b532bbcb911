//! Schema formats (avro, jsonschema, protobuf) through a Confluent-compatible schema registry.
//!
//! A produce request names its schema inline, by id, by subject and version, or not at all (the
//! latest version of the topic's subject, by the TopicNameStrategy); [`SchemaRegistry`] turns that
//! into a parsed [`Schema`] and each record's JSON into Confluent's wire format with it. Consumers
//! go the other way: [`SchemaRegistry::load_ids`] loads the schemas a batch of records uses, then
//! [`decode_with`] decodes each record without awaiting.
//!
//! The registry is touched once per schema, not per record: ids are immutable and cached until a
//! size bound evicts them; inline schemas are cached by subject and text; subject versions by
//! (subject, version); the latest version for `schema_registry.latest_ttl_ms`. When the registry is
//! down, cached schemas keep working (a stale latest included) and the rest fail fast with
//! `SCHEMA_REGISTRY_UNAVAILABLE` and a retry hint.

pub mod avro;
mod cache;
pub mod codec;
pub mod json_schema;
pub mod protobuf;
mod registry;
mod selection;
pub mod wire;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

pub use codec::{ConversionError, Reference};
pub use registry::RegistryError;
pub use selection::{SchemaRole, SchemaSelection};

use self::avro::AvroCodec;
use self::cache::LoadOnceCache;
use self::json_schema::JsonSchemaCodec;
use self::protobuf::ProtobufCodec;
use self::registry::{RegistryClient, SchemaDto};
use crate::config::{EmbeddedFormatName, SchemaRegistryConfig};
use crate::error::{ErrorCode, SidecarError};
use crate::metrics::Metrics;

/// Registry loads one consumer batch may have in flight at once.
const CONCURRENT_LOADS: usize = 8;

/// The schemas a batch of consumed records is written with, loaded by [`SchemaRegistry::load_ids`].
/// Decoding uses this map, not the cache, so an eviction in between cannot fail a record.
#[derive(Default, Clone)]
pub struct LoadedSchemas(std::collections::HashMap<u32, Arc<Schema>>);

/// Decodes a consumed payload of `kind` with a schema from `loaded`: the JSON and the schema id.
pub fn decode_with(loaded: &LoadedSchemas, kind: SchemaKind, bytes: &[u8]) -> Result<(Value, u32), String> {
    let (id, body) = wire::split_header(bytes)?;
    let schema = loaded.0.get(&id).ok_or_else(|| format!("schema {id} is not in the registry"))?;
    if schema.kind != kind {
        return Err(format!("schema {id} is {}, not {}", schema.kind.registry_name(), kind.registry_name()));
    }
    let value = schema.decode_body(body).map_err(|error| format!("not decodable with schema {id}: {error}"))?;
    Ok((value, id))
}

/// The registry's schema types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `AVRO` (the registry's default when a schema names no type).
    Avro,
    /// `JSON`: JSON Schema.
    Json,
    /// `PROTOBUF`: `.proto` text.
    Protobuf,
}

impl SchemaKind {
    /// The kind behind a key or value format, if it has one.
    pub fn of_format(format: EmbeddedFormatName) -> Option<Self> {
        match format {
            EmbeddedFormatName::Avro => Some(Self::Avro),
            EmbeddedFormatName::Jsonschema => Some(Self::Json),
            EmbeddedFormatName::Protobuf => Some(Self::Protobuf),
            EmbeddedFormatName::Binary | EmbeddedFormatName::Json | EmbeddedFormatName::String => None,
        }
    }

    /// The registry's `schemaType` value.
    pub fn registry_name(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
            Self::Protobuf => "PROTOBUF",
        }
    }

    fn from_registry_name(name: Option<&str>) -> Result<Self, String> {
        match name.unwrap_or("AVRO") {
            "AVRO" => Ok(Self::Avro),
            "JSON" => Ok(Self::Json),
            "PROTOBUF" => Ok(Self::Protobuf),
            other => Err(format!("unknown schema type {other:?}")),
        }
    }
}

enum Codec {
    Avro(AvroCodec),
    Json(JsonSchemaCodec),
    Protobuf(ProtobufCodec),
}

/// A parsed schema and its registry id: encodes JSON to framed bytes and decodes them back.
pub struct Schema {
    /// The registry's id, written into every payload.
    pub id: u32,
    /// Its type.
    pub kind: SchemaKind,
    codec: Codec,
}

impl Schema {
    /// Parses schema text of `kind` with the schemas it references.
    pub fn parse(id: u32, kind: SchemaKind, text: &str, references: &[Reference]) -> Result<Self, String> {
        let codec = match kind {
            SchemaKind::Avro => Codec::Avro(AvroCodec::parse(text, references)?),
            SchemaKind::Json => Codec::Json(JsonSchemaCodec::parse(text, references)?),
            SchemaKind::Protobuf => Codec::Protobuf(ProtobufCodec::parse(text, references, None)?),
        };
        Ok(Self { id, kind, codec })
    }

    /// `value` in the wire format: magic byte, id, body.
    pub fn encode(&self, value: &Value) -> Result<Bytes, ConversionError> {
        let mut out = Vec::with_capacity(64);
        wire::write_header(self.id, &mut out);
        match &self.codec {
            Codec::Avro(codec) => codec.encode_into(value, &mut out)?,
            Codec::Json(codec) => codec.encode_into(value, &mut out)?,
            Codec::Protobuf(codec) => codec.encode_into(value, &mut out)?,
        }
        Ok(Bytes::from(out))
    }

    /// The body after the header, as JSON.
    pub fn decode_body(&self, body: &[u8]) -> Result<Value, ConversionError> {
        match &self.codec {
            Codec::Avro(codec) => codec.decode(body),
            Codec::Json(codec) => codec.decode(body),
            Codec::Protobuf(codec) => codec.decode(body),
        }
    }
}

/// The registry client with its caches; one per sidecar.
pub struct SchemaRegistry {
    client: RegistryClient,
    by_id: LoadOnceCache<u32, Arc<Schema>>,
    /// Ids the registry answered 404 for, or whose schema does not parse, with that answer.
    unknown_ids: LoadOnceCache<u32, SidecarError>,
    unknown_id_ttl: Duration,
    by_version: LoadOnceCache<(String, i32), u32>,
    latest: LoadOnceCache<String, u32>,
    registered: LoadOnceCache<(String, SchemaKind, u64, usize), u32>,
    text_digest: std::collections::hash_map::RandomState,
    latest_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl SchemaRegistry {
    /// A registry for the configured URLs, or `None` when none is configured.
    pub fn from_config(config: &SchemaRegistryConfig, metrics: Arc<Metrics>) -> anyhow::Result<Option<Arc<Self>>> {
        if !config.is_configured() {
            return Ok(None);
        }
        let bound = config.cache_max_schemas;
        Ok(Some(Arc::new(Self {
            client: RegistryClient::new(config, metrics.clone())?,
            by_id: LoadOnceCache::new(bound),
            unknown_ids: LoadOnceCache::new(bound),
            unknown_id_ttl: Duration::from_millis(config.unknown_id_ttl_ms),
            by_version: LoadOnceCache::new(bound),
            latest: LoadOnceCache::new(bound),
            registered: LoadOnceCache::new(bound),
            text_digest: std::collections::hash_map::RandomState::new(),
            latest_ttl: Duration::from_millis(config.latest_ttl_ms),
            metrics,
        })))
    }

    /// The schema a produce request selected for its keys or values on `topic`, of `kind`.
    pub async fn for_produce(
        &self,
        topic: &str,
        role: SchemaRole,
        kind: SchemaKind,
        selection: &SchemaSelection,
    ) -> Result<Arc<Schema>, SidecarError> {
        let subject = |explicit: &Option<String>| explicit.clone().unwrap_or_else(|| role.subject(topic));
        let schema = match selection {
            SchemaSelection::Id(id) => self.by_id(*id).await?,
            SchemaSelection::Version { subject: named, version } => {
                let id = self.version_id(subject(named), *version).await?;
                self.by_id(id).await?
            }
            SchemaSelection::Latest { subject: named } => {
                let id = self.latest_id(subject(named)).await?;
                self.by_id(id).await?
            }
            SchemaSelection::Inline { schema, subject: named } => {
                self.register(subject(named), kind, schema, role).await?
            }
        };
        if schema.kind != kind {
            return Err(SidecarError::new(
                ErrorCode::SchemaInvalid,
                format!(
                    "{role} schema {} is a {} schema; the request's {role} format needs {}",
                    schema.id,
                    schema.kind.registry_name(),
                    kind.registry_name()
                ),
            ));
        }
        Ok(schema)
    }

    /// The schema with registry id `id`.
    pub async fn by_id(&self, id: u32) -> Result<Arc<Schema>, SidecarError> {
        if let Some(unknown) = self.unknown_ids.peek(&id) {
            if unknown.at.elapsed() < self.unknown_id_ttl {
                self.count("id", false);
                return Err(unknown.value);
            }
            self.unknown_ids.remove_if_loaded_at(&id, unknown.at);
        }
        let (result, asked) = self
            .by_id
            .get_or_load(id, || async move {
                let dto =
                    self.client.schema_by_id(id).await.map_err(|error| self.refusal(&format!("schema {id}"), error))?;
                self.parse_dto(id, dto).await
            })
            .await;
        self.count("id", asked);
        match result {
            Ok(loaded) => Ok(loaded.value),
            Err(error) => {
                let definite = matches!(error.code, ErrorCode::SchemaNotFound | ErrorCode::SchemaInvalid);
                if asked && definite && !self.unknown_id_ttl.is_zero() {
                    self.unknown_ids.insert(id, error.clone());
                }
                Err(error)
            }
        }
    }

    /// The schema id of a wire-format payload, if it is one.
    pub fn id_of(payload: &[u8]) -> Option<u32> {
        wire::split_header(payload).ok().map(|(id, _)| id)
    }

    /// The schemas in `ids`, loaded at most [`CONCURRENT_LOADS`] at a time. Ids the registry does
    /// not know (or whose schema does not parse) are left out, for [`decode_with`] to report per
    /// record. A registry that is unavailable or refuses the sidecar itself is an error for the
    /// whole batch: the caller holds the records back instead of calling them undecodable.
    pub async fn load_ids(&self, mut ids: Vec<u32>) -> Result<LoadedSchemas, SidecarError> {
        use futures::StreamExt;
        ids.sort_unstable();
        ids.dedup();
        let mut loads = futures::stream::iter(ids).map(|id| self.by_id(id)).buffer_unordered(CONCURRENT_LOADS);
        let mut loaded = LoadedSchemas::default();
        while let Some(result) = loads.next().await {
            match result {
                Ok(schema) => {
                    loaded.0.insert(schema.id, schema);
                }
                Err(error)
                    if matches!(
                        error.code,
                        ErrorCode::SchemaRegistryUnavailable | ErrorCode::SchemaRegistryRefused
                    ) =>
                {
                    return Err(error);
                }
                Err(_) => {}
            }
        }
        Ok(loaded)
    }

    async fn version_id(&self, subject: String, version: i32) -> Result<u32, SidecarError> {
        let key = (subject, version);
        let version_text = version.to_string();
        let (result, asked) =
            self.by_version.get_or_load(key.clone(), || self.load_version(&key.0, &version_text)).await;
        self.count("version", asked);
        result.map(|loaded| loaded.value)
    }

    async fn latest_id(&self, subject: String) -> Result<u32, SidecarError> {
        let stale = self.latest.peek(&subject);
        if let Some(loaded) = &stale {
            if loaded.at.elapsed() < self.latest_ttl {
                self.count("latest", false);
                return Ok(loaded.value);
            }
            self.latest.remove_if_loaded_at(&subject, loaded.at);
        }
        let stale = stale.map(|loaded| loaded.value);
        let (result, asked) = self
            .latest
            .get_or_load(subject.clone(), || async {
                match self.load_version(&subject, "latest").await {
                    // Better a schema a little old than no produce at all while the registry is
                    // down. Decided inside the load, so everyone waiting on it gets the same answer.
                    Err(error) if error.code == ErrorCode::SchemaRegistryUnavailable && stale.is_some() => {
                        tracing::warn!(%subject, ?stale, "schema registry unavailable; using the latest schema known");
                        stale.ok_or(error)
                    }
                    other => other,
                }
            })
            .await;
        self.count("latest", asked);
        result.map(|loaded| loaded.value)
    }

    /// Loads a subject version, caches its parsed schema by id and returns the id.
    async fn load_version(&self, subject: &str, version: &str) -> Result<u32, SidecarError> {
        let what = format!("subject {subject:?} version {version}");
        let dto = self.client.subject_version(subject, version).await.map_err(|error| self.refusal(&what, error))?;
        let id = dto.id.ok_or_else(|| {
            SidecarError::new(ErrorCode::SchemaRegistryUnavailable, format!("the registry gave no id for {what}"))
        })?;
        if self.by_id.peek(&id).is_none() {
            let schema = self.parse_dto(id, dto).await?;
            self.by_id.insert(id, schema);
        }
        Ok(id)
    }

    async fn register(
        &self,
        subject: String,
        kind: SchemaKind,
        text: &str,
        role: SchemaRole,
    ) -> Result<Arc<Schema>, SidecarError> {
        // Keyed by a digest with a per-process random key, not the text: inline schemas can be large.
        let key = (subject, kind, self.text_digest.hash_one(text), text.len());
        let (result, asked) = self
            .registered
            .get_or_load(key.clone(), || async {
                // Parse first: a schema that does not parse gets our message, not a round trip.
                Schema::parse(0, kind, text, &[]).map_err(|why| {
                    SidecarError::new(ErrorCode::SchemaInvalid, format!("{role} schema does not parse: {why}"))
                })?;
                let subject = &key.0;
                let id = self
                    .client
                    .register(subject, text, kind.registry_name())
                    .await
                    .map_err(|error| self.refusal(&format!("registering under subject {subject:?}"), error))?;
                if self.by_id.peek(&id).is_none() {
                    let schema = Schema::parse(id, kind, text, &[])
                        .map_err(|why| SidecarError::new(ErrorCode::SchemaInvalid, why))?;
                    self.by_id.insert(id, Arc::new(schema));
                }
                Ok::<_, SidecarError>(id)
            })
            .await;
        self.count("register", asked);
        let id = result?.value;
        self.by_id(id).await
    }

    /// Parses a registry answer, fetching the schemas it references first.
    async fn parse_dto(&self, id: u32, dto: SchemaDto) -> Result<Arc<Schema>, SidecarError> {
        let invalid = |why: String| SidecarError::new(ErrorCode::SchemaInvalid, format!("schema {id}: {why}"));
        let kind = SchemaKind::from_registry_name(dto.schema_type.as_deref()).map_err(invalid)?;
        let references = self.resolve_references(&dto).await?;
        let schema = Schema::parse(id, kind, &dto.schema, &references).map_err(invalid)?;
        Ok(Arc::new(schema))
    }

    /// Every schema `dto` references, transitively, dependencies first, each once.
    async fn resolve_references(&self, dto: &SchemaDto) -> Result<Vec<Reference>, SidecarError> {
        let mut resolved: Vec<Reference> = Vec::new();
        // Depth-first with an explicit stack: (reference, whether its own references are done).
        let mut stack: Vec<(registry::ReferenceDto, Option<String>)> =
            dto.references.iter().rev().map(|reference| (reference.clone(), None)).collect();
        let mut visiting = std::collections::HashSet::new();
        while let Some((reference, text)) = stack.pop() {
            if resolved.iter().any(|done| done.name == reference.name) {
                continue;
            }
            if let Some(schema) = text {
                resolved.push(Reference { name: reference.name, schema });
                continue;
            }
            if !visiting.insert(reference.name.clone()) || visiting.len() > 100 {
                return Err(SidecarError::new(
                    ErrorCode::SchemaInvalid,
                    format!("schema references loop or go too deep at {:?}", reference.name),
                ));
            }
            let what = format!("reference {:?} (subject {:?})", reference.name, reference.subject);
            let found = self
                .client
                .subject_version(&reference.subject, &reference.version.to_string())
                .await
                .map_err(|error| self.refusal(&what, error))?;
            stack.push((reference, Some(found.schema)));
            stack.extend(found.references.into_iter().rev().map(|nested| (nested, None)));
        }
        Ok(resolved)
    }

    /// A registry failure as the caller sees it.
    fn refusal(&self, what: &str, error: RegistryError) -> SidecarError {
        match error {
            RegistryError::Unavailable(why) => SidecarError {
                code: ErrorCode::SchemaRegistryUnavailable,
                message: format!("the schema registry is unavailable for {what}: {why}"),
                retry_after: Some(self.client.retry_hint()),
            },
            RegistryError::Refused { status, message, .. } => {
                let code = match status {
                    404 => ErrorCode::SchemaNotFound,
                    409 => ErrorCode::SchemaIncompatible,
                    422 => ErrorCode::SchemaInvalid,
                    _ => ErrorCode::SchemaRegistryRefused,
                };
                SidecarError::new(code, format!("the schema registry refused {what} ({status}): {message}"))
            }
        }
    }

    /// Counts a lookup: a miss when it asked the registry, else a hit.
    fn count(&self, lookup: &'static str, asked: bool) {
        if asked { self.metrics.schema.miss(lookup) } else { self.metrics.schema.hit(lookup) }
    }
}
