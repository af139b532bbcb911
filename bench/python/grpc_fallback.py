"""A thin sidecar producer on plain grpcio, used only when the ``kafka_sidecar`` client is missing.

It generates the gRPC stubs from ``proto/`` into a temporary directory at import (grpcio-tools),
and offers the subset of ``confluent_kafka.Producer`` the benchmark workers use: ``produce``,
``poll``, ``flush``, ``close``. Records are batched for ``linger_s`` (or 1000 records) and sent
with ``EmitBatch``; a refused tail is resent after the sidecar's ``retry_after_ms``. Delivery
reports come from ``DeliveryStream`` and run ``on_delivery(err, None)`` from ``poll``/``flush``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import grpc

ROOT = Path(__file__).resolve().parents[2]
MAX_BATCH = 1000
MAX_QUEUED = 100_000


def _load_stubs() -> tuple[Any, Any]:
    from grpc_tools import protoc

    # Compiled under a package name of our own so the generated modules cannot collide with
    # the kafka_sidecar client package when both are importable.
    out = Path(tempfile.mkdtemp(prefix="kafka-sidecar-bench-stubs-"))
    (out / "bench_stubs").mkdir()
    shutil.copy(ROOT / "proto/kafka_sidecar/v1/producer.proto", out / "bench_stubs/producer.proto")
    status = protoc.main(["protoc", f"--proto_path={out}", f"--python_out={out}",
                          f"--grpc_python_out={out}", "bench_stubs/producer.proto"])
    if status != 0:
        raise RuntimeError("grpc_tools.protoc failed to generate the stubs")
    sys.path.insert(0, str(out))
    return (importlib.import_module("bench_stubs.producer_pb2"),
            importlib.import_module("bench_stubs.producer_pb2_grpc"))


pb2, pb2_grpc = _load_stubs()


class FallbackProducer:
    """Batches records to the sidecar over gRPC; counts delivery reports for ``flush``."""

    def __init__(self, address: str, on_delivery: Optional[Callable[..., Any]], linger_s: float = 0.005):
        # Over a Unix socket grpcio would send the socket path as :authority, which the sidecar's
        # HTTP/2 server rejects (RST_STREAM PROTOCOL_ERROR); name a plain host instead.
        options = [("grpc.default_authority", "localhost")] if address.startswith("unix:") else []
        self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb2_grpc.ProducerSidecarStub(self._channel)
        self._session = f"bench-fallback-{os.getpid()}-{uuid.uuid4().hex}"
        self._on_delivery = on_delivery
        self._linger_s = linger_s
        self._lock = threading.Condition()
        self._queue: list[Any] = []
        self._produced = 0
        self._reported = 0
        self._callbacks: dict[int, Callable[..., Any]] = {}
        self._ready: list[tuple[int, str]] = []
        self._closed = False
        threading.Thread(target=self._send_loop, daemon=True).start()
        threading.Thread(target=self._report_loop, daemon=True).start()

    def produce(self, topic: str, value: Optional[bytes] = None, key: Optional[bytes] = None,
                on_delivery: Optional[Callable[..., Any]] = None) -> None:
        """Queues one record; raises ``BufferError`` when the local queue is full."""
        record = pb2.ProduceRequest(topic=topic, value=value or b"", record_id=0)
        if key is not None:
            record.key = key
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                raise BufferError("local queue is full")
            self._produced += 1
            record.record_id = self._produced
            if on_delivery is not None:
                self._callbacks[record.record_id] = on_delivery
            self._queue.append(record)
            if len(self._queue) >= MAX_BATCH:
                self._lock.notify_all()

    def poll(self, timeout: float = 0) -> int:
        """Runs delivery callbacks for reports received so far."""
        if timeout:
            with self._lock:
                if not self._ready:
                    self._lock.wait(timeout)
        with self._lock:
            ready, self._ready = self._ready, []
        for record_id, error in ready:
            callback = self._callbacks.pop(record_id, None) or self._on_delivery
            if callback is not None:
                callback(error or None, None)
        return len(ready)

    def flush(self, timeout: float = 60) -> int:
        """Waits until every produced record has a delivery report; returns how many have not."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.notify_all()
            while self._reported < self._produced and time.monotonic() < deadline:
                self._lock.wait(0.01)
            left = self._produced - self._reported
        self.poll(0)
        return left

    def close(self, timeout: float = 5) -> int:
        """Flushes and closes the channel."""
        left = self.flush(timeout)
        self._closed = True
        self._channel.close()
        return left

    def _send_loop(self) -> None:
        while not self._closed:
            with self._lock:
                if len(self._queue) < MAX_BATCH:
                    self._lock.wait(self._linger_s)
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            while batch and not self._closed:
                ack = self._stub.EmitBatch(pb2.ProduceBatch(client_id="bench", session_id=self._session,
                                                            records=batch), timeout=30)
                batch = batch[ack.accepted:]
                if batch:
                    time.sleep(max(ack.retry_after_ms, 1) / 1000)

    def _report_loop(self) -> None:
        request = pb2.DeliveryStreamRequest(session_id=self._session, after_seq=0)
        try:
            for message in self._stub.DeliveryStream(request):
                # Newer protos batch reports per message (DeliveryReportBatch); older send one.
                reports = message.reports if "reports" in message.DESCRIPTOR.fields_by_name else [message]
                with self._lock:
                    self._reported += len(reports)
                    self._ready.extend((report.record_id, report.error_code) for report in reports)
                    self._lock.notify_all()
        except grpc.RpcError:
            return
