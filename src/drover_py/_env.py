"""The master -> child contract: the ``DROVER_PY_*`` variables a worker gets. Pure, standard library only.

Every worker's environment is the master's ``os.environ`` (without systemd's socket
variables), the configuration's ``env``, then these, which `worker_vars` formats and the
child side parses:

- `CHANNEL_ENV` ``"<read fd>,<write fd>"``: the worker's two pipes to its master;
- `SLOT_ENV`, `WORKER_ID_ENV`: its slot (0 .. count-1) and id (unique in one master);
- `HEARTBEAT_ENV`: seconds between heartbeats, when the master watches them;
- `SOCKETS_ENV` ``"3,4"``: the listening sockets it inherited, in ``bind`` order;
- `PROCTITLE_ENV`: the title the master chose for it (set and dropped by the worker).

A check script (`Master.run_check`) gets the same environment without those, and during
a reload `CHECK_WORKERS_ENV` ``"id:pid,id:pid"``: the new workers it is to check.

And one a user may set (in the master's environment or its ``env``), read by the child:

- `METRICS_INTERVAL_ENV`: seconds between two batches of a worker's metrics (default
  `DEFAULT_METRICS_INTERVAL`).

A preload template serves every worker of one configuration, so its own environment is
a worker's without the variables of `PER_WORKER`; it renumbers the fds of `FD_ENV` in
each child it forks. The template program keeps a copy of `PROCTITLE_ENV` (it imports
nothing of drover-py); a test holds the copy to this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: The worker's channel to its master: "<read fd>,<write fd>".
CHANNEL_ENV = "DROVER_PY_CHANNEL"
#: The worker's slot number (0 .. count-1).
SLOT_ENV = "DROVER_PY_SLOT"
#: The worker's id (unique within one master).
WORKER_ID_ENV = "DROVER_PY_WORKER_ID"
#: The heartbeat interval in seconds, if the master wants one.
HEARTBEAT_ENV = "DROVER_PY_HEARTBEAT"
#: The inherited listener fds, in bind order, comma-separated.
SOCKETS_ENV = "DROVER_PY_SOCKETS"
#: The title the master chose for a worker; the worker sets it and drops the variable.
PROCTITLE_ENV = "DROVER_PY_PROCTITLE"
#: For a check (`Master.run_check`) run during a reload: the new workers, "id:pid,id:pid".
CHECK_WORKERS_ENV = "DROVER_PY_CHECK_WORKERS"
#: Seconds between two batches of a worker's metrics; set by the user, not by the master.
METRICS_INTERVAL_ENV = "DROVER_PY_METRICS_INTERVAL"
DEFAULT_METRICS_INTERVAL = 1.0
#: What differs between two workers of one configuration.
PER_WORKER = (CHANNEL_ENV, SLOT_ENV, WORKER_ID_ENV, HEARTBEAT_ENV, SOCKETS_ENV, PROCTITLE_ENV)
#: The variables whose values are fd numbers.
FD_ENV = (CHANNEL_ENV, SOCKETS_ENV)


def worker_vars(
    *, channel: tuple[int, int], slot: int, worker_id: int, sockets: Sequence[int] = (), heartbeat: float | None = None
) -> dict[str, str]:
    """Return one worker's ``DROVER_PY_*`` variables (its title aside: `PROCTITLE_ENV`)."""
    env = {CHANNEL_ENV: format_channel(*channel), SLOT_ENV: str(slot), WORKER_ID_ENV: str(worker_id)}
    if sockets:
        env[SOCKETS_ENV] = ",".join(map(str, sockets))
    if heartbeat is not None:
        env[HEARTBEAT_ENV] = f"{heartbeat:g}"
    return env


def template_env(worker_env: Mapping[str, str]) -> dict[str, str]:
    """Return a preload template's environment: a worker's without its own variables."""
    return {key: value for key, value in worker_env.items() if key not in PER_WORKER}


def format_channel(read_fd: int, write_fd: int) -> str:
    """Return the value of `CHANNEL_ENV` for a child that reads ``read_fd``."""
    return f"{read_fd},{write_fd}"


def parse_channel(value: str) -> tuple[int, int]:
    """Parse a `CHANNEL_ENV` value into (read fd, write fd); raise ValueError if malformed."""
    read_text, sep, write_text = value.partition(",")
    if not sep:
        raise ValueError(f"expected '<read fd>,<write fd>', got {value!r}")
    read_fd, write_fd = int(read_text), int(write_text)
    if read_fd < 0 or write_fd < 0 or read_fd == write_fd:
        raise ValueError(f"invalid fds in {value!r}")
    return read_fd, write_fd


def parse_sockets(value: str) -> list[int]:
    """Parse a `SOCKETS_ENV` value into fd numbers (empty or unset: none)."""
    return [int(text) for text in value.split(",") if text]
