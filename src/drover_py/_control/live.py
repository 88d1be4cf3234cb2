"""The live views of ``drover-py ctl``: ``open`` (the status page in a browser) and ``watch`` (a live table).

Both are the client's own words, not commands of the master; both run until Ctrl-C
(or SIGTERM) and then end normally.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO
from urllib.parse import urlencode

import anyio
import anyio.abc
import attrs
import h11

from .._commands import JSON
from .._exceptions import DroverError
from .client import ControlClient, ControlConnectError, ControlReply
from .http import MAX_HEAD, Closed, send_message
from .proxy import open_page_proxy, read_event

#: The words ``ctl`` runs itself rather than sending them to the master.
LIVE_COMMANDS = ("open", "watch")
#: Columns that change without an event: a pipe gets a new table only when another one changes.
_VOLATILE = ("uptime", "rss")
#: Redraw from the top left, clearing what is below: a terminal's table updated in place.
_HOME, _CLEAR_LINE, _CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"

Render = Callable[[JSON], str]


class ControlRefused(DroverError):
    """The control server refused a request of ``open`` or ``watch`` (``status`` 401: the key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class LiveOptions:
    """What ``ctl open`` or ``ctl watch`` was asked for."""

    command: str
    browser: bool = True
    port: int = 0
    interval: float = 2.0


def parse_live(command: str, words: Sequence[str]) -> LiveOptions:
    """Parse the options after ``ctl open`` or ``ctl watch`` (a usage error exits 2, as argparse does)."""
    parser = argparse.ArgumentParser(prog=f"drover-py ctl {command}")
    if command == "open":
        parser.description = (
            "Open the status page in a browser, through a proxy on 127.0.0.1 that only the "
            "one-time link signs in to; runs until Ctrl-C."
        )
        parser.add_argument("--no-browser", action="store_true", help="print the link, open no browser")
        parser.add_argument("--port", type=int, default=0, help="port of the proxy on 127.0.0.1 (default: any free)")
    else:
        parser.description = "Show the workers table live: redrawn on every event, and every INTERVAL seconds."
        parser.add_argument(
            "--interval", type=float, default=2.0, metavar="S", help="refresh uptime and RSS every S seconds"
        )
    ns = parser.parse_args(list(words))
    if command == "watch" and not ns.interval > 0:
        parser.error(f"--interval must be > 0, got {ns.interval:g}")
    if command == "open":
        return LiveOptions(command, browser=not ns.no_browser, port=ns.port)
    return LiveOptions(command, interval=ns.interval)


async def run_live(
    client: ControlClient, options: LiveOptions, master: str | None, render: Render, out: TextIO = sys.stdout
) -> None:
    """Run ``ctl open`` or ``ctl watch`` until Ctrl-C or SIGTERM.

    Raise `ControlConnectError` when the server cannot be reached, `ControlRefused` when
    it refuses (a wrong key, an unknown master).
    """
    failure: list[Exception] = []
    async with anyio.create_task_group() as tg:

        def fail(exc: Exception) -> None:
            failure.append(exc)
            tg.cancel_scope.cancel()

        await tg.start(_stop_on_signal, tg.cancel_scope)
        if options.command == "open":
            tg.start_soon(_guarded, _open(client, options, out), fail)
        else:
            tg.start_soon(_guarded, _watch(client, options, master, render, out, fail), fail)
    if failure:
        raise failure[0]


Fail = Callable[[Exception], None]


async def _guarded(view: Awaitable[None], fail: Fail) -> None:
    try:
        await view
    except (ControlConnectError, ControlRefused) as exc:
        fail(exc)


async def _stop_on_signal(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


def _result(reply: ControlReply) -> JSON:
    if not reply.ok:
        raise ControlRefused(reply.status, reply.error)
    return reply.body.get("result") if isinstance(reply.body, dict) else None


# -- ctl open -----------------------------------------------------------------------------


async def _open(client: ControlClient, options: LiveOptions, out: TextIO) -> None:
    _result(await client.request("GET", "/masters"))  # reachable, and the key is right
    async with open_page_proxy(client, port=options.port) as proxy:
        print(f"drover-py ctl open: the status page is at {proxy.url}", file=out)
        print("  the link signs in once; Ctrl-C stops", file=out, flush=True)
        if options.browser and not (
            _has_display() and await anyio.to_thread.run_sync(webbrowser.open, proxy.url, abandon_on_cancel=True)
        ):
            print("drover-py ctl open: no graphical browser here; open the link yourself", file=out, flush=True)
        await proxy.link_used.wait()
        print("drover-py ctl open: signed in; the link is used up", file=out, flush=True)
        await anyio.sleep_forever()


def _has_display() -> bool:
    """Return whether a graphical browser can open here (not a text one that would take the terminal)."""
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# -- ctl watch ----------------------------------------------------------------------------


class _Wake:
    """A flag that event readers raise and the drawing loop waits on, with a deadline."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()


async def _watch(
    client: ControlClient, options: LiveOptions, master: str | None, render: Render, out: TextIO, fail: Fail
) -> None:
    listing = _result(await client.request("GET", "/masters"))
    if master is not None:
        names = [master]
    else:
        names = [str(m["name"]) for m in listing if isinstance(m, dict)] if isinstance(listing, list) else []
    redraw = out.isatty()
    wake = _Wake()
    async with anyio.create_task_group() as tg:
        for name in names:  # subscribed before the first table: no change is missed
            await tg.start(_follow, client, name, wake, fail)
        if redraw:
            out.write("\x1b[?25l\x1b[2J")  # a clear screen, without the cursor while the table is live
        try:
            last = None
            while True:
                text, key = await _snapshot(client, names, render)
                if redraw:
                    title = f"drover-py ctl watch · {time.strftime('%H:%M:%S')} · Ctrl-C exits"
                    lines = [title, "", *text.splitlines()]
                    out.write(_HOME + "".join(line + _CLEAR_LINE + "\n" for line in lines) + _CLEAR_BELOW)
                    out.flush()
                elif key != last:
                    out.write(text + "\n\n")
                    out.flush()
                last = key
                await wake.wait(options.interval)
        except (ControlConnectError, ControlRefused) as exc:
            fail(exc)  # ends the readers too
        finally:
            if redraw:
                out.write("\x1b[?25h")
                out.flush()


async def _snapshot(client: ControlClient, names: list[str], render: Render) -> tuple[str, str]:
    """Return the tables of ``names`` as text, and that text without the columns that drift."""
    listing = _result(await client.request("GET", "/masters"))
    masters = {m["name"]: m for m in listing if isinstance(m, dict)} if isinstance(listing, list) else {}
    parts, keys = [], []
    for name in names:
        described = masters.get(name)
        if described is None:
            parts.append(f"{name}: no longer served")
            keys.append(parts[-1])
            continue
        rows = _result(await client.run("workers", master=name))
        head = f"{name}: {described['started']} of {described['count']} started"
        steady = (
            [{k: v for k, v in row.items() if k not in _VOLATILE} for row in rows if isinstance(row, dict)]
            if isinstance(rows, list)
            else []
        )
        parts.append(head + "\n" + (render(rows) if rows else "(no workers)"))
        keys.append(head + repr(steady))
    return "\n\n".join(parts), "\n".join(keys)


async def _follow(
    client: ControlClient,
    name: str,
    wake: _Wake,
    fail: Fail,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Read master ``name``'s event stream; raise ``wake`` at each event, ``fail`` when it ends."""
    started = False

    def ready() -> None:
        nonlocal started
        started = True
        task_status.started()

    try:
        await _read_events(client, name, wake, ready)
    except (ControlConnectError, ControlRefused) as exc:
        fail(exc)
    finally:
        if not started:
            task_status.started()


async def _read_events(client: ControlClient, name: str, wake: _Wake, ready: Callable[[], None]) -> None:
    stream, host = await client._connect()
    async with stream:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        headers = [("host", host), ("accept", "text/event-stream")]
        if client.key:
            headers.append(("authorization", f"Bearer {client.key}"))
        target = "/events?" + urlencode({"master": name})
        try:
            await send_message(conn, stream, h11.Request(method="GET", target=target, headers=headers))
            head = await read_event(conn, stream)
            if not isinstance(head, h11.Response):
                raise ControlConnectError("the control server did not answer the event stream")
            if head.status_code != 200:
                body = b""
                while isinstance(event := await read_event(conn, stream), h11.Data):
                    body += event.data
                raise ControlRefused(head.status_code, ControlReply(head.status_code, _json(body)).error)
            ready()
            while isinstance(event := await read_event(conn, stream), h11.Data):
                if b"event:" in event.data:
                    wake.set()
        except (Closed, OSError, anyio.BrokenResourceError, h11.ProtocolError) as exc:
            raise ControlConnectError(f"the control server closed the event stream ({exc or 'gone'})") from None
        raise ControlConnectError("the control server closed the event stream")


def _json(data: bytes) -> JSON:
    try:
        value: JSON = json.loads(data)
    except ValueError:
        return None
    return value
