"""The message object handed to delivery callbacks, shaped like ``confluent_kafka.Message``.

:class:`Message` holds its fields. :class:`DeliveredMessage`, made for each record the sidecar
reports delivered (the hot path), wraps the queued event instead of copying its fields out.
"""

from __future__ import annotations

from typing import Any, Optional

from ._records import HEADERS, KEY, TOPIC, VALUE

Headers = Optional[list[tuple[str, Optional[bytes]]]]

TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1


class Message:
    """A produced record and its outcome: ``topic() partition() offset() key() value()
    headers() timestamp() error() latency()``, as on ``confluent_kafka.Message``.

    ``partition()`` and ``offset()`` are ``None`` when the record was not delivered, as in
    confluent-kafka; ``latency()`` is seconds from ``produce()`` to the delivery report.
    """

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_headers",
                 "_error", "_timestamp", "_latency")

    def __init__(
        self,
        topic: str,
        partition: Optional[int],
        offset: Optional[int],
        key: Optional[bytes],
        value: Optional[bytes],
        headers: Headers,
        error: Any,
        timestamp_ms: int,
        latency: float,
    ) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._headers = headers
        self._error = error
        self._timestamp = timestamp_ms  # the tuple is built only if asked for
        self._latency = latency

    def topic(self) -> str:
        """The topic the record was produced to."""
        return self._topic

    def partition(self) -> Optional[int]:
        """The partition written to, or ``None`` if the record was not delivered."""
        return self._partition

    def offset(self) -> Optional[int]:
        """The record's offset, or ``None`` if it was not delivered."""
        return self._offset

    def key(self) -> Optional[bytes]:
        """The record's key as bytes, or ``None``."""
        return self._key

    def value(self) -> Optional[bytes]:
        """The record's value as bytes, or ``None``."""
        return self._value

    def headers(self) -> Headers:
        """The headers as a list of ``(key, value)`` tuples, or ``None`` when there are none."""
        return list(self._headers) if self._headers else None

    def timestamp(self) -> tuple[int, int]:
        """``(timestamp type, milliseconds since the epoch)``, as in confluent-kafka."""
        if self._timestamp > 0:
            return (TIMESTAMP_CREATE_TIME, self._timestamp)
        return (TIMESTAMP_NOT_AVAILABLE, -1)

    def error(self) -> Any:
        """``None`` when delivered, else the ``KafkaError``."""
        return self._error

    def latency(self) -> float:
        """Seconds from ``produce()`` to the delivery report."""
        return self._latency

    def leader_epoch(self) -> Optional[int]:
        """Not reported by the sidecar; always ``None``."""
        return None

    def set_headers(self, headers: Headers) -> None:
        self._headers = headers

    def set_key(self, key: Optional[bytes]) -> None:
        self._key = key

    def set_value(self, value: Optional[bytes]) -> None:
        self._value = value

    def __len__(self) -> int:
        return len(self._value) if self._value is not None else 0

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic()!r}, partition={self.partition()}, "
                f"offset={self.offset()}, error={self.error()!r})")


class DeliveredMessage(Message):
    """A record the sidecar reported delivered, made from its event as ``poll()`` serves it:
    ``(record, partition, offset, timestamp_ms, latency_s)`` with the record a tuple laid out
    as in ``_records``. Fields are read from the event when asked for."""

    __slots__ = ("_event",)

    def __init__(self, event: tuple[Any, ...]) -> None:  # noqa: D107
        self._event = event

    def topic(self) -> str:
        return self._event[0][TOPIC]  # type: ignore[no-any-return]

    def partition(self) -> Optional[int]:
        return self._event[1]  # type: ignore[no-any-return]

    def offset(self) -> Optional[int]:
        return self._event[2]  # type: ignore[no-any-return]

    def key(self) -> Optional[bytes]:
        return self._event[0][KEY]  # type: ignore[no-any-return]

    def value(self) -> Optional[bytes]:
        return self._event[0][VALUE]  # type: ignore[no-any-return]

    def headers(self) -> Headers:
        headers = self._event[0][HEADERS]
        return list(headers) if headers else None

    def timestamp(self) -> tuple[int, int]:
        timestamp_ms = self._event[3]
        if timestamp_ms > 0:
            return (TIMESTAMP_CREATE_TIME, timestamp_ms)
        return (TIMESTAMP_NOT_AVAILABLE, -1)

    def error(self) -> Any:
        return None

    def latency(self) -> float:
        return self._event[4]  # type: ignore[no-any-return]

    def set_headers(self, headers: Headers) -> None:
        self._replace(HEADERS, tuple(headers) if headers else None)

    def set_key(self, key: Optional[bytes]) -> None:
        self._replace(KEY, key)

    def set_value(self, value: Optional[bytes]) -> None:
        self._replace(VALUE, value)

    def _replace(self, slot: int, field: Any) -> None:
        event = self._event
        record = event[0]
        self._event = (record[:slot] + (field,) + record[slot + 1:],) + event[1:]

    def __len__(self) -> int:
        value = self._event[0][VALUE]
        return len(value) if value is not None else 0
