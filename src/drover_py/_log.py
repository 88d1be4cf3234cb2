"""The supervisor's structured logger (structlog), with debug and the format chosen by environment.

drover-py does not configure structlog: it logs through whatever the application set
up. While the application has not configured structlog, drover-py writes to stderr (not
stdout, which belongs to the application), in the format ``DROVER_PY_LOG_FORMAT`` names
(``--log-format``): "console" (the default: structlog's console format), "json" (one
object per line: ``event``, ``level``, ``timestamp`` and the bound fields such as
``worker_id``, ``pid`` and ``slot``), or "logging" (records of the stdlib logger
"drover_py", the fields in ``extra``, for applications that configured `logging`).
Debug events are dropped unless ``DROVER_PY_DEBUG=1`` is set (drover's
``DEBUG=drover:*`` also works).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from structlog.typing import EventDict, FilteringBoundLogger, Processor

DEBUG_ENV = "DROVER_PY_DEBUG"
FORMAT_ENV = "DROVER_PY_LOG_FORMAT"
#: The formats of ``DROVER_PY_LOG_FORMAT`` (``--log-format``); the first is the default.
FORMATS = ("console", "json", "logging")
#: What a `logging.LogRecord` has already: a field of that name goes in as NAME_.
_RECORD_NAMES = (frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}) - {
    "exc_info",  # these three go to logging as keywords, not as fields
    "stack_info",
    "stacklevel",
}


def debug_enabled() -> bool:
    """Return whether the environment asks for drover-py's debug logs."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    return any(part.strip().startswith("drover") for part in os.environ.get("DEBUG", "").split(","))


def log_format() -> str:
    """Return the log format the environment asks for ("console" if none or unknown)."""
    chosen = os.environ.get(FORMAT_ENV, "").strip().lower()
    return chosen if chosen in FORMATS else FORMATS[0]


def _clear_of_record_names(_: object, __: str, event_dict: EventDict) -> EventDict:
    return {f"{key}_" if key in _RECORD_NAMES else key: value for key, value in event_dict.items()}


def get_logger(**initial: object) -> FilteringBoundLogger:
    """Return a logger named "drover_py" bound with ``initial``."""
    import structlog  # here: the command line reads this module's names without it

    level = logging.DEBUG if debug_enabled() else logging.INFO
    wrapper = structlog.make_filtering_bound_logger(level)
    chosen = log_format()
    processors: list[Processor] | None = None
    target: object = None
    if structlog.is_configured():
        pass  # the application's configuration
    elif chosen == "json":
        target = structlog.PrintLogger(sys.stderr)
        processors = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    elif chosen == "logging":
        target = logging.getLogger("drover_py")
        processors = [_clear_of_record_names, structlog.stdlib.render_to_log_kwargs]
    else:
        target = structlog.PrintLogger(sys.stderr)
    logger: FilteringBoundLogger = structlog.wrap_logger(target, processors=processors, wrapper_class=wrapper)
    return logger.bind(logger="drover_py", **initial) if chosen != "logging" else logger.bind(**initial)
