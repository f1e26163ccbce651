"""Every setting of recsys, written once: ``Config``; and the paths of a home: ``Settings``.

``Config`` is the one typed configuration. Each field is read, highest first, from what the
caller passes (the ``recsys`` flags, the flow's parameter), from ``RECSYS_<FIELD>`` in the
environment, then from its default here. The fields named like a dbt var in
``dbt_project.yml`` are those vars: their defaults are read from that file (so a plain
``dbt build`` and a run agree without a second copy) and ``Config.dbt_overrides`` passes them
to every build. An invalid value is refused when the config is made, with one line naming
the flag or variable it came from (``ConfigError``), before any work.

One setting moves the whole product: ``RECSYS_HOME`` (or ``--home``). Several homes can live
side by side, so runs on different inputs never overwrite each other.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOME = PROJECT_ROOT / "warehouse" / "home"
ENV_PREFIX = "RECSYS_"

# The defaults of dbt's vars: the one place they are written is dbt_project.yml.
DBT_VARS: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text())["vars"]
# Vars that dbt_vars() takes as arguments (it resolves the path, reads the header), not overrides.
DBT_ARGUMENTS = ("input_path", "as_of")

# A DuckDB memory limit: a size, or a share of the machine's memory.
MEMORY_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([KMGT]i?B|%)")

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class ConfigError(ValueError):
    """A setting is invalid: the command or run is refused before any work."""


def _dbt_var(name: str, description: str, **bounds: Any) -> Any:
    """A setting that is the dbt var of the same name; its default is dbt_project.yml's."""
    return Field(DBT_VARS[name], description=f"{description} (dbt var {name})", **bounds)


class Config(BaseSettings):
    """Every knob of every command and run. Frozen: a run's settings cannot drift mid-run."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid", validate_default=True
    )

    # where
    home: Path = Field(DEFAULT_HOME, description="product home: everything a run writes lives under it")
    input_path: Path | None = Field(
        None,
        description="export to use: a file, or a directory or glob of files with one header (one a day; "
        "a run stages only the files that are new or changed); unset: a demo export generated once per home",
    )

    # the run
    as_of: str | None = Field(
        None,
        description="use only events strictly before this time, YYYY-MM-DD[ HH:MM:SS] "
        "(UTC); unset: the day after the last event",
    )
    top_n: int = _dbt_var("top_n", "recommendations per user, and length of the cold-start lists", ge=1)
    k: int = Field(10, ge=1, description="list length judged (NDCG@K, recall@K, ...) by the gate and evaluations")
    horizon_days: int | None = Field(
        None, ge=1, description="label window in days; unset: chosen from the export's span and purchase rhythm"
    )
    labelled_cutoffs: int = _dbt_var(
        "labelled_cutoffs",
        "labelled windows before the serving cutoff (training learns from the older, is judged on the newest)",
        ge=2,
    )
    cutoffs_per_horizon: int = _dbt_var(
        "cutoffs_per_horizon",
        "labelled cutoffs per label horizon: 1 puts the windows end to end, 2 starts one every half "
        "horizon (overlapping windows: more of them in the same history, the horizon unchanged)",
        ge=1,
    )
    gate_margin: float = Field(
        0.10,
        ge=0,
        lt=1,
        description="a run whose best list is more than this share below the published list's NDCG is rejected",
    )
    min_holdout_buyers: int = Field(
        50,
        ge=1,
        description="fewer buyers with history in the newest window cannot "
        "judge a list: the run publishes cold-start lists only",
    )
    max_training_rows: int = Field(
        200_000,
        ge=1,
        description="candidate rows per labelled window the ranker learns from (negatives are sampled down to it)",
    )
    diagnostics_users: int = Field(
        4_000,
        ge=1,
        description="labelled users (a seeded hash of user_id picks them) that the hyper-parameter search, "
        "validation curves, permutation importance and the logistic-regression reference run on, so their "
        "cost stops growing with the export",
    )
    holdout_users: int = Field(
        20_000,
        ge=1,
        description="labelled users of the newest window (the same seeded hash picks them) that the judged "
        "model, the baselines and the gate are judged on: a standard error of the NDCG near 0.002, "
        "and the frames stay the same size however many users the export has",
    )
    diagnostics_every_days: int = Field(
        7,
        ge=0,
        description="days of data (the export's serving cutoff) between two runs of the hyper-parameter search, "
        "validation curves, permutation importance and logistic reference; the runs between reuse the "
        "parameters the last search chose (0: every run)",
    )
    model_kind: Literal["auto", "hgb", "logreg"] = Field(
        "auto",
        description="the ranker: gradient-boosted trees (hgb), logistic regression (logreg), or auto: the "
        "family with the best mean NDCG on the cross-validation folds before the holdout, each family's "
        "grid searched on the same folds (the holdout never sways the choice)",
    )
    seed: int = Field(7, description="seed of the demo export and of the training sample")
    demo_rows: int = Field(1_000_000, ge=1, description="rows of the demo export generated when no input is given")

    # what dbt builds (defaults in dbt_project.yml)
    min_pair_users: int = _dbt_var(
        "min_pair_users",
        "a bought-together pair is published only when this many "
        "users share it; at least 2, or one user's basket shows",
        ge=2,
    )
    max_pair_items_per_user: int = _dbt_var(
        "max_pair_items_per_user", "each user's most recent bought or carted items that pairs are counted over", ge=1
    )
    max_pair_items_per_user_views: int = _dbt_var("max_pair_items_per_user_views", "the same for viewed items", ge=1)
    popular_items_per_scope: int = _dbt_var(
        "popular_items_per_scope", "items kept per popularity scope (overall, platform, category)", ge=1
    )
    candidates_history: int = _dbt_var("candidates_history", "candidates per user: items of their own events", ge=0)
    candidates_repurchase: int = _dbt_var("candidates_repurchase", "candidates per user: items they bought", ge=0)
    candidates_anchor_items: int = _dbt_var(
        "candidates_anchor_items", "the user's items whose bought-together items are candidates", ge=0
    )
    candidates_co_purchase: int = _dbt_var(
        "candidates_co_purchase", "candidates per user: bought together with their items", ge=0
    )
    candidates_neighbours_per_item: int = _dbt_var(
        "candidates_neighbours_per_item", "bought-together items taken per anchor item", ge=0
    )
    candidates_category: int = _dbt_var("candidates_category", "candidates per user: popular in their categories", ge=0)
    candidates_trending: int = _dbt_var("candidates_trending", "candidates per user: trending on their platform", ge=0)
    candidates_popular: int = _dbt_var("candidates_popular", "candidates per user: popular on their platform", ge=0)
    max_price100: int = _dbt_var(
        "max_price100", "a price above this (in kopecks) quarantines the row as absurd_value", ge=1
    )
    max_qty: int = _dbt_var("max_qty", "a quantity above this quarantines the row as absurd_value", ge=1)
    outlier_gap_days: int = _dbt_var(
        "outlier_gap_days",
        "rows beyond a silence longer than this at either end of the export are quarantined as outlier_date",
        ge=1,
    )

    # the machine, privacy, the commands
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="where dbt builds the warehouse: duckdb (the build database), or spark (dbt-spark, the "
        "profile's target spark; the pipeline reads its tables through views, docs/compute.md)",
    )
    duckdb_memory: str | None = Field(
        None,
        description="memory limit of dbt's DuckDB, e.g. 4GB or 50%; the pipeline's reads of the build database "
        "take a quarter of it; unset: 40% of the machine's memory (the dbt profile's default)",
    )
    serving_file_mode: str = Field(
        "0600",
        description="permission bits of the serving file, octal: 0600 (owner "
        "only), 0640 (the marketplace's group may read), 0644",
    )
    pseudonymize: bool | None = Field(
        None,
        description="1: publish pseudonymous user ids (the key is made in "
        "<home>/secrets); 0: raw ids, refused while the home has "
        "a key; unset: the home's mode (docs/privacy.md)",
    )
    prefect_startup_timeout: float = Field(
        120.0, gt=0, description="seconds to wait for the temporary Prefect server when PREFECT_API_URL is not set"
    )
    log_level: LogLevel | None = Field(
        None, description="level of the logs on stderr (Python, Prefect, the API's uvicorn); unset: each library's own"
    )
    cron: str = Field("0 3 * * *", description="schedule of `recsys serve`, UTC")
    api_host: str = Field(
        "127.0.0.1",
        description="address `recsys api` listens on (no authentication: keep it on loopback or behind the backend)",
    )
    api_port: int = Field(8000, ge=1, le=65535, description="port `recsys api` listens on")
    exposure_log: bool = Field(
        True,
        description="`recsys api` logs which items each answer showed to whom, in <home>/exposures (Parquet, "
        "one directory per day), for the outcome of the lists to be measured; 0: no log",
    )
    control_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of users `recsys api` answers with the cold-start list of their platform instead of "
        "their own (the control group, logged as list kind `control`); 0: none (ml/serving/experiment.py)",
    )
    control_salt: str = Field(
        "recsys-control",
        min_length=1,
        description="what the control group's hash of the user id is salted with; a new salt draws a new, "
        "independent split (a new experiment)",
    )
    outcome_days: int = _dbt_var(
        "outcome_days",
        "an exposed user's view, cart or purchase of an item shown to them counts within this many days of "
        "their first exposure",
        ge=1,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(describe(error, given=values.keys())) from None

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @field_validator("as_of")
    @classmethod
    def _normalised_as_of(cls, as_of: str | None) -> str | None:
        """``YYYY-MM-DD[ HH:MM[:SS]]`` as ``YYYY-MM-DD HH:MM:SS``, so dbt gets one form."""
        if as_of is None:
            return None
        try:
            parsed = datetime.fromisoformat(as_of.strip())
        except ValueError:
            raise ValueError("must be a date or a time like 2023-08-10 or 2023-08-10 06:00") from None
        if parsed.tzinfo is not None:
            raise ValueError("is read as UTC and takes no time zone")
        return parsed.strftime("%Y-%m-%d %H:%M:%S")

    @field_validator("duckdb_memory")
    @classmethod
    def _memory_size(cls, size: str | None) -> str | None:
        if size is not None and not MEMORY_SIZE.fullmatch(size.strip()):
            raise ValueError("must be a size like 4GB or 512MiB, or a share of the machine's memory like 50%")
        return size

    @field_validator("serving_file_mode")
    @classmethod
    def _safe_file_mode(cls, text: str) -> str:
        """Never executable, never writable by group or others: a writer could change what the
        marketplace serves."""
        try:
            mode = int(text, 8)
        except ValueError:
            raise ValueError("must be octal like 0600 or 0640") from None
        if mode & ~0o644 or mode & 0o600 != 0o600:
            raise ValueError(
                "must give the owner read and write and nobody else write or execute, such as 0600, 0640 or 0644"
            )
        return f"{mode:04o}"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, level: Any) -> Any:
        return level.lower() if isinstance(level, str) else level

    @property
    def settings(self) -> Settings:
        """The paths of this config's home."""
        return Settings(home=self.home)

    @property
    def file_mode(self) -> int:
        return int(self.serving_file_mode, 8)

    def updated(self, **changes: Any) -> Config:
        """A copy with ``changes``, checked like any config (``model_copy`` would not check)."""
        return type(self)(**{**self.model_dump(), **changes})

    def dbt_overrides(self) -> dict[str, Any]:
        """The dbt vars this config sets: every field named like a var that has a value, except
        the input and the cutoff, which ``ml.warehouse.dbt.dbt_vars`` takes as arguments."""
        return {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name in DBT_VARS and name not in DBT_ARGUMENTS and getattr(self, name) is not None
        }

    @contextmanager
    def environment(self) -> Iterator[None]:
        """The block runs with ``RECSYS_DUCKDB_MEMORY`` set when this config sets it: dbt's
        profile reads the limit from the environment, and a config given as a flow parameter
        (a deployment's) need not be the environment's."""
        name = env_name("duckdb_memory")
        before = os.environ.get(name)
        if self.duckdb_memory is not None:
            os.environ[name] = self.duckdb_memory
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


DEFAULT_DUCKDB_MEMORY = "40%"  # profiles.yml's default too


def duckdb_memory() -> str:
    """dbt's DuckDB memory limit: ``RECSYS_DUCKDB_MEMORY`` (set by ``Config.environment`` when the
    run's config sets it), else the default dbt's profile falls back to as well."""
    return os.environ.get(env_name("duckdb_memory")) or DEFAULT_DUCKDB_MEMORY


# The pipeline's process gets this share of dbt's limit (measured in docs/compute.md, 49.7 M rows).
PIPELINE_DUCKDB_SHARE = 0.25


def pipeline_duckdb_memory() -> str:
    """DuckDB's limit in the pipeline's own process: a quarter of dbt's (``duckdb_memory``).

    dbt's DuckDB builds the tables and needs its whole limit; the pipeline's only reads frames
    out of them and writes the lists, and what it holds besides (pandas frames, models) lies
    outside DuckDB's limit. With dbt's whole limit DuckDB kept every block training's reads had
    scanned, and the pipeline's process outgrew dbt's: 13.1 GB against 10.35 GB at 49.7 M rows
    under a 10 GB cap. The two never run at once, so the run's peak is the larger of the two.
    """
    number, unit = MEMORY_SIZE.fullmatch(duckdb_memory().strip()).groups()
    return f"{float(number) * PIPELINE_DUCKDB_SHARE:g}{unit}"


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


# Where a flag is not the field's name with dashes.
FLAGS = {"input_path": "--input", "api_host": "--host", "api_port": "--port", "outcome_days": "--days"}


def flag_name(field: str) -> str:
    return FLAGS.get(field, "--" + field.replace("_", "-"))


def describe(error: ValidationError, given: Any = ()) -> str:
    """One line for all the problems: each names the flag (a value passed in) or the variable
    (a value from the environment) it came from, and the value."""
    problems = []
    for detail in error.errors():
        field = str(detail["loc"][0]) if detail["loc"] else ""
        where = flag_name(field) if field in given else env_name(field)
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message[:1].lower()}{message[1:]} (got {str(detail['input'])[:40]!r})")
    return "; ".join(problems)


def default(field: str) -> Any:
    """A field's default, for the few options that take it without being settings
    (``recsys generate --seed``: the demo export's seed)."""
    return Config.model_fields[field].default


@dataclass(frozen=True)
class Settings:
    """Paths of one product home. Directories are created on first use, not here."""

    home: Path

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

    @property
    def exposures_dir(self) -> Path:
        """The API's exposure log: ``date=YYYY-MM-DD/part-NNNNN.parquet`` (``ml.serving.exposures``)."""
        return self.home / "exposures"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.serving_dir, self.models_dir, self.reports_dir):
            path.mkdir(parents=True, exist_ok=True)
