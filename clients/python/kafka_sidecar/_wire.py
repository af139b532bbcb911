"""The ``ProduceBatch`` wire format, written by hand from records.

Building one ``ProduceRequest`` message object per record cost more than everything else the
client does per record; this writes the same bytes directly (a unit test compares them with the
generated protobuf classes for byte equality). Fields go out in field-number order with proto3
presence rules, as protobuf's own serializer writes them:

``ProduceBatch``: 1 batch_id (varint), 2 client_id, 3 session_id, 4 records (length-delimited).
``ProduceRequest``: 1 topic, 2 key (optional: present even when empty), 3 headers, 4 value,
5 partition (optional), 8 record_id, 9 timestamp_ms (optional). 6 client_id and 7 session_id are
left to the batch. ``Header``: 1 key, 2 value.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ._records import Header, Record

# varint(n) for n < 128 is one byte; for larger n, _CONTINUED[n & 127] + varint(n >> 7).
_SMALL = [bytes((n,)) for n in range(128)]
_CONTINUED = [bytes((n | 0x80,)) for n in range(128)]
_LENGTH_CACHE: dict[int, bytes] = {}
_LENGTH_CACHE_LIMIT = 4096

_BATCH_ID = b"\x08"
_CLIENT_ID = b"\x12"
_SESSION_ID = b"\x1a"
_RECORD = b"\x22"
_TOPIC = b"\x0a"
_KEY = b"\x12"
_HEADER = b"\x1a"
_VALUE = b"\x22"
_PARTITION = b"\x28"
_RECORD_ID = b"\x40"
_TIMESTAMP = b"\x48"
_HEADER_KEY = b"\x0a"
_HEADER_VALUE = b"\x12"
# The record_id field's tag and first varint byte, for ids of 128 and more, by id & 127.
_ID_LOW = [_RECORD_ID + low for low in _CONTINUED]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length(value: int) -> bytes:
    """``varint`` for lengths, cached: a batch repeats the same few sizes."""
    if value < 128:
        return _SMALL[value]
    cached = _LENGTH_CACHE.get(value)
    if cached is None:
        cached = varint(value)
        if len(_LENGTH_CACHE) < _LENGTH_CACHE_LIMIT:
            _LENGTH_CACHE[value] = cached
    return cached


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + _length(len(data)) + data


def topic_field(topic: str) -> bytes:
    """Field 1 of a ``ProduceRequest``; raises ``UnicodeEncodeError`` for unencodable text."""
    return _field(_TOPIC, topic.encode("utf-8")) if topic else b""


def _headers_field(headers: Sequence[Header]) -> bytes:
    parts = []
    for key, value in headers:
        header = b""
        if key:
            header = _field(_HEADER_KEY, key.encode("utf-8"))
        if value:
            header += _field(_HEADER_VALUE, value)
        parts.append(_field(_HEADER, header))
    return b"".join(parts)


def _record_body(record_id: int, topic: bytes, value: Optional[bytes], key: Optional[bytes],
                 headers: Optional[Sequence[Header]], partition: int, timestamp: int) -> bytes:
    """A ``ProduceRequest`` with any of the optional fields (the less common path)."""
    parts = [topic]
    if key is not None:
        parts.append(_field(_KEY, key))
    if headers:
        parts.append(_headers_field(headers))
    if value:
        parts.append(_field(_VALUE, value))
    if partition >= 0:
        parts.append(_PARTITION + varint(partition))
    if record_id:
        parts.append(_RECORD_ID + varint(record_id))
    if timestamp > 0:
        parts.append(_TIMESTAMP + varint(timestamp))
    return b"".join(parts)


def encode_batch(batch_id: int, client_id: str, session_id: str,
                 records: Sequence[Record], topics: Optional[dict[str, bytes]] = None) -> bytes:
    """The serialized ``ProduceBatch`` of ``records``.

    ``topics`` caches each topic's encoded field. Records with only a topic, a value and
    perhaps a key (the common shapes) are framed inline, their lengths computed rather than
    measured; record ids in a batch are mostly consecutive, so the varint of
    ``record_id >> 7`` is reused between records.
    """
    topics = {} if topics is None else topics
    parts = []
    if batch_id:
        parts.append(_BATCH_ID + varint(batch_id))
    if client_id:
        parts.append(_field(_CLIENT_ID, client_id.encode("utf-8")))
    if session_id:
        parts.append(_field(_SESSION_ID, session_id.encode("utf-8")))
    append, join = parts.append, b"".join
    small, id_low, length = _SMALL, _ID_LOW, _length
    last_high = -1
    high_bytes = b""
    id_size = 0
    last_name: Optional[str] = None
    topic = b""
    # What comes before the value of an unkeyed record, by value size: the record's tag and
    # length, the topic field, the value's tag and length. Valid for one topic and id size.
    prefixes: dict[int, bytes] = {}
    # Unpacking the whole record (its layout: see _records) beats indexing it seven times.
    for record_id, name, value, key, headers, partition, timestamp, _, _, _ in records:
        if name is not last_name:
            last_name = name
            topic = topics.get(name) or topic_field(name)
            prefixes = {}
        if (not value or headers is not None or partition >= 0 or timestamp > 0
                or record_id < 128):
            body = _record_body(record_id, topic, value, key, headers, partition, timestamp)
            append(_RECORD + length(len(body)) + body)
            continue
        high = record_id >> 7
        if high != last_high:
            last_high = high
            high_bytes = varint(high)
            if id_size != 2 + len(high_bytes):
                id_size = 2 + len(high_bytes)
                prefixes = {}
        size = len(value)
        if key is None:
            prefix = prefixes.get(size)
            if prefix is None:
                value_length = length(size)
                prefix = prefixes[size] = (
                    _RECORD + length(len(topic) + 1 + len(value_length) + size + id_size)
                    + topic + _VALUE + value_length)
            append(join((prefix, value, id_low[record_id & 127], high_bytes)))
        else:
            key_size = len(key)
            key_length = small[key_size] if key_size < 128 else length(key_size)
            value_length = small[size] if size < 128 else length(size)
            body_size = (len(topic) + 2 + len(key_length) + key_size + len(value_length) + size
                         + id_size)
            append(join((_RECORD, small[body_size] if body_size < 128 else length(body_size),
                         topic, _KEY, key_length, key, _VALUE, value_length, value,
                         id_low[record_id & 127], high_bytes)))
    return join(parts)
