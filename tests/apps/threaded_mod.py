"""A module that starts a thread when imported (preload must refuse to fork after it)."""

from __future__ import annotations

import threading

threading.Thread(target=threading.Event().wait, name="started-by-threaded-mod", daemon=True).start()
