"""Unit tests for the Bjøntegaard delta implementation in snisd/bdrate.py (no media needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from snisd.bdrate import bd_quality, bd_rate, monotone_curve, pchip_eval, pchip_integral, pchip_slopes, rate_at_quality


def _curve(q):
    # a smooth, strictly increasing, non-polynomial log-rate(quality) relation
    q = np.asarray(q, dtype=float)
    return 50.0 * np.exp(q / 9.0) + 3.0 * q


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_constant_rate_factor_gives_exact_bd_rate(factor):
    q = [62.0, 71.0, 79.5, 86.0, 91.0, 95.5]
    ra = _curve(q)
    rb = ra * factor
    assert bd_rate(ra, q, rb, q) == pytest.approx((factor - 1.0) * 100.0, abs=1e-9)
    # swapping anchor and test inverts the factor
    assert bd_rate(rb, q, ra, q) == pytest.approx((1.0 / factor - 1.0) * 100.0, abs=1e-9)


def test_shifted_loglinear_curve_sampled_at_different_qualities():
    # log10 R = 0.05 q + 1 is reproduced exactly by the monotone cubic interpolant,
    # so the two curves may be sampled at different quality points.
    qa = np.array([30.0, 33.0, 37.0, 40.0, 44.0])
    qb = np.array([31.0, 34.5, 36.0, 41.0, 43.0, 46.0])
    ra = 10 ** (0.05 * qa + 1.0)
    rb = 1.25 * 10 ** (0.05 * qb + 1.0)
    assert bd_rate(ra, qa, rb, qb) == pytest.approx(25.0, abs=1e-9)
    # BD-quality: at equal rate, b is lower in quality by log10(1.25) / slope
    assert bd_quality(ra, qa, rb, qb) == pytest.approx(-math.log10(1.25) / 0.05, abs=1e-9)


def test_order_of_points_does_not_matter():
    q = np.array([60.0, 70.0, 80.0, 90.0])
    r = _curve(q)
    perm = [2, 0, 3, 1]
    assert bd_rate(r, q, r[perm] * 0.7, q[perm]) == pytest.approx(-30.0, abs=1e-9)


def test_no_overlap_or_too_few_points_is_nan():
    assert math.isnan(bd_rate([100, 200], [30, 35], [300, 400], [40, 45]))
    assert math.isnan(bd_rate([100], [30], [100, 200], [30, 35]))


def test_dominated_points_are_dropped():
    lr, q = monotone_curve([100, 200, 300, 400], [70, 80, 79, 90])
    assert list(q) == [70, 80, 90]
    assert np.allclose(10**lr, [100, 200, 400])


def test_pchip_matches_knots_is_monotone_and_integrates_exactly():
    x = np.array([0.0, 1.0, 2.5, 3.0, 5.0])
    y = np.array([0.0, 0.3, 2.0, 2.1, 4.0])
    d = pchip_slopes(x, y)
    for xi, yi in zip(x, y, strict=True):
        assert pchip_eval(x, y, d, xi) == pytest.approx(yi, abs=1e-12)
    grid = np.linspace(0.0, 5.0, 501)
    vals = np.array([pchip_eval(x, y, d, g) for g in grid])
    assert np.all(np.diff(vals) >= -1e-12)
    # exact integral vs fine trapezoid rule, on a sub-range crossing several knots
    sub = np.linspace(0.4, 4.2, 1601)
    sv = np.array([pchip_eval(x, y, d, g) for g in sub])
    num = float(np.sum((sv[1:] + sv[:-1]) * np.diff(sub)) / 2.0)
    assert pchip_integral(x, y, d, 0.4, 4.2) == pytest.approx(num, rel=1e-5)


def test_rate_at_quality():
    q = np.array([60.0, 70.0, 80.0, 90.0])
    r = 10 ** (0.02 * q + 1.0)
    assert rate_at_quality(r, q, 85.0) == pytest.approx(10 ** (0.02 * 85 + 1.0), rel=1e-12)
    assert math.isnan(rate_at_quality(r, q, 95.0))
    assert math.isnan(rate_at_quality(r, q, 50.0))


def test_slopes_agree_with_scipy_pchip_when_available():
    interp = pytest.importorskip("scipy.interpolate")
    x = np.array([0.0, 1.0, 2.5, 3.0, 5.0, 6.0])
    y = np.array([0.0, 0.3, 2.0, 2.1, 4.0, 4.2])
    ref = interp.PchipInterpolator(x, y)
    d = pchip_slopes(x, y)
    for g in np.linspace(0.0, 6.0, 97):
        assert pchip_eval(x, y, d, g) == pytest.approx(float(ref(g)), abs=1e-12)
