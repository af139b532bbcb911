"""One produced record's life (its layout and states) and the argument checks of ``produce()``.

A record is QUEUED in the local outbox, INFLIGHT once sent to the sidecar (in a batch whose ack
may or may not have come back) until its delivery report arrives, DIRECT when handed to the
fallback confluent-kafka producer, and DONE once its callback has been queued. Only the first
outcome of a record counts: a later report for a DONE record is a duplicate and fires no second
callback.

A record is an immutable ``tuple`` indexed by the constants below: ``produce()`` makes one per
call, a tuple display costs a fifth of an instance's ``__init__``, and a tuple of numbers,
strings and bytes is untracked by the garbage collector after its first collection, so the
records waiting in the queue cost nothing to later collections (objects with attributes would
be traversed by every one). A record's state therefore lives in the core's containers, not in
the record (see ``_core``): pending (not DONE), in flight (INFLIGHT), sent direct (DIRECT).
Headers are a tuple of ``(key, value)`` tuples for the same reason. Only the client's own
modules touch records.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ._errors import KafkaError, KafkaException

# Slots of a record.
ID = 0
TOPIC = 1
VALUE = 2
KEY = 3
HEADERS = 4
PARTITION = 5
TIMESTAMP = 6
CALLBACK = 7
SIZE = 8
CREATED = 9

Record = tuple  # see the slots above
Header = tuple[str, Optional[bytes]]
Headers = tuple[Header, ...]


def new_record(record_id: int, topic: str, value: Optional[bytes], key: Optional[bytes],
               headers: Optional[Headers], partition: int, timestamp_ms: int,
               callback: Optional[Callable[..., Any]], size: int, created: float) -> Record:
    """A record (the hot path in ``Core.produce`` builds the same tuple inline)."""
    return (record_id, topic, value, key, headers, partition, timestamp_ms, callback, size,
            created)


def to_bytes(value: Any, what: str) -> Optional[bytes]:
    """``str`` is UTF-8 encoded and bytes-likes copied, as confluent-kafka does."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'")


def normalize_headers(headers: Any) -> Optional[Headers]:
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
    return tuple(result) or None


def check_arguments(topic: Any, partition: Any, timestamp: Any,
                    callback: Optional[Callable[..., Any]]) -> None:
    """Raise ``TypeError`` for what confluent-kafka refuses; the hot path checks types inline
    and calls this only when something is unusual."""
    if not isinstance(topic, str):
        raise TypeError(f"argument 1 must be str, not {type(topic).__name__}")
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise TypeError(f"'{type(partition).__name__}' object cannot be interpreted as an integer")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError(f"'{type(timestamp).__name__}' object cannot be interpreted as an integer")
    if callback is not None and not callable(callback):
        raise TypeError("on_delivery must be a callable")


def headers_size(headers: Optional[Headers]) -> int:
    size = 0
    for header_key, header_value in headers or ():
        size += len(header_key) + len(header_value or b"")
    return size


def too_large() -> KafkaException:
    return KafkaException(
        KafkaError(
            KafkaError.MSG_SIZE_TOO_LARGE,
            "Unable to produce message: Broker: Message size too large",
        )
    )
