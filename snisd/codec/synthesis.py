"""Synthesis transform (decoder side): latents back to a residual picture, in integer arithmetic.

The learned float weights (models/*_synthesis.npz) are fixed to 12-bit fractions and every sum is
done in integers, so the encoder's reconstruction and any decoder's output agree bit for bit on
every platform; that is what keeps the closed prediction loop free of drift. The geometry is the
mirror of the analysis transform (models/README.md): a 1/16-scale coarse stage rebuilds the DC
plane, then per block a column and a row stage spread each latent over a lapped window of twice
the block size. Blocks whose latents are all zero cost nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numba import njit

from ..errors import ModelError

FRAC = 12  # fractional bits of the fixed-point weights
DEQ = 2  # latents arrive in 1/4 pixel units (2 fractional bits)
LUMA_GROUPS = np.array([0, 1, 2, 2, 3, 3, 3, 3], dtype=np.int64)
CHROMA_GROUPS = np.array([0, 1, 2, 2], dtype=np.int64)
WEIGHT_NAMES = ("luma_row", "luma_col", "luma_coarse", "chroma_row", "chroma_col", "chroma_coarse")
DEFAULT_SYNTHESIS = "snis896_synthesis.npz"


@dataclass(frozen=True)
class PlaneWeights:
    row: np.ndarray  # (B, 2B) int64, [u, tap]
    col: np.ndarray  # (G, B, 2B) int64, [group, v, tap]
    coarse: np.ndarray  # (4, 4, 4) int64, [k, a, b]
    groups: np.ndarray  # (B,) int64: column-filter group of each horizontal frequency


@dataclass(frozen=True)
class SynthesisTransform:
    """Integer synthesis for luma and chroma, built from a synthesis .npz."""

    luma: PlaneWeights
    chroma: PlaneWeights
    model_hash: bytes  # first 8 bytes of SHA-256 of the weight file: identifies the model in streams
    path: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> "SynthesisTransform":
        if path is None:
            ref = resources.files("snisd.models").joinpath(DEFAULT_SYNTHESIS)
            data = ref.read_bytes() if ref.is_file() else None
            where = f"snisd.models/{DEFAULT_SYNTHESIS}"
            if data is None:
                raise ModelError(f"shipped synthesis weights {where} are missing")
        else:
            where = str(path)
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ModelError(f"cannot read synthesis weights {where}: {exc.strerror}") from None
        return cls.from_bytes(data, where)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "<bytes>") -> "SynthesisTransform":
        import io
        import zipfile

        try:
            with np.load(io.BytesIO(data)) as z:
                w = {name: np.asarray(z[name], dtype=np.float64) for name in WEIGHT_NAMES}
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"synthesis weights {where} unreadable or incomplete: {exc}") from None
        expected = {"luma_row": (8, 16), "luma_col": (4, 8, 16), "luma_coarse": (4, 4, 4),
                    "chroma_row": (4, 8), "chroma_col": (3, 4, 8), "chroma_coarse": (4, 4, 4)}
        for name, shape in expected.items():
            if w[name].shape != shape or not np.all(np.isfinite(w[name])):
                raise ModelError(f"synthesis weights {where}: {name} has shape {w[name].shape}, expected {shape}")

        def fix(a: np.ndarray) -> np.ndarray:
            return np.round(a * (1 << FRAC)).astype(np.int64)

        luma = PlaneWeights(fix(w["luma_row"]), fix(w["luma_col"]), fix(w["luma_coarse"]), LUMA_GROUPS)
        chroma = PlaneWeights(fix(w["chroma_row"]), fix(w["chroma_col"]), fix(w["chroma_coarse"]), CHROMA_GROUPS)
        return cls(luma, chroma, hashlib.sha256(data).digest()[:8], where)

    def plane(self, ac: np.ndarray, coarse: np.ndarray, chroma: bool) -> np.ndarray:
        """Residual plane (int32, pixel units) from dequantised latents in 1/4 pixel units."""
        pw = self.chroma if chroma else self.luma
        return synthesize_plane(ac, coarse, pw.row, pw.col, pw.coarse, pw.groups)


@njit(cache=True)
def _fold(i, n):
    """Adjoint of symmetric extension: an index outside 0..n-1 maps onto its mirror image."""
    if i < 0:
        return -1 - i
    if i >= n:
        return 2 * n - 1 - i
    return i


@njit(cache=True)
def synthesize_plane(ac, coarse, row, col, kcoarse, groups):
    hb, wb, nac = ac.shape
    bs = row.shape[0]
    taps = row.shape[1]
    half = bs // 2
    # 1. coarse latents -> DC plane
    acc = np.zeros((hb, wb), np.int64)
    for ii in range(coarse.shape[0]):
        for jj in range(coarse.shape[1]):
            for k in range(4):
                c = coarse[ii, jj, k]
                if c == 0:
                    continue
                for a in range(4):
                    y = _fold(2 * ii - 1 + a, hb)
                    for b in range(4):
                        x = _fold(2 * jj - 1 + b, wb)
                        acc[y, x] += kcoarse[k, a, b] * c
    rnd = np.int64(1) << (FRAC - 1)
    dc = (acc + rnd) >> FRAC
    # 2. per block: column then row stage into a canvas with a margin of half a block.
    # The arithmetic is float64 on integer values below 2**53, hence exact and order-independent
    # (the same result on every platform) while letting the compiler vectorise the inner loops.
    h, w = hb * bs, wb * bs
    canvas = np.zeros((h + bs, w + bs), np.float64)
    fcol = col.astype(np.float64)
    frow = row.astype(np.float64)
    coef = np.zeros((bs, bs), np.float64)
    t = np.zeros((bs, taps), np.float64)
    us = np.zeros(bs, np.int64)
    inv = 1.0 / (1 << FRAC)
    frnd = float(rnd)
    for i in range(hb):
        for j in range(wb):
            anyc = dc[i, j] != 0
            for c in range(nac):
                if ac[i, j, c] != 0:
                    anyc = True
                    break
            if not anyc:
                continue
            coef[0, 0] = dc[i, j]
            for c in range(nac):
                coef[(c + 1) // bs, (c + 1) % bs] = ac[i, j, c]
            nu = 0  # horizontal frequencies with any non-zero latent
            for u in range(bs):
                for v in range(bs):
                    if coef[u, v] != 0:
                        us[nu] = u
                        nu += 1
                        break
            for n in range(nu):
                u = us[n]
                g = groups[u]
                for yy in range(taps):
                    t[n, yy] = 0.0
                for v in range(bs):
                    cv = coef[u, v]
                    if cv != 0:
                        for yy in range(taps):
                            t[n, yy] += fcol[g, v, yy] * cv
                for yy in range(taps):
                    t[n, yy] = np.floor((t[n, yy] + frnd) * inv)
            y0 = i * bs
            x0 = j * bs
            for yy in range(taps):
                for n in range(nu):
                    tv = t[n, yy]
                    if tv != 0:
                        wrow = frow[us[n]]
                        for xx in range(taps):
                            canvas[y0 + yy, x0 + xx] += wrow[xx] * tv
    # 3. fold the margins back (adjoint of the symmetric extension used by the analysis)
    for m in range(half):
        for x in range(w + bs):
            canvas[half + m, x] += canvas[half - 1 - m, x]
            canvas[half + h - 1 - m, x] += canvas[half + h + m, x]
    for y in range(h + bs):
        for m in range(half):
            canvas[y, half + m] += canvas[y, half - 1 - m]
            canvas[y, half + w - 1 - m] += canvas[y, half + w + m]
    out = np.empty((h, w), np.int32)
    shift = FRAC + DEQ
    scale = 1.0 / (1 << shift)
    r2 = float(1 << (shift - 1))
    for y in range(h):
        for x in range(w):
            out[y, x] = np.int32(np.floor((canvas[y + half, x + half] + r2) * scale))
    return out
