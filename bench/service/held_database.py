#!/usr/bin/env python3
"""A server whose database another process holds: how cancel, pause and a job listing answer.

Starts `ktune serve` on a fresh SQLite file with CPU workers and three jobs, then holds the file
with another writer (BEGIN IMMEDIATE) for --hold seconds. During the hold it runs `ktune cancel`
and `ktune pause` on two jobs and polls `ktune jobs --server` every second. After it, it reads the
file: the jobs' stored states, and whether every job's stored progress matches its records.
Each --ktune binary is run the same way, one after the other, so that a change can be compared
with its baseline in one run:

    python3 bench/service/held_database.py --ktune old=/tmp/old/ktune --ktune new=build/cli/ktune

Each binary's folder must hold ktune-agent and ktune-runner beside ktune (build/cli and
build/measurer hold them apart: copy the three into one folder). Standard library only.
"""

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(cmd):
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return r.returncode, time.time() - start, (r.stdout + r.stderr).strip().replace("\n", " | ")


def run_one(label, ktune, hold, workers):
    work = tempfile.mkdtemp(prefix="ktune-held-")
    db = os.path.join(work, "held.db")
    address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KTUNE_RUNNER=os.path.join(os.path.dirname(ktune), "ktune-runner"))
    procs = [subprocess.Popen([ktune, "serve", "--listen", address, "--db", db],
                              stderr=open(os.path.join(work, "serve.log"), "w"), env=env)]
    try:
        for i in range(workers):
            procs.append(subprocess.Popen([ktune, "worker", "--server", address],
                                          stderr=open(os.path.join(work, f"worker{i}.log"), "w"),
                                          env=env))
        device_class = None
        for _ in range(300):
            rc, _, out = timed([ktune, "workers", "--server", address, "--json"])
            if rc == 0:
                listed = json.loads(out.split(" | ")[0]) if out.startswith("[") or out.startswith("{") else None
                rows = listed if isinstance(listed, list) else (listed or {}).get("workers", [])
                if len(rows) >= workers:
                    device_class = rows[0].get("device_class")
                    break
            time.sleep(0.1)
        if not device_class:
            raise RuntimeError(f"{label}: workers did not register")
        ids = []
        for n in range(3):
            spec = os.path.join(work, f"job{n}.yaml")
            with open(spec, "w") as f:
                f.write(f"name: held-{n}\nkernels: [gemm]\n"
                        "problems: [{M: 64, N: 64, K: 64}, {M: 96, N: 96, K: 96}]\n"
                        f"device_classes: [{json.dumps(device_class)}]\n"
                        "budget: 400\nstrategy: random\nbatch_size: 4\n")
            rc, _, out = timed([ktune, "submit", spec, "--server", address, "--json"])
            if rc != 0:
                raise RuntimeError(f"{label}: submit: {out}")
            ids.append(str(json.loads(out.split(" | ")[0])["job_id"]))
        time.sleep(3)
        polls = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                polls.append(timed([ktune, "jobs", "--server", address]))
                time.sleep(1)

        def holder():
            c = sqlite3.connect(db, isolation_level=None, timeout=30)
            c.execute("BEGIN IMMEDIATE")
            time.sleep(hold)
            c.execute("ROLLBACK")
            c.close()

        h = threading.Thread(target=holder)
        h.start()
        time.sleep(1.5)
        p = threading.Thread(target=poll)
        p.start()
        cancel = timed([ktune, "cancel", ids[0], "--server", address])
        pause = timed([ktune, "pause", ids[1], "--server", address])
        h.join()
        stop.set()
        p.join()
        time.sleep(6)
        c = sqlite3.connect(db)
        states = dict(c.execute("SELECT id, state FROM jobs").fetchall())
        progress = dict(c.execute(
            "SELECT job_id, SUM(measurements_done) FROM job_tasks GROUP BY job_id").fetchall())
        records = dict(c.execute(
            "SELECT CAST(SUBSTR(source, 5) AS INTEGER), COUNT(*) FROM records "
            "WHERE source LIKE 'job:%' GROUP BY source").fetchall())
        c.close()
        consistent = all(progress.get(j, 0) == records.get(j, 0) for j in progress)
        print(f"{label}: hold {hold} s, {workers} workers")
        for name, (rc, secs, out) in (("cancel", cancel), ("pause", pause)):
            print(f"  {name:7s} exit {rc}  {secs:6.2f} s  {out[:160]}")
        poll_times = sorted(t for _, t, _ in polls)
        if poll_times:
            print(f"  jobs --server during the hold: {len(poll_times)} polls, "
                  f"median {poll_times[len(poll_times) // 2]:.2f} s, max {poll_times[-1]:.2f} s, "
                  f"failed {sum(1 for rc, _, _ in polls if rc != 0)}")
        print(f"  stored after: job {ids[0]} {states.get(int(ids[0]))}, "
              f"job {ids[1]} {states.get(int(ids[1]))}; progress matches records: {consistent}")
        sys.stdout.flush()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ktune", action="append", required=True, help="LABEL=PATH to ktune")
    parser.add_argument("--hold", type=float, default=20)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    for spec in args.ktune:
        label, _, path = spec.partition("=")
        run_one(label, os.path.abspath(path), args.hold, args.workers)


if __name__ == "__main__":
    main()
