"""Fixtures shared by the serving tests."""

from __future__ import annotations

import pytest

from ml.serving import publish
from tests.serving.test_serving import AS_OF, make_build_db


@pytest.fixture(scope="module")
def shared_serving_db(tmp_path_factory):
    """One published fixture for the read-only query tests (publishing costs ~0.3 s)."""
    tmp = tmp_path_factory.mktemp("shared")
    serving_db = tmp / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp / "build.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    return serving_db
