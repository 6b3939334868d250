"""Batch means (`hatif.sim.batches`): the confidence half-widths both simulators report."""

from __future__ import annotations

import math

import pytest

from hatif.sim.batches import Estimate, estimates, half_width, student_t_975


def test_student_t_table_and_beyond() -> None:
    assert student_t_975(1) == 12.706
    assert student_t_975(30) == 2.042
    assert 1.96 < student_t_975(1000) < student_t_975(31) < 2.042
    with pytest.raises(ValueError, match="at least 1"):
        student_t_975(0)


def test_half_width_of_batch_values() -> None:
    assert math.isnan(half_width([]))
    assert math.isnan(half_width([0.5, math.nan]))  # one value left: not estimable
    assert half_width([0.5, 0.5, 0.5]) == 0.0
    # two batches 0 and 1: mean 0.5, s = sqrt(0.5), half-width t(1) * s / sqrt(2) = 12.706 / 2
    assert half_width([0.0, 1.0, math.nan]) == pytest.approx(12.706 / 2)


def test_estimates_pair_each_figure_with_its_batches() -> None:
    sl, asa, abandoned, waited = estimates((0.8, 12.0, 0.05, 0.4), [(0.7, 10.0, 0.05, 0.4), (0.9, 14.0, 0.05, 0.4)])
    assert sl.value == 0.8 and sl.half_width == pytest.approx(12.706 * 0.1)
    assert asa == Estimate(12.0, pytest.approx(12.706 * 2.0))
    assert abandoned == Estimate(0.05, 0.0) and waited == Estimate(0.4, 0.0)
