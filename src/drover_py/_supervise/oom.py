"""Was a worker killed by the out-of-memory killer? The kernel's count in its memory cgroup says.

The kernel log names the process, but is not readable by everyone. Instead, the count
of OOM kills of the worker's memory cgroup is read while the worker runs (cgroup v2:
``oom_kill`` of ``memory.events.local``, else ``memory.events``; cgroup v1:
``oom_kill`` of ``memory.oom_control``) and again once it died of SIGKILL: a higher
count means the OOM killer acted in that cgroup meanwhile. Workers that share a cgroup
share its count, so a SIGKILL by hand at the moment another worker of the same cgroup
is OOM-killed would be named OOM too.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: The detail of an exit reason when the kernel's OOM killer ended the worker.
OOM_DETAIL = "killed by the out-of-memory killer"


@functools.cache
def cgroup_mounts() -> dict[str, Path]:
    """Return where cgroup v2 ("") and the v1 memory controller ("memory") are mounted."""
    found: dict[str, Path] = {}
    try:
        with open("/proc/self/mountinfo") as file:
            for line in file:
                fields = line.split()
                fstype = fields[fields.index("-") + 1]
                mount = Path(fields[4])
                if fstype == "cgroup2":
                    found.setdefault("", mount)
                elif fstype == "cgroup" and "memory" in fields[-1].split(","):
                    found.setdefault("memory", mount)
    except (OSError, ValueError, IndexError):
        pass
    return found


def memory_cgroup(pid: int | str = "self") -> tuple[Path, int] | None:
    """Return the folder of ``pid``'s memory cgroup and its cgroup version (2 or 1), or None."""
    mounts = cgroup_mounts()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and "" in mounts:
            folder = mounts[""] / path.lstrip("/")
            if (folder / "memory.events").exists():  # the memory controller is on here
                return folder, 2
        elif "memory" in controllers.split(",") and "memory" in mounts:
            return mounts["memory"] / path.lstrip("/"), 1
    return None


def _count_file(pid: int) -> Path | None:
    """Return the file holding the OOM kill count of ``pid``'s memory cgroup, if there is one."""
    found = memory_cgroup(pid)
    if found is None:
        return None
    folder, version = found
    names = ("memory.events.local", "memory.events") if version == 2 else ("memory.oom_control",)
    return next((folder / name for name in names if (folder / name).exists()), None)


def _read_count(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class OomProbe:
    """The OOM kill count of one worker's memory cgroup, read while it runs."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._before = None if path is None else _read_count(path)

    @classmethod
    def of(cls, pid: int) -> OomProbe:
        """Read the count of ``pid``'s cgroup now (nothing to read: the probe never fires)."""
        return cls(_count_file(pid))

    def fired(self) -> bool:
        """Return whether the cgroup's count of OOM kills went up since the probe was made."""
        if self._path is None or self._before is None:
            return False
        after = _read_count(self._path)
        return after is not None and after > self._before
