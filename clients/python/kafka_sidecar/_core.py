"""The per-process state of one producer: pending records, the outbox, the event queue.

Application threads call :meth:`Core.produce`, :meth:`Core.serve` and :meth:`Core.purge`;
background threads (see ``_routes``) move records along and resolve them. All shared state is
guarded by one lock; callbacks are queued as events and run by the application's own thread in
``poll()``/``flush()``, never by a background thread, and never while the lock is held.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable, Optional

import threading

from ._config import Settings, new_session_id
from ._errors import KafkaError, make_error
from ._message import Message
from ._records import ACCEPTED, DIRECT, DONE, INFLIGHT, QUEUED, Record, make_record
from ._stats import Stats

# Where new records go. CONNECTING: first health probe. SIDECAR: batches to the sidecar.
# DIRECT: fallback producer. WAITING: sidecar lost in `sidecar` mode, probing until it is back.
# DRAINING: sidecar healthy again, waiting for the direct producer's records to finish first.
CONNECTING = "connecting"
SIDECAR = "sidecar"
DIRECT_ROUTE = "direct"
WAITING = "waiting"
DRAINING = "draining"

Event = tuple[Callable[..., Any], tuple[Any, ...]]


class Core:
    """Records, routes and events of one producer in one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.pending: dict[int, Record] = {}
        self.outbox: deque[Record] = deque()
        self.events: deque[Event] = deque()
        self.stats = Stats(settings.client_id)
        self.queued_bytes = 0
        self.next_record_id = 1
        self.route = DIRECT_ROUTE if settings.mode == "direct" else CONNECTING
        self.epoch = 0
        self.session_base = new_session_id(settings.client_id)
        self.session_id = ""
        self.last_seq = 0
        self.reports_lost = 0
        self.flushing = 0
        self.closed = False
        self.retry_at = 0.0
        self.next_probe = 0.0
        self.direct_outstanding = 0
        self.stream: Any = None
        self.started = False
        # Fork quiescing (see Routes.pause_for_fork): threads inside a gRPC call, and whether
        # the delivery stream was cancelled only to let a fork happen.
        self.fork_paused = False
        self.in_grpc = 0
        self.stream_paused = False

    # ---- application side -------------------------------------------------------------

    def produce(self, topic: Any, value: Any, key: Any, partition: Any,
                callback: Optional[Callable[..., Any]], timestamp: Any, headers: Any) -> bool:
        """Queue one record; returns True when it is the first produce (threads must start)."""
        record = make_record(0, topic, value, key, partition, callback, timestamp, headers,
                             self.settings.message_max_bytes)
        with self.lock:
            if (len(self.pending) >= self.settings.queue_max_messages
                    or self.queued_bytes + record.size > self.settings.queue_max_bytes):
                raise BufferError("Local: Queue full")
            record.record_id = self.next_record_id
            self.next_record_id += 1
            self.pending[record.record_id] = record
            self.outbox.append(record)
            self.queued_bytes += record.size
            self.stats.on_produced()
            backlog = len(self.outbox)
            if backlog == 1 or backlog >= self.settings.batch_num_messages:
                self.cond.notify_all()
            first = not self.started
            self.started = True
        return first

    def serve(self, timeout: Optional[float], until_empty: bool) -> int:
        """Run queued callbacks in the calling thread.

        ``poll()`` semantics when ``until_empty`` is false: wait up to ``timeout`` for the first
        event, then serve what is queued. ``flush()`` semantics when true: keep serving until no
        record is pending or ``timeout`` passes.
        """
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        served = 0
        with self.lock:
            if until_empty:
                self.flushing += 1
                self.cond.notify_all()
        try:
            while True:
                event = self._next_event(deadline, until_empty, served)
                if event is None:
                    return served
                function, arguments = event
                served += 1
                function(*arguments)
        finally:
            with self.lock:
                self.stats.export()
                if until_empty:
                    self.flushing -= 1

    def _next_event(self, deadline: Optional[float], until_empty: bool,
                    served: int) -> Optional[Event]:
        with self.lock:
            while True:
                if self.events:
                    return self.events.popleft()
                if until_empty and not self.pending:
                    return None
                if not until_empty and served:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self.cond.wait(remaining if remaining is not None else 1.0)

    def __len__(self) -> int:
        with self.lock:
            return len(self.pending) + len(self.events)

    def purge(self, in_queue: bool, in_flight: bool) -> list[Record]:
        """Fail queued and/or in-flight records with ``_PURGE_*``; returns direct ones to purge."""
        direct: list[Record] = []
        with self.lock:
            if in_queue:
                for record in list(self.outbox):
                    self.resolve(record, make_error("_PURGE_QUEUE", "Local: Purged in queue"))
                self.outbox.clear()
            for record in list(self.pending.values()):
                if record.state in (INFLIGHT, ACCEPTED) and in_flight:
                    self.resolve(record, make_error("_PURGE_INFLIGHT", "Local: Purged in flight"))
                elif record.state == DIRECT:
                    direct.append(record)
        return direct

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.stats.snapshot(
                mode=self.settings.mode,
                route=self.route,
                session_id=self.session_id,
                queue_depth=len(self.pending),
                outbox=len(self.outbox),
                in_flight=sum(1 for record in self.pending.values()
                              if record.state in (INFLIGHT, ACCEPTED)),
                direct_in_flight=self.direct_outstanding,
                events=len(self.events),
                delivery_reports_lost=self.reports_lost,
            )

    # ---- background side (lock held) ------------------------------------------------------

    def resolve(self, record: Record, error: Any, partition: Optional[int] = None,
                offset: Optional[int] = None, timestamp_ms: int = 0, route: str = SIDECAR) -> None:
        """Record the outcome of ``record`` and queue its callback. Lock held."""
        if record.state == DONE:
            if error is None:
                self.stats.duplicates_reported += 1
            return
        record.state = DONE
        self.pending.pop(record.record_id, None)
        self.queued_bytes -= record.size
        latency = time.monotonic() - record.created
        self.stats.on_resolved(route, error is None, latency)
        callback = record.callback or self.settings.on_delivery
        if callback is not None and not (self.settings.only_errors and error is None):
            if error is not None:
                partition = record.partition if record.partition >= 0 else None
                offset = None
                timestamp_ms = timestamp_ms or record.timestamp_ms
            message = Message(record.topic, partition, offset, record.key, record.value,
                              record.headers, error, timestamp_ms, latency)
            self.events.append((callback, (error, message)))
        self.cond.notify_all()

    def add_event(self, function: Callable[..., Any], *arguments: Any) -> None:
        """Queue a call to run from the application's next ``poll()``. Lock held."""
        self.events.append((function, arguments))
        self.cond.notify_all()

    def start_epoch(self) -> None:
        """Begin talking to a (possibly new) sidecar with a fresh session. Lock held.

        A new session per epoch matters after a restart: the new sidecar knows nothing of the
        old session's sequence numbers.
        """
        self.epoch += 1
        self.session_id = (self.session_base if self.epoch == 1
                           else f"{self.session_base}-{self.epoch}")
        self.last_seq = 0
        self.route = SIDECAR
        self.cond.notify_all()

    def lose_sidecar(self, epoch: int, reason: str) -> None:
        """The sidecar stopped answering: every record it had not reported is re-queued, in
        produce order, for the next route. Lock held; idempotent per epoch."""
        if epoch != self.epoch or self.route != SIDECAR:
            return
        in_doubt = [record for record in self.pending.values()
                    if record.state in (INFLIGHT, ACCEPTED)]
        for record in in_doubt:
            record.state = QUEUED
            record.in_doubt = True
        queued = [record for record in self.outbox if record.state == QUEUED]
        self.outbox = deque(sorted(queued + in_doubt, key=lambda record: record.record_id))
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
        self.next_probe = time.monotonic() + self.settings.health_interval_s
        logger = self.settings.logger
        if self.settings.mode == "auto":
            self.route = DIRECT_ROUTE
            self.stats.on_switch("direct")
            logger.warning(
                "kafka-sidecar at %s lost (%s): falling back to direct Kafka; re-sending %d "
                "unreported records (%d possibly already written)",
                self.settings.address, reason, len(self.outbox), len(in_doubt))
        else:
            self.route = WAITING
            logger.error("kafka-sidecar at %s lost (%s): %d records wait for it",
                         self.settings.address, reason, len(self.outbox))
            if self.settings.error_cb is not None:
                self.add_event(self.settings.error_cb,
                               make_error("_TRANSPORT", f"kafka-sidecar unreachable: {reason}"))
        self.cond.notify_all()

    def requeue_front(self, records: list[Record]) -> None:
        """Put refused records back at the head of the outbox, keeping their order. Lock held."""
        for record in reversed(records):
            record.state = QUEUED
            self.outbox.appendleft(record)

    def expire(self, now: float) -> None:
        """Fail queued records older than ``message.timeout.ms``, as librdkafka does. Lock held."""
        timeout = self.settings.message_timeout_s
        if timeout <= 0:
            return
        while self.outbox and now - self.outbox[0].created > timeout:
            record = self.outbox.popleft()
            if record.state == QUEUED:
                self.resolve(record, KafkaError(KafkaError._MSG_TIMED_OUT,
                                                "Local: Message timed out"))

    def take_batch(self, epoch: int) -> list[Record]:
        """Pop up to ``batch.num.messages`` / ``batch.size`` queued records. Lock held."""
        batch: list[Record] = []
        size = 0
        limit_count = self.settings.batch_num_messages
        limit_bytes = self.settings.batch_max_bytes
        while self.outbox and len(batch) < limit_count:
            record = self.outbox[0]
            if record.state != QUEUED:
                self.outbox.popleft()
                continue
            if batch and size + record.size > limit_bytes:
                break
            self.outbox.popleft()
            record.state = INFLIGHT
            record.epoch = epoch
            batch.append(record)
            size += record.size
        return batch

    def count_attempt(self, records: list[Record], route: str) -> None:
        """Count sends and re-sends (and possible duplicates) of ``records``. Lock held."""
        resent = 0
        duplicates = 0
        for record in records:
            if record.attempts:
                resent += 1
                if record.in_doubt and not record.counted_duplicate:
                    record.counted_duplicate = True
                    duplicates += 1
            record.attempts += 1
        self.stats.on_sent(route, len(records))
        if resent:
            self.stats.on_resent(resent, duplicates)
        self.stats.export()
