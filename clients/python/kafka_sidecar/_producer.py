"""``kafka_sidecar.Producer``: a fork-safe stand-in for ``confluent_kafka.Producer``.

Example::

    from kafka_sidecar import Producer

    producer = Producer({"bootstrap.servers": "kafka:9092", "client.id": "orders-api",
                         "sidecar.mode": "auto"})
    producer.produce("orders", value=b"{}", key=b"42",
                     on_delivery=lambda err, msg: print(err, msg.offset()))
    producer.flush(10)

Everything a process owns (records, threads, gRPC channel, fallback producer) sits in a
per-process core. A forked child notices (``os.register_at_fork`` plus a pid check), abandons the
parent's core without touching its locks or sockets, and starts an empty one with a new session.
Inherited librdkafka handles, this client's and the application's, are never destroyed in a child
(see ``_forksafe``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Any, Callable, Optional

from . import _config
from ._core import Core
from ._errors import KafkaError, KafkaException
from ._records import check_arguments, headers_size, normalize_headers, to_bytes, too_large
from ._routes import (Routes, forget_all_after_fork, pause_all_for_fork,
                      resume_all_after_fork)
from ._transport import SidecarChannel

# Cores and route threads abandoned by fork. Their gRPC channels belong to the parent: closing
# them in the child could block on locks of threads that do not exist here, so they are kept
# alive and never touched again. Their librdkafka handles are kept by _forksafe, even past exit.
_abandoned: list[Any] = []
_getpid = os.getpid
_monotonic = time.monotonic
_producers: "weakref.WeakSet[Producer]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    forget_all_after_fork()
    for producer in list(_producers):
        producer._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=pause_all_for_fork, after_in_parent=resume_all_after_fork,
                        after_in_child=_after_fork_in_child)


class Producer:
    """Produce to Kafka through the pod's kafka-sidecar, with the confluent-kafka API.

    ``conf`` is the dict you would give ``confluent_kafka.Producer`` plus optional ``sidecar.*``
    keys (see the README). Raises ``KafkaException`` (``_INVALID_ARG``) for unknown keys or bad
    values, and ``KafkaException`` (``_TRANSPORT``) when ``sidecar.mode`` is ``sidecar`` and the
    sidecar does not answer within ``sidecar.connect.timeout.ms``.
    """

    def __init__(self, conf: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        merged = _config.merge(conf, kwargs)
        self._settings = _config.parse(merged)
        if self._settings.mode == "sidecar":
            _check_reachable(self._settings)
        self._lock = threading.Lock()
        self._core = Core(self._settings)
        self._routes: Optional[Routes] = None
        _producers.add(self)

    # ---- the confluent_kafka.Producer API ----------------------------------------------------

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1,
                on_delivery: Optional[Callable[..., Any]] = None,
                callback: Optional[Callable[..., Any]] = None, timestamp: int = 0,
                headers: Any = None) -> None:
        """Queue a record. ``on_delivery(err, msg)`` (alias ``callback``) runs from a later
        ``poll()``/``flush()``. Raises ``BufferError`` when the local queue is full.

        >>> producer.produce("orders", b"{}", key="42", headers={"source": "api"})
        """
        # The hot path of the client, so written out here rather than spread over calls: the
        # checks confluent-kafka makes, then one lock round to queue the record in the core.
        core = self._core
        if core.pid != _getpid():
            core = self._current_core()
        if type(value) is not bytes and value is not None:
            value = to_bytes(value, "value")
        if type(key) is not bytes and key is not None:
            key = to_bytes(key, "key")
        if type(topic) is not str or type(partition) is not int or type(timestamp) is not int:
            check_arguments(topic, partition, timestamp, None)
        callback = on_delivery or callback
        if callback is not None and not callable(callback):
            raise TypeError("on_delivery must be a callable")
        size = 0 if value is None else len(value)
        if key is not None:
            size += len(key)
        if headers is not None:
            headers = normalize_headers(headers)
            size += headers_size(headers)
        if size > core.message_max_bytes:
            raise too_large()
        if topic not in core.topics:
            core.cache_topic(topic)  # raises here, not in the sender, if unencodable
        created = _monotonic()
        lock = core.lock
        lock.acquire()  # not `with`: on Python 3.11 that costs three times acquire + release
        try:
            pending = core.pending
            if (len(pending) >= core.queue_max_messages
                    or core.queued_bytes + size > core.queue_max_bytes):
                raise BufferError("Local: Queue full")
            record_id = core.next_record_id
            core.next_record_id = record_id + 1
            # The layout of _records.new_record, inline.
            record = (record_id, topic, value, key, headers, partition, timestamp, callback, size,
                      created)
            pending[record_id] = record
            outbox = core.outbox
            outbox.append(record)
            core.queued_bytes += size
            if core.sender_waiting:
                backlog = len(outbox)
                if backlog == 1 or backlog >= core.batch_num_messages:
                    core.sender_waiting = False
                    core.cond.notify_all()
        finally:
            lock.release()
        if not core.started:
            self._start_routes(core)

    def poll(self, timeout: Optional[float] = None) -> int:
        """Serve delivery callbacks, waiting up to ``timeout`` seconds (None or < 0: forever)
        for the first. Returns how many ran.

        >>> producer.poll(0)
        """
        return self._current_core().serve(timeout, until_empty=False)

    def flush(self, timeout: Optional[float] = None) -> int:
        """Send everything now and serve callbacks until no record is pending or ``timeout``
        seconds pass. Returns the number of records and events still pending.

        >>> assert producer.flush(30) == 0
        """
        core = self._current_core()
        core.serve(timeout, until_empty=True)
        return len(core)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Fail queued (``_PURGE_QUEUE``) and in-flight (``_PURGE_INFLIGHT``) records; their
        callbacks run from the next ``poll()``/``flush()``. A purged in-flight record may still
        be written by the sidecar.
        """
        core = self._current_core()
        direct_records = core.purge(in_queue, in_flight)
        routes = self._routes
        direct = routes.direct if routes is not None else None  # close() may release it
        if direct_records and direct is not None:
            direct.purge(in_queue, in_flight, blocking)

    def __len__(self) -> int:
        """Records not yet reported plus callbacks not yet served, as in confluent-kafka."""
        return len(self._current_core())

    def __bool__(self) -> bool:
        return True

    # ---- additions -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this producer in this process: produced, sent, acked, failed, resent,
        duplicates_possible, fallback_switches, recoveries, queue_depth, latency_ms
        percentiles, current route and session.

        >>> producer.stats()["acked"]
        """
        return self._current_core().stats_snapshot()

    @property
    def mode(self) -> str:
        """The configured mode: ``sidecar``, ``direct`` or ``auto``."""
        return self._settings.mode

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then stop this process's background threads. Returns records left pending."""
        remaining = self.flush(timeout)
        with self._lock:
            routes, self._routes = self._routes, None
        if routes is not None:
            routes.stop(timeout)
        return remaining

    # ---- fork safety -------------------------------------------------------------------------

    def _current_core(self) -> Core:
        core = self._core
        if core.pid != os.getpid():  # forked without our at-fork hook (e.g. a C-level fork)
            self._reset_after_fork()
            core = self._core
        return core

    def _start_routes(self, core: Core) -> None:
        with self._lock:
            if not core.started and self._routes is None and self._core is core:
                core.started = True
                self._routes = Routes(core)
                self._routes.start()
                # Dropping the producer stops its threads, as dropping a confluent one would.
                weakref.finalize(self, self._routes.shutdown)

    def _reset_after_fork(self) -> None:
        if self._core.pid == os.getpid():
            return
        _abandoned.append((self._core, self._routes))
        self._core.stats.on_dropped(len(self._core.pending))
        self._lock = threading.Lock()
        self._core = Core(self._settings)
        self._routes = None


def _check_reachable(settings: _config.Settings) -> None:
    """``sidecar`` mode has no fallback, so a missing sidecar is a construction error."""
    channel = SidecarChannel(settings.address)
    try:
        if not channel.healthy(settings.connect_timeout_s):
            raise KafkaException(KafkaError(
                KafkaError._TRANSPORT,
                f"kafka-sidecar at {settings.address} did not answer SERVING within "
                f"{settings.connect_timeout_s:g}s (sidecar.connect.timeout.ms)"))
    finally:
        channel.close()
