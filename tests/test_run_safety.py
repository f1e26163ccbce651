"""A run is alone in its home, publishes only what its own build made, leaves no process behind
when killed, and cleans what killed runs left (issue 10: items 1, 8 and 9)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ml import pipeline
from ml.config import RunConfig, Settings
from ml.serving import PublishError, publish
from tests.exports import event, write_export

pytestmark = pytest.mark.slow


def thin_export(path: Path, first_item: int = 101) -> Path:
    """Two days of 30 buyers: no ranker can be trained, so a run publishes its cold-start lists
    (about 20 s on a running Prefect server)."""
    rows = []
    for user in range(1, 31):
        platform = ["Site", "Android", "iOS"][user % 3]
        basket = [first_item, first_item + 1] if user % 2 else [first_item, first_item + 2 + user % 4]
        rows.append(event(user, "ec.view_item", basket, "2023-08-01 10:00:00", platform=platform))
        rows.append(event(user, "ec.purchase", basket, "2023-08-01 10:05:00", platform=platform))
        rows.append(event(user, "ec.purchase", [first_item], "2023-08-02 09:00:00", platform=platform))
    return write_export(path, rows)


# --------------------------------------------------------------------------------------------
# (1) one run per home
# --------------------------------------------------------------------------------------------
def test_publish_refuses_a_build_another_run_rebuilt_meanwhile(tmp_path):
    """The issue's probe: run A builds its warehouse from X; run B rebuilds it from Y; A builds
    its serving tables and publishes. The stamps show the mix; the old file stays."""
    settings = Settings(home=tmp_path / "home")
    x, y = thin_export(tmp_path / "x.csv"), thin_export(tmp_path / "y.csv", first_item=501)
    config = RunConfig(horizon_days=1)
    pipeline.ingest(settings, config, x, "run-a")
    pipeline.build_features(settings, config, x, "run-a")
    pipeline.ingest(settings, config, y, "run-b")
    pipeline.build_features(settings, config, y, "run-b")
    from ml.scoring import no_personal_lists

    no_personal_lists(settings.build_db)
    pipeline.build_serving_tables(settings, config, x, "run-a", datetime(2023, 8, 3))
    settings.serving_db.parent.mkdir(parents=True)
    settings.serving_db.write_bytes(b"the list published before")

    with pytest.raises(PublishError, match="mixed build: publishing run-a, but pub_fallback_recommendations "
                                           "comes from build.s. run-b; pub_similar_items comes from"):
        publish(settings.build_db, settings.serving_db, model_version="run-a", as_of=datetime(2023, 8, 3),
                require_recommendations=False)
    assert settings.serving_db.read_bytes() == b"the list published before"
    result = publish(settings.build_db, settings.serving_db, model_version="run-b", as_of=datetime(2023, 8, 3),
                     require_recommendations=False)  # B's own build is whole: it publishes
    assert result.row_counts["items"] > 0
