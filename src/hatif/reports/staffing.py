"""Staffing math: Erlang B, Erlang C and Erlang A (FEATURES.md §7, "how many agents a forecast needs").

Traffic is given as the offered *load* in Erlangs, `a = arrival rate x mean handle time` (100 calls in
30 minutes of 3-minute calls is 10 Erlangs), with `mean_handle` in seconds to turn rates into times.

* Erlang B (A. K. Erlang, 1917): the M/M/n/n loss system, computed with the recursion
  `1/B(k) = 1 + (k/a) / B(k-1)` carried in log space, so it neither overflows nor underflows.
* Erlang C (Erlang, 1917; e.g. Gross & Harris, *Fundamentals of Queueing Theory*, §2.3): the M/M/n
  queue with patient callers. `C = 1 / (1 + (1 - rho) (1/B - 1))`, `P(W <= t) = 1 - C exp(-(n - a) t / h)`,
  `ASA = C h / (n - a)`.
* Erlang A (Palm, 1943/1946): M/M/n+M, callers abandon after an exponential patience of mean `p`.
  With `x = n p / h` and `y = a p / h`, Garnett, Mandelbaum & Reiman, "Designing a call center with
  impatient customers", MSOM 4(3), 2002, give `A(x, y) = x e^y y^-x gamma(x, y)`,
  `P(W > 0) = A B / (1 + (A - 1) B)` and `P(Ab | W > 0) = 1/(rho A) + 1 - 1/rho`; see also Mandelbaum &
  Zeltyn, "The Palm/Erlang-A queue, with applications to call centers" (2007). The service level uses
  the offered wait `V` of a waiting caller, `P(V > t | V > 0) = gamma(x, y e^(-t/p)) / gamma(x, y)`:
  with `k` callers ahead `V` is a sum of exponentials of rates `(x + i)/p`, i = 0..k, which is
  `-p log` of a Beta(x, k + 1) variable; averaging over the queue length gives the closed forms below.

The lower incomplete gamma function is evaluated in log space by its power series below `a + 1` and by
Legendre's continued fraction for the upper function above (Abramowitz & Stegun 6.5.29 and 6.5.31).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-16
_MAX_TERMS = 1_000_000


def _check(agents: int, load: float) -> None:
    if agents < 0:
        raise ValueError(f"agents must not be negative, not {agents}")
    if load < 0 or not math.isfinite(load):
        raise ValueError(f"load must be a finite number of Erlangs >= 0, not {load}")


def _log_inverse_erlang_b(agents: int, load: float) -> float:
    """log(1 / B(agents, load)) by the recursion 1/B(k) = 1 + (k/a) / B(k-1), in log space."""
    log_inv = 0.0
    log_load = math.log(load)
    for k in range(1, agents + 1):
        v = math.log(k) - log_load + log_inv
        log_inv = v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))
    return log_inv


def erlang_b(agents: int, load: float) -> float:
    """Probability that a call finds all `agents` busy and is lost (M/M/n/n)."""
    _check(agents, load)
    if load == 0:
        return 0.0 if agents > 0 else 1.0
    return math.exp(-_log_inverse_erlang_b(agents, load))


def _erlang_c_from_b(agents: int, load: float, log_inv_b: float) -> float:
    rho = load / agents
    if log_inv_b > 700:  # 1/B - 1 == 1/B to double precision
        return math.exp(-log_inv_b - math.log1p(-rho))
    return 1.0 / (1.0 + (1.0 - rho) * math.expm1(log_inv_b))


def erlang_c(agents: int, load: float) -> float:
    """Probability that a call has to wait (M/M/n); 1 when the load reaches the number of agents."""
    _check(agents, load)
    if load == 0:
        return 0.0
    if agents <= load:
        return 1.0
    return _erlang_c_from_b(agents, load, _log_inverse_erlang_b(agents, load))


def service_level(agents: int, load: float, mean_handle: float, answer_within: float) -> float:
    """Erlang C service level: the share of calls answered within `answer_within` seconds, P(W <= t)."""
    _check_times(mean_handle, answer_within)
    if agents <= load:
        return 0.0 if load > 0 else 1.0
    return 1.0 - erlang_c(agents, load) * math.exp(-(agents - load) * answer_within / mean_handle)


def average_speed_of_answer(agents: int, load: float, mean_handle: float) -> float:
    """Erlang C mean wait over all calls (ASA) in seconds; infinite when agents <= load."""
    _check_times(mean_handle, 0.0)
    if agents <= load:
        return math.inf if load > 0 else 0.0
    return erlang_c(agents, load) * mean_handle / (agents - load)


def occupancy(agents: int, load: float) -> float:
    """Share of logged-in time agents spend on calls, load / agents (capped at 1)."""
    _check(agents, load)
    if agents == 0:
        raise ValueError("occupancy of zero agents is undefined")
    return min(1.0, load / agents)


def agents_for_service_level(load: float, mean_handle: float, answer_within: float, target: float, *,
                             max_occupancy: float = 1.0) -> int:
    """The fewest agents whose Erlang C service level reaches `target` (e.g. 0.8 within 20 s).

    `max_occupancy` (e.g. 0.85) adds the usual cap on how busy agents may be.
    """
    _check(0, load)
    _check_times(mean_handle, answer_within)
    if not 0 < target < 1:
        raise ValueError(f"target service level must be between 0 and 1 (exclusive), not {target}")
    if not 0 < max_occupancy <= 1:
        raise ValueError(f"max_occupancy must be in (0, 1], not {max_occupancy}")
    if load == 0:
        return 0
    agents = max(1, math.floor(load / max_occupancy))
    while agents <= load or load / agents > max_occupancy:
        agents += 1
    log_inv_b = _log_inverse_erlang_b(agents, load)
    log_load = math.log(load)
    while True:
        c = _erlang_c_from_b(agents, load, log_inv_b)
        if 1.0 - c * math.exp(-(agents - load) * answer_within / mean_handle) >= target:
            return agents
        agents += 1
        v = math.log(agents) - log_load + log_inv_b
        log_inv_b = v + math.log1p(math.exp(-v))


def _check_times(mean_handle: float, answer_within: float) -> None:
    if mean_handle <= 0:
        raise ValueError(f"mean_handle must be positive seconds, not {mean_handle}")
    if answer_within < 0:
        raise ValueError(f"answer_within must not be negative, not {answer_within}")


# --- Erlang A ------------------------------------------------------------------------------------

def log_lower_gamma_regularized(a: float, x: float) -> float:
    """log P(a, x), with P(a, x) = gamma(a, x) / Gamma(a) the regularized lower incomplete gamma function."""
    if a <= 0:
        raise ValueError(f"incomplete gamma needs a > 0, not {a}")
    if x <= 0:
        return -math.inf
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # power series, A&S 6.5.29: gamma(a, x) = e^-x x^a sum x^n / (a (a+1) ... (a+n))
        term = total = 1.0 / a
        for n in range(1, _MAX_TERMS):
            term *= x / (a + n)
            total += term
            if term < total * _EPS:
                return log_prefix + math.log(total)
        raise ArithmeticError(f"incomplete gamma series did not converge for a={a}, x={x}")
    # Continued fraction for the upper function, A&S 6.5.31, evaluated by the modified Lentz method.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = d if abs(d) > tiny else tiny
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            upper = math.exp(log_prefix) * h
            return math.log1p(-upper) if upper < 1.0 else -math.inf
    raise ArithmeticError(f"incomplete gamma continued fraction did not converge for a={a}, x={x}")


@dataclass(frozen=True, slots=True)
class ErlangA:
    """Performance of an M/M/n+M queue (Erlang A); build it with `erlang_a`.

    `p_wait` is the share of calls that find every agent busy, `p_abandon` the share that hang up before
    being answered, `mean_wait` the mean time in queue over all calls (answered or not: P(Ab) x patience,
    by Little's law), `asa` the mean wait of the answered ones, `occupancy` the agents' busy share.
    """

    agents: int
    load: float
    mean_handle: float
    mean_patience: float
    p_wait: float
    p_abandon: float
    mean_wait: float
    asa: float
    occupancy: float

    def service_level(self, answer_within: float) -> float:
        """Calls answered within `answer_within` seconds over calls offered (abandoned ones count as missed)."""
        if answer_within < 0:
            raise ValueError(f"answer_within must not be negative, not {answer_within}")
        if self.p_wait == 0:
            return 1.0
        x, y = _xy(self.agents, self.load, self.mean_handle, self.mean_patience)
        z = math.exp(-answer_within / self.mean_patience)
        log_p = log_lower_gamma_regularized(x, y)
        served_within = (x / y) * (math.exp(log_lower_gamma_regularized(x + 1, y) - log_p)
                                   - math.exp(log_lower_gamma_regularized(x + 1, y * z) - log_p))
        return (1.0 - self.p_wait) + self.p_wait * max(0.0, served_within)


def _xy(agents: int, load: float, mean_handle: float, mean_patience: float) -> tuple[float, float]:
    return agents * mean_patience / mean_handle, load * mean_patience / mean_handle


def erlang_a(agents: int, load: float, mean_handle: float, mean_patience: float) -> ErlangA:
    """Erlang A for `agents`, `load` Erlangs, handle and patience means in seconds (any load, even > agents)."""
    _check(agents, load)
    _check_times(mean_handle, 0.0)
    if agents < 1:
        raise ValueError("Erlang A needs at least one agent")
    if mean_patience <= 0:
        raise ValueError(f"mean_patience must be positive seconds, not {mean_patience}")
    if load == 0:
        return ErlangA(agents, load, mean_handle, mean_patience, 0.0, 0.0, 0.0, 0.0, 0.0)
    x, y = _xy(agents, load, mean_handle, mean_patience)
    rho = load / agents
    log_a = math.log(x) + y - x * math.log(y) + math.lgamma(x) + log_lower_gamma_regularized(x, y)
    log_inv_b = _log_inverse_erlang_b(agents, load)
    log_inv_b_minus_1 = log_inv_b + math.log(-math.expm1(-log_inv_b))
    ratio = log_inv_b_minus_1 - log_a
    p_wait = 0.0 if ratio > 700 else 1.0 / (1.0 + math.exp(ratio))
    served_given_wait = min(1.0, max(0.0, -math.expm1(-log_a) / rho))
    p_abandon = p_wait * (1.0 - served_given_wait)
    asa_given_wait = _served_wait_given_wait(x, y, log_a) * mean_patience
    served = 1.0 - p_abandon
    asa = p_wait * asa_given_wait / served if served > 0 else math.inf
    return ErlangA(agents, load, mean_handle, mean_patience, p_wait, p_abandon, p_abandon * mean_patience, asa,
                   min(1.0, load * served / agents))


def _served_wait_given_wait(x: float, y: float, log_a: float) -> float:
    """E[V; answered | V > 0] in units of the mean patience.

    With k callers ahead (probability y^k / ((x+1)...(x+k)) / A), E[V e^-V] = x/(x+k+1) sum_{i=1..k+1} 1/(x+i):
    differentiate the Laplace transform prod (x+i)/(x+i+s) of the sum of exponentials at s = 1.
    """
    total = 0.0
    log_q = -log_a  # log of the probability of k ahead, k = 0
    harmonic = 0.0
    mode = max(0.0, y - x)
    for k in range(_MAX_TERMS):
        harmonic += 1.0 / (x + k + 1)
        term = math.exp(log_q) * x / (x + k + 1) * harmonic
        total += term
        if k > mode and term < total * _EPS:
            return total
        log_q += math.log(y) - math.log(x + k + 1)
    raise ArithmeticError(f"Erlang A wait series did not converge for x={x}, y={y}")
