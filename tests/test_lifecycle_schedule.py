"""`retain train` and the nightly `train` job refresh the lifecycle predictions too."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from campaigns.scheduling.jobs import SchedulerContext, train_scheduled
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from tests.scheduling_fixtures import AS_OF, PEOPLE
from tests.test_scheduling_runs import FIRE, setup  # noqa: F401 - the fixture
from tests.test_training import TINY, shop  # noqa: F401 - the fixture


def test_nightly_train_refreshes_predictions(
    setup: tuple[SchedulerContext, Any],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx, store = setup
    with caplog.at_level(logging.WARNING):
        train_scheduled(fire_times=[FIRE])
    assert "lifecycle predictions not refreshed: cannot predict yet: nobody has ordered twice" in caplog.text
    batch = ImportBatch(source="test")
    batch.products["S1"] = ProductIn("S1", "Soap", 5.0, "GBP")
    for key in list(PEOPLE)[:3]:
        batch.customers[key] = CustomerIn(
            key,
            email=f"{key}@example.test",
            first_name=key.title(),
            timezone=PEOPLE[key],
            marketing_consent=True,
        )
        batch.orders[f"o2-{key}"] = OrderIn(
            f"o2-{key}", key, AS_OF - timedelta(days=30), "GBP", [("S1", 1, 5.0)]
        )
    store.write_import(batch)
    out = train_scheduled(fire_times=[FIRE])
    ids = [c.id for b in store.iter_customers() for c in b]
    stored = store.predictions_for(ids)
    assert out.status == "sent" and len(stored) == len(PEOPLE)
    assert store.latest_prediction_fit().customers == len(PEOPLE)


def test_retain_train_refreshes_predictions(shop: Any, tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:  # noqa: F811
    import json

    from campaigns.cli import main

    db_url = f"sqlite:///{tmp_path / 'retain.db'}"  # the file behind the sqlite_store fixture
    monkeypatch.setenv("RETAIN_MODEL_PATH", str(tmp_path / "cli-model"))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["--db", db_url, "train", "--params", json.dumps(TINY), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    ids = [c.id for b in shop.iter_customers() for c in b]
    stored = shop.predictions_for(ids)
    assert payload["lifecycle"]["customers"] == len(stored) > 0
    assert "80% interval" in payload["lifecycle"]["uncertainty"]
