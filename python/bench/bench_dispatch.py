#!/usr/bin/env python3
"""Is dispatch with PPO bounded by the agent's own cost, and does it scale with agent threads?

    .venv/bin/python python/bench/bench_dispatch.py [--threads 1,2] [--budget 160]

For each --agent-threads value: starts `ktune serve` ($KTUNE_BIN) with four recorded spaces
(--replay), one replay worker per space (measurements cost nothing, so the agent is the only
work), submits one PPO job per space with agent_share 0 (PPO learns every batch), and times
submission to the last job's end. Prints measurements per second per thread count and the
ratio to the first; --json for one object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ktune
from processes import listening_port, start, stop

REPO = Path(__file__).resolve().parents[2]
SPACES = ["convolution_A100_T4.json.gz", "dedispersion_A4000_T4.json.gz",
          "pnpoly_RTX_3090_T4.json.gz", "convolution_MI250X_T4.json.gz"]



def run(binary: str, datasets: Path, threads: int, budget: int) -> dict:
    work = tempfile.mkdtemp(prefix="ktune-dispatch-")
    files = [str(datasets / "spaces" / s) for s in SPACES]
    log = os.path.join(work, "serve.log")
    cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--db", os.path.join(work, "d.db"),
           "--agent-threads", str(threads)]
    for f in files:
        cmd += ["--replay", f]
    procs = [start(cmd, log)]
    try:
        port = listening_port(log)
        address = f"127.0.0.1:{port}"
        for f in files:
            procs.append(subprocess.Popen(
                [binary, "worker", "--server", address, "--device", "replay:" + f],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = ktune.Client(address)
        # Wait until every worker registered, so the clock measures dispatch only.
        while len(client.workers()) < len(files):
            time.sleep(0.1)
        began = time.time()
        jobs = []
        for f in files:
            name = Path(f).name.split("_")[0]
            device = "_".join(Path(f).name.split("_")[1:-1])
            jobs.append(client.submit({"name": f"dispatch-{name}-{device}", "kernels": [name],
                                       "problems": [{}], "device_classes": [device],
                                       "budget": budget, "strategy": "ppo", "batch_size": 8,
                                       "agent_share": 0}).job_id)
        done = 0
        for job_id in jobs:
            j = client.wait(job_id, timeout=600)
            done += j.measurements_done
        seconds = time.time() - began
        return {"agent_threads": threads, "measurements": done, "seconds": round(seconds, 2),
                "per_second": round(done / seconds, 1), "load_average": os.getloadavg()[0]}
    finally:
        stop(procs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--budget", type=int, default=160, help="measurements per job")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    binary = os.environ.get("KTUNE_BIN", str(REPO / "build/cli/ktune"))
    datasets = Path(os.environ.get("KTUNE_DATASETS_DIR", REPO.parent / "shared/datasets"))
    rows = [run(binary, datasets, int(t), a.budget) for t in a.threads.split(",")]
    for r in rows:
        r["ratio"] = round(r["per_second"] / rows[0]["per_second"], 2)
    if a.json:
        print(json.dumps(rows))
        return 0
    print(f"4 PPO jobs (agent_share 0) x {a.budget} replayed measurements, one replay worker each "
          f"({os.cpu_count()} cores)")
    print(f"{'agent threads':>13} {'seconds':>8} {'meas/s':>8} {'vs first':>9} {'load':>5}")
    for r in rows:
        print(f"{r['agent_threads']:13d} {r['seconds']:8.1f} {r['per_second']:8.1f} "
              f"{r['ratio']:8.2f}x {r['load_average']:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
