"""kafka-sidecar's Python client: ``confluent_kafka.Producer``'s API over the pod's sidecar.

Migrate with one line::

    from kafka_sidecar import Producer   # was: from confluent_kafka import Producer

or, to choose by configuration only, ``from kafka_sidecar.compat import Producer``.
"""

from __future__ import annotations

# Registers the at-fork hooks that keep every librdkafka handle alive in forked children.
from . import _forksafe  # noqa: F401
from ._errors import HAVE_CONFLUENT_KAFKA, KafkaError, KafkaException
from ._message import Message
from ._producer import Producer

__all__ = ["HAVE_CONFLUENT_KAFKA", "KafkaError", "KafkaException", "Message", "Producer"]
__version__ = "0.1.0"
