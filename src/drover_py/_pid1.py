"""PID 1 in a container: a minimal init in front of the master (tini's design, built in).

As PID 1, a process inherits every orphan of the container and must reap it, and the
kernel applies no default action to a signal it has no handler for. Reaping strangers
with ``waitpid(-1)`` in the master would steal its workers' exit statuses from anyio,
so drover-py does not do that in the master at all: it forks once, before any event
loop. The parent stays PID 1 and only waits for signals: it forwards the ones a runtime
sends to the master (its only child) and reaps whatever else ends, with ``waitpid(-1)``,
which is safe there because its only own child is the master. It exits with the
master's exit code. The master, PID 2, runs as usual and reaps only its own workers.
"""

from __future__ import annotations

import os
import signal
import sys

from ._child.title import set_title

#: What a container runtime or a user sends, forwarded to the master.
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGWINCH,
)


def wanted(asked: bool) -> bool:
    """Return whether to run as an init: asked (``--init``) or PID 1."""
    return asked or os.getpid() == 1


def run_under_init() -> int | None:
    """Fork: return None in the child (the master goes on), or the master's exit code in the init."""
    watched = {*FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # before the fork: none is lost
    master = os.fork()
    if master == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
        return None
    set_title(f"drover-py init ({' '.join(sys.argv[1:3])})")
    if os.getpid() != 1:
        _become_subreaper()  # --init outside PID 1: the orphans of the tree come here all the same
    while True:
        info = signal.sigwaitinfo(watched)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(master, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        code = _reap(master)
        if code is not None:
            return code


def _reap(master: int) -> int | None:
    """Reap every process that ended; return the master's exit code once it is one of them."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == master:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code  # killed by a signal: as a shell says it


def _become_subreaper() -> None:
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
