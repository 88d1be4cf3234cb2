"""Imported by a preload template right after the app's module: the server that app needs.

The template imports the app's module first (`create_master` lists it), then this
module, which tells the app's interface the way the worker will (without calling a
``--factory``, whose app only a worker makes) and imports the worker program and the one
server it will run, with what that server's first start imports. A WSGI app's template
so imports neither uvicorn nor asyncio, an ASGI app's not waitress.
"""

from __future__ import annotations

import importlib
import sys

from ._load import detect_interface
from ._options import ServeOptions


def server_modules(options: ServeOptions) -> list[str]:
    """Return the modules a worker of ``options`` will import to serve: worker and server."""
    servers = {
        "asgi": "drover_py.serve._uvicorn" if options.backend == "asyncio" else "drover_py.serve._hypercorn",
        "wsgi": "drover_py.serve._waitress",
    }
    interface = options.interface
    if interface == "auto" and not options.factory:
        app: object = sys.modules[options.module]
        for part in options.attribute.split("."):
            app = getattr(app, part, None)
        interface = detect_interface(app) if callable(app) else "auto"
    wanted = list(servers.values()) if interface == "auto" else [servers[interface]]
    return ["drover_py.serve.worker", *wanted]


for _name in server_modules(ServeOptions.from_env()):
    importlib.import_module(_name)
