"""The status page's files (``GET /`` and ``GET /page/NAME``): plain HTML, CSS and JS, no data.

They are read once from the package (``page/`` beside this module) and served with a
strict content security policy: scripts and styles from the server only, none inline.
"""

from __future__ import annotations

import functools
from importlib.resources import files

#: The files under ``/page/``, by name, with their content type; ``/`` is index.html.
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}

#: Headers of every file of the page.
SECURITY_HEADERS = (
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
)


def is_page_path(path: str) -> bool:
    """Return whether ``path`` is the page or one of its files (served without a key)."""
    return path == "/" or path.startswith("/page/")


@functools.cache
def _read(name: str) -> bytes:
    return (files(__package__ or "drover_py._control") / "page" / name).read_bytes()


def page_file(path: str) -> tuple[bytes, tuple[tuple[str, str], ...]] | None:
    """Return the content and headers of the page's file at ``path``, or None if there is none."""
    name = "index.html" if path == "/" else path.removeprefix("/page/")
    if name not in PAGE_FILES:
        return None
    return _read(name), (("content-type", PAGE_FILES[name]), *SECURITY_HEADERS)
