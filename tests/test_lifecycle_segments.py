"""Segment rules on stored lifecycle predictions, on SQLite and PostgreSQL (known rows, known answers)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.errors import ConfigError
from campaigns.segments import load_segments
from campaigns.segments.definitions import RuleError, validate_rules
from campaigns.store import Store
from campaigns.store.predictions import PredictionFitRecord, PredictionRecord
from tests.conftest import ROOT
from tests.test_segments import NOW, members, segment_batch

#: customer -> (p_alive, expected orders 90 d, days to next order, clv); d has no prediction row
PREDICTED = {
    "a": (0.9, 2.5, 5, 300.0),
    "b": (0.1, 0.05, 400, 20.0),
    "c": (0.45, 0.8, 30, 90.0),
    "f": (0.7, 1.2, 10, None),
}


@pytest.fixture
def predicted(store: Store) -> Store:
    store.write_import(segment_batch())
    ids = {c.external_id: c.id for batch in store.iter_customers() for c in batch}
    rows = [
        PredictionRecord(
            customer_id=ids[key],
            as_of=NOW,
            p_alive=p,
            expected_orders_30d=e / 3,
            expected_orders_90d=e,
            next_order_at=NOW + timedelta(days=days),
            clv_12m=clv,
        )
        for key, (p, e, days, clv) in PREDICTED.items()
    ]
    n = store.replace_predictions(rows, PredictionFitRecord(NOW, NOW, len(rows), {"model": "test"}))
    assert n == 4
    return store


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ({"p_alive": {"min": 0.5}}, "af"),
        ({"p_alive": {"max": 0.5}}, "bc"),
        ({"p_alive": {"min": 0.4, "max": 0.8}}, "cf"),
        ({"expected_orders_90d": {"min": 1}}, "af"),
        ({"clv_top_pct": 34}, "ac"),  # 3 customers with a value: 2 slots
        ({"clv_top_pct": 10}, "a"),
        ({"next_order_within_days": 10}, "af"),
        ({"next_order_within_days": 30, "orders": {"min": 2}}, "acf"),
        ({"p_alive": {"min": 0.0}}, "abcf"),  # d has no prediction: never matches a prediction rule
    ],
)
def test_prediction_rules(predicted: Store, rules: dict[str, object], expected: str) -> None:
    assert "".join(members(predicted, rules)) == expected


def test_replacing_predictions_drops_the_old_rows(predicted: Store) -> None:
    first = {c.external_id: c.id for batch in predicted.iter_customers() for c in batch}["a"]
    row = PredictionRecord(
        customer_id=first, as_of=NOW, p_alive=0.2, expected_orders_30d=0.0, expected_orders_90d=0.1
    )
    predicted.replace_predictions([row], PredictionFitRecord(NOW, NOW, 1, {"model": "second"}))
    assert "".join(members(predicted, {"p_alive": {"min": 0.0}})) == "a"
    assert predicted.predictions_for([first])[first].p_alive == pytest.approx(0.2)
    fit = predicted.latest_prediction_fit()
    assert fit is not None and fit.details == {"model": "second"}


def test_prediction_rules_validate() -> None:
    assert validate_rules({"p_alive": {"max": 0.3}}) == {"p_alive": {"max": 0.3}}
    with pytest.raises(RuleError, match="probability"):
        validate_rules({"p_alive": {"min": 2}})
    with pytest.raises(RuleError, match="percentage"):
        validate_rules({"clv_top_pct": 0})
    with pytest.raises(RuleError, match="must be a number"):
        validate_rules({"next_order_within_days": "soon"})


def test_bundled_prediction_segments_load() -> None:
    segments = load_segments(ROOT / "segments.yaml")
    assert segments["top-predicted-value"].rules == {"clv_top_pct": 10.0}
    assert segments["due-to-reorder"].rules["next_order_within_days"] == 14.0


def test_bad_prediction_rule_names_the_line(tmp_path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text("x:\n  rules:\n    p_alive: {min: 3}\n")
    with pytest.raises(ConfigError, match=r"segments.yaml:3: segment 'x': p_alive: is a probability"):
        load_segments(path)
