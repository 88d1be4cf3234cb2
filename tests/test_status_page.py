"""The status page: its files and headers, its session cookie, ``ctl open``'s proxy, ``ctl watch``, a real browser."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
import pytest
from anyio.abc import Process

from drover_py import ControlClient, Master, RestartPolicy, open_control_server
from drover_py._control.proxy import open_page_proxy
from drover_py._control.sessions import Sessions

from .conftest import MasterBuilder, children
from .helpers import EventLog, kill_on_exit, wait_process_gone

KEY = "page-key"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CSRF = ("x-drover-csrf", "1")


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def cookie(self) -> str:
        """Return the ``name=value`` of the Set-Cookie header."""
        return self.headers["set-cookie"].split(";")[0]


async def connect(where: str | Path) -> tuple[anyio.abc.SocketStream, str]:
    """Connect to a URL's host and port, or to a Unix socket; return the stream and the Host header."""
    if isinstance(where, Path):
        return await anyio.connect_unix(where), "localhost"
    parts = urlsplit(where)
    assert parts.hostname and parts.port
    return await anyio.connect_tcp(parts.hostname, parts.port), parts.netloc


async def http(
    where: str | Path, method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
) -> Answer:
    """Send one request to a URL's host and port, or a Unix socket; return the whole answer."""
    with anyio.fail_after(15):
        stream, host = await connect(where)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            head = [("host", host), ("content-length", str(len(body))), ("connection", "close"), *headers]
            data = conn.send(h11.Request(method=method, target=path, headers=head)) or b""
            data += (conn.send(h11.Data(data=body)) or b"") if body else b""
            await stream.send(data + (conn.send(h11.EndOfMessage()) or b""))
            status, answer_headers, content = 0, {}, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    answer_headers = {name.decode(): value.decode() for name, value in event.headers}
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return Answer(status, answer_headers, content)


async def event_stream_opens(where: str | Path, path: str, headers: Sequence[tuple[str, str]]) -> int:
    """Open an event stream; return its status once the head (and, for a 200, ``: connected``) arrived."""
    with anyio.fail_after(15):
        stream, _ = await connect(where)
        async with stream:
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
            await stream.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
            seen = b""
            while b"\r\n\r\n" not in seen:
                seen += await stream.receive()
            status = int(seen.split(b" ", 2)[1])
            while status == 200 and b": connected" not in seen:
                seen += await stream.receive()
            return status


# -- the page and its access, over HTTP ------------------------------------------------------


@pytest.mark.anyio
async def test_page_login_cookie_csrf_and_bearer(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)  # not started: the page's access needs no worker
    sock = tmp_path / "ctl.sock"
    async with master, open_control_server(master, unix=sock, tcp="127.0.0.1:0", access_key=KEY) as server:
        url = server.url
        assert url is not None
        for where in (url, sock):  # the page and its files need no key, on TCP and the socket
            page = await http(where, "GET", "/")
            assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
            assert b'<script src="/page/app.js" defer></script>' in page.body and b"<script>" not in page.body
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css"), ("icon.svg", "image/svg+xml")):
            file = await http(url, "GET", f"/page/{name}")
            assert file.status == 200 and file.headers["content-type"].startswith(kind) and file.body
            assert file.headers["content-security-policy"] == csp
        assert (await http(url, "GET", "/page/secret.txt")).status == 404
        assert (await http(url, "POST", "/")).status == 405

        # POST /login: the key in a JSON body or a form; a wrong one gets no cookie
        form = ("content-type", "application/x-www-form-urlencoded")
        wrong = await http(url, "POST", "/login", [form], b"key=nope")
        assert wrong.status == 401 and "set-cookie" not in wrong.headers
        assert (await http(url, "POST", "/login", [], b"[1]")).status == 400
        assert (await http(url, "GET", "/login")).status == 405
        assert (await http(url, "POST", "/login", [form], b"key=" + KEY.encode())).status == 200
        login = await http(
            url, "POST", "/login", [("content-type", "application/json")], json.dumps({"key": KEY}).encode()
        )
        assert login.status == 200 and login.json()["ok"] is True
        set_cookie = login.headers["set-cookie"]
        port = urlsplit(url).port
        assert set_cookie.startswith(f"drover-py-session-{port}=")
        assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} <= set(set_cookie.split("; "))
        cookie = ("cookie", login.cookie())

        # the cookie authorizes reads and the event stream; a write needs the CSRF header too
        assert (await http(url, "GET", "/masters")).status == 401
        masters = await http(url, "GET", "/masters", [cookie])
        assert masters.status == 200 and masters.json()["result"][0]["name"] == "worker"
        assert await event_stream_opens(url, "/events", [cookie]) == 200
        assert await event_stream_opens(url, "/events", [("cookie", "drover-py-session=forged")]) == 401
        refused = await http(url, "POST", "/commands/health", [cookie])
        assert refused.status == 403 and "X-Drover-CSRF" in refused.json()["error"]
        assert (await http(url, "POST", "/commands/health", [cookie, CSRF])).json()["result"]["count"] == 1
        # bearer requests are unchanged: no CSRF header, no cookie
        bearer = ("authorization", f"Bearer {KEY}")
        assert (await http(url, "POST", "/commands/health", [bearer])).status == 200
        assert (await http(url, "POST", "/commands/health", [("authorization", "Bearer nope")])).status == 401

        # a session ends when it expires (the store's clock is moved, not waited for) ...
        now = [0.0]
        sessions = server._app.sessions
        sessions.clock = lambda: now[0]
        later = ("cookie", (await http(url, "POST", "/login", [], json.dumps({"key": KEY}).encode())).cookie())
        assert (await http(url, "GET", "/masters", [later])).status == 200
        now[0] += sessions.ttl
        assert (await http(url, "GET", "/masters", [later])).status == 401
        # ... or on logout, which needs the CSRF header and deletes the cookie
        assert (await http(url, "POST", "/logout", [cookie])).status == 403
        logout = await http(url, "POST", "/logout", [cookie, CSRF])
        assert logout.status == 200 and "Max-Age=0" in logout.headers["set-cookie"]
        assert (await http(url, "GET", "/masters", [cookie])).status == 401


def test_sessions_expire_and_are_bounded() -> None:
    now = [100.0]
    sessions = Sessions(ttl=10, limit=3, clock=lambda: now[0])
    first = sessions.create()
    now[0] += 1
    others = [sessions.create(), sessions.create()]
    assert sessions.valid(first) and all(map(sessions.valid, others))
    fourth = sessions.create()  # over the limit: the one closest to expiring goes
    assert not sessions.valid(first) and sessions.valid(fourth)
    sessions.drop(fourth)
    assert not sessions.valid(fourth)
    now[0] += 9.5
    assert sessions.valid(others[0])
    now[0] += 0.5
    assert not any(map(sessions.valid, others))
    assert sessions.find([(b"cookie", f"a=b; drover-py-session-9={sessions.create()}".encode())]) is not None
    assert sessions.find([(b"cookie", b"drover-py-session=unknown")]) is None


# -- ctl open and ctl watch, as subprocesses ---------------------------------------------------


async def read_until(process: Process, done: Any, seen: bytearray, timeout: float = 20) -> str:
    """Read the process's stdout into ``seen`` until ``done(text)`` holds; return the text."""
    assert process.stdout is not None
    with anyio.fail_after(timeout):
        while not done(seen.decode(errors="replace")):
            seen += await process.stdout.receive()
    return seen.decode(errors="replace")


async def ctl(sock: Path, *words: str, key: str | None = None) -> Process:
    env = {k: v for k, v in os.environ.items() if k != "DROVER_PY_KEY"}
    if key is not None:
        env["DROVER_PY_KEY"] = key
    command = [sys.executable, "-m", "drover_py", "ctl", "--socket", str(sock), *words]
    return await anyio.open_process(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def interrupted(process: Process) -> int:
    """Send Ctrl-C (SIGINT) to ``process``; return its exit code."""
    process.send_signal(signal.SIGINT)
    with anyio.fail_after(15):
        return await process.wait()


@pytest.mark.anyio
async def test_ctl_open_proxy_signs_in_once_and_adds_the_key(make_master: MasterBuilder, tmp_path: Path) -> None:
    master = make_master(count=1)
    sock = tmp_path / "ctl.sock"
    async with master, open_control_server(master, unix=sock, access_key=KEY):
        process = await ctl(sock, "open", "--no-browser", key=KEY)
        async with kill_on_exit(process):
            seen = bytearray()
            text = await read_until(process, lambda text: "Ctrl-C stops" in text, seen)
            link = re.search(r"(http://127\.0\.0\.1:\d+)/#login=([\w-]+)", text)
            assert link is not None, text
            proxy, token = link[1], link[2]

            # without the proxy's session: the page's files only, no data, no command
            assert (await http(proxy, "GET", "/")).status == 200
            assert (await http(proxy, "GET", "/masters")).status == 401
            assert await event_stream_opens(proxy, "/events", []) == 401
            assert (await http(proxy, "POST", "/commands/health", [CSRF])).status == 401
            assert (await http(proxy, "POST", "/login", [], json.dumps({"key": "guess"}).encode())).status == 401

            body = json.dumps({"key": token}).encode()
            login = await http(proxy, "POST", "/login", [("content-type", "application/json")], body)
            assert login.status == 200
            await read_until(process, lambda text: "signed in; the link is used up" in text, seen)
            assert (await http(proxy, "POST", "/login", [], body)).status == 401  # once only
            cookie = ("cookie", login.cookie())

            # with it: forwarded to the socket, the key added by the proxy
            masters = await http(proxy, "GET", "/masters", [cookie])
            assert masters.status == 200 and masters.json()["result"][0]["name"] == "worker"
            assert await event_stream_opens(proxy, "/events", [cookie]) == 200
            assert (await http(proxy, "POST", "/commands/health", [cookie])).status == 403  # no CSRF header
            health = await http(proxy, "POST", "/commands/health", [cookie, CSRF])
            assert health.status == 200 and health.json()["result"]["count"] == 1
            assert await interrupted(process) == 0

        denied = await ctl(sock, "open", "--no-browser")  # no key: refused before any proxy opens
        with anyio.fail_after(15):
            assert await denied.wait() == 4
        assert denied.stderr is not None
        assert (await denied.stderr.receive()).decode().startswith("drover-py ctl open: missing or wrong access key")
        await denied.aclose()


@pytest.mark.anyio
async def test_ctl_watch_prints_a_table_on_each_change_and_exits_0_on_ctrl_c(
    make_master: MasterBuilder, tmp_path: Path
) -> None:
    master = make_master(count=2)
    log = EventLog(master)
    sock = tmp_path / "ctl.sock"
    async with master, open_control_server(master, unix=sock):
        await master.start()
        process = await ctl(sock, "watch", "--interval", "30")  # stdout is a pipe: one table per change
        async with kill_on_exit(process):
            seen = bytearray()
            first = await read_until(process, lambda text: text.count("STARTED") == 2 and text.endswith("\n\n"), seen)
            assert re.match(r"worker: 2 of 2 started\nID +SLOT +PID +STATUS ", first), first  # columns fit the pids
            victim = master.workers[0]
            assert victim.pid is not None and str(victim.pid) in first
            os.kill(victim.pid, signal.SIGKILL)
            await log.wait_for("worker-exit")
            changed = await read_until(process, lambda text: "FAILED" in text and text.endswith("\n\n"), seen)
            table = changed.rstrip("\n").split("\n\n")[-1]
            assert table.startswith("worker: 1 of 2 started\n") and "killed by SIGKILL" in table
            assert await interrupted(process) == 0
        await master.graceful_shutdown()


# -- a real browser ----------------------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); make test installs them as root",
)


def drive_the_page(url: str, link: str, profile: Path) -> list[int]:
    """Sign in, kill a worker and see it come back, reload all, then sign in by ``ctl open``'s link; return the pids."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path too: Selenium Manager is never run
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1100,800",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)

    def until(condition: Any, timeout: float = 15) -> Any:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)

    def rows(d: WebDriver) -> list[dict[str, str]]:
        script = "return [...document.querySelectorAll('tbody tr')].map(r => ({...r.dataset, slot: r.querySelector('.col-slot').textContent}))"
        found: list[dict[str, str]] = d.execute_script(script)
        return found

    try:
        driver.get(url)
        key = until(lambda d: d.find_element(By.ID, "key"))
        until(lambda d: key.is_displayed())
        key.send_keys(KEY)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        started = until(lambda d: len(r := rows(d)) == 2 and all(w["status"] == "STARTED" for w in r) and r)
        driver.execute_script("window.sameDocument = true")

        victim = started[0]
        os.kill(int(victim["pid"]), signal.SIGKILL)
        until(lambda d: any(w["id"] == victim["id"] and w["status"] == "FAILED" for w in rows(d)))
        until(
            lambda d: any(
                w["slot"] == victim["slot"] and w["status"] == "STARTED" and w["pid"] != victim["pid"] for w in rows(d)
            )
        )
        events = driver.find_element(By.ID, "events").text
        assert f"worker {victim['id']} exited: killed by SIGKILL" in events, events

        before = {w["pid"] for w in rows(driver)}
        driver.find_element(By.CSS_SELECTOR, ".master .reload").click()
        dialog = driver.find_element(By.ID, "confirm")
        until(lambda d: dialog.is_displayed())
        assert "Reload every worker of worker" in dialog.text
        driver.find_element(By.ID, "confirm-ok").click()
        until(lambda d: "reloaded 2 workers" in d.find_element(By.ID, "message").text, timeout=30)
        after = until(
            lambda d: (
                len(r := rows(d)) == 2 and all(w["status"] == "STARTED" and w["pid"] not in before for w in r) and r
            )
        )
        assert driver.execute_script("return window.sameDocument") is True  # live: never reloaded
        problems = [
            entry["message"]
            for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
            if entry["level"] == "SEVERE" and "/masters - Failed to load resource" not in entry["message"]
        ]
        assert problems == []  # the 401 before signing in is expected; a CSP violation would show here

        driver.delete_all_cookies()
        driver.get("about:blank")
        driver.get(link)  # the page signs in with the fragment's token, then drops it from the address
        until(lambda d: len(rows(d)) == 2)
        assert driver.current_url == link.partition("#")[0]
        return sorted(int(w["pid"]) for w in after)
    finally:
        driver.quit()


@needs_browser
@pytest.mark.anyio
async def test_status_page_in_a_real_browser(make_master: MasterBuilder, tmp_path: Path) -> None:
    before = set(children())
    master: Master = make_master(count=2, restart=RestartPolicy(delay=1.5))  # FAILED long enough to be seen
    async with master, open_control_server(master, tcp="127.0.0.1:0", access_key=KEY) as server:
        await master.start()
        assert server.url is not None
        async with open_page_proxy(ControlClient(url=server.url, key=KEY)) as proxy:
            pids = await anyio.to_thread.run_sync(drive_the_page, server.url + "/", proxy.url, tmp_path / "profile")
        assert pids == sorted(w.pid for w in master.workers if w.pid is not None)
        await master.graceful_shutdown()
    while leftovers := [pid for pid, state in children().items() if pid not in before and state != "Z"]:
        for pid in leftovers:  # the browser's helpers, adopted by this subreaper once chromedriver quit
            await wait_process_gone(pid, 10)
