"""The documentation: every public name is in the API reference, and the README's links lead somewhere.

The site itself is built by ``make docs`` (part of ``make test``), where a warning fails
the build; these checks cover what a clean build does not see.
"""

from __future__ import annotations

import re
from pathlib import Path

import drover_py
import drover_py.serve

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"


def documented_names() -> set[str]:
    """Return the full names the API page documents (``.. autoclass::`` and the like)."""
    names: set[str] = set()
    module = ""
    for line in API.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match[1]
        elif match := re.match(r"\.\. (?:auto)?(?:class|function|exception|data)::\s+([\w.]+)", line):
            names.add(f"{module}.{match[1]}")
    return names


def test_every_public_name_is_in_the_api_reference() -> None:
    public = {f"drover_py.{name}" for name in drover_py.__all__ if name != "ExitReasons"}
    public |= {f"drover_py.ExitReasons.{name}" for name in drover_py.ExitReasons.__all__}
    public |= {f"drover_py.serve.{name}" for name in drover_py.serve.__all__}
    assert sorted(public - documented_names()) == []


def test_the_readme_links_to_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [target.partition("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)]
    local = [target for target in targets if target and "://" not in target]
    assert local, "the README links to the documentation pages"
    assert [target for target in local if not (ROOT / target).exists()] == []
