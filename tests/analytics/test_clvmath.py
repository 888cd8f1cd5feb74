"""The CLV estimators proved by simulation: data drawn from known parameters are recovered.

BG/NBD data are drawn from the model's own story (kehu.analytics.services.clvmath.simulate_bgnbd)
with the published CDNOW estimates (Fader, Hardie & Lee 2005: r=0.243, α=4.414 weeks,
a=0.793, b=2.426); Gamma-Gamma data with the CDNOW spend estimates (Fader & Hardie 2013:
p=6.25, q=3.74, γ=15.44). 20,000 customers each; seeded generators, so the figures are
reproducible. Tolerances are relative errors, about three standard errors at this size
(measured over twelve seeds, the worst errors were r 3.3%, α 5.0%, a 5.7%, b 12%,
p 5.2%, q 2.7%, γ 6.1%).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scipy import special

from kehu.analytics.services import clvmath
from kehu.analytics.services.clvmath import BgNbdParams, FitError, GammaGammaParams

CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, gamma=15.44)
CUSTOMERS = 20_000
TOLERANCE = {"r": 0.10, "alpha": 0.10, "a": 0.15, "b": 0.25, "p": 0.15, "q": 0.10, "gamma": 0.15}


def _relative_errors(fitted: dict[str, float], true: dict[str, float]) -> dict[str, float]:
    return {name: abs(fitted[name] / true[name] - 1.0) for name in true}


def _reference_likelihood(params: BgNbdParams, x: int, t_x: float, T: float) -> float:
    """FHL 2005 eq. 6 written out for one customer with beta and gamma functions, no logs."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = math.gamma(r + x) * alpha**r / math.gamma(r)
    first = special.beta(a, b + x) / special.beta(a, b) * common / (alpha + T) ** (r + x)
    second = 0.0
    if x > 0:
        second = special.beta(a + 1, b + x - 1) / special.beta(a, b) * common / (alpha + t_x) ** (r + x)
    return float(first + second)


# --- BG/NBD --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [7, 2026])
def test_bgnbd_recovers_the_cdnow_parameters_from_simulated_customers(seed: int) -> None:
    # given 20,000 customers observed for one to one and a half years (in weeks)
    rng = np.random.default_rng(seed)
    T = rng.uniform(52, 78, CUSTOMERS)
    x, t_x = clvmath.simulate_bgnbd(CDNOW, T, rng)
    # when
    fit = clvmath.bgnbd_fit(x, t_x, T)
    # then every parameter is within its tolerance
    errors = _relative_errors(fit.params.as_dict(), CDNOW.as_dict())
    assert all(errors[name] < TOLERANCE[name] for name in errors), errors
    assert fit.converged is True
    # and the maximum is at least as likely as the truth
    assert fit.log_likelihood >= clvmath.bgnbd_log_likelihood(CDNOW, x, t_x, T) - 1e-6


def test_bgnbd_recovers_parameters_in_days_at_business_scale() -> None:
    # given a business in days: faster buyers, ages spread over four years, whole-day times
    rng = np.random.default_rng(11)
    true = BgNbdParams(r=0.8, alpha=90.0, a=0.6, b=4.0)
    T = rng.integers(1, 1460, CUSTOMERS).astype(float)
    x, t_x = clvmath.simulate_bgnbd(true, T, rng)
    # when
    fit = clvmath.bgnbd_fit(x, np.floor(t_x), T)
    # then
    errors = _relative_errors(fit.params.as_dict(), true.as_dict())
    assert all(errors[name] < TOLERANCE[name] for name in errors), errors


def test_bgnbd_likelihood_of_a_hand_computed_case() -> None:
    # r = α = a = b = 1: a customer with no repeat in 1 unit has L = B(1,1)/B(1,1) · 1/(1+1) = 1/2;
    # one repeat at 1 of 2 has L = B(1,2)/B(1,1) · (3^-2 + 1 · 2^-2) = 1/2 · 13/36 = 13/72.
    ones = BgNbdParams(1.0, 1.0, 1.0, 1.0)
    terms = clvmath.bgnbd_log_likelihood_terms(ones, [0, 1], [0.0, 1.0], [1.0, 2.0])
    assert terms == pytest.approx([math.log(1 / 2), math.log(13 / 72)], rel=1e-12)


@hypothesis_settings(max_examples=60)
@given(
    r=st.floats(0.05, 5.0),
    alpha=st.floats(0.1, 50.0),
    a=st.floats(0.1, 5.0),
    b=st.floats(0.1, 10.0),
    x=st.integers(0, 25),
    T=st.floats(0.5, 100.0),
    share=st.floats(0.0, 1.0),
)
def test_bgnbd_vectorised_likelihood_matches_the_per_customer_formula(
    r: float, alpha: float, a: float, b: float, x: int, T: float, share: float
) -> None:
    params = BgNbdParams(r, alpha, a, b)
    t_x = 0.0 if x == 0 else T * share
    reference = _reference_likelihood(params, x, t_x, T)
    vectorised = clvmath.bgnbd_log_likelihood_terms(params, [x], [t_x], [T])[0]
    assert vectorised == pytest.approx(math.log(reference), rel=1e-9, abs=1e-9)


def test_weighted_likelihood_of_distinct_rows_equals_the_plain_sum() -> None:
    rng = np.random.default_rng(3)
    T = rng.integers(30, 40, 2_000).astype(float)
    x, t_x = clvmath.simulate_bgnbd(CDNOW, T, rng)
    t_x = np.floor(t_x)
    (ux, utx, ut), weights = clvmath.compress(x, t_x, T)
    assert len(weights) < len(x)
    assert clvmath.bgnbd_log_likelihood(CDNOW, ux, utx, ut, weights) == pytest.approx(
        clvmath.bgnbd_log_likelihood(CDNOW, x, t_x, T), rel=1e-12
    )


def test_p_alive_is_one_without_repeat_purchases_and_falls_with_silence() -> None:
    # drop-out only follows a repeat purchase, so the model holds a one-time buyer alive
    assert clvmath.bgnbd_p_alive(CDNOW, [0, 0], [0.0, 0.0], [1.0, 300.0]).tolist() == [1.0, 1.0]
    # the longer a repeat buyer has been silent, the less likely they are still active
    alive = clvmath.bgnbd_p_alive(CDNOW, [3] * 4, [10.0] * 4, [10.0, 20.0, 40.0, 80.0])
    assert alive[0] > alive[1] > alive[2] > alive[3] > 0.0
    assert alive[0] == pytest.approx(1 / (1 + CDNOW.a / (CDNOW.b + 2)))


@hypothesis_settings(max_examples=50)
@given(x=st.integers(0, 40), share=st.floats(0.0, 1.0), T=st.floats(1.0, 200.0))
def test_conditional_expected_purchases_grow_with_the_horizon(x: int, share: float, T: float) -> None:
    t_x = 0.0 if x == 0 else T * share
    horizons = np.array([1.0, 5.0, 13.0, 26.0, 52.0, 104.0])
    expected = clvmath.bgnbd_conditional_expected_purchases(CDNOW, horizons, x, t_x, T)
    assert np.all(np.isfinite(expected))
    assert np.all(np.diff(expected) > 0)
    assert expected[0] > 0


def test_a_customer_just_acquired_expects_the_unconditional_purchases() -> None:
    horizons = np.array([4.0, 39.0, 78.0])
    conditional = clvmath.bgnbd_conditional_expected_purchases(CDNOW, horizons, 0, 0.0, 0.0)
    assert conditional == pytest.approx(clvmath.bgnbd_expected_purchases(CDNOW, horizons), rel=1e-9)


def test_the_published_cdnow_example() -> None:
    # FHL 2005, section 4: a customer with x=2, t_x=30.43, T=38.86 weeks is expected to make
    # 1.226 purchases in the next 39 weeks.
    expected = clvmath.bgnbd_conditional_expected_purchases(CDNOW, 39.0, 2, 30.43, 38.86)
    assert float(expected) == pytest.approx(1.226, abs=5e-4)


def test_expected_purchases_match_the_simulated_average() -> None:
    rng = np.random.default_rng(5)
    T = np.full(CUSTOMERS * 2, 39.0)
    x, _t_x = clvmath.simulate_bgnbd(CDNOW, T, rng)
    expected = float(clvmath.bgnbd_expected_purchases(CDNOW, 39.0))
    standard_error = float(np.std(x)) / math.sqrt(len(x))
    assert abs(float(np.mean(x)) - expected) < 4 * standard_error


def test_the_fit_refuses_data_without_repeat_buyers_or_on_one_day() -> None:
    with pytest.raises(FitError) as no_repeat:
        clvmath.bgnbd_fit([0, 0, 0], [0.0, 0.0, 0.0], [5.0, 6.0, 7.0])
    assert no_repeat.value.code == "no_repeat_buyers"
    with pytest.raises(FitError) as one_day:
        clvmath.bgnbd_fit([0, 0], [0.0, 0.0], [0.0, 0.0])
    assert one_day.value.code in {"no_repeat_buyers", "one_day"}
    with pytest.raises(FitError) as inconsistent:
        clvmath.bgnbd_fit([1, 2], [5.0, 9.0], [4.0, 10.0])
    assert inconsistent.value.code == "inconsistent"


# --- Gamma-Gamma ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [7, 2026])
def test_gamma_gamma_recovers_the_cdnow_spend_parameters(seed: int) -> None:
    # given 20,000 repeat buyers with 1 to about 8 repeat transactions
    rng = np.random.default_rng(seed)
    x = rng.poisson(2.0, CUSTOMERS) + 1
    m = clvmath.simulate_gamma_gamma(CDNOW_SPEND, x, rng)
    # when
    fit = clvmath.gamma_gamma_fit(x, m)
    # then
    errors = _relative_errors(fit.params.as_dict(), CDNOW_SPEND.as_dict())
    assert all(errors[name] < TOLERANCE[name] for name in errors), errors
    assert fit.log_likelihood >= clvmath.gamma_gamma_log_likelihood(CDNOW_SPEND, x, m) - 1e-6


def test_gamma_gamma_fit_is_independent_of_the_money_unit() -> None:
    rng = np.random.default_rng(9)
    x = rng.poisson(2.0, 5_000) + 1
    m = clvmath.simulate_gamma_gamma(CDNOW_SPEND, x, rng)
    in_yuan = clvmath.gamma_gamma_fit(x, m).params
    in_fen = clvmath.gamma_gamma_fit(x, m * 100).params
    assert in_fen.p == pytest.approx(in_yuan.p, rel=1e-3)
    assert in_fen.q == pytest.approx(in_yuan.q, rel=1e-3)
    assert in_fen.gamma == pytest.approx(in_yuan.gamma * 100, rel=1e-3)


@hypothesis_settings(max_examples=60)
@given(
    p=st.floats(0.5, 20.0),
    q=st.floats(0.5, 20.0),
    gamma=st.floats(0.5, 100.0),
    x=st.integers(1, 30),
    m=st.floats(0.01, 1_000.0),
)
# a narrow peak that integrating over [0, ∞) missed (CI, stop 11)
@example(p=15.0, q=1.0, gamma=1.0, x=26, m=656.0)
def test_gamma_gamma_likelihood_matches_the_integral(
    p: float, q: float, gamma: float, x: int, m: float
) -> None:
    # the mean of x Gamma(p, ν) values has density Gamma(px, rate xν); integrate ν ~ Gamma(q, γ)
    from scipy import integrate, stats

    def integrand(nu: float) -> float:
        return float(
            stats.gamma.pdf(m, p * x, scale=1.0 / (x * nu)) * stats.gamma.pdf(nu, q, scale=1.0 / gamma)
        )

    # In ν the integrand is a Gamma(px + q, rate xm + γ) kernel; its mass can sit in a band far
    # narrower than quad's first sampling of [0, ∞), so integrate a finite window around its mode.
    shape, rate = p * x + q, x * m + gamma
    centre = (shape - 1) / rate
    spread = math.sqrt(shape) / rate
    lower, upper = max(0.0, centre - 40 * spread), centre + 40 * spread
    reference, _error = integrate.quad(
        integrand,
        lower,
        upper,
        points=[centre] if lower < centre < upper else None,
        limit=400,
        epsabs=0,
        epsrel=1e-10,
    )
    if reference <= 1e-250 or not math.isfinite(reference):
        return
    vectorised = clvmath.gamma_gamma_log_likelihood_terms(GammaGammaParams(p, q, gamma), [x], [m])[0]
    assert vectorised == pytest.approx(math.log(reference), rel=1e-5, abs=1e-5)


def test_expected_spend_shrinks_towards_the_population_mean() -> None:
    params = CDNOW_SPEND
    prior = params.mean_spend
    spend = clvmath.gamma_gamma_expected_spend(params, [0, 1, 10, 1000], [0.0, 100.0, 100.0, 100.0])
    assert spend[0] == pytest.approx(prior)
    assert prior < spend[1] < spend[2] < spend[3] < 100.0
    assert spend[3] == pytest.approx(100.0, rel=0.01)


def test_gamma_gamma_refuses_identical_values() -> None:
    with pytest.raises(FitError) as refused:
        clvmath.gamma_gamma_fit([1, 2, 3], [50.0, 50.0, 50.0])
    assert refused.value.code == "no_variation"


# --- CLV -----------------------------------------------------------------------------------------
def test_clv_is_discounted_monthly_purchases_times_expected_spend() -> None:
    x, t_x, T, m = [2, 0], [30.0, 0.0], [60.0, 60.0], [80.0, 0.0]
    purchases = BgNbdParams(r=0.8, alpha=60.0, a=0.7, b=3.0)
    undiscounted = clvmath.customer_lifetime_value(
        purchases, CDNOW_SPEND, x=x, t_x=t_x, T=T, m=m, months=12, monthly_discount=0.0
    )
    year = clvmath.bgnbd_conditional_expected_purchases(purchases, 12 * clvmath.DAYS_PER_MONTH, x, t_x, T)
    spend = clvmath.gamma_gamma_expected_spend(CDNOW_SPEND, x, m)
    assert undiscounted == pytest.approx(year * spend, rel=1e-9)
    discounted = clvmath.customer_lifetime_value(
        purchases, CDNOW_SPEND, x=x, t_x=t_x, T=T, m=m, months=12, monthly_discount=0.01
    )
    assert np.all(discounted < undiscounted)
    assert np.all(discounted > undiscounted / 1.01**12)
