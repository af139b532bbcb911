"""Runs every benchmark scenario, direct vs sidecar, and writes ``bench/results/``.

Invoked by ``scripts/bench`` (which builds the binaries first). Scenarios, in order:
connections (3-broker mock cluster), throughput and footprint (tansu), latency (tansu, Rust
open-loop generator), in-process producer vs batched gRPC (tansu), overload (tansu, fresh
sidecar), produce throughput by value format, avro vs binary (tansu, a schema registry, a fresh
sidecar; see formats.py), consume throughput and idle consumer memory (tansu, fresh sidecars; see
consume.py), reactive push throughput and max_in_flight_batches (tansu, fresh sidecars; see
reactive.py).
Results go to ``results.json``; ``report.py`` renders the Markdown table and charts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import consume
import formats
import reactive
import report
import services
from services import Sampler, Service, log

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "bench/python/fleet.py"

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "connections_workers": [1, 4, 8, 16], "connections_records": 200,
        "throughput_workers": [1, 4, 8], "throughput_sizes": [100, 1024],
        "throughput_records": {"direct": 60_000, "sidecar": 30_000}, "throughput_repetitions": 2,
        "fleet_warm_up": 200,
        "latency_rates": [1000, 10000], "latency_seconds": 5, "latency_warm_up_s": 1, "latency_repetitions": 1,
        "compare_records": 200_000, "compare_warm_up": 20_000, "compare_repetitions": 3,
        "overload_seconds": 5, "overload_factor": 2.0, "fleet_timeout_s": 30,
        "consume_records": 500_000, "consume_value_size": 100, "consume_max_seconds": 8, "consume_repetitions": 2,
        "idle_instances": 50, "idle_settle_s": 3, "idle_seconds": 10,
        "reactive_records": 300_000, "reactive_value_size": 100, "reactive_max_seconds": 8,
        "reactive_repetitions": 2, "reactive_delay_ms": 5, "reactive_in_flight": [1, 4, 16],
        "reactive_delay_seconds": 3,
        "formats_records": 200_000, "formats_warm_up": 20_000, "formats_repetitions": 3,
    },
    "full": {
        "connections_workers": [1, 4, 8, 16], "connections_records": 500,
        "throughput_workers": [1, 4, 8], "throughput_sizes": [100, 1024],
        "throughput_records": {"direct": 300_000, "sidecar": 150_000}, "throughput_repetitions": 3,
        "fleet_warm_up": 500,
        "latency_rates": [1000, 10000], "latency_seconds": 15, "latency_warm_up_s": 2, "latency_repetitions": 3,
        "compare_records": 500_000, "compare_warm_up": 50_000, "compare_repetitions": 5,
        "overload_seconds": 10, "overload_factor": 2.0, "fleet_timeout_s": 60,
        "consume_records": 2_000_000, "consume_value_size": 100, "consume_max_seconds": 20, "consume_repetitions": 3,
        "idle_instances": 50, "idle_settle_s": 5, "idle_seconds": 10,
        "reactive_records": 1_000_000, "reactive_value_size": 100, "reactive_max_seconds": 20,
        "reactive_repetitions": 3, "reactive_delay_ms": 5, "reactive_in_flight": [1, 4, 16],
        "reactive_delay_seconds": 5,
        "formats_records": 500_000, "formats_warm_up": 50_000, "formats_repetitions": 5,
    },
}
# A few seconds per scenario: only proves the machinery works (for developing the benchmark).
PROFILES["smoke"] = dict(PROFILES["quick"], connections_workers=[1, 2], throughput_workers=[1, 2],
                         throughput_sizes=[100], throughput_records={"direct": 4000, "sidecar": 2000},
                         throughput_repetitions=1, latency_rates=[1000], latency_seconds=1,
                         compare_records=20_000, compare_warm_up=2000, compare_repetitions=1, overload_seconds=1,
                         consume_records=20_000, consume_max_seconds=3, consume_repetitions=1, idle_instances=10,
                         idle_settle_s=1, idle_seconds=1, reactive_records=20_000, reactive_max_seconds=3,
                         reactive_repetitions=1, reactive_delay_seconds=1, formats_records=20_000,
                         formats_warm_up=2000, formats_repetitions=1)
TOPICS = {"throughput": 6, "latency": 3, "compare": 6, "overload": 6, "consume": 6, "idle": 6, "reactive": 6,
          "formats": formats.PARTITIONS}


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def read_json_line(process: subprocess.Popen, limit_s: float) -> dict[str, Any]:
    """The next stdout line of ``process`` as JSON; raises if none comes within ``limit_s``."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=limit_s):
            raise RuntimeError(f"no answer from the fleet within {limit_s} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the fleet exited (status {process.wait()})")
    return json.loads(line)


class Bench:
    """Holds the binaries, the profile and the running services."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.profile = PROFILES[args.profile]
        self.work = Path(tempfile.mkdtemp(prefix="kafka-sidecar-bench-"))
        self.services: list[Service] = []
        self.retries: list[dict[str, Any]] = []
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT / "clients/python"), str(ROOT / "bench/python"), os.environ.get("PYTHONPATH", "")]))

    def start(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.services):
            if service.process.stdin:
                service.process.stdin.close()
            service.stop()

    def tool(self, *arguments: str) -> dict[str, Any]:
        """Runs ``kafka-sidecar-bench`` and parses its JSON line."""
        command = [self.args.bench_bin, *arguments]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:  # retried once, and the failure is kept in the results
            log(f"{arguments[0]} failed (status {completed.returncode}): {completed.stderr[-500:]!r}; retrying")
            self.retries.append({"command": command[1:], "status": completed.returncode,
                                 "stderr": completed.stderr[-2000:]})
            completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (status {completed.returncode}):\n{completed.stderr[-2000:]}")
        lines = completed.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def fleet(self, mode: str, workers: int, records: int, topic: str, bootstrap: str, address: str,
              value_size: int, sidecar: Optional[Service] = None, broker_ports: Optional[list[int]] = None,
              keyed: bool = False) -> dict[str, Any]:
        """One fleet run (see fleet.py): counts connections, samples the sidecar, returns results."""
        command = [sys.executable, str(FLEET), "--mode", mode, "--workers", str(workers),
                   "--records", str(records), "--topic", topic, "--bootstrap", bootstrap,
                   "--address", address, "--value-size", str(value_size),
                   "--warm-up", str(self.profile["fleet_warm_up"])]
        if keyed:
            command.append("--keyed")
        if self.args.fallback:
            command.append("--fallback")
        ports = broker_ports or []
        limit = self.profile["fleet_timeout_s"]
        with Sampler(lambda: services.established_to(ports)) as connections, \
                Sampler(lambda: services.rss_bytes(sidecar.pid) if sidecar else 0) as rss:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       env=self.env, start_new_session=True)
            try:
                ready = read_json_line(process, limit)
                if not ready.get("ready"):
                    raise RuntimeError(f"fleet did not start: {ready}")
                cpu_before = services.cpu_seconds(sidecar.pid) if sidecar else 0.0
                process.stdin.write("go\n")
                process.stdin.flush()
                result = read_json_line(process, limit)
                cpu_after = services.cpu_seconds(sidecar.pid) if sidecar else 0.0
                time.sleep(0.3)  # let the kernel table settle, then count the held connections
                result["connections_held"] = services.established_to(ports)
                result["sidecar_connections"] = (services.established_to([int(sidecar.info["grpc"].rsplit(":", 1)[1])])
                                                 if sidecar else 0)
                process.stdin.write("stop\n")
                process.stdin.flush()
                process.wait(timeout=60)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)  # the fleet and its forked workers
                    process.wait()
        if result.get("errors") or not result.get("workers"):
            raise RuntimeError(f"fleet {mode} x{workers} failed: {result.get('errors')}")
        result["connections_peak"] = int(connections.peak)
        result["sidecar_cpu_s"] = cpu_after - cpu_before
        result["sidecar_peak_rss_bytes"] = int(rss.peak)
        for worker in result.pop("workers"):
            result.setdefault("worker_rss_each", []).append(worker["rss_bytes"])
        return result

    def attempt(self, name: str, scenario: Any) -> Any:
        """Runs a scenario; a failure is logged and kept in the results instead of ending the run."""
        try:
            return scenario()
        except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as error:
            log(f"{name} failed: {error}")
            return {"error": str(error)[:2000]}

    def dropped(self, sidecar: Service) -> float:
        """Delivery reports the sidecar dropped so far (kafka_sidecar_delivery_reports_dropped_total)."""
        return services.metric_total(sidecar.info["admin"], "kafka_sidecar_delivery_reports_dropped_total")

    # ---- scenarios -------------------------------------------------------------------------------

    def connections(self, cluster: Service, sidecar: Service) -> list[dict[str, Any]]:
        rows = []
        for workers in self.profile["connections_workers"]:
            row: dict[str, Any] = {"workers": workers}
            for mode in ("direct", "sidecar"):
                try:
                    result = self.fleet(mode, workers, self.profile["connections_records"], "bench-connections",
                                        cluster.info["bootstrap"], sidecar.info["grpc"], 100,
                                        sidecar if mode == "sidecar" else None, cluster.info["ports"], keyed=True)
                except RuntimeError as error:
                    log(f"connections {mode} N={workers} failed: {error}")
                    row[mode] = {"error": str(error)}
                    continue
                row[mode] = {"held": result["connections_held"], "peak": result["connections_peak"],
                             "to_sidecar": result["sidecar_connections"], "client": result["client"]}
            log(f"connections N={workers}: direct {row['direct']} sidecar {row['sidecar']}")
            rows.append(row)
        return rows

    def throughput(self, broker: Service) -> list[dict[str, Any]]:
        rows = []
        for size in self.profile["throughput_sizes"]:
            for workers in self.profile["throughput_workers"]:
                # A fresh sidecar per configuration: the sessions of many short-lived fleets on one
                # sidecar exhaust its report budget (see the report's notes).
                sidecar = self.start(services.start_sidecar(self.args.sidecar_bin, broker.info["bootstrap"],
                                                            self.work, f"sidecar-throughput-{size}-{workers}", []))
                runs: dict[str, list[dict[str, Any]]] = {"direct": [], "sidecar": []}
                failures: dict[str, str] = {}
                for repetition in range(self.profile["throughput_repetitions"]):
                    order = ("direct", "sidecar") if repetition % 2 == 0 else ("sidecar", "direct")
                    for mode in order:
                        records = max(1, self.profile["throughput_records"][mode] // workers)
                        try:
                            runs[mode].append(self.fleet(mode, workers, records, "bench-throughput",
                                                         broker.info["bootstrap"], sidecar.info["grpc"], size,
                                                         sidecar if mode == "sidecar" else None))
                        except RuntimeError as error:
                            log(f"throughput {mode} N={workers} {size} B failed: {error}")
                            failures[mode] = str(error)
                row: dict[str, Any] = {"workers": workers, "value_size": size}
                for mode, results in runs.items():
                    if not results:
                        row[mode] = {"error": failures[mode]}
                        continue
                    row[mode + "_failed_runs"] = self.profile["throughput_repetitions"] - len(results)
                    row[mode] = {
                        "records_per_s": spread([r["records_per_s"] for r in results]),
                        "records": results[0]["records"],
                        "worker_cpu_s_per_million": spread([r["worker_cpu_s"] / r["records"] * 1e6 for r in results]),
                        "sidecar_cpu_s_per_million": spread([r["sidecar_cpu_s"] / r["records"] * 1e6 for r in results]),
                        "sidecar_peak_rss_bytes": max(r["sidecar_peak_rss_bytes"] for r in results),
                        "worker_rss_bytes": statistics.median(r["worker_rss_bytes"] for r in results),
                        "client": results[0]["client"],
                    }
                row["sidecar_reports_dropped"] = self.dropped(sidecar)
                row["sidecar_vm_hwm_bytes"] = services.peak_rss_bytes(sidecar.pid)
                sidecar.stop()
                log(f"throughput N={workers} {size} B: " + ", ".join(
                    f"{mode} {row[mode]['records_per_s']['median']:.0f}/s" for mode in runs if "error" not in row[mode]))
                rows.append(row)
        return rows

    def latency(self, broker: Service, sidecar: Service) -> list[dict[str, Any]]:
        rows = []
        targets = {"direct": ["--mode", "direct", "--bootstrap", broker.info["bootstrap"]],
                   "sidecar_tcp": ["--mode", "sidecar", "--sidecar", sidecar.info["grpc"]],
                   "sidecar_uds": ["--mode", "sidecar", "--sidecar", sidecar.info["uds"]]}
        for rate in self.profile["latency_rates"]:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for _ in range(self.profile["latency_repetitions"]):
                for name, target in targets.items():
                    runs[name].append(self.tool("latency", *target, "--topic", "bench-latency", "--rate", str(rate),
                                                "--seconds", str(self.profile["latency_seconds"]),
                                                "--warm-up-seconds", str(self.profile["latency_warm_up_s"])))
            row: dict[str, Any] = {"rate": rate}
            for name, results in runs.items():
                row[name] = {key: spread([r[key] for r in results]) for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
                row[name]["count"] = sum(r["count"] for r in results)
                row[name]["generator_worst_lag_ms"] = max(r["generator_worst_lag_ms"] for r in results)
            log(f"latency {rate}/s: " + ", ".join(f"{n} p50 {row[n]['p50_ms']['median']:.2f} p99 "
                                                  f"{row[n]['p99_ms']['median']:.2f}" for n in targets))
            rows.append(row)
        return rows

    def python_latency(self, broker: Service, sidecar: Service) -> dict[str, Any]:
        """The same open-loop measurement from a Python process, through the Python clients."""
        targets = {"direct": ["--mode", "direct"], "sidecar_tcp": ["--mode", "sidecar", "--address", sidecar.info["grpc"]],
                   "sidecar_uds": ["--mode", "sidecar", "--address", sidecar.info["uds"]],
                   # The client's linger.ms defaults to librdkafka's 5 ms, on top of the sidecar's own.
                   "sidecar_tcp_linger0": ["--mode", "sidecar", "--address", sidecar.info["grpc"],
                                           "--client-linger-ms", "0"]}
        rate = self.profile["latency_rates"][0]
        row: dict[str, Any] = {"rate": rate}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(self.profile["latency_repetitions"]):
            for name, target in targets.items():
                command = [sys.executable, str(ROOT / "bench/python/latency.py"), *target, "--bootstrap",
                           broker.info["bootstrap"], "--topic", "bench-latency", "--rate", str(rate),
                           "--seconds", str(self.profile["latency_seconds"]),
                           "--warm-up-seconds", str(self.profile["latency_warm_up_s"])]
                if self.args.fallback:
                    command.append("--fallback")
                completed = subprocess.run(command, capture_output=True, text=True, env=self.env,
                                           timeout=self.profile["fleet_timeout_s"] + 60)
                lines = completed.stdout.strip().splitlines()
                if completed.returncode != 0 or not lines:
                    log(f"python latency {name} failed: {completed.stderr[-500:]!r}")
                    continue
                runs[name].append(json.loads(lines[-1]))
        for name, results in runs.items():
            if not results:
                row[name] = {"error": "failed"}
                continue
            row[name] = {key: spread([r[key] for r in results]) for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
            row[name]["client"] = results[0]["client"]
            row[name]["generator_worst_lag_ms"] = max(r["generator_worst_lag_ms"] for r in results)
        log("python latency: " + ", ".join(f"{n} p50 {row[n]['p50_ms']['median']:.2f} p99 {row[n]['p99_ms']['median']:.2f}"
                                           for n in targets if "error" not in row[n]))
        return row

    def compare(self, broker: Service, sidecar: Service) -> dict[str, Any]:
        result = self.tool("compare", "--bootstrap", broker.info["bootstrap"], "--sidecar", sidecar.info["grpc"],
                           "--topic", "bench-compare", "--records", str(self.profile["compare_records"]),
                           "--warm-up", str(self.profile["compare_warm_up"]),
                           "--repetitions", str(self.profile["compare_repetitions"]))
        result["in_process"] = spread(result.pop("in_process_rps"))
        result["sidecar"] = spread(result.pop("sidecar_rps"))
        log(f"compare: in-process {result['in_process']['median']:.0f}/s sidecar {result['sidecar']['median']:.0f}/s")
        return result

    def overload(self, broker: Service, sustained: float) -> dict[str, Any]:
        sidecar = self.start(services.start_sidecar(self.args.sidecar_bin, broker.info["bootstrap"], self.work,
                                                     "sidecar-overload", []))
        rate = sustained * self.profile["overload_factor"]
        result = self.tool("overload", "--sidecar", sidecar.info["grpc"], "--pid", str(sidecar.pid),
                           "--topic", "bench-overload", "--rate", f"{rate:.0f}",
                           "--seconds", str(self.profile["overload_seconds"]))
        result["sustained_rps"] = sustained
        result["vm_hwm_bytes"] = services.peak_rss_bytes(sidecar.pid)
        sidecar.stop()
        log(f"overload at {rate:.0f}/s: refused {result['refused_share']:.1%}, "
            f"peak RSS {result['peak_rss_bytes'] / 2**20:.1f} MiB")
        return result


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for module in ("confluent_kafka", "grpc"):
        try:
            imported = __import__(module)
            versions[module] = getattr(imported, "__version__", "") or str(imported.version())
        except ImportError:
            versions[module] = "missing"
    try:
        import confluent_kafka
        versions["librdkafka (python)"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return {"cores": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "versions": versions,
            "commit": commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    profile_name = args.profile
    results: dict[str, Any] = {"profile": profile_name, "config": bench.profile, "machine": machine()}
    started = time.monotonic()
    try:
        log(f"profile {profile_name}; work dir {bench.work}")
        cluster = bench.start(services.start_mock_cluster(args.bench_bin, 3, 6, ["bench-connections"]))
        tansu = bench.start(services.start_tansu(args.tansu, bench.work))
        bench.tool("create-topics", "--bootstrap", tansu.info["bootstrap"], "--partitions", "6",
                   *sum((["--topic", f"bench-{name}"] for name in TOPICS), []))
        cluster_sidecar = bench.start(services.start_sidecar(args.sidecar_bin, cluster.info["bootstrap"], bench.work,
                                                             "sidecar-cluster", []))
        sidecar = bench.start(services.start_sidecar(args.sidecar_bin, tansu.info["bootstrap"], bench.work,
                                                     "sidecar", []))
        time.sleep(1.0)
        results["sidecar_command"] = sidecar.info["command"]
        results["footprint"] = {"idle_rss_bytes": services.rss_bytes(sidecar.pid)}
        log(f"sidecar idle RSS {results['footprint']['idle_rss_bytes'] / 2**20:.1f} MiB")
        results["connections"] = bench.connections(cluster, cluster_sidecar)
        cluster_sidecar.stop()
        sidecar.stop()
        results["throughput"] = bench.throughput(tansu)
        results["footprint"]["load_peak_rss_bytes"] = max(
            [row["sidecar"].get("sidecar_peak_rss_bytes", 0) for row in results["throughput"]])
        results["footprint"]["vm_hwm_bytes"] = max(row["sidecar_vm_hwm_bytes"] for row in results["throughput"])
        results["reports_dropped"] = {"throughput": sum(row["sidecar_reports_dropped"] for row in results["throughput"])}
        # Each later scenario gets a fresh sidecar: sessions of the fleets above keep reports
        # (see the report's notes), and footprint numbers should not carry over.
        sidecar = bench.start(services.start_sidecar(args.sidecar_bin, tansu.info["bootstrap"], bench.work,
                                                     "sidecar-latency", []))
        results["latency"] = bench.attempt("latency", lambda: bench.latency(tansu, sidecar))
        results["python_latency"] = bench.attempt("python latency", lambda: bench.python_latency(tansu, sidecar))
        results["reports_dropped"]["latency"] = bench.dropped(sidecar)
        sidecar.stop()
        sidecar = bench.start(services.start_sidecar(args.sidecar_bin, tansu.info["bootstrap"], bench.work,
                                                     "sidecar-compare", []))
        results["compare"] = bench.attempt("compare", lambda: bench.compare(tansu, sidecar))
        results["reports_dropped"]["compare"] = bench.dropped(sidecar)
        sidecar.stop()
        if "error" not in results["compare"]:
            results["overload"] = bench.attempt(
                "overload", lambda: bench.overload(tansu, results["compare"]["sidecar"]["median"]))
        results["formats"] = bench.attempt("formats", lambda: formats.throughput(bench, tansu))
        results["consume"] = bench.attempt("consume", lambda: consume.throughput(bench, tansu))
        results["idle_consumers"] = bench.attempt("idle consumers", lambda: consume.idle(bench, tansu))
        results["reactive"] = bench.attempt("reactive", lambda: reactive.throughput(bench, tansu))
    finally:
        bench.stop_all()
    results["retried_runs"] = bench.retries
    results["elapsed_s"] = time.monotonic() - started
    return results


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so brokers, sidecars and fleets started here are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; under 5 minutes on 2 cores")
    parser.add_argument("--out", default=str(ROOT / "bench/results"))
    parser.add_argument("--bench-bin", default=str(ROOT / "target/release/kafka-sidecar-bench"))
    parser.add_argument("--sidecar-bin", default=str(ROOT / "target/release/kafka-sidecar"))
    parser.add_argument("--tansu", required=True, help="path of the tansu binary")
    parser.add_argument("--fallback", action="store_true", help="use the grpcio fallback, not kafka_sidecar")
    parser.add_argument("--render-only", action="store_true", help="re-render results.json")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="overrides --quick (smoke: seconds)")
    args = parser.parse_args()
    args.profile = args.profile or ("quick" if args.quick else "full")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        results = json.loads((out / "results.json").read_text())
    else:
        results = run(args)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report.render(results, out))


if __name__ == "__main__":
    main()
