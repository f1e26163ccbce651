"""Reading the ranker's frames: whole users, and a negative sample drawn in the database."""

import weakref
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.ranker import dataset
from ml.ranker.features import CATEGORICAL, FEATURES, LABEL, NUMERIC
from ml.warehouse.tables import Cutoff

CUTOFF = Cutoff(1, datetime(2024, 1, 8), datetime(2024, 1, 15))


@pytest.fixture(scope="module")
def con():
    """A ``candidates`` table of 400 users × 50 candidates at one cutoff, 2 positives per user."""
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i:03d}" for i in range(400)], 50)
    frame = pd.DataFrame(
        {
            "cutoff_at": CUTOFF.at,
            "user_id": users,
            "item_id": [f"i{j}" for j in range(50)] * 400,
            "anchor_item_id": None,
            LABEL: np.tile([1, 1] + [0] * 48, 400),
            **{name: "x" for name in CATEGORICAL},
            **{name: rng.random(len(users)) for name in NUMERIC},
        }
    )
    connection = duckdb.connect()
    connection.register("frame", frame)
    connection.execute("create table candidates as select * from frame")
    yield connection
    connection.close()


def test_training_candidates_keep_every_positive_and_sample_negatives_to_the_bound(con):
    frame = dataset.training_candidates(con, CUTOFF, max_rows=5_000, seed=7)

    assert frame[LABEL].sum() == 800  # every positive
    assert 4_500 < len(frame) < 5_500  # a hash sample: about the bound
    assert frame.equals(dataset.training_candidates(con, CUTOFF, max_rows=5_000, seed=7))  # the same rows every run
    other = dataset.training_candidates(con, CUTOFF, max_rows=5_000, seed=8)
    assert set(zip(other["user_id"], other["item_id"])) != set(zip(frame["user_id"], frame["item_id"]))
    assert len(dataset.training_candidates(con, CUTOFF, max_rows=20_000, seed=7)) == 20_000  # under the bound: all
    assert dataset.label_counts(con, CUTOFF) == (20_000, 800)


def test_candidates_are_every_row_of_the_given_users_only(con):
    users = pd.Index(["u001", "u017", "u399"])
    frame = dataset.candidates(con, CUTOFF, users)

    assert len(frame) == 150 and set(frame["user_id"]) == set(users)
    assert frame[NUMERIC].dtypes.eq(float).all() and frame["platform"].dtype == object
    assert len(dataset.labelled_users(con, CUTOFF)) == 400


class _Reader:
    """A connection that notes, at each fetch, whether the part read before it is still alive."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.last, self.alive_at_fetch = con, None, []

    def execute(self, *args):
        return self.con.execute(*args)

    def fetch_df_chunk(self, vectors: int) -> pd.DataFrame:
        self.alive_at_fetch.append(self.last is not None and self.last() is not None)
        return self.con.fetch_df_chunk(vectors)


def test_serving_parts_hold_every_candidate_once_and_each_is_freed_before_the_next_is_read(con):
    reader, row_ids = _Reader(con), []
    for part in dataset.serving_features(reader, CUTOFF, rows_per_part=5_000):
        assert list(part.columns) == FEATURES and len(part) <= 5_000
        assert part[NUMERIC].dtypes.eq(float).all() and part["platform"].dtype == object
        row_ids.append(part.index.to_numpy())
        reader.last = weakref.ref(part)
        del part

    assert len(row_ids) >= 4 and not any(reader.alive_at_fetch)  # two parts at once doubled scoring's peak
    expected = con.execute("select rowid from candidates where cutoff_at = ?", [CUTOFF.at]).fetchnumpy()["rowid"]
    assert np.array_equal(np.sort(np.concatenate(row_ids)), np.sort(expected))
    assert dataset.serving_count(con, CUTOFF) == len(expected) == 20_000
