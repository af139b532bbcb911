"""Background threads that move records: to the sidecar, to direct Kafka, and back.

* The sender thread owns routing. On the sidecar route it sends one ``EmitBatch`` at a time
  (linger / batch size honoured), so a ``QUEUE_FULL`` tail is retried before anything newer and
  per-key order holds. On the direct route it hands records to a confluent-kafka producer and
  probes the sidecar's health; once healthy it waits for the direct records to finish, then
  starts a new sidecar session.
* The delivery thread reads the session's ``DeliveryStream`` and resolves records.
* The pump thread polls the direct producer so its delivery reports reach our event queue.

The direct producer is released as soon as the routes stop (``close()``, or the Producer being
dropped), and nothing it references points back at the routes: it must be destroyed by reference
count in a thread of this process, never left in a reference cycle for the collector to destroy
at a time and in a thread nobody chose (a librdkafka-owned one aborts). Forked children never
destroy it at all (see ``_forksafe``).

Any failure to talk to the sidecar (call error, deadline, stream end, ``SHUTTING_DOWN``) ends
the session: every record without a delivery report is re-sent on the next route.

Around ``fork()`` every gRPC call of ours is paused (:meth:`Routes.pause_for_fork`): gRPC-core
skips its fork handlers while any thread is inside a call, and the child then inherits
inconsistent gRPC state (seen as an abort in the child). The delivery stream is cancelled and,
after the fork, resumed on the same session from the last sequence number seen.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import grpc

from ._core import CONNECTING, DIRECT_ROUTE, DRAINING, SIDECAR, WAITING, Core
from ._errors import QUEUE_FULL, SHUTTING_DOWN, make_error, sidecar_error
from ._records import CREATED, HEADERS, ID, KEY, PARTITION, TIMESTAMP, TOPIC, VALUE, Record
from ._transport import SidecarChannel, error_code_of, retry_hint_s
from ._wire import encode_batch

_MIN_RETRY_S = 0.01
_PROBE_TIMEOUT_S = 0.5
_DIRECT_CHUNK = 1000
_TERMINAL_CALL_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE)


def _forward(core: Core, callback: Any) -> Any:
    """Run a direct producer's error/stats callback from the application's poll().

    A function of the core, not a method: a closure over the routes would make routes -> direct
    producer -> callback -> routes a cycle, leaving the producer to the collector.
    """
    def forward(*arguments: Any) -> None:
        with core.lock:
            core.add_event(callback, *arguments)
    return forward


# Every started Routes of this process, kept strongly: their threads outlive a dropped Producer
# until shut down, and all of them must be paused around a fork.
_live: "set[Routes]" = set()


def pause_all_for_fork() -> None:
    """``os.register_at_fork(before=...)``: quiesce every gRPC call of this process."""
    for routes in list(_live):
        if routes.core.pid == os.getpid():
            routes.pause_for_fork()


def resume_all_after_fork() -> None:
    """``os.register_at_fork(after_in_parent=...)``."""
    for routes in list(_live):
        routes.resume_after_fork()


def forget_all_after_fork() -> None:
    """``os.register_at_fork(after_in_child=...)``: the parent's routes are not ours."""
    _live.clear()


class Routes:
    """The background machinery of one :class:`Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.settings = core.settings
        self.channel: Optional[SidecarChannel] = None
        self.direct: Any = None
        self.batch_id = 0
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        names = {"sender": self._run_sender, "pump": self._run_pump}
        if self.settings.mode != "direct":
            names["delivery"] = self._run_delivery
        for name, target in names.items():
            thread = threading.Thread(target=self._guard(target), daemon=True,
                                      name=f"kafka-sidecar-{name}")
            thread.start()
            self.threads.append(thread)
        _live.add(self)

    def shutdown(self) -> None:
        """Stop the threads without waiting or flushing (the Producer was garbage collected)."""
        _live.discard(self)
        if self.core.pid != os.getpid():
            return  # inherited from a parent: its lock may be held by a thread that is gone
        self._close_core()
        self._release_direct()

    def stop(self, timeout: float) -> None:
        _live.discard(self)
        self._close_core()
        for thread in self.threads:
            thread.join(timeout)
        direct = self._release_direct()
        if direct is not None:
            direct.flush(timeout)
        if self.channel is not None:
            self.channel.close()

    def _close_core(self) -> None:
        with self.core.lock:
            self.core.closed = True
            if self.core.stream is not None:
                self.core.stream.cancel()
            self.core.wake_all()

    def _release_direct(self) -> Any:
        """Drop our reference to the direct producer and return it: once the caller (and a
        pump thread still inside ``poll()``) lets go, it is destroyed there and then."""
        with self.core.lock:
            direct, self.direct = self.direct, None
        return direct

    def pause_for_fork(self, timeout: float = 2.0) -> None:
        """Before ``fork()``: hold new gRPC calls and wait (bounded) for running ones to end."""
        core = self.core
        with core.lock:
            core.fork_paused = True
            if core.stream is not None:
                core.stream_paused = True
                core.stream.cancel()
            deadline = time.monotonic() + timeout
            while core.in_grpc > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.settings.logger.warning(
                        "kafka-sidecar client: forking with a gRPC call still running")
                    return
                core.cond.wait(remaining)

    def resume_after_fork(self) -> None:
        """After ``fork()``, in the parent: let gRPC calls go on."""
        with self.core.lock:
            self.core.fork_paused = False
            self.core.wake_all()

    @contextmanager
    def _grpc_call(self) -> Iterator[None]:
        """Count the calling thread as inside gRPC; wait first while a fork is pending."""
        core = self.core
        with core.lock:
            while core.fork_paused and not core.closed:
                core.cond.wait(1.0)
            core.in_grpc += 1
        try:
            yield
        finally:
            with core.lock:
                core.in_grpc -= 1
                if core.fork_paused:  # pause_for_fork waits for in_grpc to reach 0
                    core.cond.notify_all()

    def _guard(self, target: Any) -> Any:
        def run() -> None:
            try:
                target()
            except Exception:  # noqa: BLE001 - a dead thread would silently stall delivery
                self.settings.logger.exception("kafka-sidecar client thread crashed")
        return run

    def _channel(self) -> SidecarChannel:
        if self.channel is None:
            self.channel = SidecarChannel(self.settings.address)
        return self.channel

    # ---- sender --------------------------------------------------------------------------

    def _run_sender(self) -> None:
        steps = {CONNECTING: self._connect, SIDECAR: self._sidecar_step,
                 DIRECT_ROUTE: self._direct_step, WAITING: self._waiting_step,
                 DRAINING: self._draining_step}
        while True:
            with self.core.lock:
                if self.core.closed:
                    return
                route = self.core.route
            steps[route]()

    def _connect(self) -> None:
        with self._grpc_call():
            healthy = self._channel().healthy(self.settings.connect_timeout_s)
        core = self.core
        with core.lock:
            if healthy:
                core.start_epoch()
                return
            core.epoch += 1
            core.route = SIDECAR
            core.lose_sidecar(core.epoch, "not reachable at start-up")

    def _sidecar_step(self) -> None:
        core = self.core
        with core.lock:
            batch = self._wait_for_batch()
            if not batch:
                return
            epoch, session_id = core.epoch, core.session_id
            core.export_stats(force=False)
        self.batch_id += 1
        # Outside the lock: what is encoded never changes once a record is queued.
        request = encode_batch(self.batch_id, self.settings.client_id, session_id, batch,
                               core.topics)
        try:
            with self._grpc_call():
                ack = self._channel().emit_batch(request, self.settings.request_timeout_s)
        except grpc.RpcError as error:
            self._on_call_error(batch, epoch, error)
            return
        with core.lock:
            self._on_ack(batch, epoch, ack)

    def _wait_for_batch(self) -> list[Record]:
        """Wait (lock held) for a full batch, linger expiry, flush or a backoff's end."""
        core = self.core
        while not core.closed and core.route == SIDECAR:
            now = time.monotonic()
            core.expire(now)
            wait: Optional[float] = None
            if now < core.retry_at:
                wait = core.retry_at - now
            elif core.outbox:
                ready_at = core.outbox[0][CREATED] + self.settings.linger_s
                if (len(core.outbox) >= self.settings.batch_num_messages or core.flushing
                        or now >= ready_at):
                    return core.take_batch(core.epoch)
                wait = ready_at - now
            core.wait_for_work(wait if wait is not None else 1.0)
        return []

    def _on_ack(self, batch: list[Record], epoch: int, ack: Any) -> None:
        """Accepted records wait (INFLIGHT) for their reports; refused ones go back to the
        outbox, failed ones are resolved. Lock held."""
        if not ack.rejected and ack.accepted == len(batch):
            return  # the usual case: every record accepted, nothing to do per record
        core = self.core
        refused: list[Record] = []
        unacked: list[Record] = []
        backoff_ms = ack.retry_after_ms
        shutting_down = False
        acks = ack.acks
        for index, record in enumerate(batch):
            if not core.is_inflight(record, epoch):
                continue  # reported or purged, or re-queued because the session ended
            if index >= len(acks):
                unacked.append(record)  # no ack: protocol breach, treat as refused
                continue
            item = acks[index]
            if item.received:
                continue
            if item.error_code in (QUEUE_FULL, SHUTTING_DOWN):
                refused.append(record)
                backoff_ms = max(backoff_ms, item.retry_after_ms)
                shutting_down = shutting_down or item.error_code == SHUTTING_DOWN
            else:
                core.resolve(record, sidecar_error(item.error_code, item.error_message))
        core.wake_app()
        if unacked:
            core.requeue_front(unacked, in_doubt=True)
        if refused or unacked:
            core.requeue_front(refused)
            core.stats.on_backpressure()
            core.retry_at = time.monotonic() + max(backoff_ms / 1000, _MIN_RETRY_S)
        if shutting_down:
            core.lose_sidecar(epoch, "sidecar is shutting down")

    def _on_call_error(self, batch: list[Record], epoch: int, error: grpc.RpcError) -> None:
        core = self.core
        status = error.code()  # type: ignore[attr-defined]
        sidecar_code = error_code_of(error)
        with core.lock:
            live = [record for record in batch if core.is_inflight(record, epoch)]
            if sidecar_code == QUEUE_FULL or (status == grpc.StatusCode.RESOURCE_EXHAUSTED
                                              and sidecar_code is None):
                core.requeue_front(live)
                core.stats.on_backpressure()
                core.retry_at = time.monotonic() + max(retry_hint_s(error), _MIN_RETRY_S)
            elif status in _TERMINAL_CALL_CODES and sidecar_code not in (None, SHUTTING_DOWN):
                for record in live:
                    core.resolve(record, sidecar_error(sidecar_code or "INVALID_ARGUMENT",
                                                       error.details() or ""))  # type: ignore
                core.wake_app()
            else:
                core.lose_sidecar(epoch, f"EmitBatch failed: {status.name} "
                                         f"{error.details()}")  # type: ignore[attr-defined]

    def _waiting_step(self) -> None:
        """`sidecar` mode without a sidecar: keep records, probe, expire the too old."""
        if not self._probe_when_due():
            return
        with self.core.lock:
            if self.core.route == WAITING:
                self.core.settings.logger.warning("kafka-sidecar at %s is back",
                                                  self.settings.address)
                self.core.start_epoch()

    def _probe_when_due(self) -> bool:
        core = self.core
        with core.lock:
            now = time.monotonic()
            core.expire(now)
            if now < core.next_probe:
                core.cond.wait(min(core.next_probe - now, 1.0))
                return False
            core.next_probe = now + self.settings.health_interval_s
        with self._grpc_call():
            return self._channel().healthy(_PROBE_TIMEOUT_S, wait_for_ready=False)

    # ---- direct ----------------------------------------------------------------------------

    def _direct_step(self) -> None:
        core = self.core
        if self.settings.mode == "auto":
            with core.lock:
                due = time.monotonic() >= core.next_probe
            if due and self._probe_when_due():
                with core.lock:
                    if core.route == DIRECT_ROUTE:
                        core.route = DRAINING
                        core.cond.notify_all()
                return
        with core.lock:
            if not core.outbox:
                wait = 1.0 if self.settings.mode == "direct" else max(
                    0.0, core.next_probe - time.monotonic())
                core.wait_for_work(min(wait, 1.0))
                return
            records: list[Record] = []
            while core.outbox and len(records) < _DIRECT_CHUNK:
                record = core.outbox.popleft()
                if record[ID] in core.pending:
                    core.direct_ids.add(record[ID])
                    records.append(record)
            core.count_attempt(records, DIRECT_ROUTE)
            core.direct_outstanding += len(records)
        self._send_direct(records)

    def _send_direct(self, records: list[Record]) -> None:
        producer = self._direct_producer()
        for index, record in enumerate(records):
            while True:
                try:
                    producer.produce(record[TOPIC], record[VALUE], record[KEY],
                                     partition=record[PARTITION],
                                     on_delivery=self._direct_callback(record),
                                     timestamp=record[TIMESTAMP],
                                     headers=list(record[HEADERS]) if record[HEADERS] else None)
                    break
                except BufferError:
                    with self.core.lock:  # the pump thread frees room by polling
                        self.core.cond.wait(0.05)
                except Exception as error:  # noqa: BLE001 - refused by librdkafka: terminal
                    reason = error.args[0] if error.args else make_error("_FAIL", str(error))
                    with self.core.lock:
                        self.core.direct_outstanding -= 1
                        self.core.resolve(record, reason, route=DIRECT_ROUTE)
                        self.core.wake_app()
                    break

    def _direct_callback(self, record: Record) -> Any:
        core = self.core

        def on_delivery(error: Any, message: Any) -> None:
            # Runs inside the pump thread's poll(), which wakes the application afterwards.
            with core.lock:
                core.direct_outstanding -= 1
                if core.is_done(record) or error is not None:
                    core.resolve(record, error, route=DIRECT_ROUTE)
                else:
                    core.resolve(record, None, message.partition(), message.offset(),
                                 message.timestamp()[1], route=DIRECT_ROUTE)
        return on_delivery

    def _direct_producer(self) -> Any:
        direct = self.direct
        if direct is None:
            import confluent_kafka

            conf = {key: value for key, value in self.settings.direct_conf.items()
                    if key not in ("on_delivery", "error_cb", "stats_cb")}
            for name in ("error_cb", "stats_cb"):
                user_callback = self.settings.__dict__[name]
                if user_callback is not None:
                    conf[name] = _forward(self.core, user_callback)
            direct = confluent_kafka.Producer(conf)
            with self.core.lock:
                self.direct = direct
                self.core.pump_cond.notify_all()
        return direct

    def _draining_step(self) -> None:
        """Sidecar healthy again: let direct records land first so per-key order holds."""
        core = self.core
        with core.lock:
            if core.direct_outstanding > 0:
                core.cond.wait(0.1)
                return
            core.start_epoch()
            core.stats.on_switch("sidecar")
            self.settings.logger.warning("kafka-sidecar at %s healthy again: leaving direct Kafka",
                                         self.settings.address)

    def _run_pump(self) -> None:
        core = self.core
        while True:
            with core.lock:
                while self.direct is None and not core.closed:
                    core.pump_cond.wait(1.0)
                if core.closed:
                    return
                direct = self.direct  # stop() may release it while we poll
            if direct.poll(0.1):
                with core.lock:
                    core.wake_app()

    # ---- delivery reports ------------------------------------------------------------------

    def _run_delivery(self) -> None:
        core = self.core
        served_epoch = 0
        while True:
            with core.lock:
                while not core.closed and (core.route != SIDECAR or core.epoch == served_epoch):
                    core.cond.wait(1.0)
                if core.closed:
                    return
                epoch, session_id, after_seq = core.epoch, core.session_id, core.last_seq
                served_epoch = epoch
            with self._grpc_call():
                reason = self._read_stream(session_id, after_seq, epoch)
            with core.lock:
                if core.closed:
                    return
                if core.stream_paused:  # cancelled for a fork: resume the same session
                    core.stream_paused = False
                    served_epoch = 0
                    continue
                if reason is not None:
                    core.lose_sidecar(epoch, reason)

    def _read_stream(self, session_id: str, after_seq: int, epoch: int) -> Optional[str]:
        """Read one delivery stream to its end; returns why it ended (None: not to be acted on)."""
        core = self.core
        stream = self._channel().delivery_stream(session_id, after_seq)
        with core.lock:
            if core.epoch != epoch or core.route != SIDECAR or core.closed or core.fork_paused:
                stream.cancel()
                core.stream_paused = core.fork_paused
                return None
            core.stream = stream
        reason = "delivery stream ended"
        try:
            for batch in stream:
                reports = batch.reports
                with core.lock:
                    self._on_reports(reports, epoch)
        except grpc.RpcError as error:
            reason = f"delivery stream failed: {error.code().name}"  # type: ignore
        with core.lock:
            if core.stream is stream:
                core.stream = None
        return reason

    def _on_reports(self, reports: Any, epoch: int) -> None:
        """One ``DeliveryReportBatch``'s reports from the stream of session ``epoch``. Lock held.

        Reports come in sequence order without gaps: checking the first and last suffices,
        except after a resume (already seen ones are skipped) or a loss (counted)."""
        core = self.core
        count = len(reports)
        if not count:
            return
        if epoch == core.epoch:
            first, last = reports[0].seq, reports[count - 1].seq
            if first == core.last_seq + 1 and last - first + 1 == count:
                core.last_seq = last
            else:
                reports = self._check_sequence(reports)
        core.resolve_reports(reports, epoch)

    def _check_sequence(self, reports: Any) -> list[Any]:
        """Reports not seen before, in order; counts the sequence numbers that never came."""
        core = self.core
        fresh = []
        for report in reports:
            if report.seq <= core.last_seq:
                continue
            if report.seq != core.last_seq + 1:
                lost = report.seq - core.last_seq - 1
                core.reports_lost += lost
                self.settings.logger.warning("kafka-sidecar: %d delivery reports were lost", lost)
            core.last_seq = report.seq
            fresh.append(report)
        return fresh
