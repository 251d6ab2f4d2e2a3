#!/usr/bin/env python3
"""Kernel Tuner's search strategies on ktune's recorded tuning spaces, scored like `ktune bench search`.

Each strategy of Kernel Tuner (https://github.com/KernelTuner/kernel_tuner, 1.5) runs in its
simulation mode (`simulation_mode=True`, `cache=FILE`) on every recorded space, with
`strategy_options={"max_fevals": budget}`, once per seed, and the runs are scored with exactly the
metric of ktune's own search benchmark (bench/search_benchmark.h):

  * an evaluation is one distinct configuration measured, failed ones included. The trace of a run
    is Kernel Tuner's returned `results` list (one entry per configuration the runner served,
    failures and repeat visits included) deduplicated by configuration, keeping first occurrences;
  * best/opt@B: median over seeds of (best valid time within the first B evaluations) / optimum,
    the optimum being the fastest valid time in the file (a seed with no valid time counts as
    infinity; null when the median is infinite, as in ktune);
  * evals_to_X: median over seeds of the 1-based evaluation count after which the best first came
    within X of the optimum (time <= optimum * (1 + X)), a seed that never did counting as
    10 x budget; reached_X: the fraction of seeds that did.

One JSON line per (space, strategy) goes to stdout (and is appended to --out), with the keys of
`ktune bench search --json` in the same order; progress goes to stderr. Run it with the venv that
setup.sh makes (run.sh does all of it).

The search space Kernel Tuner sees is the set of configurations in the file, failed ones
included (a restriction that admits exactly those): the same space ktune's strategies search.
Kernel Tuner's own `tune_cache` helper would instead leave the failed configurations out of the
space, which would make the spaces with failures easier for Kernel Tuner than for ktune.
"""

import argparse
import gzip
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings

STRATEGIES = [
    "genetic_algorithm",
    "dual_annealing",
    "simulated_annealing",
    "pso",
    "firefly_algorithm",
    "basinhopping",
    "diff_evo",
    "mls",
    "greedy_ils",
    "random_sample",
]
CHECKPOINTS = [25, 50, 100, 200, 400]
# Kernel Tuner's older failure sentinel time; ktune's reader treats a time >= 1e20 as a failure.
KT_FAILURE_TIME = 1e20
FAILURE_STRINGS = ("ErrorConfig", "InvalidConfig", "CompilationFailedConfig", "RuntimeFailedConfig")
# T4 "invalidity" -> the string Kernel Tuner stores as the time of a failed configuration.
T4_FAILURE = {
    "compile": "CompilationFailedConfig",
    "runtime": "RuntimeFailedConfig",
    "timeout": "RuntimeFailedConfig",
    "correctness": "RuntimeFailedConfig",
    "constraints": "InvalidConfig",
}
T4_TIME_UNIT_TO_MS = {
    "": 1.0, "ms": 1.0, "milliseconds": 1.0, "miliseconds": 1.0, "millisecond": 1.0,
    "s": 1e3, "seconds": 1e3, "second": 1e3,
    "us": 1e-3, "microseconds": 1e-3, "microsecond": 1e-3,
    "ns": 1e-6, "nanoseconds": 1e-6, "nanosecond": 1e-6,
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def default_spaces():
    root = os.environ.get("KTUNE_DATASETS_DIR")
    if root:
        folder = os.path.join(root, "spaces")
    else:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        folder = os.path.join(os.path.dirname(repo), "shared", "datasets", "spaces")
    if not os.path.isdir(folder):
        sys.exit(f"run_kernel_tuner.py: no spaces folder {folder} (set KTUNE_DATASETS_DIR or pass --space)")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".json.gz") or f.endswith(".json"))


def read_json(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def is_failure(time_value):
    return isinstance(time_value, str) or (isinstance(time_value, (int, float)) and time_value >= KT_FAILURE_TIME)


def key_of(values):
    # Kernel Tuner's cache key: the parameter values in tune_params order, str()-joined by commas.
    return ",".join(str(v) for v in values)


def names_from_file(path):
    base = os.path.basename(path)
    for suffix in (".json.gz", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    for fmt in ("_kernel_tuner_cache", "_T4"):
        if base.endswith(fmt):
            base = base[: -len(fmt)]
    kernel, _, device = base.partition("_")
    return kernel or base, device or "unknown"


def to_kernel_tuner_cache(path):
    """The space in `path` (T4 or Kernel Tuner cache) as a Kernel Tuner cache document holding only
    what simulation needs: each configuration's parameters and its time, or for a failed one the
    failure string Kernel Tuner itself writes (CompilationFailedConfig, RuntimeFailedConfig)."""
    doc = read_json(path)
    if isinstance(doc, dict) and "cache" in doc:
        keys = list(doc["tune_params_keys"])
        tune_params = {k: list(doc["tune_params"][k]) for k in keys}
        cache = {}
        for key, e in doc["cache"].items():
            values = [e[k] for k in keys]
            k2 = key_of(values)
            if k2 != key:
                raise ValueError(f"{path}: cache key {key!r} does not match its parameters ({k2!r})")
            t = e["time"]
            if not (is_failure(t) or isinstance(t, (int, float))):
                raise ValueError(f"{path}: {key}: time {t!r} is neither a number nor a failure string")
            entry = dict(zip(keys, values))
            entry["time"] = t
            cache[key] = entry
        problem_size = doc.get("problem_size", [1])
        if isinstance(problem_size, int):
            problem_size = [problem_size]
        return {
            "device_name": doc.get("device_name") or names_from_file(path)[1],
            "kernel_name": doc.get("kernel_name") or names_from_file(path)[0],
            "problem_size": problem_size,
            "tune_params_keys": keys,
            "tune_params": tune_params,
            "objective": "time",
            "cache": cache,
        }
    if not (isinstance(doc, dict) and isinstance(doc.get("results"), list)):
        raise ValueError(f"{path}: neither a Kernel Tuner cache file nor a T4 file")
    unit = str((doc.get("metadata") or {}).get("timeunit", "")).lower()
    if unit not in T4_TIME_UNIT_TO_MS:
        raise ValueError(f"{path}: unknown time unit {unit!r}")
    scale = T4_TIME_UNIT_TO_MS[unit]
    results = doc["results"]
    keys = list(results[0]["configuration"].keys())
    seen = {k: [] for k in keys}
    for r in results:
        for k in keys:
            v = r["configuration"][k]
            if v not in seen[k]:
                seen[k].append(v)
    tune_params = {}
    for k, vals in seen.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
        tune_params[k] = sorted(vals) if numeric else vals
    cache = {}
    for i, r in enumerate(results):
        values = [r["configuration"][k] for k in keys]
        invalidity = r.get("invalidity", "correct")
        if invalidity == "correct":
            t = None
            for m in r.get("measurements", []):
                if m.get("name") == "time":
                    t = m.get("value")
            if not isinstance(t, (int, float)):
                raise ValueError(f"{path}: results[{i}]: a correct result without a numeric time")
            t = t * scale
        elif invalidity in T4_FAILURE:
            t = T4_FAILURE[invalidity]
        else:
            raise ValueError(f"{path}: results[{i}]: unknown invalidity {invalidity!r}")
        entry = dict(zip(keys, values))
        entry["time"] = t
        key = key_of(values)
        if key in cache:
            raise ValueError(f"{path}: configuration {key} appears twice")
        cache[key] = entry
    kernel, device = names_from_file(path)
    return {
        "device_name": device,
        "kernel_name": kernel,
        "problem_size": [1],
        "tune_params_keys": keys,
        "tune_params": tune_params,
        "objective": "time",
        "cache": cache,
    }


class Space:
    """A converted space: the Kernel Tuner cache file written for it, and each configuration's time."""

    def __init__(self, path, workdir):
        self.path = path
        self.name = os.path.basename(path)
        doc = to_kernel_tuner_cache(path)
        self.doc_header = {k: v for k, v in doc.items() if k != "cache"}
        self.keys = doc["tune_params_keys"]
        self.tune_params = doc["tune_params"]
        # key -> time in ms, or None for a failed configuration
        self.time = {k: (None if is_failure(e["time"]) else float(e["time"])) for k, e in doc["cache"].items()}
        valid = [t for t in self.time.values() if t is not None]
        if not valid:
            raise ValueError(f"{path}: no valid configuration")
        self.optimum = min(valid)
        self.size = len(self.time)
        self.failed = sum(t is None for t in self.time.values())
        stem = self.name.replace(".json.gz", "").replace(".json", "")
        # the process id keeps parallel workers (--jobs) from writing the same file at once
        self.cache_file = os.path.join(workdir, f"{stem}_{os.getpid()}_kt_sim.json")
        with open(self.cache_file, "w") as f:
            json.dump(doc, f)


_members_of = {}


def make_restriction(space):
    """A restriction admitting exactly the configurations in the file (failed ones included)."""
    from constraint import FunctionConstraint

    members = _members_of.get(space.cache_file)
    if members is None:
        members = set()
        for key in space.time:
            members.add(key)
        _members_of[space.cache_file] = members

    def in_recorded_space(*values):
        return key_of(values) in members

    return [FunctionConstraint(in_recorded_space)]


_patched = False


def make_kernel_tuner_deterministic():
    """Kernel Tuner 1.5's strategies draw from Python's `random` and numpy's global RNG, which
    run_once seeds, except in one place: Searchspace.get_LHS_sample_indices (used by diff_evo's
    default constraint-aware initial population) builds scipy's LatinHypercube without a seed, so
    it draws from fresh OS entropy. Give it a generator seeded from numpy's (seeded) global RNG."""
    global _patched
    if _patched:
        return
    import numpy as np
    from scipy.stats import qmc

    original = qmc.LatinHypercube

    class SeededLatinHypercube(original):
        def __init__(self, d, *args, **kwargs):
            if not args and kwargs.get("rng") is None and kwargs.get("seed") is None:
                kwargs.pop("seed", None)
                kwargs["rng"] = np.random.default_rng(np.random.randint(0, 2**31 - 1))
            super().__init__(d, *args, **kwargs)

    qmc.LatinHypercube = SeededLatinHypercube
    _patched = True


def run_once(space, strategy, seed, budget):
    """One Kernel Tuner run; returns (trace, stats): the trace is [(ok, time_ms)] per distinct
    configuration in the order Kernel Tuner first evaluated it."""
    import numpy as np
    import kernel_tuner

    make_kernel_tuner_deterministic()
    random.seed(seed)
    np.random.seed(seed)
    hdr = space.doc_header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, env = kernel_tuner.tune_kernel(
            hdr["kernel_name"],
            "",
            tuple(hdr["problem_size"]),
            [],
            dict(space.tune_params),
            restrictions=make_restriction(space),
            strategy=strategy,
            strategy_options={"max_fevals": budget},
            cache=space.cache_file,
            simulation_mode=True,
            quiet=True,
            verbose=False,
        )
    trace, seen, failed_results = [], set(), 0
    for r in results:
        key = key_of(r[k] for k in space.keys)
        if key not in space.time:
            raise RuntimeError(f"Kernel Tuner returned a configuration outside the space: {key}")
        t = space.time[key]
        if "__error__" in r:
            failed_results += 1
            if t is not None:
                raise RuntimeError(f"{key}: an error in Kernel Tuner's results but valid in the file")
        if key in seen:
            continue
        seen.add(key)
        trace.append((t is not None, t))
    stats = {
        "results": len(results),
        "unique": len(trace),
        "failed_unique": sum(not ok for ok, _ in trace),
        "failed_results": failed_results,
    }
    if len(trace) > budget:
        stats["over_budget"] = len(trace)
        trace = trace[:budget]
    return trace, stats


def best_over_opt_at(trace, optimum, b):
    best = math.inf
    for ok, t in trace[:b]:
        if ok:
            best = min(best, t)
    return best / optimum


def evals_to_within(trace, optimum, fraction, never):
    for i, (ok, t) in enumerate(trace):
        if ok and t <= optimum * (1 + fraction):
            return i + 1
    return never


def median(values):
    return statistics.median(values) if values else math.nan


def score(space, strategy, budget, traces):
    row = {"space": space.name, "strategy": "kt:" + strategy, "budget": budget, "seeds": len(traces)}
    for b in (c for c in CHECKPOINTS if c <= budget):  # as ktune's rows: none past the budget
        m = median([best_over_opt_at(t, space.optimum, b) for t in traces])
        row[f"best/opt@{b}"] = m if math.isfinite(m) else None
    never = 10 * budget
    for fraction, tag in ((0.05, "5pct"), (0.02, "2pct")):
        counts = [evals_to_within(t, space.optimum, fraction, never) for t in traces]
        row[f"evals_to_{tag}"] = float(median(counts))
        row[f"reached_{tag}"] = sum(c != never for c in counts) / len(traces)
    return row


def run_strategy(space, strategy, seeds, budget):
    traces, stats, seconds = [], [], []
    for seed in range(1, seeds + 1):
        start = time.perf_counter()
        try:
            trace, st = run_once(space, strategy, seed, budget)
        except Exception as e:  # noqa: BLE001 - a strategy that throws gives an error row
            log(f"{space.name} kt:{strategy} seed {seed}: ERROR {type(e).__name__}: {e}")
            log(traceback.format_exc())
            return {
                "space": space.name, "strategy": "kt:" + strategy, "budget": budget, "seeds": seeds,
                "error": f"seed {seed}: {type(e).__name__}: {e}",
            }
        seconds.append(time.perf_counter() - start)
        traces.append(trace)
        stats.append(st)
        log(
            f"{space.name} kt:{strategy} seed {seed}: best/opt {best_over_opt_at(trace, space.optimum, budget):.3f}, "
            f"{st['unique']} distinct configurations ({st['failed_unique']} failed), "
            f"{st['results']} results ({st['results'] - st['unique']} repeats, {st['failed_results']} failures), "
            f"{seconds[-1]:.2f} s" + (f", OVER BUDGET: {st['over_budget']}" if "over_budget" in st else "")
        )
    row = score(space, strategy, budget, traces)
    log(
        f"{space.name} kt:{strategy}: evals_to_5pct {row['evals_to_5pct']} (reached {row['reached_5pct']}), "
        f"median {median([s['unique'] for s in stats])} distinct evaluations, "
        f"median {median(seconds):.2f} s a run"
    )
    return row


# --- worker plumbing for --jobs > 1 -------------------------------------------------------------
_worker_spaces = {}


def _worker(args):
    path, workdir, strategy, seeds, budget = args
    space = _worker_spaces.get(path)
    if space is None:
        try:
            space = _worker_spaces[path] = Space(path, workdir)
        except Exception as e:  # noqa: BLE001
            return space_error_row(path, strategy, seeds, budget, e)
    try:
        return run_strategy(space, strategy, seeds, budget)
    except Exception as e:  # noqa: BLE001 - an error row, not the end of every other worker's rows
        log(f"{space.name} kt:{strategy}: {type(e).__name__}: {e}")
        return {"space": space.name, "strategy": "kt:" + strategy, "budget": budget, "seeds": seeds,
                "error": f"{type(e).__name__}: {e}"}


def space_error_row(path, strategy, seeds, budget, e):
    log(f"{os.path.basename(path)}: cannot load: {type(e).__name__}: {e}")
    return {"space": os.path.basename(path), "strategy": "kt:" + strategy, "budget": budget, "seeds": seeds,
            "error": f"loading the space: {type(e).__name__}: {e}"}


def main():
    # Same results in every process: no string-hash randomisation (set and dict orders of
    # strings), in case a strategy iterates over such a set.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", nargs="+", metavar="FILE", help="space files (default: all in the datasets' spaces/)")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated Kernel Tuner strategies")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budget", type=int, default=400)
    p.add_argument("--out", help="also append the JSON lines to this file")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes, one (space, strategy) each")
    args = p.parse_args()
    if args.budget < 1 or args.seeds < 1:
        sys.exit("run_kernel_tuner.py: --budget and --seeds must be positive")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if "bayes_opt" in strategies:
        log("warning: Kernel Tuner 1.5's bayes_opt takes failed configurations for valid ones (see README.md)")
    spaces = args.space or default_spaces()
    workdir = tempfile.mkdtemp(prefix="ktune-kt-")
    out = open(args.out, "a") if args.out else None

    def emit(row):
        line = json.dumps(row, separators=(",", ":"))
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    start = time.perf_counter()
    try:
        import kernel_tuner  # noqa: F401 - fail early outside the venv

        if args.jobs <= 1:
            for path in spaces:
                t0 = time.perf_counter()
                try:
                    space = Space(path, workdir)
                except Exception as e:  # noqa: BLE001 - a file that cannot be read gives error rows
                    for strategy in strategies:
                        emit(space_error_row(path, strategy, args.seeds, args.budget, e))
                    continue
                log(f"{space.name}: {space.size} configurations ({space.failed} failed), optimum {space.optimum:.6g} ms, "
                    f"converted in {time.perf_counter() - t0:.1f} s")
                for strategy in strategies:
                    emit(run_strategy(space, strategy, args.seeds, args.budget))
        else:
            import multiprocessing

            tasks = [(path, workdir, s, args.seeds, args.budget) for path in spaces for s in strategies]
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            # A worker that dies (killed, out of memory) gives error rows for what it had not
            # finished; multiprocessing.Pool waited for it for ever.
            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(_worker, t) for t in tasks]
                for task, future in zip(tasks, futures):
                    try:
                        emit(future.result())
                    except BrokenProcessPool as e:
                        path, _, strategy, seeds, budget = task
                        emit({"space": os.path.basename(path), "strategy": "kt:" + strategy,
                              "budget": budget, "seeds": seeds,
                              "error": f"its worker process died: {e}"})
    finally:
        if out:
            out.close()
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
