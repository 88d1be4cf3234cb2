"""Status transitions: the table the master follows. Pure."""

from __future__ import annotations

import itertools

from drover_py import WorkerStatus
from drover_py._status import TRANSITIONS, can_transition

S = WorkerStatus
HAPPY_PATH = [S.INITIALIZED, S.STARTING, S.STARTED, S.STOPPING, S.STOPPED, S.SHUTTING_DOWN, S.SHUT_DOWN]


def test_happy_path_is_allowed() -> None:
    for old, new in zip(HAPPY_PATH, HAPPY_PATH[1:]):
        assert can_transition(old, new), (old, new)


def test_every_live_status_can_fail_and_failed_is_final() -> None:
    for status in S:
        assert can_transition(status, S.FAILED) == (status is not S.FAILED)
    assert not any(can_transition(S.FAILED, s) for s in S)


def test_no_way_back() -> None:
    for old, new in itertools.combinations(HAPPY_PATH, 2):
        assert not can_transition(new, old), (new, old)


def test_a_worker_that_never_started_can_be_stopped() -> None:
    assert can_transition(S.STARTING, S.STOPPING)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(S)
    assert [s for s in S if not s.is_live] == [S.FAILED]
