"""The public names: declared once, all reachable, shown as ``drover_py.X``; a snapshot of them."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import traceback
from pathlib import Path

import drover_py
from drover_py import ExitReasons

INIT = Path(drover_py.__file__)
#: The public API. A change here is a change of the contract: say it in the CHANGELOG.
PUBLIC = [
    "BindError", "ChannelError", "CheckResult", "CommandError", "CommandRegistry", "ConfigError", "ConfigFileError",
    "ControlClient", "ControlConnectError", "ControlReply", "ControlServer", "Deployment", "DeploymentApp",
    "DeploymentError", "DroverError", "ExitReasons", "LIFELINE_EXIT_CODE",
    "Master", "MasterConfig", "MasterFactory", "MessageBus", "OperationInterruptedError", "PeerGoneError",
    "PreloadError", "ProtocolError", "RecyclePolicy", "ReloadError", "ReloadReport", "RemoteError", "RequestError",
    "RequestTimeoutError", "RestartLimitError", "RestartPolicy", "SlotReport", "SpawnError", "StartTimeoutError", "StateError",
    "SyncMessageBus", "UnknownWorkerError", "WorkerSnapshot", "WorkerStartError", "WorkerStatus", "inherited_sockets",
    "load_deployment", "open_control_server", "open_signal_handlers",
]  # fmt: skip


def type_checking_imports() -> dict[str, str]:
    """Return what ``__init__.py`` imports under ``if TYPE_CHECKING:``: public name -> module."""
    tree = ast.parse(INIT.read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    names = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            module = "." * node.level + (node.module or alias.name)
            names[alias.asname or alias.name] = module
    return names


def test_the_public_names_are_the_snapshot() -> None:
    assert sorted(drover_py.__all__) == PUBLIC
    assert dir(drover_py) == PUBLIC


def test_the_lazy_table_is_the_type_checking_block() -> None:
    lazy = {**drover_py._LAZY, "ExitReasons": "._exit_reasons"}
    assert type_checking_imports() == lazy
    eager = {name for name in drover_py.__all__ if name in vars(drover_py) and name not in lazy}
    assert eager | set(lazy) == set(PUBLIC)


def test_every_public_name_resolves_and_is_shown_as_drover_py() -> None:
    for name in PUBLIC:
        value = getattr(drover_py, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "drover_py", name
    assert importlib.import_module("drover_py").StartTimeoutError is drover_py.StartTimeoutError
    line = traceback.format_exception_only(drover_py.StateError, drover_py.StateError("not started"))[-1]
    assert line == "drover_py.StateError: not started\n"


def test_exit_reasons_offer_only_their_names() -> None:
    assert dir(ExitReasons) == sorted(ExitReasons.__all__)
    assert "attrs" not in dir(ExitReasons) and "signal" not in dir(ExitReasons)


def test_a_type_checker_checks_an_event_handler_against_its_event(tmp_path: Path) -> None:
    """``master.on`` is overloaded per event name: a handler of the wrong shape is refused."""
    (tmp_path / "handlers.py").write_text(
        "import drover_py\n"
        "from drover_py import ExitReasons\n\n\n"
        "def exited(reason: ExitReasons.ExitReason, worker_id: int) -> None: ...\n\n\n"
        "async def started(worker_id: int) -> None: ...\n\n\n"
        "def check(master: drover_py.Master) -> None:\n"
        '    master.on("worker-exit", exited)\n'
        '    master.on("worker-started", started)\n'
        '    master.on("worker-exit", started)\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "handlers.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("handlers.py:14:"), result.stdout
