#!/usr/bin/env python3
"""GetJob of a 65,536-task job, in pages: the first page alone, and the Python client's get_job
(every page, with gRPC's default 4 MiB receive limit), for the job in memory and after a restart
(read from the database).

    .venv/bin/python python/bench/bench_get_job_pages.py [--repeats 3]

Submits one job of 65,536 tasks (gemm, 1024 problems x 64 device classes no worker serves) to a
fresh `ktune serve` ($KTUNE_BIN, default <repo>/build/cli/ktune) in a temporary folder, cancels
it, times the reads, restarts the server on the same database and times them again.
"""

from __future__ import annotations

import argparse
import json
import time
import tempfile
from pathlib import Path

import ktune
from ktune.v1 import tuning_service_pb2 as ts

from bench_list_jobs import LARGE_SPEC, serve


def timed_reads(client: ktune.Client, stub, job_id: str, when: str, repeats: int) -> None:
    for run in range(repeats):
        t0 = time.perf_counter()
        first = stub.GetJob(ts.GetJobRequest(job_id=job_id), timeout=600)
        t1 = time.perf_counter()
        job = client.get_job(job_id, timeout=600)
        t2 = time.perf_counter()
        print(f"{when}, run {run}: first page {t1 - t0:.3f} s ({len(first.tasks)} tasks, "
              f"{first.ByteSize()} bytes); get_job, every page {t2 - t1:.2f} s "
              f"({len(job.tasks)} tasks)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        for when in ("in memory", "after a restart"):
            server, stub, port = serve(db)
            try:
                client = ktune.Client(f"127.0.0.1:{port}")  # gRPC's default receive limit
                if when == "in memory":
                    job = stub.SubmitJob(ts.SubmitJobRequest(spec_text=json.dumps(LARGE_SPEC)),
                                         timeout=600)
                    stub.CancelJob(ts.CancelJobRequest(job_id=job.job_id), timeout=600)
                timed_reads(client, stub, job.job_id, when, args.repeats)
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    main()
