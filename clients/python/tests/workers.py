"""Worker-process bodies for the multi-process tests (importable, so ``spawn`` can run them).

A worker produces keyed records whose value names ``worker:key:seq``, counts every delivery
callback per record, and sends a :class:`WorkerResult` back to the parent through a queue.
"""

from __future__ import annotations

import faulthandler
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

from kafka_sidecar import Producer

KEYS_PER_WORKER = 16


@dataclass
class WorkerResult:
    """What one worker saw: callback counts and outcomes per sequence number."""

    worker: int
    produced: int = 0
    callbacks: dict[int, int] = field(default_factory=dict)
    delivered: dict[int, tuple[int, int]] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    remaining: int = -1
    stats: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None


def value_of(worker: int, seq: int) -> bytes:
    return f"{worker}:{seq % KEYS_PER_WORKER}:{seq}".encode()


def key_of(worker: int, seq: int) -> bytes:
    return f"w{worker}-k{seq % KEYS_PER_WORKER}".encode()


def headers_of(worker: int, seq: int) -> list[tuple[str, bytes]]:
    return [("worker", str(worker).encode()), ("seq", str(seq).encode()),
            ("binary", bytes([seq % 256, 0, 255]))]


def produce_records(producer: Any, topic: str, worker: int, seqs: range,
                    result: WorkerResult) -> None:
    """Produce ``seqs`` with a callback that records each outcome, polling as apps do."""
    for seq in seqs:
        def on_delivery(error: Any, message: Any, seq: int = seq) -> None:
            result.callbacks[seq] = result.callbacks.get(seq, 0) + 1
            if error is None:
                result.delivered[seq] = (message.partition(), message.offset())
            else:
                result.failed[seq] = str(error)
        # Alternate the header styles: a list of tuples and a dict.
        headers: Any = headers_of(worker, seq)
        if seq % 2:
            headers = dict(headers)
        while True:
            try:
                producer.produce(topic, value=value_of(worker, seq), key=key_of(worker, seq),
                                 headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        result.produced += 1
        if seq % 200 == 0:
            producer.poll(0)


def run_worker(producer: Optional[Any], conf: dict[str, Any], topic: str, worker: int,
               count: int, results: Any, pause: Any = None) -> None:
    """Body of a worker process. With ``pause`` = (half_done, resume) events it produces half,
    signals, waits for the parent (which kills the sidecar meanwhile), then does the rest."""
    result = WorkerResult(worker)
    # A hung worker prints where it is stuck instead of failing the test silently.
    faulthandler.dump_traceback_later(90, exit=True)
    try:
        if producer is None:
            producer = Producer(conf)
        if pause is None:
            produce_records(producer, topic, worker, range(count), result)
        else:
            half_done, resume = pause
            produce_records(producer, topic, worker, range(count // 2), result)
            half_done.set()
            if not resume.wait(60):
                raise TimeoutError("parent never resumed the worker")
            produce_records(producer, topic, worker, range(count // 2, count), result)
        result.remaining = producer.flush(120)
        result.stats = producer.stats()
    except BaseException:  # noqa: BLE001 - report anything to the parent
        result.error = traceback.format_exc()
    faulthandler.cancel_dump_traceback_later()
    results.put(result)
