"""The active consumer REST API, driven by third-party Confluent REST Proxy v2 clients from PyPI.

``nlp-kafka-rest-api`` (module ``kafka_rest``: binary format, create/subscribe/fetch/delete) and
``pymapr-kafkarest`` (json format, subscription reads, seeks) run unmodified against the real
sidecar and tansu. Neither library can commit, so that one call is a plain v2 request. A seed 002
test spells every call the seed's way by hand. Records are produced, and committed offsets read
back, by an independent confluent-kafka client: nothing here trusts the sidecar's own account.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from harness import Broker, Sidecar, random_name

# nlp-kafka-rest-api; its module is named `kafka_rest`.
from kafka_rest import Consumer as NlpRestConsumer

RECORDS = 30
V2_JSON = "application/vnd.kafka.v2+json"
# tansu answers a JoinGroup after about session.timeout / 2; auto commit off so that any committed
# offset the test finds was committed by the test's own request.
SETTINGS = {
    "consumer.properties.session.timeout.ms": 6000,
    "consumer.properties.heartbeat.interval.ms": 500,
    "consumer.auto_commit_enable": "false",
}


@pytest.fixture(scope="module")
def rest_sidecar(broker: Broker) -> Iterator[Sidecar]:
    started = Sidecar.start(broker.bootstrap, settings=SETTINGS)
    yield started
    started.stop()


@pytest.fixture
def http_url(rest_sidecar: Sidecar) -> str:
    return f"http://{rest_sidecar.info['http']}"


@pytest.fixture
def mapr_klient() -> Iterator[Any]:
    """pymapr-kafkarest's consumer class. Its import sets the root logger to DEBUG and adds a
    handler to it; both are undone so that the rest of the session logs as configured."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        from pymapr_kafkarest.kafkarest import MaprKlient
    finally:
        root.setLevel(level)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
    yield MaprKlient


def produce_keyed(broker: Broker, topic: str, partitions: int, count: int,
                  key: Callable[[int], str], value: Callable[[int], str]) -> dict[int, int]:
    """Produces ``key(i)`` / ``value(i)`` round-robin over partitions with confluent-kafka;
    returns each partition's log end offset as the delivery reports give it."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    delivered: list[tuple[int, int]] = []
    errors: list[Any] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append((message.partition(), message.offset()))

    for index in range(count):
        producer.produce(topic, key=key(index), value=value(index),
                         partition=index % partitions, on_delivery=report)
    assert producer.flush(30) == 0
    assert not errors, errors
    assert len(delivered) == count
    log_end: dict[int, int] = {}
    for partition, offset in delivered:
        log_end[partition] = max(log_end.get(partition, 0), offset + 1)
    return log_end


def committed(broker: Broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as an independent client reads them (negative: none)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, partition)
                                      for partition in range(partitions)], timeout=10)
    finally:
        consumer.close()
    for offset in offsets:
        assert offset.error is None, offset.error
    return {offset.partition: offset.offset for offset in offsets}


def fetch_until(fetch: Callable[[], list[Any]], count: int, timeout: float = 30) -> list[Any]:
    """Calls ``fetch`` (each call long-polls in the sidecar) until ``count`` records arrived."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        assert time.monotonic() < deadline, f"{len(records)} of {count} records after {timeout}s"
        records.extend(fetch())
    return records


def test_nlp_kafka_rest_api_consumes_and_commits(broker: Broker, http_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("KAFKA_REST_API_URL", "TOPIC_ID", "X_API_KEY"):  # they beat its arguments
        monkeypatch.delenv(variable, raising=False)
    topic_id = random_name("nlp")
    topic = broker.create_topic(f"{topic_id}-response", partitions=3)  # it subscribes to that
    log_end = produce_keyed(broker, topic, 3, RECORDS, lambda index: f"key-{index}",
                            lambda index: f"value-{index}")
    group, instance = random_name("group"), random_name("instance")
    consumer = NlpRestConsumer(kafka_rest_api_url=http_url, topic_id=topic_id,
                               consumer_group=group, instance=instance)

    # __enter__ is create() (binary format, earliest) then subscribe(); __exit__ is delete().
    with consumer:
        records = fetch_until(consumer.consume_earliest, RECORDS)
        # The library base64-decodes keys and values (binary format) into bytes.
        keys = [record["key"] for record in records]
        assert len(set(keys)) == len(keys) == RECORDS, "duplicates"
        assert {record["key"]: record["value"] for record in records} == {
            f"key-{index}".encode(): f"value-{index}".encode() for index in range(RECORDS)}
        assert all(offset < 0 for offset in committed(broker, group, topic, 3).values()), \
            "something was committed before the commit request"
        # The library has no commit: a v2 commit with no body commits everything returned.
        reply = requests.post(f"{http_url}/consumers/{group}/instances/{instance}/offsets",
                              headers={"Content-Type": V2_JSON}, timeout=30)
        assert reply.status_code == 200, reply.text

    assert not consumer.created
    gone = requests.get(f"{http_url}/consumers/{group}/instances/{instance}/subscription",
                        timeout=10)
    assert gone.status_code == 404, gone.text
    assert committed(broker, group, topic, 3) == log_end


def test_pymapr_kafkarest_consumes_json_seeks_and_commits(broker: Broker, http_url: str,
                                                          mapr_klient: Any) -> None:
    # One partition: the library's seeks name partition 0 of each topic.
    topic = broker.create_topic(random_name("mapr"), partitions=1)
    log_end = produce_keyed(broker, topic, 1, RECORDS, lambda index: f'"key-{index}"',
                            lambda index: f'{{"n": {index}, "tag": "mapr"}}')
    group, instance = random_name("group"), random_name("instance")
    # It joins paths onto base_url with no separator, and headers=None fails in its constructor.
    klient = mapr_klient(f"{http_url}/", group, headers={}, topics=[topic], instance=instance)

    # connect(): reads the instance's subscription (404 -> none), then creates the instance with
    # format json and auto.offset.reset earliest.
    klient.connect()
    assert klient._subscription_topics() == {"topics": []}
    klient.subscribe()
    assert klient._subscription_topics() == {"topics": [topic]}

    # Accept: application/vnd.kafka.json.v2+json; keys and values come back as embedded JSON.
    records = fetch_until(klient.consume, RECORDS)
    assert [record["offset"] for record in records] == list(range(RECORDS))
    assert [(record["key"], record["value"]) for record in records] == [
        (f"key-{index}", {"n": index, "tag": "mapr"}) for index in range(RECORDS)]
    assert {record["topic"] for record in records} == {topic}
    assert {record["partition"] for record in records} == {0}

    # consume(seek=...) seeks to the beginning (positions/beginning) before it fetches, and
    # consume(position=n) to offset n (positions); later fetches go on from there.
    replayed = klient.consume(seek=True)
    replayed += fetch_until(klient.consume, RECORDS - len(replayed))
    assert [record["offset"] for record in replayed] == list(range(RECORDS))
    tail = klient.consume(position=RECORDS - 3)
    tail += fetch_until(klient.consume, 3 - len(tail))
    assert [record["key"] for record in tail] == [f"key-{index}"
                                                  for index in range(RECORDS - 3, RECORDS)]

    # No commit in the library: a v2 commit naming the last processed record (Kafka stores +1).
    reply = requests.post(f"{http_url}/consumers/{group}/instances/{instance}/offsets",
                          headers={"Content-Type": V2_JSON}, timeout=30,
                          json={"offsets": [{"topic": topic, "partition": 0,
                                             "offset": records[-1]["offset"]}]})
    assert reply.status_code == 200, reply.text

    klient._instance_delete()
    assert klient._subscription_topics() == {}, "the instance outlived its delete"
    assert committed(broker, group, topic, 1) == log_end == {0: RECORDS}


def test_seed_002_spelling_by_hand(broker: Broker, http_url: str) -> None:
    topic = broker.create_topic(random_name("seed"), partitions=2)
    count = 10
    # One record a request: tansu reports a partition's end as its last batch's base offset + 1,
    # so `positions/last` lands on the true end only when every batch holds one record.
    offsets = []
    for index in range(count):
        produced = requests.post(f"{http_url}/producers/{topic}", timeout=30, json={
            "keyFormat": "string", "valueFormat": "string",
            "records": [{"key": f"key-{index}", "value": f"value-{index}",
                         "partition": index % 2}]})
        assert produced.status_code == 200, produced.text
        offsets += produced.json()["offsets"]
    assert all("error" not in offset for offset in offsets), offsets
    log_end = {partition: 1 + max(offset["offset"] for offset in offsets
                                  if offset["partition"] == partition) for partition in (0, 1)}

    group, instance = random_name("group"), random_name("instance")
    created = requests.post(f"{http_url}/consumers/{group}", timeout=30, json={
        "id": instance, "format": "string", "autoOffsetReset": "earliest",
        "autoCommitEnable": "false", "responseMinBytes": -1, "requestWaitMs": 500})
    assert created.status_code == 200, created.text
    assert created.json()["instanceId"] == instance
    base = created.json()["baseUri"]
    assert base.endswith(f"/consumers/{group}/instances/{instance}"), base
    partitions = [{"topic": topic, "partition": partition} for partition in (0, 1)]

    def fetch() -> list[Any]:
        reply = requests.get(f"{base}/records", params={"format": "string", "timeout": "500"},
                             timeout=30)
        assert reply.status_code == 200, reply.text
        return list(reply.json())

    def committed_via_put() -> dict[int, int]:
        reply = requests.put(f"{base}/offsets", json={"offsets": partitions}, timeout=30)
        assert reply.status_code == 200, reply.text
        return {entry["partition"]: entry["offset"] for entry in reply.json()["offsets"]}

    try:
        reply = requests.post(f"{base}/subscriptions", json={"topics": [topic]}, timeout=30)
        assert reply.status_code == 204, reply.text
        assert requests.get(f"{base}/subscriptions", timeout=30).json() == {"topics": [topic]}

        records = fetch_until(fetch, count)
        assert sorted((record["key"], record["value"]) for record in records) == sorted(
            (f"key-{index}", f"value-{index}") for index in range(count))
        last = {partition: max(record["offset"] for record in records
                               if record["partition"] == partition) for partition in (0, 1)}
        assert {partition: offset + 1 for partition, offset in last.items()} == log_end

        # The seed's commit names the last processed record; the committed offset is one past it.
        reply = requests.post(f"{base}/offsets", timeout=30, json={"offsets": [
            {"topic": topic, "partition": 0, "offset": 0, "metadata": "seed"}]})
        assert reply.status_code == 200, reply.text
        assert committed_via_put()[0] == 1
        reply = requests.post(f"{base}/offsets", timeout=30, json={"offsets": [
            {"topic": topic, "partition": partition, "offset": offset}
            for partition, offset in last.items()]})
        assert reply.status_code == 200, reply.text
        assert committed_via_put() == log_end

        reply = requests.post(f"{base}/positions/first", json={"partitions": partitions},
                              timeout=30)
        assert reply.status_code == 204, reply.text
        again = fetch_until(fetch, count)
        assert sorted(record["key"] for record in again) == sorted(
            record["key"] for record in records)
        reply = requests.post(f"{base}/positions/last", json={"partitions": partitions},
                              timeout=30)
        assert reply.status_code == 204, reply.text
        assert fetch() == []
    finally:
        deleted = requests.delete(base, timeout=30)
    assert deleted.status_code == 204, deleted.text
    assert requests.get(f"{base}/subscriptions", timeout=30).status_code == 404
    assert committed(broker, group, topic, 2) == log_end
