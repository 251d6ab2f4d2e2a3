"""Head-of-line blocking of RPC handlers: 1, then 4 clients calling ListJobs in a loop (a
database read of ~60 ms on a server holding a 65,536-task job) against ListWorkers and
Heartbeat, which take no database lock.  Usage: python exp_threads.py"""
import json, os, shutil, sys, time, tempfile
import multiprocessing as mp
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import *


def lister(addr, stop_at, out_q):
    t, w = stubs(addr)
    lat = []
    while time.time() < stop_at:
        a = time.perf_counter()
        t.ListJobs(ts.ListJobsRequest(page_size=10), timeout=120)
        lat.append((time.perf_counter() - a) * 1e3)
    out_q.put(lat)


def main():
    d = tempfile.mkdtemp(prefix="ktune-rpc-threads-")
    srv, addr = serve(f"{d}/s.db", f"{d}/serve.log")
    t, _ = stubs(addr)
    submit_big_job(t)
    print("server holding a job of 65,536 tasks")
    try:
        calls = ["list_workers", "heartbeat"]
        q = mp.Queue()
        pr = mp.Process(target=probe, args=(addr, calls, 30, q, 0.005)); pr.start()
        time.sleep(4)
        lq = mp.Queue()
        phases = []
        for n in (1, 4):
            a = time.time()
            ps = [mp.Process(target=lister, args=(addr, a + 10, lq)) for _ in range(n)]
            for p in ps: p.start()
            lat = []
            for p in ps: lat += lq.get(timeout=100)
            phases.append((n, a, time.time(), lat))
            time.sleep(1)
        out = q.get(timeout=100); pr.join()
        for c in calls:
            print(f"  {c:13} idle: {summarize(out[c], None, phases[0][1])}")
        for n, a, b, lat in phases:
            print(f"{n} concurrent ListJobs callers: ListJobs {pct(lat)}")
            for c in calls:
                print(f"  {c:13}: {summarize(out[c], a + 1, b)}")
    finally:
        srv.terminate(); srv.wait(30)


if __name__ == "__main__":
    mp.set_start_method("spawn")
    main()
