"""The per-process state of one producer: pending records, the outbox, the event queue.

Application threads queue records (``Producer.produce``) and call :meth:`Core.serve` and
:meth:`Core.purge`; background threads (see ``_routes``) move records along and resolve them.
All shared state is guarded by one lock; callbacks are queued as events and run by the
application's own thread in ``poll()``/``flush()``, never by a background thread, and never
while the lock is held.

Records are immutable tuples (see ``_records``); where a record is in its life is kept here:

* ``pending``: every record without an outcome, by id (absent: DONE);
* ``outbox``: records waiting to be sent, in produce order (a resolved one is skipped);
* ``inflight``: id -> session epoch of the records sent to the sidecar and not yet reported;
* ``direct_ids``: records handed to the fallback producer;
* ``requeued`` (sent before, so the next send is a re-send), ``in_doubt`` (an attempt may
  have reached Kafka unheard of) and ``counted_duplicates``: rare, empty in normal operation.

The per-record paths (``Producer.produce``, ``take_batch``, ``resolve_reports``, ``serve``) are
written for CPU: one lock round per record in ``produce`` and none elsewhere (batches are
handled under one lock hold), no per-record function calls beyond the callback itself, and
wake-ups only when a thread is known to wait. Three conditions share the lock so that a wake-up
reaches only the thread it is for: ``cond`` (sender and delivery threads: work, route and fork
changes), ``app_cond`` (``poll()``/``flush()``: events or an empty queue) and ``pump_cond``
(the direct producer's poll thread).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from ._config import Settings, new_session_id
from ._errors import NOT_DELIVERED_AT_SHUTDOWN, KafkaError, make_error, sidecar_error
from ._message import DeliveredMessage, Message
from ._records import (CALLBACK, CREATED, HEADERS, ID, KEY, PARTITION, SIZE, TIMESTAMP, TOPIC,
                       VALUE, Record)
from ._stats import Stats
from ._wire import topic_field

# Where new records go. CONNECTING: first health probe. SIDECAR: batches to the sidecar.
# DIRECT: fallback producer. WAITING: sidecar lost in `sidecar` mode, probing until it is back.
# DRAINING: sidecar healthy again, waiting for the direct producer's records to finish first.
CONNECTING = "connecting"
SIDECAR = "sidecar"
DIRECT_ROUTE = "direct"
WAITING = "waiting"
DRAINING = "draining"

# An event is a 5-tuple. A record the sidecar reported delivered is (record, partition, offset,
# timestamp_ms, latency_s): its callback and message are made only when it is served, so a
# queued event holds nothing the garbage collector tracks (it is untracked at the first
# collection, and the application's callbacks may take a while to be served). Any other event
# is (None, function, first, second, None), run as function(first, second).
Event = tuple[Any, Any, Any, Any, Any]

# Topics whose encoded field is cached; past this, fields are encoded per batch.
_TOPIC_CACHE_LIMIT = 10000

_monotonic = time.monotonic


def _call_with(function: Callable[..., Any], arguments: tuple[Any, ...]) -> None:
    function(*arguments)


class Core:
    """Records, routes and events of one producer in one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.app_cond = threading.Condition(self.lock)
        self.pump_cond = threading.Condition(self.lock)
        self.app_waiting = 0
        self.sender_waiting = False
        self.pending: dict[int, Record] = {}
        self.outbox: deque[Record] = deque()
        self.inflight: dict[int, int] = {}
        self.direct_ids: set[int] = set()
        self.requeued: set[int] = set()
        self.in_doubt: set[int] = set()
        self.counted_duplicates: set[int] = set()
        self.events: list[Event] = []
        self.stats = Stats(settings.client_id)
        self.topics: dict[str, bytes] = {}
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
        # Settings read per record, as plain attributes.
        self.queue_max_messages = settings.queue_max_messages
        self.queue_max_bytes = settings.queue_max_bytes
        self.message_max_bytes = settings.message_max_bytes
        self.batch_num_messages = settings.batch_num_messages
        self.batch_max_bytes = settings.batch_max_bytes

    # ---- application side -------------------------------------------------------------

    # Producer.produce queues records itself (the hot path): it checks the arguments, then
    # under the lock appends the record to ``pending`` and the ``outbox``, counts its bytes in
    # ``queued_bytes`` and wakes the sender if it waits (``sender_waiting``).

    def cache_topic(self, topic: str) -> None:
        """Encode ``topic``'s field once for the sender (see ``_wire``)."""
        if len(self.topics) < _TOPIC_CACHE_LIMIT:
            self.topics[topic] = topic_field(topic)
        else:
            topic_field(topic)  # still raises for a topic that cannot be encoded

    def serve(self, timeout: Optional[float], until_empty: bool) -> int:
        """Run queued callbacks in the calling thread.

        ``poll()`` semantics when ``until_empty`` is false: wait up to ``timeout`` for the first
        event, then serve what is queued. ``flush()`` semantics when true: keep serving until no
        record is pending or ``timeout`` passes. A callback that raises stops the serving; the
        events after it stay queued for the next call.
        """
        deadline = None if timeout is None or timeout < 0 else _monotonic() + timeout
        served = 0
        lock = self.lock
        if until_empty:
            with lock:
                self.flushing += 1
                self.cond.notify_all()
        try:
            while True:
                with lock:
                    events = self._wait_for_events(deadline, until_empty, served)
                if events is None:
                    return served
                default_callback: Any = self.settings.on_delivery
                remaining = iter(events)
                try:
                    for event in remaining:
                        record = event[0]
                        if record is not None:
                            (record[CALLBACK] or default_callback)(None, DeliveredMessage(event))
                        else:
                            event[1](event[2], event[3])
                except BaseException:
                    rest = list(remaining)
                    with lock:
                        self.events[:0] = rest
                    raise
                served += len(events)
        finally:
            with lock:
                self.export_stats(force=until_empty)
                if until_empty:
                    self.flushing -= 1

    def _wait_for_events(self, deadline: Optional[float], until_empty: bool,
                         served: int) -> Optional[list[Event]]:
        """Take every queued event, waiting for the first if need be. Lock held."""
        while True:
            events = self.events
            if events:
                self.events = []
                return events
            if until_empty and not self.pending:
                return None
            if not until_empty and served:
                return None
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.app_waiting += 1
            try:
                self.app_cond.wait(remaining if remaining is not None else 1.0)
            finally:
                self.app_waiting -= 1

    def __len__(self) -> int:
        with self.lock:
            return len(self.pending) + len(self.events)

    def purge(self, in_queue: bool, in_flight: bool) -> list[Record]:
        """Fail queued and/or in-flight records with ``_PURGE_*``; returns direct ones to purge."""
        with self.lock:
            if in_queue:
                for record in list(self.outbox):
                    self.resolve(record, make_error("_PURGE_QUEUE", "Local: Purged in queue"))
                self.outbox.clear()
            if in_flight:
                for record_id in list(self.inflight):
                    self.resolve(self.pending[record_id],
                                 make_error("_PURGE_INFLIGHT", "Local: Purged in flight"))
            direct = [self.pending[record_id] for record_id in self.direct_ids]
            self.wake_app()
        return direct

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.stats.produced = self.next_record_id - 1
            return self.stats.snapshot(
                mode=self.settings.mode,
                route=self.route,
                session_id=self.session_id,
                queue_depth=len(self.pending),
                outbox=len(self.outbox),
                in_flight=len(self.inflight),
                direct_in_flight=self.direct_outstanding,
                events=len(self.events),
                delivery_reports_lost=self.reports_lost,
            )

    # ---- background side (lock held) ------------------------------------------------------

    def export_stats(self, force: bool) -> None:
        """Push counters to Prometheus (see ``Stats.export``). Lock held."""
        self.stats.produced = self.next_record_id - 1
        self.stats.export(force)

    def wake_app(self) -> None:
        """Wake ``poll()``/``flush()`` if one waits: events were queued or records resolved."""
        if self.app_waiting:
            self.app_cond.notify_all()

    def wake_all(self) -> None:
        """Wake every waiting thread: the route, ``closed`` or the fork pause changed."""
        self.cond.notify_all()
        self.app_cond.notify_all()
        self.pump_cond.notify_all()

    def wait_for_work(self, timeout: float) -> None:
        """The sender waits for records (``produce`` wakes it) or ``timeout``. Lock held."""
        self.sender_waiting = True
        try:
            self.cond.wait(timeout)
        finally:
            self.sender_waiting = False

    def is_done(self, record: Record) -> bool:
        """Whether ``record`` has had its outcome. Lock held."""
        return record[ID] not in self.pending

    def resolve(self, record: Record, error: Any, partition: Optional[int] = None,
                offset: Optional[int] = None, timestamp_ms: int = 0, route: str = SIDECAR) -> None:
        """Record the outcome of ``record`` and queue its callback. Lock held; the caller wakes
        the application (``wake_app``) once it is done resolving."""
        record_id = record[ID]
        if self.pending.pop(record_id, None) is None:  # DONE already: only the first counts
            if error is None:
                self.stats.duplicates_reported += 1
            return
        self.inflight.pop(record_id, None)
        self.direct_ids.discard(record_id)
        self._forget(record_id)
        self.queued_bytes -= record[SIZE]
        latency = _monotonic() - record[CREATED]
        self.stats.on_resolved(route, error is None, latency)
        callback = record[CALLBACK] or self.settings.on_delivery
        if callback is not None and not (self.settings.only_errors and error is None):
            if error is not None:
                partition = record[PARTITION] if record[PARTITION] >= 0 else None
                offset = None
                timestamp_ms = timestamp_ms or record[TIMESTAMP]
            message = Message(record[TOPIC], partition, offset, record[KEY], record[VALUE],
                              record[HEADERS], error, timestamp_ms, latency)
            self.events.append((None, callback, error, message, None))

    def _forget(self, record_id: int) -> None:
        """Drop a resolved record from the rare-case sets."""
        if self.requeued:
            self.requeued.discard(record_id)
        if self.in_doubt:
            self.in_doubt.discard(record_id)
            self.counted_duplicates.discard(record_id)

    def resolve_reports(self, reports: Any, epoch: int) -> None:
        """Apply a batch of the sidecar's delivery reports (``DeliveryReport`` messages, already
        checked for sequence) sent in session ``epoch``. Lock held. The hot path of delivery:
        successes are resolved inline; errors go through :meth:`resolve`."""
        pop = self.pending.pop
        pop_inflight = self.inflight.pop
        now = _monotonic()
        default_callback = self.settings.on_delivery
        report_successes = not self.settings.only_errors
        # Whether each record needs a look at its own callback to know if it has an event.
        check_callback = default_callback is None or not report_successes
        append_event = self.events.append  # see Event
        latencies: list[float] = []
        add_latency = latencies.append
        freed = 0
        requeued = False
        rare = self.requeued or self.in_doubt or self.direct_ids
        for report in reports:
            record_id = report.record_id
            record = pop(record_id, None)
            if record is None:
                continue  # reported before (a duplicate), or not ours
            if report.error_code:
                self.pending[record_id] = record
                requeued = self._report_error(record, report, epoch) or requeued
                continue
            pop_inflight(record_id, None)  # absent if re-queued or re-sent direct meanwhile
            if rare:
                self.direct_ids.discard(record_id)
                self._forget(record_id)
            freed += record[SIZE]
            latency = now - record[CREATED]
            add_latency(latency)
            if check_callback and (not report_successes or record[CALLBACK] is None):
                continue
            append_event((record, report.partition, report.offset, report.timestamp_ms,
                          latency))
        self.queued_bytes -= freed
        self.stats.on_delivered(SIDECAR, latencies)
        if requeued:  # records never written go back in produce order
            self.outbox = deque(sorted(self.outbox, key=lambda queued: queued[ID]))
            self.cond.notify_all()
        self.wake_app()

    def _report_error(self, record: Record, report: Any, epoch: int) -> bool:
        """A failed delivery report; returns True when the record went back to the outbox."""
        record_id = record[ID]
        current = self.inflight.get(record_id) == epoch
        if report.error_code == NOT_DELIVERED_AT_SHUTDOWN:
            if current:  # never written: re-send without risk of a duplicate
                del self.inflight[record_id]
                self.requeued.add(record_id)
                self.outbox.append(record)
                return True
        elif current:
            self.resolve(record, sidecar_error(report.error_code, report.error_message))
        return False

    def add_event(self, function: Callable[..., Any], *arguments: Any) -> None:
        """Queue a call to run from the application's next ``poll()``. Lock held."""
        self.events.append((None, _call_with, function, arguments, None))
        self.wake_app()

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
        self.wake_all()

    def lose_sidecar(self, epoch: int, reason: str) -> None:
        """The sidecar stopped answering: every record it had not reported is re-queued, in
        produce order, for the next route. Lock held; idempotent per epoch."""
        if epoch != self.epoch or self.route != SIDECAR:
            return
        pending = self.pending
        in_doubt = [pending[record_id] for record_id in self.inflight]
        self.in_doubt.update(self.inflight)
        self.requeued.update(self.inflight)
        self.inflight.clear()
        queued = [record for record in self.outbox if record[ID] in pending]
        self.outbox = deque(sorted(queued + in_doubt, key=lambda record: record[ID]))
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None
        self.next_probe = _monotonic() + self.settings.health_interval_s
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
        self.wake_all()

    def is_inflight(self, record: Record, epoch: int) -> bool:
        """Whether ``record`` was last sent to the sidecar in ``epoch`` and awaits its report
        there (not reported, purged or re-queued since). Lock held."""
        return self.inflight.get(record[ID]) == epoch

    def requeue_front(self, records: list[Record], in_doubt: bool = False) -> None:
        """Put refused records back at the head of the outbox, keeping their order. Lock held."""
        for record in reversed(records):
            record_id = record[ID]
            self.inflight.pop(record_id, None)
            self.requeued.add(record_id)
            if in_doubt:
                self.in_doubt.add(record_id)
            self.outbox.appendleft(record)

    def expire(self, now: float) -> None:
        """Fail queued records older than ``message.timeout.ms``, as librdkafka does. Lock held."""
        timeout = self.settings.message_timeout_s
        outbox = self.outbox
        if timeout <= 0 or not outbox or now - outbox[0][CREATED] <= timeout:
            return
        while outbox and now - outbox[0][CREATED] > timeout:
            record = outbox.popleft()
            if record[ID] in self.pending:
                self.resolve(record, KafkaError(KafkaError._MSG_TIMED_OUT,
                                                "Local: Message timed out"))
        self.wake_app()

    def take_batch(self, epoch: int) -> list[Record]:
        """Pop up to ``batch.num.messages`` / ``batch.size`` queued records and mark them sent in
        ``epoch``. Lock held."""
        outbox = self.outbox
        limit_bytes = self.batch_max_bytes
        if len(outbox) <= self.batch_num_messages:
            batch = list(outbox)
            outbox.clear()
        else:
            popleft = outbox.popleft
            batch = [popleft() for _ in range(self.batch_num_messages)]
        pending = self.pending
        inflight = self.inflight
        requeued = self.requeued
        size = 0
        for record in batch:  # the usual case: first sends that fit, marked in one pass
            record_id = record[ID]
            size += record[SIZE]
            if (record_id not in pending or size > limit_bytes
                    or (requeued and record_id in requeued)):
                batch = self._take_slowly(batch, epoch)
                break
            inflight[record_id] = epoch
        self.stats.on_sent(SIDECAR, len(batch))
        return batch

    def _take_slowly(self, batch: list[Record], epoch: int) -> list[Record]:
        """``take_batch`` past a record that was resolved meanwhile (dropped), sent before
        (counted as a re-send) or over ``batch.size`` (put back with those after it)."""
        limit_bytes = self.batch_max_bytes
        sent: list[Record] = []
        size = 0
        for index, record in enumerate(batch):
            if record[ID] not in self.pending:
                continue
            if sent and size + record[SIZE] > limit_bytes:
                rest = [later for later in batch[index:] if later[ID] in self.pending]
                for later in rest:  # marked by take_batch's first pass? not past this point
                    self.inflight.pop(later[ID], None)
                self.outbox.extendleft(reversed(rest))
                break
            sent.append(record)
            size += record[SIZE]
        self.count_attempt(sent, SIDECAR, count_sent=False)
        for record in sent:
            self.inflight[record[ID]] = epoch
        return sent

    def count_attempt(self, records: list[Record], route: str, count_sent: bool = True) -> int:
        """Count re-sends (and possible duplicates) among ``records`` as they are sent; returns
        the number of re-sends. Lock held."""
        resent = 0
        duplicates = 0
        requeued = self.requeued
        if requeued:
            for record in records:
                record_id = record[ID]
                if record_id in requeued:
                    requeued.discard(record_id)
                    resent += 1
                    if record_id in self.in_doubt and record_id not in self.counted_duplicates:
                        self.counted_duplicates.add(record_id)
                        duplicates += 1
        if count_sent:
            self.stats.on_sent(route, len(records))
        if resent:
            self.stats.on_resent(resent, duplicates)
        return resent
