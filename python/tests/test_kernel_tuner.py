"""Kernel Tuner 1.5 tunes a C kernel (g++) through ktune.kernel_tuner.Strategy: ktune's agent
proposes, Kernel Tuner measures, every result is committed in a real `ktune serve`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import grpc
import numpy as np
import pytest

import ktune
from ktune import MatchLevel, Status

from kernel_tuner import tune_kernel
from ktune.kernel_tuner import Strategy

from conftest import ktune_cli

# A sum over a vector in blocks with `unroll` partial sums; the C function returns its own time
# (Kernel Tuner's convention for lang="C"). Kernel Tuner defines block_size_x and unroll.
SOURCE = r"""
#include <chrono>
extern "C" float vsum(float *out, const float *a, int n) {
  auto t0 = std::chrono::steady_clock::now();
  float total = 0;
  for (int i = 0; i < n; i += block_size_x) {
    float acc[unroll] = {0};
    for (int j = 0; j < block_size_x; j += unroll)
      for (int u = 0; u < unroll; ++u) acc[u] += a[i + j + u];
    for (int u = 0; u < unroll; ++u) total += acc[u];
  }
  out[0] = total;
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<float, std::milli>(t1 - t0).count();
}
"""
N = 1 << 16
TUNE_PARAMS = {"block_size_x": [64, 128, 256, 512, 1024], "unroll": [1, 2, 4, 8]}
RESTRICTIONS = ["block_size_x >= 16 * unroll"]  # 19 of the 20 configurations
SPACE = 19


def run_kernel_tuner(strategy, max_fevals: int, strategy_options=None, **kwargs):
    a = np.ones(N, dtype=np.float32)  # sums exactly in any order
    out = np.zeros(1, dtype=np.float32)
    expected = np.array([N], dtype=np.float32)
    kwargs.setdefault("restrictions", RESTRICTIONS)
    return tune_kernel("vsum", SOURCE, N, [out, a, np.int32(N)], TUNE_PARAMS, lang="C",
                       answer=[expected, None, None], atol=1e-3,
                       strategy=strategy,
                       strategy_options={"max_fevals": max_fevals, **(strategy_options or {})},
                       iterations=5, quiet=True, verbose=False, **kwargs)


def key(config: dict) -> tuple:
    return tuple(config[k] for k in TUNE_PARAMS)


def test_kernel_tuner_tunes_through_ktune(empty_server, tmp_path):
    client = empty_server.client()
    strategy = Strategy(client, batch_size=4, seed=1)  # the server's default: ppo (or model)
    results, env = run_kernel_tuner(strategy, max_fevals=10)

    # Kernel Tuner measured what ktune proposed: 10 distinct configurations of its space.
    assert len(results) == 10
    measured = {key(r): r for r in results}
    assert len(measured) == 10
    assert all(r["block_size_x"] >= 16 * r["unroll"] for r in results)

    # ktune registered the kernel, ran one job, and holds one record per result, under the
    # Kernel Tuner device.
    assert strategy.kernel_name.startswith("kt_vsum_")
    assert strategy.task.kernel == strategy.kernel_name
    assert strategy.task.problem == {"problem_size_x": N, "dtype": "f32"}
    device = strategy.device
    assert device.device_class.startswith("kernel_tuner:C:")
    assert device.fingerprint["lang"] == "C" and device.fingerprint["kernel_tuner"] == "1.5.0"
    assert device.fingerprint["compiler"].startswith("g++")
    assert strategy.reported == 10
    records = list(client.export_records(strategy.task))
    assert len(records) == 10
    by_config = {key(r.config): r for r in records}
    assert set(by_config) == set(measured)
    for k, r in by_config.items():
        assert r.device == device and r.source == f"job:{strategy.job_ids[0]}"
        assert r.status is Status.OK
        assert list(r.repeat_times_ms) == pytest.approx(measured[k]["times"])
        assert r.time_ms == pytest.approx(float(np.median(measured[k]["times"])))
    job = client.get_job(strategy.job_ids[0])
    assert job.state.final and job.measurements_done == 10
    assert strategy.kernel_name in {k.name for k in client.kernels()}
    assert client.workers() == []  # the strategy's worker left

    # best() finds the fastest of them, at the exact fingerprint.
    answer = client.best(strategy.kernel_name, strategy.task.problem, device)
    assert answer.level is MatchLevel.EXACT
    assert answer.best.time_ms == min(r.time_ms for r in records)
    # A problem size never tuned: predicted from the nearest tuned one (dtype filled in).
    predicted = client.best(strategy.kernel_name, {"problem_size_x": N // 2}, device)
    assert predicted.level is MatchLevel.PREDICTED and key(predicted.config) in measured

    # A second run of the same kernel continues: ktune proposes only what it has not measured.
    again = Strategy(client, batch_size=4, seed=2)
    results2, _ = run_kernel_tuner(again, max_fevals=SPACE - 10)
    assert again.kernel_name == strategy.kernel_name and again.task == strategy.task
    assert {key(r) for r in results2}.isdisjoint(measured)
    records = list(client.export_records(strategy.task))
    assert len(records) == SPACE and len({key(r.config) for r in records}) == SPACE

    # ktune exports a Kernel Tuner cache of what it holds; Kernel Tuner reads it back.
    cache = tmp_path / "vsum_cache.json"
    assert again.export_cache(cache) == SPACE
    doc = json.loads(cache.read_text())
    assert doc["kernel_name"] == "vsum" and doc["tune_params_keys"] == list(TUNE_PARAMS)
    assert doc["problem_size"] == N
    replayed, _ = tune_kernel("vsum", SOURCE, N, [np.zeros(1, np.float32), np.zeros(N, np.float32),
                                                  np.int32(N)], TUNE_PARAMS, lang="C",
                              restrictions=RESTRICTIONS, cache=str(cache), simulation_mode=True,
                              strategy="brute_force", quiet=True)
    assert len(replayed) == SPACE
    fastest = min(replayed, key=lambda r: r["time"])
    best = client.best(strategy.kernel_name, strategy.task.problem, device).best
    assert key(fastest) == key(best.config) and fastest["time"] == pytest.approx(best.time_ms)
    # Measuring for real, Kernel Tuner reuses it on this device: its C back end names no device,
    # and a cache naming the CPU model was refused ("results for different device").
    reused, _ = tune_kernel("vsum", SOURCE, N, [np.zeros(1, np.float32), np.ones(N, np.float32),
                                                np.int32(N)], TUNE_PARAMS, lang="C",
                            restrictions=RESTRICTIONS, cache=str(cache), strategy="brute_force",
                            quiet=True)
    assert {key(r): r["time"] for r in reused} == pytest.approx(
        {key(r.config): r.time_ms for r in records})
    # The task without dtype, as Kernel Tuner's problem reads (the server fills it in, as best()
    # does; the export found nothing).
    bare = ktune.Task(strategy.kernel_name, {"problem_size_x": N}, device.device_class)
    assert len(list(client.export_records(bare))) == SPACE

    # The same from the command line, for any task (ktune's names), which `ktune db import`
    # reads back as the same records.
    generic = tmp_path / "generic_cache.json"
    cli = subprocess.run(
        [sys.executable, "-P", "-m", "ktune.kernel_tuner", "export", "--server",
         empty_server.address, "--kernel", strategy.kernel_name, "--device", device.device_class,
         "--problem", f"problem_size_x={N},dtype=f32", "--out", str(generic)],
        capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert f"wrote {SPACE} entries" in cli.stderr
    imported = ktune_cli("db", "import", str(generic), "--db", str(tmp_path / "back.db"), "--json")
    summary = json.loads(imported.stdout)
    assert summary["format"] == "kernel-tuner" and summary["records_added"] == SPACE
    # ... under the same task, device and fingerprint (they landed under the CPU model's name,
    # the problem {}, and `best` found nothing).
    assert summary["problem_size_not_kept"] == ""
    back = json.loads(ktune_cli("best", "--db", str(tmp_path / "back.db"), "--kernel",
                                strategy.kernel_name, "--problem", f"problem_size_x={N},dtype=f32",
                                "--device", device.device_class, "--json").stdout)
    assert back["level"] == "device_class"
    assert back["best"][0]["time_ms"] == pytest.approx(best.time_ms)
    assert back["best"][0]["device"]["fingerprint"] == device.fingerprint
    # ktune db export writes a cache Kernel Tuner replays (a sorted file, "cache" first, failed to
    # parse there) and reuses on this device (its C back end names no device).
    again_cache = tmp_path / "db_export_cache.json"
    ktune_cli("db", "export", "--db", str(tmp_path / "back.db"), "--format", "kernel-tuner",
              "--kernel", strategy.kernel_name, "--device", device.device_class,
              "--out", str(again_cache))
    assert json.loads(again_cache.read_text())["device_name"] == ""
    replayed_again, _ = tune_kernel(
        strategy.kernel_name, SOURCE.replace("vsum(", strategy.kernel_name + "("), N,
        [np.zeros(1, np.float32), np.ones(N, np.float32), np.int32(N)], TUNE_PARAMS, lang="C",
        restrictions=RESTRICTIONS, cache=str(again_cache), strategy="brute_force", quiet=True)
    assert {key(r): r["time"] for r in replayed_again} == pytest.approx(
        {key(r.config): r.time_ms for r in records})

    # The strategy in simulation mode (Kernel Tuner replays that cache): records under a device
    # class of their own, apart from the measurements.
    simulated = Strategy(client, batch_size=4, seed=3)
    tune_kernel("vsum", SOURCE, N, [np.zeros(1, np.float32), np.zeros(N, np.float32), np.int32(N)],
                TUNE_PARAMS, lang="C", restrictions=RESTRICTIONS, cache=str(cache),
                simulation_mode=True, strategy=simulated, strategy_options={"max_fevals": 5},
                quiet=True)
    assert simulated.device.device_class.startswith("kernel_tuner:simulated:")
    assert simulated.device.fingerprint["simulated_from_cache"] is True
    replay_records = list(client.export_records(simulated.task))
    assert len(replay_records) == 5 == simulated.reported
    assert all(r.time_ms == pytest.approx(by_config[key(r.config)].time_ms)
               for r in replay_records if key(r.config) in by_config)
    assert len(list(client.export_records(strategy.task))) == SPACE  # unchanged


def test_a_batch_kernel_tuner_stops_in_keeps_what_it_measured(empty_server, tmp_path,
                                                               monkeypatch):
    """Kernel Tuner raises on a result that fails verification and the run stops; the lease's
    configurations it measured before that are reported, not lost with the lease."""
    monkeypatch.chdir(tmp_path)  # Kernel Tuner leaves the failed source in the working folder
    wrong = SOURCE.replace("out[0] = total;", "out[0] = unroll == 2 ? -1 : total;")
    client = empty_server.client()
    strategy = Strategy(client, strategy="random", batch_size=SPACE, seed=4)
    with pytest.raises(RuntimeError, match="verification failed"):
        tune_kernel("vsum", wrong, N, [np.zeros(1, np.float32), np.ones(N, np.float32),
                                       np.int32(N)], TUNE_PARAMS, lang="C",
                    answer=[np.array([N], np.float32), None, None], atol=1e-3,
                    restrictions=RESTRICTIONS, strategy=strategy,
                    strategy_options={"max_fevals": SPACE}, iterations=3, quiet=True)
    records = list(client.export_records(strategy.task))
    # The first lease is the default configuration alone, the second the rest of the space: what
    # was measured of it before the failure is kept (only the first lease's record was).
    assert 1 < strategy.reported == len(records) < SPACE
    assert all(r.ok and r.config["unroll"] != 2 for r in records)


def test_an_objective_other_than_time_is_said_to_pick_only_kernel_tuners_best(empty_server):
    """ktune searches for time; an objective ktune does not search for (GFLOP/s here, energy in
    general) is said to decide only Kernel Tuner's own pick (it was ignored without a word)."""
    client = empty_server.client()
    gflops = {"GFLOP/s": lambda p: N / (p["time"] / 1e3) / 1e9}
    with pytest.warns(UserWarning, match="Kernel Tuner's objective 'GFLOP/s' only picks"):
        results, _ = run_kernel_tuner(Strategy(client, strategy="random", seed=3), max_fevals=4,
                                      metrics=gflops, objective="GFLOP/s",
                                      objective_higher_is_better=True)
    assert len(results) == 4 and all(r["GFLOP/s"] > 0 for r in results)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # time, Kernel Tuner's default: nothing to say
        run_kernel_tuner(Strategy(client, strategy="random", seed=4), max_fevals=2)


def test_a_bad_strategy_is_refused_when_the_strategy_is_made(empty_server):
    # A user trial: it was refused only inside tune_kernel, once Kernel Tuner had set up.
    with pytest.raises(ValueError, match="strategy must be one of .*, not 'bogus'"):
        Strategy(empty_server.client(), strategy="bogus")


def test_strategy_options_ktune_does_not_take_are_said_to_be_ignored(empty_server):
    """Kernel Tuner's own strategies refuse options they do not take; ktune's agent takes none but
    the budget. A genetic algorithm's population size was ignored without a word."""
    client = empty_server.client()
    with pytest.warns(UserWarning, match="strategy options .* ignored: maxiter, popsize"):
        results, _ = run_kernel_tuner(Strategy(client, strategy="random", seed=3), max_fevals=3,
                                      strategy_options={"popsize": 20, "maxiter": 5})
    assert len(results) == 3  # the budget still holds
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the budget alone: nothing to say
        run_kernel_tuner(Strategy(client, strategy="random", seed=4), max_fevals=2,
                         strategy_options={"time_limit": 600})


def test_x0_is_measured_first(empty_server):
    """Kernel Tuner's x0 (a starting configuration) is measured in the first batch, beside the
    kernel's default (JobSpec.initial_configs); it was ignored, with a warning. One that is not a
    configuration of tune_params is refused, naming the value."""
    client = empty_server.client()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # x0 is taken: nothing to say
        results, _ = run_kernel_tuner(Strategy(client, strategy="random", seed=3), max_fevals=4,
                                      strategy_options={"x0": [512, 4]})
    assert (512, 4) in [key(r) for r in results][:2]
    # Given by name, one the first run did not measure: the first of the second run (ktune's
    # records hold the default now).
    block, unroll = next((b, u) for b in TUNE_PARAMS["block_size_x"] for u in TUNE_PARAMS["unroll"]
                         if b >= 16 * u and (b, u) not in {key(r) for r in results})
    results, _ = run_kernel_tuner(Strategy(client, strategy="random", seed=4), max_fevals=3,
                                  strategy_options={"x0": {"unroll": unroll, "block_size_x": block}})
    assert key(results[0]) == (block, unroll)
    with pytest.raises(ValueError, match="500 is not one of tune_params\\['block_size_x'\\]"):
        run_kernel_tuner(Strategy(client, strategy="random", seed=5), max_fevals=2,
                         strategy_options={"x0": [500, 4]})


def test_restrictions_ktune_cannot_read(empty_server):
    """Restrictions given as a function stay with Kernel Tuner: ktune's space is then the whole
    product, and a proposal they rule out is recorded as invalid_config (not measured, not lost).
    ktune's job budget counts it, so the strategy submits another job for what Kernel Tuner's
    budget has left, until Kernel Tuner has measured its whole space."""
    client = empty_server.client()
    strategy = Strategy(client, strategy="random", batch_size=8, seed=5)

    def restriction(p):  # a function (not a lambda, which Kernel Tuner would turn into a string)
        return p["block_size_x"] >= 64 * p["unroll"]  # 14 of the 20 configurations

    results, _ = run_kernel_tuner(strategy, max_fevals=100, restrictions=restriction)
    assert strategy.dropped_constraints  # the function was not sent to ktune
    assert len(results) == 14  # Kernel Tuner's whole space
    records = list(client.export_records(strategy.task))
    ok = [r for r in records if r.status is Status.OK]
    invalid = [r for r in records if r.status is Status.INVALID_CONFIG]
    assert {key(r.config) for r in ok} == {key(r) for r in results} and len(ok) == 14
    assert invalid and len(records) == len(ok) + len(invalid)
    assert all(r.config["block_size_x"] < 64 * r.config["unroll"] and r.time_ms is None and
               "restrictions" in r.message for r in invalid)
    assert len(strategy.job_ids) >= 2  # invalid proposals spent the first job's budget
    assert all(client.get_job(j).state.final for j in strategy.job_ids)


def test_batches_longer_than_the_lease_timeout(ktune_bin, tmp_path):
    """Kernel Tuner measuring a batch for longer than the server's lease timeout keeps the lease
    (the strategy heartbeats it), so every result is stored."""
    from conftest import Server
    server = Server(tmp_path, "--lease-timeout-ms", "600")  # heartbeats every 200 ms
    try:
        client = server.client()
        strategy = Strategy(client, strategy="random", batch_size=8, seed=3)
        results, _ = run_kernel_tuner(strategy, max_fevals=8)  # 8 g++ builds: seconds
        assert len(results) == 8 and strategy.reported == 8
        assert len(list(client.export_records(strategy.task))) == 8
        assert "report_refused" not in "\n".join(server.process.lines)
    finally:
        server.stop()


def test_a_restriction_ktune_does_not_read_stays_with_kernel_tuner(empty_server):
    client = empty_server.client()
    strategy = Strategy(client, strategy="random", batch_size=8, seed=4)
    results, _ = run_kernel_tuner(strategy, max_fevals=6,
                                  restrictions=["block_size_x >= 16 * unroll",
                                                "unroll in [1, 2, 4]"])  # ktune: no `in`
    assert strategy.dropped_constraints == ["unroll in [1, 2, 4]"]
    assert len(results) == 6 and all(r["unroll"] != 8 for r in results)
    records = list(client.export_records(strategy.task))
    assert all(r.status is Status.OK or (r.status is Status.INVALID_CONFIG and
                                         r.config["unroll"] == 8) for r in records)
    assert all(r.config["block_size_x"] >= 16 * r.config["unroll"] for r in records)


def test_a_chosen_device_class_keeps_its_own_records(empty_server):
    # The same machine tuned once under Kernel Tuner's class and once under a class the user
    # chose: two devices to ktune, each run's records found under its own class (the chosen
    # class's records were filed under the first class, and best() for it answered NONE).
    client = empty_server.client()
    default = Strategy(client, strategy="random", batch_size=4, seed=1)
    run_kernel_tuner(default, max_fevals=4)
    chosen = Strategy(client, strategy="random", batch_size=4, seed=2, device_class="my-bench-box")
    run_kernel_tuner(chosen, max_fevals=4)
    assert chosen.device.device_class == "my-bench-box"
    assert chosen.device.fingerprint["device_class"] == "my-bench-box"
    assert len(list(client.export_records(chosen.task))) == 4
    assert len(list(client.export_records(default.task))) == 4
    answer = client.best(chosen.kernel_name, chosen.task.problem, "my-bench-box")
    assert answer.level is MatchLevel.DEVICE_CLASS


def _ruled_out(p):  # a restriction given as a function: ktune cannot read it
    return p["block_size_x"] >= 32 * p["unroll"]


def test_a_restriction_function_gets_its_own_kernel_name(empty_server):
    # Proposals a function restriction rules out are stored as invalid_config records of the task.
    # A session without it (or with another) shared the task, and never measured them: the name
    # is hashed from the function's source (its repr named a memory address, and was not hashed).
    client = empty_server.client()
    restricted = Strategy(client, strategy="random", batch_size=8, seed=1)
    run_kernel_tuner(restricted, max_fevals=SPACE, restrictions=_ruled_out)
    assert restricted.dropped_constraints == [
        'def _ruled_out(p):  # a restriction given as a function: ktune cannot read it\n'
        '    return p["block_size_x"] >= 32 * p["unroll"]']
    invalid = [r for r in client.export_records(restricted.task)
               if r.status is Status.INVALID_CONFIG]
    assert invalid  # (64, 4) and (64, 8) and more are ruled out by the function
    plain = Strategy(client, strategy="random", batch_size=8, seed=2)
    results, _ = run_kernel_tuner(plain, max_fevals=SPACE)
    assert plain.kernel_name != restricted.kernel_name
    assert plain.dropped_constraints == []  # the first run's are not carried over
    measured = {key(r) for r in results}
    assert {key(r.config) for r in invalid} & measured  # measured now, not skipped
    assert len(measured) == SPACE
    # The same function again is the same kernel: its records are reused.
    again = Strategy(client, strategy="random", batch_size=8, seed=3)
    run_kernel_tuner(again, max_fevals=SPACE, restrictions=_ruled_out)
    assert again.kernel_name == restricted.kernel_name


def test_another_sessions_abandoned_job_does_not_hold_a_session(empty_server):
    # A session that crashed leaves its job running on the bridge's device class. A later
    # session on that class leased its candidates, handed them back, and leased them again for
    # ever once its own job had ended: it never returned.
    import threading

    client = empty_server.client()
    first = Strategy(client, strategy="random", batch_size=4, seed=1)
    run_kernel_tuner(first, max_fevals=4)
    orphan = client.submit(ktune.JobSpec(
        name="left by a crashed session", kernels=[first.kernel_name],
        problems=[{"problem_size_x": N * 2, "dtype": "f32"}],
        device_classes=[first.device.device_class], budget=SPACE, strategy="random"))
    second = Strategy(client, strategy="random", batch_size=4, seed=2)
    done = threading.Event()
    outcome: dict = {}

    def run():
        try:
            # Another kernel (a function restriction names it apart): the orphan's are not its.
            outcome["results"] = run_kernel_tuner(second, max_fevals=6,
                                                  restrictions=_ruled_out)[0]
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e
        done.set()

    threading.Thread(target=run, daemon=True).start()
    finished = done.wait(timeout=120)
    client.cancel(orphan.job_id)  # lets a spinning session go, so the test ends either way
    assert finished, "the session kept leasing the abandoned job's candidates"
    assert "error" not in outcome, outcome.get("error")
    assert second.kernel_name != first.kernel_name and outcome["results"]


def test_a_crashed_sessions_job_ends_with_its_worker(ktune_bin, tmp_path):
    # A session killed mid-run (a kernel that crashes the Python process, kill -9) left its job
    # running for good. The bridge binds its job to its worker: the server cancels the job once
    # the worker stops sending heartbeats.
    from conftest import Server
    server = Server(tmp_path, "--lease-timeout-ms", "600")
    try:
        script = "\n".join([
            "import os, signal, sys",
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})",
            "import ktune",
            "from ktune.kernel_tuner import Strategy",
            "from test_kernel_tuner import run_kernel_tuner",
            f"strategy = Strategy(ktune.Client({server.address!r}), strategy='random',",
            "                    batch_size=2, seed=5)",
            "strategy._measure = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
            "run_kernel_tuner(strategy, max_fevals=8)",
        ])
        crashed = subprocess.run([sys.executable, "-c", script], timeout=300)
        assert crashed.returncode == -signal.SIGKILL
        client = server.client()
        jobs = client.jobs()
        assert len(jobs) == 1
        deadline = time.monotonic() + 60
        while not client.get_job(jobs[0].job_id).state.final and time.monotonic() < deadline:
            time.sleep(0.2)
        job = client.get_job(jobs[0].job_id)
        assert job.state is ktune.JobState.CANCELLED, job
        assert "its worker" in job.message and "is gone" in job.message
    finally:
        server.stop()


def test_restrictions_that_differ_only_in_the_values_they_read_are_told_apart():
    # The source alone named make(256) and make(1024) alike, and their sessions shared a kernel.
    from ktune.kernel_tuner import _restriction_text

    def make(limit):
        return lambda p: p["block_size_x"] * p["unroll"] <= limit

    def with_default(p, limit=64):
        return p["block_size_x"] <= limit

    assert _restriction_text(make(256)) != _restriction_text(make(1024))
    assert _restriction_text(make(256)) == _restriction_text(make(256))
    assert "limit" in _restriction_text(with_default) and "64" in _restriction_text(with_default)
    import functools
    assert (_restriction_text(functools.partial(with_default, limit=8)) !=
            _restriction_text(functools.partial(with_default, limit=16)))


def test_a_lambda_restriction_is_named_by_the_lambda_alone():
    # inspect gives a lambda's whole lines: a string restriction beside it (which is sent to
    # ktune) was listed among the dropped ones, and reformatting the line named another kernel.
    from ktune.kernel_tuner import _restriction_text
    options = dict(restrictions=[lambda p: p["reps"] <= 2, "block_size_x >= 32"],
                   lang="C")
    assert _restriction_text(options["restrictions"][0]) == 'lambda p: p["reps"] <= 2'
    pair = [lambda p: p["a"] <= 1, lambda p: p["a"] >= 1]
    assert [_restriction_text(r) for r in pair] == ['lambda p: p["a"] <= 1',
                                                    'lambda p: p["a"] >= 1']

    def make(limit):
        return lambda p: p["block_size_x"] * p["unroll"] <= limit

    assert _restriction_text(make(256)) == ('lambda p: p["block_size_x"] * p["unroll"] <= limit\n'
                                            'closure=[256]')


def test_a_cache_of_several_machines_names_no_ones_fingerprint():
    # A review: the cache named the first record's fingerprint for every record, and ktune's
    # import filed records of two machines under the first one's.
    from ktune.kernel_tuner import cache_document
    task = ktune.Task("kt_x", {"problem_size_x": 4}, "kernel_tuner:C:x")
    records = [ktune.Record(task, ktune.Device("kernel_tuner:C:x", "x86-64-v4",
                                               json.dumps({"host": host, "name": "x"})),
                            {"block_size_x": b}, Status.OK, time_ms=1.0, repeat_times_ms=(1.0,))
               for host, b in (("a", 32), ("b", 64))]
    device = cache_document(records)["ktune"]["device"]
    assert device == {"class": "kernel_tuner:C:x", "family": "x86-64-v4"}
    one = cache_document(records[:1])["ktune"]["device"]
    assert one["fingerprint"] == {"host": "a", "name": "x"}


def test_a_server_restart_mid_run_is_waited_for_and_the_run_goes_on(ktune_bin, tmp_path):
    # A ktune server restarted (an upgrade, a crash) while Kernel Tuner tuned through it failed
    # the whole run at the next lease (UNAVAILABLE). The bridge tries again while the server is
    # away, re-registers its worker, follows the job the restart ended with a new one, and the
    # records go on in the same database.
    from conftest import Process, Server
    server = Server(tmp_path)
    restarted: list[Process] = []
    starter: list[threading.Thread] = []
    try:
        client = server.client()
        strategy = Strategy(client, strategy="random", batch_size=2, seed=6)
        measure = strategy._measure

        def measure_then_restart(*args, **kwargs):
            out = measure(*args, **kwargs)
            if not restarted:  # after the first lease: down for 2 s, then back on its port
                server.process.stop()

                def start_again():
                    time.sleep(2)
                    restarted.append(Process([str(ktune_bin), "serve", "--listen",
                                              server.address, "--db", str(server.db)],
                                             tmp_path / "serve-again.log"))
                restarted.append(None)  # type: ignore[arg-type]  # restarted once
                starter.append(threading.Thread(target=start_again, daemon=True))
                starter[0].start()
            return out

        strategy._measure = measure_then_restart
        with pytest.warns(RuntimeWarning, match="ktune server unreachable"):
            results, _ = run_kernel_tuner(strategy, max_fevals=8)
        assert len(restarted) == 2 and restarted[1] is not None
        assert len({key(r) for r in results}) == 8
        assert len(strategy.job_ids) >= 2  # the restart ended the first job; a second went on
        records = list(client.export_records(strategy.task))
        assert strategy.reported == len(records) >= 6  # before and after the restart
    finally:
        for t in starter:  # a test that failed early leaves no server starting after it
            t.join(timeout=30)
        for p in restarted[1:]:
            p.stop()
        server.stop()


def test_a_server_restart_between_measuring_and_reporting_ends_no_run(ktune_bin, tmp_path,
                                                                     monkeypatch):
    # A ktune server restarted after Kernel Tuner measured a lease and before the bridge reported
    # it: the restarted server does not know the bridge's worker and answers NOT_FOUND, which
    # ended the run. The bridge registers again and sends the report with the lease's candidates;
    # the restart cancelled the job bound to the old worker, so nothing of that lease is stored,
    # and the run goes on with a new job.
    from conftest import Process, Server
    from ktune import kernel_tuner as bridge
    server = Server(tmp_path)
    restarted: list[Process] = []
    real_report = bridge._Worker.report

    def report_after_a_restart(worker, lease, results):
        if not restarted:
            server.process.stop()
            restarted.append(Process([str(ktune_bin), "serve", "--listen", server.address,
                                      "--db", str(server.db)], tmp_path / "serve-again.log"))
            restarted[0].wait_for(r"listening on port")
        return real_report(worker, lease, results)

    monkeypatch.setattr(bridge._Worker, "report", report_after_a_restart)
    try:
        client = server.client()
        strategy = Strategy(client, strategy="random", batch_size=2, seed=6)
        with pytest.warns(RuntimeWarning, match="going on with a new job"):
            results, _ = run_kernel_tuner(strategy, max_fevals=8)
        assert restarted
        # The lease at the restart is measured but not stored: the new job (its budget what is
        # left of ktune's records) may propose its points again, which Kernel Tuner answers from
        # its cache, so the run may end one or two unique configurations short of 8.
        assert len({key(r) for r in results}) >= 6
        assert len(strategy.job_ids) >= 2  # the restart ended the first job; a second went on
        records = list(client.export_records(strategy.task))
        assert strategy.reported == len(records) >= 6
    finally:
        for p in restarted:
            p.stop()
        server.stop()


def test_a_job_made_by_a_submit_whose_reply_was_lost_is_cancelled(empty_server):
    # SubmitJob is not safe to send twice: a reply lost on the way back (UNAVAILABLE) left the job
    # made all the same, bound to this process's worker, its candidates measured beside the job
    # of the try that answered, on Kernel Tuner's budget.
    from ktune.errors import Unavailable
    client = empty_server.client()
    strategy = Strategy(client, strategy="random", batch_size=2, seed=8)
    made: list[str] = []
    real_submit = client.submit

    def submit_losing_the_first_reply(spec, timeout=None):
        job = real_submit(spec, timeout)
        made.append(job.job_id)
        if len(made) == 1:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, "the reply was lost", "SubmitJob")
        return job

    client.submit = submit_losing_the_first_reply
    with pytest.warns(RuntimeWarning, match="ktune server unreachable"):
        results, _ = run_kernel_tuner(strategy, max_fevals=6)
    assert len({key(r) for r in results}) == 6
    assert len(made) >= 2 and made[0] not in strategy.job_ids
    lost = client.get_job(made[0])
    assert lost.state is ktune.JobState.CANCELLED and lost.measurements_done == 0, lost
    assert lost.worker_id and lost.worker_id == client.get_job(strategy.job_ids[0]).worker_id


def test_a_runner_without_an_environment_is_said_not_swallowed():
    """A runner whose get_environment fails still gives a device, and says what its fingerprint
    lacks (the error was swallowed, and records were filed under a poorer fingerprint)."""
    class Source:
        lang = "CUDA"

    class DeviceInfo:
        name = "Some GPU"

    class Runner:
        kernel_source = Source()

        def get_device_info(self):
            return DeviceInfo()

        def get_environment(self, tuning_options):
            raise RuntimeError("no driver")

    strategy = Strategy(ktune.Client("127.0.0.1:1"), strategy="random")
    with pytest.warns(RuntimeWarning, match="gave no environment \\(RuntimeError: no driver\\)"):
        device = strategy._device(Runner(), {})
    assert device.device_class == "kernel_tuner:CUDA:Some GPU"
    assert json.loads(device.fingerprint_json)["name"] == "Some GPU"
