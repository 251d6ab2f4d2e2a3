"""Kernel Tuner on ktune: ktune's agent proposes, Kernel Tuner measures, ktune records.

    import ktune
    from ktune.kernel_tuner import Strategy
    from kernel_tuner import tune_kernel

    client = ktune.Client("127.0.0.1:7470", token=...)   # roles: admin, submit, worker, query
    strategy = Strategy(client)                           # ktune's agent proposes
    results, env = tune_kernel("vector_add", source, n, args, tune_params, lang="C",
                               strategy=strategy, strategy_options={"max_fevals": 32})
    print(strategy.task, strategy.job_ids)                # where the records are in ktune

How it works (Kernel Tuner 1.5 accepts any object with a ``tune`` method as ``strategy=``;
:class:`Strategy` is an ``OptAlgWrapper`` around an ``OptAlg``):

1. The kernel's search space (``tune_params`` and string ``restrictions``) is registered with
   ``TuningService.RegisterKernel`` as a client kernel (language ``cpp``; ktune never compiles
   it: only this process measures it). Its name is ``kt_<kernel_name>_<hash>`` (the hash covers
   the source, the space and the restrictions, those given as functions by their source; pass
   ``kernel=`` to choose another).
2. This process registers itself as a measurement worker (``WorkerService.Register``) with a
   device fingerprint of the Kernel Tuner device (device class ``kernel_tuner:<lang>:<model>``,
   the compiler, Kernel Tuner's version and options), and submits a job for the task.
3. It loops: ``LeaseBatch`` (the agent's proposals) -> Kernel Tuner compiles, checks and times
   them (its own cost function: its budget, cache, verification and observers all apply) ->
   ``ReportResults`` (every result, failures included, committed in ktune under the device).
   It stops when Kernel Tuner's budget (``max_fevals``, ``time_limit``) is spent or ktune has
   nothing more to propose; the job is cancelled if it has not ended, and the worker leaves.

Limits: ktune's parameters are integers, so float and string parameters are sent as indices
into their value lists (and restrictions naming them are left to Kernel Tuner: a proposal they
rule out is recorded as ``invalid_config``, as are proposals ruled out by restrictions given as
functions). ktune minimises time: it is told the measured times (``result["times"]``, else
``result["time"]``) whatever Kernel Tuner's objective is, and records their median; an
objective other than time is warned about (it picks only Kernel Tuner's own best). The strategy
option ``x0`` (a starting configuration: values in ``tune_params`` order, or a dict by name) is
measured first, unless ktune's records hold it (``JobSpec.initial_configs``). Other strategy
options than the budget (``max_fevals``, ``time_limit``) are warned about and ignored: ktune's
choices are :class:`Strategy`'s arguments. ``metrics`` are Kernel Tuner's: computed on
its results, not stored in ktune.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import numbers
import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any, Optional, Sequence

import grpc

from ktune.client import Client
from ktune.errors import FailedPrecondition, InvalidArgument, KtuneError, NotFound, Unavailable
from ktune.types import (Device, Job, JobSpec, JobState, ParamMap, Record, Status, Task,
                         canonical_json, strategy_to_proto)
from ktune.v1 import types_pb2 as tp
from ktune.v1 import worker_service_pb2 as wp

try:
    import kernel_tuner
    from kernel_tuner import util as kt_util
    from kernel_tuner.strategies.wrapper import OptAlg, OptAlgWrapper
except ImportError as e:  # pragma: no cover - documented requirement
    raise ImportError("ktune.kernel_tuner needs Kernel Tuner 1.5 (pip install kernel_tuner==1.5.0)"
                      ) from e

_MAX_VALUES = 4096  # per parameter, the API's limit
# The strategy options that Kernel Tuner itself applies whatever the strategy (its budget, and how
# it builds the search space); ktune's agent takes no other.
_KERNEL_TUNER_BUDGET_OPTIONS = ("max_fevals", "time_limit", "searchspace_construction_options")
# The strategy options ktune takes besides the budget: a starting configuration.
_KERNEL_TUNER_TAKEN_OPTIONS = _KERNEL_TUNER_BUDGET_OPTIONS + ("x0",)
_PROBLEM_MAX = 2**62


def _kt_version() -> str:
    try:
        from importlib.metadata import version
        return version("kernel_tuner")
    except Exception:  # pragma: no cover
        return getattr(kernel_tuner, "__version__", "?")


def _cpu_model_and_family() -> tuple[str, str]:
    """/proc/cpuinfo's model name, and ktune's family for it (x86-64, -v3, -v4)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(),
                                                             platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    family = ("x86-64-v4" if "avx512f" in flags else
              "x86-64-v3" if {"avx2", "fma"} <= flags else
              "x86-64" if flags else platform.machine())
    return model, family


def _compiler_version(compiler: Optional[str]) -> str:
    if not compiler:
        return ""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip() if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _sanitize(name: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return s[:40] or "kernel"


def _is_int(v: Any) -> bool:
    """Integers (numpy's too; bools as 0 and 1) go to ktune as they are."""
    return isinstance(v, numbers.Integral)


class _Param:
    """One tunable parameter: its Kernel Tuner values and their ktune (int64) encoding."""

    def __init__(self, name: str, values: Sequence[Any]) -> None:
        self.name = name
        self.values = list(values)
        self.direct = all(_is_int(v) for v in self.values)  # else: indices into values
        self.encoded = [int(v) if self.direct else i for i, v in enumerate(self.values)]
        if len(set(self.encoded)) != len(self.encoded):
            self.direct = False
            self.encoded = list(range(len(self.values)))
        self._decode = dict(zip(self.encoded, self.values))

    def encode(self, value: Any) -> int:
        if self.direct:
            return int(value)
        for i, v in enumerate(self.values):
            if v == value and type(v) is type(value):
                return i
        return self.values.index(value)

    def decode(self, value: Any) -> Any:
        return self._decode[int(value)]


class _KtuneOptAlg(OptAlg):
    """The optimisation loop (see the module's docstring)."""

    def __init__(self, owner: "Strategy") -> None:
        super().__init__()
        self.costfunc_kwargs = {"scaling": False, "snap": False}
        self.owner = owner

    def __call__(self, func, searchspace):
        return self.owner._run(func, searchspace)


class Strategy(OptAlgWrapper):
    """A Kernel Tuner strategy whose proposals come from a ktune server's agent.

    Args:
        client: a :class:`ktune.Client`; its token needs the admin (RegisterKernel), submit
            (SubmitJob), worker (Register, LeaseBatch, ReportResults) and query roles.
        strategy: ktune's search strategy (``"ppo"``, ``"random"``, ...); None (the default):
            the server's default, ppo (model on a server built without LibTorch).
        batch_size: candidates ktune proposes at a time (and Kernel Tuner measures in a row).
        seed: the ktune job's seed (same seed, same proposals).
        kernel: ktune's name for the kernel (``[A-Za-z0-9_]``, at most 64); default
            ``kt_<kernel_name>_<hash of source, space and restrictions>``.
        problem: the problem as ktune keys it (integers; ``dtype`` a string); default
            ``problem_size_x``/``_y``/``_z`` from Kernel Tuner's ``problem_size``.
        device_class: the device class the records are kept under; default
            ``kernel_tuner:<lang>:<device name>`` (a class no ktune worker of its own has).
        flops: an expression over the problem for the kernel's floating-point operations per
            run (``"2 * problem_size_x"``), so ktune shows GFLOP/s; default none.
        agent_share: ktune's ``agent_share`` for the job (None: the server's default).
        poll_seconds: wait between leases when ktune has nothing queued yet.
        reconnect_seconds: how long to keep trying while the server is unreachable (restarting,
            a network outage), with a warning, before the run fails with
            :class:`ktune.errors.Unavailable`; 0: fail at once.

    After ``tune_kernel`` returns: :attr:`kernel_name`, :attr:`task`, :attr:`device`,
    :attr:`job_ids` and :attr:`reported` (results committed in ktune by this run).
    """

    def __init__(self, client: Client, *, strategy: Optional[str] = None, batch_size: int = 8,
                 seed: int = 0, kernel: Optional[str] = None,
                 problem: Optional[ParamMap] = None, device_class: Optional[str] = None,
                 flops: str = "", agent_share: Optional[float] = None,
                 poll_seconds: float = 0.05, reconnect_seconds: float = 120.0) -> None:
        super().__init__(_KtuneOptAlg(self))
        strategy_to_proto(strategy)  # a ValueError now, not once Kernel Tuner has set up
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
        if not 1 <= batch_size <= 256:
            raise ValueError("batch_size must be between 1 and 256")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be between 0 and 2**63 - 1, not {seed}")
        if isinstance(reconnect_seconds, bool) or not isinstance(reconnect_seconds, numbers.Real):
            raise TypeError("reconnect_seconds must be a number of seconds, not "
                            f"{type(reconnect_seconds).__name__}")
        if not 0 <= reconnect_seconds < math.inf:
            raise ValueError(f"reconnect_seconds must be >= 0 and finite, not {reconnect_seconds}")
        self.reconnect_seconds = float(reconnect_seconds)
        self.client = client
        self.strategy = strategy
        self.batch_size = batch_size
        self.seed = seed
        self.kernel = kernel
        self.problem = dict(problem) if problem is not None else None
        self.device_class = device_class
        self.flops = flops
        self.agent_share = agent_share
        self.poll_seconds = poll_seconds
        self._initial: list[ParamMap] = []  # x0, as ktune's configuration (each run's)
        # Set by a run:
        self.kernel_name: str = ""
        self.task: Optional[Task] = None
        self.device: Optional[Device] = None
        self.job_ids: list[str] = []
        self.reported = 0
        self.dropped_constraints: list[str] = []
        self._kt: dict = {}

    # --- what ktune is told ---

    def _params(self, searchspace) -> list[_Param]:
        params = [_Param(n, v) for n, v in searchspace.tune_params.items()]
        for p in params:
            if len(p.values) > _MAX_VALUES:
                raise ValueError(f"tune_params[{p.name!r}] has {len(p.values)} values; ktune takes "
                                 f"at most {_MAX_VALUES}")
            if p.name in ("cores", "dtype"):
                raise ValueError(f"a tunable parameter named {p.name!r} clashes with ktune's "
                                 "own variables")
        return params

    def _constraints(self, tuning_options, params: list[_Param], searchspace) -> list[str]:
        """Kernel Tuner's string restrictions, less those naming an index-encoded parameter, and
        the limit Kernel Tuner puts on block sizes (their product at most the device's
        max_threads)."""
        self.dropped_constraints = []  # this run's (a Strategy may run several times)
        raw = getattr(tuning_options, "restrictions_unmodified", None)  # set as an attribute
        if raw is None:
            raw = tuning_options.get("restrictions")
        if raw is None:
            raw = []
        if callable(raw) or not isinstance(raw, (list, tuple)):
            self.dropped_constraints = [_restriction_text(raw)]
            raw = []
        encoded = [p.name for p in params if not p.direct]
        out = []
        blocks = [n for n in kt_util.default_block_size_names if n in searchspace.tune_params]
        max_threads = getattr(searchspace, "max_threads", None)
        if blocks and isinstance(max_threads, numbers.Integral) and not set(blocks) & set(encoded):
            out.append(f"{' * '.join(blocks)} <= {int(max_threads)}")
        for r in raw:
            if not isinstance(r, str) or any(re.search(rf"\b{re.escape(n)}\b", r) for n in encoded):
                self.dropped_constraints.append(_restriction_text(r))
                continue
            out.append(r)
        return out

    def _problem(self, kernel_options) -> ParamMap:
        if self.problem is not None:
            return dict(self.problem)
        size = kernel_options.get("problem_size")
        if callable(size):
            raise ValueError("Kernel Tuner's problem_size is a function: pass problem= to Strategy")
        if isinstance(size, numbers.Integral) or isinstance(size, str):
            size = (size,)
        out: ParamMap = {}
        for axis, v in zip("xyz", size):
            if not isinstance(v, numbers.Integral):
                raise ValueError(f"problem_size {size!r} is not integers: pass problem= to Strategy")
            out[f"problem_size_{axis}"] = int(v)
        return out

    def _kernel_spec(self, runner, tuning_options, params: list[_Param], constraints: list[str],
                     problem: ParamMap, default: dict[str, Any]) -> tp.KernelSpec:
        source = getattr(runner, "kernel_source", None)
        text, lang, name = "", "?", "kernel"
        if source is not None:
            lang = getattr(source, "lang", "?") or "?"
            name = getattr(source, "kernel_name", name)
            try:
                text = source.get_kernel_string(0)
            except Exception:  # a generator needing params, a missing file: keep the name
                text = str(source.kernel_sources[0])[:4096] if source.kernel_sources else ""
        ints = {k: int(v) for k, v in problem.items() if isinstance(v, numbers.Integral)}
        others = {k: v for k, v in problem.items() if k not in ints}
        if set(others) - {"dtype"}:
            raise ValueError(f"ktune's problem parameters are integers (and dtype), not {others}")
        spec = tp.KernelSpec(
            language="cpp",
            description=f"Kernel Tuner kernel {name} (lang {lang}), measured by Kernel Tuner "
                        f"{_kt_version()} through ktune.kernel_tuner",
            source=text[: 1 << 20],
            constraints=constraints,
            dtypes=[str(others["dtype"])] if "dtype" in others else [],
            flops=self.flops or "0", bytes="0")
        for p in params:
            spec.parameters.add(name=p.name, values=p.encoded, compile_time=True,
                                description="" if p.direct else
                                "indices into " + json.dumps(p.values, default=str)[:200])
        for k in sorted(ints):
            spec.problem.add(name=k, min=1 if ints[k] >= 1 else -_PROBLEM_MAX, max=_PROBLEM_MAX)
        spec.buffers.add(name="out", elements="1", output=True)
        for p in params:
            spec.default_config[p.name] = str(p.encode(default[p.name]))
        # The restrictions ktune goes without are part of the name too: proposals they ruled out
        # are stored as invalid_config records of the task, which a session with other
        # restrictions (or none) would otherwise share, never measuring those configurations.
        # (Without any, the name is what it always was.)
        dropped = json.dumps(self.dropped_constraints).encode() if self.dropped_constraints else b""
        digest = hashlib.sha256(spec.SerializeToString(deterministic=True) + dropped).hexdigest()[:8]
        spec.name = self.kernel or f"kt_{_sanitize(name)}_{digest}"
        return spec

    def _device(self, runner, tuning_options) -> Device:
        source = getattr(runner, "kernel_source", None)
        lang = (getattr(source, "lang", "") or "?").upper()
        dev = runner.get_device_info() if hasattr(runner, "get_device_info") else None
        env = {}
        try:
            env = dict(runner.get_environment(tuning_options) or {})
        except Exception as e:  # a runner of another Kernel Tuner version, a backend that failed
            # Said, not swallowed: the fingerprint (and a GPU's device class) then lacks the
            # device name, compiler options and versions, and records are filed under it.
            warnings.warn(f"ktune: Kernel Tuner's runner gave no environment "
                          f"({type(e).__name__}: {e}); this device's fingerprint lacks its name, "
                          f"compiler options and versions", RuntimeWarning, stacklevel=2)
        cpu_model, cpu_family = _cpu_model_and_family()
        backend = getattr(dev, "dev", None)
        facts: dict[str, Any] = {"kind": "kernel_tuner", "lang": lang,
                                 "kernel_tuner": _kt_version(), "host_cpu": cpu_model}
        if lang in ("C", "FORTRAN"):
            name, family = cpu_model, cpu_family
            facts["compiler"] = _compiler_version(getattr(backend, "compiler", None))
            facts["compiler_options"] = str(env.get("compiler_options") or "")
        else:
            name = getattr(dev, "name", "") or str(env.get("device_name", "")) or "unknown"
            family = ""
            for key in ("cuda_version", "CUDA Version", "NVCC Version", "device_name"):
                if key in env:
                    facts[key.lower().replace(" ", "_")] = str(env[key])
        if getattr(runner, "simulation_mode", False):
            # Kernel Tuner replays a cache file: the times are the cache's, its device named as
            # the cache names it; kept apart from measurements made here.
            name = getattr(dev, "name", "") or "unknown"
            facts = {"kind": "kernel_tuner", "lang": lang, "kernel_tuner": _kt_version(),
                     "simulated_from_cache": True}
            lang, family = "simulated", ""
        facts["name"] = name
        facts["iterations"] = int(env.get("iterations", 0) or 0)
        device_class = self.device_class or f"kernel_tuner:{lang}:{name}"
        if self.device_class:
            # A device has one class in ktune (the server refuses a second): a chosen class is
            # part of the fingerprint, so the same machine under two classes is two devices.
            facts["device_class"] = self.device_class[:256]
        return Device(device_class[:256], family, canonical_json(facts))

    def export_cache(self, path: str | os.PathLike) -> int:
        """After a run: writes what ktune holds for this run's task (every run's records of the
        same kernel, problem and device class, not only this one's) as a Kernel Tuner cache file
        that ``tune_kernel(..., cache=path)`` reuses on this device (Kernel Tuner's kernel name,
        device name, problem size and parameter values). Returns the number of entries."""
        if self.task is None:
            raise ValueError("export_cache needs a finished run (tune_kernel with this strategy)")
        kt = self._kt
        ps = kt["problem_size"]
        return export_cache(self.client, self.task, path, tune_params=kt["tune_params"],
                            kernel_name=kt["kernel_name"], device_name=kt["device_name"],
                            problem_size=list(ps) if isinstance(ps, (list, tuple)) else ps,
                            decode=kt["decode"])

    # --- the loop ---

    def _run(self, func, searchspace):
        runner, options = func.runner, func.tuning_options
        objectives = options.get("objective") or ["time"]  # Kernel Tuner 1.5 keeps a list
        if isinstance(objectives, str):
            objectives = [objectives]
        if list(objectives) != ["time"]:  # it was ignored without a word
            named = " and ".join(repr(o) for o in objectives)
            warnings.warn(f"ktune's agent proposes configurations for the shortest time; Kernel "
                          f"Tuner's objective {named} only picks Kernel Tuner's best of what was "
                          f"measured (the same choice when it is a rate of a fixed amount of work, "
                          "as GFLOP/s is)", stacklevel=5)  # the caller's tune_kernel
        # Kernel Tuner's own strategies refuse options they do not take. ktune's agent takes none
        # of them (its choices are Strategy's arguments); the budget stays Kernel Tuner's. Said,
        # not refused: they were ignored without a word.
        given = dict(options.get("strategy_options") or {})
        unused = sorted(str(k) for k in given if k not in _KERNEL_TUNER_TAKEN_OPTIONS)
        if unused:
            warnings.warn("ktune's agent takes no Kernel Tuner strategy options but the budget "
                          f"(max_fevals, time_limit) and x0; ignored: {', '.join(unused)} "
                          "(ktune's own choices are Strategy's arguments: strategy, batch_size, "
                          "seed, ...)", stacklevel=5)  # the caller's tune_kernel
        params = self._params(searchspace)
        x0 = given.get("x0")  # none, or empty: none (as Kernel Tuner reads it)
        self._initial = ([] if x0 is None or (hasattr(x0, "__len__") and len(x0) == 0)
                         else [self._starting_config(x0, params)])
        constraints = self._constraints(options, params, searchspace)
        problem = self._problem(getattr(runner, "kernel_options", {}) or {})
        if searchspace.size == 0:
            return None
        default = dict(zip(searchspace.tune_params.keys(), searchspace.list[0]))
        spec = self._kernel_spec(runner, options, params, constraints, problem, default)
        while True:
            try:
                info = self.client.register_kernel(spec)
                break
            except InvalidArgument as e:
                # A restriction ktune's expressions do not read ("in expression 'X': ..."):
                # Kernel Tuner keeps it, ktune goes without it.
                unreadable = [c for c in constraints if f"expression '{c}'" in e.message]
                if not unreadable:
                    raise
                self.dropped_constraints.extend(unreadable)
                constraints = [c for c in constraints if c not in unreadable]
                spec = self._kernel_spec(runner, options, params, constraints, problem, default)
        self.kernel_name = info.name
        self.device = self._device(runner, options)
        kernel_options = getattr(runner, "kernel_options", {}) or {}
        dev = runner.get_device_info() if hasattr(runner, "get_device_info") else None
        self._kt = {"kernel_name": kernel_options.get("kernel_name", ""),
                    "problem_size": kernel_options.get("problem_size"),
                    "device_name": getattr(dev, "name", "") or "",
                    "tune_params": dict(searchspace.tune_params),
                    "decode": {p.name: p.decode for p in params}}
        worker = _Worker(self.client, self.device)
        try:
            # ktune's space is Kernel Tuner's, or larger when restrictions were left out.
            self._loop(func, searchspace, params, searchspace.size, problem, worker)
        finally:
            worker.leave()
        return None

    def _retrying(self, what: str, call):
        """``call()``, tried again with backoff while the server is unreachable (UNAVAILABLE: a
        restart, a network outage), for up to :attr:`reconnect_seconds`, said once. A restart
        failed the whole Kernel Tuner run at the next lease; the server's restart ends the job
        bound to this process's worker, which the loop follows with a new one."""
        deadline: Optional[float] = None
        delay = 0.25
        while True:
            try:
                return call()
            except Unavailable as e:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.reconnect_seconds
                    if self.reconnect_seconds > 0:
                        warnings.warn(f"ktune server unreachable ({what}: {e.message}); trying "
                                      f"again for up to {self.reconnect_seconds:g} s",
                                      RuntimeWarning, stacklevel=3)
                if now >= deadline:
                    raise
                time.sleep(min(delay, deadline - now))
                delay = min(2 * delay, 2.0)

    @staticmethod
    def _starting_config(x0: Any, params: list[_Param]) -> ParamMap:
        """Kernel Tuner's ``x0`` (values in tune_params order, or a dict by name) as ktune's
        configuration; ValueError naming what does not fit."""
        if isinstance(x0, dict):
            missing = [p.name for p in params if p.name not in x0]
            if missing or len(x0) != len(params):
                raise ValueError(f"x0 {x0!r} must give a value to each of tune_params "
                                 f"({', '.join(p.name for p in params)})")
            values = [x0[p.name] for p in params]
        else:
            values = list(x0)
            if len(values) != len(params):
                raise ValueError(f"x0 {x0!r} has {len(values)} values; tune_params has "
                                 f"{len(params)} ({', '.join(p.name for p in params)})")
        config = {}
        for p, v in zip(params, values):
            if not any(v == w for w in p.values):
                raise ValueError(f"x0: {v!r} is not one of tune_params[{p.name!r}]'s values")
            config[p.name] = p.encode(v)
        return config

    def _submit(self, problem: ParamMap, budget: int, worker: "_Worker") -> Job:
        assert self.device is not None
        # Bound to this process's worker: only it measures the job, and the job ends when it
        # leaves or stops sending heartbeats (a crash), instead of staying running for ever, its
        # candidates leased back and forth by later sessions of this device class.
        spec = JobSpec(
            name=f"kernel_tuner {self.kernel_name}", kernels=[self.kernel_name], problems=[problem],
            device_classes=[self.device.device_class], budget=budget, strategy=self.strategy,
            # seed 0: the server draws one for every job (a fixed 1, 2, ... for the follow-up
            # jobs repeated every session's proposals).
            seed=self.seed + len(self.job_ids) if self.seed else 0, batch_size=self.batch_size,
            agent_share=self.agent_share, worker_id=worker.worker_id,
            initial_configs=list(self._initial))
        attempts = 0

        def submit() -> Job:
            nonlocal attempts
            attempts += 1
            return self.client.submit(spec)

        job = self._retrying("SubmitJob", submit)
        if attempts > 1:
            # A try whose reply was lost may have made a job all the same: bound to this worker,
            # its candidates would be measured beside this job's, on Kernel Tuner's budget.
            self._cancel_others_bound_to(worker, keep=job.job_id)
        self.job_ids.append(job.job_id)
        if job.tasks:
            self.task = job.tasks[0].task
        return job

    def _cancel_others_bound_to(self, worker: "_Worker", keep: str) -> None:
        """Cancels this kernel's unfinished jobs bound to ``worker`` but ``keep``."""
        try:
            for j in self.client.jobs(states=["queued", "running", "paused"]):
                if (j.worker_id == worker.worker_id and j.job_id != keep and
                        j.name == f"kernel_tuner {self.kernel_name}"):
                    self.client.cancel(j.job_id)
        except KtuneError as e:  # the job ends anyway when the worker leaves
            warnings.warn(f"could not cancel a second ktune job of this run: {e.message}",
                          RuntimeWarning, stacklevel=3)

    def _loop(self, func, searchspace, params: list[_Param], space_size: int, problem: ParamMap,
              worker: "_Worker") -> None:
        budget = func.tuning_options.budget

        def remaining() -> int:
            left = budget.get_evaluations_remaining()
            return int(min(space_size, left if left != math.inf else space_size, 1_000_000))

        if remaining() <= 0:
            return
        job = self._submit(problem, remaining(), worker)
        reported_by_job = 0
        try:
            while True:
                if budget.is_done():
                    return
                lease = self._retrying("LeaseBatch", lambda: worker.lease(self.batch_size))
                ours = any(c.task.kernel.name == self.kernel_name for c in lease.candidates)
                if lease.lease_id:  # ours measured and reported; another kernel's handed back
                    n, stop = self._measure(func, searchspace, params, lease, worker)
                    reported_by_job += n
                    if stop:
                        return
                if not ours:
                    # An empty lease, or only another session's candidates (a job left running on
                    # this device class by a session that crashed): this job may have ended.
                    # Leasing on at once spun for ever, handing those back and forth.
                    job_id = job.job_id
                    job = self._retrying("GetJob", lambda: self.client.get_job(job_id))
                    if job.state.final:
                        if job.state is JobState.FAILED:
                            raise KtuneError(grpc.StatusCode.FAILED_PRECONDITION,
                                             f"ktune job {job.job_id} failed: {job.message}",
                                             "kernel_tuner")
                        # The server took this process's worker for gone (a restart, heartbeats
                        # paused for minutes) and ended the job bound to it: a new one, bound to
                        # the worker as registered now, goes on, said.
                        worker_gone = (job.state is JobState.CANCELLED and
                                       "is gone" in job.message)
                        if worker_gone and remaining() > 0:
                            warnings.warn(f"ktune job {job.job_id} ended: {job.message}; going on "
                                          "with a new job", RuntimeWarning, stacklevel=2)
                            job, reported_by_job = self._submit(problem, remaining(), worker), 0
                            continue
                        # ktune's budget was spent (proposals Kernel Tuner's restrictions ruled
                        # out count in it) or its space is exhausted; Kernel Tuner may have more.
                        if reported_by_job == 0 or remaining() <= 0:
                            return
                        job, reported_by_job = self._submit(problem, remaining(), worker), 0
                        continue
                    time.sleep(max(self.poll_seconds, 0.25 if lease.lease_id
                                   else lease.retry_after_ms / 1000 / 4))
        finally:
            try:
                current = self.client.get_job(job.job_id)
                if not current.state.final:
                    self.client.cancel(job.job_id)
            except KtuneError:
                pass

    def _measure(self, func, searchspace, params: list[_Param], lease, worker: "_Worker"):
        """Measures a lease's candidates with Kernel Tuner and reports them; (reported, stop)."""
        ours: list[tuple[Any, Optional[tuple]]] = []
        configs: list[list] = []
        for c in lease.candidates:
            if c.task.kernel.name != self.kernel_name:
                continue  # another session's kernel on this device class: it goes back
            try:
                config = tuple(p.decode(c.config.params[p.name].int_value) for p in params)
            except (KeyError, ValueError):
                ours.append((c, None))
                continue
            ours.append((c, config))
            if searchspace.is_param_config_valid(config):
                configs.append(list(config))
        stop = False
        error: Optional[BaseException] = None
        worker.measuring([lease.lease_id])
        try:
            if configs and type(func.runner).__name__ in _SERIAL_RUNNERS:
                # One call per configuration: Kernel Tuner keeps a call's results only when the
                # whole call returns, so a failure at the fifth of a batch lost the four before
                # it. Its serial runners measure one at a time anyway; a parallel runner gets the
                # whole batch.
                for config in configs:
                    func.eval_all([config], check_restrictions=False)
            elif configs:
                func.eval_all(configs, check_restrictions=False)
        except kt_util.StopCriterionReached:
            stop = True
        except Exception as e:  # noqa: BLE001 - re-raised below, once the measured are reported
            # Kernel Tuner stops the run (a failed verification, a compiler that cannot run):
            # what it measured before is reported first, or it was lost with the lease.
            error = e
        finally:
            worker.measuring([])
        results = []
        for c, measured in ours:
            r = wp.CandidateResult(candidate_id=c.candidate_id)
            if measured is None:
                r.status, r.message = tp.MEASUREMENT_STATUS_INVALID_CONFIG, "not in tune_params"
            elif not searchspace.is_param_config_valid(measured):
                r.status = tp.MEASUREMENT_STATUS_INVALID_CONFIG
                r.message = "ruled out by Kernel Tuner's restrictions"
            else:
                result = func.unique_results.get(",".join(str(v) for v in measured))
                if result is None:
                    continue  # not measured (Kernel Tuner's budget ran out): goes back
                _fill_result(r, result)
            results.append(r)
        try:
            stored = self._retrying("ReportResults",
                                    lambda: worker.report(lease, results))
        except (FailedPrecondition, NotFound) as e:
            # The lease expired (this process stalled past the lease timeout despite the
            # heartbeats), or the server restarted (twice: the worker is unknown again) and
            # ended the job bound to this worker: ktune re-queues the candidates; Kernel Tuner
            # keeps its results.
            warnings.warn(f"ktune refused a report, {len(results)} results not stored: "
                          f"{e.message}", RuntimeWarning, stacklevel=2)
            stored, results = 0, []
        self.reported += stored
        if error is not None:
            raise error
        return len(results), stop


def _restriction_text(r: Any) -> str:
    """A restriction as text that is the same in every process and differs where the restriction
    does: a string as it is; a function by its source (its repr names a memory address) and the
    values it reads that the source does not show (closure cells, defaults, the module's plain
    globals it names: make(256) and make(1024) of one lambda are two restrictions); a partial by
    its function and arguments; another callable by its type and attributes."""
    if isinstance(r, str):
        return r
    if isinstance(r, functools.partial):
        return (f"partial({_restriction_text(r.func)}, args={r.args!r}, "
                f"keywords={sorted(r.keywords.items())!r})")
    code = getattr(r, "__code__", None)
    if code is None:
        attrs = sorted(vars(r).items()) if hasattr(r, "__dict__") else []
        return f"<{type(r).__qualname__} {', '.join(f'{k}={_stable_repr(v)}' for k, v in attrs)}>"
    try:
        text = textwrap.dedent(inspect.getsource(r)).strip()
        if code.co_name == "<lambda>":
            text = _lambda_source(text, code)
    except (OSError, TypeError):
        text = f"<code {hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]}>"
    cells = [_stable_repr(c.cell_contents) for c in (r.__closure__ or ()) if _filled(c)]
    names = getattr(r, "__globals__", {})
    read = {n: names[n] for n in code.co_names if n in names and _is_plain(names[n])}
    extra = [f"closure=[{', '.join(cells)}]" if cells else "",
             f"defaults=({', '.join(_stable_repr(d) for d in r.__defaults__)})"
             if r.__defaults__ else "",
             f"kwdefaults={sorted((k, _stable_repr(v)) for k, v in r.__kwdefaults__.items())}"
             if getattr(r, "__kwdefaults__", None) else "",
             f"globals={sorted(read.items())!r}" if read else ""]
    return "\n".join([text] + [e for e in extra if e])


def _lambda_source(lines: str, code: Any) -> str:
    """The lambda itself out of the source lines that hold it (inspect gives the whole lines:
    `restrictions=[lambda p: p["x"] <= 2, "y >= 32"],` showed a string restriction, which was
    sent, among those dropped, and reformatting the line named another kernel): the shortest text
    from a `lambda` that compiles to the same code. The lines when none does."""
    def compiled(segment: str):
        try:
            outer = compile(f"({segment})", "<restriction>", "eval")
        except (SyntaxError, ValueError):
            return None
        inner = [c for c in outer.co_consts if hasattr(c, "co_code")]
        return inner[0] if len(inner) == 1 else None

    # Compiled alone, a closure's variables are globals: the same constants, arguments and names
    # then, and the same bytecode only without them. An exact match wins; else the only one.
    names = set(code.co_names) | set(code.co_freevars)
    exact, alike = [], []
    start = lines.find("lambda")
    while start >= 0:
        first_alike = None  # the shortest from here; an exact one further on wins over it
        for end in range(start + len("lambda"), len(lines) + 1):
            c = compiled(lines[start:end])
            if c is None or c.co_consts != code.co_consts or c.co_varnames != code.co_varnames \
                    or set(c.co_names) != names:
                continue
            if c.co_code == code.co_code:
                exact.append(lines[start:end].strip())
                break
            if first_alike is None:
                first_alike = lines[start:end].strip()
        if first_alike is not None:
            alike.append(first_alike)
        start = lines.find("lambda", start + 1)
    if exact:
        return exact[0]
    return alike[0] if len(alike) == 1 else lines


def _stable_repr(v: Any) -> str:
    """repr(v) when it is the same in every process; else one of this process alone (such a
    restriction's kernel is not shared with another session: it cannot be told apart)."""
    if isinstance(v, (set, frozenset)):  # printed in hash order, which differs by process
        return "{" + ", ".join(sorted(_stable_repr(x) for x in v)) + "}"
    if inspect.isfunction(v):  # a helper the restriction calls: by its source, not its address
        try:
            return textwrap.dedent(inspect.getsource(v)).strip()
        except (OSError, TypeError):
            pass
    text = repr(v)
    return text if _is_plain(v) or " at 0x" not in text else f"<{os.getpid()}:{id(v)}>"


def _is_plain(v: Any) -> bool:
    """A value whose repr is the same in every process (numbers, strings, their containers)."""
    if isinstance(v, (bool, int, float, str, type(None))):
        return True
    if isinstance(v, (tuple, list)):
        return all(_is_plain(x) for x in v)
    if isinstance(v, dict):
        return all(_is_plain(k) and _is_plain(x) for k, x in v.items())
    return False


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:  # an empty cell
        return False


# Kernel Tuner's runners that measure a batch one configuration after another.
_SERIAL_RUNNERS = ("SequentialRunner", "SimulationRunner")

_ERRORS = {
    "InvalidConfig": tp.MEASUREMENT_STATUS_INVALID_CONFIG,
    "CompilationFailedConfig": tp.MEASUREMENT_STATUS_COMPILE_ERROR,
    "RuntimeFailedConfig": tp.MEASUREMENT_STATUS_RUNTIME_ERROR,
}


def _fill_result(r: wp.CandidateResult, result: dict) -> None:
    """A Kernel Tuner result dict as a ktune CandidateResult."""
    error = result.get("__error__")
    if error is not None or isinstance(result.get("time"), str):
        name = type(error).__name__ if error is not None else str(result.get("time"))
        r.status = _ERRORS.get(name, tp.MEASUREMENT_STATUS_RUNTIME_ERROR)
        r.message = f"Kernel Tuner: {name}"
        return
    times = [float(t) for t in (result.get("times") or []) if isinstance(t, numbers.Real)]
    times = [t for t in times if math.isfinite(t) and t > 0][:1024]
    if not times:
        t = result.get("time")
        if isinstance(t, numbers.Real) and math.isfinite(float(t)) and float(t) > 0:
            times = [float(t)]
    if not times:
        r.status = tp.MEASUREMENT_STATUS_RUNTIME_ERROR
        r.message = f"Kernel Tuner reported no time above zero (time={result.get('time')!r})"
        return
    r.status = tp.MEASUREMENT_STATUS_OK
    r.repeat_times_ms.extend(times)
    compile_ms = result.get("compile_time")
    if isinstance(compile_ms, numbers.Real) and math.isfinite(float(compile_ms)) and \
            float(compile_ms) >= 0:
        r.build_ms = float(compile_ms)


class _Worker:
    """This process as a ktune measurement worker: register, lease, report, heartbeat, leave."""

    def __init__(self, client: Client, device: Device) -> None:
        self.client = client
        self.device = device
        self._register()
        self._leases: list[str] = []
        self._leased_by: dict[str, str] = {}  # lease id -> the worker id that leased it
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._beat = threading.Thread(target=self._heartbeat, name="ktune-heartbeat", daemon=True)
        self._beat.start()

    def _register(self) -> None:
        request = wp.RegisterRequest(host=socket.gethostname()[:253])
        self.device._to_proto(request.device)
        request.device.cores_used = 1
        request.capabilities.languages.append("cpp")
        request.capabilities.max_parallel = 1
        request.capabilities.can_run_untrusted = True
        reply = self.client._unary("Register", self.client._worker.Register, request)
        self.worker_id = reply.worker_id
        self.interval = max(0.05, reply.heartbeat_interval_ms / 1000 or 5.0)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                leases = list(self._leases)
                sent = self.worker_id
            try:
                reply = self.client._unary("Heartbeat", self.client._worker.Heartbeat,
                                           wp.HeartbeatRequest(worker_id=sent, lease_ids=leases))
                if reply.reregister:
                    with self._lock:
                        # Not when lease() registered again meanwhile: a third worker, with no
                        # job bound to it, left the job waiting for the second to be taken
                        # for gone.
                        if self.worker_id == sent:
                            self._register()
            except KtuneError:
                pass  # the next lease or report says what is wrong

    def measuring(self, leases: list[str]) -> None:
        with self._lock:
            self._leases = leases

    def lease(self, n: int):
        with self._lock:
            worker_id = self.worker_id
        try:
            reply = self.client._unary("LeaseBatch", self.client._worker.LeaseBatch,
                                       wp.LeaseBatchRequest(worker_id=worker_id, max_candidates=n))
        except NotFound:
            # The server restarted and forgot this worker (the heartbeat thread re-registers
            # too, but only at its next beat): register again now and lease as the new worker.
            with self._lock:
                if self.worker_id == worker_id:
                    self._register()
                worker_id = self.worker_id
            reply = self.client._unary("LeaseBatch", self.client._worker.LeaseBatch,
                                       wp.LeaseBatchRequest(worker_id=worker_id, max_candidates=n))
        if reply.lease_id:
            self._leased_by[reply.lease_id] = worker_id
        return reply

    def report(self, lease, results: list) -> int:
        """Reports `lease`'s results; how many records were stored. A lease taken by this
        process's worker before the server restarted (it forgot the worker, which registered
        again: here, or on the heartbeat thread) goes with its candidates
        (ReportResultsRequest.leased), as ktune's own worker sends it. The restarted server
        stores none of them for a job bound to the worker it forgot (this bridge's, cancelled
        by the restart): 0 stored."""
        def send(worker_id: str):
            request = wp.ReportResultsRequest(worker_id=worker_id, lease_id=lease.lease_id,
                                              results=results)
            if worker_id != self._leased_by.get(lease.lease_id, worker_id):
                for c in lease.candidates:
                    copy = request.leased.add()
                    copy.CopyFrom(c)
                    copy.ClearField("kernel_spec")
            return self.client._unary("ReportResults", self.client._worker.ReportResults,
                                      request)

        with self._lock:
            worker_id = self.worker_id
        try:
            try:
                reply = send(worker_id)
            except NotFound:
                with self._lock:
                    if self.worker_id == worker_id:
                        self._register()
                    worker_id = self.worker_id
                reply = send(worker_id)
        except Unavailable:
            raise  # sent again (the caller's _retrying): the lease is still to report
        except KtuneError:
            self._leased_by.pop(lease.lease_id, None)
            raise
        self._leased_by.pop(lease.lease_id, None)
        return reply.records_stored

    def leave(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        try:
            self.client._unary("Leave", self.client._worker.Leave,
                               wp.LeaveRequest(worker_id=self.worker_id))
        except KtuneError:
            pass


# --- Kernel Tuner cache files from ktune's records ---


def _plain(v: Any) -> Any:
    """numpy scalars as Python ones (for JSON)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (list, dict, str)) else v


def cache_document(records: Sequence[Record], tune_params: Optional[dict] = None,
                   problem_size: Any = None, kernel_name: str = "",
                   device_name: Optional[str] = None, decode: Optional[dict] = None) -> dict:
    """A Kernel Tuner cache (the JSON of ``tune_kernel(cache=...)``) of records of one task.

    Keys are Kernel Tuner's ``"v1,v2,..."`` in ``tune_params`` order (default: the records'
    parameters, sorted); ``time`` is ktune's time_ms, ``times`` the repeats; failures carry
    Kernel Tuner's error name (``InvalidConfig``, ``CompilationFailedConfig``,
    ``RuntimeFailedConfig``) in ``time`` and ``__error__``. ``decode`` maps a parameter name to a
    function from ktune's value to Kernel Tuner's. Records of another task than the first
    record's raise ValueError. Kernel Tuner reuses the file only for the same kernel name,
    device name, problem size and parameter order (or in simulation mode, any device).
    """
    if not records:
        raise ValueError("no records")
    task = records[0].task
    decode = decode or {}
    value = lambda k, v: _plain(decode[k](v)) if k in decode else v  # noqa: E731
    keys = list(tune_params) if tune_params else sorted(records[0].config)
    if tune_params is None:
        values: dict[str, list] = {k: [] for k in keys}
        for r in records:
            for k in keys:
                if value(k, r.config.get(k)) not in values[k]:
                    values[k].append(value(k, r.config.get(k)))
        tune_params = {k: sorted(v, key=lambda x: (str(type(x)), x)) for k, v in values.items()}
    fingerprint = records[0].device.fingerprint
    doc: dict[str, Any] = {
        # Kernel Tuner's own name, even empty (its C back end has none, and a cache naming the
        # CPU model was refused there: "different device"); None: the fingerprint's.
        "device_name": (device_name if device_name is not None
                        else "" if fingerprint.get("lang") in ("C", "FORTRAN")
                        else fingerprint.get("name", task.device_class)),
        "kernel_name": kernel_name or task.kernel,
        "problem_size": problem_size if problem_size is not None else [
            task.problem[k] for k in sorted(task.problem) if k != "dtype"],
        "tune_params_keys": keys,
        "tune_params": {k: [_plain(v) for v in vs] for k, vs in tune_params.items()},
        "objective": "time",
        # ktune's names of the task, which Kernel Tuner's cannot carry (problem_size is values
        # without names): `ktune db import` files the records under this task again. Kernel
        # Tuner ignores the key.
        "ktune": {"kernel": task.kernel, "kernel_version": task.kernel_version,
                  "problem": dict(task.problem),
                  "device": {"class": records[0].device.device_class}},
        "cache": {},
    }
    # The family and the fingerprint only when every record has the same, as ktune's own export
    # writes them: records of several machines came back as the first's.
    device = doc["ktune"]["device"]
    if all(r.device.family == records[0].device.family for r in records):
        device["family"] = records[0].device.family
    if all(r.device.fingerprint_json == records[0].device.fingerprint_json for r in records):
        device["fingerprint"] = fingerprint
    for r in records:
        if r.task != task:
            raise ValueError(f"records of two tasks: {task} and {r.task}")
        entry = {k: value(k, r.config[k]) for k in keys}
        key = ",".join(str(entry[k]) for k in keys)
        if r.status is Status.OK:
            entry["time"] = r.time_ms
            entry["times"] = list(r.repeat_times_ms)
        else:
            name = {Status.INVALID_CONFIG: "InvalidConfig",
                    Status.COMPILE_ERROR: "CompilationFailedConfig"}.get(r.status,
                                                                         "RuntimeFailedConfig")
            entry["time"] = name
            entry["__error__"] = name
        if r.measured_at is not None:
            entry["timestamp"] = r.measured_at.isoformat()
        doc["cache"][key] = entry
    return doc


def export_cache(client: Client, task: Task, path: str | os.PathLike,
                 tune_params: Optional[dict] = None, **kwargs) -> int:
    """Writes a Kernel Tuner cache file of what ``client``'s server holds for ``task`` (via
    ExportRecords); returns the number of entries. ``kwargs`` go to :func:`cache_document`.
    Parameters Strategy index-encoded (floats, strings) are written as their indices."""
    records = list(client.export_records(task))
    doc = cache_document(records, tune_params=tune_params, **kwargs)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=_plain)
    return len(doc["cache"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m ktune.kernel_tuner export ...``: a task's records on a server as a Kernel
    Tuner cache file (ktune's names: kernel, device fingerprint's name, problem, values)."""
    import argparse

    from ktune.types import parse_params

    ap = argparse.ArgumentParser(prog="python -m ktune.kernel_tuner",
                                 description="Kernel Tuner cache files from a ktune server")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write a task's records as a Kernel Tuner cache file")
    ex.add_argument("--server", default="127.0.0.1:7470", help="HOST:PORT of ktune serve")
    ex.add_argument("--token", default=None, help="bearer token (default: $KTUNE_TOKEN)")
    ex.add_argument("--tls-ca", default=None, help="connect with TLS, trusting this CA (PEM)")
    ex.add_argument("--tls-cert", default=None, help="client certificate for mutual TLS (PEM)")
    ex.add_argument("--tls-key", default=None, help="its private key (PEM)")
    ex.add_argument("--kernel", required=True)
    ex.add_argument("--device", required=True, help="the task's device class")
    ex.add_argument("--problem", default="", help="e.g. problem_size_x=65536,dtype=f32")
    ex.add_argument("--kernel-version", default="", help="default: the server's current one")
    ex.add_argument("--out", required=True, help="the cache file to write (.json)")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")  # exit 2
    tls = bool(args.tls_ca or args.tls_cert)
    try:
        problem = parse_params(args.problem)
    except ValueError as e:
        ap.error(f"--problem: {e}")  # exit 2
    task = Task(args.kernel, problem, args.device, args.kernel_version)
    try:
        with Client(args.server, token=args.token, tls=tls, root_certificates=args.tls_ca,
                    certificate_chain=args.tls_cert, private_key=args.tls_key) as client:
            if not task.kernel_version:
                versions = {k.name: k.version for k in client.kernels()}
                task = Task(task.kernel, task.problem, task.device_class,
                            versions.get(task.kernel, ""))
            n = export_cache(client, task, args.out)
    except ValueError as e:  # no records
        print(f"python -m ktune.kernel_tuner export: {task}: {e}", file=sys.stderr)
        return 1
    except (KtuneError, OSError) as e:  # the server's refusal or absence, or the file's
        print(f"python -m ktune.kernel_tuner export: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} entries to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
