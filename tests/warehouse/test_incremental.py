"""An export sent as one file a day: a nightly build stages only the new or changed files and
ends with the same tables as a cold build of the same files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ml.config import Settings
from ml.data.export import ExportError, check_export_files, export_files, split_by_day
from ml.data.synthetic import GeneratorConfig, generate_export
from tests.warehouse.test_ingest import ingest

# What ingest builds from the files, compared whole between a nightly and a cold build.
TABLES = {
    "stg_ab_test__events": "event_row_id",
    "stg_ab_test__unreadable_lines": "source_file, line_number",
    "int_events__validated": "event_row_id",
    "rejected_rows": "source_file, event_row_id, line_number",
}
NOT_UTF8 = b"Android,2023-08-02 10:00:00+00:00,2023-08-02,5,ec.view_item,[100],[1],[\xff\xfe],[1],[2]\n"


@pytest.fixture(scope="module")
def daily_files(tmp_path_factory) -> list[Path]:
    """Five days of a generated export, one file each, with a stray quote and a line that is
    not UTF-8 in the second day (a quarantined row and an unreadable line)."""
    folder = tmp_path_factory.mktemp("export")
    export = folder / "ab_test.csv"
    generate_export(GeneratorConfig(rows=6_000, seed=5, with_categories=True), export)
    days = split_by_day(export, folder / "days")
    second = days[1]
    with open(second, "ab") as handle:
        handle.write(b'"Android,2023-08-01 10:00:00+00:00,2023-08-01,4,ec.view_item,[100],[1],[505],[1],[2]\n')
        handle.write(NOT_UTF8)
    return days[:5]


def tables(settings: Settings) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(settings.build_db), read_only=True) as con:
        return {name: con.execute(f"select * from {name} order by {keys}").df() for name, keys in TABLES.items()}


def assert_same_tables(actual: Settings, expected: Settings) -> None:
    got, want = tables(actual), tables(expected)
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


def stage(folder: Path, files: list[Path]) -> Path:
    """The folder holding exactly these files (copied with their times, as a day arrives)."""
    folder.mkdir(exist_ok=True)
    for stale in set(folder.iterdir()) - {folder / f.name for f in files}:
        stale.unlink()
    for file in files:
        if not (folder / file.name).exists():
            shutil.copy2(file, folder / file.name)
    return folder


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_nightly_build_stages_only_the_new_day_and_equals_a_cold_build(daily_files, tmp_path):
    folder = tmp_path / "incoming"
    nightly = ingest(tmp_path / "nightly", stage(folder, daily_files[:4]))
    first_rows = len(tables(nightly)["stg_ab_test__events"])

    # The first day changes on disk but keeps its size and time: an unchanged file to the build,
    # so it is not read again (only a new or re-sent file is parsed).
    day_one = folder / daily_files[0].name
    stat = day_one.stat()
    day_one.write_bytes(day_one.read_bytes().replace(b"Android", b"Andr0id"))
    os.utime(day_one, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    ingest(tmp_path / "nightly", stage(folder, daily_files[:5]))
    assert not tables(nightly)["stg_ab_test__events"]["raw_platform"].eq("Andr0id").any()
    shutil.copy2(daily_files[0], day_one)

    cold = ingest(tmp_path / "cold", folder)
    staged = tables(nightly)["stg_ab_test__events"]
    assert len(staged) > first_rows
    assert staged.groupby("source_file")["event_row_id"].min().floordiv(10**10).tolist() == [0, 1, 2, 3, 4]
    assert_same_tables(nightly, cold)
    malformed = tables(cold)["rejected_rows"].query("reject_reason == 'malformed_row'")
    assert malformed["source_file"].tolist() == [str(folder / daily_files[1].name)] * 2


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_resent_day_replaces_its_rows_and_a_file_no_longer_given_leaves(daily_files, tmp_path):
    folder = stage(tmp_path / "incoming", daily_files[:3])
    nightly = ingest(tmp_path / "nightly", folder)

    # Day two is sent again without its two broken lines; day three is withdrawn.
    resent = folder / daily_files[1].name
    resent.write_bytes(b"".join(resent.read_bytes().splitlines(keepends=True)[:-2]))
    (folder / daily_files[2].name).unlink()
    ingest(tmp_path / "nightly", folder)

    assert_same_tables(nightly, ingest(tmp_path / "cold", folder))
    staged = tables(nightly)["stg_ab_test__events"]
    assert sorted(staged["source_file"].unique()) == [str(folder / f.name) for f in daily_files[:2]]
    assert tables(nightly)["rejected_rows"].empty
    # The re-sent day keeps its number: its rows are where they were.
    assert staged.loc[staged["source_file"] == str(resent), "event_row_id"].min() == 10**10 + 1


def test_an_export_is_a_file_a_directory_or_a_glob_of_files_with_one_header(tmp_path):
    days = tmp_path / "days"
    days.mkdir()
    for day in ("2023-08-02", "2023-08-01"):
        (days / f"ab_test-{day}.csv").write_text(
            "platform,utc_event_time,utc_event_date,user_id,event_type,"
            "ecom.price100,ecom.qty,ecom.nm\nSite,,2023-08-01,1,pageview,[],[],[]\n"
        )
    (days / "notes.txt").write_text("not part of the export")
    expected = [days / "ab_test-2023-08-01.csv", days / "ab_test-2023-08-02.csv"]

    assert export_files(days) == expected
    assert export_files(days / "ab_test-*.csv") == expected
    assert export_files(expected[0]) == [expected[0]]
    assert check_export_files(days) == expected
    with pytest.raises(ExportError, match="no file matches"):
        export_files(days / "other-*.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="holds no"):
        export_files(tmp_path / "empty")

    (days / "ab_test-2023-08-03.csv").write_text(
        "user_id,platform,utc_event_time,utc_event_date,event_type,"
        "ecom.price100,ecom.qty,ecom.nm\n1,Site,,2023-08-01,pageview,[],[],[]\n"
    )
    with pytest.raises(ExportError, match="another header"):
        check_export_files(days)


@pytest.mark.slow  # runs dbt or the whole flow
def test_new_staging_code_stages_every_file_again(daily_files, tmp_path, monkeypatch):
    """Rows parsed by older staging code must not stay: a run whose staging code (or header)
    differs from the build's parses every file again, changed on disk or not."""
    from ml.config import Config
    from ml.pipeline import steps

    folder = stage(tmp_path / "incoming", daily_files[:2])
    config = Config(home=tmp_path / "home", input_path=folder)
    settings = config.settings
    steps.ingest(settings, config, folder, "v1")
    day_one = folder / daily_files[0].name
    stat = day_one.stat()
    day_one.write_bytes(day_one.read_bytes().replace(b"Android", b"Andr0id"))
    os.utime(day_one, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    steps.ingest(settings, config, folder, "v2")
    assert not tables(settings)["stg_ab_test__events"]["raw_platform"].eq("Andr0id").any()

    lines: list[str] = []
    monkeypatch.setattr(steps, "staging_code", lambda header: "newer staging code")
    steps.ingest(settings, config, folder, "v3", lines.append)
    assert tables(settings)["stg_ab_test__events"]["raw_platform"].eq("Andr0id").any()
    assert any(line.startswith("staging every file again") for line in lines)
