"""The dbt models' contracts, read from their YAML, for Python code that must agree with them.

A table others read is declared once, in dbt (the YAML beside its model): columns, types,
constraints, descriptions. dbt enforces it on every build; the serving file's DDL
(``ml.serving.schema.TABLES``) is generated from the ``pub_*`` contracts, and the ranker's feature
list is tested against the ``candidates`` contract, so neither can drift from what dbt builds.
The YAML is read rather than dbt's ``manifest.json``: it is in the repository, so it is there
before any dbt run and whichever target directory a run used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from ml.config import DBT_VARS, PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "dbt_project" / "models"


@dataclass(frozen=True)
class Constraint:
    """A dbt constraint: ``type`` is not_null, unique, primary_key, check, ...;
    ``expression`` is the SQL of a check."""

    type: str
    expression: str | None = None


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    description: str = ""
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class Contract:
    """An enforced contract: the model's columns in their declared order and its model-level
    constraints."""

    model: str
    columns: tuple[Column, ...]
    constraints: tuple[Constraint, ...] = ()

    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]


def contracts(path: Path) -> dict[str, Contract]:
    """The models with an enforced contract declared in one YAML file, in file order."""
    document = yaml.safe_load(path.read_text()) or {}
    found = {}
    for model in document.get("models", []):
        if model.get("config", {}).get("contract", {}).get("enforced"):
            found[model["name"]] = Contract(
                model=model["name"],
                columns=tuple(_column(spec) for spec in model.get("columns", [])),
                constraints=tuple(_constraint(spec) for spec in model.get("constraints", [])),
            )
    return found


@cache
def contract(model: str) -> Contract:
    """The enforced contract of ``model``, wherever under the models directory it is declared;
    KeyError when the model has none."""
    for path in sorted(MODELS_DIR.rglob("*.yml")):
        found = contracts(path)
        if model in found:
            return found[model]
    raise KeyError(f"no model {model!r} with an enforced contract under {MODELS_DIR}")


def _column(spec: dict[str, Any]) -> Column:
    return Column(
        name=spec["name"],
        data_type=spec["data_type"],
        description=" ".join(spec.get("description", "").split()),
        constraints=tuple(_constraint(c) for c in spec.get("constraints", [])),
    )


def _constraint(spec: dict[str, Any]) -> Constraint:
    return Constraint(type=spec["type"], expression=_rendered(spec.get("expression")))


def _rendered(expression: str | None) -> str | None:
    """A check's SQL as dbt renders it: jinja with ``var()`` (dbt_project.yml's vars, e.g.
    ``platforms``), so the serving file's DDL enforces what dbt enforces."""
    if expression is None or "{" not in expression:
        return expression
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return environment.from_string(expression).render(var=DBT_VARS.__getitem__)
