"""``drover-py systemd-unit``: a ``Type=notify`` service (and a socket unit) for a drover-py command.

The deadlines come from the command itself: systemd waits ``TimeoutStopSec`` for the stop,
which must cover the drain, every worker's graceful stop and the kill that follows it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from .options import EXIT_OK

#: Seconds systemd waits beyond the master's own deadlines before it kills.
STOP_MARGIN = 5
#: The watchdog period asked of the master (it pings at a third of it).
WATCHDOG_SEC = 30


def stop_seconds(drain: float, stop_timeout: float, kill_timeout: float) -> int:
    """Return the ``TimeoutStopSec`` that covers a drain, the graceful stops and the kill."""
    return int(drain + stop_timeout + kill_timeout + STOP_MARGIN + 0.999)


def service_unit(
    *,
    name: str,
    arguments: Sequence[str],
    description: str,
    working_directory: str,
    user: str | None,
    stop_timeout_sec: int,
    socket: bool,
) -> str:
    """Return the text of ``NAME.service`` that runs ``python -m drover_py ARGUMENTS``."""
    command = shlex.join([sys.executable, "-m", "drover_py", *arguments])
    lines = [
        f"# {name}.service, made by drover-py systemd-unit. Install: copy to /etc/systemd/system/,",
        f"# then: systemctl daemon-reload && systemctl enable --now {name}" + (".socket" if socket else ""),
        "[Unit]",
        f"Description={description}",
        *([f"Requires={name}.socket", f"After={name}.socket network.target"] if socket else ["After=network.target"]),
        "",
        "[Service]",
        "Type=notify",
        "# Only the master speaks sd_notify (READY=1 once every worker started; WATCHDOG=1).",
        "NotifyAccess=main",
        f"WorkingDirectory={working_directory}",
        *([f"User={user}"] if user else []),
        f"ExecStart={command}",
        "# SIGHUP: zero-downtime graceful reload (READY=1 again when done).",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "# SIGTERM to the master only: it drains, stops its workers gracefully, then systemd cleans up.",
        "KillMode=mixed",
        f"TimeoutStopSec={stop_timeout_sec}",
        f"WatchdogSec={WATCHDOG_SEC}",
        "Restart=on-failure",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def socket_unit(*, name: str, description: str, addresses: Sequence[str]) -> str:
    """Return the text of ``NAME.socket``: systemd owns the listening addresses (``--bind systemd``)."""
    lines = [
        f"# {name}.socket, made by drover-py systemd-unit: the master adopts it with --bind systemd.",
        "[Unit]",
        f"Description={description} (socket)",
        "",
        "[Socket]",
        *(f"ListenStream={address}" for address in addresses),
        "",
        "[Install]",
        "WantedBy=sockets.target",
    ]
    return "\n".join(lines) + "\n"


# -- systemd-unit ---------------------------------------------------------------------------


def _systemd_unit(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> int:

    arguments = ns.arguments[1:] if ns.arguments[:1] == ["--"] else ns.arguments
    if not arguments or arguments[0] not in ("serve", "run"):
        parser.error("systemd-unit: give the drover-py command after --, e.g. -- serve app:app -w 4")
    inner = parser.parse_args(arguments)  # a wrong option of serve or run is refused here, as there
    if ns.socket:
        if any(word == "--bind" or word.startswith("--bind=") for word in arguments):
            parser.error("systemd-unit: with --socket, systemd owns the addresses: drop --bind")
        arguments = [*arguments, "--bind", "systemd"]
    description = ns.description or f"drover-py {shlex.join(arguments[:2])}"
    directory = os.path.abspath(ns.working_directory or os.getcwd())
    seconds = stop_seconds(inner.drain_delay, inner.stop_timeout, inner.kill_timeout)
    units = {
        f"{ns.name}.service": service_unit(
            name=ns.name,
            arguments=arguments,
            description=description,
            working_directory=directory,
            user=ns.user,
            stop_timeout_sec=seconds,
            socket=bool(ns.socket),
        )
    }
    if ns.socket:
        units[f"{ns.name}.socket"] = socket_unit(name=ns.name, description=description, addresses=ns.socket)
    for filename, text in units.items():
        if ns.output_dir is None:
            print(text)
        else:
            path = os.path.join(ns.output_dir, filename)
            with open(path, "w") as file:
                file.write(text)
            print(f"drover-py systemd-unit: wrote {path}")
    return EXIT_OK
