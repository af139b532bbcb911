"""The hand-written ProduceBatch encoder writes exactly what the generated protobuf classes do.

No broker or sidecar needed: records of every shape (keys absent, empty or long, headers with
empty keys and values, partitions, timestamps, multi-byte lengths and ids, non-ASCII topics)
are encoded both ways and compared byte for byte, and decoded back.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import pytest

from kafka_sidecar._proto import producer_pb2
from kafka_sidecar._records import new_record, normalize_headers
from kafka_sidecar._wire import encode_batch, varint


def reference(batch_id: int, client_id: str, session_id: str, records: list[Any]) -> bytes:
    """The same batch built with the generated classes, as the client did before."""
    requests = []
    for record_id, topic, value, key, headers, partition, timestamp, *_ in records:
        request = producer_pb2.ProduceRequest(topic=topic, record_id=record_id)
        if value is not None:
            request.value = value
        if key is not None:
            request.key = key
        if partition >= 0:
            request.partition = partition
        if timestamp > 0:
            request.timestamp_ms = timestamp
        if headers:
            request.headers.extend(producer_pb2.Header(key=name, value=data or b"")
                                   for name, data in headers)
        requests.append(request)
    return producer_pb2.ProduceBatch(batch_id=batch_id, client_id=client_id,
                                     session_id=session_id,
                                     records=requests).SerializeToString()


def record(record_id: int, topic: str = "t", value: Optional[bytes] = b"v",
           key: Optional[bytes] = None, headers: Any = None, partition: int = -1,
           timestamp: int = 0) -> Any:
    return new_record(record_id, topic, value, key, normalize_headers(headers), partition,
                      timestamp, None, 0, 0.0)


SHAPES = [
    record(1),
    record(127, value=b"x" * 100),
    record(128, value=b"x" * 100),
    record(300, value=b"x" * 100, key=b"key"),
    record(16383, value=b"x" * 127),
    record(16384, value=b"x" * 128),
    record(2**21 + 5, value=b"x" * 20000, key=b"k" * 200),
    record(2**35, value=None),
    record(2**63 - 1, value=b""),
    record(500, key=b""),
    record(501, key=b"", value=None),
    record(502, partition=0),
    record(503, partition=2**31 - 1, timestamp=1_700_000_000_000),
    record(504, timestamp=1),
    record(505, headers=[("h", b"v")]),
    record(506, headers={"": None, "empty": b"", "ünïcode": "välue" * 40}),
    record(507, topic="tópico-ü"),
    record(508, topic="x" * 300, value=b"y" * 300),
    record(509, topic=""),
    record(0),
]


@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_each_record_shape_matches_protobuf(index: int) -> None:
    records = [SHAPES[index]]
    assert encode_batch(7, "client", "session", records) == reference(7, "client", "session",
                                                                          records)


@pytest.mark.parametrize("batch_id, client_id, session_id", [
    (0, "", ""), (1, "c", "s"), (2**40, "client" * 30, "session-ü")])
def test_batch_fields_and_mixed_records_match_protobuf(batch_id: int, client_id: str,
                                                        session_id: str) -> None:
    generator = random.Random(8)
    records = []
    record_id = generator.choice([1, 100, 16000])
    for _ in range(2000):
        record_id += generator.choice([1, 1, 1, 7, 200, 100000])
        records.append(record(
            record_id, topic=generator.choice(["t", "other", "tópico", "x" * 200]),
            value=generator.choice([None, b"", b"v" * 100, b"w" * 300, bytes(range(256))]),
            key=generator.choice([None, None, b"", b"k", b"k" * 150]),
            headers=generator.choice([None, None, [("a", b"b")], {"": None, "h": "v"}]),
            partition=generator.choice([-1, -1, 0, 5]),
            timestamp=generator.choice([0, 0, 1_700_000_000_000])))
    for count in (0, 1, 2, 7, 2000):
        expected = reference(batch_id, client_id, session_id, records[:count])
        assert encode_batch(batch_id, client_id, session_id, records[:count], {}) == expected


def test_decodes_back_to_the_records() -> None:
    records = [record(1000 + index, value=b"%d" % index, key=b"k" if index % 2 else None)
               for index in range(300)]
    decoded = producer_pb2.ProduceBatch.FromString(encode_batch(3, "c", "s", records))
    assert (decoded.batch_id, decoded.client_id, decoded.session_id) == (3, "c", "s")
    assert [request.record_id for request in decoded.records] == list(range(1000, 1300))
    assert [request.value for request in decoded.records] == [b"%d" % i for i in range(300)]
    assert [request.HasField("key") for request in decoded.records] == [
        bool(index % 2) for index in range(300)]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1])
def test_varint(value: int) -> None:
    # timestamp_ms has explicit presence, so even 0 is written: tag 0x48, then the varint.
    message = producer_pb2.ProduceRequest(timestamp_ms=value).SerializeToString()
    assert varint(value) == message[1:]
