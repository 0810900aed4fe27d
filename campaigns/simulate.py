"""Simulated A/B tests: how often the winner rule (campaigns/winner.py) picks the truly better variant.

A synthetic shop of ``customers`` recipients; the campaign's real deterministic assignment
(:func:`campaigns.variants.assign_variant`, :func:`campaigns.variants.in_test_share`) splits the test share
between variants A and B; each test recipient converts with the variant's true probability (a seeded
Bernoulli draw per recipient); the rule then decides on ``conversion``. Used by tests/test_winner.py and
bench/bench_variants.py::

    result = simulate(campaigns=200, lift=0.2)      # B truly converts 20% better
    result.share("b")                               # how often B was picked
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from campaigns.variants import VariantSpec, assign_variant, in_test_share
from campaigns.winner import ArmFigures, pick_winner

#: the defaults of the simulated shop (documented in docs/measure.md)
CUSTOMERS = 120_000
TEST_SHARE = 0.2
BASE_RATE = 0.05


@dataclass
class Simulation:
    campaigns: int
    lift: float
    picks: Counter[str] = field(default_factory=Counter)
    declared: Counter[str] = field(default_factory=Counter)  # picked because it reached the bar

    def share(self, variant: str) -> float:
        return self.picks[variant] / self.campaigns

    def declared_share(self, variant: str | None = None) -> float:
        n = sum(self.declared.values()) if variant is None else self.declared[variant]
        return n / self.campaigns


def assign_test_arms(customers: int, share: float, campaign: str = "simulated") -> np.ndarray:
    """For each customer id 1..customers: 0 (A) or 1 (B) in the test share, -1 outside it."""
    variants = (VariantSpec("a"), VariantSpec("b"))
    out = np.full(customers, -1, dtype=np.int8)
    for cid in range(1, customers + 1):
        if in_test_share(campaign, cid, share):
            out[cid - 1] = 0 if assign_variant(campaign, cid, variants) == "a" else 1
    return out


def simulate(
    *,
    campaigns: int = 200,
    lift: float = 0.2,
    customers: int = CUSTOMERS,
    share: float = TEST_SHARE,
    base_rate: float = BASE_RATE,
    confidence: float = 0.97,
    seed: int = 1,
    split: np.ndarray | None = None,
) -> Simulation:
    """``campaigns`` seeded test phases; B's true conversion is ``base_rate * (1 + lift)``."""
    arms = split if split is not None else assign_test_arms(customers, share)
    in_a, in_b = arms == 0, arms == 1
    n_a, n_b = int(in_a.sum()), int(in_b.sum())
    result = Simulation(campaigns, lift)
    for k in range(campaigns):
        rng = np.random.default_rng(seed * 1_000_003 + k)
        conv_a = int((rng.random(n_a) < base_rate).sum())
        conv_b = int((rng.random(n_b) < base_rate * (1 + lift)).sum())
        decision = pick_winner(
            [ArmFigures("a", n_a, converted=conv_a), ArmFigures("b", n_b, converted=conv_b)],
            metric="conversion",
            confidence=confidence,
            default="a",
            seed=k,
        )
        result.picks[decision.winner] += 1
        if decision.decided:
            result.declared[decision.winner] += 1
    return result


__all__ = ["BASE_RATE", "CUSTOMERS", "TEST_SHARE", "Simulation", "simulate", "assign_test_arms"]
