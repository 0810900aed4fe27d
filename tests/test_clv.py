"""BG/NBD, MBG/NBD and Gamma-Gamma maximum-likelihood fits (recommender/clv.py) on data simulated from the
models themselves: the parameters come back, and predicted future purchases match the simulated future."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.clv import BGNBD, CLVFitError, fit_bgnbd, fit_gamma_gamma


def simulate(
    n: int, r: float, alpha: float, a: float, b: float, *, horizon: float = 90.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD customers observed for T days (uniform 60..400), and their purchases in the next ``horizon``."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(60, 400, n)
    x, tx, future = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i] + horizon:
                break
            if t <= T[i]:
                x[i] += 1
                tx[i] = t
            else:
                future[i] += 1
            if rng.random() < p[i]:
                break
    return x, tx, T, future


@pytest.fixture(scope="module")
def simulated() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return simulate(4000, r=0.8, alpha=60.0, a=0.9, b=3.0)


def test_bgnbd_recovers_the_parameters(simulated: tuple[np.ndarray, ...]) -> None:
    x, tx, T, _ = simulated
    fit = fit_bgnbd(x, tx, T)
    assert fit.r == pytest.approx(0.8, rel=0.15)
    assert fit.alpha == pytest.approx(60.0, rel=0.2)
    assert fit.a == pytest.approx(0.9, rel=0.35)
    assert fit.b == pytest.approx(3.0, rel=0.35)
    assert fit.customers == 4000


def test_predicted_future_purchases_match_the_simulated_future(simulated: tuple[np.ndarray, ...]) -> None:
    x, tx, T, future = simulated
    for modified in (False, True):
        fit = fit_bgnbd(x, tx, T, modified=modified)
        expected = fit.expected_orders(90.0, x, tx, T)
        assert expected.sum() == pytest.approx(future.sum(), rel=0.1)
        # and per group: the customers predicted to buy most do buy most
        top = expected >= np.quantile(expected, 0.8)
        assert future[top].mean() > 3 * future[~top].mean()
        chance = fit.p_order_within(90.0, x, tx, T)
        assert chance.mean() == pytest.approx((future > 0).mean(), abs=0.05)


def test_p_alive_behaviour(simulated: tuple[np.ndarray, ...]) -> None:
    x, tx, T, _ = simulated
    plain = fit_bgnbd(x, tx, T)
    modified = fit_bgnbd(x, tx, T, modified=True)
    one = np.array([0.0, 5.0, 5.0])
    last = np.array([0.0, 300.0, 50.0])
    age = np.array([300.0, 310.0, 310.0])
    p = plain.p_alive(one, last, age)
    assert p[0] == 1.0  # plain BG/NBD: a one-time buyer has not had a chance to drop out
    assert modified.p_alive(one, last, age)[0] < 1.0
    assert p[1] > p[2]  # same orders, the one seen recently is more likely active
    days = plain.expected_orders(np.float64(30.0), one, last, age)
    assert np.all(plain.expected_orders(90.0, one, last, age) > days)


def test_a_at_one_falls_back_to_a_finite_value() -> None:
    fit = BGNBD(r=0.5, alpha=50.0, a=1.0, b=2.0, customers=1, loglik=0.0)
    got = fit.expected_orders(90.0, np.array([3.0]), np.array([100.0]), np.array([200.0]))
    assert np.isfinite(got).all() and got[0] > 0


def test_nobody_ordered_twice_is_a_clear_error() -> None:
    with pytest.raises(CLVFitError, match="nobody has ordered twice"):
        fit_bgnbd(np.zeros(5), np.zeros(5), np.full(5, 30.0))
    with pytest.raises(CLVFitError, match="no customers"):
        fit_bgnbd(np.zeros(0), np.zeros(0), np.zeros(0))


def test_gamma_gamma_recovers_spend() -> None:
    rng = np.random.default_rng(3)
    n, p, q, v = 3000, 6.0, 4.0, 15.0
    nu = rng.gamma(q, 1 / v, n)  # each customer's spend rate
    x = rng.integers(1, 12, n).astype(float)
    monetary = np.array([rng.gamma(p * k, 1 / (nu_i * k)) for k, nu_i in zip(x, nu, strict=True)])
    fit = fit_gamma_gamma(x, monetary)
    population = p * v / (q - 1)
    assert fit.p * fit.v / (fit.q - 1) == pytest.approx(population, rel=0.1)
    spend = fit.expected_spend(np.array([0.0, 1.0, 10.0]), np.array([np.nan, 100.0, 100.0]))
    assert spend[0] == pytest.approx(fit.p * fit.v / (fit.q - 1))
    # shrinkage: one order of 100 is pulled toward the mean more than ten orders of 100
    assert abs(spend[2] - 100.0) < abs(spend[1] - 100.0)
    with pytest.raises(CLVFitError, match="fewer than two"):
        fit_gamma_gamma(np.array([0.0, 1.0]), np.array([np.nan, 5.0]))
