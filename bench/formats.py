"""The value-format scenario: produce records/s with avro (a schema registered with the registry
beforehand and named by id, so the sidecar serves it from its cache) vs binary values of exactly
the same bytes, over HTTP (``POST /producers/{topic}``) and gRPC (``EmitBatch`` with the batch's
``value_schema``), through one sidecar, in the same run. ``kafka-sidecar-bench formats`` registers
the schema and measures; this module starts the schema registry (``scripts/schema-registry``) and
a fresh sidecar pointed at it, and summarizes.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

import services
from services import log

if TYPE_CHECKING:
    from run import Bench
    from services import Service

ROOT = Path(__file__).resolve().parents[1]
TOPIC, PARTITIONS = "bench-formats", 6
APIS = ("http", "grpc")
FORMATS = ("binary", "avro")


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _summary(runs: dict[str, list[float]], records: int) -> dict[str, Any]:
    """One format on one API: records/s and CPU-µs per record over the repetitions."""
    return {
        "records_per_s": spread(runs["records_per_s"]),
        "sidecar_cpu_us_per_record": spread([cpu / records * 1e6 for cpu in runs["sidecar_cpu_s"]]),
        "client_cpu_us_per_record": spread([cpu / records * 1e6 for cpu in runs["client_cpu_s"]]),
        "refused_records": sum(runs["refused_records"]),
    }


def throughput(bench: Bench, broker: Service) -> dict[str, Any]:
    """Avro vs binary records/s and sidecar CPU per record, on each API."""
    profile = bench.profile
    registry = bench.start(services.start_schema_registry(ROOT / "scripts/schema-registry", broker.info["bootstrap"],
                                                          bench.work))
    try:
        sidecar = bench.start(services.start_sidecar(bench.args.sidecar_bin, broker.info["bootstrap"], bench.work,
                                                     "sidecar-formats",
                                                     [f"schema_registry.url={registry.info['url']}"]))
        try:
            raw = bench.tool("formats", "--sidecar-http", sidecar.info["http"], "--sidecar-grpc", sidecar.info["grpc"],
                             "--registry", registry.info["url"], "--pid", str(sidecar.pid), "--topic", TOPIC,
                             "--records", str(profile["formats_records"]), "--warm-up", str(profile["formats_warm_up"]),
                             "--repetitions", str(profile["formats_repetitions"]),
                             "--clock-ticks", str(services.CLOCK_TICKS))
        finally:
            sidecar.stop()
    finally:
        registry.stop()
    result: dict[str, Any] = {key: raw[key] for key in (
        "records", "warm_up", "batch_records", "concurrency", "schema_id", "subject", "schema", "value_bytes_mean",
        "avro_json_bytes_mean", "http_body_bytes_per_record")}
    result["partitions"] = PARTITIONS
    result["sidecar_command"] = sidecar.info["command"]
    for api in APIS:
        sides = {name: _summary(raw[api][name], raw["records"]) for name in FORMATS}
        sides["ratio"] = sides["avro"]["records_per_s"]["median"] / sides["binary"]["records_per_s"]["median"]
        # Each repetition measures both formats back to back: their ratio is less exposed to load that
        # drifts over the run (other processes on the machine) than the ratio of the medians.
        sides["repetition_ratios"] = spread([avro / binary for avro, binary in zip(
            raw[api]["avro"]["records_per_s"], raw[api]["binary"]["records_per_s"])])
        result[api] = sides
    log("formats: " + ", ".join(
        f"{api} binary {result[api]['binary']['records_per_s']['median']:,.0f}/s avro "
        f"{result[api]['avro']['records_per_s']['median']:,.0f}/s ({result[api]['ratio']:.2f}x)" for api in APIS))
    return result
