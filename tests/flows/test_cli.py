"""The `recsys` command line: global options anywhere, defaults in --help, one-line errors."""

from __future__ import annotations

import pytest

from flows.cli import build_parser, main
from ml.config import Config
from ml.serving import publish
from tests.serving.test_serving import AS_OF, make_build_db


@pytest.fixture()
def home(tmp_path):
    """A home with a published serving file."""
    home = tmp_path / "home"
    publish(
        make_build_db(tmp_path / "build.duckdb"),
        home / "serving" / "recommendations.duckdb",
        model_version="v1",
        as_of=AS_OF,
    )
    return home


def test_sql_errors_are_one_line_and_exit_2(home, capsys):
    assert main(["--home", str(home), "query", "select nope from recommendations"]) == 2
    assert main(["query", "selec 1", "--home", str(home)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert "nope" in errors[0] and "Traceback" not in "".join(errors)
    assert main(["query", "select count(*) as n from recommendations", "--home", str(home)]) == 0


@pytest.mark.parametrize(
    "command", [["info"], ["query", "select 1"], ["import", "ta-feng", "--input", "x", "--out", "y"]]
)
def test_global_options_go_before_or_after_the_subcommand(command, tmp_path):
    before = build_parser().parse_args(["--home", str(tmp_path), "--log-level", "info", *command])
    after = build_parser().parse_args([*command, "--home", str(tmp_path), "--log-level", "info"])
    assert vars(before) == vars(after)


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 0.1; env RECSYS_GATE_MARGIN" in text and "default: 10; env RECSYS_K" in text


def test_an_invalid_setting_is_one_line_naming_its_flag_or_variable(tmp_path, monkeypatch, capsys):
    assert main(["run", "--home", str(tmp_path / "h"), "--gate-margin", "2"]) == 2
    monkeypatch.setenv("RECSYS_HORIZON_DAYS", "0")
    assert main(["run", "--home", str(tmp_path / "h")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in errors] == ["--gate-margin", "RECSYS_HORIZON_DAYS"]
    assert not (tmp_path / "h").exists()


def test_the_duckdb_memory_limit_is_a_size_or_a_share_of_the_machine():
    assert Config(duckdb_memory="50%").duckdb_memory == "50%"
    assert Config(duckdb_memory="4GB").duckdb_memory == "4GB"
    with pytest.raises(ValueError, match="50%"):
        Config(duckdb_memory="50")
