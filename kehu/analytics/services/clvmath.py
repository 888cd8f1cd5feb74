"""The CLV models, as pure NumPy/SciPy: BG/NBD for purchases and Gamma-Gamma for spend.

No Django here: arrays in, numbers out, so the estimators can be proved by simulation.

**BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way"). While alive, a
customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each repeat purchase they
drop out for good with probability p ~ Beta(a, b). Per customer the data are ``x`` (repeat
purchases: transactions after the first), ``t_x`` (time of the last purchase, measured from the
first) and ``T`` (time from the first purchase to the end of the observation period).

**Gamma-Gamma** (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value"). A customer's
transaction values are Gamma(p, ν) with ν ~ Gamma(q, γ); the data are ``x`` and the mean value
``m`` of the repeat transactions. Spend is assumed independent of the purchase process.

The time unit is whatever ``t_x`` and ``T`` are in (Kehu's service uses days; the published
CDNOW estimates are in weeks): α is in that unit, the other parameters are unit-free. A
"transaction" is one purchase day per customer: several orders on one day are one transaction,
as both models assume.

The likelihoods are vectorised over customers and accept ``weights`` so that identical
(x, t_x, T) rows are evaluated once. Fits maximise them with ``scipy.optimize.minimize`` over
the logarithms of the parameters, which keeps them positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike

# The optimiser works on log-parameters within these bounds; an estimate on a bound means the
# likelihood has no interior maximum for these data (the fit is refused, not reported).
LOG_BOUND = 12.0
_ON_BOUND = LOG_BOUND - 1e-3


class FitError(ValueError):
    """The data cannot support the model; ``code`` says why (the service turns it into text)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}

    @property
    def mean_spend(self) -> float:
        """The population's mean transaction value, p·γ/(q−1) (infinite unless q > 1)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")


@dataclass(frozen=True)
class FitResult:
    params: Any
    log_likelihood: float
    iterations: int
    converged: bool


def _arrays(*values: ArrayLike) -> list[FloatArray]:
    return [np.asarray(value, dtype=np.float64) for value in values]


# --- BG/NBD --------------------------------------------------------------------------------------
def bgnbd_log_likelihood_terms(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Each customer's log-likelihood (FHL 2005, eq. 6), as one array operation.

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / Γ(r) · [ (α+T)^-(r+x) + [x>0] · a/(b+x−1) · (α+t_x)^-(r+x) ]
    """
    xs, tx, big_t = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b) - special.gammaln(a + b + xs)
    a3 = -(r + xs) * np.log(alpha + big_t)
    repeat = xs > 0
    # For x = 0 the second term is absent; b + x − 1 may be ≤ 0 there, so it is never evaluated.
    safe = np.where(repeat, b + xs - 1.0, 1.0)
    a4 = np.where(repeat, np.log(a) - np.log(safe) - (r + xs) * np.log(alpha + tx), -np.inf)
    result: FloatArray = a1 + a2 + np.logaddexp(a3, a4)
    return result


def bgnbd_log_likelihood(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, weights: ArrayLike | None = None
) -> float:
    terms = bgnbd_log_likelihood_terms(params, x, t_x, T)
    if weights is None:
        return float(np.sum(terms))
    return float(np.dot(np.asarray(weights, dtype=np.float64), terms))


def compress(*columns: ArrayLike) -> tuple[list[FloatArray], FloatArray]:
    """The distinct rows of the columns and how often each occurs (for weighted likelihoods)."""
    stacked = np.column_stack(_arrays(*columns))
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, index].copy() for index in range(unique.shape[1])], counts.astype(np.float64)


def _check_bgnbd_data(x: FloatArray, t_x: FloatArray, T: FloatArray) -> None:
    if x.size == 0:
        raise FitError("no_customers")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(T))):
        raise FitError("not_finite")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
        raise FitError("inconsistent", "need x ≥ 0 and 0 ≤ t_x ≤ T")
    if np.any((x == 0) & (t_x != 0)):
        raise FitError("inconsistent", "t_x must be 0 when x is 0")
    if not np.any(x > 0):
        raise FitError("no_repeat_buyers")
    if np.all(T == 0):
        raise FitError("one_day")


def bgnbd_fit(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    initial: BgNbdParams | None = None,
) -> FitResult:
    """Maximum-likelihood BG/NBD parameters.

    Identical customers are collapsed first, so the cost grows with distinct (x, t_x, T)
    rows, not customers. Raises :class:`FitError` when the data cannot identify the model or
    the optimiser finds no interior maximum.
    """
    xs, tx, big_t = _arrays(x, t_x, T)
    _check_bgnbd_data(xs, tx, big_t)
    (ux, utx, ut), weights = compress(xs, tx, big_t)
    total = float(weights.sum())
    start = initial or BgNbdParams(r=1.0, alpha=max(float(np.mean(big_t)), 1e-3), a=1.0, b=1.0)

    def negative(log_params: FloatArray) -> float:
        r, alpha, a, b = np.exp(log_params)
        value = bgnbd_log_likelihood(BgNbdParams(r, alpha, a, b), ux, utx, ut, weights)
        # Scaled by the number of customers so that the optimiser's tolerances mean the same at
        # 100 and at 1,000,000 customers.
        return -value / total if np.isfinite(value) else 1e300

    x0 = np.log([start.r, start.alpha, start.a, start.b])
    return _minimise(negative, x0, total, lambda v: BgNbdParams(*(float(p) for p in np.exp(v))))


def _minimise(negative: Any, x0: FloatArray, total: float, build: Any) -> FitResult:
    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(x0)
    result = optimize.minimize(negative, x0, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    # L-BFGS-B sometimes stops on an imprecise line search near the optimum; Nelder-Mead from
    # there settles it without gradients.
    if not result.success:
        result = optimize.minimize(
            negative,
            result.x,
            method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-7, "fatol": 1e-12},
        )
    estimate = np.asarray(result.x, dtype=np.float64)
    if not result.success or not np.all(np.isfinite(estimate)):
        raise FitError("not_converged", str(result.message))
    if np.any(np.abs(estimate) >= _ON_BOUND):
        raise FitError("on_bound")
    log_likelihood = -float(result.fun) * total
    return FitResult(
        params=build(estimate),
        log_likelihood=log_likelihood,
        iterations=int(result.nit),
        converged=True,
    )


def bgnbd_p_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(still active | x, t_x, T) = 1 / (1 + [x>0] · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).

    A customer with no repeat purchase is alive by the model (drop-out happens only right
    after a repeat purchase), so x = 0 gives exactly 1.
    """
    xs, tx, big_t = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = xs > 0
    safe = np.where(repeat, b + xs - 1.0, 1.0)
    log_ratio = np.log(a) - np.log(safe) + (r + xs) * (np.log(alpha + big_t) - np.log(alpha + tx))
    odds = np.where(repeat, np.exp(np.minimum(log_ratio, 700.0)), 0.0)
    result: FloatArray = 1.0 / (1.0 + odds)
    return result


def bgnbd_expected_purchases(params: BgNbdParams, t: ArrayLike) -> FloatArray:
    """E[X(t)] for a customer just acquired (FHL 2005, eq. 9)."""
    (ts,) = _arrays(t)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = ts / (alpha + ts)
    hyp = special.hyp2f1(r, b, a + b - 1.0, z)
    result: FloatArray = (a + b - 1.0) / (a - 1.0) * (1.0 - (alpha / (alpha + ts)) ** r * hyp)
    return result


def bgnbd_conditional_expected_purchases(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` (FHL 2005, eq. 10).

    (a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))]
    divided by 1 + [x>0] · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x).
    """
    ts, xs, tx, big_t = _arrays(t, x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = ts / (alpha + big_t + ts)
    log_base = (r + xs) * (np.log(alpha + big_t) - np.log(alpha + big_t + ts))
    hyp = special.hyp2f1(r + xs, b + xs, a + b + xs - 1.0, z)
    bracket = 1.0 - np.exp(log_base) * hyp
    numerator = (a + b + xs - 1.0) / (a - 1.0) * bracket
    result: FloatArray = numerator * bgnbd_p_alive(params, xs, tx, big_t)
    # ₂F₁ loses precision for very frequent buyers over long horizons; such values (never
    # below zero in theory) are replaced by the alive customer's long-run rate bound.
    bad = ~np.isfinite(result) | (result < 0)
    if np.any(bad):
        rate = (r + xs) / (alpha + big_t)
        result = np.where(bad, bgnbd_p_alive(params, xs, tx, big_t) * rate * ts, result)
    return result


def simulate_bgnbd(
    params: BgNbdParams, T: ArrayLike, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Draw (x, t_x) for customers observed for ``T`` each, from the BG/NBD story itself.

    λ ~ Gamma(r, α), p ~ Beta(a, b); the customer dies right after repeat purchase N ~
    Geometric(p). Given K ~ Poisson(λT) purchases in (0, T], their times are uniform order
    statistics, so the last one observed (the min(K, N)-th) is T · Beta(min(K, N), K−min(K, N)+1).
    """
    (big_t,) = _arrays(T)
    size = big_t.shape
    rate = rng.gamma(params.r, 1.0 / params.alpha, size=size)
    dropout = rng.beta(params.a, params.b, size=size)
    deaths = rng.geometric(np.clip(dropout, 1e-12, 1.0))
    arrivals = rng.poisson(rate * big_t)
    x = np.minimum(arrivals, deaths).astype(np.float64)
    observed = x > 0
    shape_a = np.where(observed, x, 1.0)
    shape_b = np.where(observed, arrivals - x + 1.0, 1.0)
    t_x = np.where(observed, big_t * rng.beta(shape_a, shape_b), 0.0)
    return x, t_x


# --- Gamma-Gamma ---------------------------------------------------------------------------------
def gamma_gamma_log_likelihood_terms(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """Each repeat buyer's log-likelihood of their mean value ``m`` over ``x`` transactions.

    The mean of x Gamma(p, ν) values is Gamma(px, νx); integrating ν ~ Gamma(q, γ) out gives
    Γ(px+q)/(Γ(px)Γ(q)) · γ^q · x^(px) · m^(px−1) / (γ + x·m)^(px+q).
    """
    xs, ms = _arrays(x, m)
    p, q, gamma = params.p, params.q, params.gamma
    px = p * xs
    result: FloatArray = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1.0) * np.log(ms)
        + px * np.log(xs)
        - (px + q) * np.log(gamma + xs * ms)
    )
    return result


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None
) -> float:
    terms = gamma_gamma_log_likelihood_terms(params, x, m)
    if weights is None:
        return float(np.sum(terms))
    return float(np.dot(np.asarray(weights, dtype=np.float64), terms))


def gamma_gamma_fit(x: ArrayLike, m: ArrayLike, *, initial: GammaGammaParams | None = None) -> FitResult:
    """Maximum-likelihood Gamma-Gamma parameters from repeat buyers (x ≥ 1, m > 0)."""
    xs, ms = _arrays(x, m)
    if xs.size == 0:
        raise FitError("no_repeat_buyers")
    if np.any(xs < 1) or np.any(ms <= 0) or not np.all(np.isfinite(ms)):
        raise FitError("inconsistent", "need x ≥ 1 and m > 0")
    if np.ptp(ms) == 0:
        raise FitError("no_variation")
    # Values are rescaled to a mean of 1 for the optimiser; γ scales back linearly.
    scale = float(np.mean(ms))
    (ux, um), weights = compress(xs, ms / scale)
    total = float(weights.sum())
    start = initial or GammaGammaParams(p=2.0, q=3.0, gamma=2.0)
    start_scaled = np.log([start.p, start.q, start.gamma / (scale if initial else 1.0)])

    def negative(log_params: FloatArray) -> float:
        p, q, gamma = np.exp(log_params)
        value = gamma_gamma_log_likelihood(GammaGammaParams(p, q, gamma), ux, um, weights)
        return -value / total if np.isfinite(value) else 1e300

    fitted = _minimise(negative, start_scaled, total, lambda v: v)
    p, q, gamma_scaled = (float(value) for value in np.exp(fitted.params))
    params = GammaGammaParams(p=p, q=q, gamma=gamma_scaled * scale)
    # The likelihood of the original values differs from the rescaled one by the Jacobian.
    log_likelihood = gamma_gamma_log_likelihood(params, xs, ms)
    return FitResult(
        params=params, log_likelihood=log_likelihood, iterations=fitted.iterations, converged=True
    )


def gamma_gamma_expected_spend(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """E[mean value | x, m] = p(γ + x·m) / (p·x + q − 1): the prior mean p·γ/(q−1) when x = 0,
    moving towards the customer's own mean as their purchases accumulate."""
    xs, ms = _arrays(x, m)
    ms = np.where(xs > 0, ms, 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    result: FloatArray = p * (gamma + xs * ms) / (p * xs + q - 1.0)
    return result


def simulate_gamma_gamma(params: GammaGammaParams, x: ArrayLike, rng: np.random.Generator) -> FloatArray:
    """Mean transaction values for customers with ``x`` ≥ 1 transactions each.

    ν ~ Gamma(q, γ) per customer; the sum of x Gamma(p, ν) values is Gamma(px, ν).
    """
    (xs,) = _arrays(x)
    nu = rng.gamma(params.q, 1.0 / params.gamma, size=xs.shape)
    total = rng.gamma(params.p * xs, 1.0 / nu)
    result: FloatArray = total / xs
    return result


# --- CLV -----------------------------------------------------------------------------------------
DAYS_PER_MONTH = 365.25 / 12


def customer_lifetime_value(
    purchases: BgNbdParams,
    spend: GammaGammaParams,
    *,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m: ArrayLike,
    months: int,
    monthly_discount: float,
    unit_per_month: float = DAYS_PER_MONTH,
) -> FloatArray:
    """Σ over months k = 1..months of (E[purchases by the end of month k] − by the end of
    month k−1) × expected spend / (1 + d)^k.

    ``unit_per_month`` converts a month into the time unit of ``t_x``/``T`` (days by default).
    """
    xs, tx, big_t, ms = _arrays(x, t_x, T, m)
    value_per_purchase = gamma_gamma_expected_spend(spend, xs, ms)
    total = np.zeros_like(xs)
    previous = np.zeros_like(xs)
    for month in range(1, months + 1):  # months, not customers: each step is one array operation
        cumulative = bgnbd_conditional_expected_purchases(purchases, month * unit_per_month, xs, tx, big_t)
        total += (cumulative - previous) / (1.0 + monthly_discount) ** month
        previous = cumulative
    result: FloatArray = total * value_per_purchase
    return result
