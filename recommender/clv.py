"""Buy-till-you-die models: BG/NBD for purchase counts and survival, Gamma-Gamma for spend per order.

Maximum-likelihood point fits with scipy (docs/predictions.md says why not pymc-marketing: the same
estimates, measured, for a fraction of the install and fit time). Time is measured in days; a
"purchase" is a day with at least one order (several orders on one day are one shopping trip).

Per customer the models take the usual summary (Fader, Hardie & Lee 2005):

- ``frequency`` x: repeat purchase days (purchase days - 1);
- ``recency`` t_x: days from the first to the last purchase day;
- ``age`` T: days from the first purchase day to "now";
- ``monetary``: mean spend of the repeat purchase days (Gamma-Gamma uses customers with x >= 1).

::

    fit = fit_bgnbd(frequency, recency, age)
    fit.expected_orders(90.0, frequency, recency, age)   # per customer
    fit.p_alive(frequency, recency, age)

Raises :class:`CLVFitError` (a ``ValueError``) when the data cannot be fitted (no customers, nobody
with a repeat purchase, an optimiser failure).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

FloatArray = NDArray[np.float64]


class CLVFitError(ValueError):
    """The purchase summary cannot be fitted; the message says why."""


def _unique_rows(*cols: FloatArray) -> tuple[FloatArray, FloatArray, NDArray[np.intp]]:
    """Distinct rows of the stacked columns, their counts and the inverse map (the likelihood is a
    weighted sum over distinct summaries: Online Retail's 4,300 customers have ~2,000)."""
    stacked = np.column_stack(cols)
    uniq, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return uniq, counts.astype(np.float64), inverse.reshape(-1)


def _minimize(negll: Callable[[FloatArray], float], x0: FloatArray, model: str) -> tuple[FloatArray, float]:
    """The log-parameters minimising ``negll`` from ``x0`` and the minimum: L-BFGS-B, then Nelder-Mead
    when it reports no convergence (the better finite result of the two). ``negll`` returns 1e12 where
    it is not finite."""
    best = None
    for method in ("L-BFGS-B", "Nelder-Mead"):
        res = optimize.minimize(negll, x0, method=method, options={"maxiter": 4000})
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
        if res.success:
            break
    if best is None or best.fun >= 1e11:
        raise CLVFitError(f"the {model} fit did not converge")
    out: FloatArray = np.asarray(best.x, np.float64)
    return out, float(best.fun)


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_loglik(
    params: FloatArray, x: FloatArray, tx: FloatArray, T: FloatArray, modified: bool
) -> FloatArray:
    r, alpha, a, b = params
    k = 1.0 if modified else 0.0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x + k)
        - special.gammaln(b)
        - special.gammaln(a + b + x + k)
    )
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.log(a) - np.log(b + x + k - 1) - (r + x) * np.log(alpha + tx)
        a4 = drop if modified else np.where(x > 0, drop, -np.inf)
    out: FloatArray = a1 + a2 + np.logaddexp(a3, a4)
    return out


@dataclass(frozen=True, slots=True)
class BGNBD:
    """Fitted BG/NBD parameters (r, alpha in days; a, b of the dropout Beta).

    ``modified``: the MBG/NBD variant (Batislam et al. 2007), where a customer may also drop out right
    after the first purchase, so one-time buyers are not "certainly active" (plain BG/NBD says they are).
    """

    r: float
    alpha: float
    a: float
    b: float
    customers: int
    loglik: float
    modified: bool = False

    @property
    def _k(self) -> float:
        return 1.0 if self.modified else 0.0

    def _odds(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        """a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, else 0: the odds of having dropped out
        (MBG/NBD: a/(b+x) (...)^(r+x) for every x)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x + self._k - 1, 1e-12))
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + tx))
            )
            odds = np.exp(np.minimum(log_odds, 700.0))
        out: FloatArray = odds if self.modified else np.where(x > 0, odds, 0.0)
        return out

    def p_alive(self, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        """P(still active | history)."""
        out: FloatArray = 1.0 / (1.0 + self._odds(x, tx, T))
        return out

    def expected_orders(self, days: float, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        """E[purchase days in the next ``days`` | history] (Fader, Hardie & Lee 2005, eq. 10)."""
        r, alpha, a, b, k = self.r, self.alpha, self.a, self.b, self._k
        z = days / (alpha + T + days)
        hyp = special.hyp2f1(r + x, b + x + k, a + b + x + k - 1, z)
        head = (a + b + x + k - 1) / (a - 1) if a != 1 else np.full_like(x, np.nan)
        body = 1.0 - np.power((alpha + T) / (alpha + T + days), r + x) * hyp
        out: FloatArray = head * body / (1.0 + self._odds(x, tx, T))
        # a <= 1 (no finite mean lifetime) or a numerically unstable hypergeometric term: fall back to
        # "rate while alive x P(alive)", which is the same quantity to first order in days
        bad = ~np.isfinite(out) | (out < 0)
        if bad.any():
            fallback = (r + x) / (alpha + T) * days * self.p_alive(x, tx, T)
            out = np.where(bad, fallback, out)
        return out

    def p_order_within(self, days: float, x: FloatArray, tx: FloatArray, T: FloatArray) -> FloatArray:
        """P(at least one purchase in the next ``days``): still active, and the Poisson clock ticks."""
        silent = np.power((self.alpha + T) / (self.alpha + T + days), self.r + x)
        out: FloatArray = self.p_alive(x, tx, T) * (1.0 - silent)
        return out

    def days_to_next_order(self, x: FloatArray, T: FloatArray) -> FloatArray:
        """Expected days until the next purchase if still active: 1 / the posterior mean daily rate."""
        out: FloatArray = (self.alpha + T) / (self.r + x)
        return out

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def fit_bgnbd(
    frequency: FloatArray,
    recency: FloatArray,
    age: FloatArray,
    *,
    penalizer: float = 0.0,
    modified: bool = False,
    start: BGNBD | None = None,
) -> BGNBD:
    """Maximum-likelihood BG/NBD (``modified``: MBG/NBD) on per-customer summaries (days). ``penalizer``
    adds an L2 pull of the log-parameters toward 0 (useful for very small shops); ``start`` (a previous
    fit, e.g. on the full data before bootstrap refits) is where the search begins."""
    x = np.asarray(frequency, np.float64)
    tx = np.asarray(recency, np.float64)
    T = np.asarray(age, np.float64)
    if x.size == 0:
        raise CLVFitError("no customers to fit")
    if not (x > 0).any():
        raise CLVFitError("nobody has ordered twice: purchase rates cannot be learned yet")
    uniq, weight, _ = _unique_rows(x, tx, T)
    ux, utx, uT = uniq[:, 0], uniq[:, 1], uniq[:, 2]
    n = float(weight.sum())

    def negll(logp: FloatArray) -> float:
        params = np.exp(logp)
        ll = _bgnbd_loglik(params, ux, utx, uT, modified)
        value = -float(np.dot(weight, ll)) / n + penalizer * float(np.dot(logp, logp))
        return value if np.isfinite(value) else 1e12

    scale = max(float(np.mean(T)), 1.0)
    if start is None:
        x0 = np.log(np.array([0.5, scale / 4, 0.8, 2.5]))
    else:
        x0 = np.log(np.array([start.r, start.alpha, start.a, start.b]))
    logp, fun = _minimize(negll, x0, "BG/NBD")
    r, alpha, a, b = (float(v) for v in np.exp(logp))
    return BGNBD(r, alpha, a, b, int(n), -fun * n, modified)


# --------------------------------------------------------------------------- Gamma-Gamma


@dataclass(frozen=True, slots=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters (p, q, v) of spend per purchase."""

    p: float
    q: float
    v: float
    customers: int

    def expected_spend(self, x: FloatArray, monetary: FloatArray) -> FloatArray:
        """E[spend per purchase | x repeat purchases averaging ``monetary``]; the population mean for x = 0."""
        p, q, v = self.p, self.q, self.v
        population = p * v / (q - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            conditional = p * (v + x * monetary) / (p * x + q - 1)
        out: FloatArray = np.where(x > 0, conditional, population)
        return out

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}


def _gg_loglik(params: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
    p, q, v = params
    out: FloatArray = (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + (p * x) * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )
    return out


def fit_gamma_gamma(
    frequency: FloatArray, monetary: FloatArray, *, penalizer: float = 0.0, start: GammaGamma | None = None
) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on the customers with at least one repeat purchase and a positive
    mean spend. ``q`` is kept above 1 so the expected spend is finite."""
    x = np.asarray(frequency, np.float64)
    m = np.asarray(monetary, np.float64)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    if keep.sum() < 2:
        raise CLVFitError("fewer than two repeat customers with known spend: spend cannot be learned yet")
    x, m = x[keep], m[keep]
    n = float(x.size)

    def negll(logp: FloatArray) -> float:
        params = np.exp(logp)
        params[1] = 1.0 + params[1]
        value = -float(np.sum(_gg_loglik(params, x, m))) / n + penalizer * float(np.dot(logp, logp))
        return value if np.isfinite(value) else 1e12

    if start is None:
        x0 = np.log(np.array([2.0, 2.0, max(float(np.median(m)), 1.0)]))
    else:
        x0 = np.log(np.array([start.p, max(start.q - 1.0, 1e-6), start.v]))
    p, q1, v = (float(e) for e in np.exp(_minimize(negll, x0, "Gamma-Gamma")[0]))
    return GammaGamma(p, 1.0 + q1, v, int(n))


__all__ = ["BGNBD", "CLVFitError", "GammaGamma", "fit_bgnbd", "fit_gamma_gamma"]
