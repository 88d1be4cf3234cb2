"""Typed exit reasons of worker processes, and the pure classifier that makes them.

Public as the namespace ``drover_py.ExitReasons`` (as in drover):
``ExitReasons.NormalExit``, ``ExitReasons.AbnormalExit``, ``ExitReasons.ExternalSignal``,
all subclasses of ``ExitReasons.ExitReason``; usable in annotations too.
"""

from __future__ import annotations

import signal

import attrs

__all__ = [
    "AbnormalExit",
    "ExitPayload",
    "ExitReason",
    "ExternalSignal",
    "NormalExit",
    "StartTimeout",
    "classify",
]


@attrs.frozen
class ExitPayload:
    """What the process's exit status says: one of ``code`` and ``signal`` is set."""

    code: int | None = None
    signal: signal.Signals | None = None


@attrs.frozen
class ExitReason:
    """Why a worker process ended. Base class of the three concrete reasons.

    ``detail`` is set when the master ended the worker on its own judgement (a broken
    channel, a missed heartbeat) and says why; it is None otherwise. ``stderr_tail`` is
    the worker's last lines of stderr (at most 20 lines, 4 KiB; "" if it wrote none); it
    is not part of ``str()``, which stays one line.
    """

    payload: ExitPayload
    detail: str | None = attrs.field(default=None, kw_only=True)
    stderr_tail: str = attrs.field(default="", kw_only=True, repr=False)

    def _with_detail(self, text: str) -> str:
        return text if self.detail is None else f"{text} ({self.detail})"

    @property
    def returncode(self) -> int:
        """Return the status in `subprocess` form: the code, or minus the signal number."""
        if self.payload.signal is not None:
            return -int(self.payload.signal)
        assert self.payload.code is not None
        return self.payload.code


@attrs.frozen
class NormalExit(ExitReason):
    """The process exited with code 0 (``payload.code == 0``)."""

    def __str__(self) -> str:
        return self._with_detail("exited with code 0")


@attrs.frozen
class AbnormalExit(ExitReason):
    """The process exited with a non-zero code (``payload.code``)."""

    def __str__(self) -> str:
        return self._with_detail(f"exited with code {self.payload.code}")


@attrs.frozen
class ExternalSignal(ExitReason):
    """The process was killed by a signal (``payload.signal``, a `signal.Signals`)."""

    def __str__(self) -> str:
        assert self.payload.signal is not None
        return self._with_detail(f"killed by {self.payload.signal.name}")


@attrs.frozen
class StartTimeout:
    """A worker missed its start deadline: it did not send "started" within ``timeout`` s."""

    timeout: float

    def __str__(self) -> str:
        return f"sent no 'started' within {self.timeout:g} s"


def classify(returncode: int, detail: str | None = None, stderr_tail: str = "") -> ExitReason:
    """Turn a `subprocess`-style return code into an `ExitReason` (with ``detail`` and ``stderr_tail``).

    Negative codes are signals. A signal number this platform does not name is reported
    as an `AbnormalExit` carrying the raw (negative) code.
    """
    if returncode == 0:
        return NormalExit(ExitPayload(code=0), detail=detail, stderr_tail=stderr_tail)
    if returncode > 0:
        return AbnormalExit(ExitPayload(code=returncode), detail=detail, stderr_tail=stderr_tail)
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return AbnormalExit(ExitPayload(code=returncode), detail=detail, stderr_tail=stderr_tail)
    return ExternalSignal(ExitPayload(signal=sig), detail=detail, stderr_tail=stderr_tail)


def __dir__() -> list[str]:
    return sorted(__all__)  # what ``drover_py.ExitReasons`` offers, not its imports
