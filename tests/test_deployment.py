"""The deployment examples are checked: the container's command, the Kubernetes manifest's
arithmetic against the defaults, and ``drover-py systemd-unit`` against ``systemd-analyze verify``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio
import pytest
import yaml

from drover_py._cli.options import _parser
from drover_py._config.options import KILL_TIMEOUT

from .helpers import kill_on_exit
from .test_examples import free_ports, read_matches

pytestmark = pytest.mark.anyio

FOLDER = Path(__file__).parent.parent / "examples" / "kubernetes"


def dockerfile_command() -> list[str]:
    [line] = [line for line in (FOLDER / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    command: list[str] = json.loads(line[len("CMD ") :])
    return command


def deployment() -> dict[str, object]:
    documents = list(yaml.safe_load_all((FOLDER / "deployment.yaml").read_text()))
    [found] = [d for d in documents if d["kind"] == "Deployment"]
    assert isinstance(found, dict)
    return found


def test_the_manifest_runs_the_images_command_within_its_grace_period() -> None:
    pod = deployment()["spec"]["template"]["spec"]  # type: ignore[index]
    [container] = pod["containers"]
    assert container["command"] == dockerfile_command()
    assert container["command"][0] == "drover-py"
    options = _parser()[0].parse_args(container["command"][1:])
    # SIGTERM: the drain, every worker's graceful stop, then the kill, all before the SIGKILL
    needed = options.drain_delay + options.stop_timeout + KILL_TIMEOUT
    assert options.drain_delay > 0 and needed <= pod["terminationGracePeriodSeconds"]
    control_port = int(options.control_tcp.rpartition(":")[2])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": control_port}
    assert {p["containerPort"] for p in container["ports"]} == {control_port, int(options.bind[0].rpartition(":")[2])}
    # the readiness probe notices the drain's 503 well before the drain ends
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < options.drain_delay


async def test_the_images_command_serves(tmp_path: Path) -> None:
    """The container's command on loopback: it serves, /healthz is 200, SIGTERM ends it with 0."""
    port = free_ports(2)
    control = port + 1
    command = dockerfile_command()[1:]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    command[command.index("--control-tcp") + 1] = f"127.0.0.1:{control}"
    command[command.index("--drain-delay") + 1] = "0.2"
    env = {**os.environ, "DROVER_PY_KEY": "k8s-example"}
    process = await anyio.open_process(
        [sys.executable, "-m", "drover_py", *command], cwd=FOLDER, env=env, stderr=subprocess.STDOUT
    )
    seen = [""]
    async with kill_on_exit(process):
        with anyio.fail_after(40):
            await read_matches(process, r"drover-py: serving app:app .* with 2 workers on .*", seen)
            body = await anyio.to_thread.run_sync(fetch, f"http://127.0.0.1:{port}/")
            assert body.startswith("hello from pid ")
            assert await anyio.to_thread.run_sync(fetch, f"http://127.0.0.1:{control}/healthz") == '{"healthy":true}\n'
            process.send_signal(signal.SIGTERM)
            await read_matches(process, "drover-py: shut down", seen)
            assert await process.wait() == 0


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


async def test_systemd_unit_prints_a_service_and_a_socket_that_systemd_accepts(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "drover_py", "systemd-unit", "--name", "web", "--socket", "127.0.0.1:8000"]
    argv += ["--output-dir", str(tmp_path), "--", "serve", "app:app", "-w", "2", "--drain-delay", "5"]
    with anyio.fail_after(30):
        made = await anyio.run_process(argv, cwd=tmp_path, check=False)
    assert made.returncode == 0, made.stderr
    service = (tmp_path / "web.service").read_text()
    assert "Type=notify" in service and "NotifyAccess=main" in service and "Requires=web.socket" in service
    assert f"ExecStart={sys.executable} -m drover_py serve app:app -w 2 --drain-delay 5 --bind systemd" in service
    assert "TimeoutStopSec=45" in service  # 5 (drain) + 30 (stop) + 5 (kill) + 5
    assert "ListenStream=127.0.0.1:8000" in (tmp_path / "web.socket").read_text()
    with anyio.fail_after(30):
        refused = await anyio.run_process(argv + ["--bind", "127.0.0.1:1"], cwd=tmp_path, check=False)
    assert refused.returncode == 2 and b"with --socket, systemd owns the addresses: drop --bind" in refused.stderr
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units were checked by content only")
    with anyio.fail_after(60):
        verified = await anyio.run_process(
            ["systemd-analyze", "verify", str(tmp_path / "web.service"), str(tmp_path / "web.socket")], check=False
        )
    assert verified.returncode == 0 and verified.stderr == b"", verified.stderr
