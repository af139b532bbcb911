"""Client-side counters: the ``stats()`` snapshot and, when prometheus_client is importable,
Prometheus metrics. Every metric name lives here; labels are bounded (client id, route).

Counters are mutated only while the producer's lock is held, so they need no lock of their own.
They reach Prometheus in batches (``Stats.export``), through ``_fork_lock``, which is held across
``fork()``: otherwise a child could inherit a prometheus_client lock taken by one of the parent's
threads and hang on its first metric update.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from typing import Any, Optional

try:  # pragma: no cover - depends on the environment
    import prometheus_client
except ImportError:  # pragma: no cover
    prometheus_client = None

LATENCY_SAMPLES = 10000
# Background paths and poll() push to Prometheus at most this often; flush() always does.
EXPORT_INTERVAL_S = 0.1

# Metric names (Prometheus conventions: _total for counters, _seconds for durations).
PRODUCED_TOTAL = "kafka_sidecar_client_records_produced_total"
SENT_TOTAL = "kafka_sidecar_client_records_sent_total"
DELIVERED_TOTAL = "kafka_sidecar_client_records_delivered_total"
FAILED_TOTAL = "kafka_sidecar_client_records_failed_total"
RESENT_TOTAL = "kafka_sidecar_client_records_resent_total"
DUPLICATES_POSSIBLE_TOTAL = "kafka_sidecar_client_duplicates_possible_total"
BACKPRESSURE_TOTAL = "kafka_sidecar_client_backpressure_retries_total"
SWITCHES_TOTAL = "kafka_sidecar_client_route_switches_total"
QUEUE_DEPTH = "kafka_sidecar_client_queue_depth"
LATENCY_SECONDS = "kafka_sidecar_client_delivery_latency_seconds"


class _Prometheus:
    """The process-wide Prometheus collectors, created once on first use."""

    def __init__(self) -> None:
        assert prometheus_client is not None
        pc = prometheus_client
        suffixless = {name: name.removesuffix("_total") for name in (
            PRODUCED_TOTAL, SENT_TOTAL, DELIVERED_TOTAL, FAILED_TOTAL, RESENT_TOTAL,
            DUPLICATES_POSSIBLE_TOTAL, BACKPRESSURE_TOTAL, SWITCHES_TOTAL)}
        self.produced = pc.Counter(suffixless[PRODUCED_TOTAL],
                                   "Records accepted by produce()", ["client_id"])
        self.sent = pc.Counter(suffixless[SENT_TOTAL],
                               "Records sent on a route, re-sends included", ["client_id", "route"])
        self.delivered = pc.Counter(suffixless[DELIVERED_TOTAL],
                                    "Records reported delivered", ["client_id", "route"])
        self.failed = pc.Counter(suffixless[FAILED_TOTAL],
                                 "Records reported failed", ["client_id", "route"])
        self.resent = pc.Counter(suffixless[RESENT_TOTAL],
                                 "Records re-sent after the sidecar was lost", ["client_id"])
        self.duplicates = pc.Counter(suffixless[DUPLICATES_POSSIBLE_TOTAL],
                                     "Re-sent records whose first copy may have been written",
                                     ["client_id"])
        self.backpressure = pc.Counter(suffixless[BACKPRESSURE_TOTAL],
                                       "Batches retried after QUEUE_FULL", ["client_id"])
        self.switches = pc.Counter(suffixless[SWITCHES_TOTAL],
                                   "Switches between the sidecar and direct Kafka",
                                   ["client_id", "to"])
        self.queue_depth = pc.Gauge(QUEUE_DEPTH, "Records produced and not yet reported",
                                    ["client_id"], multiprocess_mode="livesum")
        self.latency = pc.Histogram(LATENCY_SECONDS, "Seconds from produce() to delivery report",
                                    ["client_id", "route"],
                                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                             1, 2.5, 5, 10, 30))


_prometheus: Optional[_Prometheus] = None
_fork_lock = threading.Lock()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_fork_lock.acquire, after_in_parent=_fork_lock.release,
                        after_in_child=_fork_lock.release)


def _metrics() -> Optional[_Prometheus]:
    global _prometheus
    if prometheus_client is None:
        return None
    if _prometheus is None:
        _prometheus = _Prometheus()
    return _prometheus


class Stats:
    """Counters of one producer in one process.

    The hot path (``on_delivered``, once per batch of delivery reports) only bumps plain
    integers and extends lists; :meth:`export` pushes what changed since its last call into
    Prometheus at most every ``EXPORT_INTERVAL_S`` (or when forced by ``flush()``), latencies as
    one bucket count per histogram bucket rather than one ``observe()`` per record (a labelled
    prometheus_client update costs microseconds). ``produced`` is kept by the core (it is the
    number of record ids handed out) and copied here before each export or snapshot.
    """

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.produced = 0
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.resent = 0
        self.dropped = 0
        self.duplicates_possible = 0
        self.duplicates_reported = 0
        self.backpressure_retries = 0
        self.switches_to_direct = 0
        self.switches_to_sidecar = 0
        self.sent_by_route: Counter[str] = Counter()
        self.delivered_by_route: Counter[str] = Counter()
        self.failed_by_route: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._unexported_latencies: dict[str, list[float]] = {}
        self._exported: dict[tuple[str, ...], int] = {}
        self._exported_at = 0.0
        self._children: dict[tuple[str, ...], Any] = {}
        _metrics()

    def on_sent(self, route: str, count: int) -> None:
        self.sent += count
        self.sent_by_route[route] += count

    def on_resolved(self, route: str, ok: bool, latency_s: float) -> None:
        if ok:
            self.on_delivered(route, (latency_s,))
        else:
            self.failed += 1
            self.failed_by_route[route] += 1

    def on_delivered(self, route: str, latencies_s: "list[float] | tuple[float, ...]") -> None:
        """Records delivered on ``route``, one latency each."""
        count = len(latencies_s)
        if not count:
            return
        self.delivered += count
        self.delivered_by_route[route] += count
        self.latencies.extend(latencies_s)
        if _prometheus is not None:
            unexported = self._unexported_latencies.get(route)
            if unexported is None:
                unexported = self._unexported_latencies[route] = []
            unexported.extend(latencies_s)

    def on_resent(self, count: int, maybe_duplicates: int) -> None:
        self.resent += count
        self.duplicates_possible += maybe_duplicates

    def on_backpressure(self) -> None:
        self.backpressure_retries += 1

    def on_switch(self, to: str) -> None:
        if to == "direct":
            self.switches_to_direct += 1
        else:
            self.switches_to_sidecar += 1

    def on_dropped(self, count: int) -> None:
        """Records forgotten without a callback (the parent's records in a forked child)."""
        self.dropped += count

    def export(self, force: bool = True) -> None:
        """Push the changes since the last push into Prometheus (a no-op without it); unless
        ``force``, only when the last push is ``EXPORT_INTERVAL_S`` old."""
        metrics = _prometheus
        if metrics is None:
            return
        now = time.monotonic()
        if not force and now - self._exported_at < EXPORT_INTERVAL_S:
            return
        self._exported_at = now
        client = self.client_id
        counters: list[tuple[Any, tuple[str, ...], int]] = [
            (metrics.produced, (client,), self.produced),
            (metrics.resent, (client,), self.resent),
            (metrics.duplicates, (client,), self.duplicates_possible),
            (metrics.backpressure, (client,), self.backpressure_retries),
            (metrics.switches, (client, "direct"), self.switches_to_direct),
            (metrics.switches, (client, "sidecar"), self.switches_to_sidecar),
        ]
        for family, by_route in ((metrics.sent, self.sent_by_route),
                                 (metrics.delivered, self.delivered_by_route),
                                 (metrics.failed, self.failed_by_route)):
            counters.extend((family, (client, route), value) for route, value in by_route.items())
        latencies, self._unexported_latencies = self._unexported_latencies, {}
        with _fork_lock:
            for family, labels, value in counters:
                key = (family._name, *labels)
                delta = value - self._exported.get(key, 0)
                if delta:
                    self._child(family, labels).inc(delta)
                    self._exported[key] = value
            depth = self.produced - self.delivered - self.failed - self.dropped
            self._child(metrics.queue_depth, (client,)).set(depth)
            for route, values in latencies.items():
                _observe_all(self._child(metrics.latency, (client, route)), values)

    def _child(self, family: Any, labels: tuple[str, ...]) -> Any:
        key = (family._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A plain dict for ``Producer.stats()``."""
        ordered = sorted(self.latencies)

        def percentile(fraction: float) -> Optional[float]:
            if not ordered:
                return None
            index = min(len(ordered) - 1, int(fraction * len(ordered)))
            return round(ordered[index] * 1000, 3)

        snapshot: dict[str, Any] = {
            "client_id": self.client_id,
            "produced": self.produced,
            "sent": self.sent,
            "acked": self.delivered,
            "failed": self.failed,
            "resent": self.resent,
            "duplicates_possible": self.duplicates_possible,
            "duplicates_reported": self.duplicates_reported,
            "backpressure_retries": self.backpressure_retries,
            "fallback_switches": self.switches_to_direct,
            "recoveries": self.switches_to_sidecar,
            "latency_ms": {
                "p50": percentile(0.50),
                "p90": percentile(0.90),
                "p99": percentile(0.99),
                "max": round(ordered[-1] * 1000, 3) if ordered else None,
                "samples": len(ordered),
            },
        }
        snapshot.update(extra)
        return snapshot


def _observe_all(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each value, as one increment per bucket.

    Relies on prometheus_client's ``Histogram`` child layout (``_upper_bounds``, ``_buckets``,
    ``_sum``, stable since 0.4); anything else gets plain ``observe()`` calls. Sorting is cheap:
    latencies arrive in long monotonic runs.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    ordered = sorted(values)
    below = 0
    for bound, bucket in zip(bounds, buckets):
        upto = bisect_right(ordered, bound)  # observe() counts a value in the first bound >= it
        if upto > below:
            bucket.inc(upto - below)
            below = upto
    total.inc(sum(ordered))
