"""``ctl``: send a command to a running master, or read them from stdin; print the reply readably."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING, TextIO

import anyio

from .options import DEFAULT_SOCKET, EXIT_CONNECT, EXIT_FAILED, EXIT_OK, EXIT_UNAUTHORIZED, SOCKET_ENV

if TYPE_CHECKING:
    from .._commands import JSON
    from .._control.client import ControlClient


# -- ctl ----------------------------------------------------------------------------------


def _ctl(ns: argparse.Namespace, key: str | None) -> int:
    from .._control.client import ControlClient  # here: serving needs no client (a start imports less)

    client = ControlClient(
        unix=None if ns.url else (ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET),
        url=ns.url,
        key=key,
        timeout=ns.timeout,
    )
    if ns.command in ("open", "watch"):
        return _live(client, ns)
    if ns.command is not None:
        return _one(client, ns, [ns.command, *ns.words], sys.stdout)
    interactive = sys.stdin.isatty()
    code = EXIT_OK
    while True:
        if interactive:
            print("drover-py> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return code
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"drover-py ctl: {exc}", file=sys.stderr)
            continue
        if not words:
            continue
        if words in (["quit"], ["bye"]):
            return code
        code = _one(client, ns, words, sys.stdout)
        if code == EXIT_CONNECT:
            return code  # the master is gone: nothing more to pipe to


def _live(client: ControlClient, ns: argparse.Namespace) -> int:
    """Run ``ctl open`` (the status page) or ``ctl watch`` (a live table) until Ctrl-C."""
    from .._control.client import ControlConnectError
    from .._control.live import ControlRefused, parse_live, run_live

    options = parse_live(ns.command, ns.words)
    try:
        anyio.run(run_live, client, options, ns.master, render)
    except KeyboardInterrupt:  # before the signal handlers were installed
        pass
    except ControlConnectError as exc:
        print(f"drover-py ctl {ns.command}: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except ControlRefused as exc:
        print(f"drover-py ctl {ns.command}: {exc}", file=sys.stderr)
        return EXIT_UNAUTHORIZED if exc.status == 401 else EXIT_FAILED
    return EXIT_OK


def _one(client: ControlClient, ns: argparse.Namespace, words: list[str], out: TextIO) -> int:
    from .._control.client import ControlConnectError, ControlReply

    command, args = words[0], words[1:]

    async def run() -> ControlReply:
        named = await _named(client, command, args, ns.master)
        return await client.run(command, named if named is not None else (list(args) or None), master=ns.master)

    try:
        reply: ControlReply = anyio.run(run)
    except ControlConnectError as exc:
        print(f"drover-py ctl: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    if ns.json:
        print(json.dumps(reply.body, indent=2), file=out)
    if reply.status == 401:
        print(f"drover-py ctl: unauthorized: {reply.error}", file=sys.stderr)
        return EXIT_UNAUTHORIZED
    if not reply.ok:
        said = [reply.body.get(k) for k in ("output", "stderr_tail")] if isinstance(reply.body, dict) else []
        for text in said:  # what the check or the failed worker printed last, above the one line
            if isinstance(text, str) and text:
                print(text, file=sys.stderr)
        print(f"drover-py ctl: {command} failed: {reply.error}", file=sys.stderr)
        return EXIT_FAILED
    result = reply.body.get("result") if isinstance(reply.body, dict) else reply.body
    if not ns.json:
        print(render(result), file=out)
    if isinstance(result, dict) and result.get("healthy") is False:
        return EXIT_FAILED  # `ctl health` in a probe or a script: unhealthy is a failure
    return EXIT_OK


async def _named(client: ControlClient, command: str, args: list[str], master: str | None) -> JSON:
    """Return ``args`` by name when some are given as ``--name VALUE``, else None (by position).

    The positional ones take the command's parameters in order (its help says which).
    """
    if not any(word.startswith("--") for word in args):
        return None
    described = await client.request("GET", f"/commands/{command}", master=master)
    result = described.body.get("result") if isinstance(described.body, dict) else None
    if not described.ok or not isinstance(result, dict) or not isinstance(result.get("params"), list):
        return None  # the server's reply to the call says what is wrong
    order = [str(p["name"]) for p in result["params"] if isinstance(p, dict)]
    named: dict[str, JSON] = {}
    positional: list[str] = []
    words = iter(args)
    for word in words:
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, equals, value = word[2:].partition("=")
        named[name.replace("-", "_")] = value if equals else next(words, "")
    free = [name for name in order if name not in named]
    if len(positional) > len(free):
        return None  # too many: the server says so
    named.update(zip(free, positional))
    return named


def render(value: JSON) -> str:
    """Return a command's result as readable text: a table, ``key: value`` lines, or text."""
    if value is None:
        return "ok"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        rows = [row for row in value if isinstance(row, dict)]
        columns: list[str] = []
        for row in rows:
            columns += [str(k) for k in row if str(k) not in columns]
        cells = [[_cell(column, row.get(column)) for column in columns] for row in rows]
        widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in cells]
        return "\n".join(lines)
    if isinstance(value, dict):
        if "usage" in value and "help" in value:
            return f"usage: {value['usage']}\n\n{value['help']}"
        width = max((len(str(k)) for k in value), default=0)
        return "\n".join(f"{str(k) + ':':<{width + 1}} {_cell(str(k), v)}" for k, v in value.items())
    return json.dumps(value)


def _cell(column: str, value: JSON) -> str:
    if value is None:
        return "-"
    if column == "rss" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value / 2**20:.1f}M"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
