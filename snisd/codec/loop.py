"""The closed prediction loop that encoder and decoder share.

Each tier keeps its own reference picture and its own adaptive entropy contexts, so a decoder
that receives tiers < k reproduces exactly the encoder's tier k-1 reconstruction and nothing it
lacks can leak in. Keyframes reset every tier; switch points reset the enhancement tiers (their
prediction comes from the lower tier only), which is where a receiver may start a new tier.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .entropy import MB, new_tier_probs
from .motion import compensate
from .synthesis import SynthesisTransform
from .tiers import channel_steps, dequantize

ALIGN = 64  # the analysis works on 64x64 tiles


def padded_size(width: int, height: int) -> tuple[int, int]:
    return -(-width // ALIGN) * ALIGN, -(-height // ALIGN) * ALIGN


@dataclass
class Planes:
    """A padded I420 picture (uint8) or residual (int16/int32)."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def empty(cls, wp: int, hp: int, dtype=np.uint8) -> "Planes":
        """Uninitialised planes, for results that overwrite every sample."""
        return cls(np.empty((hp, wp), dtype), np.empty((hp // 2, wp // 2), dtype), np.empty((hp // 2, wp // 2), dtype))

    @classmethod
    def blank(cls, wp: int, hp: int, dtype=np.uint8, value: int = 0) -> "Planes":
        return cls(np.full((hp, wp), value, dtype), np.full((hp // 2, wp // 2), value, dtype),
                   np.full((hp // 2, wp // 2), value, dtype))


@dataclass
class TierLatents:
    """Quantised latents of one tier (int32), in the layout of models/README.md."""

    y_ac: np.ndarray  # (Hp/8, Wp/8, 63)
    y_coarse: np.ndarray  # (Hp/16, Wp/16, 4)
    c_ac: np.ndarray  # (2, Hp/8, Wp/8, 15)
    c_coarse: np.ndarray  # (2, Hp/16, Wp/16, 4)

    @classmethod
    def zeros(cls, wp: int, hp: int) -> "TierLatents":
        return cls(np.zeros((hp // 8, wp // 8, 63), np.int32), np.zeros((hp // 16, wp // 16, 4), np.int32),
                   np.zeros((2, hp // 8, wp // 8, 15), np.int32), np.zeros((2, hp // 16, wp // 16, 4), np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.y_ac, self.y_coarse, self.c_ac, self.c_coarse


@dataclass
class MotionField:
    """Tier-0 macroblock modes (0 inter, 1 intra) and half-pel vectors, shared by all tiers."""

    mode0: np.ndarray
    mvs: np.ndarray

    @classmethod
    def zeros(cls, wp: int, hp: int) -> "MotionField":
        return cls(np.zeros((hp // MB, wp // MB), np.int32), np.zeros((hp // MB, wp // MB, 2), np.int64))


@njit(cache=True)
def _add_clip(p, r, out):
    h, w = p.shape
    for y in range(h):
        for x in range(w):
            v = np.int32(p[y, x]) + r[y, x]
            out[y, x] = 0 if v < 0 else (255 if v > 255 else v)


@dataclass
class LoopState:
    """Per-tier references and entropy contexts, plus the previous motion field."""

    wp: int
    hp: int
    tiers: int
    refs: list = field(default_factory=list)
    probs: list = field(default_factory=list)
    prev_motion: MotionField | None = None

    def __post_init__(self) -> None:
        self._temporal: dict[int, Planes] = {}
        self.refs = [None] * self.tiers
        self.probs = [new_tier_probs() for _ in range(self.tiers)]
        self.prev_motion = MotionField.zeros(self.wp, self.hp)

    def reset(self, first_tier: int) -> None:
        for k in range(first_tier, self.tiers):
            self.probs[k] = new_tier_probs()

    def begin_frame(self) -> None:
        """Forget the temporal predictions of the previous frame."""
        self._temporal = {}

    def temporal(self, tier: int, motion: MotionField) -> Planes:
        """This tier's motion-compensated prediction of the current frame (computed once)."""
        if tier not in self._temporal:
            p = Planes.empty(self.wp, self.hp)
            ref = self.refs[tier] if self.refs[tier] is not None else Planes.blank(self.wp, self.hp)
            compensate(motion.mode0, motion.mvs, tier, ref.y, ref.u, ref.v, p.y, p.u, p.v)
            self._temporal[tier] = p
        return self._temporal[tier]

    def predict(self, tier: int, motion: MotionField, predk: np.ndarray, lower: Planes | None) -> Planes:
        """The prediction of `tier` given its macroblock modes `predk` and the lower tier's picture.

        Mode 0 is this tier's temporal prediction, mode 1 the lower tier's picture, and mode 2
        adds the lower tier's innovation (its picture minus its own temporal prediction) to this
        tier's temporal prediction: the enhancement detail of the previous frame survives and the
        new content of the lower tier comes with it.
        """
        t = self.temporal(tier, motion)
        if tier == 0:
            return t
        tl = self.temporal(tier - 1, motion)
        p = Planes.empty(self.wp, self.hp)
        for out, a, lo, b, mb in ((p.y, t.y, lower.y, tl.y, MB), (p.u, t.u, lower.u, tl.u, MB // 2),
                                  (p.v, t.v, lower.v, tl.v, MB // 2)):
            compose_prediction(predk, a, lo, b, mb, out)
        return p


@njit(cache=True)
def compose_prediction(predk, temporal, lower, lower_temporal, mb, out):
    """Per macroblock mode: 0 temporal, 1 lower, 2 temporal + lower - lower_temporal (clipped)."""
    h, w = out.shape
    for y in range(h):
        for x in range(w):
            m = predk[y // mb, x // mb]
            if m == 0:
                out[y, x] = temporal[y, x]
            elif m == 1:
                out[y, x] = lower[y, x]
            else:
                v = np.int32(temporal[y, x]) + np.int32(lower[y, x]) - np.int32(lower_temporal[y, x])
                out[y, x] = 0 if v < 0 else (255 if v > 255 else v)


@dataclass
class StageTimes:
    """Seconds spent per stage since the coder was created; the last 1024 frame times kept."""

    motion: float = 0.0
    prediction: float = 0.0
    analysis: float = 0.0
    quantize: float = 0.0
    entropy: float = 0.0
    synthesis: float = 0.0
    frames: int = 0
    total: float = 0.0
    per_frame: deque = field(default_factory=lambda: deque(maxlen=1024))


def reconstruct(pred: Planes, q: TierLatents, step16: int, synth: SynthesisTransform) -> Planes:
    """Prediction plus the synthesised residual of the dequantised latents, clipped to 8 bits."""
    s_yac, s_cac, s_coarse = channel_steps(step16)
    deq = [dequantize(a, s, np.empty_like(a)) for a, s in zip(q.arrays(), (s_yac, s_coarse, s_cac, s_coarse))]
    out = Planes.empty(pred.y.shape[1], pred.y.shape[0])
    _add_clip(pred.y, synth.plane(deq[0], deq[1], chroma=False), out.y)
    _add_clip(pred.u, synth.plane(deq[2][0], deq[3][0], chroma=True), out.u)
    _add_clip(pred.v, synth.plane(deq[2][1], deq[3][1], chroma=True), out.v)
    return out
