"""Erlang B, C and A against references computed here another way: exact fractions, state sums, quadrature."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest

from hatif.reports.staffing import (
    agents_for_service_level,
    average_speed_of_answer,
    erlang_a,
    erlang_b,
    erlang_c,
    log_lower_gamma_regularized,
    occupancy,
    service_level,
)

# --- references ----------------------------------------------------------------------------------


def exact_erlang_b(n: int, a: Fraction) -> Fraction:
    """B = (a^n / n!) / sum_k a^k / k!, in exact arithmetic."""
    terms = [a**k / math.factorial(k) for k in range(n + 1)]
    return terms[n] / sum(terms)


def exact_erlang_c(n: int, a: Fraction) -> Fraction:
    """C = (a^n / n! * n / (n - a)) / (sum_{k<n} a^k / k! + a^n / n! * n / (n - a))."""
    top = a**n / math.factorial(n) * n / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def state_probabilities(n: int, a: float, handle: float, patience: float) -> list[float]:
    """Stationary law of the M/M/n+M birth-death chain: birth rate lambda, death rate min(j,n) mu + (j-n)+ theta."""
    lam, mu, theta = a / handle, 1 / handle, 1 / patience
    weights = [1.0]
    j = 0
    while True:
        j += 1
        weights.append(weights[-1] * lam / (min(j, n) * mu + max(j - n, 0) * theta))
        if j > n and weights[-1] < 1e-20 * max(weights):
            break
    total = math.fsum(weights)
    return [w / total for w in weights]


def simpson(f: Callable[[float], float], lo: float, hi: float, intervals: int = 20_000) -> float:
    h = (hi - lo) / intervals
    inner = math.fsum((4 if i % 2 else 2) * f(lo + i * h) for i in range(1, intervals))
    return h / 3 * (f(lo) + f(hi) + inner)


def waiting_density(n: int, a: float, handle: float, patience: float) -> Callable[[float], float]:
    """Density of B = exp(-V / patience) for a caller who waits: x e^(y(1-u)) u^(x-1) / A(x, y)."""
    x, y = n * patience / handle, a * patience / handle
    terms, k, term = [], 0, 1.0
    while True:  # A(x, y) = sum_k y^k / ((x+1)...(x+k)), summed directly
        terms.append(term)
        k += 1
        term *= y / (x + k)
        if k > y - x and term < 1e-18 * sum(terms):
            break
    big_a = math.fsum(terms)
    return lambda u: x * math.exp(y * (1 - u) + (x - 1) * math.log(u)) / big_a if u > 0 else 0.0


# --- Erlang B and C ------------------------------------------------------------------------------

CASES = [(1, Fraction(1, 2)), (2, Fraction(3, 2)), (12, Fraction(10)), (14, Fraction(10)), (50, Fraction(45)),
         (100, Fraction(181, 2)), (300, Fraction(280))]


@pytest.mark.parametrize(("n", "a"), CASES)
def test_erlang_b_and_c_match_exact_arithmetic(n: int, a: Fraction) -> None:
    assert erlang_b(n, float(a)) == pytest.approx(float(exact_erlang_b(n, a)), rel=1e-11)
    assert erlang_c(n, float(a)) == pytest.approx(float(exact_erlang_c(n, a)), rel=1e-11)


def test_textbook_example_ten_erlangs_twelve_agents() -> None:
    # 100 calls in 30 minutes, 3-minute calls: 10 Erlangs. With 12 agents (the usual worked example):
    assert erlang_c(12, 10.0) == pytest.approx(0.4494, abs=5e-5)
    assert service_level(12, 10.0, 180.0, 20.0) == pytest.approx(0.6402, abs=5e-5)
    assert average_speed_of_answer(12, 10.0, 180.0) == pytest.approx(40.44, abs=5e-3)
    assert occupancy(12, 10.0) == pytest.approx(10 / 12)
    # The same from the exact C: P(W <= 20) = 1 - C exp(-(12 - 10) 20 / 180), ASA = C 180 / 2.
    c = float(exact_erlang_c(12, Fraction(10)))
    assert service_level(12, 10.0, 180.0, 20.0) == pytest.approx(1 - c * math.exp(-40 / 180), rel=1e-12)
    assert average_speed_of_answer(12, 10.0, 180.0) == pytest.approx(c * 90, rel=1e-12)


def test_agents_needed_for_a_service_level() -> None:
    def brute_force(a: int, target: float, cap: float = 1.0) -> int:
        n = a + 1
        while (1 - float(exact_erlang_c(n, Fraction(a))) * math.exp(-(n - a) * 20 / 180) < target
               or a / n > cap):
            n += 1
        return n

    assert agents_for_service_level(10.0, 180.0, 20.0, 0.8) == brute_force(10, 0.8) == 14
    for a, target in [(1, 0.8), (5, 0.9), (25, 0.8), (60, 0.95)]:
        assert agents_for_service_level(float(a), 180.0, 20.0, target) == brute_force(a, target)
    assert agents_for_service_level(10.0, 180.0, 20.0, 0.8, max_occupancy=0.7) == brute_force(10, 0.8, 0.7) == 15
    assert agents_for_service_level(0.0, 180.0, 20.0, 0.8) == 0


def test_overload_and_edges() -> None:
    assert erlang_c(10, 10.0) == 1.0 and erlang_c(10, 12.0) == 1.0
    assert service_level(10, 12.0, 180.0, 20.0) == 0.0
    assert average_speed_of_answer(10, 12.0, 180.0) == math.inf
    assert erlang_b(0, 3.0) == 1.0 and erlang_b(5, 0.0) == 0.0 and erlang_c(5, 0.0) == 0.0
    with pytest.raises(ValueError, match="agents must not be negative"):
        erlang_b(-1, 1.0)
    with pytest.raises(ValueError, match="target service level"):
        agents_for_service_level(10.0, 180.0, 20.0, 1.0)
    with pytest.raises(ValueError, match="mean_handle"):
        service_level(12, 10.0, 0.0, 20.0)


def test_large_centers_stay_finite_and_monotone() -> None:
    # Thousands of agents: the recursion runs in log space, so nothing overflows or turns into nan.
    values = [erlang_b(n, 4900.0) for n in range(4800, 5200, 20)]
    assert all(0 < v < 1 for v in values) and values == sorted(values, reverse=True)
    waits = [erlang_c(n, 4900.0) for n in range(4901, 5200, 20)]
    assert all(0 <= v <= 1 for v in waits) and waits == sorted(waits, reverse=True)
    assert 0 < erlang_b(100_000, 90_000.0) < 1e-100
    assert erlang_b(2000, 10.0) == 0.0  # below the smallest double: exactly 0, not an error
    assert erlang_c(5000, 100.0) == 0.0
    n = agents_for_service_level(5000.0, 180.0, 20.0, 0.8)
    assert 5000 < n < 5200 and service_level(n, 5000.0, 180.0, 20.0) >= 0.8 > service_level(n - 1, 5000.0, 180.0, 20.0)


# --- incomplete gamma ----------------------------------------------------------------------------

@pytest.mark.parametrize("a", [1, 3, 10, 50])
@pytest.mark.parametrize("x", [0.5, 2.0, 9.5, 12.0, 60.0])
def test_incomplete_gamma_for_integer_order(a: int, x: float) -> None:
    # For integer a, P(a, x) = 1 - e^-x sum_{k<a} x^k / k! (the Poisson tail).
    reference = math.fsum(math.exp(-x + k * math.log(x) - math.lgamma(k + 1)) for k in range(a, a + 400))
    assert math.exp(log_lower_gamma_regularized(a, x)) == pytest.approx(reference, rel=1e-10)


def test_incomplete_gamma_for_half_order_is_erf() -> None:
    for x in (0.1, 1.0, 4.0):
        assert math.exp(log_lower_gamma_regularized(0.5, x)) == pytest.approx(math.erf(math.sqrt(x)), rel=1e-12)
    assert log_lower_gamma_regularized(3.0, 0.0) == -math.inf
    assert log_lower_gamma_regularized(3000.0, 1000.0) < -700  # far below a double, still a finite log


# --- Erlang A ------------------------------------------------------------------------------------

ERLANG_A_CASES = [(12, 10.0, 180.0, 300.0), (12, 15.0, 180.0, 300.0), (30, 25.0, 240.0, 120.0),
                  (5, 3.0, 300.0, 600.0), (100, 95.0, 200.0, 100.0)]


@pytest.mark.parametrize(("n", "a", "handle", "patience"), ERLANG_A_CASES)
def test_erlang_a_matches_the_birth_death_chain(n: int, a: float, handle: float, patience: float) -> None:
    pi = state_probabilities(n, a, handle, patience)
    p_wait = math.fsum(pi[n:])
    p_abandon = math.fsum((j - n) * p for j, p in enumerate(pi) if j > n) / patience / (a / handle)
    result = erlang_a(n, a, handle, patience)
    assert result.p_wait == pytest.approx(p_wait, rel=1e-9)
    assert result.p_abandon == pytest.approx(p_abandon, rel=1e-9)
    assert result.mean_wait == pytest.approx(p_abandon * patience, rel=1e-9)  # Little's law
    busy = math.fsum(min(j, n) * p for j, p in enumerate(pi)) / n
    assert result.occupancy == pytest.approx(busy, rel=1e-9)


@pytest.mark.parametrize(("n", "a", "handle", "patience"), ERLANG_A_CASES[:4])
def test_erlang_a_service_level_and_asa_by_quadrature(n: int, a: float, handle: float, patience: float) -> None:
    result = erlang_a(n, a, handle, patience)
    density = waiting_density(n, a, handle, patience)
    for t in (0.0, 20.0, 60.0):
        z = math.exp(-t / patience)
        # Answered within t among those who wait: E[B; B >= z] with B = exp(-V / patience) (answered
        # with probability B, the chance patience outlasts V).
        answered_within = simpson(lambda u: u * density(u), z, 1.0)
        assert result.service_level(t) == pytest.approx(1 - result.p_wait + result.p_wait * answered_within,
                                                        abs=1e-9)
    served_wait = patience * simpson(lambda u: -math.log(u) * u * density(u) if u > 0 else 0.0, 0.0, 1.0)
    assert result.asa == pytest.approx(result.p_wait * served_wait / (1 - result.p_abandon), rel=1e-6)


def test_erlang_a_with_patience_equal_to_handle_is_an_infinite_server_system() -> None:
    # theta = mu: every caller present leaves at rate mu, served or not, so the number present is Poisson(a).
    a, n = 10.0, 12
    poisson = [math.exp(-a + k * math.log(a) - math.lgamma(k + 1)) for k in range(200)]
    result = erlang_a(n, a, 180.0, 180.0)
    assert result.p_wait == pytest.approx(math.fsum(poisson[n:]), rel=1e-12)
    assert result.p_abandon == pytest.approx(math.fsum((k - n) * p for k, p in enumerate(poisson) if k > n) / a,
                                             rel=1e-12)


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    result = erlang_a(12, 10.0, 180.0, 1e9)
    assert result.p_wait == pytest.approx(erlang_c(12, 10.0), rel=1e-6)
    assert result.service_level(20.0) == pytest.approx(service_level(12, 10.0, 180.0, 20.0), rel=1e-6)
    assert result.asa == pytest.approx(average_speed_of_answer(12, 10.0, 180.0), rel=1e-5)
    assert result.p_abandon < 1e-6


def test_erlang_a_overload_abandons_the_excess() -> None:
    # Far more work than agents and very patient callers: the excess load 1 - 1/rho abandons (fluid limit).
    result = erlang_a(1000, 1100.0, 180.0, 30_000.0)
    assert result.p_wait == pytest.approx(1.0)
    assert result.p_abandon == pytest.approx(1 - 1000 / 1100, rel=1e-3)
    assert result.occupancy == pytest.approx(1.0, abs=1e-3)
    service = [result.service_level(t) for t in (0.0, 1e3, 1e4, 1e5)]
    assert service == sorted(service)
    with pytest.raises(ValueError, match="mean_patience"):
        erlang_a(10, 5.0, 180.0, 0.0)
