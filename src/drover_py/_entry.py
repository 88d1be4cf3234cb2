"""The ``drover-py`` console command: imports the command line lazily, so Ctrl-C is quiet.

A Ctrl-C while the command line is still importing (a fraction of a second) ends it with
exit code 130 and one line, not an import traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Run ``drover-py``; return its exit code."""
    try:
        from ._cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print("drover-py: interrupted", file=sys.stderr)
        return 130
