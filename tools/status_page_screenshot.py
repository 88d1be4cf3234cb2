"""Take the screenshot of the status page that the documentation shows (docs/_static/status-page.png).

Not part of the test suite. Run from the repository root (needs Debian's chromium and
chromium-driver, which ``make test`` installs as root):

    .venv/bin/python tools/status_page_screenshot.py [--out docs/_static/status-page.png]

It runs examples/simple_app's worker with ``drover-py run`` (3 workers, the control API
on 127.0.0.1), signs in on the page with the key, kills one worker so that the page shows it
come back and the events it caused, and saves the page as a PNG.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
KEY = "screenshot-key"


def serve(workdir: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``drover-py run`` of the simple_app example's worker; return it and its control URL."""
    command = [
        sys.executable,
        "-m",
        "drover_py",
        "run",
        str(ROOT / "examples" / "simple_app" / "app.py"),
        "-w",
        "3",
        "-b",
        "127.0.0.1:0",
        "--control",
        str(workdir / "ctl.sock"),
        "--control-tcp",
        "127.0.0.1:0",
    ]
    process = subprocess.Popen(
        command, env={**os.environ, "DROVER_PY_KEY": KEY}, stdout=subprocess.PIPE, text=True, cwd=workdir
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"control on .* and (http://\S+)", line)
        if found:
            return process, found[1]
    raise SystemExit(f"drover-py run ended with code {process.wait()} before serving the control API")


def browser(profile: Path) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--window-size=1000,800",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def pids(driver: WebDriver) -> list[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('tbody tr')].filter(r => r.dataset.status === 'STARTED').map(r => r.dataset.pid)"
    )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_static" / "status-page.png")
    out: Path = parser.parse_args().out
    with tempfile.TemporaryDirectory() as tmp:
        process, url = serve(Path(tmp))
        try:
            driver = browser(Path(tmp) / "profile")
            try:
                wait = WebDriverWait(driver, 20, poll_frequency=0.05)
                driver.get(url + "/")
                key = wait.until(lambda d: d.find_element(By.ID, "key"))
                wait.until(lambda d: key.is_displayed())
                key.send_keys(KEY)
                driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
                first = wait.until(lambda d: len(p := pids(d)) == 3 and p)
                os.kill(int(first[1]), signal.SIGKILL)  # the restart policy brings it back
                wait.until(lambda d: len(p := pids(d)) == 3 and first[1] not in p)
                wait.until(lambda d: "worker 4 started" in d.find_element(By.ID, "events").text)
                driver.execute_script("document.activeElement.blur()")
                out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out))
            finally:
                driver.quit()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
