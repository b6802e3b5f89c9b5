"""Progressive tiers: one quantiser step per tier, dead-zone quantisation and integer dequantisation.

Tier K-1 (the top) uses the step of the frame's qp; each tier below is coarser by
2**(tier_step_log2/8). Steps are integers in 1/16 pixel units so that dequantisation, and hence
the reconstruction, is exact integer arithmetic shared by encoder and decoder.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_QP = 63


def step16(qp: int, tier: int, tiers: int, tier_step_log2: int) -> int:
    """Quantiser step of `tier` in 1/16 pixel units (H.264-like: qp + 6 doubles the step)."""
    octaves = qp / 6.0 + tier_step_log2 * (tiers - 1 - tier) / 8.0
    return max(1, int(round(16 * 0.625 * 2.0 ** octaves)))


@njit(cache=True)
def quantize(y, step, rounding, out):
    """Dead-zone quantisation of float latents: sign(y) * floor(|y| / step + rounding)."""
    flat = y.reshape(-1)
    o = out.reshape(-1)
    inv = 1.0 / step
    for i in range(flat.shape[0]):
        v = flat[i] * inv
        if v >= 0:
            o[i] = np.int32(v + rounding)
        else:
            o[i] = -np.int32(-v + rounding)
    return out


@njit(cache=True)
def dequantize(q, step16_, out):
    """Integer dequantisation to 1/4 pixel units: q * step / 4, truncated toward zero."""
    flat = q.reshape(-1)
    o = out.reshape(-1)
    for i in range(flat.shape[0]):
        v = flat[i] * step16_
        o[i] = (v >> 2) if v >= 0 else -((-v) >> 2)
    return out
