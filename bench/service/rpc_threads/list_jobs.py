"""ListJobs' latency on a server holding one job of 65,536 tasks: 20 calls, one at a time.
Usage: KTUNE_BIN=<ktune> python list_jobs.py"""
import json, os, statistics, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *


def main():
    d = tempfile.mkdtemp(prefix="ktune-list-jobs-")
    srv, addr = serve(f"{d}/s.db", f"{d}/serve.log")
    try:
        t, _ = stubs(addr)
        submit_big_job(t)
        lat = []
        for _ in range(20):
            a = time.perf_counter()
            r = t.ListJobs(ts.ListJobsRequest(page_size=10), timeout=120)
            lat.append((time.perf_counter() - a) * 1e3)
        print(f"ListJobs of a server holding one job of 65,536 tasks ({len(r.jobs)} listed): {pct(lat)}")
    finally:
        srv.terminate(); srv.wait(30)


if __name__ == "__main__":
    main()
