"""A ``kind = "once"`` app: one process (a migration, a cache warm-up) that must exit 0.

It is a plain program, no `MessageBus` needed: ``python script *args`` with the app's
``env``, ``cwd``, ``user`` and ``group``, its output on the deployment's own. It has
``start_timeout`` seconds to finish; stopped before it finished (a shutdown, the
deadline), its process group gets SIGTERM, then SIGKILL ``stop_timeout`` seconds later.
"""

from __future__ import annotations

import anyio
import anyio.abc

from .._config.options import MasterConfig
from .._exceptions import DroverError
from .._exit_reasons import classify
from .._supervise.checks import stop_group
from .._supervise.handoff import base_env


class OnceFailed(DroverError):
    """A ``once`` app did not exit 0 within its ``start_timeout``, or could not be run."""


async def run_once(config: MasterConfig) -> None:
    """Run the program of ``config`` to its end; raise `OnceFailed` unless it exits 0 in time.

    Cancelled, it stops the process (and its process group) before it returns.
    """
    run_as = config.run_as
    try:
        process = await anyio.open_process(
            config.command(),
            env=base_env(config),
            cwd=config.cwd,
            start_new_session=True,  # its own process group: stopping it reaches its children
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else run_as.groups,
            stdin=None,
            stdout=None,
            stderr=None,
        )
    except OSError as exc:
        raise OnceFailed(f"cannot run {config.script}: {exc.strerror or exc}") from exc
    try:
        with anyio.move_on_after(config.start_timeout) as deadline:
            code = await process.wait()
        if deadline.cancelled_caught:
            raise OnceFailed(
                f"did not finish within start_timeout = {config.start_timeout:g} s, and was stopped"
                " (a once app must exit 0 before the apps that depend on it start)"
            )
    finally:
        with anyio.CancelScope(shield=True):
            await stop_group(process, config.stop_timeout)
            await process.aclose()
    if code != 0:
        raise OnceFailed(f'{classify(code)}; a kind = "once" app must exit 0')
