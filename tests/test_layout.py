"""The layout documents itself: every package says what it holds, and docs/architecture.md places every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("sdk", "export", "runtime")
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def _modules() -> list[Path]:
    return sorted(p for part in PARTS for p in (ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("package", sorted({p.parent for p in _modules()}), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_docstring_names_what_it_holds(package):
    """Each package's docstring mentions each of its modules and subpackages by name."""
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    held = [p.stem for p in package.glob("*.py") if p.name != "__init__.py"]
    held += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
    missing = [name for name in held if not re.search(rf"\b{name}\b", doc)]
    assert doc and not missing, f"{package.relative_to(ROOT)}/__init__.py does not say it holds {missing}"


def test_architecture_places_every_module():
    """A top-level module is named in docs/architecture.md; a subpackage's modules are placed by its folder."""
    unplaced = []
    for path in _modules():
        relative = path.relative_to(ROOT)
        if path.name == "__init__.py" and relative.parent.as_posix() in PARTS:
            continue
        inside_subpackage = len(relative.parts) > 2
        name = f"`{relative.parent.as_posix()}/`" if inside_subpackage else f"`{relative.as_posix()}`"
        if name not in ARCHITECTURE:
            unplaced.append(relative.as_posix())
    assert unplaced == []


def test_every_path_in_architecture_exists():
    paths = set(re.findall(r"`((?:sdk|export|runtime|examples|tests)/[\w./]*)`", ARCHITECTURE))
    assert paths and [p for p in sorted(paths) if not (ROOT / p).exists()] == []
