#!/usr/bin/env python3
"""ListJobs on a server whose jobs ended before it started, against GetJob of each job, in the
same run: what ListJobs cost per job before it read the progress the tasks stored.

    .venv/bin/python python/bench/bench_list_jobs.py [--jobs 2] [--repeats 3]

Submits --jobs jobs of 65,536 tasks each (gemm, 1024 problems x 64 device classes no worker
serves) to a fresh `ktune serve` ($KTUNE_BIN, default <repo>/build/cli/ktune) in a temporary
folder, cancels them, restarts the server (so the jobs are read from the database), then times
ListJobs(page_size=1) and GetJob of every job, --repeats times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import tuning_service_pb2_grpc as tg

REPO = Path(__file__).resolve().parents[2]
KTUNE = os.environ.get("KTUNE_BIN", str(REPO / "build" / "cli" / "ktune"))


# A job of 65,536 tasks (the most a spec may give): 1024 problems x 64 device classes that no
# worker serves.
LARGE_SPEC = {"name": "large", "kernels": ["gemm"], "budget": 4,
              "problems": [{"M": 16 * i, "N": 64, "K": 64} for i in range(1, 1025)],
              "device_classes": [f"cpu:c{i}" for i in range(64)]}


def serve(db: Path) -> tuple[subprocess.Popen, tg.TuningServiceStub, int]:
    """`ktune serve` on `db`, a stub that receives up to 64 MiB, and the server's port."""
    p = subprocess.Popen([KTUNE, "serve", "--listen", "127.0.0.1:0", "--db", str(db)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    port = int(re.search(r"listening on port (\d+)", p.stdout.readline()).group(1))
    channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                    options=[("grpc.max_receive_message_length", 64 << 20)])
    return p, tg.TuningServiceStub(channel), port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = LARGE_SPEC
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        server, stub, _ = serve(db)
        for _ in range(args.jobs):
            job = stub.SubmitJob(ts.SubmitJobRequest(spec_text=json.dumps(spec)), timeout=600)
            stub.CancelJob(ts.CancelJobRequest(job_id=job.job_id), timeout=600)
        server.terminate()
        server.wait()
        server, stub, _ = serve(db)
        try:
            for run in range(args.repeats):
                t0 = time.perf_counter()
                stub.ListJobs(ts.ListJobsRequest(page_size=1), timeout=600)
                t1 = time.perf_counter()
                ids = [j.job_id for j in stub.ListJobs(ts.ListJobsRequest(), timeout=600).jobs]
                t2 = time.perf_counter()
                for i in ids:
                    stub.GetJob(ts.GetJobRequest(job_id=i), timeout=600)
                t3 = time.perf_counter()
                print(f"run {run}: ListJobs(page_size=1) {t1 - t0:.3f} s; GetJob of each of the "
                      f"{len(ids)} jobs (ListJobs' cost before) {t3 - t2:.3f} s")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
