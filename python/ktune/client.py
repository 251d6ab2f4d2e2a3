"""The ktune client: a small typed API over the ktune.v1 gRPC services.

    import ktune
    with ktune.Client("127.0.0.1:7470") as client:
        answer = client.best("gemm", {"M": 512, "N": 512, "K": 512}, "cpu:AMD EPYC 7B13")
        print(answer.level, answer.config, answer.best.time_ms if answer.best else None)

Every method raises a :class:`ktune.KtuneError` subclass carrying the gRPC code and ktune's
message when the call fails. Unary calls use the client's default ``timeout`` (seconds) unless
given one; streams (watch, tune, export, import) have no deadline unless given one.
"""

from __future__ import annotations

import json
import numbers
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import grpc
from google.protobuf import json_format

from ktune.errors import Cancelled, FailedPrecondition, KtuneError, from_rpc_error
from ktune.types import (BestResult, Device, DeviceLike, ImportResult, Job, JobEvent, JobSpec, JobState,
                         KernelInfo, MatchLevel, ParamMap, Record, Task, TradeOff, TuneEvent,
                         WorkerInfo, canonical_json, device_to_proto, params_to_proto,
                         parse_params, plain_dict, problem_to_proto, strategy_to_proto,
                         time_error_trade_offs)
from ktune.v1 import tuning_service_pb2 as ts
from ktune.v1 import tuning_service_pb2_grpc as ts_grpc
from ktune.v1 import types_pb2 as tp
from ktune.v1 import worker_service_pb2_grpc as ws_grpc

ProblemLike = Union[Mapping[str, Union[int, float, str]], str]

_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def _pem(value: Union[None, bytes, str, os.PathLike]) -> Optional[bytes]:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _problem(problem: Optional[ProblemLike]) -> ParamMap:
    if problem is None:
        return {}
    return parse_params(problem) if isinstance(problem, str) else dict(problem)


def _json_number(value):
    """json.dumps's fallback for a job spec dict: numpy's scalars and arrays as JSON numbers and
    lists (a ktune.JobSpec takes them); TypeError naming anything else."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"the job spec holds a {type(value).__name__}, which JSON cannot carry")


def _lookup(request, kernel: str, kernel_version: str, problem: Optional[ProblemLike],
            device: DeviceLike, max_rel_error: Optional[float]):
    """Fills the task, device and budget fields that QueryBest and Explain requests share."""
    if not isinstance(kernel, str):  # protobuf's own error: "bad argument type for built-in operation"
        raise TypeError(f"kernel must be a kernel name (str), not {type(kernel).__name__}")
    request.kernel.name = kernel
    request.kernel.version = kernel_version
    problem_to_proto(_problem(problem), request.problem.params)
    device_to_proto(device, request.device)
    if max_rel_error is not None:
        request.max_rel_error = _max_rel_error(max_rel_error)
    return request


def _max_rel_error(value) -> float:
    """An accuracy budget as a float; TypeError naming the argument (protobuf's named none)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"max_rel_error must be a number, not {type(value).__name__}")
    return float(value)


def _check_timeout(timeout) -> None:
    """None, or seconds: TypeError naming the argument (gRPC's was "unsupported operand")."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")


def _warn_if_cli_device_name(device: DeviceLike, found: bool) -> None:
    """``"cpu"`` is the CLI's name for the machine it runs on (``--device cpu``), not a device
    class: a query for it that found nothing says what to ask instead (it answered nothing, as
    for a task never tuned)."""
    if device == "cpu" and not found:
        warnings.warn("device 'cpu' is the ktune CLI's name for the machine it runs on; the "
                      "server knows CPUs by their class, such as 'cpu:AMD EPYC' (Client.workers() "
                      "lists the connected workers' classes; ktune db stats and ktune best print "
                      "them)", stacklevel=3)


# The keys of a telemetry sample, as ``ktune telemetry report``'s JSONL lines have them (the same
# list as SampleFromJson's in cli/telemetry_commands.cc).
_TELEMETRY_KEYS = frozenset({"kernel", "problem", "device", "config", "times_ms", "count",
                             "mean_ms", "stddev_ms", "histogram", "window_start", "window_end"})


def _telemetry_sample_to_proto(index: int, sample: Mapping, m) -> None:
    """Fills a TelemetrySample from one dict of :meth:`Client.report_telemetry`; ValueError or
    TypeError naming the sample (0-based) and the key when it cannot."""
    def fail(key: str, why: str):
        raise ValueError(f"telemetry sample {index}: {key}: {why}")

    def real(key: str, value) -> float:  # True is an int to Python, and "3" converts
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            fail(key, f"a number, not {value!r}")
        return float(value)

    def whole(key: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail(key, f"a whole number, not {value!r}")
        return int(value)

    if not isinstance(sample, Mapping):
        raise TypeError(f"telemetry sample {index}: a dict, not {type(sample).__name__}")
    unknown = sorted(set(sample) - _TELEMETRY_KEYS)
    if unknown:  # a misspelt key (stdev_ms) was ignored, its meaning stored as the default
        fail(unknown[0], f"unknown key (the keys: {', '.join(sorted(_TELEMETRY_KEYS))})")
    for key in ("kernel", "device"):
        if key not in sample:
            fail(key, "missing")
    if not isinstance(sample["kernel"], str):
        fail("kernel", f"a kernel name (str), not {type(sample['kernel']).__name__}")
    m.kernel.name = sample["kernel"]
    problem_to_proto(_problem(sample.get("problem")), m.problem.params)
    device = sample["device"]
    if isinstance(device, Mapping):  # the JSONL form: {"class": ..., "fingerprint": {...}}
        if not isinstance(device.get("class"), str):
            fail("device", 'a device class, or {"class": ..., "fingerprint": {...}}')
        m.device.device_class = device["class"]
        if "fingerprint" in device:
            m.device.extra["fingerprint_json"] = canonical_json(device["fingerprint"])
    else:
        device_to_proto(device, m.device)
    params_to_proto(sample.get("config"), m.config.params)
    forms = [f for f in ("histogram", "times_ms", "count") if f in sample]
    if len(forms) != 1:
        fail("times_ms", "give exactly one of times_ms, count + mean_ms, or histogram"
             + (f" (got {', '.join(forms)})" if forms else ""))
    try:
        if forms[0] == "histogram":
            histogram = sample["histogram"]
            m.histogram.upper_bounds_ms.extend(
                real("histogram", b) for b in histogram["upper_bounds_ms"])
            m.histogram.counts.extend(whole("histogram", c) for c in histogram["counts"])
        elif forms[0] == "times_ms":
            times = sample["times_ms"]
            # Any iterable of numbers (a list, a numpy array), not text.
            times = [] if isinstance(times, (str, bytes)) else list(times)
            if not times:
                fail("times_ms", f"a non-empty list of times, not {sample['times_ms']!r}")
            m.times_ms.extend(real("times_ms", t) for t in times)
        else:
            if "mean_ms" not in sample:
                fail("mean_ms", "missing (count needs mean_ms)")
            m.count = whole("count", sample["count"])
            m.mean_ms = real("mean_ms", sample["mean_ms"])
            m.stddev_ms = real("stddev_ms", sample.get("stddev_ms", 0.0))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith("telemetry sample"):
            raise
        fail(forms[0], f"not readable ({type(e).__name__}: {e})")
    for key, field in (("window_start", m.window_start), ("window_end", m.window_end)):
        if sample.get(key) is None:
            continue
        when = sample[key]
        if isinstance(when, str):
            try:
                when = datetime.fromisoformat(when.replace("Z", "+00:00"))
            except ValueError:
                fail(key, f"not ISO 8601 ({when!r})")
        if not isinstance(when, datetime):
            fail(key, f"ISO 8601 text or a datetime, not {type(when).__name__}")
        if when.tzinfo is None:
            fail(key, "no time zone (give +00:00 or an aware datetime)")
        field.FromDatetime(when.astimezone(timezone.utc))


# Reconnecting after a lost connection: from 250 ms, at most 2 s apart.
_RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250),
                      ("grpc.max_reconnect_backoff_ms", 2000))


class Client:
    """A connection to a ktune server (``ktune serve``).

    Args:
        address: ``host:port`` of the server (``ktune serve --listen``; default 127.0.0.1:7470).
        token: bearer token for a server started with ``--auth`` (sent as
            ``authorization: Bearer <token>`` metadata, as the CLI does); default: ``$KTUNE_TOKEN``
            if set, else none.
        tls: connect with TLS. ``root_certificates`` (PEM bytes or a path; the CLI's --tls-ca)
            is the CA to trust, else the system's; ``certificate_chain`` and ``private_key`` (the
            CLI's --tls-cert / --tls-key) present a client certificate for mutual TLS.
        timeout: default deadline of unary calls, in seconds.
        options: extra gRPC channel options. By default a lost connection is tried again
            within 2 s (``grpc.max_reconnect_backoff_ms``; gRPC's own default grows to 120 s,
            so a server back after an 80 s restart was not reached for another 42 s); an option
            given here wins.

    The client is thread-safe (one gRPC channel); close it, or use it as a context manager.
    """

    def __init__(self, address: str = "127.0.0.1:7470", token: Optional[str] = None,
                 tls: bool = False, *, root_certificates=None, certificate_chain=None,
                 private_key=None, timeout: float = 30.0,
                 options: Sequence[tuple[str, object]] = ()) -> None:
        if not isinstance(address, str):  # gRPC's own: AttributeError 'encode'
            raise TypeError(f"address must be 'host:port' (str), not {type(address).__name__}")
        _check_timeout(timeout)  # None: unary calls have no deadline either
        if token is None:
            token = os.environ.get("KTUNE_TOKEN") or None
        if token is not None:
            # A token read from a file ends with a newline, which gRPC refuses on every call
            # ("Illegal header value", raised as INTERNAL): surrounding whitespace is dropped.
            token = token.strip()
            if not token.isascii() or not token.isprintable():
                raise ValueError("token: printable ASCII only (a bearer token, as ktune serve "
                                 "--auth's tokens file holds it)")
        self.address = address
        self._closed = False
        given = {name for name, _ in options}
        options = [*(o for o in _RECONNECT_OPTIONS if o[0] not in given), *options]
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_pem(root_certificates), private_key=_pem(private_key),
                certificate_chain=_pem(certificate_chain))
            self._channel = grpc.secure_channel(address, credentials, options=list(options))
        else:
            if root_certificates or certificate_chain or private_key:
                raise ValueError("certificates given but tls=False")
            self._channel = grpc.insecure_channel(address, options=list(options))
        self._tuning = ts_grpc.TuningServiceStub(self._channel)
        self._worker = ws_grpc.WorkerServiceStub(self._channel)
        self._health = self._channel.unary_unary(_HEALTH_CHECK)  # raw bytes in and out

    # --- plumbing ---

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled, and later calls raise
        :class:`ktune.FailedPrecondition`."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, name: str, method, request, timeout: Optional[float] = None,
               default_deadline: bool = True):
        """Calls an RPC with one answer; a failure becomes a KtuneError. ``timeout`` None: the
        client's default, or none when not ``default_deadline`` (a client stream)."""
        if timeout is None and default_deadline:
            timeout = self.timeout
        _check_timeout(timeout)
        self._check_open(name)
        try:
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, name) from None

    def _stream(self, name: str, method, request, timeout: Optional[float] = None) -> Iterator:
        """Iterates a server stream; a failure becomes a KtuneError; leaving early cancels it."""
        _check_timeout(timeout)
        self._check_open(name)
        call = method(request, timeout=timeout, metadata=self._metadata)
        try:
            for message in call:
                yield message
        except grpc.RpcError as e:
            raise from_rpc_error(e, name) from None
        finally:
            call.cancel()

    def _check_open(self, name: str) -> None:
        if self._closed:  # gRPC's own: a bare ValueError ("Cannot invoke RPC on closed channel!")
            raise FailedPrecondition(grpc.StatusCode.FAILED_PRECONDITION,
                                     "this client was closed; make a new ktune.Client", name)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; :class:`ktune.Unavailable` after ``timeout``."""
        self._check_open("connect")
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            from ktune.errors import Unavailable
            raise Unavailable(grpc.StatusCode.UNAVAILABLE,
                              f"no ktune server answered at {self.address} within {timeout} s",
                              "connect") from None

    def ping(self, timeout: Optional[float] = None) -> bool:
        """The standard gRPC health check (an empty RPC): True when the server is SERVING."""
        reply = self._unary("Health.Check", self._health, b"", timeout)
        return reply == b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    # --- queries ---

    def best(self, kernel: str, problem: ProblemLike, device: DeviceLike, top: int = 1, *,
             tune_if_missing: bool = False, kernel_version: str = "",
             max_rel_error: Optional[float] = None,
             after_level: Optional[MatchLevel] = None,
             timeout: Optional[float] = None) -> BestResult:
        """The best known configurations of ``kernel`` for ``problem`` on ``device``.

        ``device`` is a device class (str) or a :class:`ktune.Device` (whose fingerprint makes an
        exact match possible). The server falls back from the exact fingerprint to the device
        class to the architecture family, then to a prediction from the nearest tuned problem;
        ``BestResult.level`` says which answered (:attr:`MatchLevel.NONE` with no records when
        nothing is known). At most ``top`` records (1..100), best first. ``tune_if_missing``
        queues a background job when nothing was measured for the problem on the class (a
        predicted answer too: ``BestResult.queued_job_id``), or says why not in
        ``BestResult.not_queued`` (a token without the submit role, no connected worker of the
        class, as many background jobs queued as the server takes); the answer stands either way.
        ``max_rel_error`` is an accuracy budget: only records whose measured error is known and
        at most this. ``after_level`` (``MatchLevel.EXACT`` or ``DEVICE_CLASS``) answers from the
        levels after it only, for a client whose records at that level do not fit. Served from
        the server's memory.
        """
        # Any integer type (numpy's too: np.int64(3) was "not 3").
        if isinstance(top, bool) or not isinstance(top, numbers.Integral) or not 1 <= top <= 100:
            raise ValueError(f"top must be an int from 1 to 100, not {top!r}")
        top = int(top)
        after = {None: 0, MatchLevel.EXACT: ts.MATCH_LEVEL_EXACT,
                 MatchLevel.DEVICE_CLASS: ts.MATCH_LEVEL_DEVICE_CLASS}
        if after_level not in after:
            raise ValueError(f"after_level must be MatchLevel.EXACT or DEVICE_CLASS, not "
                             f"{after_level!r}")
        request = _lookup(ts.QueryBestRequest(top_k=top, tune_if_missing=tune_if_missing,
                                              after_level=after[after_level]), kernel,
                          kernel_version, problem, device, max_rel_error)
        reply = self._unary("QueryBest", self._tuning.QueryBest, request, timeout)
        _warn_if_cli_device_name(device, found=len(reply.best) > 0)
        return BestResult(MatchLevel._from_proto(reply.level),
                          [Record._from_proto(r) for r in reply.best], reply.queued_job_id,
                          reply.stale, reply.kernel_unknown, reply.not_queued)

    def explain(self, kernel: str, problem: ProblemLike, device: DeviceLike, *,
                kernel_version: str = "", max_rel_error: Optional[float] = None,
                timeout: Optional[float] = None) -> dict:
        """Why a configuration is served (``Explain``): the served record and how many times it
        was measured, the runner-up and whether the gap exceeds the noise, each parameter's
        effect, and for a prediction the tuned neighbour. The ExplainResponse as a dict, as
        ``ktune explain --json`` prints it (:func:`ktune.types.plain_dict`): every field, integers
        as ints, the level as :class:`MatchLevel` names it (``"none"``), records as
        :meth:`Record.to_dict`, None for what is not there (``served`` when nothing is known).
        With ``max_rel_error``, the answer within that accuracy budget, and under ``precision``
        what the budget costs."""
        request = _lookup(ts.ExplainRequest(), kernel, kernel_version, problem, device,
                          max_rel_error)
        reply = self._unary("Explain", self._tuning.Explain, request, timeout)
        _warn_if_cli_device_name(device, found=reply.HasField("served"))
        return plain_dict(reply)

    def pareto(self, kernel: str, problem: ProblemLike, device: DeviceLike, *,
               kernel_version: str = "", timeout: Optional[float] = None) -> list[TradeOff]:
        """The task's time/error trade-off, as ``ktune best --pareto`` shows it: every
        configuration measured with its output's error, fastest first; those with ``on_front``
        are the front (each more accurate than every faster one), from which ``best`` answers
        each accuracy budget. Read from the task's records, a page of 10,000 at a time
        (``ListRecords``, query role, as the CLI reads them); ``device`` names the device class.
        Empty when no record of the task has an error."""
        named = tp.DeviceFingerprint()
        device_to_proto(device, named)  # a TypeError naming anything else
        request = ts.ListRecordsRequest(page_size=10_000)
        Task(kernel, _problem(problem), named.device_class, kernel_version)._to_proto(request.task)
        records: list[Record] = []
        while True:
            page = self._unary("ListRecords", self._tuning.ListRecords, request, timeout)
            records.extend(Record._from_proto(r) for r in page.records)
            if not page.next_page_token:
                _warn_if_cli_device_name(device, found=bool(records))
                return time_error_trade_offs(records)
            request.page_token = page.next_page_token

    def report_telemetry(self, samples: Iterable[Mapping], timeout: Optional[float] = None) -> dict:
        """Reports how configurations ran in production (``ReportTelemetry``, telemetry role).

        Each sample is a dict with the keys of ``ktune telemetry report``'s JSONL lines:
        ``kernel``, ``problem``, ``device`` (a class, a :class:`ktune.Device`, or
        ``{"class": ..., "fingerprint": {...}}``), ``config``, and ``times_ms`` (a list),
        ``count`` + ``mean_ms`` (+ ``stddev_ms``), or ``histogram`` (``{"upper_bounds_ms": [...],
        "counts": [...]}``), and optionally ``window_start`` / ``window_end`` (ISO 8601 text with
        a time zone, or aware datetimes; default: when the server receives it). At most 1,000 a
        call; a sample the client cannot read raises ValueError naming it and its key, one the
        server refuses refuses the call (:class:`ktune.InvalidArgument`); nothing is stored then.
        Returns ``{"accepted": n, "duplicates": d, "late": l, "raised": [drift flags as dicts]}``:
        of the accepted, ``duplicates`` were sent before (same window and times: a retry; not
        counted again) and ``late`` are older than their configuration's newest window (stored,
        not taken for recent times)."""
        request = ts.ReportTelemetryRequest()
        for i, sample in enumerate(samples):
            try:
                _telemetry_sample_to_proto(i, sample, request.samples.add())
            except UnicodeEncodeError as e:  # protobuf's, for a lone surrogate in a str
                raise ValueError(f"telemetry sample {i}: text that is not valid Unicode "
                                 f"({e.reason}: {e.object[e.start:e.end]!r})") from None
        reply = self._unary("ReportTelemetry", self._tuning.ReportTelemetry, request, timeout)
        return {"accepted": reply.accepted, "duplicates": reply.duplicates, "late": reply.late,
                "raised": [self._flag(f) for f in reply.raised]}

    def drift(self, timeout: Optional[float] = None) -> list[dict]:
        """What drift detection flagged (``ListDrift``), oldest first, with the server's action."""
        reply = self._unary("ListDrift", self._tuning.ListDrift, ts.ListDriftRequest(), timeout)
        return [self._flag(f) for f in reply.flags]

    def retune_drift_flag(self, flag_id: int, timeout: Optional[float] = None) -> dict:
        """The go-ahead for a drift flag (``RetuneDriftFlag``, admin role), as ``ktune drift
        retune ID``: the retuning job the ``act`` policy would have queued, whatever the policy.
        Returns the flag, its ``action`` saying "retuning: job N" and ``retune_job_id`` set.
        :class:`ktune.NotFound` for no such flag; :class:`ktune.FailedPrecondition` when no job
        can retune it now (no connected worker that could measure it, a job of it still runs)."""
        if isinstance(flag_id, bool) or not isinstance(flag_id, numbers.Integral):
            raise TypeError(f"flag_id must be an int, not {type(flag_id).__name__}")
        request = ts.RetuneDriftFlagRequest(flag_id=flag_id)
        return self._flag(self._unary("RetuneDriftFlag", self._tuning.RetuneDriftFlag, request,
                                      timeout))

    def _flag(self, flag) -> dict:
        """A drift flag as a dict, as ``ktune drift --json`` prints it (:func:`ktune.types.plain_dict`:
        ``"kind": "regression"``); its suggested command runnable as given (this client's address
        in place of the server's "--server ADDR")."""
        out = plain_dict(flag)
        out["action"] = out["action"].replace("--server ADDR", f"--server {self.address}")
        return out

    def kernels(self, timeout: Optional[float] = None) -> list[KernelInfo]:
        """The server's kernel registry (built-ins and kernels registered by clients)."""
        reply = self._unary("ListKernels", self._tuning.ListKernels, ts.ListKernelsRequest(),
                            timeout)
        return [KernelInfo._from_proto(k) for k in reply.kernels]

    def register_kernel(self, spec: tp.KernelSpec, timeout: Optional[float] = None) -> KernelInfo:
        """Registers a client kernel (admin role). The same spec again is a no-op; another spec
        under an existing name raises :class:`ktune.AlreadyExists`. ``spec`` is a KernelSpec
        message or a dict of its fields (as ``ktune kernels register`` reads the JSON)."""
        if isinstance(spec, Mapping):
            # protobuf's own error for a field of the wrong type ("'str' object cannot be
            # interpreted as an integer") named no field; its JSON parser names it.
            try:
                spec = json_format.ParseDict(dict(spec), tp.KernelSpec())
            except json_format.ParseError as e:
                raise TypeError(f"spec: {e}") from None
        elif not isinstance(spec, tp.KernelSpec):
            raise TypeError(f"spec must be a KernelSpec or a dict, not {type(spec).__name__}")
        reply = self._unary("RegisterKernel", self._tuning.RegisterKernel,
                            ts.RegisterKernelRequest(kernel=spec), timeout)
        return KernelInfo._from_proto(reply)

    def workers(self, timeout: Optional[float] = None) -> list[WorkerInfo]:
        """The workers the server knows, with their state and leases."""
        reply = self._unary("ListWorkers", self._tuning.ListWorkers, ts.ListWorkersRequest(),
                            timeout)
        return [WorkerInfo._from_proto(w) for w in reply.workers]

    # --- tuning ---

    def tune_events(self, kernel: str, problem: ProblemLike, device: DeviceLike, budget: int, *,
                    strategy: Optional[str] = None, seed: int = 0, kernel_version: str = "",
                    max_rel_error: Optional[float] = None,
                    timeout: Optional[float] = None) -> Iterator[TuneEvent]:
        """Tunes one task now (a one-task job on the workers of the device class ``device``, a
        str or a :class:`ktune.Device`, whose class is used),
        yielding progress (at most one event a second) and, last, the event with ``finished``
        set. Needs the submit role. Each event carries the job's id. A RuntimeWarning says when no
        connected worker serves the class (the job then waits until one joins). Leaving the iterator early,
        or a ``timeout`` that passes, closes the stream, and the server then cancels the job (what
        was measured is kept). ``max_rel_error``
        is the accuracy budget: candidates with more error are too_inaccurate, never the best.
        """
        if not isinstance(kernel, str):  # protobuf's own error: "bad argument type ..."
            raise TypeError(f"kernel must be a kernel name (str), not {type(kernel).__name__}")
        if isinstance(device, Device):  # a job runs on a device class's workers
            device = device.device_class
        if not isinstance(device, str):
            raise TypeError(f"device must be a device class (str) or a ktune.Device, not "
                            f"{type(device).__name__}")
        request = ts.TuneRequest(device=device, budget_measurements=budget,
                                 strategy=strategy_to_proto(strategy), seed=seed)
        if max_rel_error is not None:
            request.max_rel_error = _max_rel_error(max_rel_error)
        request.kernel.name = kernel
        request.kernel.version = kernel_version
        problem_to_proto(_problem(problem), request.problem.params)
        # A class no connected worker serves waits without an event: say so, as the CLI does.
        try:
            if not any(w.device.device_class == device and w.state != "lost"
                       for w in self.workers(timeout=timeout or self.timeout)):
                warnings.warn(f"no worker of device class {device!r} is connected to "
                              f"{self.address}; the job waits until one joins",
                              RuntimeWarning, stacklevel=2)
        except KtuneError:
            pass  # the workers cannot be listed (a role, a server gone): the stream will say
        # Arguments are checked above, at the call; the events come as the caller iterates.
        return (TuneEvent._from_proto(e)
                for e in self._stream("Tune", self._tuning.Tune, request, timeout))

    def tune(self, kernel: str, problem: ProblemLike, device: DeviceLike, budget: int, *,
             strategy: Optional[str] = None, seed: int = 0, kernel_version: str = "",
             max_rel_error: Optional[float] = None,
             on_progress: Optional[Callable[[TuneEvent], None]] = None,
             timeout: Optional[float] = None) -> TuneEvent:
        """Like :meth:`tune_events`, calling ``on_progress`` with each event; returns the final
        event (best configuration and time found) of a job that ended done. Raises
        :class:`ktune.Cancelled` when the job was cancelled (by an operator, another client, the
        server shutting down) and :class:`ktune.FailedPrecondition` (code ABORTED) when it
        failed, each with the final event as ``.event`` (what was measured is kept), and
        :class:`ktune.KtuneError` if the stream ends without a final event."""
        last: Optional[TuneEvent] = None
        for event in self.tune_events(kernel, problem, device, budget, strategy=strategy,
                                      seed=seed, kernel_version=kernel_version,
                                      max_rel_error=max_rel_error, timeout=timeout):
            last = event
            if on_progress is not None:
                on_progress(event)
        if last is None or not last.finished:
            raise KtuneError(grpc.StatusCode.UNKNOWN, "the Tune stream closed before its final "
                             "event", "Tune")
        if last.state in (JobState.CANCELLED, JobState.FAILED):
            cancelled = last.state is JobState.CANCELLED
            error = (Cancelled if cancelled else FailedPrecondition)(
                grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.ABORTED,
                f"job {last.job_id} {last.state.value} after {last.measurements_done} of "
                f"{last.budget_measurements} measurements" +
                (f": {last.message}" if last.message else ""), "Tune")
            error.event = last
            raise error
        return last

    # --- jobs ---

    def submit(self, spec: Union[JobSpec, Mapping, str], timeout: Optional[float] = None) -> Job:
        """Submits a fleet job (submit role); returns it (queued) with its tasks.

        ``spec`` is a :class:`ktune.JobSpec`, a dict shaped like ``ktune submit``'s YAML (sent as
        JSON), or the YAML/JSON text itself.
        """
        if isinstance(spec, JobSpec):
            request = ts.SubmitJobRequest(spec=spec._to_proto())
        elif isinstance(spec, str):
            request = ts.SubmitJobRequest(spec_text=spec)
        elif isinstance(spec, Mapping):
            # allow_nan=False: json.dumps writes NaN, which is not JSON, and the server then said
            # "'max_rel_error' has the wrong type (bad conversion)".
            try:
                text = json.dumps(dict(spec), allow_nan=False, default=_json_number)
            except ValueError as e:
                raise ValueError(f"the job spec holds a number JSON cannot (NaN or infinity): {e}") \
                    from None
            request = ts.SubmitJobRequest(spec_text=text)
        else:  # a list read as a dict's items blamed NaN
            raise TypeError(f"spec must be a ktune.JobSpec, a dict or YAML/JSON text, not "
                            f"{type(spec).__name__}")
        return Job._from_proto(self._unary("SubmitJob", self._tuning.SubmitJob, request, timeout))

    def get_job(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """One job with its per-task progress, every task: GetJob lists 4,096 a reply (so that
        each fits gRPC's default 4 MiB), and this reads the pages. ``timeout`` is each page's."""
        request = ts.GetJobRequest(job_id=str(job_id))
        reply = self._unary("GetJob", self._tuning.GetJob, request, timeout)
        while reply.next_task_page_token:
            request.task_page_token = reply.next_task_page_token
            page = self._unary("GetJob", self._tuning.GetJob, request, timeout)
            if not page.tasks:
                break
            reply.tasks.extend(page.tasks)
            reply.next_task_page_token = page.next_task_page_token
        return Job._from_proto(reply)

    def jobs(self, states: Iterable[Union[JobState, str]] = (),
             timeout: Optional[float] = None) -> list[Job]:
        """Every job (newest first; tasks omitted), optionally only those in ``states``
        (:class:`ktune.JobState` values or their names, as ``ktune jobs`` prints them)."""
        out: list[Job] = []
        if isinstance(states, (str, JobState)):
            states = [states]
        request = ts.ListJobsRequest(states=[JobState.of(s)._to_proto() for s in states],
                                     page_size=1000)
        while True:
            reply = self._unary("ListJobs", self._tuning.ListJobs, request, timeout)
            out.extend(Job._from_proto(j) for j in reply.jobs)
            if not reply.next_page_token:
                return out
            request.page_token = reply.next_page_token

    def watch(self, job_id: str, with_tasks: bool = False,
              timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """Follows a job: an event whenever its progress changes (at most one a second), the last
        one when it is done, failed or cancelled (``event.job.state.final``)."""
        request = ts.WatchJobRequest(job_id=str(job_id), with_tasks=with_tasks)
        return (JobEvent._from_proto(e)
                for e in self._stream("WatchJob", self._tuning.WatchJob, request, timeout))

    def wait(self, job_id: str, timeout: Optional[float] = None,
             on_event: Optional[Callable[[JobEvent], None]] = None) -> Job:
        """Watches a job until it ends; returns its final state (with every task, get_job's)."""
        # The events carry tasks only for on_event: the end is read with get_job's pages.
        for event in self.watch(job_id, with_tasks=on_event is not None, timeout=timeout):
            if on_event is not None:
                on_event(event)
            if event.job.state.final:
                break
        return self.get_job(job_id)

    def cancel(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Cancels a job: queued candidates are dropped, leased ones finish and are recorded.
        A job already cancelled is returned as it is; one that ended otherwise (done, failed):
        :class:`ktune.FailedPrecondition`; none: :class:`ktune.NotFound`.
        When the server's database does not store the change within 3 s (another process holds
        it, a full disk), :class:`ktune.Unavailable`: the job is cancelled on the server all the
        same, which stores it once the database takes writes (calling again checks). The same
        holds for :meth:`pause` and :meth:`resume`."""
        return Job._from_proto(self._unary("CancelJob", self._tuning.CancelJob,
                                           ts.CancelJobRequest(job_id=str(job_id)), timeout))

    def pause(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Pauses a queued or running job (no new leases)."""
        return Job._from_proto(self._unary("PauseJob", self._tuning.PauseJob,
                                           ts.PauseJobRequest(job_id=str(job_id)), timeout))

    def resume(self, job_id: str, timeout: Optional[float] = None) -> Job:
        """Resumes a paused job where it stopped."""
        return Job._from_proto(self._unary("ResumeJob", self._tuning.ResumeJob,
                                           ts.ResumeJobRequest(job_id=str(job_id)), timeout))

    # --- records ---

    def export_records(self, task: Optional[Task] = None,
                       timeout: Optional[float] = None) -> Iterator[Record]:
        """Every record the server holds (of ``task`` only, when given), in storage order.
        At most 1,000,000 per call (:class:`ktune.ResourceExhausted` beyond: export per task)."""
        request = ts.ExportRecordsRequest()
        if task is not None:
            if not isinstance(task, Task):  # AttributeError '_to_proto'
                raise TypeError(f"task must be a ktune.Task, not {type(task).__name__}")
            task._to_proto(request.task)
        return (Record._from_proto(r)
                for r in self._stream("ExportRecords", self._tuning.ExportRecords, request, timeout))

    def import_records(self, records: Iterable[Record],
                       timeout: Optional[float] = None) -> ImportResult:
        """Stores records (admin role) in one transaction when the stream ends; records already
        present (same content, hence record_id) are skipped. A record the server refuses
        (e.g. an OK record without a time, or a built-in kernel's configuration outside its
        space) raises :class:`ktune.InvalidArgument`, and one the client cannot encode a
        TypeError; nothing is stored then. A built-in kernel's record is stored under its
        problem with the defaults filled in (``dtype``), as ``best`` asks; a record carrying
        ``stale_before_us`` (an export of a retired record) marks its task stale again. All
        records are encoded
        before the stream opens (memory for as many messages; the server takes at most
        1,000,000 per call)."""
        # Encoded before the stream opens: a record the client cannot encode raises here, before
        # anything is sent (a client stream that fails midway is cancelled, and the server
        # stores what it received before the cancellation).
        messages = []
        for i, r in enumerate(records):
            if not isinstance(r, Record):  # AttributeError '_to_proto'
                raise TypeError(f"records[{i}] must be a ktune.Record, not {type(r).__name__}")
            m = tp.Record()
            r._to_proto(m)
            messages.append(m)
        # A stream: no deadline unless given one (the default unary one, 30 s, ended imports of
        # a few hundred thousand records, which the server takes).
        reply = self._unary("ImportRecords", self._tuning.ImportRecords, iter(messages), timeout,
                            default_deadline=False)
        return ImportResult(reply.records_received, reply.records_added)
