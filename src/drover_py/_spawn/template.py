"""The preload template: a small synchronous program that forks workers on request.

The master runs this file by path (``python template.py FD SCRIPT SPEC``), not as a module of
the package, so starting it imports nothing of drover-py or anyio. It imports the
preload modules, reports "ready", then serves the master's spawn requests on the Unix
socket FD (SOCK_SEQPACKET, one JSON message per packet, fds with SCM_RIGHTS):

- master -> template: ``{"spawn": id, "argv": [script, *args], "env": {...},
  "fd_env": [names], "nfds": n, "stdout": bool, "stderr": bool, "cwd": ..., "uid": ...,
  "gid": ..., "groups": [...]}`` carrying the worker's fds (the ``nfds`` it inherits,
  then its stdout and stderr when given);
- template -> master: ``{"ready": pid, "modules": [...]}`` or ``{"error": text}`` once;
  ``{"spawned": id, "pid": pid}`` (with a pidfd when the platform has them) or
  ``{"failed": id, "errno": n, "error": text}``; ``{"exit": pid, "code": returncode}``
  for every child it reaped (negative signal number when killed by a signal).

No event loop, no threads: one ``poll`` over the socket and a SIGCHLD wake-up pipe.
End of file on the socket (the master closed it, or died) ends the template; its
workers are not its concern then (each has its own lifeline to the master).

A forked child returns from `serve` with its request and becomes the worker: new
session, signal dispositions and mask as the template found them, its own environment,
fds, cwd and credentials, its process title (``DROVER_PY_PROCTITLE``, with setproctitle
if installed), fresh random seed and logging handlers, then ``runpy`` runs the script as
``__main__``. The template forks each child ahead of its request (a `Spare` that
detaches at once and waits for its job), so that a spawn only hands the request over;
when there is no live spare, it forks on the request. The next spare is forked once the
template has been idle for `SPARE_DELAY` after a spawn, so that fork (and the spare's
set-up) does not take the CPU from the worker that was just handed its job.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # run by path: drop this file's directory before other imports
    sys.path[0] = os.path.dirname(sys.argv[2])  # as for ``python script``

import ast
import errno
import json
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_PACKET = 1 << 20
MAX_FDS = 256
#: Exit code of a forked child that failed before it became the worker.
SETUP_FAILED = 127
#: Seconds of idleness after a spawn before the template forks the next spare.
SPARE_DELAY = 0.05
#: The title the master chose for the worker (see drover_py._child.title).
PROCTITLE_ENV = "DROVER_PY_PROCTITLE"

_Handler = Callable[[int, Any], Any] | int | signal.Handlers | None


class Job:
    """A spawn request, as the forked child sees it."""

    def __init__(self, message: dict[str, Any], fds: list[int], data: bytes = b"") -> None:
        self.message = message
        #: The message as it arrived (handed on to a spare as is).
        self.data = data
        self.id: int = message["spawn"]
        self.argv: list[str] = message["argv"]
        self.env: dict[str, str] = message["env"]
        self.fd_env: list[str] = message.get("fd_env", [])
        nfds: int = message["nfds"]
        self.targets: list[int] = message["targets"]
        self.fds = fds[:nfds]
        rest = fds[nfds:]
        self.stdout = rest.pop(0) if message.get("stdout") else None
        self.stderr = rest.pop(0) if message.get("stderr") else None
        self.cwd: str | None = message.get("cwd")
        self.uid: int | None = message.get("uid")
        self.gid: int | None = message.get("gid")
        self.groups: list[int] | None = message.get("groups")
        self.all_fds = fds


# -- preload ----------------------------------------------------------------------------


def script_imports(script: str) -> list[str]:
    """Return the modules ``script`` imports unconditionally at its top level (by `ast`)."""
    with open(script, "rb") as file:
        tree = ast.parse(file.read(), script)
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
            found.extend(f"{node.module}.{alias.name}" if alias.name != "*" else node.module for alias in node.names)
    return list(dict.fromkeys(found))


def thread_report() -> str | None:
    """Return a description of the threads besides this one, or None if there are none."""
    names: list[str] = []
    if "threading" in sys.modules:
        import threading

        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    try:
        native = len(os.listdir("/proc/self/task")) - 1
    except OSError:
        native = len(names)
    if not names and native <= 0:
        return None
    if names:
        return f"{len(names)} thread(s): {', '.join(names)}"
    return f"{native} native thread(s)"


def preload(modules: list[str], script: str | None, optional: Sequence[str] = ()) -> list[str]:
    """Import ``modules``, then the script's imports and ``optional``; return their names.

    Raise RuntimeError naming the module that failed to import or started a thread.
    The script's own imports and ``optional`` are best effort: one that fails is left
    for the worker.
    """
    import importlib

    done: list[str] = []
    wanted = [(name, True) for name in modules]
    if script is not None:
        wanted += [(name, False) for name in script_imports(script)]
    wanted += [(name, False) for name in optional]
    for name, required in wanted:
        try:
            try:
                importlib.import_module(name)
            except ImportError:
                parent, _, attr = name.rpartition(".")
                if required or not parent:
                    raise
                importlib.import_module(parent)  # "from parent import attr" names an attribute
                name = parent
        except BaseException as exc:
            if required:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                raise RuntimeError(f"cannot preload module {name!r}: {detail}") from None
            continue
        threads = thread_report()
        if threads is not None:
            raise RuntimeError(
                f"preloaded module {name!r} started {threads}; forking a process with threads "
                "is unsafe: leave it out of preload (import it in the worker instead)"
            )
        if name not in done:
            done.append(name)
    return done


# -- the serving loop --------------------------------------------------------------------


class Spare:
    """A child forked ahead of its job (so the fork is off the spawn's critical path).

    It waits for its job on a socket of its own: the request's message and fds, plus
    the write end of the set-up error pipe. End of file there ends it.
    """

    def __init__(self, pid: int, pidfd: int, sock: socket.socket) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.sock = sock

    def hand(self, job: Job, err_w: int) -> bool:
        """Give ``job`` to the spare; return False if it is gone."""
        try:
            socket.send_fds(self.sock, [job.data or json.dumps(job.message).encode()], [*job.all_fds, err_w])
            return True
        except OSError:
            self.discard()
            return False
        finally:
            self.sock.close()

    def discard(self) -> None:
        """Forget the spare (its exit is reaped as any child's, and not reported)."""
        self.sock.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Template:
    """The template's state: its control socket, SIGCHLD wake-up pipe, and baseline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.handlers: dict[int, _Handler] = {}
        for sig in signal.valid_signals():
            try:
                self.handlers[sig] = signal.getsignal(sig)
            except (OSError, ValueError):
                continue
        #: The handlers a forked child must restore: those the template changed (set in `serve`).
        self.changed: dict[int, _Handler] = {}
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.spare: Spare | None = None
        #: Spares discarded while alive: their exits are not the master's concern.
        self.discarded: set[int] = set()

    def send(self, message: Mapping[str, object], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def serve(self) -> Job | None:
        """Serve requests until end of file (return None); in a forked child, return its job."""
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        # Nothing changes a handler while serving: compare once here, not in every child.
        self.changed = {sig: h for sig, h in self.handlers.items() if h is not None and signal.getsignal(sig) is not h}
        job = self.prefork()
        if job is not None:
            return job
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        spare_due: float | None = None  # when to fork the next spare
        while True:
            timeout = None if spare_due is None else max(0.0, spare_due - time.monotonic()) * 1000
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if self.sock.fileno() in ready:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_PACKET, MAX_FDS)
                if not data:
                    self.end_spare()
                    return None
                job = Job(json.loads(data), fds, data)
                if self.fork(job):
                    return job
                spare_due = time.monotonic() + SPARE_DELAY  # not now: this worker is starting
            elif spare_due is not None and time.monotonic() >= spare_due:
                spare_due = None
                job = self.prefork()
                if job is not None:
                    return job

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:  # died waiting for a job
                self.spare.discard()
                self.spare = None
                continue
            if pid in self.discarded:
                self.discarded.discard(pid)
                continue
            self.send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    def prefork(self) -> Job | None:
        """Fork the spare the next job will use; in that child, wait for the job and return it."""
        if self.spare is not None or thread_report() is not None:
            return None  # a job then forks (or refuses to) itself
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _flush_std_streams()
        try:
            pid = os.fork()
        except OSError:
            mine.close()
            theirs.close()
            return None
        if pid == 0:
            mine.close()
            return self.wait_job(theirs)
        theirs.close()
        try:
            pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else -1
        except OSError:
            pidfd = -1
        self.spare = Spare(pid, pidfd, mine)
        return None

    def wait_job(self, sock: socket.socket) -> Job:
        """In a spare: detach from the template, wait for the job, become its worker.

        What needs no job is done before it arrives: resetting modules, reading the
        environment `set_environ` compares with.
        """
        try:
            self.detach()
            reset_modules()
            environ = dict(os.environ)
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, MAX_FDS + 1)
        except BaseException:
            os._exit(SETUP_FAILED)
        if not data:
            os._exit(0)  # the template ended
        sock.close()
        err_w = fds.pop()
        job = Job(json.loads(data), fds)
        self.start_worker(job, err_w, environ)
        return job

    def end_spare(self) -> None:
        """Kill and reap the spare, so that none outlives the template."""
        spare, self.spare = self.spare, None
        if spare is None:
            return
        try:
            os.kill(spare.pid, signal.SIGKILL)
            os.waitpid(spare.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        spare.discard()

    def fork(self, job: Job) -> bool:
        """Fork the worker of ``job``; return True in the child, False in the template."""
        threads = thread_report()
        if threads is not None:
            self.send({"failed": job.id, "errno": errno.EAGAIN, "error": f"the template now runs {threads}"})
            return self.close_fds(job)
        err_r, err_w = os.pipe()
        spare, self.spare = self.spare, None
        if spare is not None and spare.hand(job, err_w):
            pid, pidfd = spare.pid, spare.pidfd
        else:
            if spare is not None:
                self.discarded.add(spare.pid)
            _flush_std_streams()
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(err_r)
                os.close(err_w)
                self.send({"failed": job.id, "errno": exc.errno or errno.EAGAIN, "error": str(exc)})
                return self.close_fds(job)
            if pid == 0:
                os.close(err_r)
                self.detach_and_start(job, err_w)
                return True
            try:
                pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else -1
            except OSError:
                pidfd = -1
        os.close(err_w)
        try:
            failure = _read_all(err_r)
        finally:
            os.close(err_r)
        self.close_fds(job)
        if failure:
            os.waitpid(pid, 0)
            self.send({"failed": job.id, **json.loads(failure.decode())})
        else:
            self.send({"spawned": job.id, "pid": pid}, [pidfd] if pidfd >= 0 else None)
        if pidfd >= 0:
            os.close(pidfd)
        return False

    @staticmethod
    def close_fds(job: Job) -> bool:
        for fd in job.all_fds:
            os.close(fd)
        return False

    def detach_and_start(self, job: Job, err_w: int) -> None:
        """In a child forked for ``job``: detach from the template, become the worker."""
        try:
            self.detach()
        except BaseException:
            os._exit(SETUP_FAILED)
        self.start_worker(job, err_w)

    def start_worker(self, job: Job, err_w: int, environ: dict[str, str] | None = None) -> None:
        """In a detached child: become the worker of ``job``, or report why not and exit."""
        try:
            self.become_worker(job, environ)
        except BaseException as exc:
            report = {"errno": getattr(exc, "errno", None) or errno.EINVAL, "error": f"{type(exc).__name__}: {exc}"}
            try:
                os.write(err_w, json.dumps(report).encode())
            finally:
                os._exit(SETUP_FAILED)
        os.close(err_w)

    def detach(self) -> None:
        """In a forked child: own session, the template's signal state undone, its fds closed."""
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig, handler in self.changed.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        self.sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        if self.spare is not None:  # the template's end of its other spare (none, as forks go)
            self.spare.sock.close()

    def become_worker(self, job: Job, environ: dict[str, str] | None = None) -> None:
        """Turn this detached child into the worker of ``job`` (see the module docstring).

        ``environ`` is a copy of `os.environ` taken by a spare, which also reset the
        modules already (see `wait_job`).
        """
        # First: setproctitle finds the command line through the environment it started
        # with, and it must be importable before privileges are dropped.
        set_title(job.env.pop(PROCTITLE_ENV, ""))
        if job.stdout is not None:
            os.dup2(job.stdout, 1)
            os.close(job.stdout)
        if job.stderr is not None:
            os.dup2(job.stderr, 2)
            os.close(job.stderr)
        env = dict(job.env)
        renumber = {str(target): str(fd) for target, fd in zip(job.targets, job.fds) if target != fd}
        for name in job.fd_env:
            if name in env and renumber:
                env[name] = ",".join(renumber.get(part, part) for part in env[name].split(","))
        for fd in job.fds:
            os.set_inheritable(fd, True)
        set_environ(env, environ)
        if job.cwd is not None:
            os.chdir(job.cwd)
        drop_privileges(job.uid, job.gid, job.groups)
        if environ is None:
            reset_modules()
        sys.argv = list(job.argv)


def set_environ(env: dict[str, str], current: dict[str, str] | None = None) -> None:
    """Make `os.environ` (and the C environment) ``env``, touching only what differs.

    The worker's environment is the template's plus a few variables: ``clear()`` then
    ``update()`` would unset and set every one (clear is quadratic in `os.environ`).
    ``current`` is a copy of `os.environ` taken ahead, to compare with (a plain dict:
    no encoding and decoding per variable).
    """
    environ = os.environ
    if current is None:
        current = dict(environ)
    for name in current.keys() - env.keys():
        del environ[name]
    for name, value in env.items():
        if current.get(name) != value:
            environ[name] = value


def drop_privileges(uid: int | None, gid: int | None, groups: list[int] | None) -> None:
    """Switch to the ids the master resolved: supplementary groups, gid, then uid (as exec mode)."""
    if groups is not None:
        os.setgroups(groups)
    if gid is not None:
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def set_title(title: str) -> None:
    """Set the process title if there is one and setproctitle is installed."""
    if not title:
        return
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(title)


def reset_modules() -> None:
    """Give the worker what a fresh interpreter has: new random state, no root handlers."""
    if "random" in sys.modules:
        import random

        random.seed()
    if "logging" in sys.modules:
        import logging

        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main(argv: list[str]) -> Job | None:
    """Preload, report, serve; return a job in a forked child, None when the master left."""
    sock = socket.socket(fileno=int(argv[1]))
    script = argv[2]
    spec = json.loads(argv[3])
    template = Template(sock)
    try:
        modules = preload(spec["modules"], script if spec["script_imports"] else None, spec.get("optional", []))
    except RuntimeError as exc:
        template.send({"error": str(exc)})
        return None
    global _code
    try:  # compiled once here, not in every worker; a syntax error is the worker's to report
        with open(script, "rb") as file:
            _code = compile(file.read(), script, "exec")
    except (OSError, SyntaxError, ValueError):
        _code = None
    import gc

    gc.freeze()  # what the template allocated is never collected, so its pages stay shared
    template.send({"ready": os.getpid(), "modules": modules})
    try:
        return template.serve()
    except (BrokenPipeError, ConnectionResetError):
        return None


_code: Any = None


def run_script(path: str) -> None:
    """Run ``path`` as ``__main__``, as ``python path`` would (from the precompiled code)."""
    if _code is None:
        import runpy

        runpy.run_path(path, run_name="__main__")
        return
    import builtins
    import types

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = module
    exec(_code, module.__dict__)


if __name__ == "__main__":
    _job = main(sys.argv)
    if _job is None:
        sys.exit(0)
    run_script(_job.argv[0])
