"""The ``drover-py`` command line: ``serve`` an app, ``run`` a script as a cluster, ``up`` a file of apps, ``ctl`` a running one.

Exit codes of ``ctl``: 0 ok, 1 the command failed (``health``: unhealthy), 2 bad usage,
3 cannot connect, 4 unauthorized (missing or wrong key). ``serve`` and ``run`` exit 0
after a shutdown, 1 when the workers cannot start, 2 on bad usage or a wrong option, 3 when
the restart policy gave up, 4 when an address of ``--bind`` is in use, 130 when interrupted;
so does ``up`` (1: an app could not start or a ``once`` app failed; 2: the file is not valid).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .ctl import _ctl
from .options import KEY_ENV, _parser
from .supervise import _supervise
from .units import _systemd_unit


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (``python -m drover_py`` exits with it)."""
    words = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if words[:1] == ["run"] and "--" in words:  # everything after -- goes to the workers
        cut = words.index("--")
        words, passed = words[:cut], words[cut + 1 :]
    if words[:1] == ["run"]:
        words = [f"--preload-modules={w.partition('=')[2]}" if w.startswith("--preload=") else w for w in words]
    parser, from_env = _parser()
    ns = parser.parse_args(words)
    for dest, values in from_env.items():
        if getattr(ns, dest, None) == []:  # the command line gave none: the environment's
            setattr(ns, dest, values)
    if ns.action == "run":
        ns.args = [*ns.args, *passed]
    if ns.action == "systemd-unit":
        return _systemd_unit(parser, ns)
    key = ns.key or os.environ.pop(KEY_ENV, None) or None  # never handed on to workers
    os.environ.pop(KEY_ENV, None)
    if ns.action in ("run", "serve", "up"):
        if ns.no_control and ns.metrics_bind:
            parser.error("--metrics-bind is served by the control server: drop --no-control")
        if ns.debug:
            os.environ["DROVER_PY_DEBUG"] = "1"  # before any logger is made (the workers' too)
        if ns.log_format:
            from .._log import FORMAT_ENV

            os.environ[FORMAT_ENV] = ns.log_format
        from .. import _pid1

        if _pid1.wanted(ns.init):
            code = _pid1.run_under_init()
            if code is not None:
                return code  # the init: the master's exit code
        if ns.action == "up":
            from .._deploy.up import up

            return up(ns, key)
        return _supervise(ns, key)
    return _ctl(ns, key)
