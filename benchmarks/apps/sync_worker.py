"""A synchronous drover-py worker: a WSGI app on a blocking server, no event loop.

The worker examples/wsgi_sync had before ``drover-py serve`` existed; the sync rows of
`bench_preload.py` (`preload_serve.py ... sync`).

The same stack as gunicorn's sync workers, with the standard library only: one thread
accepts a connection on the listening socket its master bound (``bind=[...]``) and every
worker inherited (`drover_py.inherited_sockets`), answers it with `wsgiref`, closes it,
and accepts the next. It talks to the master through a `SyncMessageBus`, whose handlers
run in the bus's reader thread:

- "started" once the server is set up (the socket listens already, in the master);
- on "stop": wake the accept loop through a pipe, so it stops accepting after the
  request in hand (if any) is answered; then "stopped". Connections still queued stay
  in the master's socket for the other workers (or the replacement);
- on "quit": "shut_down", and the process ends.

The application is ``WSGI_APP`` (``module:attribute``, as for gunicorn; default
``wsgi:app``), imported from ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import selectors
import socket
import sys
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from drover_py import SyncMessageBus, inherited_sockets

#: Seconds a client has to send its request and read the answer, so that one slow
#: client cannot hold a worker (and its "stop") forever.
CLIENT_TIMEOUT = 30.0


class QuietHandler(WSGIRequestHandler):
    """wsgiref's request handler without its access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and return the attribute (the WSGI callable)."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def make_server(sock: socket.socket, app: Any) -> WSGIServer:
    """Return a `WSGIServer` for ``app`` over the already listening ``sock`` (it binds nothing)."""
    server = WSGIServer(sock.getsockname(), QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    host, port = (sock.getsockname() + (0,))[:2] if sock.family != socket.AF_UNIX else ("localhost", 0)
    server.server_name, server.server_port = str(host), int(port)
    server.setup_environ()
    server.set_app(app)
    return server


def serve(servers: list[WSGIServer], wake: int) -> None:
    """Answer connections one at a time, on every listener, until ``wake`` becomes readable."""
    with selectors.DefaultSelector() as selector:
        for server in servers:
            server.socket.setblocking(False)  # every worker accepts from it: another may win the race
            selector.register(server.socket, selectors.EVENT_READ, server)
        selector.register(wake, selectors.EVENT_READ)
        while True:
            events = selector.select()
            if any(key.fd == wake for key, _ in events):
                return
            for key, _ in events:
                server = key.data
                try:
                    conn, address = server.socket.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                conn.settimeout(CLIENT_TIMEOUT)
                try:
                    server.process_request(conn, address)  # answers, then closes the connection
                except Exception:
                    server.handle_error(conn, address)
                    server.shutdown_request(conn)


def main() -> int:
    sockets = inherited_sockets()
    if not sockets:
        sys.exit("sync_worker: no listening socket: run me from a master created with bind=[...]")
    app = load_app(os.environ.get("WSGI_APP", "wsgi:app"))
    servers = [make_server(sock, app) for sock in sockets]
    wake_r, wake_w = os.pipe()
    with SyncMessageBus() as mb:

        def wake() -> None:  # in the reader thread: wake the accept loop
            os.write(wake_w, b"x")

        mb.on("stop", wake)
        mb.on("quit", lambda: None)  # answered below, after "stopped"
        mb.send_started()
        serve(servers, wake_r)
        mb.send_stopped()
        mb.wait_quit()
        mb.send_shut_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
