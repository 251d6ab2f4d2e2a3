"""The Python client against real `ktune serve` processes (see conftest.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone

import grpc

import pytest

import ktune
import ktune.v1.types_pb2
from ktune import JobSpec, JobState, MatchLevel, Status

from conftest import Server, ktune_cli

PNPOLY_CLASS = "RTX_2080_Ti"
PNPOLY_NAME = "NVIDIA GeForce RTX 2080 Ti"  # the recorded file's device_name: its fingerprint


# --- best() ---


def test_best_answers_each_match_level(records_server):
    client = records_server.client()
    records = list(client.export_records())
    assert len(records) == 4092  # the file, imported with `ktune db import`
    ok = sorted(r.time_ms for r in records if r.ok)
    assert len(ok) == 3734

    by_class = client.best("pnpoly", {}, PNPOLY_CLASS, top=3)
    assert by_class.level is MatchLevel.DEVICE_CLASS
    assert [r.time_ms for r in by_class.records] == ok[:3]  # the fastest, best first
    assert by_class.best.task.kernel == "pnpoly" and by_class.best.status is Status.OK
    assert set(by_class.config) == {"between_method", "block_size_x", "tile_size", "use_method"}

    exact = client.best("pnpoly", {}, ktune.Device.make(PNPOLY_CLASS, "turing", name=PNPOLY_NAME))
    assert exact.level is MatchLevel.EXACT
    assert exact.best.time_ms == ok[0]
    assert exact.best.device.fingerprint == {"name": PNPOLY_NAME}

    family = client.best("pnpoly", {}, ktune.Device("some other turing card", "turing"))
    assert family.level is MatchLevel.FAMILY
    assert family.best.time_ms == ok[0]

    nothing = client.best("pnpoly", {}, ktune.Device("a device never seen", "no such family"))
    assert nothing.level is MatchLevel.NONE
    assert nothing.records == [] and nothing.best is None and nothing.config is None
    assert not nothing.kernel_unknown  # pnpoly is known from its records, though no built-in
    misspelt = client.best("pnpolly", {}, PNPOLY_CLASS)
    assert misspelt.level is MatchLevel.NONE and misspelt.kernel_unknown


def test_the_clis_device_name_cpu_is_said_to_be_no_device_class(records_server):
    client = records_server.client()
    # `ktune best --device cpu` means this machine; from Python "cpu" found nothing, in silence.
    with pytest.warns(UserWarning, match="the ktune CLI's name for the machine it runs on"):
        assert client.best("pnpoly", {}, "cpu").level is MatchLevel.NONE
    with pytest.warns(UserWarning, match="server knows CPUs by their class"):
        assert client.explain("pnpoly", {}, "cpu")["served"] is None
    with pytest.warns(UserWarning, match="Client.workers"):
        assert client.pareto("pnpoly", {}, "cpu") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a class that answers warns of nothing
        assert client.best("pnpoly", {}, PNPOLY_CLASS).level is MatchLevel.DEVICE_CLASS


def test_best_problem_as_text(records_server):
    client = records_server.client()
    assert ktune.parse_params("M=512, N=512,dtype=f16,alpha=0.5") == {
        "M": 512, "N": 512, "dtype": "f16", "alpha": 0.5}
    # What the CLI refuses, refused (a repeated name took its last value: another problem).
    for text, says in [("M=64,N=64,K=64,K=32", "'K' is given twice"),
                       ("M=64,,N=64", "'' is not NAME=VALUE"), ("M=64,", "'' is not NAME=VALUE"),
                       ("=64", "has no name"), ("M=", "has no value"),
                       ("M=inf", "finite number or a name")]:
        with pytest.raises(ValueError, match=re.escape(says)):
            ktune.parse_params(text)
    # pnpoly's recorded problem is empty: "" and {} are the same problem.
    assert client.best("pnpoly", "", PNPOLY_CLASS).best == client.best("pnpoly", {},
                                                                       PNPOLY_CLASS).best


# --- errors ---


def test_errors_carry_code_and_message(records_server):
    client = records_server.client()
    with pytest.raises(ktune.InvalidArgument) as e:
        client.best("", {}, PNPOLY_CLASS)
    assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message == "kernel.name is required"
    assert e.value.rpc == "QueryBest"

    with pytest.raises(ktune.NotFound) as e:
        client.get_job("999")
    assert e.value.code is grpc.StatusCode.NOT_FOUND and e.value.message == "no job 999"

    with pytest.raises(ktune.InvalidArgument, match="is not a job id"):
        client.cancel("not-a-number")

    # An unknown kernel in a job: NOT_FOUND, with ktune's message naming the known kernels.
    with pytest.raises(ktune.KtuneError) as e:
        client.submit(JobSpec(kernels=["no_such_kernel"], problems=[{"M": 1}],
                              device_classes=["cpu:nowhere"], budget=4))
    assert isinstance(e.value, ktune.NotFound)
    assert "unknown kernel 'no_such_kernel'" in e.value.message and "gemm" in e.value.message

    with pytest.raises(ktune.InvalidArgument, match="not valid YAML or JSON"):
        client.submit("name: [")

    # Stream errors surface when iterated, as the same exceptions.
    with pytest.raises(ktune.NotFound, match="no job 12345"):
        next(client.watch("12345"))


def test_unreachable_server_is_unavailable(tmp_path):
    with ktune.Client("127.0.0.1:1", timeout=5) as client:  # nothing listens on port 1
        with pytest.raises(ktune.Unavailable) as e:
            client.best("gemm", {"M": 1}, "cpu:x")
        assert e.value.code is grpc.StatusCode.UNAVAILABLE


def test_token_and_roles(ktune_bin, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("query-token-0123456789 query\nadmin-token-0123456789 query,submit,admin\n")
    server = Server(tmp_path, "--auth", str(tokens))
    try:
        with pytest.raises(ktune.Unauthenticated, match="authorization"):
            server.client(token="").best("gemm", {"M": 1}, "cpu:x")
        with pytest.raises(ktune.Unauthenticated, match="unknown token"):
            server.client(token="wrong-token-0123456789").best("gemm", {"M": 1}, "cpu:x")
        query = server.client(token="query-token-0123456789")
        assert query.best("gemm", {"M": 64, "N": 64, "K": 64}, "cpu:x").level is MatchLevel.NONE
        with pytest.raises(ktune.PermissionDenied, match="submit role"):
            query.submit(JobSpec(kernels=["gemm"], problems=[{"M": 64, "N": 64, "K": 64}],
                                 device_classes=["cpu:x"], budget=4))
        admin = server.client(token="admin-token-0123456789")
        job = admin.submit(JobSpec(kernels=["gemm"], problems=[{"M": 64, "N": 64, "K": 64}],
                                   device_classes=["cpu:nowhere"], budget=4))
        assert admin.cancel(job.job_id).state is JobState.CANCELLED
    finally:
        server.stop()


# --- records ---


def test_import_export_roundtrip(records_server, empty_server):
    source = list(records_server.client().export_records())
    target = empty_server.client()
    assert list(target.export_records()) == []

    result = target.import_records(source)
    assert (result.records_received, result.records_added) == (4092, 4092)
    again = target.import_records(source)
    assert (again.records_received, again.records_added) == (4092, 0)  # already present

    copied = list(target.export_records())
    assert sorted(r.record_id for r in copied) == sorted(r.record_id for r in source)
    by_id = {r.record_id: r for r in source}
    for r in copied:
        assert r == by_id[r.record_id]  # every field, fingerprint and repeats included

    task = copied[0].task
    assert len(list(target.export_records(task))) == 4092  # the one task, by TaskKey
    # An import is a stream: the client's default unary deadline does not end it (30 s ended
    # imports of a few hundred thousand records).
    hurried = ktune.Client(empty_server.address, timeout=0.001)
    assert hurried.import_records(source).records_received == 4092
    assert target.best("pnpoly", {}, PNPOLY_CLASS, top=5) == records_server.client().best(
        "pnpoly", {}, PNPOLY_CLASS, top=5)

    # A record the server refuses stores nothing: the stream is one transaction.
    fresh = dataclasses.replace(source[0], config={"block_size_x": 99999}, record_id="")
    bad = dataclasses.replace(source[1], time_ms=None, record_id="")  # ok without a time
    with pytest.raises(ktune.InvalidArgument, match="time_ms must be set"):
        target.import_records([fresh, bad])
    # A record the client cannot even encode raises its own error, and nothing is stored.
    with pytest.raises(TypeError, match="int, float or str"):
        target.import_records([fresh, dataclasses.replace(fresh, config={"x": object()})])
    assert len(list(target.export_records())) == 4092


def test_client_mistakes_raise_clear_errors(empty_server):
    # A token read from a file keeps its newline: gRPC refused it on every call (INTERNAL,
    # "Invalid metadata"); it is stripped, and a token that cannot be a header is refused at once.
    with ktune.Client(empty_server.address, token="secret\n") as client:
        assert client.best("gemm", "M=64,N=64,K=64", "cpu:x").level is MatchLevel.NONE
    with pytest.raises(ValueError, match="token: printable ASCII"):
        ktune.Client(empty_server.address, token="se\ncret")
    client = empty_server.client()
    with pytest.raises(TypeError, match="kernel must be a kernel name"):
        client.tune(None, {}, "cpu:x", 4)
    client.close()  # then a KtuneError, not gRPC's bare ValueError
    with pytest.raises(ktune.FailedPrecondition, match="this client was closed"):
        client.best("gemm", "M=64,N=64,K=64", "cpu:x")
    with pytest.raises(ktune.FailedPrecondition, match="this client was closed"):
        list(client.export_records())


def test_a_builtin_kernels_records_are_stored_as_its_tasks(empty_server):
    """A record of a built-in kernel imported without dtype is found by best() (it was stored
    under a problem no question reaches); one outside the kernel's space is refused."""
    client = empty_server.client()
    device = ktune.Device("cpu:import-test", "x86-64-v3", '{"cores": 2, "name": "import-test"}')
    # gemm's default configuration for M=N=K=64 on 2 cores, as `ktune tune` measures it.
    config = {"KC": 256, "MC": 144, "MR": 6, "NC": 3072, "NR": 16, "pack_a": 1, "pack_b": 1,
              "parallel_loop": 0, "threads": 2, "unroll": 4}
    problem = {"M": 64, "N": 64, "K": 64}
    record = ktune.Record(task=ktune.Task("gemm", problem, device.device_class), device=device,
                          config=config, status=Status.OK, time_ms=0.5, repeat_times_ms=(0.5,),
                          source="my-compiler")
    with pytest.raises(ktune.InvalidArgument, match=r"record 2: .*'MR' has value 999"):
        client.import_records([record, dataclasses.replace(record, config={**config, "MR": 999})])
    assert client.import_records([record]).records_added == 1
    answer = client.best("gemm", problem, device)
    assert answer.level is MatchLevel.EXACT and answer.config == config
    assert answer.best.task.problem == {**problem, "dtype": "f32"}


def test_a_client_kernels_records_keep_their_payload(empty_server):
    """Records of a kernel no registry knows, written by a client (no worker; its own source),
    with an opaque payload: stored, queried and exported verbatim; too large a one is refused."""
    client = empty_server.client()
    device = ktune.Device.make("my-compiler:x86", "my-compiler", target="x86-64", host="vm")
    payload = '{"schedule": ["tile", 32], "note": "é\n"}' + "x" * 100_000

    def record(config, ms, payload):
        return ktune.Record(task=ktune.Task("mc_matmul_1", {}, device.device_class), device=device,
                            config=config, status=Status.OK, time_ms=ms, repeat_times_ms=(ms,),
                            source="my-compiler", payload=payload)

    records = [record({"schedule": "a1"}, 2.0, payload), record({"schedule": "b2"}, 1.0, "[1]"),
               record({"schedule": "b2"}, 1.0, "[2]")]  # the same config, another payload
    assert client.import_records(records).records_added == 3
    best = client.best("mc_matmul_1", {}, device, top=5)
    assert best.level is MatchLevel.EXACT
    assert [r.config["schedule"] for r in best.records] == ["b2", "a1"]  # one per config
    # Problems match exactly, as stored: a whole float (a size computed with /) is not the int,
    # and the question says so rather than miss without a word.
    sized = dataclasses.replace(records[1], task=ktune.Task("mc_matmul_1", {"M": 64},
                                                            device.device_class), record_id="")
    assert client.import_records([sized]).records_added == 1
    assert client.best("mc_matmul_1", {"M": 64}, device).level is MatchLevel.EXACT
    for problem in ({"M": 64.0}, "M=64.0"):
        with pytest.warns(RuntimeWarning, match="M=64.0 is a float; .*; pass 64"):
            assert client.best("mc_matmul_1", problem, device).level is not MatchLevel.EXACT
    assert best.records[0].payload in ("[1]", "[2]") and best.records[1].payload == payload
    exported = {r.payload: r for r in client.export_records()}
    assert sorted(exported) == sorted(r.payload for r in records)
    assert exported[payload].worker_id == "" and exported[payload].source == "my-compiler"
    assert client.import_records(list(exported.values())).records_added == 0
    with pytest.raises(ktune.InvalidArgument,
                       match=r"record 1: record.payload is 1048577 bytes; at most 1048576"):
        client.import_records([record({"schedule": "c3"}, 3.0, "y" * (1 << 20 | 1))])
    assert len(list(client.export_records())) == 4


def test_best_and_explain_honour_an_accuracy_budget(empty_server):
    """Records with measured errors: ``best(max_rel_error=...)`` serves the fastest within the
    budget, a too_inaccurate record is never served, and ``explain`` says what the budget costs."""
    client = empty_server.client()
    device = ktune.Device.make("cpu:budget-test", "budget-test")

    def record(precision, ms, error, status=Status.OK):
        return ktune.Record(task=ktune.Task("lowp_client", {"n": 64}, device.device_class),
                            device=device, config={"precision": precision}, status=status,
                            time_ms=ms if status is Status.OK else None, repeat_times_ms=(ms,),
                            median_ms=ms, source="test", max_rel_error=error)

    records = [record(32, 9.0, 2e-7), record(16, 6.0, 4e-4), record(8, 3.0, 8e-3),
               record(4, 1.0, 9e-2, Status.TOO_INACCURATE)]
    assert client.import_records(records).records_added == 4
    best = client.best("lowp_client", {"n": 64}, device)
    assert best.records[0].config["precision"] == 8  # no budget: the fastest ok one
    within = client.best("lowp_client", {"n": 64}, device, max_rel_error=1e-3)
    assert within.records[0].config["precision"] == 16
    assert within.records[0].max_rel_error == pytest.approx(4e-4)
    assert client.best("lowp_client", {"n": 64}, device, max_rel_error=1e-9).records == []
    explained = client.explain("lowp_client", {"n": 64}, device, max_rel_error=1e-3)
    assert explained["precision"]["served_error"] == pytest.approx(4e-4)
    # the fastest measured is precision 4, too inaccurate for its job and for this budget
    assert explained["precision"]["fastest_outside_budget"]["config"]["precision"] == 4
    assert explained["precision"]["too_inaccurate_records"] == 1
    with pytest.raises(ktune.InvalidArgument, match="max_rel_error"):
        client.best("lowp_client", {"n": 64}, device, max_rel_error=-1.0)
    # The trade-off behind those answers, as `ktune best --pareto` shows it, field for field.
    trade_offs = client.pareto("lowp_client", {"n": 64}, device)
    assert [(t.config["precision"], t.on_front, t.served) for t in trade_offs] == [
        (4, False, False), (8, True, True), (16, True, True), (32, True, True)]
    assert trade_offs[1].max_rel_error == pytest.approx(8e-3) and trade_offs[1].measurements == 1
    printed = json.loads(ktune_cli("best", "--server", client.address, "--kernel", "lowp_client",
                                   "--problem", "n=64", "--device", device.device_class,
                                   "--pareto", "--json").stdout)
    as_printed = {"front": [], "dominated": [], "not_served": []}
    for t in trade_offs:
        part = "not_served" if not t.served else "front" if t.on_front else "dominated"
        as_printed[part].append({"config": t.config, "time_ms": t.time_ms,
                                 "max_rel_error": t.max_rel_error,
                                 "measurements": t.measurements, "served": t.served})
    assert {k: printed[k] for k in as_printed} == as_printed
    assert client.pareto("lowp_client", {"n": 65}, device) == []


# --- tuning and jobs (replay worker) ---


def test_a_cancelled_import_stores_nothing(records_server, empty_server):
    record = next(iter(records_server.client().export_records()))
    message = ktune.v1.types_pb2.Record()
    record._to_proto(message)

    def stream():
        yield message
        raise RuntimeError("the client gives up midway")  # gRPC cancels the call

    client = empty_server.client()
    with pytest.raises(grpc.RpcError):
        client._tuning.ImportRecords(stream(), timeout=30)
    time.sleep(0.5)
    assert list(client.export_records()) == []


def test_tune_reports_progress_and_commits(replay_server):
    client = replay_server.client()
    events = []
    final = client.tune("pnpoly", {}, PNPOLY_CLASS, 24, strategy="random", seed=7,
                        on_progress=events.append, timeout=120)
    assert final.finished and events[-1] is final
    assert all(not e.finished for e in events[:-1])
    assert final.measurements_done == 24 and final.budget_measurements == 24
    assert final.best_time_ms > 0 and final.best_config
    done = [e.measurements_done for e in events]
    assert done == sorted(done)

    # What the job measured is committed: best() now answers from it.
    answer = client.best("pnpoly", {}, PNPOLY_CLASS)
    assert answer.level in (MatchLevel.EXACT, MatchLevel.DEVICE_CLASS)
    assert answer.best.time_ms <= final.best_time_ms
    assert final.state is JobState.DONE and final.message == ""


def test_a_tuning_cancelled_by_someone_else_raises_cancelled(replay_server):
    # No worker measures RTX_Titan: the job waits until an operator cancels it. tune() raised
    # nothing and returned a final event like a finished tuning's.
    client = replay_server.client()

    def cancel_it(event):
        if event.job_id:
            ktune.Client(replay_server.address).cancel(event.job_id)

    with pytest.raises(ktune.Cancelled, match=r"job \d+ cancelled after 0 of 16 measurements") \
            as raised, pytest.warns(RuntimeWarning, match="RTX_Titan"):
        client.tune("pnpoly", {}, "RTX_Titan", 16, strategy="random", seed=5,
                    on_progress=cancel_it, timeout=60)
    assert raised.value.event.finished and raised.value.event.state is JobState.CANCELLED
    assert client.get_job(raised.value.event.job_id).state is JobState.CANCELLED


def test_a_tuning_whose_caller_gives_up_is_cancelled(replay_server):
    # No worker measures RTX_Titan: the tuning waits. A caller that gives up (its timeout) gets
    # DeadlineExceeded, and the server cancels the job (it stayed queued for ever, its id unknown).
    client = replay_server.client()
    events = []
    with pytest.raises(ktune.DeadlineExceeded), pytest.warns(RuntimeWarning, match="RTX_Titan"):
        client.tune("pnpoly", {}, "RTX_Titan", 16, strategy="random", seed=5,
                    on_progress=events.append, timeout=3)
    assert events and events[0].job_id  # every event names its job
    job_id = events[0].job_id
    deadline = time.monotonic() + 30
    while client.get_job(job_id).state is not JobState.CANCELLED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_job(job_id).state is JobState.CANCELLED


def test_submit_watch_jobs(replay_server):
    client = replay_server.client()
    spec = JobSpec(name="py-watch", kernels=["pnpoly"], problems=[{}],
                   device_classes=[PNPOLY_CLASS], budget=40, strategy="random", seed=3)
    job = client.submit(spec)
    assert job.state in (JobState.QUEUED, JobState.RUNNING) and job.name == "py-watch"
    assert job.measurements_total == 40 and len(job.tasks) == 1
    assert job.tasks[0].task.device_class == PNPOLY_CLASS

    events = list(client.watch(job.job_id, with_tasks=True, timeout=120))
    assert events, "WatchJob sent nothing"
    last = events[-1].job
    assert last.state is JobState.DONE and last.state.final
    assert last.measurements_done == 40
    assert all(not e.job.state.final for e in events[:-1])
    assert last.tasks[0].measurements_done == 40 and last.tasks[0].best_time_ms > 0

    assert job.job_id in {j.job_id for j in client.jobs()}
    assert job.job_id in {j.job_id for j in client.jobs(states=[JobState.DONE])}
    assert job.job_id not in {j.job_id for j in client.jobs(states=[JobState.QUEUED])}
    # States by name, as `ktune jobs` prints them ('str' object has no attribute '_to_proto').
    assert job.job_id in {j.job_id for j in client.jobs(states=["done"])}
    with pytest.raises(ValueError, match="unknown job state 'finished'; one of queued"):
        client.jobs(states=["finished"])
    with pytest.raises(ktune.FailedPrecondition):  # it has ended
        client.cancel(job.job_id)
    assert client.wait(job.job_id, timeout=60).state is JobState.DONE


def test_the_largest_job_is_readable_by_a_default_client(empty_server):
    """A 65,536-task job (the most a spec may give): its reply lists no tasks, so that a client
    with gRPC's default 4 MiB receive limit reads it (the listing is 5.9 MB: the job was made and
    the call failed, and a retry made it twice); task_count says how many there are."""
    client = empty_server.client()
    spec = {"name": "largest", "kernels": ["gemm"], "budget": 4,
            "problems": [{"M": 16 * i, "N": 64, "K": 64} for i in range(1, 1025)],
            "device_classes": [f"cpu:c{i}" for i in range(64)]}
    job = client.submit(spec, timeout=120)
    assert job.task_count == 65536 and job.tasks == []
    # get_job reads the tasks in pages that each fit, and lists them all, in the job's order.
    whole = client.get_job(job.job_id, timeout=120)
    assert len(whole.tasks) == 65536
    assert [t.task.problem["M"] for t in whole.tasks[:2]] == [16, 16]
    assert len({(t.task.problem["M"], t.task.device_class) for t in whole.tasks}) == 65536
    assert client.cancel(job.job_id, timeout=120).task_count == 65536
    assert [j.job_id for j in client.jobs()] == [job.job_id]  # made once


def test_cancel_pause_resume(replay_server):
    client = replay_server.client()
    # No worker measures RTX_Titan: the job stays queued until cancelled.
    job = client.submit({"name": "py-cancel", "kernels": ["pnpoly"], "problems": [{}],
                         "device_classes": ["RTX_Titan"], "budget": 16})
    assert job.state is JobState.QUEUED
    assert client.pause(job.job_id).state is JobState.PAUSED
    # ktune resumes a job paused while queued as running (nothing measures it here either).
    assert client.resume(job.job_id).state in (JobState.QUEUED, JobState.RUNNING)
    cancelled = client.cancel(job.job_id)
    assert cancelled.state is JobState.CANCELLED
    events = list(client.watch(job.job_id, timeout=60))
    assert events[-1].job.state is JobState.CANCELLED
    assert client.get_job(job.job_id).measurements_done == 0


def test_cancelling_twice_changes_nothing(replay_server):
    client = replay_server.client()
    job = client.submit({"name": "py-cancel-twice", "kernels": ["pnpoly"], "problems": [{}],
                         "device_classes": ["RTX_Titan"], "budget": 16})
    assert client.cancel(job.job_id).state is JobState.CANCELLED
    assert client.cancel(job.job_id).state is JobState.CANCELLED


def test_kernels_and_workers(replay_server):
    client = replay_server.client()
    assert client.ping()
    kernels = {k.name: k for k in client.kernels()}
    assert {"gemm", "conv2d", "softmax"} <= set(kernels)
    gemm = kernels["gemm"]
    assert gemm.language == "cpp" and gemm.parameters and gemm.version
    workers = client.workers()
    assert [w.device.device_class for w in workers] == [PNPOLY_CLASS]
    assert workers[0].state in ("idle", "measuring")


def test_mutual_tls(ktune_bin, tmp_path):
    """TLS as the CLI's --tls-ca/--tls-cert/--tls-key: a CA, a server certificate for
    127.0.0.1 and a client certificate, made with openssl."""
    script = """set -e
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \\
  -days 2 -extfile san.ext
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=client
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
"""
    made = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    server = Server(tmp_path, "--tls-cert", str(tmp_path / "server.pem"), "--tls-key",
                    str(tmp_path / "server.key"), "--tls-client-ca", str(tmp_path / "ca.pem"))
    try:
        with server.client(tls=True, root_certificates=tmp_path / "ca.pem",
                           certificate_chain=tmp_path / "client.pem",
                           private_key=tmp_path / "client.key", timeout=10) as client:
            assert client.ping() and client.jobs() == []
        with server.client(tls=True, root_certificates=tmp_path / "ca.pem", timeout=10) as anon:
            with pytest.raises(ktune.Unavailable):  # no client certificate: the handshake fails
                anon.jobs()
        with server.client(timeout=10) as plain:
            with pytest.raises(ktune.Unavailable):
                plain.jobs()
        # The Kernel Tuner exporter takes the same flags (it could not reach a TLS server): it
        # connects and finds nothing to export (exit 1), and a certificate without its key is a
        # usage error (exit 2).
        export = [sys.executable, "-P", "-m", "ktune.kernel_tuner", "export", "--server",
                  server.address, "--kernel", "nothing", "--device", "cpu:x",
                  "--out", str(tmp_path / "kt.json"), "--tls-ca", str(tmp_path / "ca.pem")]
        ran = subprocess.run(export + ["--tls-cert", str(tmp_path / "client.pem"), "--tls-key",
                                       str(tmp_path / "client.key")],
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 1 and "no records" in ran.stderr, ran.stderr
        ran = subprocess.run(export + ["--tls-cert", str(tmp_path / "client.pem")],
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 2 and "--tls-cert and --tls-key go together" in ran.stderr
    finally:
        server.stop()


def test_plain_dicts_take_what_a_newer_server_may_send(tmp_path):
    """plain_dict follows the CLI's rules at the edges too (proto/plain_json.h): an enum value the
    client does not know as its number, NaN as None (json.dumps wrote NaN, which is not JSON),
    times to the microsecond, truncated, and outside 1970-9999 as their fields; and a record
    made here is a line `ktune db import` takes."""
    from ktune.types import plain_dict
    from ktune.v1 import tuning_service_pb2 as ts
    reply = ts.ExplainResponse(level=9, gap=float("nan"))
    plain = plain_dict(reply)
    assert plain["level"] == 9 and plain["gap"] is None and plain["served"] is None
    flag = ts.DriftFlag()
    flag.raised_at.seconds, flag.raised_at.nanos = 1_700_000_000, 999_999_999
    assert plain_dict(flag)["raised_at"] == "2023-11-14T22:13:20.999999+00:00"
    flag.raised_at.seconds = 253_402_300_800  # past 9999: a ValueError from datetime
    assert plain_dict(flag)["raised_at"] == {"seconds": 253_402_300_800, "nanos": 999_999_999}
    made = ktune.Record(task=ktune.Task("pnpoly", {}, "RTX_3090"),
                        device=ktune.Device("RTX_3090", "ampere"), config={"tile_size": 4},
                        status=Status.OK, time_ms=1.5, repeat_times_ms=(1.5,), median_ms=1.5,
                        source="test")
    line = made.to_dict()
    assert "record_id" not in line and line["device"]["fingerprint"] == {"name": "RTX_3090"}
    (tmp_path / "made.jsonl").write_text(json.dumps(line) + "\n")
    imported = ktune_cli("db", "import", str(tmp_path / "made.jsonl"), "--db",
                         str(tmp_path / "made.db"), "--json")
    assert json.loads(imported.stdout)["records_added"] == 1


def test_explain_says_why_the_best_is_served(records_server):
    client = records_server.client()
    explained = client.explain("pnpoly", {}, PNPOLY_CLASS)
    best = client.best("pnpoly", {}, PNPOLY_CLASS)
    assert explained["level"] == "device_class" == best.level.value
    assert explained["served"] == best.best.to_dict()
    assert explained["records"] == 4092
    assert explained["runner_up"]["time_ms"] >= best.best.time_ms
    names = [p["name"] for p in explained["parameters"]]
    assert sorted(names) == ["between_method", "block_size_x", "tile_size", "use_method"]
    spreads = [p["spread"] for p in explained["parameters"]]
    assert spreads == sorted(spreads, reverse=True)  # the largest effect first
    # One JSON style: the dict is what `ktune explain --json` prints, key for key.
    printed = ktune_cli("explain", "--server", client.address, "--kernel", "pnpoly", "--device",
                        PNPOLY_CLASS, "--json")
    assert json.loads(printed.stdout) == explained
    with pytest.raises(ktune.InvalidArgument, match="kernel.name is required"):
        client.explain("", {}, PNPOLY_CLASS)


def test_telemetry_is_validated_and_flags_drift(records_server):
    client = records_server.client()
    sample = {"kernel": "pnpoly", "device": PNPOLY_CLASS, "config": {"tile_size": 1},
              "count": 1000, "mean_ms": 1.0, "stddev_ms": 0.01}
    with pytest.raises(ktune.InvalidArgument, match=r"samples\[1\]: .*mean_ms is -1"):
        client.report_telemetry([sample, dict(sample, mean_ms=-1.0)])
    assert client.drift() == []  # the refused call stored and flagged nothing
    # A device fingerprint no record of this tuned task was measured on.
    other = ktune.Device.make(PNPOLY_CLASS, "turing", name=PNPOLY_NAME, driver="999.1")
    timed = {"kernel": "pnpoly", "device": other, "config": {"tile_size": 1},
             "times_ms": [1.0, 1.1, 0.9]}
    reply = client.report_telemetry([timed])
    assert reply["accepted"] == 1
    # A numpy array of times reads as a list does (the emptiness check raised on it).
    import numpy  # pinned in python/requirements.txt
    assert client.report_telemetry(
        [dict(timed, device=PNPOLY_CLASS, times_ms=numpy.array([1.0, 1.1, 0.9]))])["accepted"] == 1
    assert [f["kind"] for f in reply["raised"]] == ["new_environment"]
    assert [f["id"] for f in client.drift()] == [reply["raised"][0]["id"]]
    assert reply["raised"][0]["task"]["problem"] == {}  # a plain dict, as `ktune drift --json`'s
    printed = ktune_cli("drift", "--server", client.address, "--json")
    assert json.loads(printed.stdout)["flags"] == client.drift()
    # The suggested command runs as given: this client's address, not "ADDR".
    flag_id = reply["raised"][0]["id"]
    for action in (reply["raised"][0]["action"], client.drift()[0]["action"]):
        assert f"ktune drift retune {flag_id} --server {client.address}" in action, action
    assert reply["duplicates"] == 0 and reply["late"] == 0
    # The go-ahead: this server knows pnpoly from records only (it replays no space of it), so
    # no job could tune it (said); an unknown flag is NotFound.
    with pytest.raises(ktune.FailedPrecondition, match="cannot retune: pnpoly is known here from"):
        client.retune_drift_flag(flag_id)
    with pytest.raises(ktune.NotFound, match="no drift flag 99"):
        client.retune_drift_flag(99)
    with pytest.raises(TypeError):
        client.retune_drift_flag("1")


def test_telemetry_takes_the_lines_of_ktune_telemetry_report(records_server, tmp_path):
    """The dicts of docs/telemetry.md's JSONL lines, as json.loads gives them: the window is kept
    (it was dropped: stored as the time received) and the device may be {"class", "fingerprint"}
    (it raised TypeError); a missing key names the sample and the key (a bare KeyError)."""
    client = records_server.client()
    windowed = {"kernel": "pnpoly", "device": {"class": PNPOLY_CLASS,
                                               "fingerprint": {"name": PNPOLY_NAME}},
                "config": {"tile_size": 1}, "count": 10, "mean_ms": 1.0, "stddev_ms": 0.01,
                "window_start": "2026-12-03T08:00:00+00:00",
                "window_end": "2026-12-03T08:05:00Z"}
    assert client.report_telemetry([windowed])["accepted"] == 1
    with sqlite3.connect(f"file:{records_server.db}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT window_start_us, window_end_us FROM telemetry").fetchall()
    start = int(datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc).timestamp()) * 1_000_000
    assert (start, start + 300_000_000) in rows  # the session's server holds others' too
    for bad, message in (({k: v for k, v in windowed.items() if k != "count"},
                          "sample 1: times_ms: give exactly one of"),
                         ({k: v for k, v in windowed.items() if k != "kernel"},
                          "sample 1: kernel: missing"),
                         (dict(windowed, count=5, mean_ms=None), "sample 1: mean_ms: a number, not None"),
                         (dict(windowed, window_end="yesterday"), "sample 1: window_end: not ISO"),
                         (dict(windowed, window_end="2026-12-03T08:05:00"),
                          "sample 1: window_end: no time zone"),
                         # Values the CLI refuses were stored: True as 1.0 ms, 2.5 calls as 2,
                         # text as numbers; a misspelt key was ignored (stddev stored as 0).
                         (dict(windowed, count=2.5), "sample 1: count: a whole number, not 2.5"),
                         (dict(windowed, count="3"), "sample 1: count: a whole number, not '3'"),
                         (dict(windowed, mean_ms=True), "sample 1: mean_ms: a number, not True"),
                         ({**{k: v for k, v in windowed.items() if k not in ("count", "mean_ms")},
                           "times_ms": ["0.02"]}, "sample 1: times_ms: a number, not '0.02'"),
                         ({**{k: v for k, v in windowed.items() if k not in ("count", "mean_ms")},
                           "times_ms": []}, "sample 1: times_ms: a non-empty list"),
                         (dict(windowed, stdev_ms=0.5), "sample 1: stdev_ms: unknown key"),
                         (dict(windowed, kernel="pn\udc80poly"),
                          "sample 1: text that is not valid Unicode")):
        with pytest.raises(ValueError, match=message):
            client.report_telemetry([windowed, bad])


def test_arguments_of_the_wrong_type_say_which(empty_server):
    # protobuf's "bad argument type for built-in operation" and "'NoneType' object has no
    # attribute '_to_proto'" named neither the argument nor what it takes.
    client = empty_server.client()
    with pytest.raises(TypeError, match="kernel must be a kernel name"):
        client.best(None, {}, "cpu:x")
    # A kernel spec's field of the wrong type is named (protobuf said "'str' object cannot be
    # interpreted as an integer"), before anything is sent.
    with pytest.raises(TypeError, match=r"spec: .*compile_time"):
        client.register_kernel({"name": "k", "language": "cpp",
                                "parameters": [{"name": "u", "values": [1, 2],
                                                "compile_time": "maybe"}]})
    with pytest.raises(TypeError, match="spec must be a KernelSpec or a dict, not list"):
        client.register_kernel(["k"])
    with pytest.raises(TypeError, match="device must be a device class"):
        client.best("gemm", {}, None)
    # A stream's arguments are checked at the call, not at the first event (the generator
    # returned without a word, and the error came later, wherever the events were read).
    with pytest.raises(ValueError, match="bogus"):
        client.tune_events("gemm", {}, "cpu:x", 4, strategy="bogus")
    # tune takes a Device as best does (its class: a job runs on a class's workers); protobuf's
    # "bad argument type for built-in operation" came instead.
    # Checked at the call (not iterated); no worker serves cpu:x, which the call says (a tune
    # for it waited without a word).
    with pytest.warns(RuntimeWarning, match="no worker of device class 'cpu:x' is connected"):
        client.tune_events("gemm", {}, ktune.Device("cpu:x"), 4)
    with pytest.raises(TypeError, match="device must be a device class"):
        client.tune_events("gemm", {}, 7, 4)
    for top in (0, 101, 2**40, 1.5):
        with pytest.raises(ValueError, match="top must be an int from 1 to 100"):
            client.best("gemm", {}, "cpu:x", top=top)
    with pytest.raises(ValueError, match="NaN or infinity"):
        client.submit({"kernels": ["gemm"], "problems": [{"M": 64, "N": 64, "K": 64}],
                       "device_classes": ["cpu:x"], "budget": 4, "max_rel_error": float("nan")})
    # Found by a user trial: each raised another type's error, or blamed the wrong thing.
    with pytest.raises(TypeError, match="spec must be a ktune.JobSpec, a dict or YAML/JSON "
                                        "text, not list"):
        client.submit(["gemm"])  # it said the spec held a NaN
    with pytest.raises(TypeError, match=r"kernels must be a list, not a str \(kernels=\['gemm'\]"):
        ktune.JobSpec(kernels="gemm", problems=[{}], device_classes=["cpu:x"], budget=4)
    with pytest.raises(TypeError, match="device_classes must be a list, not a str"):
        ktune.JobSpec(kernels=["gemm"], problems=[{}], device_classes="cpu:x", budget=4)
    with pytest.raises(TypeError, match=r"records\[0\] must be a ktune.Record, not dict"):
        client.import_records([{"kernel": "gemm"}])
    with pytest.raises(TypeError, match="task must be a ktune.Task, not str"):
        list(client.export_records("gemm"))
    with pytest.raises(TypeError, match="address must be 'host:port' \\(str\\), not NoneType"):
        ktune.Client(None)
    with pytest.raises(TypeError, match="max_rel_error must be a number, not str"):
        client.best("gemm", {}, "cpu:x", max_rel_error="0.1")
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not str"):
        client.best("gemm", {}, "cpu:x", timeout="3")
    with pytest.raises(ValueError, match="fingerprint_json must be a JSON object"):
        client.best("gemm", {}, ktune.Device("cpu:x", "", "not json"))  # it was ignored


def test_numpy_numbers_are_taken_where_python_numbers_are(empty_server):
    # A user trial: best(top=np.int64(3)) said "must be an int from 1 to 100, not 3", and a job
    # spec dict with numpy integers failed in json.dumps (a ktune.JobSpec took them).
    import numpy  # pinned in python/requirements.txt
    client = empty_server.client()
    answer = client.best("gemm", {"M": 64, "N": 64, "K": 64}, "cpu:x", top=numpy.int64(3))
    assert answer.level is ktune.MatchLevel.NONE
    job = client.submit({"kernels": ["gemm"],
                         "problems": [{"M": numpy.int64(64), "N": numpy.int32(64), "K": 64}],
                         "device_classes": ["cpu:x"], "budget": numpy.int64(4)})
    assert job.tasks[0].task.problem["M"] == 64
    assert job.measurements_total == 4
    client.cancel(job.job_id)


def test_tune_if_missing_says_why_no_job_was_queued(empty_server):
    """No worker of the class is connected: the answer stands, and says why nothing was queued
    (a job was queued that waited for ever, one per shape a compiler asked about)."""
    client = empty_server.client()
    answer = client.best("gemm", {"M": 64, "N": 64, "K": 64}, "cpu:nobody", tune_if_missing=True)
    assert answer.level is MatchLevel.NONE
    assert answer.queued_job_id == ""
    assert "no worker of device class cpu:nobody is connected" in answer.not_queued
