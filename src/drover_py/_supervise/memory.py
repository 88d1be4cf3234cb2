"""Room in the container's memory: the limit and usage of the master's memory cgroup.

A reload starts a replacement before its old worker stops, so for a moment both run. At
a memory limit that overlap is what the OOM killer takes. `room` says how many bytes the
master's cgroup has left (cgroup v2 ``memory.max`` - ``memory.current``; v1
``memory.limit_in_bytes`` - ``memory.usage_in_bytes``), or None without a limit.
"""

from __future__ import annotations

from .oom import memory_cgroup

#: A v1 "limit" at or above this is no limit (the kernel's default is near 2**63).
_UNLIMITED = 1 << 60
_V1_FILES = ("memory.limit_in_bytes", "memory.usage_in_bytes")


def room() -> int | None:
    """Return the bytes left under the master's memory limit, or None if it has none (or it cannot be read)."""
    found = memory_cgroup()
    if found is None:
        return None
    folder, version = found
    limit_file, usage_file = ("memory.max", "memory.current") if version == 2 else _V1_FILES
    try:
        limit_text = (folder / limit_file).read_text().strip()
        usage = int((folder / usage_file).read_text())
    except (OSError, ValueError):
        return None
    if limit_text == "max" or int(limit_text) >= _UNLIMITED:
        return None
    return int(limit_text) - usage
