"""Against the real sidecar and tansu: forked and spawned workers, ordering, headers, callbacks.

An independent confluent-kafka consumer reads every topic back; nothing here trusts the client's
own account of what it wrote.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from typing import Any

import pytest

from harness import Broker, Sidecar, random_name
from kafka_sidecar import KafkaError, Producer
from workers import WorkerResult, headers_of, key_of, run_worker

WORKERS = 8
RECORDS_PER_WORKER = 3000


def sidecar_conf(broker: Broker, address: str, mode: str = "sidecar") -> dict[str, Any]:
    return {"bootstrap.servers": broker.bootstrap, "client.id": "pytest-app",
            "sidecar.mode": mode, "sidecar.address": address, "linger.ms": 5}


def collect(results: Any, processes: list[Any], count: int) -> list[WorkerResult]:
    collected = [results.get(timeout=150) for _ in range(count)]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0, f"worker exited with {process.exitcode}"
    for result in collected:
        assert result.error is None, result.error
    return sorted(collected, key=lambda result: result.worker)


def check_worker_outcomes(results: list[WorkerResult], count: int) -> None:
    """Every callback fired exactly once and reported success."""
    for result in results:
        assert result.remaining == 0, result.stats
        assert result.produced == count
        assert set(result.callbacks) == set(range(count))
        assert set(result.callbacks.values()) == {1}, "a callback fired more than once"
        assert not result.failed, list(result.failed.items())[:5]


def check_topic(messages: list[Any], results: list[WorkerResult], count: int) -> None:
    """Every record present once, per-key order kept within each worker, headers intact."""
    seen: dict[tuple[int, int], Any] = {}
    by_key: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
    for message in messages:
        worker, _, seq = (int(part) for part in message.value().decode().split(":"))
        assert (worker, seq) not in seen, f"duplicate record {worker}:{seq}"
        seen[(worker, seq)] = message
        assert message.key() == key_of(worker, seq)
        assert message.headers() == headers_of(worker, seq)
        by_key[message.key()].append((message.partition(), message.offset(), seq))
    expected = {(result.worker, seq) for result in results for seq in range(count)}
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} records missing, e.g. {sorted(missing)[:5]}"
    for key, entries in by_key.items():
        assert len({partition for partition, _, _ in entries}) == 1, f"key {key!r} split"
        entries.sort()
        sequence = [seq for _, _, seq in entries]
        assert sequence == sorted(sequence), f"order broken for key {key!r}"
    for result in results:  # callbacks carried the offsets the consumer sees
        for seq, (partition, offset) in list(result.delivered.items())[:50]:
            message = seen[(result.worker, seq)]
            assert (message.partition(), message.offset()) == (partition, offset)


def test_forked_workers_share_one_producer_created_before_fork(broker: Broker,
                                                               sidecar: Sidecar) -> None:
    topic = broker.create_topic(random_name("fork"))
    # Like gunicorn --preload: built in the parent, used there, inherited by every child.
    producer = Producer(sidecar_conf(broker, sidecar.grpc_address))
    producer.produce(topic, b"parent", key=b"parent")
    assert producer.flush(30) == 0
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=run_worker,
                                 args=(producer, {}, topic, worker, RECORDS_PER_WORKER, results))
                 for worker in range(WORKERS)]
    for process in processes:
        process.start()
    collected = collect(results, processes, WORKERS)
    check_worker_outcomes(collected, RECORDS_PER_WORKER)
    sessions = {result.stats["session_id"] for result in collected}
    assert len(sessions) == WORKERS and producer.stats()["session_id"] not in sessions
    assert all(result.stats["route"] == "sidecar" for result in collected)
    # The parent's producer still works after its children are gone.
    producer.produce(topic, b"parent-again", key=b"parent")
    assert producer.flush(30) == 0 and producer.stats()["acked"] == 2
    messages = broker.read_all(topic, WORKERS * RECORDS_PER_WORKER + 2)
    assert len(messages) == WORKERS * RECORDS_PER_WORKER + 2
    check_topic([message for message in messages if message.key() != b"parent"], collected,
                RECORDS_PER_WORKER)


def test_spawned_workers_build_their_own_producers(broker: Broker, sidecar: Sidecar) -> None:
    topic = broker.create_topic(random_name("spawn"))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    conf = sidecar_conf(broker, sidecar.grpc_address)
    processes = [context.Process(target=run_worker,
                                 args=(None, conf, topic, worker, 1000, results))
                 for worker in range(2)]
    for process in processes:
        process.start()
    collected = collect(results, processes, 2)
    check_worker_outcomes(collected, 1000)
    check_topic(broker.read_all(topic, 2000), collected, 1000)


def test_terminal_errors_reach_the_callback(broker: Broker, sidecar: Sidecar) -> None:
    producer = Producer(sidecar_conf(broker, sidecar.grpc_address))
    outcomes: list[Any] = []
    producer.produce(random_name("missing"), b"v",
                     on_delivery=lambda error, message: outcomes.append((error, message)))
    topic = broker.create_topic(random_name("partitions"), partitions=2)
    producer.produce(topic, b"v", partition=7,
                     on_delivery=lambda error, message: outcomes.append((error, message)))
    assert producer.flush(30) == 0
    codes = sorted(error.code() for error, _ in outcomes)
    assert codes == sorted([KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION])
    for error, message in outcomes:
        assert message.error() is error and message.offset() is None
    assert producer.stats()["failed"] == 2


def test_message_accessors_and_default_callback(broker: Broker, sidecar: Sidecar) -> None:
    topic = broker.create_topic(random_name("accessors"), partitions=1)
    seen: list[Any] = []
    producer = Producer({**sidecar_conf(broker, sidecar.grpc_address),
                         "on_delivery": lambda error, message: seen.append((error, message))})
    producer.produce(topic, "text value", key="text key", timestamp=1_700_000_000_000,
                     headers={"h": "v", "empty": None})
    assert producer.flush(30) == 0
    error, message = seen[0]
    assert error is None and message.error() is None
    assert (message.topic(), message.partition(), message.offset()) == (topic, 0, 0)
    assert (message.key(), message.value()) == (b"text key", b"text value")
    assert message.headers()[0] == ("h", b"v")
    assert message.timestamp() == (1, 1_700_000_000_000)
    assert 0 < message.latency() < 30 and len(message) == 10
    stats = producer.stats()
    assert stats["acked"] == 1 and stats["latency_ms"]["p50"] is not None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_unix_socket_address(broker: Broker, new_sidecar: Any, tmp_path: Any) -> None:
    instance = new_sidecar(unix_socket=str(tmp_path / "sidecar.sock"))
    assert instance.unix_address, f"sidecar reported no unix socket: {instance.info}"
    topic = broker.create_topic(random_name("unix"))
    producer = Producer(sidecar_conf(broker, instance.unix_address))
    for index in range(100):
        producer.produce(topic, str(index).encode(), key=b"k")
    assert producer.flush(30) == 0
    assert producer.stats()["acked"] == 100
    assert len(broker.read_all(topic, 100)) == 100


def test_backpressure_is_retried_in_order(broker: Broker, new_sidecar: Any) -> None:
    instance = new_sidecar(settings={"producer.max_buffered_bytes": 8192,
                                     "producer.max_record_bytes": 4096})
    topic = broker.create_topic(random_name("backpressure"), partitions=2)
    producer = Producer({**sidecar_conf(broker, instance.grpc_address),
                         "client.id": "pytest-backpressure"})
    errors: list[Any] = []
    for index in range(3000):
        producer.produce(topic, b"%06d" % index + b"." * 200, key=str(index % 4),
                         on_delivery=lambda error, message: errors.append(error))
    assert producer.flush(60) == 0
    stats = producer.stats()
    assert stats["backpressure_retries"] > 0, stats
    assert errors == [None] * 3000
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for message in broker.read_all(topic, 3000):
        by_key[message.key()].append(int(message.value()[:6]))
    assert sum(len(values) for values in by_key.values()) == 3000
    for values in by_key.values():
        assert values == sorted(values)


def test_prometheus_metrics_are_exported(broker: Broker, sidecar: Sidecar) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    topic = broker.create_topic(random_name("metrics"))
    producer = Producer({**sidecar_conf(broker, sidecar.grpc_address),
                         "client.id": "pytest-metrics"})
    for index in range(10):
        producer.produce(topic, b"v")
    assert producer.flush(30) == 0
    sample = prometheus_client.REGISTRY.get_sample_value
    labels = {"client_id": "pytest-metrics", "route": "sidecar"}
    assert sample("kafka_sidecar_client_records_delivered_total", labels) == 10
    assert sample("kafka_sidecar_client_delivery_latency_seconds_count", labels) == 10
    assert sample("kafka_sidecar_client_queue_depth", {"client_id": "pytest-metrics"}) == 0
