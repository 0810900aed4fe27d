"""The winner rule (campaigns/winner.py) and its proof by simulation (campaigns/simulate.py): over 200 seeded
simulated campaigns on a synthetic shop, B that truly converts 20% better is picked in at least 80%, and
between equal variants (A/A) a challenger is picked in at most 5%."""

from __future__ import annotations

import numpy as np
import pytest

from campaigns.simulate import assign_test_arms, simulate
from campaigns.variants import VariantSpec, assign_variant, in_test_share
from campaigns.winner import ArmFigures, pick_winner, probability_to_be_best, threshold_for


@pytest.fixture(scope="module")
def split() -> np.ndarray:
    return assign_test_arms(120_000, 0.2)


def test_assignment_is_deterministic_weighted_and_independent_of_the_test_share() -> None:
    variants = (VariantSpec("a", 3.0), VariantSpec("b", 1.0))
    first = [assign_variant("spring", c, variants) for c in range(1, 20_001)]
    assert first == [assign_variant("spring", c, variants) for c in range(1, 20_001)]
    share_a = first.count("a") / len(first)
    assert 0.73 < share_a < 0.77  # weights 3:1
    # another campaign shuffles people differently
    other = [assign_variant("autumn", c, variants) for c in range(1, 20_001)]
    assert sum(x != y for x, y in zip(first, other, strict=True)) > 5_000
    # the test share does not favour either variant
    tested = [v for c, v in enumerate(first, start=1) if in_test_share("spring", c, 0.2)]
    assert 0.18 < len(tested) / len(first) < 0.22 and 0.72 < tested.count("a") / len(tested) < 0.78
    assert assign_variant("spring", 1, ()) is None


def test_probability_to_be_best_and_the_stated_fallback() -> None:
    clear = [ArmFigures("a", 5_000, clickers=500), ArmFigures("b", 5_000, clickers=650)]
    probs = probability_to_be_best(clear, "click_rate")
    assert probs["b"] > 0.999 and abs(sum(probs.values()) - 1) < 1e-9
    won = pick_winner(clear, metric="click_rate", confidence=0.95, default="a")
    assert won.winner == "b" and won.decided and "≥ 97.5%" in won.reason
    close = [ArmFigures("a", 200, clickers=20), ArmFigures("b", 200, clickers=24)]
    fallback = pick_winner(close, metric="click_rate", confidence=0.95, default="a")
    assert fallback.winner == "a" and not fallback.decided
    assert (
        "no variant reached 97.5%" in fallback.reason and "sending the default variant a" in fallback.reason
    )
    assert threshold_for(0.95, 3) == pytest.approx(1 - 0.05 / 3)
    rich = [
        ArmFigures("a", 1_000, revenue=10_000.0, revenue_sumsq=1_000 * 20.0**2 * 10),
        ArmFigures("b", 1_000, revenue=20_000.0, revenue_sumsq=1_000 * 40.0**2 * 10),
    ]
    assert pick_winner(rich, metric="revenue_per_recipient", confidence=0.95, default="a").winner == "b"
    with pytest.raises(ValueError):
        pick_winner(clear, metric="click_rate", confidence=0.95, default="c")


def test_b_twenty_percent_better_is_picked_in_at_least_80_percent(split: np.ndarray) -> None:
    result = simulate(campaigns=200, lift=0.2, split=split, seed=1)
    assert result.share("b") >= 0.80, result.picks


def test_equal_variants_rarely_produce_a_wrong_winner(split: np.ndarray) -> None:
    result = simulate(campaigns=200, lift=0.0, split=split, seed=1)
    # the default (a) is what is sent without evidence: a challenger taking over is the wrong winner
    assert result.share("b") <= 0.05, result.picks
    # and no winner at all (either variant) is declared between equal variants in more than 5%
    assert result.declared_share() <= 0.05, result.declared
