"""`ServeOptions`: how a worker serves the app, and the one place they cross to the worker.

Both sides import this module, so it stays light (stdlib only). The master writes the
options into the worker's environment as one JSON value (`ServeOptions.to_env`); the
worker reads them back (`ServeOptions.from_env`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Literal

from .._checks import check_seconds
from .._exceptions import ConfigError

#: The worker's environment variable carrying the options, as JSON.
OPTIONS_ENV = "DROVER_PY_SERVE"
#: The master's request handler a worker asks for its own replacement (``max_requests``).
RECYCLE_REQUEST = "drover_py.serve.recycle"
#: The worker's request handler that says how it serves.
INFO_REQUEST = "drover_py.serve.info"

Interface = Literal["auto", "asgi", "wsgi"]
Backend = Literal["asyncio", "trio"]
INTERFACES: tuple[Interface, ...] = ("auto", "asgi", "wsgi")
BACKENDS: tuple[Backend, ...] = ("asyncio", "trio")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: Where the workers listen unless told otherwise (uvicorn's default).
DEFAULT_BIND = "127.0.0.1:8000"


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """How each worker serves the app; the defaults are uvicorn's.

    ``app`` is an import string, ``"module:attribute"`` (the attribute may be dotted), as
    for uvicorn and gunicorn; with ``factory=True`` the attribute is a callable taking no
    argument that returns the app. ``interface`` is "asgi", "wsgi" or "auto" (an app whose
    ``__call__`` is a coroutine function is ASGI, any other callable WSGI). ``app_dir``
    is put first on the workers' ``sys.path`` (default: the current directory).

    ``backend`` is the workers' event loop: "asyncio" serves with uvicorn, "trio" with
    hypercorn; a WSGI app is served by waitress (its threads, no event loop), with the
    same graceful drain.

    ``max_requests`` replaces a worker once it has answered that many requests, plus a
    random 0..``max_requests_jitter`` so that workers do not all go at once; the
    replacement starts first, so capacity never dips. ``drain_timeout`` bounds a stopping
    worker's wait for its open connections (default: set from the master's
    ``stop_timeout``).
    """

    app: str
    interface: Interface = "auto"
    factory: bool = False
    app_dir: str = "."
    backend: Backend = "asyncio"
    root_path: str = ""
    proxy_headers: bool = True
    forwarded_allow_ips: str | None = None
    timeout_keep_alive: float = 5.0
    limit_concurrency: int | None = None
    access_log: bool = True
    log_level: str = "info"
    max_requests: int | None = None
    max_requests_jitter: int = 0
    drain_timeout: float = 25.0

    def __post_init__(self) -> None:
        module, _, attribute = self.app.partition(":") if isinstance(self.app, str) else ("", "", "")
        if (
            not module
            or not attribute
            or not all(part.isidentifier() for part in (*module.split("."), *attribute.split(".")))
        ):
            raise ConfigError(
                "app", f"expected an import string 'module:attribute' such as 'main:app', got {self.app!r}"
            )
        _choice("interface", self.interface, INTERFACES)
        _choice("backend", self.backend, BACKENDS)
        _choice("log_level", self.log_level, LOG_LEVELS)
        check_seconds("timeout_keep_alive", self.timeout_keep_alive)
        check_seconds("drain_timeout", self.drain_timeout)
        for name in ("limit_concurrency", "max_requests"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(name, f"expected a whole number >= 1, got {value!r}")
        jitter = self.max_requests_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
            raise ConfigError("max_requests_jitter", f"expected a whole number >= 0, got {jitter!r}")
        object.__setattr__(self, "app_dir", os.path.abspath(self.app_dir))

    @property
    def module(self) -> str:
        """The module part of ``app``."""
        return self.app.partition(":")[0]

    @property
    def attribute(self) -> str:
        """The attribute part of ``app`` (possibly dotted)."""
        return self.app.partition(":")[2]

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that hand these options to a worker."""
        return {OPTIONS_ENV: json.dumps(dataclasses.asdict(self), separators=(",", ":"))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeOptions:
        """Read the options the master handed over; raise `ConfigError` if there are none."""
        text = environ.get(OPTIONS_ENV)
        if text is None:
            raise ConfigError(
                OPTIONS_ENV, "not set: this program is a worker of `drover-py serve`, started by its master"
            )
        try:
            fields = json.loads(text)
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(OPTIONS_ENV, f"malformed ({exc})") from None


def _choice(option: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(option, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
