"""Encoder rate control: a qp per frame that meets a target bit rate within a low-latency budget.

The sender estimates what the link carries and sets a target bit rate; this module turns it into
the qp of each frame (the qp of the top tier; the tiers below follow at the sequence's fixed step
ratio, so every tier's rate scales with the target and a tier dropped in transit keeps its meaning
at every link rate).

* **A size model per frame type** (keyframe I, key picture K, P-frame): log2(bits) is taken as
  ``c_t - qp / slope``; every coded frame updates its type's ``c_t``. Key pictures cost more than
  P-frames (their base is predicted from a one-second-old reference) and keyframes far more; the
  model learns each from its own frames, so none is mistaken for another.
* **The rate level** ``q`` is the qp at which the model's frames of one second (P-frames, key
  pictures and keyframes in the proportions the encoder makes them) add up to the target. It moves
  by at most ``down_step`` per frame towards a finer qp, so quality rises smoothly, and at once
  towards a coarser one.
* **Keyframes and key pictures finer** (``finer``: the encoder's ``key_qp`` and ``key_picture_qp``,
  the offsets its fixed-qp streams use; 0 in a stream sent to a peer, `presets.LIVE`): the rate
  level is the P-frames' qp, and a keyframe or key picture is planned that many qp finer, where the
  budget lets it; the level accounts for what that costs, so the second still adds up to the target.
* **A frame budget** (VBV-style, ``budget_ms``): a buffer drained at the target rate holds what has
  been coded but has not crossed the link yet; no frame may make it hold more than the budget, i.e.
  no frame takes longer than ``budget_ms`` to cross at the target rate. Keyframes and key pictures
  are the frames the budget usually caps: they get a coarser qp instead of a burst. A keyframe's
  prediction is given a safety margin (its model is fed once per keyframe only).

Deterministic and clock-free: the caller says what it coded; `tests/test_ratecontrol.py` drives it
with synthetic frame sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InputError

MAX_QP = 63

I_FRAME, K_FRAME, P_FRAME = "I", "K", "P"
KINDS = (I_FRAME, K_FRAME, P_FRAME)


@dataclass(frozen=True)
class RatePolicy:
    """The rate controller's numbers (encoder-only; the decoder never sees them)."""

    budget_ms: float = 300.0  # no frame takes longer than this to cross the link at the target rate
    min_qp: int = 4
    max_qp: int = MAX_QP
    slope: float = 3.5  # qp per halving of a frame's bits (the model; measured 2.7..5 on the test clips)
    learn_p: float = 0.35  # how fast the P-frame model follows a coded P-frame
    learn_k: float = 0.6  # ... a key picture (one a second)
    learn_i: float = 1.0  # ... a keyframe (rare: the last one says most)
    down_step: float = 1.5  # the rate level gets finer by at most this per frame (coarser at once)
    payback_s: float = 2.0  # a shortfall (or excess) against the target is made up over this time
    key_margin: float = 0.75  # I and K are planned to this share of the budget (their prediction is the least sure)
    prior_bpp_at_24: float = 2.0  # before any keyframe: bits per pixel of a keyframe at qp 24 (pessimistic)

    def __post_init__(self) -> None:
        if not 20.0 <= self.budget_ms <= 5000.0:
            raise InputError(f"frame budget {self.budget_ms} ms out of range 20..5000")
        if not 0 <= self.min_qp <= self.max_qp <= MAX_QP:
            raise InputError(f"rate-control qp range {self.min_qp}..{self.max_qp} is not within 0..{MAX_QP}")


class RateController:
    """Chooses the qp of every frame from a target bit rate (set at any time with `set_target`).

    `plan(kind)` gives the qp for the next frame of that kind ('I', 'K' or 'P'); `coded(kind, qp,
    bits)` tells the controller what that frame cost. `switch_interval` / `keyframe_interval` are
    the encoder's (frames between key pictures / keyframes; 0 = none). `finer` maps 'I' / 'K' to
    how many qp finer than the P-frames those frames are planned (missing: 0).
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        target_bps: float,
        switch_interval: int = 0,
        keyframe_interval: int = 0,
        policy: RatePolicy | None = None,
        finer: Mapping[str, int] | None = None,
    ) -> None:
        if fps <= 0:
            raise InputError(f"frame rate {fps} is not positive")
        self.finer = dict.fromkeys(KINDS, 0)
        for kind, off in (finer or {}).items():
            if kind not in (I_FRAME, K_FRAME) or not 0 <= off <= MAX_QP:
                raise InputError(f"finer qp {off!r} for frame kind {kind!r}: expected I or K and 0..{MAX_QP}")
            self.finer[kind] = int(off)
        self.policy = policy or RatePolicy()
        self.fps = float(fps)
        self.switch_interval = switch_interval
        self.keyframe_interval = keyframe_interval
        self.target_bps = 0.0
        self.set_target(target_bps)
        p = self.policy
        prior = math.log2(max(1.0, p.prior_bpp_at_24 * width * height)) + 24.0 / p.slope
        self._c = {I_FRAME: prior, K_FRAME: prior - 1.5, P_FRAME: prior - 3.0}
        self._seen = dict.fromkeys(KINDS, 0)
        self.level: float | None = None  # the rate level q (None until the first plan)
        self.fullness = 0.0  # bits coded that have not crossed the link yet at the target rate
        self._deficit = 0.0  # target minus bits coded so far (bounded)
        self.last_qp: int | None = None
        self.last_kind: str | None = None
        self.frames = 0

    # -- inputs ------------------------------------------------------------------------------------

    def set_target(self, bps: float) -> None:
        """The bit rate the encoder should produce from now on (the sender's estimate)."""
        if not (bps > 0 and math.isfinite(bps)):
            raise InputError(f"target bit rate {bps!r} must be a positive number")
        self.target_bps = float(bps)

    @property
    def budget_bits(self) -> float:
        """The most a frame may cost: `budget_ms` of the link at the target rate."""
        return self.target_bps * self.policy.budget_ms / 1000.0

    def predict(self, kind: str, qp: float) -> float:
        """The model's bits for a frame of `kind` at `qp`."""
        return 2.0 ** (self._c[kind] - qp / self.policy.slope)

    # -- the choice ----------------------------------------------------------------------------------

    def _cost(self, kind: str) -> float:
        """A frame of `kind`'s bits at the rate level 0, with its `finer` offset: 2^c * 2^(finer / slope)."""
        return 2.0 ** (self._c[kind] + self.finer[kind] / self.policy.slope)

    def _rate_level(self) -> float:
        """The qp at which one second of frames, in the encoder's mix of types, costs the target."""
        fps = self.fps
        k = fps / self.switch_interval if self.switch_interval > 0 else 0.0
        i = fps / self.keyframe_interval if self.keyframe_interval > 0 else 0.0
        k = max(0.0, k - i)
        p = max(0.0, fps - k - i)
        weight = p * self._cost(P_FRAME) + k * self._cost(K_FRAME) + i * self._cost(I_FRAME)
        # what the last seconds fell short of the target (or exceeded it) is made up over
        # `payback_s`: the model predicts a typical frame, and frames vary, so its bias is corrected
        # here; the buffer's backlog is paid back within a second
        want = self.target_bps + self._deficit / self.policy.payback_s
        want -= max(0.0, self.fullness - self.target_bps / fps)
        want = max(want, 0.25 * self.target_bps)
        return self.policy.slope * math.log2(weight / want)

    def plan(self, kind: str) -> int:
        """The qp for the next frame, of `kind` (I, K or P)."""
        if kind not in self._c:
            raise InputError(f"frame kind {kind!r} is not one of {', '.join(KINDS)}")
        p = self.policy
        q = self._rate_level()
        if self.level is not None and q < self.level - p.down_step:
            q = self.level - p.down_step  # finer slowly ...
        self.level = q  # ... coarser at once
        # the frame budget: the buffer after this frame must not hold more than budget_ms of the link
        drained = max(0.0, self.fullness - self.target_bps / self.fps)
        room = max(self.budget_bits - drained, 0.1 * self.budget_bits)
        if kind != P_FRAME:
            room *= p.key_margin
        cap_qp = self._c[kind] * p.slope - p.slope * math.log2(room)  # predict(kind, cap_qp) == room
        qp = max(q - self.finer[kind], cap_qp)
        out = int(min(p.max_qp, max(p.min_qp, math.ceil(qp - 0.5))))
        if self.predict(kind, out) > room and out < p.max_qp:  # rounding must not break the cap
            out = min(p.max_qp, out + 1)
        return out

    def coded(self, kind: str, qp: int, bits: float) -> None:
        """What the frame planned for `kind` cost: updates that type's model and the buffer."""
        if kind not in self._c:
            raise InputError(f"frame kind {kind!r} is not one of {', '.join(KINDS)}")
        p = self.policy
        obs = math.log2(max(bits, 8.0)) + qp / p.slope
        rate = {I_FRAME: p.learn_i, K_FRAME: p.learn_k, P_FRAME: p.learn_p}[kind]
        if self._seen[kind] == 0:
            rate = 1.0
            if kind == I_FRAME:  # the first keyframe says how costly this content is for the others too
                for other, off in ((K_FRAME, 1.5), (P_FRAME, 3.0)):
                    if self._seen[other] == 0:
                        self._c[other] = obs - off
        self._c[kind] += rate * (obs - self._c[kind])
        self._seen[kind] += 1
        self.fullness = max(0.0, self.fullness - self.target_bps / self.fps) + bits
        bound = 0.25 * self.target_bps * p.payback_s  # an integral, bounded: at most +-25 % of the target
        self._deficit = min(bound, max(-bound, self._deficit + self.target_bps / self.fps - bits))
        self.last_qp, self.last_kind = qp, kind
        self.frames += 1

    def stats(self) -> dict:
        return {
            "target_kbps": round(self.target_bps / 1e3, 1),
            "qp": self.last_qp,
            "level": None if self.level is None else round(self.level, 2),
            "buffer_ms": round(1000.0 * self.fullness / self.target_bps, 1),
            "budget_ms": self.policy.budget_ms,
        }


class RateControlledEncoder:
    """An encoder whose qp follows a target bit rate (the pipeline's `FrameEncoder`).

    Wraps an `Encoder` (anything with `encode(frame, force_keyframe, qp)`, `next_kind`,
    `sequence_header` and `config`); `set_target(bps)` may be called from any thread (the sender's),
    it takes effect at the next frame. Without a target yet it codes at `start_bps`. Keyframes and
    key pictures are planned finer by the encoder's `key_qp` / `key_picture_qp`, which the live
    tuning sets to 0 (`presets.LIVE`).
    """

    def __init__(self, encoder, start_bps: float, policy: RatePolicy | None = None) -> None:
        cfg = encoder.config
        self.encoder = encoder
        self.sequence_header = encoder.sequence_header
        self.control = RateController(
            cfg.width,
            cfg.height,
            cfg.fps_num / max(1, cfg.fps_den),
            start_bps,
            switch_interval=cfg.switch_interval or 0,
            keyframe_interval=cfg.keyframe_interval or 0,
            policy=policy,
            finer={I_FRAME: cfg.tuning.key_qp, K_FRAME: cfg.tuning.key_picture_qp},
        )
        self._pending: float | None = None
        self.tier_bits = [0.0] * cfg.tiers  # bits of the last frame per tier

    def set_target(self, bps: float) -> None:
        """Thread-safe: the value is picked up before the next frame."""
        if bps > 0 and math.isfinite(bps):
            self._pending = float(bps)

    def request_keyframe(self) -> None:
        self.encoder.request_keyframe()

    def encode(self, frame, force_keyframe: bool = False):
        pending, self._pending = self._pending, None
        if pending is not None:
            self.control.set_target(pending)
        kind = self.encoder.next_kind(force_keyframe)
        qp = self.control.plan(kind)
        ef = self.encoder.encode(frame, force_keyframe=force_keyframe, qp=qp)
        self.tier_bits = [8.0 * len(t) for t in ef.tiers]
        self.control.coded(kind, qp, sum(self.tier_bits))
        return ef

    def stats(self) -> dict:
        return self.control.stats()
