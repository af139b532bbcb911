"""Renders ``results.json`` as the Markdown report (goals beside measured values) and PNG charts.

Every ratio compares numbers measured in the same run. Nothing here is pass/fail: the "goal"
column says whether the measured value reaches the issue's target, for the reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIB = 2**20


def ms(value: float) -> str:
    return f"{value:.2f} ms"


def rate(value: float) -> str:
    return f"{value:,.0f}/s"


def median_range(stat: dict[str, Any], fmt: Any) -> str:
    """``median (min–max)`` when repeated, else the value."""
    if len(stat["values"]) > 1:
        return f"{fmt(stat['median'])} ({fmt(stat['min'])}–{fmt(stat['max'])})"
    return fmt(stat["median"])


def times(ratio: float) -> str:
    """A ratio; two significant digits below 0.1x so a tiny one does not print as 0.00x."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def over(value: float, base: float) -> str:
    """``value / base`` as a ratio, or – when the base is 0 (a CPU time below one clock tick)."""
    return times(value / base) if base > 0 else "–"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def failed(*entries: dict[str, Any]) -> str:
    """The first error among ``entries`` (a run that did not finish), or ''."""
    return next((entry["error"] for entry in entries if "error" in entry), "")


def failed_row(label: str, error: str) -> list[str]:
    return [label, "failed", "failed", "", "", error[:120].replace("|", "/").replace("\n", " ")]


def connection_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    connections = results["connections"]
    sidecar_counts = {row["sidecar"].get("held") for row in connections}
    for row in connections:
        if failed(row["direct"], row["sidecar"]):
            rows.append(failed_row(f"Connections to brokers, N={row['workers']}", failed(row["direct"], row["sidecar"])))
            continue
        direct, sidecar = row["direct"]["held"], row["sidecar"]["held"]
        fewer = direct / sidecar if sidecar else float("inf")
        goal, met = "", ""
        if row["workers"] == max(r["workers"] for r in connections):
            goal = "≥ 12x fewer at N=16; constant in N"
            met = verdict(fewer >= 12 and len(sidecar_counts) == 1)
        rows.append([f"Connections to brokers, N={row['workers']} (peak {row['direct']['peak']} / "
                     f"{row['sidecar']['peak']})", str(direct), str(sidecar), f"{fewer:.1f}x fewer", goal, met])
    return rows


def throughput_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for row in results["throughput"]:
        if failed(row["direct"], row["sidecar"]):
            rows.append(failed_row(f"Throughput, N={row['workers']}, {row['value_size']} B values",
                                   failed(row["direct"], row["sidecar"])))
            continue
        direct, sidecar = row["direct"]["records_per_s"], row["sidecar"]["records_per_s"]
        ratio = sidecar["median"] / direct["median"]
        goal, met = ("≥ 1.0x direct", verdict(ratio >= 1.0)) if row["workers"] == 8 else ("", "")
        lost = row.get("sidecar_failed_runs", 0) + row.get("direct_failed_runs", 0)
        if lost:
            met = (met + f" ({lost} run(s) hung; see notes)").strip()
        rows.append([f"Throughput, N={row['workers']}, {row['value_size']} B values (records/s acked)",
                     median_range(direct, rate), median_range(sidecar, rate), f"{ratio:.2f}x", goal, met])
    return rows


def latency_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    if isinstance(results["latency"], dict):
        return [failed_row("Latency (Rust generator)", results["latency"]["error"])]
    for row in results["latency"]:
        for key, label, limit in (("p50_ms", "p50", 0.15), ("p99_ms", "p99", 0.5), ("p999_ms", "p99.9", None)):
            direct = row["direct"][key]["median"]
            for transport in ("tcp", "uds"):
                sidecar = row[f"sidecar_{transport}"][key]["median"]
                added = sidecar - direct
                goal, met = "", ""
                if row["rate"] == 1000 and limit is not None:
                    goal, met = f"≤ +{limit} ms", verdict(added <= limit)
                rows.append([f"Latency {label} at {row['rate']:,} msg/s, sidecar over {transport.upper()}",
                             ms(direct), f"{ms(sidecar)} ({added:+.2f} ms)", f"{sidecar / direct:.2f}x", goal, met])
    return rows


def python_latency_rows(results: dict[str, Any]) -> list[list[str]]:
    row = results.get("python_latency")
    if not row or "error" in row or failed(row["direct"]):
        return [failed_row("Python latency", (row or {}).get("error", "") or failed(row["direct"]))] if row else []
    rows = []
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        direct = row["direct"][key]["median"]
        for transport, suffix, note in (("tcp", "", ""), ("uds", "", ""), ("tcp", "_linger0", ", client linger.ms=0")):
            entry = row.get(f"sidecar_{transport}{suffix}", {"error": "not run"})
            if failed(entry):
                rows.append(failed_row(f"Python latency {label}, sidecar over {transport.upper()}{note}", failed(entry)))
                continue
            sidecar = entry[key]["median"]
            rows.append([f"Python latency {label} at {row['rate']:,} msg/s, confluent_kafka vs "
                         f"{entry['client'].split(' ')[0]} over {transport.upper()}{note}", ms(direct),
                         f"{ms(sidecar)} ({sidecar - direct:+.2f} ms)", f"{sidecar / direct:.2f}x", "", ""])
    return rows


def footprint_rows(results: dict[str, Any]) -> list[list[str]]:
    footprint = results["footprint"]
    idle, load = footprint["idle_rss_bytes"] / MIB, footprint["load_peak_rss_bytes"] / MIB
    rows = [["Sidecar RSS idle", "–", f"{idle:.1f} MiB", "", "≤ 15 MB", verdict(idle * MIB <= 15e6)],
            ["Sidecar RSS peak under the throughput runs", "–", f"{load:.1f} MiB", "", "≤ 64 MB",
             verdict(load * MIB <= 64e6)]]
    for row in results["throughput"]:
        if row["workers"] != max(r["workers"] for r in results["throughput"]) or failed(row["direct"], row["sidecar"]):
            continue
        direct = row["direct"]["worker_cpu_s_per_million"]["median"]
        workers = row["sidecar"]["worker_cpu_s_per_million"]["median"]
        sidecar = row["sidecar"]["sidecar_cpu_s_per_million"]["median"]
        rows.append([f"CPU-s per million records, N={row['workers']}, {row['value_size']} B "
                     f"(workers; sidecar mode: workers + sidecar)", f"{direct:.2f}",
                     f"{workers:.2f} + {sidecar:.2f}", over(workers + sidecar, direct), "", ""])
        rows.append([f"Worker RSS, sum of N={row['workers']} processes, {row['value_size']} B",
                     f"{row['direct']['worker_rss_bytes'] / MIB:.0f} MiB",
                     f"{row['sidecar']['worker_rss_bytes'] / MIB:.0f} MiB + sidecar "
                     f"{row['sidecar']['sidecar_peak_rss_bytes'] / MIB:.0f} MiB", "", "", ""])
    return rows


def compare_rows(results: dict[str, Any]) -> list[list[str]]:
    compare = results["compare"]
    if "error" in compare:
        return [failed_row("Rust in-process producer vs sidecar batched gRPC", compare["error"])]
    ratio = compare["sidecar"]["median"] / compare["in_process"]["median"]
    return [[f"Rust in-process producer vs sidecar batched gRPC ({compare['value_size']} B, "
             f"{compare['batch_records']}-record EmitBatch x{compare['concurrency']})",
             median_range(compare["in_process"], rate), median_range(compare["sidecar"], rate),
             f"{ratio:.2f}x", "≥ 0.8x", verdict(ratio >= 0.8)]]


def overload_rows(results: dict[str, Any]) -> list[list[str]]:
    overload = results.get("overload", {"error": "not run"})
    if "error" in overload:
        return [failed_row("Overload", overload["error"])]
    peak = overload["peak_rss_bytes"] / MIB
    accepted = overload["delivery_latency_accepted"]
    return [
        [f"Overload: offered {rate(overload['offered_rate'])} (2x sustained; achieved "
         f"{rate(overload['achieved_offered_rps'])}), share refused with QUEUE_FULL", "–",
         f"{overload['refused_share']:.1%} of records, {overload['batches_refused_share']:.1%} of calls", "", "", ""],
        ["Overload: accepted records, produce-to-ack p50 / p99", "–",
         f"{ms(accepted['p50_ms'])} / {ms(accepted['p99_ms'])}", "", "", ""],
        ["Overload: sidecar peak RSS", "–", f"{peak:.1f} MiB", "", "bounded (≤ 64 MB)", verdict(peak * MIB <= 64e6)],
    ]


def _ratio_with_pairs(ratio: float, api: dict[str, Any]) -> str:
    """The ratio of the medians, with the range of the per-repetition ratios when repeated."""
    pairs = api.get("repetition_ratios")
    if not pairs or len(pairs["values"]) < 2:
        return times(ratio)
    return f"{times(ratio)} (per repetition {times(pairs['min'])}–{times(pairs['max'])})"


def formats_rows(results: dict[str, Any]) -> list[list[str]]:
    formats = results.get("formats")
    if formats is None:
        return []
    if "error" in formats:
        return [failed_row("Produce by value format, avro vs binary", formats["error"])]
    apis = {"http": "HTTP `POST /producers/{topic}`", "grpc": "gRPC `EmitBatch` (avro values as JSON text)"}
    rows = []
    for api, label in apis.items():
        binary, avro = formats[api]["binary"], formats[api]["avro"]
        ratio = formats[api]["ratio"]
        refused = binary["refused_records"] + avro["refused_records"]
        retried = f"; {refused:,} records refused with QUEUE_FULL and resent" if refused else ""
        rows.append([f"Produce by value format, {label}: binary (direct column) vs avro with the schema registered "
                     f"beforehand and named by id, cached (sidecar column); {formats['value_bytes_mean']:.0f} B values "
                     f"(a record of long, string, int, double, nullable string; binary values of the same bytes), "
                     f"{formats['batch_records']}-record requests x{formats['concurrency']} in flight{retried} "
                     "(records/s acked)", median_range(binary["records_per_s"], rate),
                     median_range(avro["records_per_s"], rate), _ratio_with_pairs(ratio, formats[api]),
                     "avro ≥ 0.7x binary",
                     verdict(ratio >= 0.7)])
        base = binary["sidecar_cpu_us_per_record"]["median"]
        own = avro["sidecar_cpu_us_per_record"]["median"]
        rows.append([f"Sidecar CPU-µs per record by value format, {label} (binary vs avro; the benchmark client's: "
                     f"{binary['client_cpu_us_per_record']['median']:.2f} / "
                     f"{avro['client_cpu_us_per_record']['median']:.2f})", f"{base:.2f}", f"{own:.2f}",
                     over(own, base), "", ""])
    return rows


def _limits(settings: list[str]) -> str:
    """A sidecar variant's settings, short: ``request_max_bytes=4194304, ...`` or ``defaults``."""
    if not settings:
        return "default limits (request_max_bytes 200 KiB, prefetch 200 KiB, max_poll_records 100)"
    return "large limits (" + ", ".join(setting.removeprefix("consumer.") for setting in settings) + ")"


def consume_rows(results: dict[str, Any]) -> list[list[str]]:
    consume = results.get("consume")
    if consume is None:
        return []
    if "error" in consume:
        return [failed_row("Consume throughput", consume["error"])]
    rows = []
    direct = consume["direct"]
    budget = results["config"]["consume_max_seconds"]
    for name, settings in consume["limits"].items():
        sidecar = consume[f"sidecar_{name}"]
        partial = (f"; {sidecar['incomplete_runs']} run(s) stopped at the {budget} s budget"
                   if sidecar["incomplete_runs"] else "")
        rows.append([f"Consume throughput, {consume['value_size']} B values, {consume['partitions']} partitions, "
                     f"one consumer, {_limits(settings)}: {sidecar['records_per_fetch']:,.0f} records per fetch, "
                     f"slowest fetch {sidecar['slowest_fetch_ms']:,.0f} ms{partial} (records/s read, first to last)",
                     median_range(direct["records_per_s"], rate), median_range(sidecar["records_per_s"], rate),
                     over(sidecar["records_per_s"]["median"], direct["records_per_s"]["median"]), "", ""])
    for name, settings in consume["limits"].items():
        sidecar = consume[f"sidecar_{name}"]
        base = direct["client_cpu_s_per_million"]["median"]
        client = sidecar["client_cpu_s_per_million"]["median"]
        own = sidecar["sidecar_cpu_s_per_million"]["median"]
        rows.append([f"Consume CPU-s per million records, {_limits(settings)} (consumer process; sidecar mode: "
                     f"HTTP client + sidecar)", f"{base:.2f}", f"{client:.2f} + {own:.2f}",
                     over(client + own, base), "", ""])
    if "direct_tuned" in consume:
        tuned = consume["direct_tuned"]
        rows.append([f"Consume throughput reference: the direct consumer with `{consume['tuned_direct']}` "
                     "(librdkafka's default is 1000 ms; no sidecar involved)", median_range(tuned["records_per_s"], rate),
                     "–", "", "", ""])
    first = [consume[f"sidecar_{name}"]["first_record_ms"]["median"] for name in consume["limits"]]
    rows.append(["Consume: time from the assignment to the first record (sidecar: " +
                 " / ".join(f"{name.removesuffix('s')} limits" for name in consume["limits"]) + ")",
                 ms(direct["first_record_ms"]["median"]), " / ".join(ms(value) for value in first), "", "", ""])
    return rows


def idle_consumer_rows(results: dict[str, Any]) -> list[list[str]]:
    idle = results.get("idle_consumers")
    if idle is None:
        return []
    if "error" in idle:
        return [failed_row("Idle consumers", idle["error"])]
    direct, sidecar = idle["direct"], idle["sidecar"]
    count = sidecar["instances"]
    per_direct, per_sidecar = direct["rss_per_instance_bytes"] / MIB, sidecar["rss_per_instance_bytes"] / MIB
    return [
        [f"RSS per idle consumer, {count} consumers each assigned an empty 6-partition topic (rdkafka consumers "
         f"in one process vs active-API instances; sidecar {sidecar['rss_before_bytes'] / MIB:.1f} → "
         f"{sidecar['rss_after_bytes'] / MIB:.1f} MiB, {sidecar['rss_after_delete_bytes'] / MIB:.1f} MiB after "
         f"deleting them)", f"{per_direct:.2f} MiB", f"{per_sidecar:.2f} MiB",
         over(per_sidecar, per_direct), "", ""],
        [f"Threads per idle consumer; CPU of {count} idle consumers (CPU-s per s)",
         f"{direct['threads_per_instance']:.1f}; {direct['idle_cpu_s_per_s']:.3f}",
         f"{sidecar['threads_per_instance']:.1f}; {sidecar['idle_cpu_s_per_s']:.3f}", "", "", ""],
        ["Time to create one consumer (sidecar: create + assign over HTTP)",
         ms(direct["create_ms_each"]), ms(sidecar["create_ms_each"]), "", "", ""],
    ]


def reactive_rows(results: dict[str, Any]) -> list[list[str]]:
    push = results.get("reactive")
    if push is None:
        return []
    if "error" in push:
        return [failed_row("Reactive push throughput", push["error"])]
    direct, instant = push["direct"], push["instant"]
    budget = results["config"]["reactive_max_seconds"]
    partial = "".join(f"; {side['incomplete_runs']} {name} run(s) stopped at the {budget} s budget"
                      for name, side in (("direct", direct), ("reactive", instant)) if side["incomplete_runs"])
    ratio = instant["records_per_s"]["median"] / direct["records_per_s"]["median"]
    rows = [[f"Reactive push throughput, {push['value_size']} B values, {push['partitions']} partitions, "
             f"{push['keys']} keys: backend answering at once, max_in_flight_batches {push['instant_in_flight']}, "
             f"batches of up to {push['batch_records']} ({instant['records_per_request']:.0f} records per push, "
             f"{instant['sidecar_push_ms']:.2f} ms per push as the sidecar times it) vs a direct rdkafka consumer loop "
             f"(subscribe, poll, auto-commit){partial} (records/s received, first to last)",
             median_range(direct["records_per_s"], rate), median_range(instant["records_per_s"], rate),
             times(ratio), "≥ 0.8x", verdict(ratio >= 0.8)]]
    base = direct["cpu_s_per_million"]["median"]
    sidecar, backend = (instant["sidecar_cpu_s_per_million"]["median"], instant["backend_cpu_s_per_million"]["median"])
    rows.append(["Reactive CPU-s per million records, backend answering at once (consumer process; reactive: "
                 "sidecar + the backend's JSON parse)", f"{base:.2f}", f"{sidecar:.2f} + {backend:.2f}",
                 over(sidecar + backend, base), "", ""])
    for entry in push["in_flight"]:
        share = entry["records_per_s"]["median"] / entry["ceiling_records_per_s"]
        rows.append([f"Reactive push, backend answering after {push['delay_ms']} ms ({entry['mean_answer_ms']:.1f} ms "
                     f"measured), max_in_flight_batches {entry['max_in_flight_batches']}: "
                     f"{entry['mean_in_flight']:.1f} pushes in flight on average, {entry['records_per_request']:.0f} "
                     f"records per push, sidecar {entry['sidecar_cpu_s_per_million']['median']:.2f} CPU-s per million "
                     f"(records/s; vs the ceiling of {entry['max_in_flight_batches']} x {push['batch_records']} "
                     f"records per answer = {rate(entry['ceiling_records_per_s'])})", "–",
                     median_range(entry["records_per_s"], rate), f"{share:.0%} of the ceiling", "", ""])
    duplicates = instant["duplicates"] + sum(entry["duplicates"] for entry in push["in_flight"])
    if duplicates:
        rows.append(["Reactive push: records the backend received more than once", "–", str(duplicates), "", "", ""])
    return rows


def table(results: dict[str, Any]) -> str:
    header = ["Scenario", "Direct", "Sidecar", "Sidecar vs direct", "Goal", "Goal met?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    builders = (connection_rows, throughput_rows, latency_rows, python_latency_rows, footprint_rows, compare_rows,
                overload_rows, formats_rows, consume_rows, idle_consumer_rows, reactive_rows)
    for builder in builders:
        for row in builder(results):
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def setup(results: dict[str, Any]) -> str:
    machine = results["machine"]
    clients = sorted({row["sidecar"]["client"] for row in results["throughput"] if "client" in row["sidecar"]})
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return "\n".join([
        f"* Profile `{results['profile']}`, {results['elapsed_s']:.0f} s, {machine['date']}, commit {machine['commit']}",
        f"* Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_bytes'] / 2**30:.0f} GiB, "
        f"Linux {machine['kernel']}; {versions}",
        f"* Python sidecar client used: {', '.join(clients)}",
        "* Brokers: connections on librdkafka's 3-broker mock cluster (6 partitions, keyed records); "
        "everything else on one tansu broker (in-memory storage). Direct producers use the sidecar's "
        "librdkafka settings (idempotence, acks=all, lz4, linger 5 ms, batch.size 1 MB).",
        f"* Sidecar: `{' '.join(results['sidecar_command'][1:])}` (defaults otherwise)",
        f"* Sizes and repetitions: `{results['config']}`",
        "* Values shown as median (min–max) over the repetitions; latency is measured open-loop from "
        "each record's scheduled send time to its delivery report (HdrHistogram).",
        *([] if not isinstance(results.get("formats"), dict) or "error" in results["formats"] else [
            "* Value formats: one fresh sidecar with `schema_registry.url` set, pointed at crabka-schema-registry "
            "(`scripts/schema-registry`, schemas kept on the same tansu); the Order schema is registered under "
            f"`{results['formats']['subject']}` before timing and named by id (`valueSchemaId` / `SchemaSpec.id`), "
            "so the sidecar fetches it once, in the warm-up. Same topic, keys (`order-<id>`, string format), batch "
            "size and concurrency for both formats; binary values are random bytes as long as each record's avro "
            f"encoding with its 5-byte header ({results['formats']['value_bytes_mean']:.0f} B on average; the avro "
            f"JSON is {results['formats']['avro_json_bytes_mean']:.0f} B). Request bodies are built before timing. "
            "Records/s from the first measured request to the last acknowledgement (HTTP answers wait for Kafka; "
            "gRPC counts delivery reports) after a warm-up; CPU over the same window from `/proc/PID/stat`. "
            "Repetitions alternate which format goes first."]),
        *([] if "consume" not in results else [
            "* Consume: one consumer reads every record of a 6-partition topic from the beginning (fresh group, "
            "partitions assigned by hand, no commits). Direct: an rdkafka `BaseConsumer` with librdkafka's default "
            "fetch settings inside `kafka-sidecar-bench`. Sidecar: one active-API instance, "
            "`GET .../records?timeout=1000` in a loop, values base64-decoded by the client; one fresh sidecar per "
            "limits variant, lag exporter off (`consumer.lag_interval_ms=0`). Each side reads all records or stops "
            f"at the {results['config'].get('consume_max_seconds')} s budget; records/s from the first record to the "
            "last, CPU from the assignment to the last record (`/proc/PID/stat`, 10 ms ticks). Idle consumers: "
            "every sidecar default, lag exporter on."]),
        *([] if "reactive" not in results else [
            "* Reactive push: a keyed 6-partition topic (600 keys, each in one partition) read from the beginning. "
            "Direct: an rdkafka `BaseConsumer` that subscribes with a fresh group, polls and auto-commits "
            "(librdkafka's defaults otherwise). Reactive: a fresh sidecar per run (fresh group, "
            "`consumer.lag_interval_ms=0`, `session.timeout.ms=6000` for tansu's group join, as for the direct "
            "side) pushing to `kafka-sidecar-bench backend`, a one-thread axum server that parses each batch's "
            "JSON for its partitions and offsets and answers 200 with an empty body, at once or after "
            f"{results['config'].get('reactive_delay_ms')} ms. Records/s from the first record (batch) to the "
            "last; CPU over the same window (reactive) or from the subscription to the last record (direct). "
            "The in-flight runs stop after "
            f"{results['config'].get('reactive_delay_seconds')} s."]),
    ])


def notes(results: dict[str, Any]) -> str:
    """Anything that went wrong during the run, so no number is read without it."""
    lines = []
    dropped = results.get("reports_dropped", {})
    if any(dropped.values()):
        lines.append(f"* Delivery reports dropped by the sidecar (`kafka_sidecar_delivery_reports_dropped_total`), "
                     f"per sidecar: {dropped}. A worker whose reports are dropped waits in `flush()` until the "
                     "fleet times out: such runs are left out of the medians and counted as hung.")
    for retry in results.get("retried_runs", []):
        lines.append(f"* Retried once after status {retry['status']}: `{' '.join(retry['command'][:3])} ...`: "
                     f"{retry['stderr'].strip().splitlines()[0] if retry['stderr'].strip() else ''}")
    return "\n".join(["## Notes", *lines]) if lines else ""


def charts(results: dict[str, Any], out: Path) -> list[str]:
    """Writes bench.png (four panels); returns the file names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    connections = results["connections"]
    workers = [row["workers"] for row in connections]
    axis = axes[0][0]
    for mode, marker in (("direct", "o-"), ("sidecar", "s-")):
        axis.plot(workers, [row[mode].get("held", float("nan")) for row in connections], marker, label=mode)
    axis.set(title="Broker connections (3-broker cluster)", xlabel="worker processes", ylabel="established TCP")
    axis.legend()
    axis = axes[0][1]
    labels = [f"N={row['workers']}\n{row['value_size']}B" for row in results["throughput"]]
    positions = range(len(labels))
    for offset, mode in ((-0.2, "direct"), (0.2, "sidecar")):
        axis.bar([p + offset for p in positions],
                 [row[mode]["records_per_s"]["median"] if "records_per_s" in row[mode] else 0
                  for row in results["throughput"]], 0.4, label=mode)
    axis.set_xticks(list(positions), labels)
    axis.set(title="Python workers: records/s acked (tansu)", ylabel="records/s")
    axis.set_yscale("log")
    axis.legend()
    axis = axes[1][0]
    names = ["direct", "sidecar_tcp", "sidecar_uds"]
    if isinstance(results["latency"], dict):
        results = dict(results, latency=[])
    groups = [(row["rate"], key) for row in results["latency"] for key in ("p50_ms", "p99_ms", "p999_ms")]
    for index, name in enumerate(names):
        values = [next(r for r in results["latency"] if r["rate"] == rate_)[name][key]["median"] for rate_, key in groups]
        axis.bar([g + (index - 1) * 0.27 for g in range(len(groups))], values, 0.27, label=name)
    axis.set_xticks(list(range(len(groups))), [f"{r:,}/s\n{k.replace('_ms', '')}" for r, k in groups])
    axis.set(title="Produce-to-delivery latency (open loop)", ylabel="ms")
    axis.legend()
    axis = axes[1][1]
    compare = results["compare"]
    overload = results.get("overload", {})
    if "error" not in compare:
        axis.bar(["Rust in-process", "sidecar batched gRPC", "overload accepted"],
                 [compare["in_process"]["median"], compare["sidecar"]["median"], overload.get("accepted_rps", 0)])
    axis.set(title="Rust: records/s acked", ylabel="records/s")
    figure.tight_layout()
    figure.savefig(out / "bench.png", dpi=90)
    plt.close(figure)
    return ["bench.png"]


def render(results: dict[str, Any], out: Path) -> str:
    """Writes results.md and the chart; returns the Markdown."""
    images = charts(results, out)
    sections = ["# kafka-sidecar benchmark", setup(results), table(results), notes(results)]
    markdown = "\n\n".join([section for section in sections if section]
                           + [f"![benchmark]({image})" for image in images]) + "\n"
    (out / "results.md").write_text(markdown)
    return markdown
