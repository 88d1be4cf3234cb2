"""Room in the container's memory: the limit and usage of the master's memory cgroup.

A reload starts a replacement before its old worker stops, so for a moment both run. At
a memory limit that overlap is what the OOM killer takes. `room` says how many bytes the
master's cgroup has left (cgroup v2 ``memory.max`` - ``memory.current``; v1
``memory.limit_in_bytes`` - ``memory.usage_in_bytes``), or None without a limit.
"""

from __future__ import annotations

from pathlib import Path

from .oom import cgroup_mounts

#: A v1 "limit" at or above this is no limit (the kernel's default is near 2**63).
_UNLIMITED = 1 << 60


def _memory_folder() -> tuple[Path, str, str] | None:
    """Return (the master's memory cgroup folder, its limit file, its usage file), if any."""
    mounts = cgroup_mounts()
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and "" in mounts and (mounts[""] / path.lstrip("/") / "memory.max").exists():
            return mounts[""] / path.lstrip("/"), "memory.max", "memory.current"
        if "memory" in controllers.split(",") and "memory" in mounts:
            return mounts["memory"] / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"
    return None


def room() -> int | None:
    """Return the bytes left under the master's memory limit, or None if it has none (or it cannot be read)."""
    found = _memory_folder()
    if found is None:
        return None
    folder, limit_file, usage_file = found
    try:
        limit_text = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text())
    except (OSError, ValueError):
        return None
    if limit_text == "max" or int(limit_text) >= _UNLIMITED:
        return None
    return int(limit_text) - usage
