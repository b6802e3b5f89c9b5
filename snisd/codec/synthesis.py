"""The synthesis transform's fixed-point weights, as the native core runs them.

The learned float weights (models/*_synthesis.npz) are fixed to 12-bit fractions; the core does
every sum in integers, so the encoder's reconstruction and any decoder's output agree bit for bit
on every platform. The transform itself (coarse stage, lapped column and row stages, edge folding)
is `native/synthesis.c`; its float statement is `reference.synthesize_reference`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from .weights import SYNTHESIS_WEIGHTS, WEIGHT_NAMES, read_model_bytes, weights_from_bytes

FRAC = 12  # fractional bits of the fixed-point weights (SNIS_FRAC in native/snis.h)
MODEL_HASH_BYTES = 8


@dataclass(frozen=True)
class SynthesisTransform:
    """Fixed-point synthesis weights, packed in the layout of `snis_weights` (native/snis.h)."""

    packed: bytes
    model_hash: bytes  # first 8 bytes of SHA-256 of the weight file: identifies the model in streams
    path: str

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> SynthesisTransform:
        data, where = read_model_bytes(path, SYNTHESIS_WEIGHTS)
        return cls.from_bytes(data, str(where))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "<bytes>") -> SynthesisTransform:
        import hashlib

        w = weights_from_bytes(data, where)
        parts = []
        for name in WEIGHT_NAMES:
            a = np.asarray(w[name], np.float64)
            if not np.all(np.isfinite(a)) or np.any(np.abs(a) >= 2.0):
                raise ModelError(f"synthesis weights {where}: {name} has values outside (-2, 2)")
            parts.append(np.round(a * (1 << FRAC)).astype("<i4").ravel())
        return cls(np.concatenate(parts).tobytes(), hashlib.sha256(data).digest()[:MODEL_HASH_BYTES], where)
