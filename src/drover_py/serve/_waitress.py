"""WSGI: serve an app with waitress on the inherited sockets, with a drain that loses no request.

waitress is a production WSGI server of its own (an I/O loop in the main thread, the
app in a pool of threads, keep-alive), faster here than gunicorn's sync workers and
than a WSGI app behind an ASGI server. Its own shutdown closes every connection at
once; the drain here does what the ASGI servers' does instead:

- stop accepting: the listeners report themselves not readable, so the loop no longer
  accepts (nothing is closed, so no accepted connection is dropped);
- every response that starts from then on carries ``Connection: close``, and waitress
  closes that connection once it went out;
- an idle keep-alive connection closes once idle for ``timeout_keep_alive`` (waitress's
  channel clean-up, run every second while draining);
- when no connection is left, or at ``drain_timeout``, the loop ends.

The worker talks to its master with a `SyncMessageBus` (no event loop here); its reader
thread starts the drain and wakes the loop through waitress's trigger.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress.channel
import waitress.server
import waitress.task
import waitress.wasyncore

from .. import RequestError, SyncMessageBus
from ._drain import RequestLimit
from ._options import INFO_REQUEST, RECYCLE_REQUEST, ServeOptions

#: Seconds between the loop's wake-ups while it serves (waitress's default) and while
#: it drains (to see the last connection go, and to close idle ones on time).
_SERVING_POLL, _DRAINING_POLL = 1.0, 0.05


class _DrainingTask(waitress.task.WSGITask):
    """waitress's WSGI task, answering with ``Connection: close`` once its server drains."""

    def build_response_header(self) -> bytes:
        if getattr(self.channel.server, "drover_py_draining", False):
            self.set_close_on_finish()
        header: bytes = super().build_response_header()
        return header


class _Channel(waitress.channel.HTTPChannel):
    task_class = _DrainingTask


class WaitressServer:
    """waitress over inherited sockets: serve, drain, report requests for ``max_requests``."""

    def __init__(
        self,
        app: Callable[..., Any],
        options: ServeOptions,
        sockets: list[socket.socket],
        served: RequestLimit,
        threads: int = 4,
    ) -> None:
        self._options = options
        self._map: dict[int, Any] = {}
        self.served = served
        self._server: Any = waitress.server.create_server(
            self._counting(app),
            map=self._map,
            sockets=sockets,
            threads=threads,
            backlog=2048,
            ident="drover-py",
            channel_timeout=max(1, int(options.timeout_keep_alive)),
            expose_tracebacks=False,
            url_prefix=options.root_path,
            trusted_proxy=options.forwarded_allow_ips
            if options.proxy_headers and options.forwarded_allow_ips
            else None,
            clear_untrusted_proxy_headers=True,
        )
        self._listeners = [d for d in self._map.values() if isinstance(d, waitress.server.BaseWSGIServer)]
        for listener in self._listeners:
            listener.channel_class = _Channel
        self._draining = threading.Event()

    def _counting(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            try:
                return app(environ, start_response)
            finally:
                self.served.add()

        return counted

    def _connections(self) -> int:
        return sum(isinstance(d, waitress.channel.HTTPChannel) for d in list(self._map.values()))

    def stop(self) -> None:
        """Start the drain (from any thread); `serve` returns once it is done."""
        for listener in self._listeners:
            listener.accepting = False
            listener.drover_py_draining = True  # type: ignore[attr-defined]  # read by _DrainingTask
            listener.adj.cleanup_interval = 1
            listener.next_channel_cleanup = 0
        self._draining.set()
        self._listeners[0].pull_trigger()

    def serve(self) -> None:
        """Run waitress's loop until `stop` was called and the drain is done."""
        deadline = None
        while True:
            draining = self._draining.is_set()
            if draining:
                deadline = deadline or time.monotonic() + self._options.drain_timeout
                if self._connections() == 0 or time.monotonic() >= deadline:
                    break
            waitress.wasyncore.loop(timeout=_DRAINING_POLL if draining else _SERVING_POLL, map=self._map, count=1)
        self._server.task_dispatcher.shutdown(
            cancel_pending=False, timeout=max(0.0, (deadline or 0) - time.monotonic())
        )
        waitress.wasyncore.close_all(self._map)


def run_waitress_worker(server: WaitressServer, info: dict[str, str]) -> int:
    """Serve as a worker of the master (started, stop, stopped, quit); return the exit code."""
    with SyncMessageBus() as mb:

        def ask_recycle() -> None:
            try:
                mb.request(RECYCLE_REQUEST, {"requests": server.served.count})
            except RequestError:  # the master is going, or does not recycle: serve on
                pass

        server.served.on_limit = lambda: threading.Thread(target=ask_recycle, daemon=True).start()
        mb.on("stop", server.stop)
        mb.on("quit", lambda: None)  # answered below, after "stopped"
        mb.handle(INFO_REQUEST, lambda payload: info)
        mb.send_started()
        server.serve()
        mb.send_stopped()
        mb.wait_quit()
        mb.send_shut_down()
    return 0
