"""The examples run as a user runs them: start, serve HTTP, shut down on SIGINT.

Every test waits on the example's output, never on time: a regex over complete lines.
Each serving example also runs from a copy of its folder alone, elsewhere: it needs
nothing beside it, whatever the working directory.
The apps of uvicorn_app and wsgi_sync are also served as their READMEs say
(``drover-py serve``), and reloaded under a keep-alive client through
`drover_py.serve.create_master`.

Each test runs its masters on the backend of the test itself, so both master backends
are covered without running each example four times.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from drover_py.serve import ServeOptions, create_master

from .helpers import kill_on_exit

pytestmark = pytest.mark.anyio
EXAMPLES = Path(__file__).parent.parent / "examples"


def free_ports(count: int) -> int:
    """Return a base port such that base .. base+count-1 are free on 127.0.0.1 right now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def copy_example(example: str, tmp_path: Path) -> Path:
    """Copy the folder of ``example`` (and nothing else) into ``tmp_path``; return the copy."""
    return shutil.copytree(EXAMPLES / example, tmp_path / example, ignore=shutil.ignore_patterns("__pycache__"))


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        body: bytes = response.read()
        return body.decode()


async def read_until(process: Process, text: str, seen: list[str]) -> None:
    assert process.stdout is not None
    with anyio.fail_after(30):
        while text not in seen[0]:
            seen[0] += (await process.stdout.receive()).decode()


async def read_matches(process: Process, pattern: str, seen: list[str], count: int = 1) -> list[re.Match[str]]:
    """Read until ``pattern`` matched ``count`` complete lines of the output; return every match.

    No deadline of its own: the caller's ``anyio.fail_after`` bounds the whole conversation.
    """
    assert process.stdout is not None
    regex = re.compile(f"^{pattern}$", re.MULTILINE)
    while True:
        complete = seen[0][: seen[0].rfind("\n") + 1]
        matches = list(regex.finditer(complete))
        if len(matches) >= count:
            return matches
        seen[0] += (await process.stdout.receive()).decode()


async def open_example(example: str, base_port: int, *args: str) -> Process:
    return await anyio.open_process(
        [sys.executable, str(EXAMPLES / example / "main.py"), *args], env={**os.environ, "BASE_PORT": str(base_port)}
    )


async def interrupt(process: Process, seen: list[str]) -> None:
    """SIGINT: the example must say "shut down" and exit with code 0."""
    process.send_signal(signal.SIGINT)
    await read_matches(process, "shut down", seen)
    assert await process.wait() == 0


async def read_serving(process: Process, base: int, seen: list[str]) -> None:
    """Wait until foo and bar both said they serve, foo on ``base`` and bar on ``base + 1``."""
    serving = await read_matches(process, r"(\w+): serving http://127\.0\.0\.1:(\d+)/", seen, count=2)
    assert sorted(m.groups() for m in serving) == [("bar", str(base + 1)), ("foo", str(base))]


def statuses(block: str) -> dict[str, list[tuple[int, str]]]:
    """Parse one drover-style status block (``[foo-0]: STARTED`` lines) into {app: [(slot, status)]}."""
    found: dict[str, list[tuple[int, str]]] = {}
    for app, slot, status in re.findall(r"^\[(\w+)-(\d+)\]: (\w+)$", block, re.MULTILINE):
        found.setdefault(app, []).append((int(slot), status))
    return found


def ids(text: str) -> list[int]:
    return [int(i) for i in text.split(", ")] if text else []


@pytest.mark.parametrize(
    ("example", "ports", "env_name", "expected"),
    [
        ("simple_app", 1, "PORT", ["Hello from simple_app!"]),
        ("single_app_cluster", 1, "PORT", ["Hello from single_app_cluster!"]),
        ("multi_app_cluster", 3, "BASE_PORT", ["Hello from foo!", "Hello from bar!", "Hello from baz!"]),
        ("runtime_scaling", 2, "BASE_PORT", ["Hello from foo!", "Hello from bar!"]),
        ("graceful_reload", 2, "BASE_PORT", ["Hello from foo!", "Hello from bar!"]),
        ("uvicorn_app", 1, "PORT", ["Hello from uvicorn_app!"]),
        ("wsgi_sync", 1, "PORT", ["Hello from wsgi_sync!"]),
    ],
)
async def test_example_serves_and_shuts_down(
    example: str, ports: int, env_name: str, expected: list[str], anyio_backend: str, tmp_path: Path
) -> None:
    """The example's folder, copied out alone, runs from another directory: serve, then shut down on SIGINT."""
    folder = copy_example(example, tmp_path)
    base = free_ports(ports)
    process = await anyio.open_process(
        [sys.executable, str(folder / "main.py"), "--backend", anyio_backend],
        cwd=tmp_path,
        env={**os.environ, env_name: str(base)},
    )
    seen = [""]
    async with kill_on_exit(process):
        for port in range(base, base + ports):
            await read_until(process, f"serving http://127.0.0.1:{port}/", seen)
        bodies = [await anyio.to_thread.run_sync(get, base + i) for i in range(ports)]
        for body, fragment in zip(bodies, expected):
            assert fragment in body
        process.send_signal(signal.SIGINT)
        await read_until(process, "shut down", seen)
        with anyio.fail_after(30):
            assert await process.wait() == 0


async def test_deployment_example_runs_its_migration_first_then_serves(anyio_backend: str, tmp_path: Path) -> None:
    """The deployment example's folder, copied out alone, run as ``drover-py up -c FOLDER/drover.toml`` from elsewhere.

    The migration (a ``once`` app) is done before the web app and the reporter start; the
    web app counts visits in the table it created; SIGINT shuts everything down.
    """
    folder = copy_example("deployment", tmp_path)
    port = free_ports(1)
    config = folder / "drover.toml"
    config.write_text(config.read_text().replace("127.0.0.1:2500", f"127.0.0.1:{port}"))
    process = await anyio.open_process(
        [sys.executable, "-m", "drover_py", "up", "-c", str(config), "--backend", anyio_backend],
        cwd=tmp_path,
        stderr=subprocess.DEVNULL,  # the workers' uvicorn logs
    )
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(40):
            await read_matches(process, r"drover-py: up: 3 apps of .*drover\.toml started; control on unix:.*", seen)
            assert seen[0].index("drover-py: migrate: done") < seen[0].index("drover-py: web: serving web:app")
            assert f"with 2 workers on http://127.0.0.1:{port}" in seen[0]
            first, second = [await anyio.to_thread.run_sync(get, port) for _ in range(2)]
            assert "1 visits so far" in first and "2 visits so far" in second
            process.send_signal(signal.SIGINT)
            await read_matches(process, "drover-py: shut down", seen)
            assert await process.wait() == 0
    assert re.findall(r"^drover-py: (\w+): shut down$", seen[0], re.MULTILINE) in (
        ["web", "reporter"],
        ["reporter", "web"],
    )


async def test_job_queue_example_spreads_jobs_and_reports_back(anyio_backend: str) -> None:
    script = EXAMPLES / "job_queue" / "main.py"
    with anyio.fail_after(40):
        result = await anyio.run_process(
            [sys.executable, str(script), "--jobs", "12", "--workers", "3", "--backend", anyio_backend], check=False
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    done = re.findall(r"^\[worker\.py slot (\d) id \d+ pid \d+\] job (\d+) -> (\d+)$", out, re.MULTILINE)
    assert sorted(int(job) for _, job, _ in done) == list(range(12))  # each job once, lines whole
    assert all(int(value) == sum(i * i for i in range(100_000 + int(job) * 1000)) for _, job, value in done)
    stats = re.findall(r"^worker \d+ \(slot (\d)\): \{'jobs': (\d+), 'slot': (\d)\}$", out, re.MULTILINE)
    assert sorted(slot for slot, _, _ in stats) == ["0", "1", "2"]
    assert sum(int(jobs) for _, jobs, _ in stats) == 12
    assert out.rstrip().endswith("12 jobs done by 3 workers")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the example's master runs on asyncio either way
async def test_systemd_example_tells_systemd_it_is_ready_and_stopping(anyio_backend: str, tmp_path: Path) -> None:
    """The systemd example, its folder copied out alone, as its unit runs it: READY=1, serve, STOPPING=1 on SIGTERM."""
    folder = copy_example("systemd", tmp_path)
    port = free_ports(1)
    notify_path = tmp_path / "notify"
    async with await anyio.create_unix_datagram_socket(local_path=notify_path) as notify:
        process = await anyio.open_process(
            [sys.executable, str(folder / "main.py"), "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=tmp_path,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            stderr=subprocess.DEVNULL,  # the workers' uvicorn logs
        )
        async with kill_on_exit(process):
            with anyio.fail_after(40):
                while b"READY=1" not in (await notify.receive())[0].split(b"\n"):
                    pass
                assert "Hello from a systemd unit!" in await anyio.to_thread.run_sync(get, port)
                process.terminate()  # systemctl stop
                while b"STOPPING=1" not in (await notify.receive())[0].split(b"\n"):
                    pass
                assert await process.wait() == 0


async def test_runtime_scaling_scales_foo_down_and_bar_up(anyio_backend: str) -> None:
    base = free_ports(2)
    process = await open_example("runtime_scaling", base, "--scale-after", "1", "--backend", anyio_backend)
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(30):
            await read_serving(process, base, seen)
            first = (await read_matches(process, r"---", seen))[0]
            before = statuses(seen[0][: first.start()])
            assert before == {"foo": [(i, "STARTED") for i in range(4)], "bar": [(i, "STARTED") for i in range(2)]}

            scaled = await read_matches(process, r"(\w+): scaled (\d+) -> (\d+)", seen, count=2)
            assert sorted(m.groups() for m in scaled) == [("bar", "2", "4"), ("foo", "4", "2")]
            # The first status block printed after both scalings returned.
            after_scaling = scaled[-1].end()
            ends: list[re.Match[str]] = []
            while not any(m.start() > after_scaling for m in ends):
                ends = await read_matches(process, r"---", seen, count=len(ends) + 1)
            block_end = next(m for m in ends if m.start() > after_scaling)
            after = statuses(seen[0][after_scaling : block_end.start()])
            assert after == {"foo": [(i, "STARTED") for i in range(2)], "bar": [(i, "STARTED") for i in range(4)]}

            bodies = [await anyio.to_thread.run_sync(get, base + i) for i in range(2)]
            assert "Hello from foo!" in bodies[0] and "Hello from bar!" in bodies[1]
            await interrupt(process, seen)


RELOADED = r"(\w+): reloaded, workers \[([\d, ]*)\] -> \[([\d, ]*)\] \(pids .*\) in [\d.]+ s"


def reloads(matches: list[re.Match[str]], app: str) -> list[tuple[list[int], list[int]]]:
    return [(ids(m[2]), ids(m[3])) for m in matches if m[1] == app]


async def test_graceful_reload_replaces_every_worker_each_time(anyio_backend: str) -> None:
    base = free_ports(2)
    process = await open_example("graceful_reload", base, "--reload-every", "1", "--backend", anyio_backend)
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(30):
            await read_serving(process, base, seen)
            matches: list[re.Match[str]] = []
            while len(reloads(matches, "foo")) < 2:
                matches = await read_matches(process, RELOADED, seen, count=len(matches) + 1)

            (foo1_before, foo1_after), (foo2_before, foo2_after) = reloads(matches, "foo")[:2]
            assert len(foo1_before) == len(foo1_after) == 1
            assert foo1_after != foo1_before
            assert foo2_before == foo1_after  # the second reload replaced the first one's worker
            assert foo2_after not in (foo1_before, foo1_after)
            # A reload of both masters waits for both: bar's first one is done by now.
            bar_before, bar_after = reloads(matches, "bar")[0]
            assert len(bar_before) == len(bar_after) == 4
            assert not set(bar_before) & set(bar_after)

            bodies = [await anyio.to_thread.run_sync(get, base + i) for i in range(2)]
            assert "Hello from foo!" in bodies[0] and "Hello from bar!" in bodies[1]
            await interrupt(process, seen)


async def test_graceful_reload_reloads_on_sighup(anyio_backend: str) -> None:
    base = free_ports(2)
    process = await open_example("graceful_reload", base, "--reload-every", "0", "--backend", anyio_backend)
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(30):
            # Printed once both masters started; the SIGHUP handler is in place before that.
            await read_matches(process, r"reloading on SIGHUP \(kill -HUP \d+\)", seen)
            assert not re.search(RELOADED, seen[0])  # --reload-every 0: no reload by itself
            process.send_signal(signal.SIGHUP)
            matches = await read_matches(process, RELOADED, seen, count=2)
            assert sorted(m[1] for m in matches) == ["bar", "foo"]
            [(foo_before, foo_after)] = reloads(matches, "foo")
            assert len(foo_before) == len(foo_after) == 1 and foo_before != foo_after
            await interrupt(process, seen)


@pytest.mark.parametrize(("example", "app"), [("uvicorn_app", "app:app"), ("wsgi_sync", "wsgi:app")])
async def test_example_app_serves_with_drover_py_serve(example: str, app: str, anyio_backend: str) -> None:
    """The README's command, in the example's folder: serve, reload on SIGHUP, shut down on SIGINT.

    ``--backend`` is the event loop of the master and of the workers (trio: hypercorn).
    """
    backend = anyio_backend
    port = free_ports(1)
    command = ["serve", app, "-w", "2", "--bind", f"127.0.0.1:{port}", "--backend", backend, "--no-control"]
    process = await anyio.open_process(
        [sys.executable, "-m", "drover_py", *command], cwd=EXAMPLES / example, stderr=subprocess.STDOUT
    )
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(40):
            server = "waitress" if example == "wsgi_sync" else rf"\w+ on {backend}"  # WSGI: waitress, no event loop
            await read_matches(process, rf"drover-py: serving {app} \(\w+, {server}\) with 2 workers on .*", seen)
            first = await anyio.to_thread.run_sync(get_worker, port)
            process.send_signal(signal.SIGHUP)
            await read_matches(process, r".*\breloaded\b.*workers=2.*", seen)
            second = await anyio.to_thread.run_sync(get_worker, port)
            assert first != second  # every worker was replaced
            process.send_signal(signal.SIGINT)
            await read_matches(process, "drover-py: shut down", seen)
            assert await process.wait() == 0


def get_worker(port: int) -> str:
    """Request / and return the x-worker header, checking the body says hello."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        body: bytes = response.read()
        worker: str = response.headers["x-worker"]
    assert body.decode().startswith("Hello from ")
    return worker


async def test_uvicorn_app_answers_every_request_across_reloads(anyio_backend: str) -> None:
    """The app served by one worker, reloaded three times under a keep-alive client: no request fails.

    The master owns the listening socket and starts each replacement before it stops the
    old worker, which stops accepting and answers the next request on the open
    connection with ``Connection: close``; so every request is answered, by the old
    worker or the new one.
    """
    await answers_every_request_across_reloads(ServeOptions("app:app", app_dir=str(EXAMPLES / "uvicorn_app")))


async def test_wsgi_sync_answers_every_request_across_reloads_in_preload_mode(anyio_backend: str) -> None:
    """The WSGI app, its workers forked from a template, reloaded three times under a keep-alive client: none fails."""
    await answers_every_request_across_reloads(
        ServeOptions("wsgi:app", app_dir=str(EXAMPLES / "wsgi_sync")), preload=True
    )


async def answers_every_request_across_reloads(options: ServeOptions, *, preload: bool = False) -> None:
    """Reload one worker serving ``options`` three times while a client requests back to back; assert none failed.

    The client keeps one connection alive (as browsers and HTTP client libraries do) and
    opens another only when an answer said ``Connection: close``; it never retries.
    """
    master = create_master(
        dataclasses.replace(options, access_log=False, log_level="warning"),
        count=1,
        bind=["127.0.0.1:0"],
        preload=preload,
        start_timeout=20.0,
        stop_timeout=10.0,
        kill_timeout=2.0,
    )
    answered_by: list[int] = []
    failures: list[str] = []
    connections = 0
    reloads_done = anyio.Event()

    def request(conn: http.client.HTTPConnection) -> None:
        nonlocal connections
        if conn.sock is None:
            connections += 1  # the request opens a new connection
        try:
            conn.request("GET", "/")
            answer = conn.getresponse()
            body = answer.read()  # after an answer with "Connection: close", http.client closes the connection
        except (OSError, http.client.HTTPException) as exc:
            failures.append(repr(exc))
            conn.close()
            return
        worker = answer.getheader("x-worker") or ""
        match = re.fullmatch(r".* pid=(\d+)", worker)
        if answer.status != 200 or not body.startswith(b"Hello from ") or match is None:
            failures.append(f"unexpected answer {answer.status} {body!r}, x-worker {worker!r}")
            return
        answered_by.append(int(match[1]))

    async def client(port: int) -> None:
        """Request one at a time until the reloads are over and at least 300 were sent."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            sent = 0
            while not (reloads_done.is_set() and sent >= 300):
                await anyio.to_thread.run_sync(request, conn)
                sent += 1
        finally:
            conn.close()

    with anyio.fail_after(40):
        async with master:
            await master.start()
            port = master.sockets[0].getsockname()[1]
            pids = {worker.pid for worker in master.workers}
            async with anyio.create_task_group() as tg:
                tg.start_soon(client, port)
                for _ in range(3):
                    await master.graceful_reload()
                    pids |= {worker.pid for worker in master.workers}
                reloads_done.set()
            await master.graceful_shutdown()

    assert not failures, f"{len(failures)} of {len(failures) + len(answered_by)} requests failed: {failures[:5]}"
    assert len(pids) == 4  # the first worker and one per reload
    assert set(answered_by) == pids  # the connection moved on to each new worker
    assert connections == 4  # kept alive, and closed once by each retiring worker
