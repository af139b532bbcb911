"""The push scenario: the sidecar's reactive consumer POSTing batches to an app's HTTP backend
(``kafka-sidecar-bench backend``) vs a direct rdkafka consumer loop reading the same records, and
the effect of ``reactive_consumer.max_in_flight_batches`` when the backend takes 5 ms per batch.

The topic is keyed (``KEYS`` distinct keys, each in one partition), as an app's topic usually is:
the reactive consumer keeps one batch in flight per lane (topic, partition, key), and records
without keys would share one lane per partition, capping the batches in flight at the partition
count. Every sidecar is fresh, with a group of its own (the reactive consumer's group is fixed at
start-up) and the lag exporter off, as in the consume scenario. The backend answers 200 with an
empty body (every record processed); its JSON parse of each batch is the app's only work, and the
direct loop does none beyond reading each record.
"""

from __future__ import annotations

import json
import selectors
import statistics
import subprocess
import uuid
from typing import TYPE_CHECKING, Any, Optional

import services
from services import Service, log

if TYPE_CHECKING:
    from run import Bench

TOPIC, PARTITIONS, KEYS = "bench-reactive", 6, 600
BATCH_RECORDS = 100  # reactive_consumer.max_batch_records (its default)
DEFAULT_IN_FLIGHT = 4  # reactive_consumer.max_in_flight_batches (its default)
# tansu's JoinGroup waits about session.timeout.ms / 2: 3 s instead of 22 s with the default.
SESSION = "session.timeout.ms=6000"
# An app's direct loop: subscribe, poll, commit automatically (librdkafka's defaults otherwise).
DIRECT_PROPERTIES = [SESSION, "enable.auto.commit=true"]


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _line(process: subprocess.Popen, limit_s: float, what: str) -> dict[str, Any]:
    """The next JSON line ``process`` prints; raises if none comes within ``limit_s``."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=limit_s):
            raise RuntimeError(f"no answer from the backend ({what}) within {limit_s} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the backend exited (status {process.wait()}) before {what}")
    return json.loads(line)


def push_run(bench: Bench, broker: Service, name: str, in_flight: int, delay_ms: int, records: int,
             max_seconds: float) -> dict[str, Any]:
    """One backend and one fresh sidecar pushing to it; the backend's result plus the sidecar's view."""
    command = [bench.args.bench_bin, "backend", "--records", str(records), "--delay-ms", str(delay_ms),
               "--max-seconds", str(max_seconds), "--first-record-seconds", "30",
               "--clock-ticks", str(services.CLOCK_TICKS)]
    backend = bench.start(Service(f"backend-{name}", subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)))
    sidecar: Optional[Service] = None
    try:
        url = _line(backend.process, 10, "its address")["url"]
        config = {
            "reactive_consumer": {"enabled": True, "group_id": f"bench-reactive-{uuid.uuid4().hex[:12]}",
                                  "topics": [TOPIC], "backend_url": url, "max_in_flight_batches": in_flight,
                                  "max_batch_records": BATCH_RECORDS},
            "consumer": {"lag_interval_ms": 0, "properties": dict([SESSION.split("=", 1)])},
        }
        sidecar = bench.start(services.start_sidecar(bench.args.sidecar_bin, broker.info["bootstrap"], bench.work,
                                                     f"sidecar-reactive-{name}", [], config=config))
        backend.process.stdin.write(f"{sidecar.pid}\n")
        backend.process.stdin.flush()
        result = _line(backend.process, 30 + max_seconds + 10, "its result")
        outcomes = services.metric_series(sidecar.info["admin"], "kafka_sidecar_reactive_records_total")
        result["sidecar_outcomes"] = outcomes
        admin = sidecar.info["admin"]
        result["sidecar_retries"] = services.metric_total(admin, "kafka_sidecar_reactive_retries_total")
        # The push as the sidecar times it: rendering the batch, the HTTP exchange, reading the answer.
        latency = "kafka_sidecar_reactive_backend_latency_seconds"
        pushes = services.metric_total(admin, f"{latency}_count")
        result["sidecar_push_ms"] = services.metric_total(admin, f"{latency}_sum") / max(pushes, 1) * 1000
        result["sidecar_command"] = sidecar.info["command"]
        result["sidecar_config"] = config
        if any(value for labels, value in outcomes.items() if "processed" not in labels):
            log(f"reactive {name}: records not processed: {outcomes}")
        return result
    finally:
        if sidecar:
            sidecar.stop()
        backend.stop()


def _per_million(seconds: float, records: int) -> float:
    return seconds / records * 1e6


def _direct(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "records": runs[0]["records"],
        "records_per_s": spread([run["records_per_s"] for run in runs]),
        "cpu_s_per_million": spread([_per_million(run["client_cpu_s"], run["records"]) for run in runs]),
        "incomplete_runs": sum(not run["complete"] for run in runs),
    }


def _pushed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "records": runs[0]["records"],
        "records_per_s": spread([run["records_per_s"] for run in runs]),
        "sidecar_cpu_s_per_million": spread([_per_million(run["sidecar_cpu_s"], run["records"]) for run in runs]),
        "backend_cpu_s_per_million": spread([_per_million(run["backend_cpu_s"], run["records"]) for run in runs]),
        "records_per_request": statistics.median(run["records_per_request"] for run in runs),
        "mean_in_flight": statistics.median(run["mean_in_flight"] for run in runs),
        "mean_answer_ms": statistics.median(run["mean_answer_ms"] for run in runs),
        "sidecar_push_ms": statistics.median(run["sidecar_push_ms"] for run in runs),
        "peak_in_flight": max(run["peak_in_flight"] for run in runs),
        "duplicates": sum(run["duplicates"] for run in runs),
        "incomplete_runs": sum(not run["complete"] for run in runs),
        "sidecar_peak_rss_bytes": max(run["sidecar_peak_rss_bytes"] for run in runs),
    }


def throughput(bench: Bench, broker: Service) -> dict[str, Any]:
    """Direct loop vs pushes to an instant backend; then in-flight 1, 4, 16 against a 5 ms backend."""
    profile, bootstrap = bench.profile, broker.info["bootstrap"]
    records = profile["reactive_records"]
    fill = bench.tool("fill", "--bootstrap", bootstrap, "--topic", TOPIC, "--partitions", str(PARTITIONS),
                      "--records", str(records), "--value-size", str(profile["reactive_value_size"]),
                      "--keys", str(KEYS))
    direct = ["consume", "--mode", "direct", "--subscribe", "--bootstrap", bootstrap, "--topic", TOPIC,
              "--partitions", str(PARTITIONS), "--records", str(records),
              "--max-seconds", str(profile["reactive_max_seconds"]), "--clock-ticks", str(services.CLOCK_TICKS),
              *sum((["--direct-property", setting] for setting in DIRECT_PROPERTIES), [])]
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "instant": []}
    for repetition in range(profile["reactive_repetitions"]):
        order = ("direct", "instant") if repetition % 2 == 0 else ("instant", "direct")
        for side in order:
            if side == "direct":
                runs["direct"].append(bench.tool(*direct))
            else:
                runs["instant"].append(push_run(bench, broker, f"instant-{repetition}", DEFAULT_IN_FLIGHT, 0,
                                                records, profile["reactive_max_seconds"]))
    result: dict[str, Any] = {
        "value_size": profile["reactive_value_size"], "partitions": PARTITIONS, "keys": KEYS,
        "batch_records": BATCH_RECORDS, "instant_in_flight": DEFAULT_IN_FLIGHT, "delay_ms": profile["reactive_delay_ms"],
        "fill_seconds": fill.get("seconds"), "direct_properties": DIRECT_PROPERTIES,
        "direct": _direct(runs["direct"]), "instant": _pushed(runs["instant"]),
        "instant_sidecar_config": runs["instant"][0]["sidecar_config"], "in_flight": [],
    }
    for in_flight in profile["reactive_in_flight"]:
        run = push_run(bench, broker, f"delay-{in_flight}", in_flight, profile["reactive_delay_ms"], records,
                       profile["reactive_delay_seconds"])
        entry = _pushed([run])
        entry["max_in_flight_batches"] = in_flight
        # Full batches, in_flight at a time, each taking as long as the backend took to answer
        # (a tokio sleep of 5 ms lasts about 6): the most the sidecar could get through it.
        entry["ceiling_records_per_s"] = in_flight * BATCH_RECORDS / (entry["mean_answer_ms"] / 1000)
        result["in_flight"].append(entry)
    log(f"reactive: direct {result['direct']['records_per_s']['median']:,.0f}/s, pushed to an instant backend "
        f"{result['instant']['records_per_s']['median']:,.0f}/s; {profile['reactive_delay_ms']} ms backend: " +
        ", ".join(f"in flight {entry['max_in_flight_batches']} {entry['records_per_s']['median']:,.0f}/s"
                  for entry in result["in_flight"]))
    return result
