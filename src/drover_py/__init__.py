"""drover-py: an anyio-native process supervisor for Python.

A `Master` (built by `MasterFactory.create`) spawns worker processes of a script and
knows each one is up because the worker's `MessageBus` said "started". See the README.

The child side (`MessageBus`, `SyncMessageBus`, `inherited_sockets`) is imported eagerly and stays light;
the master side (attrs, structlog) loads on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._bus import LIFELINE_EXIT_CODE as LIFELINE_EXIT_CODE
from ._bus import MessageBus as MessageBus
from ._bus import SyncMessageBus as SyncMessageBus
from ._exceptions import BindError as BindError
from ._exceptions import ChannelError as ChannelError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import DroverError as DroverError
from ._exceptions import OperationInterruptedError as OperationInterruptedError
from ._exceptions import PreloadError as PreloadError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import ReloadError as ReloadError
from ._exceptions import RestartLimitError as RestartLimitError
from ._exceptions import SpawnError as SpawnError
from ._exceptions import StartTimeoutError as StartTimeoutError
from ._exceptions import StateError as StateError
from ._exceptions import UnknownWorkerError as UnknownWorkerError
from ._exceptions import WorkerStartError as WorkerStartError
from ._inherit import inherited_sockets as inherited_sockets

if TYPE_CHECKING:
    from ._config import MasterConfig as MasterConfig
    from . import _exit_reasons as ExitReasons
    from ._factory import MasterFactory as MasterFactory
    from ._master import Master as Master
    from ._restart import RecyclePolicy as RecyclePolicy
    from ._restart import RestartPolicy as RestartPolicy
    from ._signals import open_signal_handlers as open_signal_handlers
    from ._status import WorkerStatus as WorkerStatus
    from ._worker import WorkerSnapshot as WorkerSnapshot

__all__ = [
    "LIFELINE_EXIT_CODE",
    "BindError",
    "ChannelError",
    "ConfigError",
    "DroverError",
    "ExitReasons",
    "Master",
    "MasterConfig",
    "MasterFactory",
    "MessageBus",
    "OperationInterruptedError",
    "PreloadError",
    "ProtocolError",
    "RecyclePolicy",
    "ReloadError",
    "RestartLimitError",
    "RestartPolicy",
    "SpawnError",
    "StartTimeoutError",
    "StateError",
    "SyncMessageBus",
    "UnknownWorkerError",
    "WorkerSnapshot",
    "WorkerStartError",
    "WorkerStatus",
    "inherited_sockets",
    "open_signal_handlers",
]

_LAZY = {
    "Master": "._master",
    "MasterConfig": "._config",
    "MasterFactory": "._factory",
    "RecyclePolicy": "._restart",
    "RestartPolicy": "._restart",
    "open_signal_handlers": "._signals",
    "WorkerSnapshot": "._worker",
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
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
