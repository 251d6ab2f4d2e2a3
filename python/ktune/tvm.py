"""TVM MetaSchedule's tuning database on a ktune server: :class:`Database`.

``ktune.tvm.Database`` is a ``tvm.s_tir.meta_schedule.database.PyDatabase`` (apache-tvm 0.27):
give it to ``ms.tune_tir(..., database=...)`` and the records TVM measures are committed to ktune;
give it to ``ms.tir_integration.compile_tir`` (or use it as the ``with database:`` scope of
``MetaScheduleApplyDatabase``) in any later process, and the best schedule ktune holds for the
workload *and the target* is applied. Importing this module imports ``tvm``.

How a TVM record maps onto a ktune record (the contract; ``ktune best``, ``ktune db export`` and
the metrics see these records like any other):

- kernel ``tvm_<16 hex digits>``: TVM's structural hash of the workload (the IRModule), one ktune
  kernel per workload; the problem is empty. No registry knows these kernels: ktune stores and
  answers them, and never tunes them itself.
- the device is the TVM target, at ktune's three lookup levels:
  exact: the fingerprint ``{"target": <the target's whole config>, "device": <the machine>}``;
  device class ``tvm:<kind>`` plus the attributes that fix the instruction set
  (``-mcpu``, ``-mtriple``, ``-mattr``, ``-mabi``, ``-arch``), e.g.
  ``tvm:llvm -mcpu=skylake-avx512``: ``-mtriple`` as its architecture alone (``x86_64``), and
  only without ``-mcpu``; ``-mattr`` sorted; family ``tvm:<kind>`` (``tvm:llvm``, ``tvm:cuda``). A
  query never crosses target kinds, unlike TVM's own databases, which ignore the target
  (apache/tvm#15549).
- config ``{"trace": <16 hex digits of the SHA-256 of the trace's JSON>}``: two traces are two
  configurations, so they never collapse into one record or one answer.
- ``time_ms`` is the mean of TVM's ``run_secs`` in milliseconds (the order TVM ranks records by);
  every run is in ``repeat_times_ms``. A record whose runs are all TVM's failure stub (1e10 s) is
  stored as ``runtime_error`` without a time (TVM does not say whether building or running
  failed).
- ``payload`` is TVM's own JSON, ``{"workload": Workload.as_json(), "record":
  TuningRecord.as_json()}``: each ktune record rebuilds its TuningRecord alone (export, import,
  another server). ``source`` is ``"tvm"``; ``measured_at`` the commit time.

Committing needs the admin role on a server started with ``--auth`` (records are imported).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Union

import tvm_ffi
from tvm.ir import IRModule
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.database import PyDatabase, TuningRecord, Workload
from tvm.s_tir.schedule import Schedule
from tvm.target import Target

from ktune.client import Client
from ktune.types import BestResult, Device, MatchLevel, Record, Status, Task

KERNEL_PREFIX = "tvm_"
SOURCE = "tvm"
FAILED_RUN_SECS = 1e10  # TVM's stub time for a candidate that did not build or run
_ISA_ATTRS = ("mcpu", "mtriple", "mattr", "mabi", "arch")
# QueryBest answers at most 100 records, and records carry their workload's JSON.
_MAX_TOP = 100
_RECEIVE_LIMIT = 256 << 20
_MEASURED = (MatchLevel.EXACT, MatchLevel.DEVICE_CLASS, MatchLevel.FAMILY)


def _plain(value: Any) -> Any:
    """A target's config as plain JSON values (tuples become lists, nested targets dicts)."""
    if isinstance(value, Target):
        return _plain(value.export())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):  # dict, tvm_ffi Map
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):  # list, tuple, tvm_ffi Array
        return [_plain(v) for v in value]
    return str(value)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def local_device() -> str:
    """This machine as ktune's CPU workers name it: ``cpu:<model name of /proc/cpuinfo>``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "cpu:" + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu:unknown"


def _as_target(target: Union[Target, dict, str]) -> Target:
    """A Target from a Target, its dict or a tag (TVM's own error for a form it refuses)."""
    return Target(target) if isinstance(target, (dict, str)) else target


def target_device(target: Target, device: str) -> Device:
    """The ktune device of records measured for ``target`` on ``device`` (see the module doc)."""
    config = _plain(target)
    kind = config.get("kind", target.kind.name)
    device_class = f"tvm:{kind}"
    before = device_class  # the class as ktune named it before it normalised the attributes
    rule2 = device_class  # ... and before -mcpu=generic kept the architecture
    # -mcpu=generic names no architecture (LLVM has one for each): the triple's must stay, or an
    # x86 record was served to aarch64 and riscv64 targets as "the same instruction set".
    fixes_isa = bool(config.get("mcpu")) and config.get("mcpu") != "generic"
    for attr in _ISA_ATTRS:
        value = config.get(attr)
        value2 = value
        if value:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            before += f" -{attr}={text}"
        if attr == "mtriple" and value:
            # The architecture alone: TVM fills in the triple it was built with when none is given
            # (x86_64-conda-linux-gnu from conda, x86_64-linux-gnu from pip), and vendor and OS do
            # not change the instruction set. With an -mcpu that fixes it, none.
            arch = str(value).split("-", 1)[0]
            value = None if fixes_isa else arch
            value2 = None if config.get("mcpu") else arch
        for v, which in ((value, "new"), (value2, "rule2")):
            if not v:
                continue
            # Attribute lists in a fixed order: ["+fma", "+avx2"] and ["+avx2", "+fma"] are one.
            text = ",".join(sorted(map(str, v))) if isinstance(v, list) else str(v)
            if which == "new":
                device_class += f" -{attr}={text}"
            else:
                rule2 += f" -{attr}={text}"
    fingerprint = {"device": device, "target": config}
    if device_class != rule2:
        # A fingerprint has one class: records stored under the class of an earlier rule must
        # not refuse this one's (a database from before the change refused every commit).
        fingerprint["class_rule"] = 3
    elif device_class != before:
        fingerprint["class_rule"] = 2
    return Device(device_class, f"tvm:{kind}", _canonical(fingerprint))


def workload_kernel(mod: IRModule) -> str:
    """The ktune kernel of a workload: ``tvm_`` + TVM's structural hash in 16 hex digits (the
    hash of ``Workload(mod)``, MetaSchedule's default "structural" module equality; 25 us where
    ``Workload(mod).as_json()`` takes 10 ms)."""
    return f"{KERNEL_PREFIX}{tvm_ffi.structural_hash(mod) & (2**64 - 1):016x}"


def trace_hash(record_json: list) -> str:
    """16 hex digits of the SHA-256 of a TuningRecord JSON's trace: ktune's configuration."""
    return hashlib.sha256(_canonical(record_json[0]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Lookup:
    """What a target-aware query found (``level`` NONE: nothing, both records None)."""

    record: Optional[TuningRecord]  # TVM's record, its trace replayed on the queried module
    ktune_record: Optional[Record]  # the ktune record it came from
    level: MatchLevel  # which of ktune's levels answered


@derived_object
class Database(PyDatabase):
    """A MetaSchedule database whose records live in a ktune server.

    Args:
        client: a :class:`ktune.Client`, or the server's ``host:port`` (a client is made, with a
            receive limit of 256 MiB, since records carry their workload's JSON).
        target: the target tuning commits for; ``get_top_k`` and ``has_workload``, which TVM
            calls without a target, answer for it (else for the target of the last record
            committed; before any, ``get_top_k`` finds nothing in ktune).
        device: the machine records are measured on, part of the exact fingerprint (default
            :func:`local_device`).
        candidates: how many of the best records a query tries, best first, until one's trace
            replays on the workload (a trace from another target of the same kind may not).
        export_timeout: seconds a full export (``len()``, ``get_all_tuning_records``) may take
            (default: the client's timeout, at least 120; none when the client has none).

    Every call goes to the server (nothing is cached but Workload objects): what another
    process committed is seen at once. Errors are :class:`ktune.KtuneError`, raised into TVM;
    the methods TVM's Database interface dispatches through its FFI (``get_top_k``,
    ``has_workload``, ``commit_*``, ``len()``, ``compile_tir``...) reach the caller as TVM's
    ``RuntimeError`` with the KtuneError's text ("QueryBest: UNAVAILABLE: ..."); :meth:`lookup`
    raises the KtuneError itself. A target may be a ``Target``, its dict, or a tag TVM knows
    (``"nvidia/nvidia-a100"``); TVM 0.27 refuses the older string form ``"llvm -mcpu=..."``.
    """

    def __init__(self, client: Union[Client, str], *,
                 target: Union[Target, dict, str, None] = None,
                 device: Optional[str] = None, candidates: int = 8,
                 export_timeout: Optional[float] = None) -> None:
        super().__init__()
        if isinstance(client, str):
            client = Client(client, options=[("grpc.max_receive_message_length", _RECEIVE_LIMIT)])
        if not isinstance(client, Client):  # it failed at the first lookup, inside TVM
            raise TypeError(f"client must be a ktune.Client or 'host:port', not "
                            f"{type(client).__name__}")
        self.client = client
        # The bound of a full export (len(), get_all_tuning_records): given, or the client's
        # timeout but at least 2 minutes (a compiler's short timeout for lookups is not one for
        # reading every record); none when the client has none.
        if export_timeout is None and client.timeout is not None:
            export_timeout = max(client.timeout, 120.0)
        self.export_timeout = export_timeout
        self.device = device or local_device()
        self.target = _as_target(target) if target is not None else None
        self.candidates = max(1, min(candidates, _MAX_TOP))
        self._lock = threading.Lock()
        self._workloads: dict[str, Workload] = {}  # kernel -> the first Workload committed

    # --- workloads (kept with each record in ktune; here only the objects TVM handed out) ---

    def has_workload(self, mod: IRModule) -> bool:
        """Committed here, or ktune holds an ok record of it for the database's target."""
        kernel = workload_kernel(mod)
        with self._lock:
            if kernel in self._workloads:
                return True
        return self.target is not None and self._best(kernel, self.target, 1).records != []

    def commit_workload(self, mod: IRModule) -> Workload:
        """The Workload of ``mod``: the first one committed here for its hash. Nothing is written
        to ktune: each record carries its workload."""
        kernel = workload_kernel(mod)
        with self._lock:
            return self._workloads.setdefault(kernel, Workload(mod))

    # --- records ---

    def commit_tuning_record(self, record: TuningRecord) -> None:
        """Stores one record in ktune (one ImportRecords call: durable when this returns)."""
        if record.target is not None:
            self.target = record.target
        self.client.import_records([self.to_ktune(record)])

    def to_ktune(self, record: TuningRecord) -> Record:
        """The ktune record of a TVM record (see the module doc)."""
        if record.target is None:
            raise ValueError("a TuningRecord without a target cannot be stored in ktune")
        record_json = record.as_json()
        run_secs = [float(s) for s in (record_json[1] or [])]
        ok = any(s != FAILED_RUN_SECS for s in run_secs)
        times = [s * 1e3 for s in run_secs] if ok else []
        kernel = workload_kernel(record.workload.mod)
        device = target_device(record.target, self.device)
        payload = _canonical({"workload": record.workload.as_json(), "record": record_json})
        return Record(
            task=Task(kernel, {}, device.device_class), device=device,
            config={"trace": trace_hash(record_json)},
            status=Status.OK if ok else Status.RUNTIME_ERROR,
            time_ms=statistics.fmean(times) if ok else None,
            repeat_times_ms=tuple(times),
            median_ms=statistics.median(times) if ok else None,
            min_ms=min(times) if ok else None,
            stddev_ms=(statistics.stdev(times) if len(times) > 1 else 0.0) if ok else None,
            message="" if ok else "TVM recorded no run time (the candidate failed to build or run)",
            measured_at=datetime.now(timezone.utc), source=SOURCE, payload=payload)

    def from_ktune(self, record: Record, workload: Optional[Workload] = None) -> TuningRecord:
        """The TVM record a ktune record holds. Its trace is replayed on ``workload`` (default:
        the workload stored with it); ValueError when it does not replay."""
        payload = json.loads(record.payload)
        if workload is None:
            with self._lock:
                workload = self._workloads.get(record.kernel)
            if workload is None:
                workload = Workload.from_json(payload["workload"])
                with self._lock:
                    workload = self._workloads.setdefault(record.kernel, workload)
        return TuningRecord.from_json(payload["record"], workload)

    def get_top_k(self, workload: Workload, top_k: int) -> list[TuningRecord]:
        """The best ``top_k`` (at most 100) ok records of ``workload`` for the database's target,
        best first, one per trace; records whose trace does not replay are left out."""
        if top_k <= 0 or self.target is None:
            return []
        kernel = workload_kernel(workload.mod)
        out = []
        for r in self._best(kernel, self.target, min(top_k, _MAX_TOP)).records:
            try:
                out.append(self.from_ktune(r, workload))
            except Exception:  # noqa: BLE001 - a trace of another target that does not replay
                continue
        return out

    def _tvm_records(self) -> list[Record]:
        # Bounded (export_timeout): a stream has no deadline of its own, and len() of a Database
        # hung for as long as a stalled server stayed stalled (a compiler-integration trial).
        return [r for r in self.client.export_records(timeout=self.export_timeout)
                if r.kernel.startswith(KERNEL_PREFIX) and r.payload]

    def get_all_tuning_records(self) -> list[TuningRecord]:
        """Every TVM record the server holds, any target, ok or failed (one full export, within
        ``export_timeout``)."""
        return [self.from_ktune(r) for r in self._tvm_records()]

    def __len__(self) -> int:
        """How many TVM records the server holds (one full export, within
        ``export_timeout``)."""
        return len(self._tvm_records())

    # --- queries that honour the target ---

    def _best(self, kernel: str, target: Target, top: int,
              after_level: Optional[MatchLevel] = None) -> BestResult:
        """QueryBest at the measured levels only (ktune predicts nothing for these kernels),
        after ``after_level`` when given."""
        answer = self.client.best(kernel, {}, target_device(target, self.device), top=top,
                                  after_level=after_level)
        return answer if answer.level in _MEASURED else BestResult(MatchLevel.NONE, [])

    def lookup(self, mod: IRModule, target: Target) -> Lookup:
        """The best record of ``mod`` for ``target``: exact (this target on this device), else
        the device class, else the family (the target's kind); the first of the best
        ``candidates`` whose trace replays on ``mod``. ``level`` is NONE when none does."""
        # The caller's module, so that the schedule is built on it (TVM's default uses the stored
        # one, structurally equal).
        target = _as_target(target)
        kernel, workload = workload_kernel(mod), Workload(mod)
        after: Optional[MatchLevel] = None
        # Level by level: when no candidate of a level replays (another TVM build, an intrinsic
        # missing here), the next level's (they were never asked, and compile_tir got nothing).
        while True:
            tried = 0
            level = MatchLevel.NONE
            # The best alone first (each record carries its workload's JSON), the others only
            # when its trace does not replay.
            for top in sorted({1, self.candidates}):
                answer = self._best(kernel, target, top, after)
                level = answer.level
                for r in answer.records[tried:]:
                    try:
                        return Lookup(self.from_ktune(r, workload), r, answer.level)
                    except Exception:  # noqa: BLE001 - does not replay here: try the next
                        continue
                tried = len(answer.records)
                if tried < top:
                    break
            if level not in (MatchLevel.EXACT, MatchLevel.DEVICE_CLASS):
                return Lookup(None, None, MatchLevel.NONE)
            after = level

    def query_tuning_record(self, mod: IRModule, target: Target,
                            workload_name: Optional[str] = None) -> Optional[TuningRecord]:
        return self.lookup(mod, target).record

    def query_schedule(self, mod: IRModule, target: Target,
                       workload_name: Optional[str] = None) -> Optional[Schedule]:
        record = self.query_tuning_record(mod, target, workload_name)
        if record is None:
            return None
        sch = Schedule(mod, seed=None, debug_mask=0, error_render_level="detail")
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        return sch

    def query_ir_module(self, mod: IRModule, target: Target,
                        workload_name: Optional[str] = None) -> Optional[IRModule]:
        sch = self.query_schedule(mod, target, workload_name)
        return None if sch is None else sch.mod
