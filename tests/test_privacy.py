"""What a reader of the serving file can learn about a customer (docs/privacy.md): reasons that
name no item, a price tier instead of the median."""
from __future__ import annotations

import duckdb
import pytest

from ml.serving import PublishError, publish
from tests.test_serving import AS_OF, WARM_SHORT, make_build_db


# ---------------------------------------------------------------------------- reasons
@pytest.mark.parametrize("reason", ["history", "repurchase", "co_purchase:1002", "co_purchase", "category",
                                    "your_history", "ranker"])
def test_a_reason_that_could_name_the_users_items_is_refused(tmp_path, reason):
    """Only personal / trending / popular / baseline:<name> reach the file: a reader must not
    learn from ``reason`` which items a user bought or viewed, nor a co-purchase anchor."""
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "ok.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    before = serving_db.read_bytes()
    bad = make_build_db(tmp_path / "bad.duckdb", extra_sql=(
        f"UPDATE pub_recommendations SET reason = '{reason}' WHERE user_id = '{WARM_SHORT}' AND rank = 2"))
    with pytest.raises(PublishError, match="CHECK"):
        publish(bad, serving_db, model_version="v2", as_of=AS_OF)
    assert serving_db.read_bytes() == before
    baseline = make_build_db(tmp_path / "baseline.duckdb",
                             extra_sql="UPDATE pub_recommendations SET reason = 'baseline:repurchase'")
    publish(baseline, serving_db, model_version="v3", as_of=AS_OF)


# ---------------------------------------------------------------------------- user_profiles
def test_user_profiles_hold_a_price_tier_not_the_median(tmp_path):
    serving_db = tmp_path / "serving" / "recommendations.duckdb"
    publish(make_build_db(tmp_path / "build.duckdb"), serving_db, model_version="v1", as_of=AS_OF)
    with duckdb.connect(str(serving_db), read_only=True) as con:
        columns = con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                              "WHERE table_name = 'user_profiles'").fetchall()
    assert columns == [("user_id", "VARCHAR"), ("platform", "VARCHAR"), ("price_tier", "INTEGER"),
                       ("top_category_id", "VARCHAR")]
