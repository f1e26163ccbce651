"""The environment holds exactly the lock (constraints.txt), and the lock fits pyproject's ranges."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, str]:
    """Normalized name -> pinned version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _declared() -> list[Requirement]:
    """The build backend, the dependencies and every extra (`make install` installs them all)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = [spec for specs in project["optional-dependencies"].values() for spec in specs]
    specs = pyproject["build-system"]["requires"] + project["dependencies"] + extras
    return [Requirement(spec) for spec in specs]


def test_installed_versions_are_the_locked_ones():
    pins = _locked()
    wrong = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            wrong[name] = f"installed {dist.version}, locked {pins[name]}"
    assert wrong == {}


def test_every_declared_requirement_is_locked():
    pins = _locked()
    assert [str(r) for r in _declared() if canonicalize_name(r.name) not in pins] == []


def test_locked_versions_satisfy_the_declared_ranges():
    pins = _locked()
    outside = []
    for req in _declared():
        version = pins.get(canonicalize_name(req.name))
        if version and not req.specifier.contains(version, prereleases=True):
            outside.append(f"{req} but locked {version}")
    assert outside == []
