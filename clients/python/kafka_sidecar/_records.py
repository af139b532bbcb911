"""One produced record's life (its states) and the argument checks of ``produce()``.

A record is QUEUED in the local outbox, INFLIGHT in a batch whose ack has not come back,
ACCEPTED by the sidecar and awaiting its delivery report, DIRECT when handed to the fallback
confluent-kafka producer, and DONE once its callback has been queued. Only the first outcome of a
record counts: a later report for a DONE record is a duplicate and fires no second callback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ._errors import KafkaError, KafkaException

QUEUED = 0
INFLIGHT = 1
ACCEPTED = 2
DIRECT = 3
DONE = 4

Header = tuple[str, Optional[bytes]]


@dataclass(eq=False)
class Record:
    """A record from ``produce()`` until its delivery callback is queued."""

    record_id: int
    topic: str
    value: Optional[bytes]
    key: Optional[bytes]
    headers: Optional[list[Header]]
    partition: int
    timestamp_ms: int
    callback: Optional[Callable[..., Any]]
    size: int
    created: float
    state: int = QUEUED
    epoch: int = 0
    attempts: int = 0
    # True once an attempt may have reached Kafka without us hearing so.
    in_doubt: bool = False
    counted_duplicate: bool = False


def to_bytes(value: Any, what: str) -> Optional[bytes]:
    """``str`` is UTF-8 encoded and bytes-likes copied, as confluent-kafka does."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'")


def normalize_headers(headers: Any) -> Optional[list[Header]]:
    """Accept a dict or a list of ``(key, value)`` tuples; values are None, bytes or str."""
    if headers is None:
        return None
    if isinstance(headers, dict):
        items = list(headers.items())
    elif isinstance(headers, list):
        items = headers
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError("Headers are expected to be a list of (key, value) tuples")
    else:
        raise TypeError(
            "expected headers to be dict or list of (key, value) tuples, "
            f"not {type(headers).__name__}"
        )
    result: list[Header] = []
    for key, value in items:
        if value is not None and not isinstance(value, (bytes, str, bytearray, memoryview)):
            raise TypeError(
                "expected header value to be None, binary, or unicode string, "
                f"not {type(value).__name__}"
            )
        result.append((str(key), to_bytes(value, "header value")))
    return result or None


def make_record(
    record_id: int,
    topic: Any,
    value: Any,
    key: Any,
    partition: Any,
    callback: Optional[Callable[..., Any]],
    timestamp: Any,
    headers: Any,
    max_bytes: int,
) -> Record:
    """Check ``produce()``'s arguments like confluent-kafka and build a :class:`Record`."""
    if not isinstance(topic, str):
        raise TypeError(f"argument 1 must be str, not {type(topic).__name__}")
    value_bytes = to_bytes(value, "value")
    key_bytes = to_bytes(key, "key")
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise TypeError(f"'{type(partition).__name__}' object cannot be interpreted as an integer")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError(f"'{type(timestamp).__name__}' object cannot be interpreted as an integer")
    if callback is not None and not callable(callback):
        raise TypeError("on_delivery must be a callable")
    header_list = normalize_headers(headers)
    size = len(value_bytes or b"") + len(key_bytes or b"")
    for header_key, header_value in header_list or ():
        size += len(header_key) + len(header_value or b"")
    if size > max_bytes:
        raise KafkaException(
            KafkaError(
                KafkaError.MSG_SIZE_TOO_LARGE,
                "Unable to produce message: Broker: Message size too large",
            )
        )
    return Record(
        record_id=record_id,
        topic=topic,
        value=value_bytes,
        key=key_bytes,
        headers=header_list,
        partition=partition,
        timestamp_ms=timestamp,
        callback=callback,
        size=size,
        created=time.monotonic(),
    )
