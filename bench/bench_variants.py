"""The A/B winner rule by simulation (campaigns/simulate.py): how often B, truly 20% better on conversion,
is picked, and how often equal variants produce a winner, over 200 seeded campaigns per seed.

    .venv/bin/python -m bench variants            # about 30 s on one core
"""

from __future__ import annotations

import time

from campaigns.simulate import BASE_RATE, CUSTOMERS, TEST_SHARE, assign_test_arms, simulate

SEEDS = (1, 2, 3)
CAMPAIGNS = 200


def main() -> None:
    started = time.perf_counter()
    arms = assign_test_arms(CUSTOMERS, TEST_SHARE)
    n_a, n_b = int((arms == 0).sum()), int((arms == 1).sum())
    print(
        f"synthetic shop: {CUSTOMERS:,} recipients, test share {TEST_SHARE:.0%} -> A {n_a:,} / B {n_b:,}; "
        f"A converts {BASE_RATE:.0%}; metric conversion; confidence 0.97 (bar 98.5% for two variants)"
    )
    print(f"{'seed':>4}  {'B +20%: B picked':>17}  {'A/A: B picked':>14}  {'A/A: any winner declared':>25}")
    for seed in SEEDS:
        ab = simulate(campaigns=CAMPAIGNS, lift=0.2, split=arms, seed=seed)
        aa = simulate(campaigns=CAMPAIGNS, lift=0.0, split=arms, seed=seed)
        print(
            f"{seed:>4}  {ab.share('b'):>17.1%}  {aa.share('b'):>14.1%}  {aa.declared_share():>25.1%}",
            flush=True,
        )
    # the plain "probability to be best >= 95%" rule, for comparison (the bar the docs say it would give)
    plain = simulate(campaigns=CAMPAIGNS, lift=0.0, split=arms, seed=1, confidence=0.90)
    print(
        f"plain '>= 95%' rule (no division by the number of variants), A/A any winner: {plain.declared_share():.1%}"
    )
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
