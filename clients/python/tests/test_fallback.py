"""The sidecar dies or restarts mid-run: nothing the app was told was delivered is lost.

``auto`` mode falls back to direct Kafka and re-sends every record without a delivery report;
``sidecar`` mode holds records until the sidecar is back. The topic is read back by an
independent consumer; duplicates are allowed only up to what the client counted as possible.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any

from harness import Broker, free_port, random_name, wait_until
from kafka_sidecar import Producer
from workers import run_worker

WORKERS = 8
RECORDS_PER_WORKER = 2000


def auto_conf(broker: Broker, address: str, mode: str = "auto") -> dict[str, Any]:
    return {"bootstrap.servers": broker.bootstrap, "client.id": "pytest-fallback",
            "sidecar.mode": mode, "sidecar.address": address,
            "sidecar.health.interval.ms": 200, "sidecar.connect.timeout.ms": 3000}


def values_in(broker: Broker, topic: str, needed: set[bytes]) -> Counter[bytes]:
    """Count each value in ``topic``: read until every needed value is seen, then to the end."""
    def covered(messages: list[Any]) -> bool:
        return needed <= {message.value() for message in messages}
    messages = broker.read_until(topic, covered, timeout=90, drain_s=1.0)
    return Counter(message.value() for message in messages)


def test_sigkill_mid_run_loses_no_delivered_record(broker: Broker, new_sidecar: Any) -> None:
    sidecar = new_sidecar()
    topic = broker.create_topic(random_name("killed"))
    producer = Producer(auto_conf(broker, sidecar.grpc_address))
    producer.produce(topic, b"parent", key=b"parent")
    assert producer.flush(30) == 0
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    halves = [context.Event() for _ in range(WORKERS)]
    resume = context.Event()
    processes = [context.Process(target=run_worker, args=(
        producer, {}, topic, worker, RECORDS_PER_WORKER, results, (halves[worker], resume)))
        for worker in range(WORKERS)]
    for process in processes:
        process.start()
    for half in halves:
        assert half.wait(120), "a worker never reached half-way"
    sidecar.kill()
    resume.set()
    collected = [results.get(timeout=180) for _ in range(WORKERS)]
    for process in processes:
        process.join(60)
    delivered_values = set()
    possible_duplicates = 0
    for result in collected:
        assert result.error is None, result.error
        assert result.remaining == 0, result.stats
        assert set(result.callbacks.values()) == {1}, "a callback fired more than once"
        assert len(result.callbacks) == RECORDS_PER_WORKER
        assert not result.failed, list(result.failed.items())[:5]
        assert result.stats["fallback_switches"] >= 1, result.stats
        possible_duplicates += result.stats["duplicates_possible"]
        delivered_values |= {f"{result.worker}:{seq % 16}:{seq}".encode()
                             for seq in result.delivered}
    counts = values_in(broker, topic, delivered_values)
    missing = delivered_values - set(counts)
    assert not missing, f"{len(missing)} delivered records missing, e.g. {sorted(missing)[:3]}"
    duplicates = sum(count - 1 for count in counts.values())
    resent = sum(result.stats["resent"] for result in collected)
    print(f"re-sent {resent}, possibly duplicated {possible_duplicates}, duplicated {duplicates}")
    assert duplicates <= possible_duplicates, (duplicates, possible_duplicates)


def test_auto_mode_switches_back_after_sigterm_restart(broker: Broker, new_sidecar: Any) -> None:
    port = free_port()
    sidecar = new_sidecar(grpc_port=port)
    topic = broker.create_topic(random_name("restart"))
    producer = Producer(auto_conf(broker, f"127.0.0.1:{port}"))
    outcomes: list[Any] = []

    def produce(start: int, count: int) -> None:
        for index in range(start, start + count):
            producer.produce(topic, str(index).encode(), key=str(index % 8).encode(),
                             on_delivery=lambda error, message: outcomes.append(error))
        assert producer.flush(60) == 0

    produce(0, 500)
    assert producer.stats()["route"] == "sidecar"
    for index in range(500, 1000):  # records in flight while the sidecar drains and exits
        producer.produce(topic, str(index).encode(), key=str(index % 8).encode(),
                         on_delivery=lambda error, message: outcomes.append(error))
    sidecar.stop()
    assert producer.flush(60) == 0
    produce(1000, 500)
    assert producer.stats()["route"] == "direct"
    new_sidecar(grpc_port=port)
    wait_until(lambda: producer.stats()["route"] == "sidecar", 30, "the switch back")
    produce(1500, 500)
    stats = producer.stats()
    assert stats["fallback_switches"] == 1 and stats["recoveries"] == 1, stats
    assert outcomes == [None] * 2000
    counts = values_in(broker, topic, {str(index).encode() for index in range(2000)})
    assert {str(index).encode() for index in range(2000)} <= set(counts)
    assert sum(count - 1 for count in counts.values()) <= stats["duplicates_possible"]


def test_sidecar_mode_holds_records_until_the_sidecar_returns(broker: Broker,
                                                              new_sidecar: Any) -> None:
    port = free_port()
    sidecar = new_sidecar(grpc_port=port)
    topic = broker.create_topic(random_name("held"))
    errors: list[Any] = []
    producer = Producer({**auto_conf(broker, f"127.0.0.1:{port}", mode="sidecar"),
                         "error_cb": errors.append})
    producer.produce(topic, b"before")
    assert producer.flush(30) == 0
    sidecar.kill()
    wait_until(lambda: producer.stats()["route"] == "waiting", 30, "the loss to be noticed")
    producer.produce(topic, b"during")
    assert producer.flush(0.5) == 1
    new_sidecar(grpc_port=port)
    assert producer.flush(30) == 0
    assert errors and errors[0].code() < 0  # _TRANSPORT reported through error_cb
    assert set(values_in(broker, topic, {b"before", b"during"})) == {b"before", b"during"}
    assert producer.stats()["fallback_switches"] == 0
