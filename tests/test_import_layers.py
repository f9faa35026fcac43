"""The import directions of CONTRIBUTING.md hold: every module imports only from its own layer or the
layers below it, and none but the package root imports the root. Read from the source (imports inside
functions included), so a lazy upward import fails here too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dirackit as dk

PACKAGE = Path(dk.__file__).parent

# Lowest first. A top-level module or subpackage of dirackit belongs to exactly one layer.
LAYERS = (
    ("foundation", {"atomic", "version", "hooks", "registry", "recipes", "precision", "metrics", "stats", "papers",
                    "folding", "checkpoint", "runlog", "rundir", "loggers", "data"}),
    ("layers", {"layers"}),
    ("models", {"models"}),
    ("train", {"train", "restore"}),
    ("helpers", {"explore", "compare", "claims", "diagnostics", "reference", "course", "estimate", "bench", "viz"}),
)
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path) -> set[str]:
    """Absolute names of the dirackit modules (or the root's attributes) ``path`` imports."""
    name = _module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{alias.name}" if target == "dirackit" else target for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {t for t in found if t == "dirackit" or t.startswith("dirackit.")}


def _unit(module: str) -> str | None:
    """The layer unit of a module: ``dirackit.data.cache`` -> ``data``; the root has none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _violations(path: Path, root: Path = PACKAGE) -> list[str]:
    """Each import of ``path`` that points up the layers or at the package root."""
    me = _unit(_module_name(path, root))
    if me is None:
        return []  # the package root gathers the public API from every layer
    wrong = []
    for target in sorted(_imports(path, root)):
        other = _unit(target)
        if other not in RANK:
            wrong.append(f"{target}: import the module that defines it, not the package root")
        elif RANK[other] > RANK[me]:
            wrong.append(f"{target} ({LAYERS[RANK[other]][0]}) from the {LAYERS[RANK[me]][0]} layer")
    return wrong


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    units = {_unit(_module_name(p, PACKAGE)) for p in SOURCES} - {None}
    assert units - set(RANK) == set(), "place new modules in LAYERS here and in CONTRIBUTING.md"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_down(path):
    assert _violations(path) == []


def test_registry_is_a_leaf():
    """The registry imports no model family (the families register themselves): only the hooks it
    sets and the recipes its cards name."""
    assert {_unit(t) for t in _imports(PACKAGE / "registry.py", PACKAGE)} <= {"hooks", "recipes"}


def test_the_check_sees_lazy_and_root_imports(tmp_path):
    root = tmp_path / "dirackit"
    (root / "models").mkdir(parents=True)
    module = root / "models" / "family.py"
    module.write_text("from ..layers import dirac\n\n\ndef late():\n    from ..train import fit\n"
                      "    from .. import __version__\n    import dirackit.viz\n")
    assert _violations(module, root) == [
        "dirackit.__version__: import the module that defines it, not the package root",
        "dirackit.train (train) from the models layer", "dirackit.viz (helpers) from the models layer"]


def test_the_run_log_is_a_plain_record():
    """``runlog`` reads and writes run folders; rebuilding models from them is ``restore``'s job."""
    assert _imports(PACKAGE / "runlog.py", PACKAGE) <= {"dirackit.atomic", "dirackit.stats"}
