"""Picking the winner of an A/B test: Bayesian probability to be best, with a stated fallback.

The rule, for a test of ``k`` variants on ``metric`` with ``confidence`` c (default 0.97):

1. Each variant's metric gets a posterior from the test phase:

   * ``click_rate`` (clickers / recipients), ``conversion`` (recipients with a click-attributed order /
     recipients) and ``uplift`` (recipients who ordered within the window after the send / recipients;
     the holdout's rate is the same for every variant, so the best uplift is the best after-send rate):
     Beta(1 + successes, 1 + failures);
   * ``revenue_per_recipient``: Normal(mean, sd / sqrt(n)) of the per-recipient revenue (a flat prior;
     revenue is too skewed for a Beta).

2. The probability to be best is estimated from :data:`DRAWS` joint posterior draws (a fixed seed, so the
   same figures always give the same decision).

3. A variant wins when its probability to be best is at least ``1 - (1 - c) / k`` — 98.5% for two
   variants at c = 0.97. Dividing the error budget by the number of variants (Bonferroni) keeps the
   chance of declaring *any* winner between equal variants at about 1 - c; with the plain "≥ c" rule
   two equal variants would produce a winner about twice as often (measured in bench/bench_variants.py).

4. Otherwise the **default** variant (``test.default``, else the first) is sent, and the decision says
   that no variant reached the bar, with every variant's probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: posterior draws per decision
DRAWS = 20_000
SEED = 20_261_130


@dataclass(frozen=True)
class ArmFigures:
    """What the rule reads of one variant (campaigns.report.VariantResult has all of these)."""

    variant: str
    recipients: int
    clickers: int = 0
    converted: int = 0
    ordered_after_send: int = 0
    revenue: float = 0.0
    revenue_sumsq: float = 0.0


@dataclass(frozen=True)
class Decision:
    winner: str
    metric: str
    threshold: float
    probabilities: dict[str, float]
    decided: bool  # False: nobody reached the threshold, the default was taken
    reason: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _successes(arm: ArmFigures, metric: str) -> int:
    if metric == "click_rate":
        return arm.clickers
    if metric == "conversion":
        return arm.converted
    if metric == "uplift":
        return arm.ordered_after_send
    raise ValueError(f"unknown metric {metric!r}")


def probability_to_be_best(arms: Sequence[ArmFigures], metric: str, *, seed: int = SEED) -> dict[str, float]:
    """Each variant's posterior probability of having the highest ``metric`` (they sum to 1)."""
    rng = np.random.default_rng(seed)
    columns = []
    for arm in arms:
        n = max(arm.recipients, 0)
        if metric == "revenue_per_recipient":
            if n == 0:
                columns.append(np.full(DRAWS, -np.inf))
                continue
            mean = arm.revenue / n
            var = max(arm.revenue_sumsq / n - mean * mean, 0.0)
            sd = math.sqrt(var / n) if n > 1 else abs(mean) + 1.0
            columns.append(rng.normal(mean, sd or 1e-9, DRAWS))
        else:
            k = _successes(arm, metric)
            columns.append(rng.beta(1 + k, 1 + max(n - k, 0), DRAWS))
    draws = np.column_stack(columns)
    best = np.argmax(draws, axis=1)
    counts = np.bincount(best, minlength=len(arms))
    return {arm.variant: float(c) / DRAWS for arm, c in zip(arms, counts, strict=True)}


def threshold_for(confidence: float, variants: int) -> float:
    """The probability a variant needs to win (see rule 3)."""
    return 1 - (1 - confidence) / max(variants, 1)


def pick_winner(
    arms: Sequence[ArmFigures], *, metric: str, confidence: float, default: str, seed: int = SEED
) -> Decision:
    """The rule of the module docstring. ``default`` must be one of the arms' variants."""
    if default not in {a.variant for a in arms}:
        raise ValueError(f"default variant {default!r} is not among {[a.variant for a in arms]}")
    bar = threshold_for(confidence, len(arms))
    probs = probability_to_be_best(arms, metric, seed=seed)
    shown = ", ".join(f"{v} {p:.1%}" for v, p in probs.items())
    best, p = max(probs.items(), key=lambda kv: kv[1])
    if p >= bar:
        return Decision(
            best,
            metric,
            bar,
            probs,
            True,
            f"{best} is best on {metric} with probability {p:.1%} (≥ {bar:.1%}; {shown})",
        )
    return Decision(
        default,
        metric,
        bar,
        probs,
        False,
        f"no variant reached {bar:.1%} probability to be best on {metric} ({shown}): sending the default variant {default}",
    )


def arms_from_report(results: Mapping[str, object]) -> list[ArmFigures]:
    """ArmFigures for each campaigns.report.VariantResult of a report."""
    out = []
    for name, r in results.items():
        out.append(
            ArmFigures(
                variant=name,
                recipients=int(getattr(r, "recipients", 0)),
                clickers=int(getattr(r, "clickers", 0)),
                converted=int(getattr(r, "converted", 0)),
                ordered_after_send=int(getattr(r, "ordered_after_send", 0)),
                revenue=float(getattr(r, "revenue", 0.0)),
                revenue_sumsq=float(getattr(r, "revenue_sumsq", 0.0)),
            )
        )
    return out


__all__ = [
    "ArmFigures",
    "Decision",
    "arms_from_report",
    "pick_winner",
    "probability_to_be_best",
    "threshold_for",
]
