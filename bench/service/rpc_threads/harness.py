"""A server under load: start `ktune serve`, probe RPC latencies, apply a load, report.
KTUNE_BIN names the ktune binary (default: build/cli/ktune of this checkout)."""
from __future__ import annotations

import json, os, random, statistics, subprocess, sys, threading, time
import multiprocessing as mp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "python" / "bench"))
import grpc
from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import tuning_service_pb2_grpc as ts_grpc
from ktune.v1 import types_pb2 as tp
from ktune.v1 import worker_service_pb2 as wp
from ktune.v1 import worker_service_pb2_grpc as wp_grpc
from processes import listening_port, start

K = os.environ.get("KTUNE_BIN", str(ROOT / "build" / "cli" / "ktune"))


def serve(db, log, extra=()):
    p = start([K, "serve", "--listen", "127.0.0.1:0", "--db", db, *extra], log)
    return p, f"127.0.0.1:{listening_port(log)}"


def submit_big_job(t):
    """A job of 65,536 tasks: gemm x 1,024 problems x 64 device classes no worker serves."""
    spec = {"name": "big", "kernels": ["gemm"],
            "problems": [{"M": 64 + i, "N": 64, "K": 64} for i in range(1024)],
            "device_classes": [f"cpu:fake{c}" for c in range(64)], "budget": 16,
            "strategy": "random"}
    t.SubmitJob(ts.SubmitJobRequest(spec_text=json.dumps(spec)), timeout=300)


def stubs(addr):
    ch = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 256 << 20)])
    return ts_grpc.TuningServiceStub(ch), wp_grpc.WorkerServiceStub(ch)


def register(w, cls):
    reg = wp.RegisterRequest(host="h")
    reg.device.kind = tp.DEVICE_KIND_CPU
    reg.device.name = cls
    reg.device.device_class = cls
    reg.device.cores_used = 4
    reg.capabilities.languages.append("cpp")
    return w.Register(reg, timeout=30).worker_id


def fake_worker(addr, cls, stop_at, out_q, max_c=8):
    """Leases and reports at once (random times); puts (report_ms list, lease_ms list)."""
    t, w = stubs(addr)
    wid = register(w, cls)
    rep, lea = [], []
    while time.time() < stop_at:
        s = time.perf_counter()
        g = w.LeaseBatch(wp.LeaseBatchRequest(worker_id=wid, max_candidates=max_c), timeout=120)
        lea.append((time.perf_counter() - s) * 1e3)
        if not g.lease_id:
            time.sleep(max(g.retry_after_ms, 5) / 1e3)
            continue
        req = wp.ReportResultsRequest(worker_id=wid, lease_id=g.lease_id)
        for c in g.candidates:
            r = req.results.add(candidate_id=c.candidate_id, status=tp.MEASUREMENT_STATUS_OK)
            r.repeat_times_ms.extend([random.uniform(1, 2)] * 3)
        s = time.perf_counter()
        w.ReportResults(req, timeout=120)
        rep.append((time.perf_counter() - s) * 1e3)
    out_q.put((rep, lea))


def probe(addr, calls, seconds, out_q, period=0.01):
    """calls: list of names; returns {name: [(t, ms)]}."""
    t, w = stubs(addr)
    idle = register(w, "probe:none")
    fns = {}
    for c in calls:
        if c == "heartbeat":
            fns[c] = lambda: w.Heartbeat(wp.HeartbeatRequest(worker_id=idle), timeout=120)
        elif c == "list_workers":
            fns[c] = lambda: t.ListWorkers(ts.ListWorkersRequest(), timeout=120)
        elif c == "list_jobs":
            fns[c] = lambda: t.ListJobs(ts.ListJobsRequest(page_size=10), timeout=120)
        elif c.startswith("get_job:"):
            jid = c.split(":")[1]
            fns[c] = lambda jid=jid: t.GetJob(ts.GetJobRequest(job_id=jid, task_page_size=1), timeout=120)
        elif c.startswith("best:"):  # best:KERNEL:CLASS  (cache hit after first)
            _, k, cls = c.split(":", 2)
            q = ts.QueryBestRequest(kernel=tp.KernelRef(name=k), top_k=1)
            q.device.device_class = cls
            fns[c] = lambda q=q: t.QueryBest(q, timeout=120)
        elif c.startswith("bestmiss:"):  # a new top_k each call: a cache miss -> database
            _, k, cls = c.split(":", 2)
            def f(k=k, cls=cls):
                q = ts.QueryBestRequest(kernel=tp.KernelRef(name=k), top_k=random.randint(1, 100))
                q.device.device_class = cls
                f.n = getattr(f, "n", 0) + 1
                q.device.family = f"fam{f.n}"
                return t.QueryBest(q, timeout=120)
            fns[c] = f
    out = {c: [] for c in calls}
    end = time.time() + seconds
    while time.time() < end:
        for c, f in fns.items():
            s = time.perf_counter()
            try:
                f()
            except grpc.RpcError as e:
                if "no job" not in e.details(): print("probe error", c, e.code(), e.details()[:200], file=sys.stderr)
            out[c].append((time.time() - (time.perf_counter() - s), (time.perf_counter() - s) * 1e3))
        time.sleep(period)
    out_q.put(out)


def summarize(samples, lo=None, hi=None):
    xs = [ms for (tt, ms) in samples if (lo is None or tt >= lo) and (hi is None or tt <= hi)]
    if not xs:
        return "n=0"
    xs.sort()
    return (f"n={len(xs)} p50={statistics.median(xs):.1f} p99={xs[min(len(xs)-1, int(.99*len(xs)))]:.1f} "
            f"max={xs[-1]:.1f} ms")


def pct(xs):
    if not xs:
        return "n=0"
    xs = sorted(xs)
    return f"n={len(xs)} p50={statistics.median(xs):.1f} p99={xs[min(len(xs)-1,int(.99*len(xs)))]:.1f} max={xs[-1]:.1f} ms"
