"""Worker side: import the app named by an import string and tell ASGI from WSGI."""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable
from typing import Literal

from ._options import ServeOptions

App = Callable[..., object]


class AppLoadError(Exception):
    """The app could not be loaded; ``str()`` is one line, ``.details`` the app's traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def load_app(options: ServeOptions) -> tuple[App, Literal["asgi", "wsgi"]]:
    """Import ``options.app`` and return it with its interface.

    Raise `AppLoadError` when the module cannot be imported (its traceback, without the
    import machinery's frames, in ``.details``), the attribute is missing, the factory
    fails, or the result is not callable.
    """
    module_name, attribute = options.module, options.attribute
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # the app's own import: anything may come out of it
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and module_name.startswith(exc.name):
            raise AppLoadError(
                f"cannot import module {module_name!r}: no module named {exc.name!r} in "
                f"{options.app_dir} (set --app-dir or check the name)"
            ) from None
        raise AppLoadError(f"importing {module_name!r} failed: {_one_line(exc)}", _user_traceback(exc)) from None
    app: object = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if options.factory:
        if not callable(app):
            raise AppLoadError(f"--factory: {options.app!r} is not callable")
        try:
            app = app()
        except BaseException as exc:
            raise AppLoadError(f"the factory {options.app!r} failed: {_one_line(exc)}", _user_traceback(exc)) from None
    if not callable(app):
        raise AppLoadError(f"{options.app!r} is not an ASGI or WSGI app (not callable: {type(app).__name__})")
    interface = detect_interface(app) if options.interface == "auto" else options.interface
    return app, interface


def detect_interface(app: object) -> Literal["asgi", "wsgi"]:
    """Return "asgi" if calling ``app`` gives a coroutine (ASGI 3), else "wsgi"."""
    if inspect.isclass(app):
        return "asgi" if hasattr(app, "__await__") else "wsgi"
    if inspect.iscoroutinefunction(app):
        return "asgi"
    call = getattr(app, "__call__", None)  # noqa: B004 - the method, for its coroutine flag
    return "asgi" if inspect.iscoroutinefunction(call) else "wsgi"


def _one_line(exc: BaseException) -> str:
    """Return ``Type: message`` (a SyntaxError's says file and line: "invalid syntax (main.py, line 3)")."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_traceback(exc: BaseException) -> str:
    """Return ``exc``'s traceback without the frames of drover-py and importlib."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and f"{__package__.replace('.', '/')}" not in frame.filename
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def report(error: AppLoadError) -> None:
    """Write ``error`` to stderr: the app's traceback, if any, then one line."""
    if error.details:
        print(error.details, file=sys.stderr)
    print(f"drover-py serve: {error}", file=sys.stderr, flush=True)
