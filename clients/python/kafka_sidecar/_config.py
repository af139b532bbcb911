"""Configuration: splits a confluent-kafka style dict into sidecar settings and direct settings.

The configuration an application already passes to ``confluent_kafka.Producer`` is accepted
unchanged; ``sidecar.*`` keys are added on top. Environment variables (``KAFKA_SIDECAR_MODE``,
``KAFKA_SIDECAR_ADDRESS``) override the dict so an operator can flip a deployment without a code
change. Errors are raised exactly as confluent-kafka raises them: ``KafkaException`` wrapping a
``KafkaError`` with code ``_INVALID_ARG`` for unknown keys and bad values, ``TypeError`` for a
non-dict configuration or a non-callable ``error_cb``/``stats_cb``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from ._errors import HAVE_CONFLUENT_KAFKA, invalid_arg

MODES = ("sidecar", "direct", "auto")
DEFAULT_ADDRESS = "127.0.0.1:50051"
ENV_MODE = "KAFKA_SIDECAR_MODE"
ENV_ADDRESS = "KAFKA_SIDECAR_ADDRESS"

# sidecar.* keys and their defaults (milliseconds where the name says so).
SIDECAR_KEYS: dict[str, Any] = {
    "sidecar.mode": "auto",
    "sidecar.address": DEFAULT_ADDRESS,
    "sidecar.connect.timeout.ms": 5000,
    "sidecar.request.timeout.ms": 10000,
    "sidecar.health.interval.ms": 1000,
    # Batching window toward the sidecar; see client_linger_s. None: derived from linger.ms.
    "sidecar.linger.ms": None,
}

# librdkafka keys this client interprets itself, with librdkafka's defaults. Aliases map to the
# canonical name librdkafka reports in its error messages.
_ALIASES = {
    "linger.ms": "queue.buffering.max.ms",
    "delivery.timeout.ms": "message.timeout.ms",
}
_INTERPRETED: dict[str, float] = {
    "queue.buffering.max.ms": 5,
    "batch.num.messages": 10000,
    "batch.size": 1000000,
    "queue.buffering.max.messages": 100000,
    "queue.buffering.max.kbytes": 1048576,
    "message.timeout.ms": 300000,
    "message.max.bytes": 1000000,
}
# Python-level keys of confluent-kafka that take callables or objects, not librdkafka strings.
_PYTHON_KEYS = ("on_delivery", "error_cb", "stats_cb", "throttle_cb", "oauth_cb", "logger")


@dataclass
class Settings:
    """Everything the producer needs, validated."""

    mode: str
    address: str
    connect_timeout_s: float
    request_timeout_s: float
    health_interval_s: float
    client_id: str
    linger_s: float
    batch_num_messages: int
    batch_max_bytes: int
    queue_max_messages: int
    queue_max_bytes: int
    message_timeout_s: float
    message_max_bytes: int
    on_delivery: Optional[Callable[..., Any]]
    error_cb: Optional[Callable[..., Any]]
    stats_cb: Optional[Callable[..., Any]]
    only_errors: bool
    logger: logging.Logger
    direct_conf: dict[str, Any] = field(default_factory=dict)


def merge(conf: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Combine ``Producer(conf, **kwargs)`` the way confluent-kafka does."""
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise TypeError("expected configuration dict")
    merged = dict(conf)
    merged.update(kwargs)
    return merged


def resolve_mode(conf: Mapping[str, Any], env: Mapping[str, str], default: str) -> str:
    """Pick the mode: environment first, then ``sidecar.mode``, then ``default``."""
    raw = env.get(ENV_MODE) or conf.get("sidecar.mode") or default
    if not isinstance(raw, str) or raw.strip().lower() not in MODES:
        source = ENV_MODE if env.get(ENV_MODE) else "sidecar.mode"
        raise invalid_arg(
            f'Invalid value "{raw}" for configuration property "{source}": '
            f"expected one of {', '.join(MODES)}"
        )
    return raw.strip().lower()


def strip_sidecar_keys(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration a real ``confluent_kafka.Producer`` accepts: ``sidecar.*`` removed."""
    return {key: value for key, value in conf.items() if not str(key).startswith("sidecar.")}


def parse(
    conf: Mapping[str, Any],
    env: Optional[Mapping[str, str]] = None,
    default_mode: str = "auto",
) -> Settings:
    """Validate ``conf`` (already merged with kwargs) and return :class:`Settings`."""
    env = os.environ if env is None else env
    for key in conf:
        if not isinstance(key, str):
            raise invalid_arg(f'No such configuration property: "{key}"')
        if key.startswith("sidecar.") and key not in SIDECAR_KEYS:
            raise invalid_arg(f'No such configuration property: "{key}"')
    mode = resolve_mode(conf, env, default_mode)
    address = env.get(ENV_ADDRESS) or conf.get("sidecar.address") or DEFAULT_ADDRESS
    if not isinstance(address, str) or not address.strip():
        raise invalid_arg(f'Invalid value for configuration property "sidecar.address": {address!r}')
    direct_conf = strip_sidecar_keys(conf)
    _validate_librdkafka(direct_conf, need_direct=mode != "sidecar")
    values = _interpreted_values(direct_conf)
    on_delivery = direct_conf.get("on_delivery")
    if on_delivery is not None and not callable(on_delivery):
        raise invalid_arg("on_delivery requires a callable object")
    for name in ("error_cb", "stats_cb"):
        value = direct_conf.get(name)
        if value is not None and not callable(value):
            raise TypeError(f"expected {name} property as a callable function")
    logger = direct_conf.get("logger")
    if not isinstance(logger, logging.Logger):
        logger = logging.getLogger("kafka_sidecar")
    return Settings(
        mode=mode,
        address=address.strip(),
        connect_timeout_s=_sidecar_ms(conf, "sidecar.connect.timeout.ms") / 1000,
        request_timeout_s=_sidecar_ms(conf, "sidecar.request.timeout.ms") / 1000,
        health_interval_s=_sidecar_ms(conf, "sidecar.health.interval.ms") / 1000,
        client_id=str(direct_conf.get("client.id", "rdkafka")),
        linger_s=_client_linger_s(conf, direct_conf, values),
        batch_num_messages=max(1, int(values["batch.num.messages"])),
        batch_max_bytes=max(1, int(values["batch.size"])),
        queue_max_messages=max(1, int(values["queue.buffering.max.messages"])),
        queue_max_bytes=max(1, int(values["queue.buffering.max.kbytes"])) * 1024,
        message_timeout_s=values["message.timeout.ms"] / 1000,
        message_max_bytes=int(values["message.max.bytes"]),
        on_delivery=on_delivery,
        error_cb=direct_conf.get("error_cb"),
        stats_cb=direct_conf.get("stats_cb"),
        only_errors=_bool(direct_conf.get("delivery.report.only.error", False)),
        logger=logger,
        direct_conf=direct_conf,
    )


def new_session_id(client_id: str) -> str:
    """A session id unique to this producer in this process: client, host, pid, random."""
    return f"{client_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _client_linger_s(conf: Mapping[str, Any], direct_conf: Mapping[str, Any],
                     values: Mapping[str, float]) -> float:
    """How long the client holds records before sending them to the sidecar.

    The sidecar lingers ``linger.ms`` too (across all workers, where batching pays), so a client
    linger would add to every record's latency. Unless ``sidecar.linger.ms`` says otherwise the
    client batches naturally: a batch leaves as soon as the previous one is answered, so records
    coalesce exactly while the link is busy and never wait longer than the app's ``linger.ms``.
    The app's ``linger.ms`` still applies to the direct (fallback) producer.
    """
    del direct_conf, values  # linger.ms is the sidecar's and the fallback producer's business
    if conf.get("sidecar.linger.ms") is not None:
        return _sidecar_ms(conf, "sidecar.linger.ms") / 1000
    return 0.0


def _sidecar_ms(conf: Mapping[str, Any], key: str) -> float:
    raw = conf.get(key, SIDECAR_KEYS[key])
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise invalid_arg(f'Invalid value for configuration property "{key}"') from None
    if value < 0:
        raise invalid_arg(f'Invalid value for configuration property "{key}"')
    return value


def _interpreted_values(conf: Mapping[str, Any]) -> dict[str, float]:
    values = dict(_INTERPRETED)
    for key, raw in conf.items():
        canonical = _ALIASES.get(key, key)
        if canonical not in _INTERPRETED:
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            values[canonical] = float(raw)
        except (TypeError, ValueError):
            raise invalid_arg(
                f'Invalid value for configuration property "{canonical}"'
            ) from None
        if values[canonical] < 0:
            raise invalid_arg(f'Invalid value for configuration property "{canonical}"')
    return values


def _bool(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() in ("true", "1", "yes", "on")
    return bool(raw)


def _validate_librdkafka(conf: Mapping[str, Any], need_direct: bool) -> None:
    """Let librdkafka itself judge every key, so errors match confluent-kafka's exactly.

    A throwaway producer without ``bootstrap.servers`` opens no connection and logs nothing at
    ``log_level`` 0; it costs about a millisecond. Without confluent-kafka only the keys this
    client interprets are checked (by :func:`_interpreted_values`).
    """
    if not HAVE_CONFLUENT_KAFKA:
        if need_direct:
            raise invalid_arg(
                "sidecar.mode=auto/direct needs confluent-kafka: "
                "pip install 'kafka-sidecar[direct]', or set sidecar.mode=sidecar"
            )
        return
    import confluent_kafka

    probe = {
        key: value
        for key, value in conf.items()
        if key not in ("bootstrap.servers", "metadata.broker.list", "oauth_cb", "logger")
    }
    probe["log_level"] = 0
    producer = confluent_kafka.Producer(probe)
    del producer
