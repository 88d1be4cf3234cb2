"""An app whose import fails: `drover-py serve broken_app:app` must not start."""

from __future__ import annotations


def configure() -> dict[str, str]:
    raise LookupError("broken_app: the setting BROKEN_SETTING is missing")


settings = configure()
app = None
