"""RestartTracker: the pure decisions of the built-in restart policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drover_py import ConfigError, RestartPolicy
from drover_py._config.policies import GiveUp, Leave, Restart, RestartTracker
from drover_py._exit_reasons import classify

CRASH = classify(1)
CLEAN = classify(0)


def test_delays_grow_exponentially_and_are_capped() -> None:
    tracker = RestartTracker(RestartPolicy(delay=0.1, backoff=2, max_delay=0.5, max_restarts=100))
    delays = []
    for i in range(6):
        decision = tracker.decide(now=float(i), slot=0, reason=CRASH, uptime=0.01)
        assert isinstance(decision, Restart)
        delays.append(decision.delay)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])


def test_streaks_are_per_slot_and_reset_after_a_stable_run() -> None:
    tracker = RestartTracker(RestartPolicy(delay=1, backoff=3, reset_after=10, max_restarts=100))
    assert tracker.decide(now=0, slot=0, reason=CRASH, uptime=1) == Restart(1)
    assert tracker.decide(now=1, slot=0, reason=CRASH, uptime=1) == Restart(3)
    assert tracker.decide(now=2, slot=1, reason=CRASH, uptime=1) == Restart(1)
    assert tracker.decide(now=30, slot=0, reason=CRASH, uptime=10) == Restart(1)


def test_zero_delay_stays_zero() -> None:
    tracker = RestartTracker(RestartPolicy(delay=0, max_restarts=100))
    assert [tracker.decide(now=i, slot=0, reason=CRASH, uptime=0) for i in range(3)] == [Restart(0)] * 3


def test_on_failure_leaves_clean_exits_and_always_restarts_them() -> None:
    assert RestartTracker(RestartPolicy()).decide(now=0, slot=0, reason=CLEAN, uptime=0) == Leave()
    always = RestartTracker(RestartPolicy(when="always"))
    assert isinstance(always.decide(now=0, slot=0, reason=CLEAN, uptime=0), Restart)


def test_intensity_limit_trips_and_window_slides() -> None:
    tracker = RestartTracker(RestartPolicy(max_restarts=3, within=10, delay=0))
    for now in (0, 1, 2):
        assert isinstance(tracker.decide(now=now, slot=now, reason=CRASH, uptime=0), Restart)
    decision = tracker.decide(now=3, slot=0, reason=CRASH, uptime=0)
    assert isinstance(decision, GiveUp) and "more than 3 restarts within 10 s" in decision.why
    # once the oldest restart leaves the window, there is room again
    assert isinstance(tracker.decide(now=10.5, slot=0, reason=CRASH, uptime=0), Restart)


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=60))
def test_never_more_than_max_restarts_in_any_window(times: list[float]) -> None:
    policy = RestartPolicy(max_restarts=5, within=30, delay=0)
    tracker = RestartTracker(policy)
    granted = [t for t in sorted(times) if isinstance(tracker.decide(now=t, slot=0, reason=CRASH, uptime=0), Restart)]
    for t in granted:
        assert sum(1 for u in granted if t - policy.within < u <= t) <= policy.max_restarts


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"when": "sometimes"}, "restart.when"),
        ({"delay": -1}, "restart.delay"),
        ({"backoff": 0.5}, "restart.backoff"),
        ({"max_restarts": 0}, "restart.max_restarts"),
        ({"within": 0}, "restart.within"),
    ],
)
def test_bad_policy_options(options: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError) as info:
        RestartPolicy(**options)  # type: ignore[arg-type]
    assert info.value.option == option
