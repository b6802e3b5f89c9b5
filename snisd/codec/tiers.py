"""Progressive tiers: one quantiser step per tier, dead-zone quantisation and integer dequantisation.

Tier K-1 (the top) uses the step of the frame's qp; each tier below is coarser by
2**(tier_step_log2/8). Within a tier, each latent channel's step is scaled by a fixed
frequency weight (coarser for high spatial frequencies, which the eye and VMAF forgive).
Steps are integers in 1/16 pixel units so that dequantisation, and hence the reconstruction, is
exact integer arithmetic shared by encoder and decoder.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_QP = 63


BASE_ONLY = 0x80  # tier_step_log2 flag: only the base tier is coarser, tiers >= 1 share the top step


def step16(qp: int, tier: int, tiers: int, tier_step_log2: int) -> int:
    """Quantiser step of `tier` in 1/16 pixel units (H.264-like: qp + 6 doubles the step).

    Without the BASE_ONLY flag each tier is coarser than the one above by tier_step_log2/8
    octaves; with it, tier 0 is coarser by (tier_step_log2 & 0x7f)/8 and the other tiers use
    the top step (they then refine by frequency band, see encoder.band_masks).
    """
    if tier_step_log2 & BASE_ONLY:
        octaves = qp / 6.0 + ((tier_step_log2 & 0x7F) / 8.0 if tier == 0 and tiers > 1 else 0.0)
    else:
        octaves = qp / 6.0 + tier_step_log2 * (tiers - 1 - tier) / 8.0
    return max(1, int(round(16 * 0.625 * 2.0 ** octaves)))


FREQ_SLOPE = 1.0  # step grows by this fraction per unit of u+v (luma: /14, chroma: /6)


def _weights(n: int) -> np.ndarray:
    """Step weight of each AC channel u*n+v-1 of an n x n block."""
    uv = np.array([u + v for u in range(n) for v in range(n)][1:], dtype=np.float64)
    return 1.0 + FREQ_SLOPE * uv / (2 * (n - 1))


def channel_steps(step16_: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer steps (1/16 pixel) per channel: luma AC (63), chroma AC (15), coarse (4)."""
    def fix(w: np.ndarray) -> np.ndarray:
        return np.maximum(1, np.round(step16_ * w)).astype(np.int64)
    return fix(_weights(8)), fix(_weights(4)), fix(np.ones(4))


@njit(cache=True)
def quantize(y, steps16, rounding, out):
    """Dead-zone quantisation of float latents, channel c (last axis) with step steps16[c]/16:
    sign(y) * floor(|y| / step + rounding)."""
    nc = steps16.shape[0]
    flat = y.reshape(-1, nc)
    o = out.reshape(-1, nc)
    inv = np.empty(nc)
    for c in range(nc):
        inv[c] = 16.0 / steps16[c]
    rnd = np.float64(rounding)
    for i in range(flat.shape[0]):
        for c in range(nc):
            v = flat[i, c] * inv[c]
            if v >= 0:
                o[i, c] = np.int32(v + rnd)
            else:
                o[i, c] = -np.int32(-v + rnd)
    return out


@njit(cache=True)
def dequantize(q, steps16, out):
    """Integer dequantisation to 1/4 pixel units: q * step16 / 4, truncated toward zero."""
    nc = steps16.shape[0]
    flat = q.reshape(-1, nc)
    o = out.reshape(-1, nc)
    for i in range(flat.shape[0]):
        for c in range(nc):
            v = flat[i, c] * steps16[c]
            o[i, c] = (v >> 2) if v >= 0 else -((-v) >> 2)
    return out
