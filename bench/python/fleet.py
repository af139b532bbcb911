"""A fleet of forked Python producer workers, as a pre-forking server (gunicorn) would run them.

The parent forks N workers before any producer exists; each worker creates its own producer
(``confluent_kafka.Producer`` for ``direct``, ``kafka_sidecar.Producer`` or the grpcio fallback
for ``sidecar``), warms it up, and waits at a barrier. Protocol with the orchestrator, one line
each on stdin/stdout:

    fleet -> {"ready": true, "client": ...}     every worker has warmed up
    orch  -> go                                 workers produce their records, flush, report
    fleet -> {"workers": [...], ...}            per-worker timings, CPU and RSS
    orch  -> stop (or EOF)                      workers drop their producers and exit

Between the results and ``stop`` the workers keep their producers (and connections) open so the
orchestrator can count broker connections from the kernel.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from typing import Any, Callable, Optional

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

# The sidecar's own producer defaults (crates/kafka-sidecar/src/kafka/properties.rs), so the
# direct workers run the same librdkafka configuration the sidecar does.
SIDECAR_EQUIVALENT = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.codec": "lz4",
    "linger.ms": 5,
    "batch.size": 1000000,
    "queue.buffering.max.kbytes": 65536,
    "queue.buffering.max.messages": 1000000,
    "message.timeout.ms": 30000,
}


def values(size: int, count: int, seed: int) -> list[bytes]:
    """Distinct pseudo-random alphanumeric values (barely compressible, like real payloads)."""
    generator = random.Random(seed)
    return ["".join(generator.choices(ALPHABET, k=size)).encode() for _ in range(count)]


def client_name(mode: str, fallback: bool) -> str:
    """Which library a worker of this mode uses."""
    if mode == "direct":
        return "confluent_kafka.Producer"
    if not fallback:
        try:
            import kafka_sidecar  # noqa: F401

            return "kafka_sidecar.Producer"
        except ImportError:
            pass
    return "grpcio fallback (bench/python/grpc_fallback.py)"


def make_producer(args: argparse.Namespace, on_delivery: Optional[Callable[..., Any]]) -> Any:
    """Creates this worker's producer (after fork, as the application would)."""
    if args.mode == "direct":
        from confluent_kafka import Producer

        conf = dict(SIDECAR_EQUIVALENT, **{"bootstrap.servers": args.bootstrap, "client.id": "bench-direct"})
        if on_delivery is not None:
            conf["on_delivery"] = on_delivery
        return Producer(conf)
    if client_name(args.mode, args.fallback).startswith("kafka_sidecar"):
        import kafka_sidecar

        conf = {
            "sidecar.mode": "sidecar",
            "sidecar.address": args.address,
            "bootstrap.servers": args.bootstrap,
            "client.id": "bench-sidecar",
            "linger.ms": args.client_linger_ms,
        }
        if on_delivery is not None:
            conf["on_delivery"] = on_delivery
        return kafka_sidecar.Producer(conf)
    from grpc_fallback import FallbackProducer

    return FallbackProducer(args.address, on_delivery, linger_s=args.client_linger_ms / 1000)


def produce_all(producer: Any, topic: str, count: int, pool: list[bytes], keyed: bool) -> None:
    """Produces ``count`` records, waiting in ``poll`` whenever the local queue is full."""
    for index in range(count):
        value = pool[index % len(pool)]
        key = str(index).encode() if keyed else None
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.005)
        if index % 1000 == 999:
            producer.poll(0)


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(index: int, args: argparse.Namespace, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """One forked worker: create, warm up, produce on ``go``, report, hold until ``stop``."""
    counts = {"delivered": 0, "failed": 0}

    def on_delivery(error: Any, _message: Any) -> None:
        counts["failed" if error is not None else "delivered"] += 1

    try:
        producer = make_producer(args, on_delivery)
        pool = values(args.value_size, 256, seed=index)
        produce_all(producer, args.topic, args.warm_up, pool, args.keyed)
        producer.flush(60)
        ready.wait()
        go.wait()
        counts["delivered"] = counts["failed"] = 0
        cpu_before = os.times()
        start = time.monotonic()
        produce_all(producer, args.topic, args.records, pool, args.keyed)
        left = producer.flush(120)
        end = time.monotonic()
        cpu_after = os.times()
        cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        results.put({"worker": index, "start": start, "end": end, "cpu_s": cpu, "rss_bytes": rss_bytes(),
                     "delivered": counts["delivered"], "failed": counts["failed"], "left": left})
        stop.wait()
        if hasattr(producer, "close"):
            producer.close(5)
    except Exception as error:  # reported to the orchestrator, which decides what to do
        results.put({"worker": index, "error": f"{type(error).__name__}: {error}"})
        ready.abort()


def main() -> None:
    """Forks the fleet and speaks the line protocol described in the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["direct", "sidecar"], required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--address", default="", help="sidecar host:port or unix:///path")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True, help="records per worker")
    parser.add_argument("--warm-up", type=int, default=1000, help="records per worker before timing")
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--keyed", action="store_true", help="key records so they hash over partitions")
    parser.add_argument("--fallback", action="store_true", help="use the grpcio fallback client")
    parser.add_argument("--client-linger-ms", type=float, default=5)
    args = parser.parse_args()

    context = multiprocessing.get_context("fork")
    ready = context.Barrier(args.workers + 1)
    go, stop = context.Event(), context.Event()
    results = context.Queue()
    processes = [context.Process(target=worker, args=(index, args, ready, go, stop, results), daemon=True)
                 for index in range(args.workers)]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=120)
    except Exception:
        errors = [results.get(timeout=5) for _ in range(results.qsize())] if not results.empty() else []
        print(json.dumps({"error": "workers did not get ready", "details": errors}), flush=True)
        sys.exit(1)
    print(json.dumps({"ready": True, "client": client_name(args.mode, args.fallback)}), flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)
    go.set()
    reports = [results.get(timeout=300) for _ in processes]
    errors = [report for report in reports if "error" in report]
    finished = [report for report in reports if "error" not in report]
    total = args.records * len(finished)
    wall = (max(r["end"] for r in finished) - min(r["start"] for r in finished)) if finished else 0.0
    print(json.dumps({
        "client": client_name(args.mode, args.fallback),
        "workers": finished,
        "errors": errors,
        "records": total,
        "wall_s": wall,
        "records_per_s": total / wall if wall > 0 else 0.0,
        "delivered": sum(r["delivered"] for r in finished),
        "failed": sum(r["failed"] for r in finished),
        "worker_cpu_s": sum(r["cpu_s"] for r in finished),
        "worker_rss_bytes": sum(r["rss_bytes"] for r in finished),
    }), flush=True)
    sys.stdin.readline()
    stop.set()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


if __name__ == "__main__":
    main()
