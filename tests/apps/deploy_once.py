"""A ``kind = "once"`` app of the deployment tests: records "ran <app>" in $TEST_RECORD, exits with $EXIT_CODE."""

from __future__ import annotations

import os
import sys

with open(os.environ["TEST_RECORD"], "a") as file:
    file.write(f"ran {os.environ.get('APP', '?')} - {os.getpid()}\n")
code = int(os.environ.get("EXIT_CODE", "0"))
if code:
    print(f"deploy_once: failing with exit code {code}", file=sys.stderr)
sys.exit(code)
