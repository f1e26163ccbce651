"""One SQL style: SQL embedded in Python is lowercase like the dbt models (which sqlfluff checks)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Statement words that only SQL puts in capitals; two of them in one string literal is SQL.
UPPERCASE_SQL = re.compile(
    r"(?<![\w.$'])(SELECT|FROM|WHERE|JOIN|GROUP BY|ORDER BY|INSERT INTO|CREATE|ATTACH|QUALIFY|UNION ALL)(?!\w)"
)


def uppercase_sql(source: str) -> list[str]:
    """The string literals of ``source`` that hold SQL written in capitals."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and len(set(UPPERCASE_SQL.findall(token.string))) >= 2:
            found.append(f"line {token.start[0]}: {token.string[:60]}")
    return found


def test_embedded_sql_is_lowercase():
    offenders = [
        f"{path.relative_to(ROOT)} {hit}"
        for folder in ("ml", "flows", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "test_style.py"
        for hit in uppercase_sql(path.read_text())
    ]
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_capitals_and_only_in_sql():
    assert uppercase_sql('q = "SELECT a FROM t WHERE b"\n')
    assert not uppercase_sql('q = "select a from t where b"\n')
    assert not uppercase_sql('message = "FROM here on"\n')
