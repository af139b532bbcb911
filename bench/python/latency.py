"""Open-loop produce-to-delivery latency from Python, as an application sees it.

One process produces at a fixed rate; record ``i`` is due at ``start + i / rate`` whatever
happened before (no coordinated omission), and its latency runs from that due time to its
``on_delivery`` callback (served by ``poll()`` while the loop waits for the next due time).
Direct uses ``confluent_kafka.Producer``; sidecar uses ``kafka_sidecar.Producer`` (or the grpcio
fallback) over TCP or ``unix://``. Prints one JSON object with exact percentiles.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from fleet import client_name, make_producer, values


def percentile(ordered: list[float], quantile: float) -> float:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(round(quantile * len(ordered))) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["direct", "sidecar"], required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--address", default="")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warm-up-seconds", type=float, default=1)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument("--client-linger-ms", type=float, default=5)
    args = parser.parse_args()
    args.keyed = False

    latencies: list[float] = []
    failures = [0]
    warm_up = int(args.rate * args.warm_up_seconds)
    total = warm_up + int(args.rate * args.seconds)

    def delivered(due: float, index: int) -> Any:
        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures[0] += 1
            elif index >= warm_up:
                latencies.append(time.monotonic() - due)
        return on_delivery

    producer = make_producer(args, None)
    pool = values(args.value_size, 256, seed=7)
    start = time.monotonic() + 0.05
    worst_lag = 0.0
    for index in range(total):
        due = start + index / args.rate
        while (wait := due - time.monotonic()) > 0:
            producer.poll(min(wait, 0.001))
        if index >= warm_up:
            worst_lag = max(worst_lag, time.monotonic() - due)
        while True:
            try:
                producer.produce(args.topic, pool[index % len(pool)], None, on_delivery=delivered(due, index))
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    left = producer.flush(30)
    ordered = sorted(latencies)
    print(json.dumps({
        "client": client_name(args.mode, args.fallback), "count": len(ordered), "failed": failures[0],
        "left": left, "rate": args.rate, "generator_worst_lag_ms": worst_lag * 1000,
        "p50_ms": percentile(ordered, 0.50) * 1000, "p99_ms": percentile(ordered, 0.99) * 1000,
        "p999_ms": percentile(ordered, 0.999) * 1000, "max_ms": (ordered[-1] if ordered else 0) * 1000,
    }))


if __name__ == "__main__":
    main()
