"""drover-py: an anyio-native process supervisor for Python.

A `Master` (built by `MasterFactory.create`) spawns worker processes of a script and
knows each one is up because the worker's `MessageBus` said "started". See the documentation (docs/).

The child side (`MessageBus`, `SyncMessageBus`, `inherited_sockets`) is imported eagerly and stays light;
the master side (attrs, structlog) loads on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._child.title import apply_title_from_env as _apply_title_from_env

_apply_title_from_env()  # in a worker: its title, before the imports below

from ._child.bus import LIFELINE_EXIT_CODE as LIFELINE_EXIT_CODE
from ._child.bus import MessageBus as MessageBus
from ._child.bus import SyncMessageBus as SyncMessageBus
from ._child.sockets import inherited_sockets as inherited_sockets
from ._exceptions import BindError as BindError
from ._exceptions import ChannelError as ChannelError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import ConfigFileError as ConfigFileError
from ._exceptions import DeploymentError as DeploymentError
from ._exceptions import DroverError as DroverError
from ._exceptions import OperationInterruptedError as OperationInterruptedError
from ._exceptions import PeerGoneError as PeerGoneError
from ._exceptions import PreloadError as PreloadError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import ReloadError as ReloadError
from ._exceptions import RemoteError as RemoteError
from ._exceptions import RequestError as RequestError
from ._exceptions import RequestTimeoutError as RequestTimeoutError
from ._exceptions import RestartLimitError as RestartLimitError
from ._exceptions import SpawnError as SpawnError
from ._exceptions import StartTimeoutError as StartTimeoutError
from ._exceptions import StateError as StateError
from ._exceptions import UnknownWorkerError as UnknownWorkerError
from ._exceptions import WorkerStartError as WorkerStartError


def _own(value: object) -> object:
    """Name a public class or function ``drover_py.X`` (tracebacks, reprs), as trio does."""
    if getattr(value, "__module__", "").startswith(f"{__name__}.") and (isinstance(value, type) or callable(value)):
        value.__module__ = __name__
    return value


if TYPE_CHECKING:
    from . import _exit_reasons as ExitReasons
    from ._commands import CommandError as CommandError
    from ._commands import CommandRegistry as CommandRegistry
    from ._config.options import MasterConfig as MasterConfig
    from ._config.policies import RecyclePolicy as RecyclePolicy
    from ._config.policies import RestartPolicy as RestartPolicy
    from ._control.client import ControlClient as ControlClient
    from ._control.client import ControlConnectError as ControlConnectError
    from ._control.client import ControlReply as ControlReply
    from ._control.server import ControlServer as ControlServer
    from ._control.server import open_control_server as open_control_server
    from ._control.signals import open_signal_handlers as open_signal_handlers
    from ._deploy.deployment import Deployment as Deployment
    from ._deploy.deployment import DeploymentApp as DeploymentApp
    from ._deploy.deployment import load_deployment as load_deployment
    from ._reports import ReloadReport as ReloadReport
    from ._reports import SlotReport as SlotReport
    from ._status import WorkerStatus as WorkerStatus
    from ._supervise.checks import CheckResult as CheckResult
    from ._supervise.factory import MasterFactory as MasterFactory
    from ._supervise.master import Master as Master
    from ._supervise.worker import WorkerSnapshot as WorkerSnapshot

__all__ = [
    "LIFELINE_EXIT_CODE",
    "BindError",
    "ChannelError",
    "CheckResult",
    "CommandError",
    "CommandRegistry",
    "ConfigError",
    "ConfigFileError",
    "ControlClient",
    "ControlConnectError",
    "ControlReply",
    "ControlServer",
    "Deployment",
    "DeploymentApp",
    "DeploymentError",
    "DroverError",
    "ExitReasons",
    "Master",
    "MasterConfig",
    "MasterFactory",
    "MessageBus",
    "OperationInterruptedError",
    "PeerGoneError",
    "PreloadError",
    "ProtocolError",
    "RecyclePolicy",
    "ReloadError",
    "ReloadReport",
    "RemoteError",
    "RequestError",
    "RequestTimeoutError",
    "RestartLimitError",
    "RestartPolicy",
    "SlotReport",
    "SpawnError",
    "StartTimeoutError",
    "StateError",
    "SyncMessageBus",
    "UnknownWorkerError",
    "WorkerSnapshot",
    "WorkerStartError",
    "WorkerStatus",
    "inherited_sockets",
    "load_deployment",
    "open_control_server",
    "open_signal_handlers",
]

for _name in __all__:
    if _name in globals():  # the eager ones; the lazy ones on first use (__getattr__)
        _own(globals()[_name])
del _name

_LAZY = {
    "CheckResult": "._supervise.checks",
    "CommandError": "._commands",
    "CommandRegistry": "._commands",
    "ControlClient": "._control.client",
    "ControlConnectError": "._control.client",
    "ControlReply": "._control.client",
    "ControlServer": "._control.server",
    "open_control_server": "._control.server",
    "Master": "._supervise.master",
    "ReloadReport": "._reports",
    "SlotReport": "._reports",
    "MasterConfig": "._config.options",
    "MasterFactory": "._supervise.factory",
    "RecyclePolicy": "._config.policies",
    "RestartPolicy": "._config.policies",
    "open_signal_handlers": "._control.signals",
    "Deployment": "._deploy.deployment",
    "DeploymentApp": "._deploy.deployment",
    "load_deployment": "._deploy.deployment",
    "WorkerSnapshot": "._supervise.worker",
    "WorkerStatus": "._status",
}


def __getattr__(name: str) -> object:
    if name == "ExitReasons":
        value: object = importlib.import_module("._exit_reasons", __name__)
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _own(getattr(importlib.import_module(module, __name__), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
