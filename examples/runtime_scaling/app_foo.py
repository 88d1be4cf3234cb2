"""The worker of the "foo" app of the runtime_scaling example."""

from __future__ import annotations

import os
import sys

# The examples folder, so that `_shared` is found whatever the working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _shared import server  # noqa: E402

if __name__ == "__main__":
    server.run("foo")
