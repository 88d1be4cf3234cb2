"""The worker of the "baz" app of the multi_app_cluster example."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _server  # noqa: E402  (found through the line above, whatever the working directory)

if __name__ == "__main__":
    _server.run("baz")
