"""Batch means: each simulated figure with the half-width of its 95 % confidence interval.

The counted calls of a run are cut, in arrival order, into consecutive batches whose figures are treated
as independent samples of the figure (Law & Kelton, *Simulation Modeling and Analysis*, §9.5.3); the
fast and the live simulator both report their figures this way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Estimate:
    """A simulated figure and the half-width of its 95 % confidence interval (nan: not estimable)."""

    value: float
    half_width: float


_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)
"""Student's t 0.975 quantiles for 1..30 degrees of freedom."""


def student_t_975(df: int) -> float:
    """The 0.975 quantile of Student's t (table to 30 degrees of freedom, Cornish-Fisher beyond)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, not {df}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df)


def half_width(values: Iterable[float]) -> float:
    """The 95 % confidence half-width of the mean of batch values (nan with fewer than two)."""
    xs = [v for v in values if not math.isnan(v)]
    if len(xs) < 2:
        return math.nan
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return student_t_975(len(xs) - 1) * math.sqrt(var / len(xs))


Figures = tuple[float, float, float, float]
"""Service level, ASA, abandonment rate and the share that waited, of one set of calls."""


def estimates(overall: Figures, per_batch: Sequence[Figures]) -> tuple[Estimate, Estimate, Estimate, Estimate]:
    """The four figures of all the counted calls, each with its half-width from the batches' figures."""
    sl, asa, abandoned, waited = (Estimate(value, half_width([b[i] for b in per_batch]))
                                  for i, value in enumerate(overall))
    return sl, asa, abandoned, waited
