"""The control plane's built-in commands of one master, as one object built once per master.

Each public method is a command (``workers``, ``restart all``...): its signature gives the
arguments, its docstring the help. `ControlServer` builds a `Builtins` when it starts to
serve a master and resolves a request's command against it and the master's own
commands (``master.command(...)``), which may override or disable a built-in one.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from .._commands import JSON, Command, CommandError, make_command
from .._reports import ReloadReport
from .._status import WorkerStatus
from .._supervise.checks import CheckFailed
from .._supervise.master import Master
from .._supervise.recycler import read_rss

if TYPE_CHECKING:
    from .server import ControlServer

#: Seconds a built-in operation's reply waits by default before saying "still running".
DEFAULT_TIMEOUT = 60.0
#: The built-in commands, in the order ``help`` lists them.
NAMES = ("help", "workers", "health", "start", "restart", "upgrade", "test", "scale", "shutdown", "exit")


def all_slots_started(master: Master) -> bool:
    """Return whether the master has as many started workers as it has slots, and is not going away."""
    return master.started_count >= master.config.count and not master.draining


def reload_fields(report: ReloadReport) -> dict[str, JSON]:
    """Return a reload's reply fields: its report as the message, its figures, slot by slot."""
    return {
        "message": str(report),
        "workers": report.workers,
        "seconds": round(report.seconds, 3),
        "canary": report.canary,
        "check": report.check,
        "slots": [
            {
                "slot": s.slot,
                "old_pid": s.old_pid,
                "new_id": s.new_id,
                "new_pid": s.new_pid,
                "ready_seconds": round(s.ready_seconds, 3),
                "retired_first": s.retired_first,
            }
            for s in report.slots
        ],
    }


class Builtins:
    """The built-in commands of master ``name`` served by ``server``."""

    def __init__(self, server: ControlServer, name: str, master: Master) -> None:
        self._server = server
        self._name = name
        #: The master these commands act on.
        self.master = master
        #: The commands, made once from the methods below.
        self.commands: dict[str, Command] = {
            command: make_command(command, getattr(self, command)) for command in NAMES
        }

    @staticmethod
    def _check_timeout(timeout: float) -> float:
        if not timeout > 0:
            raise CommandError(f"timeout must be > 0 seconds, got {timeout:g}")
        return timeout

    def _target_id(self, target: str) -> int | None:
        if target == "all":
            return None
        try:
            worker_id = int(target)
        except ValueError:
            raise CommandError(f"target must be 'all' or a worker id, got {target!r}") from None
        if worker_id not in {w.id for w in self.master.workers}:
            raise CommandError(f"no worker with id {worker_id}; see 'workers'")
        return worker_id

    def help(self, command: str = "") -> JSON:
        """Show every command, or the help of one."""
        commands = self._server.commands(self._name)
        if not command:
            return [{"name": c.name, "usage": c.usage(), "summary": c.summary} for c in commands.values()]
        if command not in commands:
            raise CommandError(f"unknown command {command!r}; try 'help'")
        return commands[command].describe()

    def workers(self) -> JSON:
        """List the workers: id, slot, pid, status, uptime (s), restarts, rss (bytes).

        restarts counts the workers started in the slot after its first one
        (restarts and reloads) since the control server opened.
        """
        now = time.time()
        starts = self._server._directory.starts.get(self._name, {})
        rows: list[JSON] = []
        for w in self.master.workers:
            rows.append(
                {
                    "id": w.id,
                    "slot": w.slot,
                    "pid": w.pid,
                    "status": w.status.name,
                    "uptime": None if w.started_at is None else round(max(0.0, now - w.started_at), 3),
                    "restarts": max(0, starts.get(w.slot, 0) - 1),
                    "rss": None if w.pid is None or w.exit_reason is not None else read_rss(w.pid),
                    "exit_reason": None if w.exit_reason is None else str(w.exit_reason),
                }
            )
        return rows

    def health(self) -> JSON:
        """Report the service's health: healthy when every slot has a started worker.

        Override it with ``master.command("health", ...)`` to expose application data.
        """
        return {
            "healthy": all_slots_started(self.master),
            "started": self.master.started_count,
            "count": self.master.config.count,
            "failed": self.master.get_workers_statuses().count(WorkerStatus.FAILED),
            "pid": os.getpid(),
        }

    async def start(self, script: str = "", workers: int = 0, name: str = "") -> JSON:
        """Start workers: this master's, or a new master for SCRIPT.

        Without SCRIPT, start this master if it was not started yet (WORKERS, if
        given, sets the count first). With SCRIPT, start a new master of WORKERS
        workers (default: as many as this one) for that script, served here under
        NAME (default: the script's file name without suffix), with this master's
        options (env, cwd, user, timeouts, restart, output, preload) but no listening
        sockets; shut it down with 'shutdown all' and ?master=NAME.
        """
        if workers < 0:
            raise CommandError(f"workers must be >= 1, got {workers}")
        if not script:
            if workers:
                await self.master.scale(workers)
            await self.master.start()
            return {"done": True, "master": self._name, "count": self.master.config.count}
        return await self._server._start_master(script, workers or self.master.config.count, name, self.master)

    async def restart(self, target: str = "all", timeout: float = DEFAULT_TIMEOUT, check: str = "") -> JSON:
        """Replace ALL workers (zero downtime, slot by slot) or the worker of id TARGET.

        With CHECK (a script), the first new worker is checked before its old one
        retires (see 'test'); if the check fails, the reload rolls back. The reply
        waits at most TIMEOUT seconds; a longer restart goes on and says so.
        """
        worker_id = self._target_id(target)
        self._check_timeout(timeout)
        if worker_id is None:

            async def reload() -> dict[str, JSON]:
                return reload_fields(await self.master.graceful_reload(check=check or None))

            return await self._server._bounded("restart all", reload, timeout)
        if check:
            raise CommandError("a check applies to 'restart all' only")

        async def one() -> None:
            await self.master.restart_worker_by_id(worker_id)

        return await self._server._bounded(f"restart {worker_id}", one, timeout)

    async def upgrade(
        self, target: str, script: str, timeout: float = DEFAULT_TIMEOUT, canary: float = 0.0, check: str = ""
    ) -> JSON:
        """Replace ALL workers with workers of SCRIPT, rolling back on failure.

        graceful_reload(script) slot by slot, the first replacement watched CANARY
        seconds (0: none), then checked by the script CHECK if given (see 'test'); if
        a replacement fails or the check does, the switched slots roll back and the
        command fails. The reply waits at most TIMEOUT seconds.
        """
        worker_id = self._target_id(target)
        self._check_timeout(timeout)
        if canary < 0:
            raise CommandError(f"canary must be >= 0 seconds, got {canary:g}")
        if worker_id is not None:
            raise CommandError("upgrade of one worker is not supported: one master runs one script; use 'upgrade all'")

        async def reload() -> dict[str, JSON]:
            report = await self.master.graceful_reload(script=script, canary=canary or None, check=check or None)
            return reload_fields(report)

        return await self._server._bounded(f"upgrade all to {script}", reload, timeout)

    async def test(self, script: str, timeout: float = 30.0) -> JSON:
        """Run SCRIPT once, as the workers run (env, cwd, user), for at most TIMEOUT seconds.

        It passes when it exits with code 0 in time; the reply carries its last lines
        of output. A deploy hook's check: 'restart all' and 'upgrade' take one too.
        """
        self._check_timeout(timeout)
        result = await self.master.run_check(script, timeout)
        if not result.passed:
            raise CheckFailed(result)
        return {"passed": True, "message": str(result), "seconds": round(result.seconds, 3), "output": result.output}

    async def scale(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Change the number of workers to COUNT (up: readiness-gated; down: graceful)."""
        self._check_timeout(timeout)
        if count < 1:
            raise CommandError(f"count must be >= 1, got {count}")

        async def change() -> None:
            await self.master.scale(count)

        return await self._server._bounded(f"scale to {count}", change, timeout)

    async def shutdown(self, target: str = "all", timeout: float = DEFAULT_TIMEOUT) -> JSON:
        """Stop ALL workers gracefully (the master shuts down) or the worker of id TARGET.

        ALL: if the graceful shutdown is not done within TIMEOUT seconds, the
        workers left are killed. One worker: it is stopped gracefully and its slot
        stays empty until 'restart all'.
        """
        worker_id = self._target_id(target)
        self._check_timeout(timeout)
        if worker_id is not None:

            async def one() -> None:
                await self.master.stop_worker_by_id(worker_id)

            return await self._server._bounded(f"shutdown {worker_id}", one, timeout)
        result = await self._server._bounded("shutdown all", self.master.graceful_shutdown, timeout)
        if not result["done"]:
            await self.master.hard_shutdown()
            result = {"done": True, "message": f"graceful shutdown took over {timeout:g} s; the rest was killed"}
        gone = self._server._directory.added.get(self._name)
        if gone is not None:
            await gone.wait()  # a master started here is no longer served
        return result

    async def exit(self, now: str) -> JSON:
        """Kill every worker of every master served at once ('exit now'); the process may then end."""
        if now != "now":
            raise CommandError("say 'exit now' to kill every worker of every master at once")
        for each in list(self._server._directory.masters.values()):
            await each.hard_shutdown()
        self._server._exit.set()
        return {"done": True, "message": "every master was shut down hard"}
