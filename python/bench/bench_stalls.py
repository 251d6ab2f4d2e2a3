#!/usr/bin/env python3
"""Does the server's own agent stall it? (issue 21, "the agent off the lock")

    .venv/bin/python python/bench/bench_stalls.py [--tasks 8] [--budget 48] [--seconds 20]

Starts `ktune serve` ($KTUNE_BIN, default <repo>/build/cli/ktune) on a temporary database with
one imported recorded space (so QueryBest answers from its cache), then polls three calls one
after the other, every 5 ms, from this process:
  query_best   TuningService.QueryBest of the imported task
  list_jobs    TuningService.ListJobs
  heartbeat    WorkerService.Heartbeat of a worker registered for a device class with no work
first with the server idle (--seconds), then while a PPO job of --tasks gemm tasks is tuned by a
real `ktune worker --device cpu` (each measurement a real run of the kernel; PPO learns on them),
until the job ends or --seconds pass. Prints p50/p99/max per call and phase (milliseconds) and
the busy/idle ratios; --json for one object. Goals: busy p99 at most 2x idle, busy max < 20 ms.

On a small machine the measuring worker's runner competes with the server for the same cores,
which no fleet does (workers run on their own machines). --worker-cpus 1 --server-cpus 0 keeps
them apart (taskset; this client runs with the server): what remains on the server's cores is
its RPC threads and its agent, which is what "the agent never stalls the server" is about.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

import ktune
from processes import listening_port, start, stop
from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import tuning_service_pb2_grpc as ts_grpc
from ktune.v1 import types_pb2 as tp
from ktune.v1 import worker_service_pb2 as wp
from ktune.v1 import worker_service_pb2_grpc as wp_grpc

REPO = Path(__file__).resolve().parents[2]
SPACE = "pnpoly_RTX_3090_T4.json.gz"




def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def poll(calls: dict, seconds: float, until=None) -> dict[str, list[float]]:
    """Each call once per round, a round every 5 ms; latencies in ms."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    end = time.time() + seconds
    while time.time() < end and not (until and until()):
        for name, call in calls.items():
            t = time.perf_counter()
            call()
            out[name].append((time.perf_counter() - t) * 1e3)
        time.sleep(0.005)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--budget", type=int, default=48, help="measurements per task")
    ap.add_argument("--seconds", type=float, default=20, help="idle phase; cap of the busy one")
    ap.add_argument("--agent-threads", type=int, default=2)
    ap.add_argument("--strategy", default="ppo",
                    help="the job's strategy; random separates the measuring load from the agent's")
    ap.add_argument("--worker-cpus", help="CPU list for the worker and its runner (taskset -c)")
    ap.add_argument("--server-cpus", help="CPU list for the server and this client")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    binary = os.environ.get("KTUNE_BIN", str(REPO / "build/cli/ktune"))
    datasets = Path(os.environ.get("KTUNE_DATASETS_DIR", REPO.parent / "shared/datasets"))
    work = tempfile.mkdtemp(prefix="ktune-stalls-")
    db = os.path.join(work, "s.db")
    subprocess.run([binary, "db", "import", str(datasets / "spaces" / SPACE), "--db", db],
                   check=True, capture_output=True)
    first = json.loads(subprocess.run([binary, "db", "export", "--db", db], check=True,
                                      capture_output=True, text=True).stdout.splitlines()[0])
    server_log = os.path.join(work, "serve.log")
    def pinned(cpus: str | None, argv: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *argv] if cpus else argv

    if a.server_cpus:
        os.sched_setaffinity(0, {int(c) for c in a.server_cpus.split(",")})
    server = start(pinned(a.server_cpus, [binary, "serve", "--listen", "127.0.0.1:0", "--db", db,
                    "--agent-threads", str(a.agent_threads)]), server_log)
    procs = [server]
    try:
        port = listening_port(server_log)
        address = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(address)
        tuning = ts_grpc.TuningServiceStub(channel)
        workers = wp_grpc.WorkerServiceStub(channel)
        reg = wp.RegisterRequest(host="bench")
        reg.device.kind = tp.DEVICE_KIND_CPU
        reg.device.name = "bench"
        reg.device.device_class = "bench:no-work"
        idle_worker = workers.Register(reg, timeout=10).worker_id
        query = ts.QueryBestRequest(kernel=tp.KernelRef(name=first["kernel"]), top_k=1)
        query.device.device_class = first["device"]["class"]
        calls = {
            "query_best": lambda: tuning.QueryBest(query, timeout=10),
            "list_jobs": lambda: tuning.ListJobs(ts.ListJobsRequest(), timeout=10),
            "heartbeat": lambda: workers.Heartbeat(wp.HeartbeatRequest(worker_id=idle_worker),
                                                   timeout=10),
        }
        idle = poll(calls, a.seconds)

        worker_log = os.path.join(work, "worker.log")
        procs.append(start(pinned(a.worker_cpus,
                                  [binary, "worker", "--server", address, "--device", "cpu"]),
                           worker_log))
        client = ktune.Client(address)
        cpu_class = None
        for _ in range(1200):
            found = [w for w in client.workers() if w.device.device_class != "bench:no-work"]
            if found:
                cpu_class = found[0].device.device_class
                break
            time.sleep(0.1)
        if cpu_class is None:
            raise SystemExit("bench_stalls: the CPU worker did not register:\n" +
                             Path(worker_log).read_text())
        sizes = [64 + 32 * i for i in range(a.tasks)]
        job = client.submit({"name": "stalls", "kernels": ["gemm"],
                             "problems": [{"M": n, "N": n, "K": n} for n in sizes],
                             "device_classes": [cpu_class], "budget": a.budget,
                             "strategy": a.strategy, "batch_size": 8})
        started = time.time()
        ended = lambda: client.get_job(job.job_id).state.value in ("done", "failed", "cancelled")
        busy = poll(calls, 10 * a.seconds, until=ended)
        final = client.get_job(job.job_id)
        busy_seconds = time.time() - started
    finally:
        stop(procs)

    result = {"tasks": a.tasks, "budget": a.budget, "agent_threads": a.agent_threads,
              "strategy": a.strategy, "worker_cpus": a.worker_cpus, "server_cpus": a.server_cpus,
              "job_state": final.state.value, "measurements": final.measurements_done,
              "busy_seconds": round(busy_seconds, 1), "load_average": os.getloadavg()[0],
              "calls": {}}
    for name in calls:
        row = {}
        for phase, data in (("idle", idle[name]), ("busy", busy[name])):
            row[phase] = {"n": len(data), "p50_ms": round(statistics.median(data), 3),
                          "p99_ms": round(percentile(data, 0.99), 3),
                          "max_ms": round(max(data), 3)}
        row["p99_ratio"] = round(row["busy"]["p99_ms"] / row["idle"]["p99_ms"], 2)
        result["calls"][name] = row
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"{a.tasks} {a.strategy} tasks x {a.budget} real CPU measurements: job {final.state.value}, "
          f"{final.measurements_done} measured in {busy_seconds:.0f} s; agent threads "
          f"{a.agent_threads}; load average {result['load_average']:.1f}"
          + (f"; worker on CPUs {a.worker_cpus}, server and client on {a.server_cpus}"
             if a.worker_cpus or a.server_cpus else ""))
    print(f"{'call':12} {'phase':5} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in result["calls"].items():
        for phase in ("idle", "busy"):
            r = row[phase]
            print(f"{name:12} {phase:5} {r['n']:6d} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['max_ms']:8.2f}")
        print(f"{name:12} busy/idle p99: {row['p99_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
