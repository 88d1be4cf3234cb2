"""The built-in restart policy (opt-in) and its pure decision logic."""

from __future__ import annotations

import collections
from typing import Literal

import attrs

from ._config import check_count, check_seconds
from ._exceptions import ConfigError
from ._exit_reasons import ExitReason, NormalExit


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
