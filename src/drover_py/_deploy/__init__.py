"""Deployments: the apps of one file, started in dependency order (``drover-py up``).

``options`` reads what an app's table accepts from the parsers of ``run`` and ``serve``
and builds each app's master the way they do; ``deployment`` runs the apps
(`Deployment`, `load_deployment`); ``once`` runs a ``kind = "once"`` app; ``up`` is the
command: control server, signals, ``reload-config``. The file itself is parsed and
checked in ``drover_py._config.file`` (pure).
"""
