"""ktune: the Python client of the ktune kernel-autotuning service.

    import ktune
    client = ktune.Client("127.0.0.1:7470")
    answer = client.best("gemm", {"M": 512, "N": 512, "K": 512}, "cpu:AMD EPYC 7B13")

:class:`Client` wraps the ktune.v1 TuningService (queries, tuning, jobs, records);
:mod:`ktune.kernel_tuner` holds a Kernel Tuner strategy backed by a ktune server. Errors are
:class:`KtuneError` subclasses carrying the gRPC code and ktune's message.
"""

from ktune.client import Client
from ktune.errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition,
                          Internal, InvalidArgument, KtuneError, NotFound, PermissionDenied,
                          ResourceExhausted, Unauthenticated, Unavailable)
from ktune.types import (STRATEGIES, BestResult, Device, ImportResult, Job, JobEvent, JobSpec,
                         JobState, KernelInfo, MatchLevel, Record, Status, Task, TaskProgress,
                         TradeOff, TuneEvent, WorkerInfo, parse_params)

__version__ = "0.1.0"

__all__ = [
    "Client", "KtuneError", "InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied",
    "Unauthenticated", "ResourceExhausted", "FailedPrecondition", "Unavailable",
    "DeadlineExceeded", "Cancelled", "Internal", "BestResult", "Device", "ImportResult", "Job",
    "JobEvent", "JobSpec", "JobState", "KernelInfo", "MatchLevel", "Record", "Status", "Task",
    "TaskProgress", "TradeOff", "TuneEvent", "WorkerInfo", "STRATEGIES", "parse_params",
    "__version__",
]
