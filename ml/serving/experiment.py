"""The control group: which users get the cold-start list instead of their own (issue 13).

A user is in control when the first 8 hex digits of ``md5(salt || user_id)``, read as a
fraction of 16**8, fall below ``share``. Why md5 and a salt: the split must be the same in
every process, after every restart and in SQL (DuckDB's ``hash()`` changes between versions,
Python's ``hash()`` between processes; ``md5`` is the same everywhere), and the salt
(setting ``control_salt``) draws a new, independent split when it changes, so a new experiment
does not reuse the last one's control users. Growing ``share`` keeps every control user in
control (the threshold only rises). ``user_id`` is the raw id, as asked for and as logged.

The same assignment in SQL, for readers that answer from the serving file themselves
(:data:`CONTROL_SQL`; ``tests/serving/test_experiment.py`` checks the two agree).
"""

from __future__ import annotations

import hashlib

DIGITS = 8
BUCKETS = 16**DIGITS
# $salt, $user_id and $share are bound parameters.
CONTROL_SQL = f"cast(('0x' || left(md5($salt || $user_id), {DIGITS})) as ubigint) / {BUCKETS}.0 < $share"


def in_control(user_id: str, share: float, salt: str) -> bool:
    """Whether ``user_id`` is in the control group of size ``share`` (0..1) drawn with ``salt``."""
    if share <= 0:
        return False
    bucket = int(hashlib.md5(f"{salt}{user_id}".encode()).hexdigest()[:DIGITS], 16)
    return bucket / BUCKETS < share
