"""Worker statuses (drover's states) and the transitions the master allows. Pure."""

from __future__ import annotations

import enum


class WorkerStatus(enum.Enum):
    """Where a worker is in its life, as the master sees it.

    The happy path is INITIALIZED -> STARTING -> STARTED -> STOPPING -> STOPPED ->
    SHUTTING_DOWN -> SHUT_DOWN, then the process exits and the worker leaves
    ``master.workers``. A worker whose process ended without the master asking is FAILED
    and stays listed until its slot is restarted or the master shuts down.
    """

    INITIALIZED = "initialized"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting_down"
    SHUT_DOWN = "shut_down"
    FAILED = "failed"

    @property
    def is_live(self) -> bool:
        """Return whether the process may still be running in this status."""
        return self is not WorkerStatus.FAILED


_S = WorkerStatus

#: Allowed transitions. STOPPING is also entered from STARTING (a worker terminated
#: before it was ready) and FAILED from any live status (an exit nobody asked for).
TRANSITIONS: dict[WorkerStatus, frozenset[WorkerStatus]] = {
    _S.INITIALIZED: frozenset({_S.STARTING, _S.FAILED}),
    _S.STARTING: frozenset({_S.STARTED, _S.STOPPING, _S.FAILED}),
    _S.STARTED: frozenset({_S.STOPPING, _S.FAILED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED}),
    _S.STOPPED: frozenset({_S.SHUTTING_DOWN, _S.FAILED}),
    _S.SHUTTING_DOWN: frozenset({_S.SHUT_DOWN, _S.FAILED}),
    _S.SHUT_DOWN: frozenset({_S.FAILED}),
    _S.FAILED: frozenset(),
}


def can_transition(old: WorkerStatus, new: WorkerStatus) -> bool:
    """Return whether a worker may move from ``old`` to ``new``."""
    return new in TRANSITIONS[old]
