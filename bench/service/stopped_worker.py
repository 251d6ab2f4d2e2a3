#!/usr/bin/env python3
"""A worker stopped past the lease timeout mid-batch (a partition, a paused VM): what it costs.

Starts `ktune serve --lease-timeout-ms 1000` on a fresh SQLite file and one CPU worker with its
own metrics, submits one job (gemm, --problem, random search, --budget), and stops the worker
(SIGSTOP) for --stop seconds --after seconds into its first batch, then lets it go on (SIGCONT).
With nobody else to take the candidates, the server takes the lease back; a server that gives it
back to the worker once it answers again keeps its measurements, one that does not has it
measure the batch again. Reported per binary: batches the worker measured, measurements
it dropped, leases revived (server log), records stored, and the time to the job's end. Each
--ktune binary runs the same way, one after the other, for a comparison in one run:

    python3 bench/service/stopped_worker.py --ktune old=/tmp/old/ktune --ktune new=build/cli/ktune

Each binary's folder must hold ktune-agent and ktune-runner beside ktune. Standard library only.
"""

import argparse
import os
import signal
import sqlite3
import subprocess
import tempfile
import time

from worker_bench_util import alternating, free_port, scrape


def run(label, ktune, stop_s, budget, problem, after_s):
    with tempfile.TemporaryDirectory() as d:
        port, mport = free_port(), free_port()
        addr = f"127.0.0.1:{port}"
        server_log = open(os.path.join(d, "serve.log"), "w")
        server = subprocess.Popen([ktune, "serve", "--listen", addr, "--db", os.path.join(d, "k.db"),
                                   "--lease-timeout-ms", "1000"],
                                  stdout=server_log, stderr=subprocess.STDOUT)
        time.sleep(1.5)
        worker = subprocess.Popen([ktune, "worker", "--server", addr, "--device", "cpu",
                                   "--metrics-listen", f"127.0.0.1:{mport}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        start = time.time()
        tune = subprocess.Popen([ktune, "tune", "--server", addr, "--kernel", "gemm", "--problem",
                                 problem, "--device", "cpu", "--budget", str(budget),
                                 "--strategy", "random"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # Wait for the first batch to be measured (a lease with candidates), then stop the worker.
        while True:
            try:
                if scrape(mport).get('ktune_worker_leases_total{result="batch"}', 0) >= 1:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        time.sleep(after_s)
        worker.send_signal(signal.SIGSTOP)
        time.sleep(stop_s)
        worker.send_signal(signal.SIGCONT)
        out, _ = tune.communicate(timeout=600)
        elapsed = time.time() - start
        m = scrape(mport)
        worker.terminate()
        worker.wait(timeout=60)
        server.terminate()
        server.wait(timeout=60)
        server_log.close()
        log = open(os.path.join(d, "serve.log")).read()
        db = sqlite3.connect(os.path.join(d, "k.db"))
        records = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        batches = int(m.get('ktune_worker_leases_total{result="batch"}', 0))
        measured = int(sum(v for k, v in m.items() if k.startswith(
            ("ktune_worker_measurements_total", "ktune_worker_candidates_total"))))
        dropped = int(m.get("ktune_worker_measurements_dropped_total",
                            m.get("ktune_worker_results_lost_total", 0)))
        state = "done" if tune.returncode == 0 else f"FAILED rc={tune.returncode}"
        print(f"{label}: job {state} in {elapsed:.1f} s; worker measured {batches} batches "
              f"({measured} results), dropped {dropped}; server: {log.count('lease_expired')} "
              f"leases expired, {log.count('lease_revived')} revived, "
              f"{log.count('report_refused')} reports refused; {records} records stored")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ktune", action="append", required=True, help="LABEL=PATH to a ktune binary")
    p.add_argument("--stop", type=float, default=3.0, help="seconds the worker is stopped")
    p.add_argument("--budget", type=int, default=24)
    p.add_argument("--problem", default="M=512,N=512,K=512", help="gemm's problem")
    p.add_argument("--after", type=float, default=0.3,
                   help="seconds into the first batch the worker is stopped")
    p.add_argument("--runs", type=int, default=1, help="runs of each binary, alternating")
    a = p.parse_args()
    for label, path in alternating(a.ktune, a.runs):
        run(label, path, a.stop, a.budget, a.problem, a.after)


if __name__ == "__main__":
    main()
