#!/usr/bin/env python3
"""Latency of ktune's best() from Python over loopback, against an empty RPC in the same run.

    .venv/bin/python python/bench/bench_best.py                  # starts its own ktune serve
    .venv/bin/python python/bench/bench_best.py --address HOST:PORT

Without --address it imports a recorded space (default: pnpoly on an RTX 2080 Ti, 4092 records)
into a temporary database with `ktune db import`, starts `ktune serve` on a free loopback port
($KTUNE_BIN, default <repo>/build/cli/ktune), and stops it at the end.

Measured, one call at a time on one channel, the kinds interleaved round-robin (so that a busy
machine slows them alike):
  ping         the standard gRPC health check: an empty request and a 2-byte reply (baseline)
  best         Client.best(): request built from a dict, QueryBest, reply turned into dataclasses
  best_raw     the same QueryBest through the generated stub, the reply left as a message
Prints p50/p90/p99/mean per kind in microseconds, and the load average; --json for one object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ktune
from ktune.v1 import tuning_service_pb2 as ts

REPO = Path(__file__).resolve().parents[2]


def start_server(binary: str, space: str, workdir: str) -> tuple[subprocess.Popen, str]:
    db = os.path.join(workdir, "bench.db")
    subprocess.run([binary, "db", "import", space, "--db", db], check=True,
                   stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found: dict[str, str] = {}
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # keep draining: the server logs
            if not ready.is_set() and (m := re.search(r"listening on port (\d+)", line)):
                found["port"] = m.group(1)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120) or "port" not in found:
        proc.kill()
        raise SystemExit("ktune serve did not print 'listening on port N' within 120 s")
    return proc, f"127.0.0.1:{found['port']}"


def percentile(sorted_values: list[float], p: float) -> float:
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", help="a running server (default: start one)")
    ap.add_argument("--ktune-bin", default=os.environ.get("KTUNE_BIN",
                                                          str(REPO / "build" / "cli" / "ktune")))
    ap.add_argument("--space", default=str(Path(os.environ.get(
        "KTUNE_DATASETS_DIR", REPO.parent / "shared" / "datasets")) / "spaces" /
        "pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz"))
    ap.add_argument("--kernel", default="pnpoly")
    ap.add_argument("--problem", default="", help="e.g. M=512,N=512 (pnpoly's is empty)")
    ap.add_argument("--device", default="RTX_2080_Ti", help="device class to ask for")
    ap.add_argument("--top", type=int, default=1)
    ap.add_argument("--calls", type=int, default=5000, help="timed calls per kind")
    ap.add_argument("--warmup", type=int, default=500, help="untimed calls per kind first")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    proc = None
    tmp = tempfile.TemporaryDirectory()
    address = args.address
    if not address:
        proc, address = start_server(args.ktune_bin, args.space, tmp.name)
    try:
        client = ktune.Client(address)
        client.wait_ready(30)
        problem = ktune.parse_params(args.problem)
        answer = client.best(args.kernel, problem, args.device, top=args.top)
        if answer.level is ktune.MatchLevel.NONE:
            raise SystemExit(f"the server knows nothing of {args.kernel} on {args.device}")

        raw_request = ts.QueryBestRequest(top_k=args.top)
        raw_request.kernel.name = args.kernel
        for k, v in problem.items():
            ktune.types.value_to_proto(v, raw_request.problem.params[k])
        raw_request.device.device_class = args.device
        stub, metadata = client._tuning.QueryBest, client._metadata

        kinds = {
            "ping": lambda: client.ping(),
            "best": lambda: client.best(args.kernel, problem, args.device, top=args.top),
            "best_raw": lambda: stub(raw_request, timeout=30, metadata=metadata),
        }
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in range(args.warmup):
            for f in kinds.values():
                f()
        start = time.perf_counter()
        for _ in range(args.calls):
            for name, f in kinds.items():
                t0 = time.perf_counter_ns()
                f()
                samples[name].append((time.perf_counter_ns() - t0) / 1000)
        wall = time.perf_counter() - start

        out = {"address": address, "kernel": args.kernel, "device": args.device,
               "level": answer.level.value, "top": args.top, "calls": args.calls,
               "load_average": os.getloadavg(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0], "wall_seconds": round(wall, 2), "kinds": {}}
        for name, values in samples.items():
            s = sorted(values)
            out["kinds"][name] = {"p50_us": round(percentile(s, 50), 1),
                                  "p90_us": round(percentile(s, 90), 1),
                                  "p99_us": round(percentile(s, 99), 1),
                                  "mean_us": round(statistics.fmean(s), 1)}
        if args.json:
            print(json.dumps(out))
        else:
            print(f"best() from Python over loopback: {args.kernel} on {args.device} "
                  f"(answer: {answer.level.value}, top {args.top}), {args.calls} calls per kind, "
                  f"interleaved; load average {out['load_average'][0]:.2f} on {out['cpus']} CPUs")
            print(f"{'kind':10} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'mean us':>9}")
            for name, k in out["kinds"].items():
                print(f"{name:10} {k['p50_us']:9.1f} {k['p90_us']:9.1f} {k['p99_us']:9.1f} "
                      f"{k['mean_us']:9.1f}")
            p50 = out["kinds"]["best"]["p50_us"]
            print(f"best() p50 {p50 / 1000:.3f} ms: goal (under 1 ms) "
                  f"{'met' if p50 < 1000 else 'NOT met'}; over the empty RPC: "
                  f"+{p50 - out['kinds']['ping']['p50_us']:.1f} us at p50")
        client.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
