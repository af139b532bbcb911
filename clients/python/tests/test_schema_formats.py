"""The sidecar's schema formats against Confluent's own Python serializers, through a real registry.

Each format is checked both ways: the sidecar produces and confluent_kafka's deserializers read
(and Confluent's serializer, given the same data and schema, writes the very same bytes); then
confluent_kafka's serializers produce and the sidecar's active consumer returns the data as JSON
(Avro's JSON encoding, proto3's JSON mapping, the JSON itself). Then the ways a produce names its
schema, bad records, an incompatible schema, and the schema cache with the registry gone.

Confluent's registry client meets the test registry's limits this way. ``lookup_schema`` spells
its query by hand as ``?normalize=False&deleted=False`` (or ``deleted=True``), and the registry
refuses Python's capitalised booleans; serializers call it with ``auto.register.schemas=False``
(unless ``use.latest.version``) or ``use.schema.id``, and deserializers with ``use.latest.version``
(to look up migrations). So serializers here either auto-register (``POST
/subjects/{s}/versions?normalize=False``, which the registry accepts) or use
``auto.register.schemas=False`` with ``use.latest.version=True``; deserializers use the writer's
id only. Protobuf schemas are registered as ``.proto`` text (the registry refuses base64
descriptors), and Confluent's protobuf serde reads them through ``TextProtobufRegistryClient``
(schema_helpers.py), which answers ``?format=serialized`` as Confluent's registry does.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from confluent_kafka import DeserializingConsumer, SerializingProducer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import json_format

from harness import Broker, SchemaRegistry, Sidecar, random_name, wait_until
from schema_helpers import (SidecarHttp, TcpProxy, TextProtobufRegistryClient, header,
                            proto_message_class, register, set_compatibility, subject_versions)

# tansu answers a JoinGroup after about session.timeout / 2.
CONSUMER_SETTINGS = {"consumer.properties.session.timeout.ms": 6000,
                     "consumer.properties.heartbeat.interval.ms": 500}

ADDRESS = {"type": "record", "name": "Address",
           "fields": [{"name": "street", "type": "string"}, {"name": "zip", "type": "int"}]}
ORDER_SCHEMA = json.dumps({
    "type": "record", "name": "Order", "namespace": "sidecar.test", "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "discount", "type": ["null", "double"], "default": None},
        {"name": "address", "type": ADDRESS},
        {"name": "previous", "type": ["null", "Address"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "payload", "type": "bytes"}]})
ORDER_KEY_SCHEMA = json.dumps({"type": "record", "name": "OrderKey", "namespace": "sidecar.test",
                               "fields": [{"name": "id", "type": "long"}]})
# As fastavro reads and writes it. The id is above 2**53, where a JSON double would lose it.
ORDER = {"id": 9007199254740993, "customer": "ann", "note": "rush", "discount": None,
         "address": {"street": "1 Main St", "zip": 12345},
         "previous": {"street": "2 Old Rd", "zip": 54321}, "tags": ["a", "b"],
         "status": "PAID", "payload": b"\x00\xff"}
# The same record in Avro's JSON encoding: unions as {"branch": value}, bytes as ISO-8859-1.
ORDER_AVRO_JSON = {**ORDER, "note": {"string": "rush"},
                   "previous": {"sidecar.test.Address": {"street": "2 Old Rd", "zip": 54321}},
                   "payload": "\u0000\u00ff"}
ORDER_KEY = {"id": 7}

# No enums, oneofs or options: the test registry drops them from the text it returns.
PERSON_PROTO = """syntax = "proto3";
package sidecar.test;

message Person {
  string name = 1;
  int64 id = 2;
  Address home_address = 3;
  repeated string tags = 4;
  double score = 5;
  bool active = 6;
  bytes avatar = 7;
  repeated Address previous_addresses = 8;
  int32 visits = 9;
}

message Address {
  string street = 1;
  int32 zip_code = 2;
}
"""
Person = proto_message_class(PERSON_PROTO, "sidecar.test.Person")
PERSON = Person(name="ann", id=12345678901, home_address={"street": "1 Main St", "zip_code": 12345},
                tags=["a", "b"], score=1.5, active=True, avatar=b"\x00\xff",
                previous_addresses=[{"street": "2 Old Rd"}])

EVENT_SCHEMA = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Event", "type": "object",
    "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "score": {"type": ["number", "null"]},
        "address": {"type": "object", "required": ["street", "zip"], "properties": {
            "street": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}}},
    "required": ["id", "name", "address"], "additionalProperties": False})
EVENT_KEY_SCHEMA = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}},
                               "required": ["id"]})
EVENT = {"id": 42, "name": "ann", "tags": ["a"], "score": None,
         "address": {"street": "1 Main St", "zip": "12345"}}


@pytest.fixture(scope="module")
def schema_sidecar(broker: Broker, schema_registry: SchemaRegistry) -> Iterator[SidecarHttp]:
    started = Sidecar.start(broker.bootstrap, settings={
        "schema_registry.url": schema_registry.url, **CONSUMER_SETTINGS})
    yield SidecarHttp(started.info)
    started.stop()


@pytest.fixture
def registry_client(schema_registry: SchemaRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry.url})


@pytest.fixture
def protobuf_registry_client(schema_registry: SchemaRegistry) -> SchemaRegistryClient:
    return TextProtobufRegistryClient({"url": schema_registry.url})


def value_context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def read_deserialized(broker: Broker, topic: str, key_deserializer: Any,
                      value_deserializer: Any, count: int = 1) -> list[Any]:
    """Reads ``count`` records of partition 0 from the start with a ``DeserializingConsumer``."""
    consumer = DeserializingConsumer({
        "bootstrap.servers": broker.bootstrap, "group.id": random_name("g"),
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "key.deserializer": key_deserializer, "value.deserializer": value_deserializer})
    consumer.assign([TopicPartition(topic, 0, 0)])
    messages: list[Any] = []
    try:
        def enough() -> bool:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                messages.append(message)
            return len(messages) >= count
        wait_until(enough, 60, f"{count} records from {topic}")
    finally:
        consumer.close()
    return messages


def produce_serialized(broker: Broker, topic: str, key_serializer: Any, value_serializer: Any,
                       key: Any, value: Any) -> None:
    """Produces one record with a ``SerializingProducer`` and waits for its delivery."""
    producer = SerializingProducer({"bootstrap.servers": broker.bootstrap,
                                    "key.serializer": key_serializer,
                                    "value.serializer": value_serializer})
    reports: list[Any] = []
    producer.produce(topic, key=key, value=value, partition=0,
                     on_delivery=lambda error, message: reports.append(error))
    assert producer.flush(30) == 0
    assert reports == [None]


# --- 1, 2: Avro ------------------------------------------------------------------------------

def test_avro_from_the_sidecar_reads_with_confluent_deserializers(
        broker: Broker, schema_sidecar: SidecarHttp, registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("avro-out"), 1)
    reply = schema_sidecar.produce(topic, {
        "keyFormat": "avro", "valueFormat": "avro", "keySchema": ORDER_KEY_SCHEMA,
        "valueSchema": ORDER_SCHEMA, "records": [{"key": ORDER_KEY, "value": ORDER_AVRO_JSON}]})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["key_schema_id"], answer["value_schema_id"]) == (answer["keySchemaId"],
                                                                    answer["valueSchemaId"])

    [raw] = broker.read_all(topic, 1)
    assert header(raw.key())[:2] == (0, answer["keySchemaId"])
    assert header(raw.value())[:2] == (0, answer["valueSchemaId"])
    [message] = read_deserialized(broker, topic, AvroDeserializer(registry_client),
                                  AvroDeserializer(registry_client))
    assert message.key() == ORDER_KEY
    assert message.value() == ORDER
    # Confluent's serializer, registering the same schema (so getting the same id), writes the
    # same bytes for the same data.
    key_context = SerializationContext(topic, MessageField.KEY)
    assert AvroSerializer(registry_client, ORDER_KEY_SCHEMA)(ORDER_KEY, key_context) == raw.key()
    assert AvroSerializer(registry_client, ORDER_SCHEMA)(ORDER, value_context(topic)) == raw.value()


def test_avro_from_confluent_serializers_reads_through_the_sidecar_consumer(
        broker: Broker, schema_sidecar: SidecarHttp, registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("avro-in"), 1)
    produce_serialized(broker, topic, AvroSerializer(registry_client, ORDER_KEY_SCHEMA),
                       AvroSerializer(registry_client, ORDER_SCHEMA), ORDER_KEY, ORDER)
    [raw] = broker.read_all(topic, 1)

    [record] = schema_sidecar.consume(topic, "avro", 1)
    assert "error" not in record, record
    assert record["key"] == ORDER_KEY
    assert record["value"] == ORDER_AVRO_JSON
    assert record["key_schema_id"] == header(raw.key())[1]
    assert record["value_schema_id"] == header(raw.value())[1]


# --- 3: Protobuf and JSON Schema -------------------------------------------------------------

def test_protobuf_from_the_sidecar_reads_with_confluent_deserializer(
        broker: Broker, schema_sidecar: SidecarHttp,
        protobuf_registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("proto-out"), 1)
    reply = schema_sidecar.produce(topic, {
        "valueFormat": "protobuf", "valueSchema": PERSON_PROTO,
        "records": [{"value": json_format.MessageToDict(PERSON)}]})  # proto3 JSON
    assert reply.status_code == 200, reply.text
    schema_id = reply.json()["valueSchemaId"]

    [raw] = broker.read_all(topic, 1)
    magic, found_id, body = header(raw.value())
    assert (magic, found_id, body[:1]) == (0, schema_id, b"\x00")  # message indexes [0]
    assert Person.FromString(body[1:]) == PERSON
    [message] = read_deserialized(broker, topic, None,
                                  ProtobufDeserializer(Person, {}, protobuf_registry_client))
    assert message.value() == PERSON
    serializer = ProtobufSerializer(Person, protobuf_registry_client, {
        "auto.register.schemas": False, "use.latest.version": True})
    assert serializer(PERSON, value_context(topic)) == raw.value()


def test_protobuf_from_confluent_serializer_reads_through_the_sidecar_consumer(
        broker: Broker, schema_sidecar: SidecarHttp, schema_registry: SchemaRegistry,
        protobuf_registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("proto-in"), 1)
    schema_id = register(schema_registry.url, f"{topic}-value", PERSON_PROTO, "PROTOBUF")
    serializer = ProtobufSerializer(Person, protobuf_registry_client, {
        "auto.register.schemas": False, "use.latest.version": True})
    produce_serialized(broker, topic, None, serializer, None, PERSON)
    [raw] = broker.read_all(topic, 1)
    assert header(raw.value())[:2] == (0, schema_id)
    assert header(raw.value())[2][:1] == b"\x00"

    [record] = schema_sidecar.consume(topic, "protobuf", 1)
    assert "error" not in record, record
    # Confluent REST Proxy's shape: proto3 JSON names, defaults of presence-less fields printed.
    assert record["value"] == json_format.MessageToDict(
        PERSON, always_print_fields_with_no_presence=True)
    assert record["value_schema_id"] == schema_id


def test_jsonschema_from_the_sidecar_reads_with_confluent_deserializers(
        broker: Broker, schema_sidecar: SidecarHttp, registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("json-out"), 1)
    reply = schema_sidecar.produce(topic, {
        "keyFormat": "jsonschema", "valueFormat": "jsonschema", "keySchema": EVENT_KEY_SCHEMA,
        "valueSchema": EVENT_SCHEMA, "records": [{"key": {"id": 42}, "value": EVENT}]})
    assert reply.status_code == 200, reply.text
    answer = reply.json()

    [raw] = broker.read_all(topic, 1)
    key_magic, key_id, key_body = header(raw.key())
    magic, value_id, body = header(raw.value())
    assert (key_magic, key_id, magic, value_id) == (0, answer["keySchemaId"], 0,
                                                    answer["valueSchemaId"])
    # JSON text is compared parsed: Confluent's Python serializer writes json.dumps' spaced
    # separators, its Java one compact JSON; the format does not fix either.
    assert (json.loads(key_body), json.loads(body)) == ({"id": 42}, EVENT)
    [message] = read_deserialized(
        broker, topic, JSONDeserializer(None, schema_registry_client=registry_client),
        JSONDeserializer(None, schema_registry_client=registry_client))
    assert (message.key(), message.value()) == ({"id": 42}, EVENT)


def test_jsonschema_from_confluent_serializers_reads_through_the_sidecar_consumer(
        broker: Broker, schema_sidecar: SidecarHttp, registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("json-in"), 1)
    produce_serialized(broker, topic, JSONSerializer(EVENT_KEY_SCHEMA, registry_client),
                       JSONSerializer(EVENT_SCHEMA, registry_client), {"id": 42}, EVENT)
    [raw] = broker.read_all(topic, 1)

    [record] = schema_sidecar.consume(topic, "jsonschema", 1)
    assert "error" not in record, record
    assert (record["key"], record["value"]) == ({"id": 42}, EVENT)
    assert record["key_schema_id"] == header(raw.key())[1]
    assert record["value_schema_id"] == header(raw.value())[1]


# --- 4: how a produce names its schema ---------------------------------------------------------

def test_every_way_of_naming_the_schema_writes_its_id(
        broker: Broker, schema_sidecar: SidecarHttp, schema_registry: SchemaRegistry,
        registry_client: SchemaRegistryClient) -> None:
    topic = broker.create_topic(random_name("avro-named"), 3)
    subject = f"{topic}-value"
    version_1 = json.dumps({"type": "record", "name": "Item", "namespace": "sidecar.test",
                            "fields": [{"name": "n", "type": "int"}]})
    version_2 = json.dumps({"type": "record", "name": "Item", "namespace": "sidecar.test",
                            "fields": [{"name": "n", "type": "int"},
                                       {"name": "label", "type": "string", "default": "none"}]})
    id_1 = register(schema_registry.url, subject, version_1)
    id_2 = register(schema_registry.url, subject, version_2)
    assert id_1 != id_2

    def produce(n: int, **names: Any) -> dict[str, Any]:
        reply = schema_sidecar.produce(topic, {"valueFormat": "avro", **names,
                                               "records": [{"value": {"n": n, "label": "x"}}
                                                           if n % 2 == 0 else {"value": {"n": n}}]})
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    expected = {1: id_1, 2: id_2, 3: id_1, 4: id_2, 5: id_1}
    assert produce(1, valueSchemaId=id_1)["valueSchemaId"] == id_1
    assert produce(2)["valueSchemaId"] == id_2  # the latest version of <topic>-value
    assert produce(3, valueSchemaSubject=subject, valueSchemaVersion=1)["valueSchemaId"] == id_1
    v2 = schema_sidecar.produce_v2(topic, {"value_schema_id": id_2,
                                           "records": [{"value": {"n": 4, "label": "x"}}]}, "avro")
    assert v2.status_code == 200, v2.text
    assert v2.json()["value_schema_id"] == id_2
    assert v2.json()["offsets"][0].get("error_code") is None
    to_partition = schema_sidecar.produce_v2(topic, {"value_schema_id": id_1,
                                                     "records": [{"value": {"n": 5}}]},
                                             "avro", partition=0)
    assert to_partition.status_code == 200, to_partition.text
    assert to_partition.json()["offsets"][0]["partition"] == 0

    messages = broker.read_all(topic, len(expected))
    deserializer = AvroDeserializer(registry_client)
    found = {}
    for message in messages:
        value = deserializer(message.value(), value_context(topic))
        found[value["n"]] = header(message.value())[1]
        assert value == ({"n": value["n"], "label": "x"} if value["n"] % 2 == 0
                         else {"n": value["n"]})
        if value["n"] == 5:
            assert message.partition() == 0
    assert found == expected


# --- 5: bad records ----------------------------------------------------------------------------

def test_bad_records_are_refused_naming_the_field_and_nothing_is_produced(
        broker: Broker, schema_sidecar: SidecarHttp, schema_registry: SchemaRegistry) -> None:
    topic = broker.create_topic(random_name("bad"), 1)
    # One partition, so a record produced by mistake would come before the sentinel below.
    json_id = register(schema_registry.url, random_name("bad-json"), EVENT_SCHEMA, "JSON")
    proto_id = register(schema_registry.url, random_name("bad-proto"), PERSON_PROTO, "PROTOBUF")
    good_order = {**ORDER_AVRO_JSON}
    missing = {name: value for name, value in good_order.items() if name != "customer"}
    bad_zip = {**EVENT, "address": {"street": "1 Main St", "zip": "12 45"}}
    cases = [
        ("avro wrong type", {"valueFormat": "avro", "valueSchema": ORDER_SCHEMA,
                             "records": [{"value": {**good_order, "tags": "a"}}]},
         422, "RECORD_INVALID", "records[0].value.tags"),
        ("avro missing field", {"valueFormat": "avro", "valueSchema": ORDER_SCHEMA,
                                "records": [{"value": missing}]},
         422, "RECORD_INVALID", "records[0].value.customer"),
        ("avro unknown enum symbol", {"valueFormat": "avro", "valueSchema": ORDER_SCHEMA,
                                      "records": [{"value": {**good_order, "status": "LOST"}}]},
         422, "RECORD_INVALID", "records[0].value.status"),
        ("jsonschema invalid", {"valueFormat": "jsonschema", "valueSchemaId": json_id,
                                "records": [{"value": bad_zip}]},
         422, "RECORD_INVALID", "records[0].value.address.zip"),
        ("protobuf unknown field", {"valueFormat": "protobuf", "valueSchemaId": proto_id,
                                    "records": [{"value": {"name": "ann", "nickname": "a"}}]},
         422, "RECORD_INVALID", "records[0].value.nickname"),
        ("binary key not base64", {"keyFormat": "binary", "valueFormat": "binary",
                                   "records": [{"key": "not base64!", "value": "AAE="}]},
         400, "INVALID_BASE64", "records[0].key"),
    ]
    for case, body, status, code, field in cases:
        reply = schema_sidecar.produce(topic, body)
        assert reply.status_code == status, f"{case}: {reply.status_code} {reply.text}"
        answer = reply.json()
        assert (answer["code"], answer["statusCode"]) == (code, status), f"{case}: {answer}"
        assert field in answer["message"], f"{case}: {answer['message']!r} names no {field}"

    sentinel = schema_sidecar.produce(topic, {"valueFormat": "binary",
                                              "records": [{"value": "c2VudGluZWw="}]})
    assert sentinel.status_code == 200, sentinel.text
    messages = broker.read_until(topic, lambda found: any(
        message.value() == b"sentinel" for message in found))
    assert [message.value() for message in messages] == [b"sentinel"]


# --- 6: compatibility ------------------------------------------------------------------------

def test_an_incompatible_inline_schema_is_refused(
        broker: Broker, schema_sidecar: SidecarHttp, schema_registry: SchemaRegistry) -> None:
    topic = broker.create_topic(random_name("incompatible"), 1)
    subject = f"{topic}-value"
    set_compatibility(schema_registry.url, subject, "BACKWARD")
    fields = [{"name": "n", "type": "int"}]
    register(schema_registry.url, subject,
             json.dumps({"type": "record", "name": "Item", "fields": fields}))
    # A new field without a default: v2 readers cannot read v1 records.
    incompatible = json.dumps({"type": "record", "name": "Item",
                               "fields": fields + [{"name": "required", "type": "string"}]})

    reply = schema_sidecar.produce(topic, {"valueFormat": "avro", "valueSchema": incompatible,
                                           "records": [{"value": {"n": 1, "required": "x"}}]})
    assert reply.status_code == 409, reply.text
    assert reply.json()["code"] == "SCHEMA_INCOMPATIBLE"
    assert subject_versions(schema_registry.url, subject) == [1]


# --- 7: the schema cache, and the registry gone ------------------------------------------------

def test_cached_schemas_outlive_the_registry(
        broker: Broker, new_sidecar: Any, schema_registry: SchemaRegistry) -> None:
    host, port = schema_registry.url.removeprefix("http://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    try:
        sidecar = SidecarHttp(new_sidecar(settings={
            "schema_registry.url": f"http://127.0.0.1:{proxy.port}"}).info)
        topic = broker.create_topic(random_name("cached"), 1)
        inline = {"valueFormat": "avro", "valueSchema": ORDER_SCHEMA,
                  "records": [{"value": ORDER_AVRO_JSON}]}
        first, second = sidecar.produce(topic, inline), sidecar.produce(topic, inline)
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        schema_id = first.json()["valueSchemaId"]
        assert second.json()["valueSchemaId"] == schema_id
        assert sidecar.metric("kafka_sidecar_schema_registry_request_seconds_count",
                              operation="register") == 1
        uncached_id = register(schema_registry.url, random_name("uncached"),
                               json.dumps({"type": "record", "name": "Other",
                                           "fields": [{"name": "n", "type": "int"}]}))
    finally:
        proxy.close()

    by_cached_id = sidecar.produce(topic, {"valueFormat": "avro", "valueSchemaId": schema_id,
                                           "records": [{"value": ORDER_AVRO_JSON}]})
    assert by_cached_id.status_code == 200, by_cached_id.text
    by_uncached_id = sidecar.produce(topic, {"valueFormat": "avro", "valueSchemaId": uncached_id,
                                             "records": [{"value": {"n": 1}}]})
    assert by_uncached_id.status_code == 503, by_uncached_id.text
    assert by_uncached_id.json()["code"] == "SCHEMA_REGISTRY_UNAVAILABLE"
    assert int(by_uncached_id.headers["Retry-After"]) >= 1
    assert int(by_uncached_id.headers["x-retry-after-ms"]) > 0
    messages = broker.read_all(topic, 3)
    assert [header(message.value())[1] for message in messages] == [schema_id] * 3
