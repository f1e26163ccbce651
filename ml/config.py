"""Where everything lives, and the defaults every command shares.

One setting moves the whole product: ``RECSYS_HOME`` (or ``--home``). Several homes can live
side by side, so runs on different inputs never overwrite each other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = PROJECT_ROOT / "warehouse" / "home"


@dataclass(frozen=True)
class Settings:
    """Paths of one product home. Directories are created on first use, not here."""

    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike | None = None) -> "Settings":
        chosen = home or os.environ.get("RECSYS_HOME") or DEFAULT_HOME
        return cls(home=Path(chosen).expanduser().resolve())

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def default_input(self) -> Path:
        """The generated demo export used when no input is given."""
        return self.data_dir / "ab_test.csv"

    @property
    def build_db(self) -> Path:
        """DuckDB file dbt builds into; only the pipeline opens it."""
        return self.home / "build.duckdb"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def serving_db(self) -> Path:
        """DuckDB file the marketplace opens read-only; replaced atomically on publish."""
        return self.serving_dir / "recommendations.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.serving_dir, self.models_dir, self.reports_dir):
            path.mkdir(parents=True, exist_ok=True)


class ConfigError(ValueError):
    """A run setting is invalid: the run is refused before any work."""


@dataclass(frozen=True)
class RunConfig:
    """The knobs of one pipeline run; every default works on the generated demo data.

    Checked when made, so a bad value is refused at the boundary (the CLI, the flow's
    parameters) with the reason, not deep inside a step.
    """

    input_path: Path | None = None
    as_of: str | None = None
    top_n: int = 20
    k: int = 10
    horizon_days: int | None = None  # None: chosen from the export (ml.timescale)
    labelled_cutoffs: int = 3
    min_holdout_buyers: int = 50  # fewer buyers with history in the newest window cannot judge a list
    model_kind: str = "hgb"
    max_training_rows: int = 400_000
    gate_margin: float = 0.10
    min_pair_users: int = 3
    demo_rows: int = 1_000_000
    seed: int = 7

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ConfigError(f"top_n must be at least 1 (got {self.top_n})")
        if self.horizon_days is not None and self.horizon_days < 1:
            raise ConfigError(f"horizon_days must be at least 1 (got {self.horizon_days})")
        if self.as_of is not None:
            object.__setattr__(self, "as_of", parse_as_of(self.as_of))

    def dbt_overrides(self) -> dict:
        overrides = {"labelled_cutoffs": self.labelled_cutoffs, "min_pair_users": self.min_pair_users}
        if self.horizon_days is not None:
            overrides["horizon_days"] = self.horizon_days
        return overrides


def parse_as_of(value: str) -> str:
    """``YYYY-MM-DD[ HH:MM[:SS]]`` as ``YYYY-MM-DD HH:MM:SS``; anything else is a ConfigError."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"as_of must be a date or a time like 2023-08-10 or 2023-08-10 06:00 "
                          f"(got {value[:40]!r})") from None
    if parsed.tzinfo is not None:
        raise ConfigError(f"as_of is read as UTC and takes no time zone (got {value[:40]!r})")
    return parsed.strftime("%Y-%m-%d %H:%M:%S")
