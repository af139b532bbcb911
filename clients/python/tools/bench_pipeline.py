"""CPU per record of the client's own work, without a network: produce, batch, encode, apply
delivery reports, serve callbacks.

The end-to-end runs of ``profile_produce.py`` vary by a third from run to run (batch sizes
follow thread scheduling); this drives the same code paths deterministically in one thread, so
a change to a hot path can be judged in seconds. The sidecar's answers are made up: every batch
is acknowledged and reported delivered, in report messages of ``--reports-per-message``.

    python3 clients/python/tools/bench_pipeline.py --records 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("PROFILE_PRODUCE_CLIENT",
                                  str(Path(__file__).resolve().parents[1])))

from kafka_sidecar import Producer  # noqa: E402
from kafka_sidecar._proto import producer_pb2  # noqa: E402
from kafka_sidecar._wire import encode_batch  # noqa: E402


def unreachable_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def reports_for(batch: list[Any], first_seq: int, per_message: int) -> list[bytes]:
    """Serialized ``DeliveryReportBatch`` messages reporting ``batch`` delivered."""
    messages = []
    for start in range(0, len(batch), per_message):
        chunk = batch[start:start + per_message]
        messages.append(producer_pb2.DeliveryReportBatch(reports=[
            producer_pb2.DeliveryReport(seq=first_seq + start + index, record_id=record[0],
                                        topic=record[1], partition=record[0] % 6,
                                        offset=record[0], timestamp_ms=1_700_000_000_000,
                                        latency_us=1000)
            for index, record in enumerate(chunk)]).SerializeToString())
    return messages


def run(args: argparse.Namespace) -> dict[str, float]:
    address = unreachable_address()
    delivered = [0]

    def on_delivery(error: Any, _message: Any) -> None:
        delivered[0] += 1

    # `auto` with a long connect timeout: the sender thread waits on the health check, so the
    # records stay queued for this thread to move.
    producer = Producer({"sidecar.mode": "auto", "sidecar.address": address,
                         "sidecar.connect.timeout.ms": 600000, "bootstrap.servers": address,
                         "queue.buffering.max.messages": 10_000_000, "on_delivery": on_delivery})
    value = b"x" * args.value_size
    producer.produce(args.topic, value)
    core = producer._core  # noqa: SLF001 - this tool measures the internals
    with core.lock:  # a session, without waking the route threads (the route stays CONNECTING)
        core.epoch, core.session_id = 1, "bench-session"
    core.outbox.clear()
    core.pending.clear()
    epoch, seq = core.epoch, 0
    timings: dict[str, float] = {"produce": 0.0, "batch": 0.0, "reports": 0.0, "serve": 0.0}
    per_batch = args.batch
    for _ in range(args.records // per_batch):
        started = time.process_time()
        for _ in range(per_batch):
            producer.produce(args.topic, value)
        took = time.process_time()
        timings["produce"] += took - started
        with core.lock:
            batch = core.take_batch(epoch)
        encode_batch(1, "bench", core.session_id, batch, core.topics)
        timings["batch"] += time.process_time() - took
        messages = reports_for(batch, seq + 1, args.reports_per_message)
        seq += len(batch)
        started = time.process_time()
        for message in messages:
            reports = producer_pb2.DeliveryReportBatch.FromString(message).reports
            with core.lock:
                core.last_seq += len(reports)
                core.resolve_reports(reports, epoch)
        took = time.process_time()
        timings["reports"] += took - started
        producer.poll(0)
        timings["serve"] += time.process_time() - took
    assert delivered[0] == args.records // per_batch * per_batch, delivered
    return {name: round(spent / args.records * 1e6, 3) for name, spent in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reports-per-message", type=int, default=100)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    runs = [run(args) for _ in range(args.repetitions)]
    gc.collect()
    best = {name: min(result[name] for result in runs) for name in runs[0]}
    best["total"] = round(sum(best.values()), 3)
    print(json.dumps({"cpu_us_per_record_best": best,
                      "total_median": round(statistics.median(sum(r.values()) for r in runs), 3)}))
    os._exit(0)  # the producer's sender thread is still waiting on the unreachable address


if __name__ == "__main__":
    main()
