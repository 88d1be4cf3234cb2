"""Exceptions raised by drover-py.

This module is imported by the child side too, so it stays free of attrs and structlog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._exit_reasons import ExitReason, StartTimeout
    from ._reports import ReloadReport


class DroverError(Exception):
    """Base class of every error drover-py raises on purpose."""


class ConfigError(DroverError, ValueError, TypeError):
    """An option given to `MasterFactory.create` is missing, of the wrong type or out of range.

    ``option`` names the offending option.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"option {option!r}: {message}")
        self.option = option


class ConfigFileError(ConfigError):
    """A configuration file (``drover-py up``'s ``drover.toml``) is not valid; nothing was started.

    The message is one line: ``FILE:LINE: KEY: what was expected``. ``path`` is the file
    as it was named, ``line`` the line of the key (or of its app's table; None when it is
    not known), ``column`` the column of a syntax error (else None), ``key`` the key path
    (``apps.web.workers``; also ``option``; "" for the file as a whole).
    """

    def __init__(self, path: str, line: int | None, key: str, message: str, *, column: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}" if column is None else f"{path}:{line}:{column}"
        DroverError.__init__(self, f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.option = key
        self.path = path
        self.line = line
        self.column = column
        self.key = key


class BindError(DroverError):
    """A listening socket of the ``bind`` option could not be created (names the address)."""


class StateError(DroverError):
    """The operation does not fit the master's (or the bus's) current state.

    Examples: ``start()`` called twice, any operation after a shutdown, or a master used
    outside its ``async with`` block.
    """


class OperationInterruptedError(StateError):
    """A lifecycle operation was cut short by a shutdown of its master.

    Whatever the operation had started was undone (its new workers were stopped).
    """


class UnknownWorkerError(DroverError, LookupError):
    """No worker with this id is known to the master (never was, or already retired)."""

    def __init__(self, worker_id: int) -> None:
        super().__init__(f"no worker with id {worker_id}")
        self.worker_id = worker_id


class WorkerStartError(DroverError):
    """A worker did not reach "started"; the operation that spawned it was undone.

    ``reason`` is the worker's exit reason (an `ExitReasons.ExitReason`), a
    `StartTimeout` when it missed ``start_timeout``, or ``None`` when the process could
    not be spawned at all (then ``__cause__`` holds the `OSError`). ``stderr_tail`` is
    the worker's last lines of stderr (at most 20 lines, 4 KiB; "" if it wrote none).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: ExitReason | StartTimeout | None,
        worker_id: int,
        slot: int,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.worker_id = worker_id
        self.slot = slot
        self.stderr_tail = stderr_tail


class SpawnError(WorkerStartError):
    """The worker process could not be created (``__cause__`` is the `OSError`)."""


class PreloadError(SpawnError):
    """The preload template could not fork the worker.

    It failed to import a module, a preloaded module started a thread, it missed
    ``start_timeout``, or it died. The message says which; ``__cause__`` is the
    underlying `OSError`. The next spawn starts a new template.
    """


class StartTimeoutError(WorkerStartError):
    """A worker did not send "started" within ``start_timeout`` seconds."""


class ReloadError(WorkerStartError):
    """A graceful reload (or upgrade) failed and was rolled back.

    ``reason`` is that of the replacement that failed; the master is left with its old
    configuration and ``count`` workers of it. ``report`` (a `ReloadReport`, or None)
    says which slots had switched (to which pids, how fast), whether the canary passed,
    and how long it all took; ``__cause__`` is the `WorkerStartError` of the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: ExitReason | StartTimeout | None,
        worker_id: int,
        slot: int,
        stderr_tail: str = "",
        report: ReloadReport | None = None,
    ) -> None:
        super().__init__(message, reason=reason, worker_id=worker_id, slot=slot, stderr_tail=stderr_tail)
        self.report = report


class RestartLimitError(DroverError):
    """The restart policy gave up: too many restarts in too short a time."""


class DeploymentError(DroverError):
    """An app of a deployment (`Deployment`) failed; the message begins with its name.

    It could not start (what the same call had started was stopped, in reverse order),
    a ``kind = "once"`` app did not exit 0, its restart policy gave up, or a change of
    `Deployment.update` could not be applied. ``app`` names the app; ``__cause__`` is
    its own error (a `WorkerStartError`, a `BindError`, ...) when it has one.
    """

    def __init__(self, app: str, message: str) -> None:
        super().__init__(f"{app}: {message}")
        self.app = app


class ProtocolError(DroverError):
    """Bytes on a drover channel do not form a valid message.

    Raised for malformed JSON, an unknown message type, a message that is not allowed in
    the direction it travels, or a frame larger than the size limit.
    """


class ChannelError(DroverError):
    """The child has no usable channel to its master.

    Raised by `MessageBus()` when the script runs outside a drover-py master, and by a
    send when the master is gone.
    """


class RequestError(DroverError):
    """A request over the channel (`MessageBus.request`, `Master.request`) failed."""


class RemoteError(RequestError):
    """The handler on the other side raised, or there was no handler for the name.

    ``error_type`` is the name of the remote exception's class ("NoHandler" when no
    handler was registered for the request's name) and ``remote_message`` its text.
    """

    def __init__(self, name: str, error_type: str, remote_message: str) -> None:
        super().__init__(f"request {name!r} failed remotely: {error_type}: {remote_message}")
        self.name = name
        self.error_type = error_type
        self.remote_message = remote_message


class RequestTimeoutError(RequestError, TimeoutError):
    """No response to a request arrived within its timeout."""


class PeerGoneError(RequestError, ChannelError):
    """The other side of the channel went away (the worker exited, or the master did).

    Raised to every pending request and blocked send at once, so no caller waits for a
    response that cannot come.
    """
