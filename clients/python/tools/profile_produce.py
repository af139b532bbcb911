"""Measure and profile the client's produce path against a real sidecar on tansu.

Starts tansu (``scripts/tansu path``, or ``--bootstrap``) and a fresh sidecar per run (release
binary by default: ``cargo build --release --bin kafka-sidecar``), then one of:

* ``fleet``: runs ``bench/python/fleet.py`` (the benchmark's forked workers) in the sidecar
  and/or direct mode; prints records/s and worker CPU-s per million records, per run and as
  medians. ``--records`` is the total per run, split over the workers, as in ``bench/run.py``::

      python3 clients/python/tools/profile_produce.py fleet --workers 1 8 --records 200000

* ``profile``: ``--processes`` producers running the fleet's produce loop, the first under
  ``py-spy`` (``pip install py-spy``; ``--gil``: only the thread holding the GIL is sampled, so
  the samples show where Python CPU goes); prints the hottest lines, self and inclusive, and
  for every process records/s, CPU per record, the mean records per ``EmitBatch`` and reports
  per ``DeliveryReportBatch``, and the time spent in garbage collection (``--threads``: CPU by
  OS thread too). ``--no-py-spy`` only measures::

      python3 clients/python/tools/profile_produce.py profile --records 300000

* ``latency``: ``bench/python/latency.py`` (open loop, produce to callback), direct and through
  the sidecar::

      python3 clients/python/tools/profile_produce.py latency --repetitions 3

The client measured is this checkout's (``clients/python`` goes first on ``PYTHONPATH``), or the
one at ``$PROFILE_PRODUCE_CLIENT`` (a ``clients/python`` directory), to compare two versions.
Runs vary by a third from one to the next (batch sizes follow thread scheduling): repeat them.
``bench_pipeline.py`` measures the client's own work deterministically, without a network.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "clients/python"
FLEET = ROOT / "bench/python/fleet.py"
sys.path.insert(0, str(ROOT / "bench"))

import services  # noqa: E402  (bench/services.py: tansu, sidecars, /proc readings)


def environment() -> dict[str, str]:
    path = os.pathsep.join([os.environ.get("PROFILE_PRODUCE_CLIENT", str(CLIENT)),
                            str(ROOT / "bench/python"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    services.wait_until(lambda: topic in admin.list_topics(timeout=5).topics, 30, f"topic {topic}")


def read_line(process: "subprocess.Popen[str]", limit_s: float) -> dict[str, Any]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=limit_s):
            raise RuntimeError(f"no answer from the fleet within {limit_s} s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the fleet exited (status {process.wait()})")
    return json.loads(line)


def run_fleet(args: argparse.Namespace, mode: str, workers: int, bootstrap: str,
              address: str, sidecar_pid: Optional[int]) -> dict[str, Any]:
    command = [sys.executable, str(FLEET), "--mode", mode, "--workers", str(workers),
               "--records", str(max(1, args.records // workers)), "--topic", args.topic,
               "--bootstrap", bootstrap, "--address", address,
               "--value-size", str(args.value_size), "--warm-up", str(args.warm_up)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=environment(), start_new_session=True)
    assert process.stdin is not None
    try:
        ready = read_line(process, 120)
        if not ready.get("ready"):
            raise RuntimeError(f"fleet did not start: {ready}")
        cpu_before = services.cpu_seconds(sidecar_pid) if sidecar_pid else 0.0
        process.stdin.write("go\n")
        process.stdin.flush()
        result = read_line(process, 600)
        cpu_after = services.cpu_seconds(sidecar_pid) if sidecar_pid else 0.0
        process.stdin.write("stop\n")
        process.stdin.flush()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if result.get("errors"):
        raise RuntimeError(f"fleet failed: {result['errors']}")
    records = result["records"]
    return {"mode": mode, "workers": workers, "records": records,
            "records_per_s": round(result["records_per_s"]),
            "client_cpu_s_per_million": round(result["worker_cpu_s"] / records * 1e6, 2),
            "sidecar_cpu_s_per_million": round((cpu_after - cpu_before) / records * 1e6, 2),
            "delivered": result["delivered"], "failed": result["failed"]}


def fleet(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    rows: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for repetition in range(args.repetitions):
        for workers in args.workers:
            for mode in args.modes:
                sidecar = None
                if mode == "sidecar":  # fresh per run: old sessions keep their report budget
                    sidecar = services.start_sidecar(args.sidecar_bin, bootstrap, work,
                                                     f"sidecar-{repetition}-{workers}", [])
                try:
                    row = run_fleet(args, mode, workers, bootstrap,
                                    sidecar.info["grpc"] if sidecar else "",
                                    sidecar.pid if sidecar else None)
                finally:
                    if sidecar is not None:
                        sidecar.stop()
                print(json.dumps(row), flush=True)
                rows[(mode, workers)].append(row)
    print("\nmedians:")
    for (mode, workers), runs in sorted(rows.items()):
        rate = statistics.median(run["records_per_s"] for run in runs)
        cpu = statistics.median(run["client_cpu_s_per_million"] for run in runs)
        side = statistics.median(run["sidecar_cpu_s_per_million"] for run in runs)
        print(f"  {mode:8} x{workers}: {rate:10.0f} records/s  client {cpu:6.2f} CPU-s/M  "
              f"sidecar {side:6.2f} CPU-s/M")


def produce_inline(args: argparse.Namespace) -> None:
    """The body ``profile`` runs under py-spy: one producer, the fleet's produce loop."""
    sys.path.insert(0, str(ROOT / "bench/python"))
    import fleet as bench_fleet

    args.mode, args.fallback, args.client_linger_ms = "sidecar", False, 5
    counts: collections.Counter[str] = collections.Counter()

    def on_delivery(error: Any, _message: Any) -> None:
        counts["failed" if error is not None else "delivered"] += 1

    sizes = count_batches()
    gc_time = time_collections()
    producer = bench_fleet.make_producer(args, on_delivery)
    pool = bench_fleet.values(args.value_size, 256, seed=1)
    bench_fleet.produce_all(producer, args.topic, args.warm_up, pool, False)
    producer.flush(60)
    if args.start_at:  # the other processes of the run start at the same moment
        time.sleep(max(0.0, args.start_at - time.time()))
    thread_cpu_before = thread_cpu({})
    cpu_before, start = os.times(), time.monotonic()
    gc_time.clear()
    bench_fleet.produce_all(producer, args.topic, args.records, pool, False)
    left = producer.flush(120)
    end, cpu_after = time.monotonic(), os.times()
    cpu = cpu_after.user - cpu_before.user + cpu_after.system - cpu_before.system
    per_million = 1e6 / args.records
    print(json.dumps({
        "records_per_s": round(args.records / (end - start)),
        "client_cpu_s_per_million": round(cpu * per_million, 2),
        "left": left, **counts,
        "backpressure_retries": producer.stats().get("backpressure_retries"),
        "mean_records_per_emit": round(statistics.mean(sizes["emit"] or [0]), 1),
        "mean_reports_per_message": round(statistics.mean(sizes["reports"] or [0]), 1),
        "gc_s_per_million": round(sum(gc_time.values()) * per_million, 2),
        "gc_s_per_million_by_generation": {
            generation: round(spent * per_million, 2)
            for generation, spent in sorted(gc_time.items())},
    }), flush=True)
    if args.threads:
        print(json.dumps({"cpu_s_by_thread": thread_cpu(thread_cpu_before)}), flush=True)
    producer.close(5)


def thread_cpu(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds of this process's threads by name (``/proc``), minus ``before``: where the
    CPU not spent in Python goes (gRPC's own threads, the kernel)."""
    spent: dict[str, float] = collections.defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        spent[name] += (int(fields[11]) + int(fields[12])) / services.CLOCK_TICKS
    return {name: round(seconds - before.get(name, 0.0), 3) for name, seconds in spent.items()
            if seconds - before.get(name, 0.0) > 0.005}


def count_batches() -> dict[str, list[int]]:
    """Record how many records each EmitBatch carried and each report message brought (both
    set the per-record cost of the gRPC overhead), by wrapping two of the client's methods
    (when the client measured has them: an older one may not)."""
    from kafka_sidecar import _core, _routes

    sizes: dict[str, list[int]] = {"emit": [], "reports": []}
    take_batch = getattr(_core.Core, "take_batch", None)
    on_reports = getattr(_routes.Routes, "_on_reports", None)

    def counted_take_batch(self: Any, epoch: int) -> Any:
        batch = take_batch(self, epoch)  # type: ignore[misc]
        sizes["emit"].append(len(batch))
        return batch

    def counted_on_reports(self: Any, reports: Any, epoch: int) -> None:
        sizes["reports"].append(len(reports))
        on_reports(self, reports, epoch)  # type: ignore[misc]

    if take_batch is not None:
        setattr(_core.Core, "take_batch", counted_take_batch)
    if on_reports is not None:
        setattr(_routes.Routes, "_on_reports", counted_on_reports)
    return sizes


def time_collections() -> dict[int, float]:
    """Seconds spent in garbage collection from now on, by generation (clear it to restart)."""
    import gc

    spent: dict[int, float] = collections.defaultdict(float)
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]

    gc.callbacks.append(callback)
    return spent


def summarize(collapsed: Path, top: int) -> None:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].rstrip(")")
                  for frame in stack.split(";")[1:]]  # [0] is the thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"\n{total} samples")
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\ntop {top} by {title}:")
        for frame, count in counter.most_common(top):
            print(f"  {100 * count / total:5.1f}%  {frame}")


def profile(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    """``--processes`` producers at once (records split between them), the first under py-spy."""
    sidecar = services.start_sidecar(args.sidecar_bin, bootstrap, work, "sidecar-profile", [])
    try:
        start_at = time.time() + 3 + args.processes  # after every process has warmed up
        commands = [[sys.executable, __file__, "produce",
                     "--records", str(args.records // args.processes),
                     "--warm-up", str(args.warm_up), "--value-size", str(args.value_size),
                     "--topic", args.topic, "--bootstrap-inline", bootstrap,
                     "--address", sidecar.info["grpc"], "--start-at", str(start_at),
                     *(["--threads"] if args.threads else [])]
                    for _ in range(args.processes)]
        out = Path(args.output or work / "profile.txt")
        spy = shutil.which("py-spy")
        if not args.no_py_spy:
            if spy is None:
                raise SystemExit("py-spy is missing: pip install py-spy")
            # --gil: only the thread holding the GIL is sampled, so the samples are where Python
            # CPU goes (threads waiting on locks or in gRPC's C core without the GIL do not count).
            options = ["--gil"] if not args.all_threads else []
            commands[0] = [spy, "record", "--format", "raw", "--rate", str(args.rate),
                           "--nonblocking", *options, "--output", str(out), "--", *commands[0]]
        processes = [subprocess.Popen(command, env=environment()) for command in commands]
        for process in processes:
            if process.wait() != 0:
                raise RuntimeError(f"{process.args!r} failed ({process.returncode})")
        if not args.no_py_spy:
            summarize(out, args.top)
            print(f"\ncollapsed stacks: {out}")
    finally:
        sidecar.stop()


def latency(args: argparse.Namespace, bootstrap: str, work: Path) -> None:
    """``bench/python/latency.py`` (open loop, produce to callback) direct and through a fresh
    sidecar, ``--repetitions`` times each; prints each run and the medians."""
    runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for repetition in range(args.repetitions):
        for mode in args.modes:
            sidecar = None
            if mode == "sidecar":
                sidecar = services.start_sidecar(args.sidecar_bin, bootstrap, work,
                                                 f"sidecar-latency-{repetition}", [])
            try:
                command = [sys.executable, str(ROOT / "bench/python/latency.py"), "--mode", mode,
                           "--bootstrap", bootstrap, "--topic", args.topic,
                           "--rate", str(args.latency_rate), "--seconds", "5",
                           "--warm-up-seconds", "1",
                           "--address", sidecar.info["grpc"] if sidecar else ""]
                completed = subprocess.run(command, capture_output=True, text=True,
                                           env=environment(), timeout=120, check=True)
                result = json.loads(completed.stdout.strip().splitlines()[-1])
            finally:
                if sidecar is not None:
                    sidecar.stop()
            row = {"mode": mode, **{key: round(result[key], 3)
                                    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}}
            print(json.dumps(row), flush=True)
            runs[mode].append(row)
    print("\nmedians:")
    for mode, rows in runs.items():
        print(f"  {mode:8}: " + "  ".join(
            f"{key} {statistics.median(row[key] for row in rows):.2f}"
            for key in ("p50_ms", "p99_ms", "p999_ms")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fleet", "profile", "latency", "produce"])
    parser.add_argument("--bootstrap", help="an existing broker (default: start tansu)")
    parser.add_argument("--sidecar-bin", default=str(ROOT / "target/release/kafka-sidecar"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--modes", nargs="+", default=["sidecar", "direct"])
    parser.add_argument("--records", type=int, default=200_000, help="total per run")
    parser.add_argument("--warm-up", type=int, default=2000)
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--topic", default="profile-produce")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--output", help="where py-spy writes collapsed stacks")
    parser.add_argument("--no-py-spy", action="store_true", help="profile: just run and time")
    parser.add_argument("--all-threads", action="store_true",
                        help="profile: sample every thread, not only the one holding the GIL")
    parser.add_argument("--processes", type=int, default=1, help="profile: producers at once")
    parser.add_argument("--threads", action="store_true",
                        help="profile: also print CPU seconds by thread")
    parser.add_argument("--latency-rate", type=int, default=1000, help="latency: records/s")
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap-inline", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command == "produce":
        args.bootstrap = args.bootstrap_inline
        produce_inline(args)
        return
    work = Path(tempfile.mkdtemp(prefix="profile-produce-"))
    tansu = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        binary = subprocess.run([str(ROOT / "scripts/tansu"), "path"], capture_output=True,
                                text=True, check=True).stdout.strip()
        tansu = services.start_tansu(binary, work)
        bootstrap = tansu.info["bootstrap"]
    try:
        create_topic(bootstrap, args.topic, 6)
        {"fleet": fleet, "profile": profile, "latency": latency}[args.command](
            args, bootstrap, work)
    finally:
        if tansu is not None:
            tansu.stop()


if __name__ == "__main__":
    main()
