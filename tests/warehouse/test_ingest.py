"""Reading an export: one bad line is one quarantined line, dates are judged against the
export's own body, no value is silently lost, and a file that is not a text export is refused
with one line."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from flows.cli import main
from ml.config import Settings
from ml.data.export import ExportError, check_export, read_header
from ml.vocabulary import BASE_COLUMNS, CATEGORY_COLUMNS
from ml.warehouse.dbt import dbt_vars, run_dbt
from tests.exports import activity, event, write_export, write_raw_lines
from tests.warehouse.test_warehouse import query

HEADER = "platform,utc_event_time,utc_event_date,user_id,event_type,ecom.price100,ecom.qty,ecom.nm"


def ingest(home: Path, input_path: Path) -> Settings:
    """The pipeline's first step: the models tagged ingest, with their tests."""
    settings = Settings(home=home)
    run_dbt(settings, "build", dbt_vars(input_path), select="tag:ingest", indirect_selection="buildable")
    return settings


def reasons(settings: Settings) -> dict[str, int]:
    return dict(query(settings, "select reject_reason, count(*) from rejected_rows group by 1"))


def staged(settings: Settings) -> int:
    return query(settings, "select count(*) from stg_ab_test__events")[0][0]


def dense_rows(first_day: str = "2023-07-31", days: int = 14, per_day: int = 70) -> list[list[str]]:
    """A busy two weeks: views and purchases every hour of every day."""
    start = datetime.fromisoformat(first_day)
    rows = []
    for day in range(days):
        for n in range(per_day):
            at = start + timedelta(days=day, hours=n % 24, minutes=n % 60)
            kind = "ec.purchase" if n % 5 == 0 else "ec.view_item"
            rows.append(event(1000 + n, kind, [n % 30], f"{at:%Y-%m-%d %H:%M:%S}"))
    return rows


def plain_lines(n: int, first_user: int = 1) -> list[str]:
    """n good single-item view lines: no quote anywhere in them."""
    return [
        f"Android,2023-08-01 10:{i % 60:02d}:00+00:00,2023-08-01,{first_user + i},ec.view_item,[15600],[1],[501]"
        for i in range(n)
    ]


@pytest.mark.slow  # runs dbt or the whole flow
def test_rows_dated_far_from_the_export_are_outliers_and_do_not_move_the_cutoff(tmp_path):
    today = date.today()
    future = [event(7, "ec.purchase", [1], f"{today:%Y-%m-%d} 09:0{i}:00") for i in range(6)]
    past = [activity(8, "pageview", "2019-05-01")]
    settings = ingest(tmp_path, write_export(tmp_path / "e.csv", dense_rows() + future + past))

    assert reasons(settings) == {"outlier_date": 7}
    assert query(settings, "select serve_at from int_export_window") == [(datetime(2023, 8, 14),)]
    span = query(settings, "select min(event_date), max(event_date) from int_export_days where in_span")
    assert span == [(date(2023, 7, 31), date(2023, 8, 13))]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_sparse_year_long_log_keeps_every_row(tmp_path):
    # 400 purchases over a year: 4 a day on days 2 to 6 days apart, and at each end 4 single
    # purchases a week apart. Those 8 are the 1 % trimmed off each end of the body: only the
    # gap rule keeps them.
    days = [date(2022, 1, 3) + timedelta(days=7 * i) for i in range(4)]
    for n in range(98):
        days += [days[-1] + timedelta(days=2 + n % 5)] * 4
    days += [days[-1] + timedelta(days=7 * i) for i in range(1, 5)]
    rows = [
        event(100 + n % 40, "ec.purchase", [n % 17], f"{day:%Y-%m-%d} {8 + n % 10}:00:00") for n, day in enumerate(days)
    ]
    settings = ingest(tmp_path, write_export(tmp_path / "sparse.csv", rows))

    assert len(rows) == 400 and (days[-1] - days[0]).days > 365
    assert reasons(settings) == {}
    assert query(settings, "select count(*) from int_line_items") == [(400,)]
    assert query(settings, "select count(*) from int_export_days where not in_span") == [(0,)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_value_that_cannot_be_represented_is_quarantined_not_nulled(tmp_path):
    lines = [
        HEADER,
        *plain_lines(3),
        "Android,2023-08-01 10:00:00+00:00,2023-08-01,21,ec.view_item,[12345678901234567890123456],[1],[505]",
        'Android,2023-08-01 10:00:00+00:00,2023-08-01,22,ec.purchase,"[100, 200]","[1, 99999999999999999999]","[505, 506]"',
        "Site,2023-08-01 25:61:00+00:00,2023-08-01,23,pageview,[],[],[]",
        f"Android,2023-08-01 10:00:00+00:00,2023-08-01,{'9' * 40},ec.view_item,[100],[1],[505]",
        f"Android,2023-08-01 10:00:00+00:00,2023-08-01,24,ec.view_item,[100],[1],[{'9' * 40}]",
    ]
    settings = ingest(tmp_path, write_raw_lines(tmp_path / "big_values.csv", lines))

    assert reasons(settings) == {"unrepresentable_value": 2, "bad_timestamp": 1, "bad_user_id": 1, "malformed_list": 1}
    assert query(settings, "select raw_price100 from rejected_rows where raw_user_id = '21'") == [
        ("[12345678901234567890123456]",)
    ]
    assert query(settings, "select count(*) from int_line_items where price100 is null or quantity is null") == [(0,)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_stray_quote_quarantines_only_its_line(tmp_path):
    # After the stray quote come 300 lines without a quote (a CSV reader would swallow them
    # all into one quoted field), then a purchase with quoted lists.
    stray = '"' + plain_lines(1, first_user=99)[0]
    purchase = 'iOS,2023-08-01 11:00:00+00:00,2023-08-01,98,ec.purchase,"[100, 200]","[1, 1]","[501, 502]"'
    lines = [HEADER, *plain_lines(50), stray, *plain_lines(300, first_user=1000), purchase]
    settings = ingest(tmp_path, write_raw_lines(tmp_path / "stray_quote.csv", lines))

    assert reasons(settings) == {"malformed_row": 1}
    assert query(settings, "select event_row_id, raw_line from rejected_rows") == [(51, stray)]
    assert staged(settings) == len(lines) - 1
    assert query(settings, "select count(*) from int_line_items where user_id = '98'") == [(2,)]


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_line_over_the_line_limit_quarantines_only_that_line(tmp_path):
    huge = plain_lines(1, first_user=77)[0].replace("[501]", "[" + "1" * 3_000_000 + "]")
    lines = [HEADER, *plain_lines(20), huge, *plain_lines(20, first_user=100)]
    settings = ingest(tmp_path, write_raw_lines(tmp_path / "long_line.csv", lines))

    assert reasons(settings) == {"malformed_row": 1}
    assert staged(settings) == 40
    line_number, raw_line = query(settings, "select line_number, raw_line from rejected_rows")[0]
    assert line_number == 22 and huge.startswith(raw_line) and len(raw_line) >= 1_000


@pytest.mark.slow  # runs dbt or the whole flow
def test_a_gzip_export_is_read_like_the_plain_one(tmp_path):
    plain = write_export(tmp_path / "e.csv", dense_rows(days=3, per_day=10), with_categories=False)
    packed = tmp_path / "e.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert check_export(packed) == packed
    settings = ingest(tmp_path / "home", packed)

    assert staged(settings) == 30 and reasons(settings) == {}
    assert query(settings, "select count(*) from int_line_items") == [(30,)]

    misnamed = tmp_path / "gzipped.csv"
    misnamed.write_bytes(packed.read_bytes())
    with pytest.raises(ExportError, match="gzip-compressed: name it .csv.gz"):
        check_export(misnamed)


def test_without_the_header_var_staging_reads_the_header_line(tmp_path):
    """A plain `dbt build` passes no export_columns: staging reads the file's header line itself
    and agrees with ml.data.export.read_header: any order, a quoted name, spaces around a name, a
    byte order mark, CRLF line ends, gzip."""
    columns = [
        "user_id",
        "ecom.nm",
        "platform",
        "utc_event_time",
        "utc_event_date",
        "event_type",
        "ecom.price100",
        "ecom.qty",
        "sub_category",
        "main_category",
    ]
    rows = [
        event(11, "ec.purchase", [501, 502], "2023-08-01 10:00:00") + ["[7, 8]", "[70, 80]"],
        event(12, "ec.view_item", [503], "2023-08-01 11:00:00", platform="iOS") + ["[9]", "[90]"],
    ]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    for row in rows:
        by_name = dict(zip(BASE_COLUMNS + CATEGORY_COLUMNS, row))
        writer.writerow([by_name[name] for name in columns])
    header = ",".join(
        f" {name} " if name == "platform" else f'"{name}"' if name == "ecom.nm" else name for name in columns
    )
    export = tmp_path / "shuffled.csv.gz"
    export.write_bytes(gzip.compress(f"\ufeff{header}\r\n{text.getvalue()}".encode()))
    assert read_header(export) == columns

    settings = Settings(home=tmp_path / "home")
    variables = dbt_vars(export)
    del variables["export_columns"]
    run_dbt(settings, "build", variables, select="tag:ingest", indirect_selection="buildable")

    assert reasons(settings) == {}
    assert query(
        settings,
        """select user_id, platform, event_type, item_ids, category_ids, sub_category_ids
                              from stg_ab_test__events order by event_row_id""",
    ) == [
        ("11", "Android", "purchase", ["501", "502"], ["7", "8"], ["70", "80"]),
        ("12", "iOS", "view_item", ["503"], ["9"], ["90"]),
    ]


def test_a_binary_file_is_refused_with_one_line(tmp_path, capsys):
    binary = tmp_path / "ab_test.csv"
    binary.write_bytes(b"\x00\x01\x1b[31mPK\x03\x04platform,\xff\xfe\x07user_id\n\x00\x9c\x88" * 50)
    with pytest.raises(ExportError) as refused:
        check_export(binary)
    message = str(refused.value)
    assert "binary" in message and message.isprintable() and message.isascii()

    code = main(["--home", str(tmp_path / "home"), "run", "--input", str(binary)])
    output = capsys.readouterr()
    assert code == 2 and output.out == ""
    assert output.err.count("\n") == 1 and output.err.startswith("error: ") and output.err.isascii()
