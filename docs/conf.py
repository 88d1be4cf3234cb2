"""Sphinx configuration of drover-py's documentation site (Sphinx + MyST, the furo theme).

Build it with ``make docs``: ``sphinx-build -W --keep-going -n -E -b html docs docs/_build/html``
(a warning, a broken cross-reference included, fails it). Nothing is fetched at build
time (no intersphinx), so it builds offline.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from typing import Any

from docutils.nodes import Element
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer

import drover_py
import drover_py.serve

# Document every public name where users import it, never under a private module:
# the master side's names get ``__module__ = "drover_py"`` on first use (load them all
# now, before autodoc renders a signature that mentions one), and the two namespaces
# whose classes live in private modules are named after their public path.
for _name in drover_py.__all__:
    getattr(drover_py, _name)
sys.modules.setdefault("drover_py.ExitReasons", drover_py.ExitReasons)
for _namespace, _names in (
    ("drover_py.ExitReasons", drover_py.ExitReasons.__all__),
    ("drover_py.serve", drover_py.serve.__all__),
):
    for _name in _names:
        getattr(sys.modules[_namespace], _name).__module__ = _namespace

project = "drover-py"
author = "drover-py contributors"
copyright = "drover-py contributors"
release = importlib.metadata.version("drover-py")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings write names in single backticks (`Master`, `RestartPolicy`): make them links.
default_role = "py:obj"

# Links to a section of another page, as on GitHub: [the events](master.md#events).
myst_heading_anchors = 3

# Type aliases and type variables of the signatures: shown by their short names.
autodoc_type_aliases = {name: name for name in ("JSON", "RunAs", "Interface", "Backend")}
autodoc_member_order = "bysource"

html_theme = "furo"
html_title = "drover-py"

# Nitpicky (-n) without intersphinx: names of the standard library and anyio stay plain
# text, as do the private type aliases and constants that signatures and docstrings show.
nitpick_ignore_regex = [
    (r"py:.*", r"(collections\.abc|os|signal|socket|subprocess|anyio|typing)(\..*)?"),
    (r"py:.*", r"Path|JSON|RunAs|BindSpec|Interface|Backend|WINDOW"),
    # what a bus's counter(), gauge() and histogram() return (private classes, described in monitoring.md)
    (r"py:.*", r"Counter|Gauge|Histogram"),
    # a private class or type variable in a signature (``Command``, ``H``): its short name, no link
    (r"py:.*", r"drover_py\._.*"),
]


def _resolve_public_name(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element) -> Element | None:
    """Resolve a docstring's short name (`Master`, `StartTimeout`) as the public one.

    A docstring of ``drover_py.serve`` or of an error names ``Master`` or
    ``ExitReasons.StartTimeout`` as a user writes them after ``from drover_py import``;
    try ``drover_py.`` and ``drover_py.ExitReasons.`` in front of an unresolved target.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    domain = env.get_domain("py")
    for prefix in ("drover_py.", "drover_py.ExitReasons."):
        if target.startswith(prefix):
            continue
        retry = node.deepcopy()
        retry["reftarget"] = prefix + target
        retry["py:module"] = None
        retry["py:class"] = None
        resolved = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], prefix + target, retry, contnode
        )
        if resolved is not None:
            return resolved
    return None


def _lend_source_analysis(public_module: str) -> None:
    """Let autodoc find the field comments and source order of ``public_module``'s classes.

    A public class says ``__module__ = "drover_py"``, so autodoc reads
    ``drover_py/__init__.py`` for its ``#:`` field comments and its members' order, and
    finds neither. Copy both from the private module that defines the class into the
    source analysis of the public one.
    """
    public = ModuleAnalyzer.for_module(public_module)
    public.analyze()
    for name in sys.modules[public_module].__all__:
        obj = getattr(sys.modules[public_module], name)
        if not isinstance(obj, type):
            continue
        qualname = obj.__qualname__
        for modname, module in list(sys.modules.items()):
            if (
                not modname.startswith("drover_py.")
                or modname == public_module
                or getattr(module, qualname, None) is not obj
            ):
                continue
            try:
                private = ModuleAnalyzer.for_module(modname)
                private.analyze()
            except PycodeError:
                continue
            if qualname in private.tagorder:  # the module that defines it
                public.attr_docs.update((key, doc) for key, doc in private.attr_docs.items() if key[0] == qualname)
                public.tagorder.update(
                    (key, order)
                    for key, order in private.tagorder.items()
                    if key == qualname or key.startswith(qualname + ".")
                )
                break


def _readable_signature(
    app: Sphinx, what: str, name: str, obj: object, options: Any, signature: str | None, return_annotation: str | None
) -> tuple[str | None, str | None]:
    """Show defaults as the source writes them, and no constructor where users never call one."""
    if name == "drover_py.MasterConfig":
        return "", return_annotation  # built by MasterFactory.create; its fields are below
    if signature:
        signature = re.sub(
            r"\bunix_mode(: int)? = (\d+)", lambda m: f"unix_mode{m[1] or ''} = {int(m[2]):#o}", signature
        )
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    _lend_source_analysis("drover_py")
    _lend_source_analysis("drover_py.serve")
    app.connect("missing-reference", _resolve_public_name)
    app.connect("autodoc-process-signature", _readable_signature)
