"""A shim that picks the producer implementation from configuration alone.

An application imports ``Producer`` from here once; an operator then chooses per deployment with
``KAFKA_SIDECAR_MODE`` (or ``sidecar.mode``):

* ``direct`` (the default here): a plain ``confluent_kafka.Producer`` with ``sidecar.*`` keys
  removed, exactly what the application had before;
* ``sidecar`` or ``auto``: :class:`kafka_sidecar.Producer`.

Example::

    from kafka_sidecar.compat import KafkaException, Producer

    producer = Producer({"bootstrap.servers": "kafka:9092", "client.id": "orders-api"})
"""

from __future__ import annotations

import os
from typing import Any, Optional

from . import _config
from ._errors import HAVE_CONFLUENT_KAFKA, KafkaError, KafkaException
from ._producer import Producer as SidecarProducer

__all__ = ["KafkaError", "KafkaException", "Producer", "SidecarProducer"]

DEFAULT_MODE = "direct"


def Producer(conf: Optional[dict[str, Any]] = None, **kwargs: Any) -> Any:  # noqa: N802
    """Return a ``confluent_kafka.Producer`` or a :class:`kafka_sidecar.Producer`, by mode."""
    merged = _config.merge(conf, kwargs)
    mode = _config.resolve_mode(merged, os.environ, DEFAULT_MODE)
    if mode == "direct":
        if not HAVE_CONFLUENT_KAFKA:
            raise KafkaException(KafkaError(
                KafkaError._INVALID_ARG,
                "sidecar.mode=direct needs confluent-kafka: pip install 'kafka-sidecar[direct]'"))
        import confluent_kafka

        return confluent_kafka.Producer(_config.strip_sidecar_keys(merged))
    merged["sidecar.mode"] = mode
    return SidecarProducer(merged)
