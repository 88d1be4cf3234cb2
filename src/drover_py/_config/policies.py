"""The built-in restart policy (opt-in) and its pure decision logic."""

from __future__ import annotations

import collections
from typing import Literal

import attrs

from .._checks import check_count, check_seconds
from .._exceptions import ConfigError
from .._exit_reasons import AbnormalExit, ExitReason, NormalExit


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(f"restart.{attribute.name}", value)


def _optional_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value != 0:
        check_seconds(f"restart.{attribute.name}", value)


def _count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_count(value, f"restart.{attribute.name}")


def _when(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ("on-failure", "always"):
        raise ConfigError("restart.when", f"expected 'on-failure' or 'always', got {value!r}")


def _codes(_: object, attribute: attrs.Attribute[frozenset[int]], value: frozenset[int]) -> None:
    if not all(isinstance(code, int) and not isinstance(code, bool) and code > 0 for code in value):
        raise ConfigError("restart.halt_codes", f"expected positive exit codes, got {sorted(value)!r}")


def _backoff(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if check_seconds("restart.backoff", value) < 1:
        raise ConfigError("restart.backoff", f"must be >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RestartPolicy:
    """Restart crashed workers automatically; pass as ``MasterFactory.create(restart=...)``.

    Without a policy (the default) drover's rule holds: your "worker-exit" handler
    decides. With one, a worker that exits without the master asking is restarted in its
    slot after a delay: ``delay`` for the first restart of a slot, times ``backoff`` for
    each further consecutive one, capped at ``max_delay``; a worker that ran for
    ``reset_after`` seconds resets its slot's streak. ``when="on-failure"`` leaves
    workers that exited with code 0 alone; ``"always"`` restarts them too.

    An exit code in ``halt_codes`` (default 3, gunicorn's and uvicorn's "cannot boot")
    means the worker cannot start at all: the master gives up at once instead of
    looping.

    Intensity limit (OTP's MaxR/MaxT, cluster-service's restartsPerMinute): more than
    ``max_restarts`` restarts within ``within`` seconds, across all slots, and the
    master gives up: it stops restarting, emits "restarts-exhausted" and
    `Master.supervise` raises `RestartLimitError`. Workers still running are kept.
    """

    when: Literal["on-failure", "always"] = attrs.field(default="on-failure", validator=_when)
    delay: float = attrs.field(default=0.1, validator=_optional_seconds)
    backoff: float = attrs.field(default=2.0, validator=_backoff)
    max_delay: float = attrs.field(default=30.0, validator=_seconds)
    reset_after: float = attrs.field(default=30.0, validator=_seconds)
    max_restarts: int = attrs.field(default=10, validator=_count)
    within: float = attrs.field(default=60.0, validator=_seconds)
    halt_codes: frozenset[int] = attrs.field(default=frozenset({3}), converter=frozenset, validator=_codes)


@attrs.frozen
class Restart:
    """Restart the worker after ``delay`` seconds."""

    delay: float


@attrs.frozen
class GiveUp:
    """The intensity limit tripped; ``why`` says how."""

    why: str


@attrs.frozen
class Leave:
    """The policy does not restart this exit (a clean exit under "on-failure")."""


Decision = Restart | GiveUp | Leave


class RestartTracker:
    """Apply a `RestartPolicy` to a stream of exits. Pure: the caller supplies the time."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._history: collections.deque[float] = collections.deque()
        self._streaks: dict[int, int] = {}

    def decide(self, *, now: float, slot: int, reason: ExitReason | None, uptime: float) -> Decision:
        """Return what to do about a worker of ``slot`` that ended after ``uptime`` seconds.

        ``reason`` is None when the replacement itself failed to start.
        """
        policy = self.policy
        if policy.when == "on-failure" and isinstance(reason, NormalExit):
            return Leave()
        if isinstance(reason, AbnormalExit) and reason.payload.code in policy.halt_codes:
            return GiveUp(f"slot {slot} exited with code {reason.payload.code}, which means it cannot start")
        if uptime >= policy.reset_after:
            self._streaks[slot] = 0
        while self._history and self._history[0] <= now - policy.within:
            self._history.popleft()
        if len(self._history) >= policy.max_restarts:
            return GiveUp(
                f"more than {policy.max_restarts} restarts within {policy.within:g} s "
                f"(slot {slot}: {reason if reason is not None else 'replacement failed to start'})"
            )
        self._history.append(now)
        streak = self._streaks.get(slot, 0) + 1
        self._streaks[slot] = streak
        return Restart(min(policy.max_delay, policy.delay * policy.backoff ** (streak - 1)))


def _optional_positive(_: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None:
        check_seconds(f"recycle.{attribute.name}", value)


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError("recycle.jitter", f"expected a fraction in [0, 1), got {value!r}")


def _rss(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError("recycle.max_rss", f"expected a number of bytes >= 1, got {value!r}")


@attrs.frozen(kw_only=True)
class RecyclePolicy:
    """Replace healthy workers gracefully when they get old or fat (opt-in).

    Pass as ``MasterFactory.create(recycle=...)``. A worker is replaced (replacement
    first, then a graceful stop, as `Master.restart_worker_by_id` does) once it has run
    ``max_age`` seconds, each worker's age spread by up to ``jitter`` (a fraction) so
    they do not all roll at once; or once its resident memory, read from /proc every
    ``check_interval`` seconds, exceeds ``max_rss`` bytes.
    """

    max_age: float | None = attrs.field(default=None, validator=_optional_positive)
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    max_rss: int | None = attrs.field(default=None, validator=_rss)
    check_interval: float = attrs.field(default=10.0, validator=_seconds)
