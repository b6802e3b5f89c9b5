"""Bjøntegaard delta rate (BD-rate) and related rate-quality curve helpers.

Method
------
G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves",
ITU-T SG16 Q.6 VCEG-M33, Austin, 2001, compares two rate-distortion curves by
fitting log(rate) as a function of quality for each curve, integrating both
fits over the quality interval where the curves overlap and turning the mean
log-rate difference into a percentage.  M33 fits one cubic polynomial through
four points; the later recommendation (VCEG-AL22 / JCTVC common test
conditions) replaces the polynomial with a *piecewise cubic* monotone
(Fritsch-Carlson, SIAM J. Numer. Anal. 17(2), 1980) interpolant, which neither
overshoots between points nor depends on exactly four points.  That second
variant is implemented here:

    BD-rate = 10 ** ( (1 / (q_hi - q_lo)) * integral_{q_lo}^{q_hi}
                      [log10 R_b(q) - log10 R_a(q)] dq ) - 1      (x 100 %)

with [q_lo, q_hi] the overlap of the quality ranges of the two curves.  A
negative value means curve *b* needs fewer bits than curve *a* for the same
quality.  The interpolant is integrated exactly (closed form of the cubic
Hermite basis), so a curve whose rates are all multiplied by a constant c
yields exactly (c - 1) x 100 %.

Only numpy is used. The RD benchmark (tools/rd_benchmark.py) and the tests import it from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_rate", "bd_quality", "monotone_curve", "pchip_slopes", "pchip_eval", "pchip_integral", "rate_at_quality"]


def monotone_curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Return (log10 rate, quality) sorted by rate, keeping only points that raise quality.

    Real measurements are occasionally non-monotone (a higher-rate point with
    equal or lower quality, e.g. when a metric saturates).  Such a point is
    dominated by a cheaper one, so it is dropped; the remaining curve has strictly
    increasing quality and can be used as a function log-rate(quality).
    Points with non-positive or non-finite rate/quality are ignored.
    """
    r = np.asarray(rates, dtype=float)
    q = np.asarray(quality, dtype=float)
    if r.shape != q.shape:
        raise ValueError("rates and quality must have the same length")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((q, r))  # by rate, then quality
    r, q = r[order], q[order]
    keep_r: list[float] = []
    keep_q: list[float] = []
    for ri, qi in zip(r, q, strict=True):
        if keep_q and qi <= keep_q[-1]:
            continue
        keep_r.append(ri)
        keep_q.append(qi)
    return np.log10(np.array(keep_r)), np.array(keep_q)


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the monotone piecewise cubic Hermite interpolant.

    Fritsch & Carlson (1980) with the weighted harmonic mean of Fritsch & Butland
    (1984) for interior knots and the one-sided three-point formula, limited to
    keep monotonicity, at the two ends.  x must be strictly increasing.
    """
    n = len(x)
    if n < 2:
        raise ValueError("need at least two points")
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        a, b = delta[k - 1], delta[k]
        if a == 0.0 or b == 0.0 or (a > 0) != (b > 0):
            d[k] = 0.0
        else:
            w1 = 2.0 * h[k] + h[k - 1]
            w2 = h[k] + 2.0 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / a + w2 / b)

    def end(h0: float, h1: float, del0: float, del1: float) -> float:
        s = ((2.0 * h0 + h1) * del0 - h0 * del1) / (h0 + h1)
        if (s > 0) != (del0 > 0) or s == 0.0:
            return 0.0
        if (del0 > 0) != (del1 > 0) and abs(s) > abs(3.0 * del0):
            return 3.0 * del0
        return s

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _segment(x: np.ndarray, v: float) -> int:
    k = int(np.searchsorted(x, v, side="right") - 1)
    return min(max(k, 0), len(x) - 2)


def pchip_eval(x: np.ndarray, y: np.ndarray, d: np.ndarray, v: float) -> float:
    """Evaluate the Hermite interpolant (knots x, values y, slopes d) at v."""
    k = _segment(x, v)
    h = x[k + 1] - x[k]
    t = (v - x[k]) / h
    h00 = 2 * t**3 - 3 * t**2 + 1
    h10 = t**3 - 2 * t**2 + t
    h01 = -2 * t**3 + 3 * t**2
    h11 = t**3 - t**2
    return float(h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1])


def _antiderivative(t: float) -> tuple[float, float, float, float]:
    # closed-form integrals from 0 to t of the four cubic Hermite basis functions
    return (t**4 / 2 - t**3 + t, t**4 / 4 - 2 * t**3 / 3 + t**2 / 2, -(t**4) / 2 + t**3, t**4 / 4 - t**3 / 3)


def pchip_integral(x: np.ndarray, y: np.ndarray, d: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral of the Hermite interpolant over [lo, hi] (inside [x[0], x[-1]])."""
    if hi < lo:
        return -pchip_integral(x, y, d, hi, lo)
    total = 0.0
    for k in range(len(x) - 1):
        a = max(lo, x[k])
        b = min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        ta, tb = (a - x[k]) / h, (b - x[k]) / h
        Fa, Fb = _antiderivative(ta), _antiderivative(tb)
        w = [Fb[i] - Fa[i] for i in range(4)]
        total += h * (w[0] * y[k] + w[1] * h * d[k] + w[2] * y[k + 1] + w[3] * h * d[k + 1])
    return total


def _mean_gap(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray) -> float:
    """Mean of yb - ya over the overlap of the two (increasing) x ranges, each curve a monotone
    piecewise cubic; NaN with fewer than two points on a curve or no overlap."""
    if len(xa) < 2 or len(xb) < 2:
        return math.nan
    lo = max(xa[0], xb[0])
    hi = min(xa[-1], xb[-1])
    if not hi > lo:
        return math.nan
    ia = pchip_integral(xa, ya, pchip_slopes(xa, ya), lo, hi)
    ib = pchip_integral(xb, yb, pchip_slopes(xb, yb), lo, hi)
    return (ib - ia) / (hi - lo)


def bd_rate(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> float:
    """BD-rate of curve b against anchor a, in percent (negative: b saves bits).

    Returns NaN when a curve has fewer than two usable points or the quality
    ranges do not overlap.
    """
    la, qa = monotone_curve(rates_a, quality_a)
    lb, qb = monotone_curve(rates_b, quality_b)
    return (10.0 ** _mean_gap(qa, la, qb, lb) - 1.0) * 100.0


def bd_quality(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> float:
    """BD-quality (e.g. BD-PSNR, BD-VMAF): mean quality gain of b over a at equal log-rate.

    Same method with the roles of the axes swapped (quality as a function of log-rate).
    """
    la, qa = monotone_curve(rates_a, quality_a)
    lb, qb = monotone_curve(rates_b, quality_b)
    return _mean_gap(la, qa, lb, qb)


def rate_at_quality(rates: Sequence[float], quality: Sequence[float], target: float) -> float:
    """Rate needed to reach `target` quality, interpolated (monotone cubic) in log-rate.

    NaN when the target lies outside the measured quality range (no extrapolation).
    """
    lr, q = monotone_curve(rates, quality)
    if len(q) == 0 or target < q[0] or target > q[-1]:
        return math.nan
    if len(q) == 1:
        return float(10.0 ** lr[0])
    return float(10.0 ** pchip_eval(q, lr, pchip_slopes(q, lr), target))
