"""The preview shows a real customer's lifecycle predictions (after `retain predict`), not the fixture's."""

from __future__ import annotations

from pathlib import Path

from campaigns.lifecycle import refresh_predictions
from tests.test_web import AS_OF, make_shop, preview_client


def test_preview_shows_the_customers_predictions(tmp_path: Path) -> None:
    store, settings = make_shop(tmp_path)
    try:
        result = refresh_predictions(store, settings, AS_OF)
        ann = store.get_customer("ann@example.test")
        assert ann is not None
        stored = store.predictions_for([ann.id])[ann.id]
        with preview_client(store, settings) as client:
            real = client.get(f"/campaigns/weekly-picks?customer={ann.id}").text
            fixture = client.get("/campaigns/weekly-picks").text
    finally:
        store.close()
    assert len(result.summary) == 4
    assert 'id="predictions"' in real and "chance still active" in real
    assert f"{stored.p_alive:.0%}" in real
    assert f"{stored.expected_orders_90d:.2f}" in real
    assert 'id="predictions"' not in fixture
