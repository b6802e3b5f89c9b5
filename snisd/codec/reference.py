"""Float reference of the SNIS-896 transforms (numpy): the semantics the int8 model and the
integer synthesis are measured against.

Used by the tools (training, export, benchmarks) and the tests, not by the codec at run time.
Latents are in pixel units: every analysis filter has unit L2 norm, like the orthonormal DCT
the training starts from (models/README.md has the full contract).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .weights import PLANES


@dataclass
class Latents:
    """Dequantised latents of one frame, in pixel units (float32).

    y_coarse: (Hp/16, Wp/16, 4); y_ac: (Hp/8, Wp/8, 63), channel u*8+v-1;
    c_coarse: (2, Hp/16, Wp/16, 4); c_ac: (2, Hp/8, Wp/8, 15), channel u*4+v-1
    (index 0 of the leading axis is U, 1 is V).
    """

    y_coarse: np.ndarray
    y_ac: np.ndarray
    c_coarse: np.ndarray
    c_ac: np.ndarray


# ---------------------------------------------------------------------------
# DCT initialisation (also the "dct8" ablation weights)
# ---------------------------------------------------------------------------
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix, rows are basis functions."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * t + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def dct_weights() -> dict[str, np.ndarray]:
    """Analysis weights equal to the block DCT (taps in the overlap are zero) + Haar coarse.

    The synthesis initialisation is the same dictionary (the transforms are orthonormal,
    and the synthesis arrays are indexed like the analysis ones, so "transpose" is identity
    on the stored arrays).
    """
    w: dict[str, np.ndarray] = {}
    for prefix, n, ngroups in (("luma", 8, 4), ("chroma", 4, 3)):
        d = dct_matrix(n)
        row = np.zeros((n, 2 * n), np.float32)
        row[:, n // 2 : n // 2 + n] = d
        w[f"{prefix}_row"] = row
        w[f"{prefix}_col"] = np.repeat(row[None], ngroups, axis=0).astype(np.float32)
        h = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
        coarse = np.zeros((4, 4, 4), np.float32)
        for ka in range(2):
            for kb in range(2):
                coarse[2 * ka + kb, 1:3, 1:3] = np.outer(h[ka], h[kb])
        w[f"{prefix}_coarse"] = coarse
    return w


# ---------------------------------------------------------------------------
# float reference analysis (numpy)
# ---------------------------------------------------------------------------
def analyze_plane_stages(xp: np.ndarray, w: dict[str, np.ndarray], prefix: str):
    """Every stage of the float analysis of one plane already padded by 3n/2 (symmetric).

    Returns (r, coef, coarse): the row-stage output r[y, j, u] (all padded rows, blocks -1 ..
    W/n), the column-stage output coef[i, j, u, v] (blocks -1 .. H/n both ways, border blocks
    included) and the coarse latents coarse[I, J, k], all float64.
    """
    n, groups = PLANES[prefix]
    taps = 2 * n
    a_row = np.asarray(w[f"{prefix}_row"], np.float64)
    a_col = np.asarray(w[f"{prefix}_col"], np.float64)[list(groups)]  # (u, v, t)
    a_coarse = np.asarray(w[f"{prefix}_coarse"], np.float64)
    xp = np.asarray(xp, np.float64)
    # block j (j = -1 .. W/n) reads padded columns n*(j+1) + t
    win = sliding_window_view(xp, taps, axis=1)[:, ::n]  # (H+2p, nbx, t)
    r = np.einsum("yjt,ut->yju", win, a_row)
    win = sliding_window_view(r, taps, axis=0)[::n]  # (nby, nbx, u, t)
    coef = np.einsum("ijut,uvt->ijuv", win, a_col)  # blocks -1 .. H/n
    win = sliding_window_view(coef[..., 0, 0], (4, 4))[::2, ::2]
    coarse = np.einsum("IJab,kab->IJk", win, a_coarse)
    return r, coef, coarse


def analyze_plane_reference(x: np.ndarray, w: dict[str, np.ndarray], prefix: str):
    """Float analysis of one plane (H, W multiples of 2*block) -> (coarse, ac), float32."""
    n = PLANES[prefix][0]
    _, coef, coarse = analyze_plane_stages(np.pad(np.asarray(x, np.float64), 3 * n // 2, mode="symmetric"), w, prefix)
    nby, nbx = coef.shape[:2]
    ac = coef[1:-1, 1:-1].reshape(nby - 2, nbx - 2, n * n)[..., 1:]
    return coarse.astype(np.float32), ac.astype(np.float32)


def analyze_reference(y, u, v, weights) -> Latents:
    """Float analysis of a frame with the semantics of the int8 model."""
    yc, ya = analyze_plane_reference(y, weights, "luma")
    cs = [analyze_plane_reference(p, weights, "chroma") for p in (u, v)]
    return Latents(yc, ya, np.stack([c[0] for c in cs]), np.stack([c[1] for c in cs]))


# ---------------------------------------------------------------------------
# float reference synthesis (numpy)
# ---------------------------------------------------------------------------
def fold(xe: np.ndarray, pad: int) -> np.ndarray:
    """Adjoint of np.pad(x, pad, mode='symmetric') (rows and columns)."""
    h, w = xe.shape[0] - 2 * pad, xe.shape[1] - 2 * pad
    rows = xe[pad : pad + h].copy()
    rows[:pad] += xe[:pad][::-1]
    rows[h - pad :] += xe[pad + h :][::-1]
    out = rows[:, pad : pad + w].copy()
    out[:, :pad] += rows[:, :pad][:, ::-1]
    out[:, w - pad :] += rows[:, pad + w :][:, ::-1]
    return out


def synthesize_plane_reference(coarse: np.ndarray, ac: np.ndarray, w: dict[str, np.ndarray], prefix: str):
    """Float synthesis of one plane from its coarse (H/2n, W/2n, 4) and AC (H/n, W/n, n*n-1) latents."""
    n, groups = PLANES[prefix]
    taps, pad = 2 * n, 3 * n // 2
    s_row = np.asarray(w[f"{prefix}_row"], np.float64)
    s_col = np.asarray(w[f"{prefix}_col"], np.float64)[list(groups)]
    s_coarse = np.asarray(w[f"{prefix}_coarse"], np.float64)
    nI, nJ = coarse.shape[:2]
    nby, nbx = ac.shape[0] + 2, ac.shape[1] + 2  # blocks -1 .. H/n (extended index i+1)
    # coarse -> DC plane: D^[2I-1+a] (extended index 2I+a) += S_coarse[k, a, b] C[I, J, k]
    dc = np.zeros((nby, nbx))
    for a in range(4):
        for b in range(4):
            dc[a : a + 2 * nI : 2, b : b + 2 * nJ : 2] += np.einsum("IJk,k->IJ", coarse, s_coarse[:, a, b])
    coef = np.zeros((nby, nbx, n * n))
    coef[1:-1, 1:-1, 1:] = ac
    coef[..., 0] = dc
    coef = coef.reshape(nby, nbx, n, n)
    # column synthesis: r^[n*i + t] (padded rows) += S_col[g(u)][v, t] Y^[i, j, u, v]
    contrib = np.einsum("ijuv,uvt->ijut", coef, s_col)
    r = np.zeros((n * (nby - 1) + taps, nbx, n))
    for t in range(taps):
        r[t : t + n * nby : n] += contrib[..., t]
    # row synthesis
    contrib = np.einsum("yju,ut->yjt", r, s_row)
    xe = np.zeros((r.shape[0], n * (nbx - 1) + taps))
    for t in range(taps):
        xe[:, t : t + n * nbx : n] += contrib[..., t]
    return fold(xe, pad).astype(np.float32)


def synthesize_reference(latents: Latents, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float reference synthesis: latents -> (y, u, v) float32 residual planes (pixel units)."""
    y = synthesize_plane_reference(latents.y_coarse, latents.y_ac, weights, "luma")
    u = synthesize_plane_reference(latents.c_coarse[0], latents.c_ac[0], weights, "chroma")
    v = synthesize_plane_reference(latents.c_coarse[1], latents.c_ac[1], weights, "chroma")
    return y, u, v
