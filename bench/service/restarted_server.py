#!/usr/bin/env python3
"""A server killed mid-batch and restarted: how soon its worker is back.

Starts `ktune serve` (--lease-timeout-ms, default 10 s) on a fresh SQLite file, one CPU worker
with its own metrics, and a tune of gemm; once the worker measures its second batch, the server
is SIGKILLed, and started again after --outage seconds on the same port and file. Reported per
binary: how long after the restarted server listened the worker registered again (its
ktune_worker_registrations_total reaching 2). A worker whose report waits in gRPC's own
reconnect backoff comes back late. Each --ktune binary runs the same way, one after the other:

    python3 bench/service/restarted_server.py --ktune old=/tmp/old/ktune --ktune new=build/cli/ktune

Each binary's folder must hold ktune-agent and ktune-runner beside ktune. Standard library only.
(After a helper's reproduction script, session 56.)
"""

import argparse
import os
import subprocess
import tempfile
import time

from worker_bench_util import free_port, scrape


def run(label, ktune, lease_ms, outage_s, problem):
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
                                 problem, "--device", "cpu", "--budget", "16", "--strategy",
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
            print(f"{label}: outage {outage_s:g} s, lease {lease_ms} ms; the worker registered "
                  f"again {said} after the server listened", flush=True)
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
    p.add_argument("--runs", type=int, default=1, help="runs of each binary, alternating")
    a = p.parse_args()
    for _ in range(a.runs):
        for spec in a.ktune:
            label, path = spec.split("=", 1)
            run(label, path, a.lease_ms, a.outage, a.problem)


if __name__ == "__main__":
    main()
