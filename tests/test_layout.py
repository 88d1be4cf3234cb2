"""The package layout is the architecture: each layer imports only the layers below it.

Data flows one way (options -> config -> master -> workers -> spawner -> channel -> bus),
and so do imports. A new arrow that runs back up fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "drover_py"

#: The pure modules at the top of the package: no I/O of their own, imported by every layer.
BASE = {"_checks", "_compat", "_env", "_reports", "_status", "_exit_reasons", "_exceptions", "_log", "_commands"}

#: What each part of the package may import from drover_py, besides itself and BASE.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "_wire": set(),
    "_child": {"_wire"},
    "_config": set(),
    "_spawn": {"_config"},
    "_supervise": {"_wire", "_child", "_config", "_spawn"},
    "_control": {"_wire", "_child", "_config", "_spawn", "_supervise"},
}
#: The front: the public names, the command line, serve, deployments (``up``) and the init may import every layer.
FRONT = {"__init__", "__main__", "_entry", "_cli", "_pid1", "serve", "_deploy"}


def part_of(module: str) -> str:
    """Return the part of drover_py that ``module`` (``drover_py.a.b``) belongs to."""
    first = module.split(".")[1] if "." in module else "__init__"
    return "base" if first in BASE else first


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Return (line, absolute module) for every drover_py import in ``path``."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = parts[:-1]  # a module's package; __init__ is its own package's file
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("drover_py")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            elif (node.module or "").startswith("drover_py"):
                target = node.module or ""
            else:
                continue
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            found += [(node.lineno, name) for name in names]
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if "_bin" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_each_layer_imports_only_the_layers_below_it(path: Path) -> None:
    own = part_of(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
    if own in FRONT:
        return
    allowed = ALLOWED[own] | {own, "base"}
    wrong = [f"line {line}: {module}" for line, module in imports_of(path) if part_of(module) not in allowed]
    assert not wrong, f"{path.relative_to(SRC)} ({own}) imports above its layer: {wrong}"


def test_every_part_of_the_package_has_a_layer() -> None:
    tops = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.name != "__pycache__" and p.name != "py.typed"}
    assert tops == BASE | set(ALLOWED) - {"base"} | FRONT
