//! Schema formats on the gRPC edge: records whose `SchemaSpec` asks for avro, jsonschema or
//! protobuf carry JSON text, encoded here into Confluent's wire format before they reach the
//! producer. Each distinct (topic, key or value, spec) of a call is resolved through the registry
//! once; a record that does not fit is refused alone, with its field named.
//!
//! Calls without specs never come here ([`batch_has_specs`] is a scan of two options per record).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use kafka_sidecar_proto::v1 as pb;

use super::convert::{Group, Refusal, RequestedSchema, group_records, origin_in_batch, record_from_proto};
use crate::error::{ErrorCode, SidecarError};
use crate::record::OutgoingRecord;
use crate::schema::{Schema, SchemaRegistry, SchemaRole};

/// Whether any record of `batch` asks for a schema format.
pub fn batch_has_specs(batch: &pb::ProduceBatch) -> bool {
    batch.key_schema.is_some()
        || batch.value_schema.is_some()
        || batch.records.iter().any(|request| request.key_schema.is_some() || request.value_schema.is_some())
}

/// Whether a single record asks for a schema format.
pub fn record_has_specs(request: &pb::ProduceRequest) -> bool {
    request.key_schema.is_some() || request.value_schema.is_some()
}

/// Encodes the keys and values of `batch` that have a spec (the record's own, else the batch's) and
/// groups the records for sending; records that could not be encoded become refusals in place.
pub async fn encode_batch(registry: Option<&SchemaRegistry>, mut batch: pb::ProduceBatch) -> Vec<Group> {
    let mut plans = Planner::new(
        batch.key_schema.take().map(|spec| convert(SchemaRole::Key, spec, "key_schema")),
        batch.value_schema.take().map(|spec| convert(SchemaRole::Value, spec, "value_schema")),
    );
    let per_record: Vec<Plan> =
        batch.records.iter_mut().enumerate().map(|(index, request)| plans.plan(Some(index), request)).collect();
    let schemas = plans.resolve(registry).await;
    let (client_id, session_id) = (batch.client_id, batch.session_id);
    group_records(batch.records.into_iter().zip(per_record).enumerate().map(|(index, (request, plan))| {
        let origin = origin_in_batch(&client_id, &session_id, &request);
        let record_id = request.record_id;
        let encoded = plan.apply(&schemas, Some(index), record_from_proto(request));
        (origin, encoded.map_err(|error| Refusal { record_id, error }))
    }))
}

/// Encodes one record's key and value as its own specs ask (what `Emit` sends).
pub async fn encode_record(
    registry: Option<&SchemaRegistry>,
    mut request: pb::ProduceRequest,
) -> Result<OutgoingRecord, SidecarError> {
    let mut plans = Planner::new(None, None);
    let plan = plans.plan(None, &mut request);
    let schemas = plans.resolve(registry).await;
    plan.apply(&schemas, None, record_from_proto(request))
}

fn convert(role: SchemaRole, spec: pb::SchemaSpec, field: &str) -> Result<RequestedSchema, SidecarError> {
    super::convert::schema_from_proto(role, spec, field)
}

/// A record's field name in errors: `records[2].value` in a batch, `value` alone.
fn field(index: Option<usize>, name: &str) -> String {
    match index {
        Some(index) => format!("records[{index}].{name}"),
        None => name.to_string(),
    }
}

/// One schema to resolve for a call.
struct Wanted {
    topic: String,
    role: SchemaRole,
    /// Whether this is the batch's spec rather than a record's own.
    from_batch: bool,
    schema: RequestedSchema,
}

/// What one record's key or value needs: the index of its schema among the call's, or why not.
type Slot = Option<Result<usize, SidecarError>>;

/// A record's key and value slots; `None` where no spec applies (or the key is absent).
struct Plan {
    key: Slot,
    value: Slot,
}

/// Collects the distinct schemas a call needs, and which one each record uses.
struct Planner {
    batch_key: Option<Result<RequestedSchema, SidecarError>>,
    batch_value: Option<Result<RequestedSchema, SidecarError>>,
    /// Few entries (topics x roles x specs), so a scan beats hashing schema text.
    wanted: Vec<Wanted>,
}

impl Planner {
    fn new(
        batch_key: Option<Result<RequestedSchema, SidecarError>>,
        batch_value: Option<Result<RequestedSchema, SidecarError>>,
    ) -> Self {
        Self { batch_key, batch_value, wanted: Vec::new() }
    }

    /// Takes the record's specs out of `request` and notes the schemas it needs.
    fn plan(&mut self, index: Option<usize>, request: &mut pb::ProduceRequest) -> Plan {
        let own_key = request.key_schema.take();
        let own_value = request.value_schema.take();
        let topic = request.topic.as_str();
        let key = if request.key.is_some() {
            self.slot(
                topic,
                SchemaRole::Key,
                own_key.map(|spec| convert(SchemaRole::Key, spec, &field(index, "key_schema"))),
            )
        } else {
            None
        };
        let value = self.slot(
            topic,
            SchemaRole::Value,
            own_value.map(|spec| convert(SchemaRole::Value, spec, &field(index, "value_schema"))),
        );
        Plan { key, value }
    }

    fn slot(&mut self, topic: &str, role: SchemaRole, own: Option<Result<RequestedSchema, SidecarError>>) -> Slot {
        let (from_batch, requested) = match own {
            Some(own) => (false, own.map(Cow::Owned)),
            None => {
                let shared = match role {
                    SchemaRole::Key => self.batch_key.as_ref()?,
                    SchemaRole::Value => self.batch_value.as_ref()?,
                };
                (true, shared.as_ref().map(Cow::Borrowed).map_err(Clone::clone))
            }
        };
        Some(requested.and_then(|schema| {
            // Checked before the registry is asked, so a typo never registers a subject.
            crate::record::validate_topic_name(topic)?;
            Ok(find_or_add(&mut self.wanted, topic, role, from_batch, schema))
        }))
    }

    /// Resolves every wanted schema, concurrently; the registry caches them across calls.
    async fn resolve(&self, registry: Option<&SchemaRegistry>) -> Vec<Result<Arc<Schema>, SidecarError>> {
        let Some(registry) = registry else {
            return self.wanted.iter().map(|wanted| Err(unsupported(wanted.role))).collect();
        };
        let lookups = self.wanted.iter().map(|wanted| {
            registry.for_produce(&wanted.topic, wanted.role, wanted.schema.kind, &wanted.schema.selection)
        });
        futures::future::join_all(lookups).await
    }
}

impl Plan {
    /// The record with its key and value encoded where a schema applies.
    fn apply(
        self,
        schemas: &[Result<Arc<Schema>, SidecarError>],
        index: Option<usize>,
        mut record: OutgoingRecord,
    ) -> Result<OutgoingRecord, SidecarError> {
        if let Some(slot) = self.key
            && let Some(json) = &record.key
        {
            record.key = Some(encode(schema_of(slot, schemas)?, &field(index, "key"), json)?);
        }
        if let Some(slot) = self.value
            && let Some(json) = &record.value
        {
            record.value = Some(encode(schema_of(slot, schemas)?, &field(index, "value"), json)?);
        }
        Ok(record)
    }
}

/// The index of a schema among `wanted`, added when new. A batch's spec is matched by topic and
/// role alone, so a large batch never compares (or copies) schema text per record.
fn find_or_add(
    wanted: &mut Vec<Wanted>,
    topic: &str,
    role: SchemaRole,
    from_batch: bool,
    schema: Cow<'_, RequestedSchema>,
) -> usize {
    let found = wanted.iter().position(|entry| {
        entry.role == role
            && entry.from_batch == from_batch
            && entry.topic == topic
            && (from_batch || entry.schema == *schema)
    });
    found.unwrap_or_else(|| {
        wanted.push(Wanted { topic: topic.to_string(), role, from_batch, schema: schema.into_owned() });
        wanted.len() - 1
    })
}

fn schema_of(
    slot: Result<usize, SidecarError>,
    schemas: &[Result<Arc<Schema>, SidecarError>],
) -> Result<&Schema, SidecarError> {
    match schemas.get(slot?) {
        Some(Ok(schema)) => Ok(schema),
        Some(Err(error)) => Err(error.clone()),
        None => Err(SidecarError::new(ErrorCode::Internal, "a record's schema was not resolved")),
    }
}

/// JSON text in `json` as `schema`'s wire format; errors name `field` and the path inside it.
fn encode(schema: &Schema, field: &str, json: &[u8]) -> Result<Bytes, SidecarError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|error| SidecarError::new(ErrorCode::RecordInvalid, format!("{field} is not JSON: {error}")))?;
    schema.encode(&value).map_err(|error| {
        SidecarError::new(ErrorCode::RecordInvalid, format!("{field}{}: {}", error.path, error.message))
    })
}

fn unsupported(role: SchemaRole) -> SidecarError {
    SidecarError::new(
        ErrorCode::UnsupportedFormat,
        format!("a {role} schema needs schema_registry.url, which is not configured"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaKind;

    fn spec(format: &str) -> pb::SchemaSpec {
        pb::SchemaSpec { format: format.into(), ..Default::default() }
    }

    fn request(topic: &str, key: Option<&str>, value: &str, id: u64) -> pb::ProduceRequest {
        pb::ProduceRequest {
            topic: topic.into(),
            key: key.map(|key| Bytes::from(key.to_string())),
            value: Bytes::from(value.to_string()),
            record_id: id,
            ..Default::default()
        }
    }

    fn refusals(groups: &[Group]) -> Vec<(u64, ErrorCode)> {
        groups
            .iter()
            .filter_map(|group| match group {
                Group::Refused(refusal) => Some((refusal.record_id, refusal.error.code)),
                Group::Send(..) => None,
            })
            .collect()
    }

    #[test]
    fn specs_are_found_in_the_batch_or_its_records() {
        let mut batch = pb::ProduceBatch { records: vec![request("t", None, "1", 1)], ..Default::default() };
        assert!(!batch_has_specs(&batch));
        batch.records[0].value_schema = Some(spec("avro"));
        assert!(batch_has_specs(&batch));
        assert!(record_has_specs(&batch.records[0]));
        batch.records[0].value_schema = None;
        batch.key_schema = Some(spec("avro"));
        assert!(batch_has_specs(&batch));
    }

    #[test]
    fn one_schema_per_topic_role_and_spec_and_absent_keys_need_none() {
        let mut planner = Planner::new(
            Some(Ok(RequestedSchema { kind: SchemaKind::Avro, selection: crate::schema::SchemaSelection::Id(1) })),
            Some(Ok(RequestedSchema {
                kind: SchemaKind::Avro,
                selection: crate::schema::SchemaSelection::Latest { subject: None },
            })),
        );
        let mut own = request("a", None, "{}", 4);
        own.value_schema = Some(pb::SchemaSpec { id: Some(9), ..spec("avro") });
        let mut records = [
            request("a", Some("1"), "{}", 1),
            request("a", None, "{}", 2),
            request("b", Some("1"), "{}", 3),
            own.clone(),
            own,
        ];
        let plans: Vec<Plan> =
            records.iter_mut().enumerate().map(|(index, request)| planner.plan(Some(index), request)).collect();
        let slots: Vec<(Option<usize>, Option<usize>)> = plans
            .iter()
            .map(|plan| {
                let index = |slot: &Slot| slot.as_ref().map(|slot| slot.clone().expect("planned"));
                (index(&plan.key), index(&plan.value))
            })
            .collect();
        assert_eq!(
            slots,
            vec![(Some(0), Some(1)), (None, Some(1)), (Some(2), Some(3)), (None, Some(4)), (None, Some(4))]
        );
        assert_eq!(planner.wanted.len(), 5);
        assert!(records.iter().all(|record| record.value_schema.is_none()), "specs are taken out");
    }

    #[tokio::test]
    async fn without_a_registry_records_with_a_spec_are_unsupported_and_the_rest_go() {
        let batch = pb::ProduceBatch {
            key_schema: Some(spec("protobuf")),
            records: vec![
                request("t", None, "raw", 1),
                request("t", Some("{}"), "raw", 2),
                request("t", None, "raw", 3),
            ],
            ..Default::default()
        };
        let groups = encode_batch(None, batch).await;
        assert_eq!(refusals(&groups), vec![(2, ErrorCode::UnsupportedFormat)]);
        assert_eq!(groups.len(), 3, "the refusal splits the batch in order");
        let error =
            encode_record(None, pb::ProduceRequest { value_schema: Some(spec("avro")), ..request("t", None, "1", 1) })
                .await
                .expect_err("no registry");
        assert_eq!(error.code, ErrorCode::UnsupportedFormat);
    }

    #[tokio::test]
    async fn bad_specs_and_topics_are_refused_per_record() {
        let batch = pb::ProduceBatch {
            value_schema: Some(pb::SchemaSpec { id: Some(1), version: Some(1), ..spec("avro") }),
            records: vec![request("t", None, "{}", 1)],
            ..Default::default()
        };
        let groups = encode_batch(None, batch).await;
        let Some(Group::Refused(refusal)) = groups.first() else { panic!("refused: {groups:?}") };
        assert_eq!(refusal.error.code, ErrorCode::InvalidRequest);
        assert!(refusal.error.message.starts_with("value_schema: "), "{}", refusal.error.message);
        let bad_topic =
            pb::ProduceRequest { value_schema: Some(spec("avro")), ..request("no such/topic", None, "{}", 1) };
        let error = encode_record(None, bad_topic).await.expect_err("bad topic");
        assert_eq!(error.code, ErrorCode::InvalidTopic);
    }

    #[test]
    fn values_are_json_that_fits_the_schema() {
        let text =
            r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"},{"name":"name","type":"string"}]}"#;
        let schemas = vec![Ok(Arc::new(Schema::parse(5, SchemaKind::Avro, text, &[]).expect("schema")))];
        let apply = |value: &str| {
            let record = OutgoingRecord { value: Some(Bytes::from(value.to_string())), ..Default::default() };
            Plan { key: None, value: Some(Ok(0)) }.apply(&schemas, Some(3), record)
        };
        let encoded = apply(r#"{"id": 1, "name": "a"}"#).expect("fits");
        assert_eq!(encoded.value.as_deref(), Some(&[0, 0, 0, 0, 5, 0x02, 0x02, 0x61][..]));
        let not_json = apply("{id: 1").expect_err("not JSON");
        assert_eq!(not_json.code, ErrorCode::RecordInvalid);
        assert!(not_json.message.starts_with("records[3].value is not JSON: "), "{}", not_json.message);
        let misfit = apply(r#"{"id": "one", "name": "a"}"#).expect_err("does not fit");
        assert_eq!(misfit.code, ErrorCode::RecordInvalid);
        assert!(misfit.message.starts_with("records[3].value.id"), "{}", misfit.message);
    }
}
