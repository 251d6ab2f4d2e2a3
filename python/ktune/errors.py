"""Exceptions of the ktune client: one class per gRPC status code the server uses.

Every RPC error surfaces as a :class:`KtuneError` (or a subclass) that carries the gRPC status
code (:attr:`KtuneError.code`) and ktune's own message (:attr:`KtuneError.message`), e.g.::

    try:
        client.get_job("424242")
    except ktune.NotFound as e:
        print(e.code, e.message)   # StatusCode.NOT_FOUND  no job 424242

(A task nothing is known about is not an error: ``best`` answers it with ``MatchLevel.NONE``.)
"""

from __future__ import annotations

import grpc


class KtuneError(Exception):
    """An RPC to a ktune server failed.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``).
        message: the server's message (for errors the server raised: ktune's own words, naming
            the field or the state at fault); for transport errors, gRPC's.
        rpc: the method that failed, e.g. ``"QueryBest"``.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, code: grpc.StatusCode, message: str, rpc: str = "") -> None:
        super().__init__(f"{rpc + ': ' if rpc else ''}{code.name}: {message}")
        self.code = code
        self.message = message
        self.rpc = rpc


class InvalidArgument(KtuneError):
    """INVALID_ARGUMENT: a bad request; the message names the field."""


class NotFound(KtuneError):
    """NOT_FOUND: no such job, kernel, kernel version, ..."""


class AlreadyExists(KtuneError):
    """ALREADY_EXISTS: e.g. another kernel spec registered under the same name."""


class PermissionDenied(KtuneError):
    """PERMISSION_DENIED: the token lacks the role the call needs."""


class Unauthenticated(KtuneError):
    """UNAUTHENTICATED: no token, or an unknown one, on a server started with --auth."""


class ResourceExhausted(KtuneError):
    """RESOURCE_EXHAUSTED: a message, stream or quota over its limit."""


class FailedPrecondition(KtuneError):
    """FAILED_PRECONDITION: the call does not fit the state (a job that ended, an expired lease)."""


class Unavailable(KtuneError):
    """UNAVAILABLE: try again later. The server cannot be reached (not started, wrong address, TLS
    mismatch), or it answered but could not finish: a report during its lease's first commit, or a
    cancel, pause or resume in effect on the server that its database has not stored yet."""


class DeadlineExceeded(KtuneError):
    """DEADLINE_EXCEEDED: the call's timeout ran out."""


class Cancelled(KtuneError):
    """CANCELLED: the call was cancelled (by the client, or the server shutting down)."""


class Internal(KtuneError):
    """INTERNAL, DATA_LOSS, UNKNOWN, UNIMPLEMENTED and other server-side failures."""


_BY_CODE: dict[grpc.StatusCode, type[KtuneError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def from_rpc_error(error: grpc.RpcError, rpc: str = "") -> KtuneError:
    """The :class:`KtuneError` subclass for a ``grpc.RpcError`` (keeps its code and details)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    cls = _BY_CODE.get(code, Internal)
    if code == grpc.StatusCode.UNAVAILABLE and details == "Cancelling all calls":
        # gRPC's words for a server that shuts down with calls open (a watch, a tune stream).
        details = ("the server shut down (gRPC: Cancelling all calls); call again once it is "
                   "back: a job's progress is kept")
    return cls(code, details or "", rpc)
