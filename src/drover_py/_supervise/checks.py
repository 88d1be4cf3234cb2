"""Checks: run a script once, as the workers run (env, cwd, user), bounded by a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import anyio.abc
import attrs

from .._config.options import MasterConfig
from .._env import CHECK_WORKERS_ENV
from .._exceptions import DroverError, WorkerStartError
from .._exit_reasons import ExitReason, classify
from .handoff import base_env
from .output import Tail
from .worker import REAP_TIMEOUT, Worker, WorkerSnapshot

#: Seconds to read what the check printed once it exited.
_DRAIN = 1.0


class CheckFailed(DroverError):
    """A check did not pass (the control command ``test``); ``result`` says how it went."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(str(result))
        self.result = result


@attrs.frozen
class CheckResult:
    """How a check ran (`Master.run_check`): passed or not, why, how long, what it printed."""

    #: The script's command line.
    command: tuple[str, ...]
    #: Exit code 0 within the timeout.
    passed: bool
    #: How the process ended, or None when it was stopped for taking too long.
    reason: ExitReason | None
    #: The timeout it was given, and the seconds it took.
    timeout: float
    seconds: float
    #: The last lines of its stdout and stderr, together (at most 20 lines, 4 KiB).
    output: str = attrs.field(repr=False)

    def __str__(self) -> str:
        if self.passed:
            return f"check passed in {self.seconds:.2f} s"
        if self.reason is None:
            return f"check timed out after {self.timeout:g} s"
        return f"check failed: {self.reason}"


async def run_check(
    config: MasterConfig, script: str | os.PathLike[str], timeout: float, *, extra_env: Mapping[str, str] | None = None
) -> CheckResult:
    """Run ``python SCRIPT`` (``config.python``) once in the workers' environment, cwd and user.

    Past ``timeout`` seconds its process group gets SIGTERM, then SIGKILL after
    ``kill_timeout``; either way the process is reaped before this returns.
    """
    command = (config.python, os.fspath(script))
    run_as = config.run_as
    tail = Tail()
    began = anyio.current_time()
    timed_out = False
    process = await anyio.open_process(
        command,
        env={**base_env(config), **(extra_env or {})},
        cwd=config.cwd,
        start_new_session=True,
        user=None if run_as is None else run_as.uid,
        group=None if run_as is None else run_as.gid,
        extra_groups=None if run_as is None else run_as.groups,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    read = anyio.Event()
    async with process:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, process, tail, read)
            with anyio.move_on_after(timeout) as scope:
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
                with anyio.CancelScope(shield=True):
                    await stop_group(process, config.kill_timeout)
            with anyio.move_on_after(_DRAIN):  # a process it left behind may hold the pipe open
                await read.wait()
            tg.cancel_scope.cancel()
    returncode = process.returncode
    assert returncode is not None
    reason = None if timed_out else classify(returncode)
    return CheckResult(
        command=command,
        passed=not timed_out and returncode == 0,
        reason=reason,
        timeout=timeout,
        seconds=anyio.current_time() - began,
        output=tail.text(),
    )


async def _read(process: anyio.abc.Process, tail: Tail, done: anyio.Event) -> None:
    assert process.stdout is not None
    pending = b""
    try:
        async for chunk in process.stdout:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                tail.add(line)
    finally:
        if pending:
            tail.add(pending)
        done.set()


async def stop_group(process: anyio.abc.Process, grace: float) -> None:
    """SIGTERM the process group of ``process`` if it still runs, SIGKILL it ``grace`` seconds later; reap it.

    The reap after SIGKILL is bounded too (`REAP_TIMEOUT`), as for a worker.
    """
    if process.returncode is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, REAP_TIMEOUT)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        with anyio.move_on_after(wait):
            await process.wait()
            return


def workers_value(workers: Sequence[tuple[int, int | None]]) -> str:
    """Return the value of `CHECK_WORKERS_ENV` for (id, pid) pairs."""
    return ",".join(f"{worker_id}:{pid}" for worker_id, pid in workers)


#: A reload's check as a callable: given the new workers, it raises or returns False to refuse them.
ReloadCheck = Callable[[list[WorkerSnapshot]], Awaitable[object]]


async def check_workers(check: str | os.PathLike[str] | ReloadCheck, timeout: float, news: list[Worker]) -> None:
    """Refuse the new workers of a reload (`WorkerStartError`) unless ``check`` passes.

    A script runs as `run_check` runs it, with the new workers' configuration (their env,
    cwd and user) and `CHECK_WORKERS_ENV` naming them.
    """
    first = news[0]
    if isinstance(check, (str, os.PathLike)):
        workers = {CHECK_WORKERS_ENV: workers_value([(w.id, w.pid) for w in news])}
        result = await run_check(first.config, check, timeout, extra_env=workers)
        if result.passed:
            return
        raise WorkerStartError(
            f"the reload's {result} ({' '.join(result.command)})",
            reason=result.reason,
            worker_id=first.id,
            slot=first.slot,
            stderr_tail=result.output,
        )
    try:
        with anyio.fail_after(timeout):
            verdict = await check([w.snapshot() for w in news])
    except Exception as exc:  # the check's own failure is the verdict
        why = "timed out" if isinstance(exc, TimeoutError) else f"raised {type(exc).__name__}: {exc}"
        raise WorkerStartError(f"the reload's check {why}", reason=None, worker_id=first.id, slot=first.slot) from exc
    if verdict is False:
        raise WorkerStartError("the reload's check returned False", reason=None, worker_id=first.id, slot=first.slot)
