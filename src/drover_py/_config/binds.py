"""The ``bind`` option: listening addresses, parsed and checked (pure; the sockets are opened in _supervise)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import attrs

from .._exceptions import ConfigError


@attrs.frozen
class BindSpec:
    """One parsed ``bind`` entry."""

    #: "tcp", "unix", "fd" or "systemd".
    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd://{self.fd}"
        return "systemd"


def parse_bind(entry: object) -> BindSpec:
    """Parse "host:port", "[v6]:port", "unix:/path", "fd://N" or "systemd"."""
    if not isinstance(entry, str) or not entry:
        raise ConfigError("bind", f"expected an address string, got {entry!r}")
    if entry == "systemd":
        return BindSpec("systemd")
    if entry.startswith("unix:"):
        path = entry[len("unix:") :]
        if not path:
            raise ConfigError("bind", f"{entry!r}: empty socket path")
        return BindSpec("unix", path=os.path.abspath(path))
    if entry.startswith("fd://"):
        text = entry[len("fd://") :]
        if not text.isdigit():
            raise ConfigError("bind", f"{entry!r}: expected fd://<number>")
        return BindSpec("fd", fd=int(text))
    host, sep, port_text = entry.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError("bind", f"{entry!r}: expected host:port with a port in 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError("bind", f"{entry!r}: write IPv6 addresses in brackets, e.g. [::1]:8000")
    if not host:
        raise ConfigError("bind", f"{entry!r}: empty host (use 0.0.0.0 or [::] for all interfaces)")
    return BindSpec("tcp", host=host, port=int(port_text))


def check_binds(value: object) -> tuple[BindSpec, ...]:
    """Return the parsed ``bind`` option (a list of address strings, or parsed ones; not one string)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError("bind", f"expected a list of addresses, got {value!r}")
    specs = tuple(entry if isinstance(entry, BindSpec) else parse_bind(entry) for entry in value)
    if sum(spec.kind == "systemd" for spec in specs) > 1:
        raise ConfigError("bind", "'systemd' may appear once")
    return specs
