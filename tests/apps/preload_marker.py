"""A module for preload tests: records who imported it and leaves traces a fork must reset.

On import it appends its importer's pid to $PROBE_DIR/imports, sets a variable in
os.environ, adds a root logging handler and installs a SIGUSR1 handler.
"""

from __future__ import annotations

import logging
import os
import signal

with open(os.path.join(os.environ["PROBE_DIR"], "imports"), "a") as _file:
    _file.write(f"{os.getpid()}\n")
os.environ["SET_BY_PRELOAD"] = "1"
logging.basicConfig()
signal.signal(signal.SIGUSR1, lambda signum, frame: None)
