"""SNIS-896 encoder: Frame in, EncodedFrame (one chunk per tier) out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from ..errors import InputError
from ..frame import Frame
from .bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from .entropy import MB, encode_tier
from .loop import LoopState, MotionField, Planes, StageTimes, TierLatents, padded_size, reconstruct
from . import motion as motion_model
from .motion import estimate
from .synthesis import SynthesisTransform
from .tiers import BASE_ONLY, MAX_QP, channel_steps, quantize, step16

ROUND_INTRA = 0.38
ROUND_INTER = 0.15
ROUND_LOWER = 0.15  # dead-zone rounding of the tiers below the top (refined later, so less dead zone)
LAMBDA_SCALE = 1.0  # motion lambda per unit of quantiser step (SAD per bit)


@dataclass
class EncoderConfig:
    """Everything the encoder needs to know; `model` is the analysis .tflite (default: shipped)."""

    width: int
    height: int
    fps_num: int = 30
    fps_den: int = 1
    tiers: int = 3
    qp: int = 28
    tier_ratio: int = 8
    keyframe_interval: int = 0  # frames; 0 = every 10 s
    switch_interval: int = 0  # frames; 0 = every second
    model: str | None = None
    threads: int = 1
    # 0: SNR tiers (every tier codes every frequency, each coarser by tier_ratio); p > 0:
    # frequency-progressive tiers, tier k codes AC frequencies u+v <= max * ((k+1)/K)**p.
    band_power: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.qp <= MAX_QP:
            raise InputError(f"qp {self.qp} out of range 0..{MAX_QP}")
        if not 1 <= self.tiers <= 8:
            raise InputError(f"tier count {self.tiers} out of range 1..8")
        if not 0 <= self.band_power <= 8:
            raise InputError(f"band power {self.band_power} out of range 0..8")
        if not 0 <= self.tier_ratio & 0x7F <= 64 or self.tier_ratio > 0xFF:
            raise InputError(f"tier ratio {self.tier_ratio} out of range 0..64 (1/8 octaves), +128 for base-only")
        fps = self.fps_num / max(self.fps_den, 1)
        if self.keyframe_interval <= 0:
            self.keyframe_interval = max(1, round(10 * fps))
        if self.switch_interval <= 0:
            self.switch_interval = max(1, round(fps))


def synthesis_path_for(model: str | None) -> str | None:
    """The synthesis weights that belong to an analysis model: X.tflite -> X_synthesis.npz."""
    if model is None:
        return None
    p = Path(model)
    return str(p.with_name(p.stem + "_synthesis.npz")) if p.suffix == ".tflite" else str(p)


@njit(cache=True)
def _subtract(x, p, out):
    h, w = x.shape
    for y in range(h):
        for xx in range(w):
            out[y, xx] = np.int16(x[y, xx]) - np.int16(p[y, xx])


@njit(cache=True)
def _choose_tier_mode(xy, temporal, lower, lower_temporal, mode0, predk):
    """Per macroblock, the tier-k prediction mode with the smallest luma SAD: 0 temporal,
    1 lower tier, 2 temporal plus the lower tier's innovation (see LoopState.predict)."""
    mbh, mbw = predk.shape
    for mby in range(mbh):
        for mbx in range(mbw):
            if mode0[mby, mbx] == 1:
                predk[mby, mbx] = 1
                continue
            s0 = 0
            s1 = 0
            s2 = 0
            for yy in range(mby * 32, mby * 32 + 32):
                for xx in range(mbx * 32, mbx * 32 + 32):
                    a = np.int32(xy[yy, xx])
                    t = np.int32(temporal[yy, xx])
                    lo = np.int32(lower[yy, xx])
                    v = t + lo - np.int32(lower_temporal[yy, xx])
                    v = 0 if v < 0 else (255 if v > 255 else v)
                    d0 = a - t
                    d1 = a - lo
                    d2 = a - v
                    s0 += d0 if d0 >= 0 else -d0
                    s1 += d1 if d1 >= 0 else -d1
                    s2 += d2 if d2 >= 0 else -d2
            if s1 <= s0 and s1 <= s2:
                predk[mby, mbx] = 1
            elif s2 < s0:
                predk[mby, mbx] = 2
            else:
                predk[mby, mbx] = 0


def band_masks(tier: int, tiers: int, power: float, base_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Which AC channels (luma 63, chroma 15) tier `tier` codes: frequency-progressive tiers.

    With `base_only` steps, tier 0 codes every frequency (at its coarse step) and the bands
    split the tiers above it."""
    if base_only:
        if tier == 0:
            return np.ones(63, np.int32), np.ones(15, np.int32)
        frac = (tier / (tiers - 1)) ** power
    else:
        frac = ((tier + 1) / tiers) ** power
    out = []
    for n in (8, 4):
        uv = np.array([u + v for u in range(n) for v in range(n)][1:])
        out.append((uv <= np.floor(frac * 2 * (n - 1) + 1e-9)).astype(np.int32))
    return out[0], out[1]


def pad_frame(frame: Frame, wp: int, hp: int) -> Planes:
    """Edge-replicate a frame up to the padded size."""
    def pad(a: np.ndarray, h: int, w: int) -> np.ndarray:
        if a.shape == (h, w):
            return np.ascontiguousarray(a)
        return np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1])), mode="edge")
    return Planes(pad(frame.y, hp, wp), pad(frame.u, hp // 2, wp // 2), pad(frame.v, hp // 2, wp // 2))


class Encoder:
    """Encodes frames of one fixed size into a progressive SNIS stream."""

    def __init__(self, config: EncoderConfig, analysis=None, synthesis: SynthesisTransform | None = None) -> None:
        from .analysis import AnalysisTransform

        self.config = config
        self.analysis = analysis if analysis is not None else AnalysisTransform(config.model, config.threads)
        self.synthesis = synthesis if synthesis is not None else SynthesisTransform.load(synthesis_path_for(config.model))
        self.wp, self.hp = padded_size(config.width, config.height)
        self.sequence_header = SequenceHeader(
            config.width, config.height, config.fps_num, config.fps_den, config.tiers, config.tier_ratio,
            config.keyframe_interval, config.switch_interval, "snis896", self.synthesis.model_hash)
        self.state = LoopState(self.wp, self.hp, config.tiers)
        self.index = 0
        self.times = StageTimes()
        self._force_key = True

    def request_keyframe(self) -> None:
        self._force_key = True

    def reconstruction(self, tiers: int | None = None) -> Frame:
        """The encoder's own reconstruction of the last frame with tiers < `tiers` (default all)."""
        k = (tiers or self.config.tiers) - 1
        r = self.state.refs[k]
        h, w = self.config.height, self.config.width
        return Frame(r.y[:h, :w].copy(), r.u[: h // 2, : w // 2].copy(), r.v[: h // 2, : w // 2].copy())

    def encode(self, frame: Frame, force_keyframe: bool = False) -> EncodedFrame:
        cfg = self.config
        if (frame.width, frame.height) != (cfg.width, cfg.height):
            raise InputError(f"frame is {frame.width}x{frame.height}, encoder was set up for {cfg.width}x{cfg.height}")
        key = force_keyframe or self._force_key or self.index % cfg.keyframe_interval == 0
        switch = key or self.index % cfg.switch_interval == 0
        self._force_key = False
        st = self.state
        t = self.times
        t0 = time.perf_counter()
        x = pad_frame(frame, self.wp, self.hp)
        st.begin_frame()
        motion = MotionField.zeros(self.wp, self.hp)
        steps = [step16(cfg.qp, k, cfg.tiers, cfg.tier_ratio) for k in range(cfg.tiers)]
        if key:
            st.reset(0)
            motion.mode0[...] = 1
        else:
            if switch:
                st.reset(1)
            lam = LAMBDA_SCALE * math.sqrt(steps[0] * steps[-1]) / 16.0
            estimate(x.y, st.refs[-1].y, st.prev_motion.mvs, int(round(lam)) or 1, motion_model.INTRA_BIAS,
                     motion.mvs, motion.mode0)
        t1 = time.perf_counter()
        t.motion += t1 - t0
        fh = FrameHeader(FRAME_I if key else FRAME_P, switch, self.index & 0xFFFF, cfg.qp)
        chunks: list[bytes] = []
        recons: list[Planes] = []
        lower: Planes | None = None
        lq = TierLatents.zeros(self.wp, self.hp)
        res = Planes.empty(self.wp, self.hp, np.int16)
        for k in range(cfg.tiers):
            ta = time.perf_counter()
            predk = np.zeros_like(motion.mode0)
            if k > 0 and not switch:
                _choose_tier_mode(x.y, st.temporal(k, motion).y, lower.y, st.temporal(k - 1, motion).y,
                                  motion.mode0, predk)
            elif k > 0:
                predk[...] = 1
            pred = st.predict(k, motion, predk, lower)
            for a, b, r in ((x.y, pred.y, res.y), (x.u, pred.u, res.u), (x.v, pred.v, res.v)):
                _subtract(a, b, r)
            tb = time.perf_counter()
            lat = self.analysis(res.y, res.u, res.v)
            tc = time.perf_counter()
            q = TierLatents.zeros(self.wp, self.hp)
            s_yac, s_cac, s_coarse = channel_steps(steps[k])
            rnd = ROUND_INTRA if key else (ROUND_INTER if k == cfg.tiers - 1 else ROUND_LOWER)
            quantize(lat.y_ac, s_yac, rnd, q.y_ac)
            quantize(lat.y_coarse, s_coarse, ROUND_INTRA if key else rnd, q.y_coarse)
            quantize(lat.c_ac, s_cac, rnd, q.c_ac)
            quantize(lat.c_coarse, s_coarse, ROUND_INTRA if key else rnd, q.c_coarse)
            if cfg.band_power > 0 and k < cfg.tiers - 1:
                my, mc = band_masks(k, cfg.tiers, cfg.band_power, bool(cfg.tier_ratio & BASE_ONLY))
                q.y_ac *= my
                q.c_ac *= mc
            td = time.perf_counter()
            payload = encode_tier(st.probs[k], k, key, switch, motion, predk, q, lq)
            head = fh.to_bytes() if k == 0 else enhancement_header(k, fh.frame_no)
            chunks.append(head + payload)
            te = time.perf_counter()
            lower = reconstruct(pred, q, steps[k], self.synthesis)
            recons.append(lower)
            lq = q
            tf = time.perf_counter()
            t.prediction += tb - ta
            t.analysis += tc - tb
            t.quantize += td - tc
            t.entropy += te - td
            t.synthesis += tf - te
        st.refs = recons
        st.prev_motion = motion
        t.frames += 1
        t.total += time.perf_counter() - t0
        t.per_frame.append(time.perf_counter() - t0)
        ef = EncodedFrame(self.index, frame.pts_us, key, switch, tuple(chunks))
        self.index += 1
        return ef
