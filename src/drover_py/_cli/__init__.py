"""The ``drover-py`` command line (see `main`)."""

from __future__ import annotations

from .main import main as main
