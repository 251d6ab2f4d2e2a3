"""A float32 matmul tuned by TVM MetaSchedule on ktune, in two separate processes (test_tvm.py
runs both; docs/compilers.md shows their output):

    python tvm_matmul.py tune  --server HOST:PORT --n 256 --trials 16 --work-dir DIR
    python tvm_matmul.py apply --server HOST:PORT --n 256

`tune` runs ms.tune_tir with ktune.tvm.Database as its database (LLVM, this CPU).
`apply` tunes nothing: it compiles the matmul with the schedule ktune holds for it
(ms.tir_integration.compile_tir, i.e. Database.query_schedule), checks C = A @ B against numpy,
and times it against TVM's build of the untuned matmul. Each prints one JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import tvm
import tvm.s_tir.meta_schedule as ms
from tvm import te
from tvm.target import Target
from tvm.target.codegen import llvm_get_system_cpu

import ktune.tvm


def matmul(n: int) -> tvm.IRModule:
    """C[i, j] = sum_k A[i, k] * B[k, j], n x n float32."""
    a = te.placeholder((n, n), "float32", name="A")
    b = te.placeholder((n, n), "float32", name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def host_target() -> Target:
    """LLVM for this CPU, with the cores this process may use."""
    return Target({"kind": "llvm", "mcpu": llvm_get_system_cpu(),
                   "num-cores": len(os.sched_getaffinity(0))})


def tune(args) -> dict:
    mod, target = matmul(args.n), host_target()
    db = ktune.tvm.Database(args.server, target=target)
    start = time.monotonic()
    ms.tune_tir(mod, target, args.work_dir, max_trials_global=args.trials,
                num_trials_per_iter=args.trials,
                # Each builder worker imports tvm.s_tir.tensor_intrin: 1 to 3 minutes here.
                builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=600),
                runner=ms.runner.LocalRunner(timeout_sec=120),
                database=db, cost_model="random", seed=args.seed)
    return {"tune_s": time.monotonic() - start, "kernel": ktune.tvm.workload_kernel(mod),
            "device": ktune.tvm.target_device(target, db.device).device_class,
            "target": str(target), "records": len(db)}


def time_ms(lib, dev, *arrays) -> float:
    """Median of 5 repeats of the mean of 10 runs, in ms."""
    evaluator = lib.mod.time_evaluator("main", dev, number=10, repeat=5)
    return float(np.median(evaluator(*arrays).results)) * 1e3


def apply(args) -> dict:
    mod, target = matmul(args.n), host_target()
    db = ktune.tvm.Database(args.server)
    lookup_ms = []  # QueryBest + rebuilding the TVM record (its trace replayed on mod)
    for _ in range(args.queries):
        start = time.monotonic()
        found = db.lookup(mod, target)
        lookup_ms.append((time.monotonic() - start) * 1e3)
    start = time.monotonic()
    sch = ms.tir_integration.compile_tir(db, mod, target)  # Database.query_schedule
    query_schedule_ms = (time.monotonic() - start) * 1e3
    if sch is None:
        return {"level": found.level.value, "schedule": None}
    tuned = tvm.compile(sch.mod, target=target)
    untuned = tvm.compile(mod, target=target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((args.n, args.n), dtype=np.float32)
    b_np = rng.standard_normal((args.n, args.n), dtype=np.float32)
    a, b = tvm.runtime.tensor(a_np, dev), tvm.runtime.tensor(b_np, dev)
    c_tuned = tvm.runtime.tensor(np.zeros((args.n, args.n), np.float32), dev)
    c_untuned = tvm.runtime.tensor(np.zeros((args.n, args.n), np.float32), dev)
    tuned.mod["main"](a, b, c_tuned)
    untuned.mod["main"](a, b, c_untuned)
    reference = a_np.astype(np.float64) @ b_np.astype(np.float64)
    scale = float(np.abs(reference).max())
    return {
        "level": found.level.value, "kernel": found.ktune_record.kernel,
        "ktune_time_ms": found.ktune_record.time_ms,
        "first_lookup_ms": lookup_ms[0], "lookup_p50_ms": float(np.median(lookup_ms[1:])),
        "query_schedule_ms": query_schedule_ms,
        "tuned_max_error": float(np.abs(c_tuned.numpy() - reference).max()) / scale,
        "untuned_max_error": float(np.abs(c_untuned.numpy() - reference).max()) / scale,
        "tuned_ms": time_ms(tuned, dev, a, b, c_tuned),
        "untuned_ms": time_ms(untuned, dev, a, b, c_untuned),
        "target": str(target),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["tune", "apply"])
    parser.add_argument("--server", required=True, help="ktune server, host:port")
    parser.add_argument("--n", type=int, default=256, help="matrix size")
    parser.add_argument("--trials", type=int, default=16, help="tune: measurements")
    parser.add_argument("--work-dir", default="tvm_work", help="tune: TVM's logs")
    parser.add_argument("--seed", type=int, default=1, help="tune: TVM's seed")
    parser.add_argument("--queries", type=int, default=21, help="apply: lookups timed (>= 2)")
    args = parser.parse_args()
    result = tune(args) if args.command == "tune" else apply(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
