"""`drover-py serve` as a user runs it: real Starlette and Flask apps, real HTTP, real signals.

The command runs in a subprocess (``python -m drover_py serve``) bound to port 0; each
test reads the port from the "serving" line and waits on output lines, process exits
and HTTP answers, never on time. Every app answers with its pid (``x-pid``), which is
how a test tells the workers apart. A CLI test runs the workers on the backend of the
test's own loop (``--backend``), so asyncio/uvicorn and trio/hypercorn are both covered
without running each test four times. The last test serves in-process through
`drover_py.serve.create_master`.
"""

from __future__ import annotations

import codecs
import http.client
import os
import re
import shutil
import signal
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from drover_py._control.client import ControlClient
from drover_py.serve import ServeOptions, create_master

from .helpers import is_running, wait_process_gone

pytestmark = pytest.mark.anyio
SERVE_APPS = Path(__file__).parent / "apps" / "serve"
#: Each test's deadline: ~3x what a test takes on a busy 2-core machine (pytest-timeout, 60 s, is the backstop).
DEADLINE = 30
SERVING = (
    r"drover-py: serving (?P<app>\S+) \((?P<interface>\w+), (?P<server>\w+)(?: on (?P<backend>\w+))?\) "
    r"with (?P<workers>\d+) workers? on http://127\.0\.0\.1:(?P<port>\d+)(?:; control on unix:\S+)?"
)
#: A frame of drover-py's own code in a traceback: a user must never see one for an app's error.
INTERNAL_FRAME = re.compile(r'File ".*/drover_py/')
#: The options every test passes: port 0, no control socket, quiet servers, short drains.
QUIET = ["--bind", "127.0.0.1:0", "--log-level", "warning", "--no-access-log", "--stop-timeout", "5"]


def args_for(backend: str, *extra: str, workers: int = 1) -> list[str]:
    """Return the usual options after the app: ``-w``, the test apps' folder, ``--backend``, no control, `QUIET`."""
    return ["-w", str(workers), "--app-dir", str(SERVE_APPS), "--backend", backend, "--no-control", *QUIET, *extra]


def serve_env(**extra: str) -> dict[str, str]:
    """Return this process's environment without any DROVER_PY_* option default, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROVER_PY_")}
    env.update(extra)
    return env


class Serve:
    """A running ``drover-py serve``: its process and its stdout and stderr, read as they come."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.output = {"out": "", "err": ""}
        self._open = set(self.output)
        self._changed = anyio.Event()

    async def pump(self, stream: ByteReceiveStream | None, name: str) -> None:
        """Collect ``stream`` into ``output[name]`` until EOF: the master and every worker closed it."""
        assert stream is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for chunk in stream:
            self.output[name] += decoder.decode(chunk)
            self._wake()
        self._open.discard(name)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, pattern: str, stream: str = "out", count: int = 1) -> list[re.Match[str]]:
        """Return the matches of ``pattern`` over complete lines once there are ``count`` of them."""
        regex = re.compile(f"^{pattern}$", re.MULTILINE)
        while True:
            text = self.output[stream]
            matches = list(regex.finditer(text[: text.rfind("\n") + 1]))
            if len(matches) >= count:
                return matches
            if stream not in self._open:
                raise AssertionError(f"drover-py serve never printed {pattern!r} on std{stream}:\n{self.describe()}")
            await self._changed.wait()

    async def serving(self) -> re.Match[str]:
        """Wait for the "serving" line; return its match (``port``, ``interface``, ``workers``...)."""
        return (await self.wait_for(SERVING))[0]

    async def terminate(self) -> None:
        """SIGTERM: the master must shut down gracefully, say so, and exit with code 0."""
        self.process.send_signal(signal.SIGTERM)
        assert await self.process.wait() == 0, self.describe()
        await self.wait_for("drover-py: shut down")

    def describe(self) -> str:
        return f"--- stdout\n{self.output['out']}--- stderr\n{self.output['err']}"


@asynccontextmanager
async def open_serve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[Serve]:
    """Run ``drover-py serve ARGS`` until the block ends; kill it then if it is still running.

    On the way out, wait until its stdout and stderr are closed: every worker has them,
    so the block ends only once every process of the command is gone.
    """
    command = [sys.executable, "-m", "drover_py", "serve", *args]
    process = await anyio.open_process(command, cwd=cwd, env=serve_env() if env is None else env)
    serve = Serve(process)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve.pump, process.stdout, "out")
            tg.start_soon(serve.pump, process.stderr, "err")
            try:
                yield serve
            except BaseException:
                print(f"drover-py serve {' '.join(args)}\n{serve.describe()}")  # shown with the failure
                raise
            finally:
                if process.returncode is None:
                    process.kill()
    finally:
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def run_serve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``drover-py serve ARGS`` to its end; return the exit code, stdout and stderr."""
    with anyio.fail_after(DEADLINE):
        result = await anyio.run_process(
            [sys.executable, "-m", "drover_py", "serve", *args],
            cwd=cwd,
            env=serve_env() if env is None else env,
            check=False,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def get(port: int) -> tuple[str, int]:
    """GET / on a new connection; return the body and the answering worker's pid."""
    body, headers = get_with_headers(port)
    return body, int(headers["x-pid"])


def get_with_headers(port: int) -> tuple[str, dict[str, str]]:
    """GET / on a new connection; return the body and the headers (lower-case names)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        body: bytes = response.read()
        return body.decode(), {name.lower(): value for name, value in response.headers.items()}


async def pids_answering(port: int, count: int, attempts: int = 300) -> set[int]:
    """Send requests on new connections until ``count`` distinct workers answered; return their pids."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add((await anyio.to_thread.run_sync(get, port))[1])
        if len(seen) >= count:
            return seen
    raise AssertionError(f"{attempts} requests were answered by {sorted(seen)} only, expected {count} workers")


class KeepAliveClient:
    """A client as the issue describes it: ONE keep-alive connection, requests back to back, no retry.

    It opens a new connection only after a response that said ``Connection: close``; any
    error ends it, recorded in ``failure``: a request lost by the server is never hidden
    by a retry. `run` is blocking: run it in a worker thread.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.pids: list[int] = []
        self.connections = 0
        self.failure: str | None = None
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._finished = False

    def run(self) -> None:
        connection = self._connect()
        try:
            while not self._stop.is_set():
                try:
                    connection.request("GET", "/")
                    response = connection.getresponse()
                    body = response.read().decode()
                except (OSError, http.client.HTTPException) as exc:
                    self.failure = f"request {len(self.pids) + 1} failed: {exc!r}"
                    return
                pid = response.getheader("x-pid")
                if response.status != 200 or pid is None or f"pid={pid}" not in body:
                    self.failure = f"request {len(self.pids) + 1}: unexpected answer {response.status} {body!r}"
                    return
                with self._progress:
                    self.pids.append(int(pid))
                    self._progress.notify_all()
                if (response.getheader("connection") or "").lower() == "close":
                    connection.close()
                    connection = self._connect()
        finally:
            connection.close()
            with self._progress:
                self._finished = True
                self._progress.notify_all()

    def _connect(self) -> http.client.HTTPConnection:
        self.connections += 1
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> None:
        """Make `run` return after the request in hand."""
        self._stop.set()

    async def wait_until(self, done: Callable[[list[int]], bool], timeout: float = 15.0) -> None:
        """Wait until ``done(pids)`` holds; fail at once if the client failed or ended."""

        def wait() -> bool:
            with self._progress:
                return self._progress.wait_for(lambda: self._finished or done(self.pids), timeout)

        in_time = await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
        assert self.failure is None, self.failure
        assert in_time and not self._finished, (
            f"not done in {timeout} s after {len(self.pids)} answers by {sorted(set(self.pids))}"
        )


@asynccontextmanager
async def open_keep_alive_client(port: int) -> AsyncIterator[KeepAliveClient]:
    """Run a `KeepAliveClient` on ``port`` in a worker thread while the block runs."""
    client = KeepAliveClient(port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, client.run)
        try:
            yield client
        finally:
            client.stop()


def runs(pids: list[int]) -> list[int]:
    """Return the pids in the order they answered, each run of equal ones collapsed."""
    return [pid for i, pid in enumerate(pids) if i == 0 or pids[i - 1] != pid]


# -- serving ------------------------------------------------------------------------------


async def test_serves_with_two_workers_and_sigterm_leaves_no_process(tmp_path: Path, anyio_backend: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            *args_for(anyio_backend, workers=2),
            cwd=tmp_path,
        ) as serve:
            serving = await serve.serving()
            server = "uvicorn" if anyio_backend == "asyncio" else "hypercorn"
            assert serving.group("app", "interface", "server", "backend", "workers") == (
                "starlette_app:app",
                "ASGI",
                server,
                anyio_backend,
                "2",
            )
            port = int(serving["port"])
            body, pid = await anyio.to_thread.run_sync(get, port)
            assert body == f"v1 pid={pid}"
            pids = await pids_answering(port, 2)
            assert serve.process.pid not in pids

            await serve.terminate()
            assert not any(is_running(pid) for pid in pids)
        assert "Traceback" not in serve.output["err"], serve.describe()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the backend plays no part
async def test_workers_from_the_environment(tmp_path: Path) -> None:
    """``DROVER_PY_WORKERS=2`` is ``-w 2``."""
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            "--app-dir",
            str(SERVE_APPS),
            "--no-control",
            *QUIET,
            cwd=tmp_path,
            env=serve_env(DROVER_PY_WORKERS="2"),
        ) as serve:
            serving = await serve.serving()
            assert serving["workers"] == "2"
            assert len(await pids_answering(int(serving["port"]), 2)) == 2
            await serve.terminate()


@pytest.mark.parametrize(
    ("anyio_backend", "app", "options", "interface", "body"),
    [
        ("asyncio", "flask_app:app", [], "WSGI", "flask"),
        ("trio", "flask_app:app", [], "WSGI", "flask"),
        ("asyncio", "factory_app:create_app", ["--factory"], "ASGI", "factory"),
        ("trio", "starlette_app:app", ["--interface", "asgi"], "ASGI", "v1"),
    ],
    ids=["flask-asyncio", "flask-trio", "factory", "explicit-asgi"],
)
async def test_app_dir_interface_and_factory(
    tmp_path: Path, anyio_backend: str, app: str, options: list[str], interface: str, body: str
) -> None:
    """The app lives in --app-dir, the command runs in another folder; the "serving" line names the interface."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            app,
            *options,
            *args_for(anyio_backend),
            cwd=elsewhere,
        ) as serve:
            serving = await serve.serving()
            # WSGI apps are served by waitress (threads, no event loop) whatever the backend
            expected = (
                ("waitress", None)
                if interface == "WSGI"
                else ({"asyncio": "uvicorn", "trio": "hypercorn"}[anyio_backend], anyio_backend)
            )
            assert (serving["app"], serving["interface"]) == (app, interface)
            assert (serving["server"], serving["backend"]) == expected
            answer, pid = await anyio.to_thread.run_sync(get, int(serving["port"]))
            assert answer == f"{body} pid={pid}"
            await serve.terminate()


@pytest.mark.parametrize(
    ("app", "servers"),
    [
        ("starlette_app:app", {"asyncio": "uvicorn", "trio": "hypercorn"}),
        ("flask_app:app", {"asyncio": "waitress", "trio": "waitress"}),
    ],
    ids=["asgi", "wsgi"],
)
async def test_preload_imports_the_app_and_only_its_server_once(
    tmp_path: Path, anyio_backend: str, app: str, servers: dict[str, str]
) -> None:
    """``--preload``: every worker runs the app its template imported, with the one server it needs; a reload makes a new template."""
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            app,
            *args_for(anyio_backend, "--preload", workers=2),
            cwd=tmp_path,
        ) as serve:
            port = int((await serve.serving())["port"])
            answers = [await anyio.to_thread.run_sync(get_with_headers, port) for _ in range(10)]
            template = {headers["x-imported-by"] for _, headers in answers}
            assert len(template) == 1 and not template & {headers["x-pid"] for _, headers in answers}
            assert {headers["x-servers"] for _, headers in answers} == {servers[anyio_backend]}

            serve.process.send_signal(signal.SIGHUP)
            await serve.wait_for(r".*\] reloaded .*", stream="err")
            _, headers = await anyio.to_thread.run_sync(get_with_headers, port)
            assert headers["x-imported-by"] not in template | {headers["x-pid"]}
            await serve.terminate()


# -- zero downtime ------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["starlette_app:app", "flask_app:app"], ids=["asgi", "wsgi"])
async def test_sighup_reload_loses_no_request_of_a_keep_alive_client(
    tmp_path: Path, anyio_backend: str, app: str
) -> None:
    """The issue's test: one keep-alive client, no retry, requests back to back through a reload of -w 1.

    The old worker answers until it is told to stop; its next answer says
    ``Connection: close``; the client's new connection reaches the new worker.
    """
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            app,
            *args_for(anyio_backend),
            cwd=tmp_path,
        ) as serve:
            port = int((await serve.serving())["port"])
            async with open_keep_alive_client(port) as client:
                await client.wait_until(lambda pids: len(pids) >= 20)
                [old] = set(client.pids)
                serve.process.send_signal(signal.SIGHUP)
                await serve.wait_for(r".*\] reloaded .*", stream="err")
                answered = len(client.pids)
                await client.wait_until(lambda pids: len(pids) >= answered + 20 and pids[-1] != old)
            assert client.failure is None, client.failure
            new = client.pids[-1]
            assert runs(client.pids) == [old, new]  # the old worker until its drain, then only the new one
            assert client.connections >= 2
            await serve.terminate()
    assert not is_running(old)


async def test_killed_worker_is_replaced(tmp_path: Path, anyio_backend: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            *args_for(anyio_backend),
            cwd=tmp_path,
        ) as serve:
            port = int((await serve.serving())["port"])
            _, victim = await anyio.to_thread.run_sync(get, port)
            os.kill(victim, signal.SIGKILL)
            await wait_process_gone(victim, 10)
            # The socket belongs to the master: this connection waits in its backlog for the replacement.
            _, replacement = await anyio.to_thread.run_sync(get, port)
            assert replacement != victim
            await serve.terminate()
        assert re.search(rf"exited unexpectedly .*pid={victim}\b", serve.output["err"]), serve.describe()


async def test_max_requests_replaces_the_worker_and_loses_no_request(tmp_path: Path, anyio_backend: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            *args_for(anyio_backend, "--max-requests", "5"),
            cwd=tmp_path,
        ) as serve:
            port = int((await serve.serving())["port"])
            async with open_keep_alive_client(port) as client:
                await client.wait_until(lambda pids: len(set(pids)) >= 2)
            assert client.failure is None, client.failure
            first, second, *_ = runs(client.pids)
            assert client.pids.count(first) >= 5  # replaced once it answered 5, the replacement first
            assert second != first
            await serve.terminate()


# -- failures -----------------------------------------------------------------------------


async def test_import_error_fails_the_start_with_the_apps_traceback_only(tmp_path: Path, anyio_backend: str) -> None:
    code, out, err = await run_serve(
        "broken_app:app",
        *args_for(anyio_backend, workers=2),
        cwd=tmp_path,
    )
    assert code == 1, err
    assert "serving" not in out
    lines = err.splitlines()
    assert (
        "drover-py serve: importing 'broken_app' failed: LookupError: broken_app: the setting BROKEN_SETTING is missing"
        in lines
    )
    assert (
        lines[-1].startswith("drover-py serve: worker ") and "exited with code 3 before it sent 'started'" in lines[-1]
    )
    # Each traceback is the app's: its frames are in broken_app.py, none in drover-py or importlib.
    frames = [line for line in lines if line.lstrip().startswith('File "')]
    assert "Traceback (most recent call last):" in lines and frames
    assert all(f'File "{SERVE_APPS / "broken_app.py"}"' in frame for frame in frames), err
    assert not INTERNAL_FRAME.search(err) and "Exception Group" not in err


async def test_failing_lifespan_startup_fails_the_start(tmp_path: Path, anyio_backend: str) -> None:
    code, out, err = await run_serve(
        "starlette_app:app",
        *args_for(anyio_backend),
        cwd=tmp_path,
        env=serve_env(SERVE_TEST_FAIL_LIFESPAN="1"),
    )
    assert code == 1, out + err
    assert "serving" not in out
    assert "lifespan startup failed on purpose" in err
    assert err.splitlines()[-1].startswith("drover-py serve: worker ") and "exited with code 3" in err
    assert not INTERNAL_FRAME.search(err), err


async def test_a_slow_start_or_reload_shows_which_workers_are_pending(tmp_path: Path, anyio_backend: str) -> None:
    gate = tmp_path / "gate"
    env = serve_env(SERVE_TEST_GATE=str(gate))
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            *args_for(anyio_backend),
            cwd=tmp_path,
            env=env,
        ) as serve:
            # not a terminal: plain lines, the first after 2 s of waiting
            await serve.wait_for(r"drover-py: starting: 0 of 1 ready after \d+ s; waiting for worker 1 \(slot 0\)")
            gate.touch()
            await serve.serving()
            # once serving, a reload by SIGHUP whose new worker is slow says so too
            gate.unlink()
            serve.process.send_signal(signal.SIGHUP)
            await serve.wait_for(r"drover-py: waiting for worker 2 \(slot 0\) to start \(\d+ s\)")
            gate.touch()
            await serve.wait_for(r".*\] reloaded .*", stream="err")
            await serve.terminate()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # refused before any loop runs
async def test_misspelt_module_is_refused_before_any_worker(tmp_path: Path) -> None:
    code, out, err = await run_serve("mian:app", "--app-dir", str(SERVE_APPS), "--no-control", *QUIET, cwd=tmp_path)
    assert code == 2  # a bad option
    assert out == ""
    assert err.splitlines() == [
        f"drover-py serve: MODULE:ATTR: no module named 'mian' in {SERVE_APPS} (run from the app's folder, or set --app-dir)"
    ]


# -- watch mode ---------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a worker never imports half a file (``*.tmp`` is not watched)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.rename(path)


async def test_reload_on_change_keeps_the_old_version_when_the_new_one_is_broken(
    tmp_path: Path, anyio_backend: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    source = (SERVE_APPS / "starlette_app.py").read_text()
    shutil.copy(SERVE_APPS / "starlette_app.py", site / "main.py")
    sock = tmp_path / "ctl.sock"
    # No bytecode: two versions written within one second, of one size, would share a stale .pyc.
    env = serve_env(PYTHONDONTWRITEBYTECODE="1")
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "main:app",
            "-w",
            "1",
            "--reload",
            "--app-dir",
            str(site),
            "--backend",
            anyio_backend,
            "--control",
            str(sock),
            *QUIET,
            cwd=tmp_path,
            env=env,
        ) as serve:
            port = int((await serve.serving())["port"])
            await serve.wait_for(r"drover-py: watching .* for changes")
            # The watch is set up in the step that printed that line: once the master's loop
            # answered anything after it, a change cannot be missed.
            assert (await ControlClient(unix=str(sock), timeout=10).run("health")).ok

            async def edit(text: str, outcome: str, count: int) -> None:
                write_atomically(site / "main.py", text)
                await serve.wait_for(outcome, count=count)

            await edit(
                source.replace('VERSION = "v1"', 'VERSION = "v2"'), r"drover-py: reloaded 1 worker in \d+\.\d\d s", 1
            )
            assert (await anyio.to_thread.run_sync(get, port))[0].startswith("v2 pid=")

            await edit(
                source + "\ndef broken(:\n", r"drover-py: reload failed, the previous version keeps serving: .*", 1
            )
            assert "SyntaxError" in serve.output["err"]
            assert (await anyio.to_thread.run_sync(get, port))[0].startswith("v2 pid=")

            await edit(
                source.replace('VERSION = "v1"', 'VERSION = "v3"'), r"drover-py: reloaded 1 worker in \d+\.\d\d s", 2
            )
            assert (await anyio.to_thread.run_sync(get, port))[0].startswith("v3 pid=")
            assert len(await serve.wait_for(r"drover-py: site/main\.py changed; reloading", count=3)) == 3
            await serve.terminate()


# -- library ------------------------------------------------------------------------------


async def test_create_master_serves_in_process(anyio_backend: str) -> None:
    """`create_master` on the test's own loop, its worker on the same backend: one request, then a graceful shutdown."""
    options = ServeOptions(
        app="starlette_app:app",
        app_dir=str(SERVE_APPS),
        backend="trio" if anyio_backend == "trio" else "asyncio",
        log_level="warning",
        access_log=False,
    )
    master = create_master(options, count=1, bind=["127.0.0.1:0"], start_timeout=15, stop_timeout=5, kill_timeout=2)
    with anyio.fail_after(DEADLINE):
        async with master:
            await master.start()
            port = master.sockets[0].getsockname()[1]
            body, pid = await anyio.to_thread.run_sync(get, port)
            assert body == f"v1 pid={pid}"
            assert [worker.pid for worker in master.workers] == [pid]
            await master.graceful_shutdown()
    assert not is_running(pid)


async def test_sigterm_drains_before_the_shutdown(tmp_path: Path, anyio_backend: str) -> None:
    """--drain-delay: on SIGTERM /healthz says 503 at once, and the app still answers meanwhile."""
    key = "drain-key"
    with anyio.fail_after(DEADLINE):
        async with open_serve(
            "starlette_app:app",
            *["-w", "1", "--app-dir", str(SERVE_APPS), "--backend", anyio_backend, *QUIET],
            *["--control", str(tmp_path / "ctl.sock"), "--control-tcp", "127.0.0.1:0", "--key", key],
            *["--drain-delay", "2"],
            cwd=tmp_path,
        ) as serve:
            [ready] = await serve.wait_for(
                r"drover-py: serving .* on http://127\.0\.0\.1:(?P<port>\d+); "
                r"control on unix:\S+ and http://127\.0\.0\.1:(?P<control>\d+)"
            )
            port, probe = int(ready["port"]), ControlClient(url=f"http://127.0.0.1:{ready['control']}")
            assert (await probe.request("GET", "/healthz")).status == 200
            serve.process.send_signal(signal.SIGTERM)
            while (await probe.request("GET", "/healthz")).status != 503:
                await anyio.sleep(0.02)  # sync-ok: a probe polls from outside; bounded by fail_after
            body, _ = await anyio.to_thread.run_sync(get, port)  # still served while draining
            assert body.startswith("v1 pid=")
            assert await serve.process.wait() == 0, serve.describe()
            await serve.wait_for("drover-py: shut down")
        assert "draining before the shutdown" in serve.output["err"]
