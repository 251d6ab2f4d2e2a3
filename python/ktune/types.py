"""The client's value types: plain dataclasses over the ktune.v1 messages.

Parameter maps (problems and configurations) are ``dict[str, int | float | str]``. Conversions
to and from the protocol buffers live here; the :class:`~ktune.Client` methods return these
types, never raw messages.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional, Union

from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import types_pb2 as tp

ParamValue = Union[int, float, str]
ParamMap = dict[str, ParamValue]


def _member_of(cls, value, what: str):
    """``value`` if a member of the enum ``cls``, else the member named ``value``; ValueError
    naming the members otherwise."""
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; one of "
                         f"{', '.join(m.value for m in cls)}") from None


class MatchLevel(enum.Enum):
    """Which level of QueryBest's fallback answered (see :meth:`ktune.Client.best`)."""

    EXACT = "exact"  # the same device fingerprint
    DEVICE_CLASS = "device_class"  # the same model (other driver or compiler)
    FAMILY = "family"  # the same architecture family
    PREDICTED = "predicted"  # never tuned for this problem: predicted from the nearest one
    NONE = "none"  # nothing known

    @classmethod
    def _from_proto(cls, level: int) -> "MatchLevel":
        return _LEVEL_BY_NUMBER.get(level, cls.NONE)


_LEVEL_BY_NUMBER: dict[int, MatchLevel] = {
    ts.MATCH_LEVEL_EXACT: MatchLevel.EXACT,
    ts.MATCH_LEVEL_DEVICE_CLASS: MatchLevel.DEVICE_CLASS,
    ts.MATCH_LEVEL_FAMILY: MatchLevel.FAMILY,
    ts.MATCH_LEVEL_PREDICTED: MatchLevel.PREDICTED,
}


class JobState(enum.Enum):
    """A job's (or a task's) state."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNSPECIFIED = "unspecified"

    @property
    def final(self) -> bool:
        """True for done, failed and cancelled: the job will not change any more."""
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def of(cls, state: Union["JobState", str]) -> "JobState":
        """A JobState, or its name (``"running"``); ValueError naming the states otherwise."""
        return _member_of(cls, state, "job state")

    @classmethod
    def _from_proto(cls, state: int) -> "JobState":
        return cls(ts.JobState.Name(state).removeprefix("JOB_STATE_").lower())

    def _to_proto(self) -> Any:  # a ts.JobState value
        return ts.JobState.Value("JOB_STATE_" + self.value.upper())


class Status(enum.Enum):
    """The outcome of one measurement. Failures are records too, never a sentinel time."""

    OK = "ok"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    WRONG_RESULT = "wrong_result"
    INVALID_CONFIG = "invalid_config"
    LOST = "lost"
    TOO_INACCURATE = "too_inaccurate"  # timed, but its error broke the job's accuracy budget
    UNSPECIFIED = "unspecified"

    @classmethod
    def of(cls, status: Union["Status", str]) -> "Status":
        """A Status, or its name (``"ok"``); ValueError naming the statuses otherwise."""
        return _member_of(cls, status, "measurement status")

    @classmethod
    def _from_proto(cls, status: int) -> "Status":
        return _STATUS_BY_NUMBER.get(status, cls.UNSPECIFIED)

    def _to_proto(self) -> Any:  # a tp.MeasurementStatus value
        return tp.MeasurementStatus.Value("MEASUREMENT_STATUS_" + self.value.upper())


_STATUS_BY_NUMBER = {
    n: Status(tp.MeasurementStatus.Name(n).removeprefix("MEASUREMENT_STATUS_").lower())
    for n in tp.MeasurementStatus.values()}

STRATEGIES = ("ppo", "random", "annealing", "genetic", "model_based")


def strategy_to_proto(strategy: Optional[str]) -> Any:  # a tp.Strategy value
    """``None`` or ``""``: the server's default (ppo; model on a server built without LibTorch);
    else one of :data:`STRATEGIES`."""
    if not strategy:
        return tp.STRATEGY_UNSPECIFIED
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    return tp.Strategy.Value("STRATEGY_" + strategy.upper())


# --- parameter maps ---


def value_to_proto(value: ParamValue, out: tp.ParamValue) -> None:
    if isinstance(value, bool):
        out.int_value = int(value)
    elif isinstance(value, numbers.Integral):
        out.int_value = int(value)
    elif isinstance(value, numbers.Real):
        out.float_value = float(value)
    elif isinstance(value, str):
        out.string_value = value
    else:
        raise TypeError(f"a parameter value must be an int, float or str, not {type(value).__name__}")


def value_from_proto(value: tp.ParamValue) -> ParamValue:
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else None  # type: ignore[return-value]


def params_to_proto(params: Optional[Mapping[str, ParamValue]], out) -> None:
    """Fills a ``map<string, ParamValue>`` field from a dict."""
    for name, value in (params or {}).items():
        value_to_proto(value, out[name])


def problem_to_proto(problem: Optional[Mapping[str, ParamValue]], out) -> None:
    """Like :func:`params_to_proto`, for the problem of a question (best, explain, tune,
    telemetry). Values are matched exactly, as stored: a whole float (``64.0``, a size computed
    with ``/``) is not the int 64, so it warns (RuntimeWarning) rather than miss without a word."""
    for name, value in (problem or {}).items():
        if (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
                and float(value).is_integer()):
            # A registry or registered kernel's problem is made canonical by the server (64.0 is
            # taken as 64); a kernel known only from its records (Kernel Tuner's, TVM's) is
            # matched as stored. The warning said "does not match" where it did match.
            warnings.warn(f"problem value {name}={value!r} is a float; problem sizes are ints: a "
                          f"registry or registered kernel takes it as {int(value)}, a kernel known "
                          f"only from its records does not match it; pass {int(value)}",
                          RuntimeWarning, stacklevel=3)
        value_to_proto(value, out[name])


def params_from_proto(params) -> ParamMap:
    """A ``map<string, ParamValue>`` as a dict, keys sorted."""
    out = {}
    for name in sorted(params):
        v = params[name]
        out[name] = getattr(v, v.WhichOneof("kind") or "string_value")
    return out


def parse_params(text: str) -> ParamMap:
    """Parses ``"M=512,N=512,dtype=f32"`` (the CLI's --problem syntax) into a dict, refusing what
    the CLI refuses (ValueError): an item without ``=``, a name or a value; a name given twice
    (the last one won: ``K=64,K=32`` asked about another problem without a word); inf and nan."""
    out: ParamMap = {}
    if not text.strip():
        return out
    for item in (s.strip() for s in text.split(",")):
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep:
            raise ValueError(f"{item!r} is not NAME=VALUE (expected e.g. M=1024,N=1024)")
        if not name:
            raise ValueError(f"{item!r} has no name")
        if not raw:
            raise ValueError(f"{item!r} has no value")
        if name in out:
            raise ValueError(f"{name!r} is given twice")
        value: ParamValue
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
            else:
                if not math.isfinite(value):
                    raise ValueError(f"{item!r}: the value must be a finite number or a name")
        out[name] = value
    return out


def canonical_json(obj: Mapping) -> str:
    """JSON as ktune writes it (nlohmann's dump: keys sorted, no spaces, UTF-8 unescaped)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _timestamp(ts_msg) -> Optional[datetime]:
    if ts_msg.seconds == 0 and ts_msg.nanos == 0:
        return None
    return datetime.fromtimestamp(ts_msg.seconds + ts_msg.nanos / 1e9, tz=timezone.utc)


# --- devices, tasks, records ---


@dataclass(frozen=True)
class Device:
    """What a measurement depends on, as ktune keys it.

    Attributes:
        device_class: the normalised model, e.g. ``"cpu:Intel Xeon ..."`` or ``"RTX_2080_Ti"``:
            QueryBest's second level, and the class a job's workers must have.
        family: the architecture family (``"turing"``, ``"x86-64-v3"``): the third level.
        fingerprint_json: the full fingerprint as canonical JSON (model, compiler, caches, ...);
            the first (exact) level compares it. Empty: ``{"name": device_class}``.
    """

    device_class: str
    family: str = ""
    fingerprint_json: str = ""

    @property
    def fingerprint(self) -> dict:
        """The fingerprint as a dict (``{"name": device_class}`` when none was given);
        ValueError when ``fingerprint_json`` is not a JSON object."""
        if not self.fingerprint_json:
            return {"name": self.device_class}
        try:
            fingerprint = json.loads(self.fingerprint_json)
        except ValueError:
            fingerprint = None
        if not isinstance(fingerprint, dict):
            raise ValueError(f"fingerprint_json must be a JSON object, not "
                             f"{self.fingerprint_json[:80]!r}")
        return fingerprint

    @classmethod
    def make(cls, device_class: str, family: str = "", **facts) -> "Device":
        """A device with a fingerprint of ``facts`` (e.g. ``name=``, ``compiler=``)."""
        return cls(device_class, family, canonical_json(facts) if facts else "")

    def _to_proto(self, out: tp.DeviceFingerprint) -> None:
        out.device_class = self.device_class
        out.family = self.family
        if self.fingerprint_json:
            out.extra["fingerprint_json"] = self.fingerprint_json

    @classmethod
    def _from_proto(cls, d: tp.DeviceFingerprint) -> "Device":
        return cls(d.device_class, d.family, d.extra.get("fingerprint_json", ""))


DeviceLike = Union[str, Device]


def device_to_proto(device: DeviceLike, out: tp.DeviceFingerprint) -> None:
    """A str is a device class; a :class:`Device` keeps its family and fingerprint. TypeError,
    naming what was given, for anything else (None raised AttributeError '_to_proto')."""
    if isinstance(device, str):
        out.device_class = device
    elif isinstance(device, Device):
        device.fingerprint  # a ValueError for one that is not a JSON object (best ignored it)
        device._to_proto(out)
    else:
        raise TypeError(f"device must be a device class (str) or a ktune.Device, not "
                        f"{type(device).__name__}")


@dataclass(frozen=True)
class Task:
    """What is tuned: kernel (and version) + problem + device class."""

    kernel: str
    problem: ParamMap
    device_class: str
    kernel_version: str = ""

    def _to_proto(self, out: tp.TaskKey) -> None:
        out.kernel.name = self.kernel
        out.kernel.version = self.kernel_version
        params_to_proto(self.problem, out.problem.params)  # as stored: records keep their values
        out.device_class = self.device_class

    @classmethod
    def _from_proto(cls, t: tp.TaskKey) -> "Task":
        return cls(t.kernel.name, params_from_proto(t.problem.params), t.device_class,
                   t.kernel.version)


@dataclass(slots=True)
class Record:
    """One measurement of one configuration for one task (ok, or which failure).

    ``time_ms`` is set exactly when ``status`` is :attr:`Status.OK`: the median of the repeats
    for ktune's own measurements, the file's objective for imported ones. ``payload`` is a
    client's opaque text (at most 1 MiB, UTF-8), which ktune keeps verbatim and hashes into
    ``record_id`` when not empty; empty for ktune's own measurements. ``max_rel_error`` is the
    output's measured error against the reference (max |out - ref| / max |ref|), None when it
    was not measured. ``stale_before_us`` is set on an exported record a regression retired.
    """

    task: Task
    device: Device
    config: ParamMap
    status: Status
    time_ms: Optional[float] = None
    repeat_times_ms: tuple[float, ...] = ()
    median_ms: Optional[float] = None
    min_ms: Optional[float] = None
    stddev_ms: Optional[float] = None
    message: str = ""
    record_id: str = ""
    config_hash: str = ""
    worker_id: str = ""
    measured_at: Optional[datetime] = None
    source: str = ""
    payload: str = ""
    max_rel_error: Optional[float] = None
    # Set on an exported record a regression retired: its task's stale boundary (Unix
    # microseconds); import_records marks the task again, so a copy does not serve it.
    stale_before_us: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def kernel(self) -> str:
        return self.task.kernel

    @property
    def problem(self) -> ParamMap:
        return self.task.problem

    def _to_proto(self, out: tp.Record) -> None:
        out.record_id = self.record_id
        self.task._to_proto(out.task)
        self.device._to_proto(out.device)
        params_to_proto(self.config, out.config.params)
        out.config_hash = self.config_hash
        out.status = Status.of(self.status)._to_proto()
        out.message = self.message
        if self.time_ms is not None:
            out.time_ms = self.time_ms
        out.repeat_times_ms.extend(self.repeat_times_ms)
        if self.median_ms is not None:
            out.median_ms = self.median_ms
        if self.min_ms is not None:
            out.min_ms = self.min_ms
        if self.stddev_ms is not None:
            out.stddev_ms = self.stddev_ms
        out.worker_id = self.worker_id
        if self.measured_at is not None:
            us = int(round(self.measured_at.timestamp() * 1e6))
            out.measured_at.seconds, out.measured_at.nanos = us // 1_000_000, (us % 1_000_000) * 1000
        out.source = self.source
        out.payload = self.payload
        if self.max_rel_error is not None:
            out.max_rel_error = self.max_rel_error
        if self.stale_before_us is not None:
            out.stale_before_us = self.stale_before_us

    def to_dict(self) -> dict:
        """The record as a line of ktune's JSONL interchange (``ktune db export``, and what
        ``ktune best --json`` prints): ``json.dumps`` of it is a line ``ktune db import`` reads.
        Without a ``record_id`` (a record made here) the line has none: import computes it."""
        try:
            fingerprint: Any = self.device.fingerprint  # {"name": class} when none was given
        except ValueError:
            fingerprint = self.device.fingerprint_json
        out = {"record_id": self.record_id} if self.record_id else {}
        out.update({"kernel": self.task.kernel,
               "kernel_version": self.task.kernel_version,
               "problem": dict(sorted(self.task.problem.items())),
               "device": {"fingerprint": fingerprint, "class": self.device.device_class,
                          "family": self.device.family},
               "config": dict(sorted(self.config.items())), "status": self.status.value,
               "message": self.message, "time_ms": self.time_ms,
               "repeat_times_ms": list(self.repeat_times_ms), "median_ms": self.median_ms,
               "min_ms": self.min_ms, "stddev_ms": self.stddev_ms, "worker": self.worker_id,
               "measured_at": _rfc3339(self.measured_at) if self.measured_at else None,
               "source": self.source})
        if self.payload:
            out["payload"] = self.payload
        if self.max_rel_error is not None:
            out["max_rel_error"] = self.max_rel_error
        if self.stale_before_us is not None:
            out["stale_before_us"] = self.stale_before_us
        return out

    @classmethod
    def _from_proto(cls, r: tp.Record) -> "Record":
        has = r.HasField
        opt = lambda name: getattr(r, name) if has(name) else None  # noqa: E731
        return cls(
            task=Task._from_proto(r.task),
            device=Device._from_proto(r.device),
            config=params_from_proto(r.config.params),
            status=Status._from_proto(r.status),
            time_ms=opt("time_ms"),
            repeat_times_ms=tuple(r.repeat_times_ms),
            median_ms=opt("median_ms"),
            min_ms=opt("min_ms"),
            stddev_ms=opt("stddev_ms"),
            message=r.message,
            record_id=r.record_id,
            config_hash=r.config_hash,
            worker_id=r.worker_id,
            measured_at=_proto_time(r.measured_at) if r.HasField("measured_at") else None,
            source=r.source,
            payload=r.payload,
            max_rel_error=opt("max_rel_error"),
            stale_before_us=opt("stale_before_us"),
        )


@dataclass(slots=True)
class BestResult:
    """QueryBest's answer: the best known records, best first, and which level matched.

    ``records`` is empty exactly when ``level`` is :attr:`MatchLevel.NONE`. A
    :attr:`MatchLevel.PREDICTED` answer's records were not measured for this problem. ``stale``:
    the records were measured before a regression was flagged on the device class (see
    :meth:`ktune.Client.drift`) and answer until a newer measurement of the task exists.
    ``kernel_unknown``: nothing is known and the server has no kernel of that name (registered
    or in a record): a misspelt name, most likely. ``not_queued``: tune_if_missing was asked and
    no job was queued, and why.
    """

    level: MatchLevel
    records: list[Record]
    queued_job_id: str = ""  # set when tune_if_missing queued a job
    stale: bool = False
    kernel_unknown: bool = False
    not_queued: str = ""

    @property
    def best(self) -> Optional[Record]:
        """The best record, or None when nothing is known."""
        return self.records[0] if self.records else None

    @property
    def config(self) -> Optional[ParamMap]:
        """The best configuration, or None when nothing is known."""
        return self.records[0].config if self.records else None


@dataclass(frozen=True)
class TradeOff:
    """One configuration on a task's time/error trade-off (:meth:`ktune.Client.pareto`, ``ktune
    best --pareto``): its fastest time, the largest error measured for it, and how many records
    (ok or too_inaccurate, error known) count. ``served``: it has an ok record, so ``best`` can
    serve it (one measured only as too_inaccurate cannot). ``on_front``: served, and no other
    served configuration is both faster and at least as accurate: the fastest front point within
    a budget E is what ``best(max_rel_error=E)`` answers."""

    config: ParamMap
    time_ms: float
    max_rel_error: float
    measurements: int
    served: bool
    on_front: bool


def time_error_trade_offs(records: Iterable[Record]) -> list[TradeOff]:
    """Every configuration of ``records`` that ran and had its error measured, fastest first
    (ties: smaller error, then the configuration's canonical JSON), rule for rule as ktune's
    ``db/pareto_front.h`` computes it."""
    # Per configuration, its ok records and its too_inaccurate ones apart: one with an ok record
    # sits where best() serves it, at the ok records' time and error.
    seen: dict[str, dict] = {}  # canonical JSON -> {status: [config, time, error, count]}
    for r in records:
        if r.status not in (Status.OK, Status.TOO_INACCURATE):
            continue
        time = r.time_ms if r.time_ms is not None else r.median_ms
        if time is None or r.max_rel_error is None:
            continue
        kinds = seen.setdefault(canonical_json(r.config), {})
        t = kinds.setdefault(r.status, [r.config, time, r.max_rel_error, 0])
        t[1], t[2] = min(t[1], time), max(t[2], r.max_rel_error)
        t[3] += 1
    by_config: dict[str, list] = {}  # canonical JSON -> [config, time, error, count, served]
    for key, kinds in seen.items():
        served = Status.OK in kinds
        config, time, error, _ = kinds[Status.OK if served else Status.TOO_INACCURATE]
        count = sum(k[3] for k in kinds.values())
        by_config[key] = [config, time, error, count, served]
    out, best_error, any_served = [], 0.0, False
    for key, (config, time, error, count, served) in sorted(
            by_config.items(), key=lambda kv: (kv[1][1], kv[1][2], kv[0])):
        on_front = served and (not any_served or error < best_error)
        if on_front:
            best_error, any_served = error, True
        out.append(TradeOff(dict(config), time, error, count, served, on_front))
    return out


# --- jobs ---


@dataclass(frozen=True)
class TaskProgress:
    task: Task
    state: JobState
    measurements_done: int
    measurements_failed: int
    best_time_ms: Optional[float]
    best_gflops: Optional[float]
    best_config: ParamMap
    prior_records: int = 0
    warm_started: bool = False
    agent_seconds: float = 0.0
    tuning_seconds: float = 0.0

    @classmethod
    def _from_proto(cls, p: ts.TaskProgress) -> "TaskProgress":
        return cls(
            task=Task._from_proto(p.task),
            state=JobState._from_proto(p.state),
            measurements_done=p.measurements_done,
            measurements_failed=p.measurements_failed,
            best_time_ms=p.best_time_ms if p.HasField("best_time_ms") else None,
            best_gflops=p.best_gflops if p.HasField("best_gflops") else None,
            best_config=params_from_proto(p.best_config.params),
            prior_records=p.prior_records,
            warm_started=p.warm_started,
            agent_seconds=p.agent_seconds,
            tuning_seconds=p.tuning_seconds,
        )


@dataclass(frozen=True)
class Job:
    """A fleet job: its state, progress and (when asked for) its tasks' progress."""

    job_id: str
    name: str
    state: JobState
    message: str
    measurements_done: int
    measurements_total: int
    estimated_seconds_left: float
    tasks: list[TaskProgress]  # when listed (get_job, watch; a large job's actions omit them)
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    task_count: int = 0  # its tasks, listed or not
    # Why a queued or running job's tasks are not measured ("1 task waits for a worker of device
    # class 'cpu:...': none has registered"); empty while they are, and once it has ended.
    waiting: str = ""
    worker_id: str = ""  # the worker the job is bound to (JobSpec.worker_id); "" when none

    @classmethod
    def _from_proto(cls, j: ts.Job) -> "Job":
        return cls(
            job_id=j.job_id,
            name=j.spec.name,
            state=JobState._from_proto(j.state),
            message=j.message,
            measurements_done=j.measurements_done,
            measurements_total=j.measurements_total,
            estimated_seconds_left=j.estimated_seconds_left,
            tasks=[TaskProgress._from_proto(t) for t in j.tasks],
            created_at=_timestamp(j.created_at),
            updated_at=_timestamp(j.updated_at),
            task_count=j.task_count,
            waiting=j.waiting,
            worker_id=j.spec.worker_id,
        )


@dataclass(frozen=True)
class JobEvent:
    """One WatchJob event: the job, and the task whose progress changed (if one did)."""

    job: Job
    changed_task: Optional[TaskProgress]

    @classmethod
    def _from_proto(cls, e: ts.JobEvent) -> "JobEvent":
        return cls(Job._from_proto(e.job),
                   TaskProgress._from_proto(e.changed_task) if e.HasField("changed_task") else None)


@dataclass(frozen=True)
class TuneEvent:
    """Progress of :meth:`ktune.Client.tune`; the last one has ``finished`` set."""

    measurements_done: int
    budget_measurements: int
    best_time_ms: Optional[float]
    best_config: Optional[ParamMap]
    finished: bool
    # On the last event: the kernel's untuned default's time (a record of it, this job's or
    # earlier), for the speedup; None on the others, for a recorded space, or when none is known.
    default_config_time_ms: Optional[float] = None
    job_id: str = ""  # the one-task job the tuning runs as (get_job, watch, cancel)
    # The job's state: on the last event DONE, FAILED or CANCELLED (then ``message`` says why).
    state: Optional["JobState"] = None
    message: str = ""

    @classmethod
    def _from_proto(cls, e: ts.TuneEvent) -> "TuneEvent":
        has_best = e.HasField("best_so_far")
        return cls(
            measurements_done=e.measurements_done,
            budget_measurements=e.budget_measurements,
            best_time_ms=e.best_so_far.time_ms if has_best and e.best_so_far.HasField("time_ms")
            else None,
            best_config=params_from_proto(e.best_so_far.config.params) if has_best else None,
            finished=e.finished,
            default_config_time_ms=e.default_config_time_ms
            if e.HasField("default_config_time_ms") else None,
            job_id=e.job_id,
            # A server before 2026-12 sends no state (0: unspecified).
            state=JobState._from_proto(e.state) if e.state else None,
            message=e.message,
        )


@dataclass(frozen=True)
class ImportResult:
    records_received: int
    records_added: int  # the others were already present (same record_id)


@dataclass(frozen=True)
class KernelInfo:
    """A kernel of the server's registry (built-in or registered by a client)."""

    name: str
    version: str
    language: str
    description: str
    parameters: dict[str, list[ParamValue]]
    constraints: list[str]
    problem_parameters: list[str]
    default_config: ParamMap
    space_size: int

    @classmethod
    def _from_proto(cls, k: ts.KernelInfo) -> "KernelInfo":
        return cls(
            name=k.kernel.name,
            version=k.kernel.version,
            language=k.language,
            description=k.description,
            parameters={p.name: [value_from_proto(v) for v in p.values] for p in k.parameters},
            constraints=list(k.constraints),
            problem_parameters=list(k.problem_parameters),
            default_config=params_from_proto(k.default_config.params),
            space_size=k.space_size,
        )


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    device: Device
    state: str  # "idle", "measuring", "lost"
    active_leases: int
    measurements_done: int
    last_heartbeat: Optional[datetime] = None
    host: str = ""  # the host it registered from

    @classmethod
    def _from_proto(cls, w: ts.WorkerInfo) -> "WorkerInfo":
        return cls(w.worker_id, Device._from_proto(w.device), w.state, w.active_leases,
                   w.measurements_done, _timestamp(w.last_heartbeat), w.host)


@dataclass
class JobSpec:
    """What a job tunes: every kernel x problem x device class is one task.

    Mirrors ktune.v1.JobSpec (and the YAML of ``ktune submit``); ``budget`` is measurements per
    task; ``strategy`` one of :data:`STRATEGIES` (None: the server's default, ppo).
    """

    kernels: list[str]
    problems: list[ParamMap]
    device_classes: list[str]
    budget: int
    name: str = ""
    strategy: Optional[str] = None
    priority: int = 0
    seed: int = 0
    batch_size: int = 0
    threads: int = 0
    budget_wall_seconds: int = 0
    agent_share: Optional[float] = None
    max_rel_error: Optional[float] = None  # accuracy budget; None: none
    kernel_versions: dict[str, str] = field(default_factory=dict)  # kernel -> version
    # Only this registered worker measures the job, which ends cancelled when the worker leaves
    # or is lost: a client measuring its own kernel (ktune.kernel_tuner). "": any worker.
    worker_id: str = ""
    # Configurations each task measures first (after the kernel's untuned default), unless its
    # records hold them: ones known to be good, to start from. At most 64.
    initial_configs: list[ParamMap] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A str is iterable: "pnpoly" went out as the kernels p, n, p, o, l, y.
        for name in ("kernels", "device_classes", "problems", "initial_configs"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, Mapping)):
                raise TypeError(f"{name} must be a list, not a {type(value).__name__} "
                                f"({name}=[{value!r}] for one)")

    def _to_proto(self) -> ts.JobSpec:
        spec = ts.JobSpec(
            name=self.name, budget_measurements=self.budget,
            budget_wall_seconds=self.budget_wall_seconds,
            strategy=strategy_to_proto(self.strategy), priority=self.priority, seed=self.seed,
            batch_size=self.batch_size, threads=self.threads, worker_id=self.worker_id)
        for k in self.kernels:
            spec.kernels.add(name=k, version=self.kernel_versions.get(k, ""))
        for p in self.problems:
            params_to_proto(p, spec.problems.add().params)
        spec.device_classes.extend(self.device_classes)
        if self.agent_share is not None:
            spec.agent_share = self.agent_share
        if self.max_rel_error is not None:
            spec.max_rel_error = self.max_rel_error
        for c in self.initial_configs:
            params_to_proto(c, spec.initial_configs.add().params)
        return spec


# --- API messages as plain dicts ---


def _proto_time(ts) -> Optional[datetime]:
    """A Timestamp to the microsecond, truncated, as the CLI reads one (MicrosFromProto); None
    outside 1970-9999 or with nanos out of range."""
    if not (0 <= ts.seconds <= 253_402_300_799 and 0 <= ts.nanos <= 999_999_999):
        return None
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=ts.seconds,
                                                                 microseconds=ts.nanos // 1000)


def _rfc3339(at: datetime) -> str:
    """As the CLI writes a time (absl's RFC3339_full): ``2023-01-26T01:06:18.2108+00:00``, the
    fraction without trailing zeros, none when whole."""
    text = at.astimezone(timezone.utc).isoformat()
    if "." not in text:
        return text
    head, rest = text.split(".", 1)
    fraction, zone = rest[:6].rstrip("0"), rest[6:]
    return f"{head}.{fraction}{zone}" if fraction else head + zone


def _enum_name(enum_type, number: int) -> Union[str, int]:
    """``MATCH_LEVEL_DEVICE_CLASS`` of ``MatchLevel`` -> ``"device_class"``; a value this client
    does not know (a newer server's) as its number."""
    value = enum_type.values_by_number.get(number)
    if value is None:
        return number
    prefix = "".join("_" + c if c.isupper() and i else c
                     for i, c in enumerate(enum_type.name)).upper() + "_"
    return value.name.removeprefix(prefix).lower()


def _plain_field(field, value) -> Any:
    if field.type == field.TYPE_ENUM:
        return _enum_name(field.enum_type, value)
    if field.type == field.TYPE_MESSAGE:
        return plain_dict(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: the CLI writes null
    return value


def plain_dict(message) -> Any:
    """An API message as ``ktune ... --json`` prints it (the CLI's proto/plain_json.h, rule for
    rule): proto field names, every field; 64-bit integers as ints; enums by name in lower case
    without their prefix (``"device_class"``); configurations and problems as ``{"M": 64}``; a
    record as :meth:`Record.to_dict`; a timestamp as ISO 8601 text; an unset message or
    ``optional`` field as None."""
    name = message.DESCRIPTOR.full_name
    if name == "ktune.v1.ParamValue":
        return value_from_proto(message)
    if name in ("ktune.v1.Configuration", "ktune.v1.Problem"):
        return params_from_proto(message.params)
    if name == "google.protobuf.Timestamp":
        at = _proto_time(message)
        return _rfc3339(at) if at else {"seconds": message.seconds, "nanos": message.nanos}
    if name == "ktune.v1.Record":
        return Record._from_proto(message).to_dict()
    out: dict = {}
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof  # proto3 `optional` makes a synthetic one: "_<field>"
        if oneof is not None and oneof.name != "_" + field.name and \
                message.WhichOneof(oneof.name) != field.name:
            continue  # a oneof's members other than the one set are not there at all
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _plain_field(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_plain_field(field, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _plain_field(field, value)
    return out

