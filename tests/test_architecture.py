"""The package layering of docs/architecture.md, checked on the code: nothing imports upward.

Each unit (a sub-package of ``ml``, a top-level ``ml`` module, or ``flows``) may import only
itself and units of lower layers; two units of one layer do not know each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    {"ml.config", "ml.evaluation", "ml.progress"},
    {"ml.vocabulary"},
    {"ml.data"},
    {"ml.warehouse"},
    {"ml.ranker", "ml.baselines"},
    {"ml.serving"},
    {"ml.reports"},
    {"ml.pipeline"},
    {"ml.monitoring"},
    {"ml.experiments"},
    {"flows"},
]
LAYER = {unit: index for index, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """``ml.ranker.training`` -> ``ml.ranker``; ``flows.cli`` -> ``flows``; ``ml`` -> None."""
    parts = module.split(".")
    if parts[0] == "flows":
        return "flows"
    if parts[0] != "ml" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from ml import serving`
    return {name for name in names if unit_of(name) in LAYER}


def source_files() -> list[tuple[str, Path]]:
    files = []
    for package in ("ml", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files.append((module, path))
    return files


def test_every_unit_has_a_layer():
    units = {unit_of(module) for module, _ in source_files()} - {None}
    assert units <= set(LAYER), f"add to LAYERS (and docs/architecture.md): {sorted(units - set(LAYER))}"


def test_nothing_imports_upward_or_sideways():
    wrong = []
    for module, path in source_files():
        unit = unit_of(module)
        if unit is None:
            continue
        for imported in imported_modules(path):
            target = unit_of(imported)
            if target != unit and LAYER[target] >= LAYER[unit]:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_layering_test_sees_a_violation(tmp_path):
    upward = tmp_path / "upward.py"
    upward.write_text("from ml.pipeline import steps\nfrom ml import config\n")
    assert imported_modules(upward) == {"ml.pipeline", "ml.pipeline.steps", "ml", "ml.config"} - {"ml"}
    assert LAYER[unit_of("ml.pipeline.steps")] > LAYER[unit_of("ml.data.export")]
