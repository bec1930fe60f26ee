"""The layout documents itself (every package says what it holds, docs/architecture.md places every module), and
imports flow one way: format <- runtime <- sdk <- export <- cli."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("sdk", "export", "runtime", "cli")
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
    paths = set(re.findall(r"`((?:sdk|export|runtime|cli|examples|tests)/[\w./]*)`", ARCHITECTURE))
    assert paths and [p for p in sorted(paths) if not (ROOT / p).exists()] == []


# Each layer and the layers it may import (itself included); a module's layer is its folder's, the format layer
# being runtime/format/.
MAY_IMPORT = {"format": {"format"}, "runtime": {"format", "runtime"}, "sdk": {"format", "runtime", "sdk"},
              "export": {"format", "runtime", "sdk", "export"}, "cli": {"format", "runtime", "sdk", "export", "cli"}}
TORCH_FREE = ("format", "runtime")


def _layer_of_module(dotted: str) -> str | None:
    """``edgeadapt.runtime.format.x`` -> format, ``edgeadapt.sdk.x`` -> sdk, ...; None outside edgeadapt."""
    parts = dotted.split(".")
    if parts[0] != "edgeadapt" or len(parts) < 2:
        return None
    return "format" if parts[1:3] == ["runtime", "format"] else parts[1]


def _imports(path: Path, at_import_time: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved; ``at_import_time``: only
    those that run when the module is imported (not inside a function)."""
    relative = path.relative_to(ROOT).with_suffix("")
    package = ["edgeadapt", *relative.parts[:-1]] if path.name != "__init__.py" else ["edgeadapt", *relative.parts[:-1]]
    found = []
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)} if at_import_time else set()
    for node in ast.walk(tree):
        if id(node) in nested:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, f"{module}.{alias.name}" if not node.module else module) for alias in node.names]
    return found


def _module_layer(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return "format" if relative.parts[:2] == ("runtime", "format") else relative.parts[0]


def test_imports_flow_one_way():
    """No module imports a layer above its own; the format layer and the runtime do not import torch on import."""
    breaches = []
    for path in _modules():
        layer = _module_layer(path)
        for line, module in _imports(path):
            target = _layer_of_module(module)
            if target is not None and target not in MAY_IMPORT[layer]:
                breaches.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {module}")
        if layer in TORCH_FREE:  # torch only where a function needs it (the ExecuTorch engine)
            breaches += [f"{path.relative_to(ROOT)}:{line} imports torch when imported"
                         for line, module in _imports(path, at_import_time=True) if module.split(".")[0] == "torch"]
    assert breaches == []


def test_the_import_rule_is_checked_for_real():
    """The checker sees a breach when there is one: export importing the CLI, the format layer the runtime."""
    assert "cli" not in MAY_IMPORT[_module_layer(ROOT / "export" / "artifact.py")]
    assert _layer_of_module("edgeadapt.runtime.learner") not in MAY_IMPORT["format"]
    resolved = dict(_imports(ROOT / "runtime" / "format" / "manifest.py")).values()
    assert "edgeadapt.runtime.format.errors" in resolved  # a relative import, resolved
