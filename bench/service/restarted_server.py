#!/usr/bin/env python3
"""A server killed mid-batch and restarted: how soon its worker is back, and what it measured twice.

Starts `ktune serve` (--lease-timeout-ms, default 10 s) on a fresh SQLite file, one CPU worker
with its own metrics, and a tune of gemm (--budget, default 16); once the worker measures its
second batch, the server is SIGKILLed, and started again after --outage seconds on the same port
and file. Reported per binary: how long after the restarted server listened the worker registered
again (its ktune_worker_registrations_total reaching 2; a worker whose report waits in gRPC's own
reconnect backoff comes back late), and, once the job has its budget's records, how many
measurements the worker made for them and how many of its results were dropped (the batch in
flight at the restart, measured again when the restarted server refuses its report). Each
--ktune binary runs the same way, one after the other:

    python3 bench/service/restarted_server.py --ktune old=/tmp/old/ktune --ktune new=build/cli/ktune

Each binary's folder must hold ktune-agent and ktune-runner beside ktune. Standard library only.
(After a helper's reproduction script, session 56.)
"""

import argparse
import os
import sqlite3
import subprocess
import tempfile
import time

from worker_bench_util import alternating, free_port, scrape


def stored_records(db):
    """Records in the tuning database `db` (the one job's: the file is fresh), 0 before it has any."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.Error:
        return 0


def run(label, ktune, lease_ms, outage_s, problem, budget):
    with tempfile.TemporaryDirectory() as d:
        port, mport = free_port(), free_port()
        addr = f"127.0.0.1:{port}"

        def serve(n):
            return subprocess.Popen(
                [ktune, "serve", "--listen", addr, "--db", os.path.join(d, "k.db"),
                 "--lease-timeout-ms", str(lease_ms)],
                stdout=open(os.path.join(d, f"serve{n}.log"), "w"), stderr=subprocess.STDOUT)

        server = serve(1)
        time.sleep(1.5)
        worker = subprocess.Popen([ktune, "worker", "--server", addr, "--device", "cpu",
                                   "--metrics-listen", f"127.0.0.1:{mport}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        tune = subprocess.Popen([ktune, "tune", "--server", addr, "--kernel", "gemm", "--problem",
                                 problem, "--device", "cpu", "--budget", str(budget), "--strategy",
                                 "random"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    if scrape(mport).get('ktune_worker_leases_total{result="batch"}', 0) >= 2:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            time.sleep(0.3)
            server.kill()
            server.wait()
            time.sleep(outage_s)
            server = serve(2)
            while "listening" not in open(os.path.join(d, "serve2.log")).read():
                time.sleep(0.02)
            up = time.time()
            back = None
            while time.time() < up + 120:
                if scrape(mport).get("ktune_worker_registrations_total", 0) >= 2:
                    back = time.time() - up
                    break
                time.sleep(0.05)
            said = f"{back:.2f} s" if back is not None else "not within 120 s"
            db = os.path.join(d, "k.db")
            while time.time() < up + 600 and stored_records(db) < budget:
                time.sleep(0.2)
            time.sleep(1.0)  # the worker's counters after its last report
            m = scrape(mport)
            measured = sum(v for k, v in m.items()
                           if k.startswith("ktune_worker_measurements_total{"))
            dropped = m.get("ktune_worker_measurements_dropped_total", 0)
            print(f"{label}: outage {outage_s:g} s, lease {lease_ms} ms; the worker registered "
                  f"again {said} after the server listened; {stored_records(db)} records stored "
                  f"for a budget of {budget}, {measured:.0f} measured by the worker, "
                  f"{dropped:.0f} of its results dropped", flush=True)
        finally:
            for p in (tune, worker, server):
                p.kill()
                p.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ktune", action="append", required=True, help="LABEL=PATH to a ktune binary")
    p.add_argument("--lease-ms", type=int, default=10000)
    p.add_argument("--outage", type=float, default=40.0, help="seconds the server is down")
    p.add_argument("--problem", default="M=512,N=512,K=512", help="gemm's problem")
    p.add_argument("--budget", type=int, default=16, help="the tune's budget")
    p.add_argument("--runs", type=int, default=1, help="runs of each binary, alternating")
    a = p.parse_args()
    for label, path in alternating(a.ktune, a.runs):
        run(label, path, a.lease_ms, a.outage, a.problem, a.budget)


if __name__ == "__main__":
    main()
