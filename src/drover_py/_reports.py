"""What a graceful reload did, slot by slot (returned by `Master.graceful_reload`, carried by `ReloadError`)."""

from __future__ import annotations

import attrs


@attrs.frozen
class SlotReport:
    """One slot of a reload: the worker it had, the worker it got, and how long that one took."""

    slot: int
    #: The process id of the worker replaced, or None if the slot was empty.
    old_pid: int | None
    #: The id and process id of the new worker.
    new_id: int
    new_pid: int | None
    #: Seconds from the new worker's spawn to its "started".
    ready_seconds: float
    #: The old worker went before the new one started: both would not fit under the memory limit.
    retired_first: bool = False


@attrs.frozen
class ReloadReport:
    """What a `Master.graceful_reload` did: ``workers`` slots replaced in ``seconds``.

    ``slots`` has one `SlotReport` per slot switched, in order. ``canary`` is None without
    a canary window, True when the first batch lived through it, False when it did not;
    ``check`` the same for the reload's check.
    In a `ReloadError` (``error.report``), ``slots`` are those switched before the failure
    (and then rolled back) and ``rolled_back`` is True.
    """

    workers: int
    seconds: float
    slots: tuple[SlotReport, ...] = ()
    canary: bool | None = None
    check: bool | None = None
    rolled_back: bool = False

    def __str__(self) -> str:
        if self.rolled_back:
            return f"reload rolled back after {self.seconds:.2f} s ({len(self.slots)} slot(s) had switched)"
        return f"reloaded {self.workers} worker{'' if self.workers == 1 else 's'} in {self.seconds:.2f} s"
