"""The consume scenarios: throughput through the active consumer API vs a direct rdkafka consumer,
and the memory of idle consumer instances vs idle direct consumers (``kafka-sidecar-bench
consume`` and ``idle`` do the reading; this module starts the sidecars and summarizes).

Throughput runs against two sidecars, one with the default fetch limits and one with large ones
(``LIMITS``), each a fresh process with the lag exporter off (``NO_LAG_EXPORT``: its periodic probe
reads the lagging topic with a client of its own, which would land in some CPU windows and not
others); repetitions alternate which side goes first. The idle scenario keeps every default.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import services
from services import log

if TYPE_CHECKING:
    from run import Bench
    from services import Service

TOPIC, IDLE_TOPIC, PARTITIONS = "bench-consume", "bench-idle", 6
NO_LAG_EXPORT = "consumer.lag_interval_ms=0"
# A reference run of the direct consumer without librdkafka's 1 s fetch.queue.backoff.ms, which
# throttles any consumer whose local queue passes queued.min.messages (see the README).
TUNED_DIRECT = "fetch.queue.backoff.ms=10"
# Sidecar settings per throughput variant. "defaults": request_max_bytes 200 KiB, max_poll_records
# 100, prefetch_max_bytes 200 KiB. "large": what a bulk reader would set.
LIMITS: dict[str, list[str]] = {
    "defaults": [],
    "large": ["consumer.request_max_bytes=4194304", "consumer.prefetch_max_bytes=8388608",
              "consumer.max_poll_records=10000"],
}


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions of one side."""
    summary: dict[str, Any] = {
        "records": runs[0]["records"],
        "records_per_s": spread([run["records_per_s"] for run in runs]),
        "client_cpu_s_per_million": spread([run["client_cpu_s"] / run["records"] * 1e6 for run in runs]),
        "first_record_ms": spread([run["first_record_ms"] for run in runs]),
        "records_per_s_from_assign": spread([run["records_per_s_from_assign"] for run in runs]),
        "incomplete_runs": sum(not run["complete"] for run in runs),
    }
    if "sidecar_cpu_s" in runs[0]:
        summary["sidecar_cpu_s_per_million"] = spread([run["sidecar_cpu_s"] / run["records"] * 1e6 for run in runs])
        summary["records_per_fetch"] = statistics.median(run["records_per_fetch"] for run in runs)
        summary["largest_fetch_records"] = max(run["largest_fetch_records"] for run in runs)
        summary["empty_fetches"] = sum(run["empty_fetches"] for run in runs)
        summary["slowest_fetch_ms"] = max(run["slowest_fetch_ms"] for run in runs)
        summary["sidecar_peak_rss_bytes"] = max(run["sidecar_peak_rss_bytes"] for run in runs)
    return summary


def throughput(bench: Bench, broker: Service) -> dict[str, Any]:
    """Records/s and CPU per record: direct vs each sidecar variant, same records, same run."""
    profile, bootstrap = bench.profile, broker.info["bootstrap"]
    records = profile["consume_records"]
    fill = bench.tool("fill", "--bootstrap", bootstrap, "--topic", TOPIC, "--partitions", str(PARTITIONS),
                      "--records", str(records), "--value-size", str(profile["consume_value_size"]))
    sidecars = {name: bench.start(services.start_sidecar(bench.args.sidecar_bin, bootstrap, bench.work,
                                                         f"sidecar-consume-{name}", [*settings, NO_LAG_EXPORT]))
                for name, settings in LIMITS.items()}
    common = ["--topic", TOPIC, "--partitions", str(PARTITIONS), "--records", str(records),
              "--max-seconds", str(profile["consume_max_seconds"]), "--clock-ticks", str(services.CLOCK_TICKS)]
    targets = {"direct": ["--mode", "direct", "--bootstrap", bootstrap],
               "direct_tuned": ["--mode", "direct", "--bootstrap", bootstrap, "--direct-property", TUNED_DIRECT]}
    for name, sidecar in sidecars.items():
        targets[f"sidecar_{name}"] = ["--mode", "sidecar", "--sidecar-http", sidecar.info["http"],
                                      "--pid", str(sidecar.pid)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    try:
        for repetition in range(profile["consume_repetitions"]):
            order = list(targets) if repetition % 2 == 0 else list(reversed(targets))
            for name in order:
                runs[name].append(bench.tool("consume", *targets[name], *common))
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()
    result: dict[str, Any] = {"value_size": profile["consume_value_size"], "partitions": PARTITIONS,
                              "fill_seconds": fill.get("seconds"), "limits": LIMITS, "tuned_direct": TUNED_DIRECT,
                              "sidecar_commands": {name: sidecar.info["command"] for name, sidecar in sidecars.items()}}
    result.update({name: _summary(side) for name, side in runs.items()})
    log("consume: " + ", ".join(f"{name} {result[name]['records_per_s']['median']:,.0f}/s" for name in runs))
    return result


def idle(bench: Bench, broker: Service) -> dict[str, Any]:
    """RSS per idle consumer: sidecar instances (fresh sidecar) vs rdkafka consumers in a process."""
    profile, bootstrap = bench.profile, broker.info["bootstrap"]
    common = ["--topic", IDLE_TOPIC, "--partitions", str(PARTITIONS), "--instances", str(profile["idle_instances"]),
              "--settle-seconds", str(profile["idle_settle_s"]), "--idle-seconds", str(profile["idle_seconds"]),
              "--clock-ticks", str(services.CLOCK_TICKS)]
    sidecar = bench.start(services.start_sidecar(bench.args.sidecar_bin, bootstrap, bench.work, "sidecar-idle", []))
    try:
        result = {"sidecar": bench.tool("idle", "--mode", "sidecar", "--sidecar-http", sidecar.info["http"],
                                        "--pid", str(sidecar.pid), *common)}
    finally:
        sidecar.stop()
    result["direct"] = bench.tool("idle", "--mode", "direct", "--bootstrap", bootstrap, *common)
    log("idle consumers: " + ", ".join(f"{side} {result[side]['rss_per_instance_bytes'] / 2**20:.2f} MiB each"
                                       for side in ("direct", "sidecar")))
    return result

