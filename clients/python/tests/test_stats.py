"""Latencies reach the Prometheus histogram in bulk exactly as one observe() each would put them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kafka_sidecar._stats import _observe_all

prometheus_client = pytest.importorskip("prometheus_client")

BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)


def samples(histogram: Any) -> list[tuple[str, dict[str, str], float]]:
    """The histogram's buckets, count and sum, its name left out."""
    return [(sample.name.split("_")[-1], sample.labels, sample.value)
            for metric in histogram.collect() for sample in metric.samples
            if not sample.name.endswith("_created")]


def test_bulk_observation_matches_observe() -> None:
    registry = prometheus_client.CollectorRegistry()
    one_by_one = prometheus_client.Histogram("one", "", buckets=BUCKETS, registry=registry)
    bulk = prometheus_client.Histogram("bulk", "", buckets=BUCKETS, registry=registry)
    generator = random.Random(3)
    values = [generator.choice(BUCKETS) for _ in range(200)]  # exactly on the bounds, too
    values += [generator.uniform(0, 40) for _ in range(2000)]
    for value in values:
        one_by_one.observe(value)
    _observe_all(bulk, values)
    _observe_all(bulk, [])
    got, expected = samples(bulk), samples(one_by_one)
    assert [(name, labels) for name, labels, _ in got] == [
        (name, labels) for name, labels, _ in expected]
    assert [value for _, _, value in got] == pytest.approx([value for _, _, value in expected])
