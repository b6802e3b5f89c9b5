"""Block motion: estimation (encoder) and half-pel compensation (encoder and decoder).

Vectors belong to 32x32 luma macroblocks and are in half-pel units. Estimation is a
3DRS-like candidate search (left, top, top-right and previous-frame vectors, plus zero),
refined by a shrinking diamond at integer pel on a 2:1 subsampled SAD and then at half pel;
each candidate pays lambda times its approximate vector-coding cost against the median
predictor that the entropy coder uses. Compensation is integer arithmetic with edge clamping,
so the prediction is identical on every platform.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .entropy import MB, mv_predictor

INTRA = 1
SEARCH_LIMIT = 128  # half-pels
INTRA_BIAS = 96  # an intra macroblock must beat inter by this many lambda-weighted bits (its DC and texture)


@njit(cache=True, inline="always")
def _clamp(v, hi):
    return 0 if v < 0 else (hi if v > hi else v)


@njit(cache=True, inline="always")
def _half_pel(a, b, c, d, fy, fx):
    """Bilinear half-pel value from the four neighbours a (top-left), b (right), c (below), d."""
    if fy == 0 and fx == 0:
        return a
    if fy == 0:
        return (a + b + 1) >> 1
    if fx == 0:
        return (a + c + 1) >> 1
    return (a + b + c + d + 2) >> 2


@njit(cache=True)
def _luma_sample(ref, y, x, fy, fx):
    h1 = ref.shape[0] - 1
    w1 = ref.shape[1] - 1
    y0 = _clamp(y, h1)
    x0 = _clamp(x, w1)
    y1 = _clamp(y + 1, h1)
    x1 = _clamp(x + 1, w1)
    return _half_pel(np.int32(ref[y0, x0]), np.int32(ref[y0, x1]), np.int32(ref[y1, x0]),
                     np.int32(ref[y1, x1]), fy, fx)


@njit(cache=True)
def _predict_luma_block(ref, y0, x0, size, mvy, mvx, out):
    iy = mvy >> 1
    ix = mvx >> 1
    fy = mvy & 1
    fx = mvx & 1
    h, w = ref.shape
    sy = y0 + iy
    sx = x0 + ix
    if sy >= 0 and sx >= 0 and sy + size + 1 <= h and sx + size + 1 <= w:  # no clamping needed
        for yy in range(size):
            for xx in range(size):
                y = sy + yy
                x = sx + xx
                out[y0 + yy, x0 + xx] = _half_pel(np.int32(ref[y, x]), np.int32(ref[y, x + 1]),
                                                  np.int32(ref[y + 1, x]), np.int32(ref[y + 1, x + 1]), fy, fx)
        return
    for yy in range(size):
        for xx in range(size):
            out[y0 + yy, x0 + xx] = _luma_sample(ref, sy + yy, sx + xx, fy, fx)


@njit(cache=True, inline="always")
def _quarter_pel(a, b, c, d, fy, fx):
    """Bilinear quarter-pel value (weights in 1/16) from the four neighbours, as _half_pel."""
    return ((4 - fx) * (4 - fy) * a + fx * (4 - fy) * b + (4 - fx) * fy * c + fx * fy * d + 8) >> 4


@njit(cache=True)
def _predict_chroma_block(ref, y0, x0, size, mvy, mvx, out):
    # a luma half-pel is a chroma quarter-pel
    iy = mvy >> 2
    ix = mvx >> 2
    fy = mvy & 3
    fx = mvx & 3
    h, w = ref.shape
    sy = y0 + iy
    sx = x0 + ix
    if sy >= 0 and sx >= 0 and sy + size + 1 <= h and sx + size + 1 <= w:  # no clamping needed
        for yy in range(size):
            for xx in range(size):
                y = sy + yy
                x = sx + xx
                out[y0 + yy, x0 + xx] = _quarter_pel(np.int32(ref[y, x]), np.int32(ref[y, x + 1]),
                                                     np.int32(ref[y + 1, x]), np.int32(ref[y + 1, x + 1]), fy, fx)
        return
    h1 = h - 1
    w1 = w - 1
    for yy in range(size):
        ya = _clamp(sy + yy, h1)
        yb = _clamp(sy + yy + 1, h1)
        for xx in range(size):
            xa = _clamp(sx + xx, w1)
            xb = _clamp(sx + xx + 1, w1)
            out[y0 + yy, x0 + xx] = _quarter_pel(np.int32(ref[ya, xa]), np.int32(ref[ya, xb]),
                                                 np.int32(ref[yb, xa]), np.int32(ref[yb, xb]), fy, fx)


@njit(cache=True)
def compensate(mode0, mvs, tier, ry, ru, rv, py, pu, pv):
    """Temporal prediction of every macroblock from one tier's previous reconstruction.

    Intra macroblocks predict flat grey (128) in tier 0; higher tiers predict them from the lower
    tier (see loop.py), so what is written there does not matter.
    """
    mbh, mbw = mode0.shape
    half = MB // 2
    for mby in range(mbh):
        for mbx in range(mbw):
            y0 = mby * MB
            x0 = mbx * MB
            if mode0[mby, mbx] == INTRA:
                py[y0:y0 + MB, x0:x0 + MB] = 128
                pu[mby * half:(mby + 1) * half, mbx * half:(mbx + 1) * half] = 128
                pv[mby * half:(mby + 1) * half, mbx * half:(mbx + 1) * half] = 128
            else:
                mvy = mvs[mby, mbx, 0]
                mvx = mvs[mby, mbx, 1]
                _predict_luma_block(ry, y0, x0, MB, mvy, mvx, py)
                _predict_chroma_block(ru, mby * half, mbx * half, half, mvy, mvx, pu)
                _predict_chroma_block(rv, mby * half, mbx * half, half, mvy, mvx, pv)


# ---------------------------------------------------------------------------------------------
# Estimation


@njit(cache=True)
def _sad_int(cur, ref, y0, x0, dy, dx, sub):
    """SAD of a macroblock at integer displacement (dy, dx), every `sub`-th row and column."""
    h1 = ref.shape[0] - 1
    w1 = ref.shape[1] - 1
    s = 0
    inside = y0 + dy >= 0 and x0 + dx >= 0 and y0 + dy + MB <= h1 and x0 + dx + MB <= w1
    for yy in range(0, MB, sub):
        for xx in range(0, MB, sub):
            if inside:
                r = np.int32(ref[y0 + dy + yy, x0 + dx + xx])
            else:
                r = np.int32(ref[_clamp(y0 + dy + yy, h1), _clamp(x0 + dx + xx, w1)])
            d = np.int32(cur[y0 + yy, x0 + xx]) - r
            s += d if d >= 0 else -d
    return s * sub * sub


@njit(cache=True)
def _sad_half(cur, ref, y0, x0, mvy, mvx, sub):
    iy = mvy >> 1
    ix = mvx >> 1
    fy = mvy & 1
    fx = mvx & 1
    s = 0
    for yy in range(0, MB, sub):
        for xx in range(0, MB, sub):
            d = np.int32(cur[y0 + yy, x0 + xx]) - _luma_sample(ref, y0 + iy + yy, x0 + ix + xx, fy, fx)
            s += d if d >= 0 else -d
    return s * sub * sub


@njit(cache=True)
def _mv_bits(d):
    if d == 0:
        return 1
    a = d if d > 0 else -d
    n = 0
    while a > 0:
        n += 1
        a >>= 1
    return 2 * n + 2


@njit(cache=True)
def estimate(cur, ref, prev_mvs, lam, intra_bias, mvs, mode0):
    """Fill mvs (half-pels) and mode0 (0 inter, 1 intra) for every macroblock of `cur`."""
    mbh, mbw = mode0.shape
    cands = np.zeros((8, 2), np.int64)
    for mby in range(mbh):
        for mbx in range(mbw):
            y0 = mby * MB
            x0 = mbx * MB
            mode0[mby, mbx] = 0
            py = mv_predictor(mvs, mode0, mby, mbx, 0)
            px = mv_predictor(mvs, mode0, mby, mbx, 1)
            n = 0
            cands[n, 0] = 0
            cands[n, 1] = 0
            n += 1
            cands[n, 0] = py
            cands[n, 1] = px
            n += 1
            if mbx > 0:
                cands[n, 0] = mvs[mby, mbx - 1, 0]
                cands[n, 1] = mvs[mby, mbx - 1, 1]
                n += 1
            if mby > 0:
                cands[n, 0] = mvs[mby - 1, mbx, 0]
                cands[n, 1] = mvs[mby - 1, mbx, 1]
                n += 1
                if mbx + 1 < mbw:
                    cands[n, 0] = mvs[mby - 1, mbx + 1, 0]
                    cands[n, 1] = mvs[mby - 1, mbx + 1, 1]
                    n += 1
            cands[n, 0] = prev_mvs[mby, mbx, 0]
            cands[n, 1] = prev_mvs[mby, mbx, 1]
            n += 1
            if mby + 1 < mbh:
                cands[n, 0] = prev_mvs[mby + 1, mbx, 0]
                cands[n, 1] = prev_mvs[mby + 1, mbx, 1]
                n += 1
            if mbx + 1 < mbw:
                cands[n, 0] = prev_mvs[mby, mbx + 1, 0]
                cands[n, 1] = prev_mvs[mby, mbx + 1, 1]
                n += 1
            # best integer candidate (candidates rounded to full pel)
            by, bx, best = 0, 0, np.int64(1) << 60
            for c in range(n):
                cy = (cands[c, 0] >> 1)
                cx = (cands[c, 1] >> 1)
                cost = _sad_int(cur, ref, y0, x0, cy, cx, 2) + lam * (_mv_bits(2 * cy - py) + _mv_bits(2 * cx - px))
                if cost < best:
                    best, by, bx = cost, cy, cx
            # shrinking diamond at integer pel
            step = 8
            while step >= 1:
                for _ in range(4):
                    moved = False
                    for d in range(4):
                        ny = by + (step if d == 0 else (-step if d == 1 else 0))
                        nx = bx + (step if d == 2 else (-step if d == 3 else 0))
                        if ny * 2 > SEARCH_LIMIT or ny * 2 < -SEARCH_LIMIT or nx * 2 > SEARCH_LIMIT or nx * 2 < -SEARCH_LIMIT:
                            continue
                        cost = _sad_int(cur, ref, y0, x0, ny, nx, 2) + lam * (_mv_bits(2 * ny - py) + _mv_bits(2 * nx - px))
                        if cost < best:
                            best, by, bx, moved = cost, ny, nx, True
                    if not moved:
                        break
                step >>= 1
            # half-pel refinement around the integer winner
            hy, hx = 2 * by, 2 * bx
            best = _sad_half(cur, ref, y0, x0, hy, hx, 2) + lam * (_mv_bits(hy - py) + _mv_bits(hx - px))
            cy0, cx0 = hy, hx
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if dy == 0 and dx == 0:
                        continue
                    ny = cy0 + dy
                    nx = cx0 + dx
                    cost = _sad_half(cur, ref, y0, x0, ny, nx, 2) + lam * (_mv_bits(ny - py) + _mv_bits(nx - px))
                    if cost < best:
                        best, hy, hx = cost, ny, nx
            # intra if the block's own texture is cheaper than the motion-compensated residual
            mean = 0
            for yy in range(MB):
                for xx in range(MB):
                    mean += np.int64(cur[y0 + yy, x0 + xx])
            mean = mean // (MB * MB)
            sad_intra = 0
            for yy in range(0, MB, 2):
                for xx in range(0, MB, 2):
                    d = np.int64(cur[y0 + yy, x0 + xx]) - mean
                    sad_intra += d if d >= 0 else -d
            if sad_intra * 4 + intra_bias * lam < best:
                mode0[mby, mbx] = INTRA
                mvs[mby, mbx, 0] = 0
                mvs[mby, mbx, 1] = 0
            else:
                mvs[mby, mbx, 0] = hy
                mvs[mby, mbx, 1] = hx
