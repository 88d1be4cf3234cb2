"""The worker program of ``drover-py serve``: serve one ASGI or WSGI app on the inherited sockets.

Run by the master (``drover-py serve`` or `drover_py.serve.create_master`), never by
hand: it reads its `ServeOptions` from the environment, imports the app from
``app_dir``, and talks to the master through a `MessageBus`:

- "started" once the server's startup, the app's ASGI lifespan startup included,
  completed (the sockets listen already: the master bound them before this process
  existed). An app that cannot be imported or whose startup fails ends the worker with
  exit code 3 (``RestartPolicy.halt_codes``: it cannot start) after one line saying why;
- on "stop": stop accepting, answer the requests in flight, answer the next request on
  every open keep-alive connection with ``Connection: close`` and close each connection
  only then (or when idle for the keep-alive timeout, or at ``drain_timeout``); then
  "stopped";
- on "quit": "shut_down", and the process ends.

ASGI on asyncio is served by uvicorn, on trio by hypercorn; WSGI by waitress (threads, no
event loop), with the same drain.

For a custom server, write your own worker script with `drover_py.MessageBus` and
`drover_py.inherited_sockets`; `run_worker` below is the template to follow.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from typing import Protocol

import anyio

from .. import MessageBus, RequestError, inherited_sockets
from .._exceptions import ConfigError
from ._drain import Drain, RequestLimit
from ._load import AppLoadError, load_app, report
from ._options import INFO_REQUEST, RECYCLE_REQUEST, ServeOptions

#: Exit code of a worker that cannot start: no options, no socket, the app failed to load.
CANNOT_START = 3


class Server(Protocol):
    """What `run_worker` needs of a server."""

    async def run_until_stopped(self) -> int:
        """Serve until `stop` was called and the drain is done; return the exit code."""

    async def wait_ready(self) -> None:
        """Return once the server (and the app's startup) is ready to answer."""

    async def stop(self) -> None:
        """Stop accepting and start the drain; `run_until_stopped` returns when it is done."""


async def run_worker(server: Server, drain: Drain, info: dict[str, str]) -> int:
    """Run ``server`` as a worker of its master (started, stop, stopped, quit); return the exit code."""
    stop_asked, quit_asked = anyio.Event(), anyio.Event()
    exit_code = 0
    async with MessageBus() as mb:

        async def on_stop() -> None:
            stop_asked.set()
            drain.start()
            await server.stop()

        mb.on("stop", on_stop)
        mb.on("quit", quit_asked.set)
        mb.handle(INFO_REQUEST, lambda payload: info)

        async with anyio.create_task_group() as tg:

            async def ask_recycle() -> None:
                try:
                    await mb.request(RECYCLE_REQUEST, {"requests": drain.served.count})
                except RequestError:  # the master is going, or does not recycle: serve on
                    pass

            async def serve() -> None:
                nonlocal exit_code
                exit_code = await server.run_until_stopped()
                tg.cancel_scope.cancel()  # nothing more to wait for in this block

            drain.served.on_limit = functools.partial(tg.start_soon, ask_recycle)
            tg.start_soon(serve)
            await server.wait_ready()
            await mb.send_started()
            await anyio.sleep_forever()  # until serve() returns
        if not stop_asked.is_set():
            return exit_code  # it ended by itself (the app could not start): the master reports it
        await mb.send_stopped()
        await quit_asked.wait()
        await mb.send_shut_down()
    return 0


def main() -> None:
    """Serve the app the master named; exit with the worker's exit code."""
    try:
        options = ServeOptions.from_env()
    except ConfigError as exc:
        sys.exit(f"drover-py serve worker: {exc}")
    sys.path.insert(0, options.app_dir)
    try:
        app, interface = load_app(options)
    except AppLoadError as exc:
        report(exc)
        sys.exit(CANNOT_START)
    sockets = inherited_sockets()
    if not sockets:
        sys.exit("drover-py serve worker: no listening socket: run me from `drover-py serve`")
    limit = None
    if options.max_requests is not None:
        limit = options.max_requests + random.randint(0, options.max_requests_jitter)
    served = RequestLimit(limit)
    if interface == "wsgi":
        server_name = "waitress"
    else:
        server_name = "uvicorn on asyncio" if options.backend == "asyncio" else "hypercorn on trio"
    info = {"app": options.app, "interface": interface, "server": server_name, "pid": str(os.getpid())}
    if interface == "wsgi":
        from ._waitress import WaitressServer, run_waitress_worker

        sys.exit(run_waitress_worker(WaitressServer(app, options, sockets, served), info))
    drain = Drain(app, served)  # type: ignore[arg-type]
    server: Server
    if options.backend == "asyncio":
        from ._uvicorn import UvicornServer

        server = UvicornServer(drain, options, sockets)
    else:
        from ._hypercorn import HypercornServer

        server = HypercornServer(drain, options, sockets)
    sys.exit(anyio.run(run_worker, server, drain, info, backend=options.backend))


if __name__ == "__main__":
    main()
