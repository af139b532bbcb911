"""Kafka error and exception types, shared with confluent-kafka when it is installed.

When ``confluent_kafka`` is importable its own ``KafkaError`` / ``KafkaException`` classes are
re-exported, so an application's ``except KafkaException`` keeps catching what this client raises.
Otherwise small compatible stand-ins are defined. This module also maps the sidecar's machine
error codes (``QUEUE_FULL``, ``UNKNOWN_TOPIC`` ...) to librdkafka error codes.
"""

from __future__ import annotations

from typing import Any, Optional

try:  # pragma: no cover - which branch runs depends on the environment
    from confluent_kafka import KafkaError, KafkaException

    HAVE_CONFLUENT_KAFKA = True
except ImportError:  # pragma: no cover
    HAVE_CONFLUENT_KAFKA = False

    class KafkaError:  # type: ignore[no-redef]
        """A stand-in for ``confluent_kafka.KafkaError`` with the same accessors."""

        # The subset of librdkafka codes this client produces.
        _FAIL = -196
        _TRANSPORT = -195
        _MSG_TIMED_OUT = -192
        _UNKNOWN_PARTITION = -190
        _UNKNOWN_TOPIC = -188
        _INVALID_ARG = -186
        _TIMED_OUT = -185
        _QUEUE_FULL = -184
        _STATE = -172
        _PURGE_QUEUE = -152
        _PURGE_INFLIGHT = -151
        MSG_SIZE_TOO_LARGE = 10
        TOPIC_EXCEPTION = 17
        UNKNOWN_TOPIC_OR_PART = 3

        def __init__(
            self,
            error: int,
            reason: Optional[str] = None,
            fatal: bool = False,
            retriable: bool = False,
            txn_requires_abort: bool = False,
        ) -> None:
            self._code = error
            self._reason = reason if reason is not None else _code_name(error)
            self._fatal = fatal
            self._retriable = retriable
            self._txn_requires_abort = txn_requires_abort

        def code(self) -> int:
            return self._code

        def name(self) -> str:
            return _code_name(self._code)

        def str(self) -> str:
            return self._reason

        def fatal(self) -> bool:
            return self._fatal

        def retriable(self) -> bool:
            return self._retriable

        def txn_requires_abort(self) -> bool:
            return self._txn_requires_abort

        def __str__(self) -> str:
            return self._reason

        def __repr__(self) -> str:
            return f'KafkaError{{code={self.name()},val={self._code},str="{self._reason}"}}'

        def __eq__(self, other: object) -> bool:
            if isinstance(other, KafkaError):
                return self._code == other._code
            if isinstance(other, int):
                return self._code == other
            return NotImplemented

        def __hash__(self) -> int:
            return hash(self._code)

    class KafkaException(Exception):  # type: ignore[no-redef]
        """A stand-in for ``confluent_kafka.KafkaException``: ``args[0]`` is a ``KafkaError``."""

    def _code_name(code: int) -> str:
        for name, value in vars(KafkaError).items():
            if name.isupper() or name.startswith("_") and name[1:2].isupper():
                if value == code:
                    return name
        return str(code)


def make_error(code_name: str, reason: str, *, retriable: bool = False) -> Any:
    """Build a ``KafkaError`` from a librdkafka code name such as ``"_INVALID_ARG"``."""
    code = getattr(KafkaError, code_name, None)
    if not isinstance(code, int):
        code = KafkaError._FAIL
    return KafkaError(code, reason, retriable=retriable)


def invalid_arg(reason: str) -> Any:
    """The ``KafkaException(_INVALID_ARG)`` confluent-kafka raises for bad configuration."""
    return KafkaException(make_error("_INVALID_ARG", reason))


# Sidecar error codes (see proto/kafka_sidecar/v1/producer.proto) that end a record's life,
# mapped to the librdkafka code an application would have seen from a direct producer.
_TERMINAL_CODES = {
    "UNKNOWN_TOPIC": "_UNKNOWN_TOPIC",
    "INVALID_TOPIC": "TOPIC_EXCEPTION",
    "RECORD_TOO_LARGE": "MSG_SIZE_TOO_LARGE",
    "INVALID_PARTITION": "_UNKNOWN_PARTITION",
    "INVALID_ARGUMENT": "_INVALID_ARG",
    "DELIVERY_FAILED": "_FAIL",
    "MESSAGE_TIMED_OUT": "_MSG_TIMED_OUT",
}

QUEUE_FULL = "QUEUE_FULL"
SHUTTING_DOWN = "SHUTTING_DOWN"
NOT_DELIVERED_AT_SHUTDOWN = "NOT_DELIVERED_AT_SHUTDOWN"


def sidecar_error(error_code: str, error_message: str) -> Any:
    """Translate a sidecar error code into a ``KafkaError`` for a delivery callback.

    Codes already spelled like librdkafka's (``_MSG_TIMED_OUT``, ``MSG_SIZE_TOO_LARGE``) pass
    through unchanged, so the sidecar can forward librdkafka's own verdict.
    """
    name = _TERMINAL_CODES.get(error_code, error_code)
    code = getattr(KafkaError, name, None)
    if not isinstance(code, int):
        name = "_FAIL"
    reason = f"{error_code}: {error_message}" if error_message else error_code
    return make_error(name, reason)
