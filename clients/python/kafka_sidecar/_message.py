"""The message object handed to delivery callbacks, shaped like ``confluent_kafka.Message``."""

from __future__ import annotations

from typing import Any, Optional

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
        self._timestamp = (
            (TIMESTAMP_CREATE_TIME, timestamp_ms) if timestamp_ms > 0 else (TIMESTAMP_NOT_AVAILABLE, -1)
        )
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
        return self._timestamp

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
        return (f"Message(topic={self._topic!r}, partition={self._partition}, "
                f"offset={self._offset}, error={self._error!r})")
