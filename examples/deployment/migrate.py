"""The migration of the deployment example: create the visits table (a ``kind = "once"`` app).

It runs to its end before ``web`` and ``reporter`` start; a non-zero exit would stop the
deployment instead. Running it again changes nothing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

DATABASE = Path(__file__).with_name("visits.db")

with sqlite3.connect(DATABASE) as db:
    db.execute("CREATE TABLE IF NOT EXISTS visits (at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
print(f"migrate: {DATABASE.name} is ready", flush=True)
