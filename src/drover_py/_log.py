"""The supervisor's structured logger (structlog), with debug switched on by environment.

drover-py does not configure structlog: it logs through whatever the application set
up. While the application has not configured structlog, drover-py writes structlog's
default console format to stderr (not stdout, which belongs to the application). Debug
events are dropped unless ``DROVER_PY_DEBUG=1`` is set (drover's ``DEBUG=drover:*``
also works).
"""

from __future__ import annotations

import logging
import os
import sys

import structlog
from structlog.typing import FilteringBoundLogger

DEBUG_ENV = "DROVER_PY_DEBUG"


def debug_enabled() -> bool:
    """Return whether the environment asks for drover-py's debug logs."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    return any(part.strip().startswith("drover") for part in os.environ.get("DEBUG", "").split(","))


def get_logger(**initial: object) -> FilteringBoundLogger:
    """Return a logger named "drover_py" bound with ``initial``."""
    level = logging.DEBUG if debug_enabled() else logging.INFO
    target = None if structlog.is_configured() else structlog.PrintLogger(sys.stderr)
    logger: FilteringBoundLogger = structlog.wrap_logger(
        target, wrapper_class=structlog.make_filtering_bound_logger(level)
    )
    return logger.bind(logger="drover_py", **initial)
