"""Light validators of option values, used by the master and the worker side alike (no attrs)."""

from __future__ import annotations

import math

from ._exceptions import ConfigError


def check_seconds(option: str, value: object) -> float:
    """Return ``value`` as a finite, positive number of seconds, or raise `ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(option, f"expected seconds as a number, got {value!r}")
    seconds = float(value)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(option, f"must be a finite number of seconds > 0, got {value!r}")
    return seconds


def check_count(value: object, option: str = "count") -> int:
    """Return ``value`` if it is an int >= 1 (bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(option, f"expected an int >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(option, f"must be >= 1, got {value}")
    return value
