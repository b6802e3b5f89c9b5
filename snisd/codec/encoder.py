"""SNIS-896 encoder: Frame in, EncodedFrame (one chunk per tier) out.

Per frame: the native core estimates motion and writes the padded int8 residual straight into
the analysis model's input buffers; LiteRT runs the analysis once on the whole frame; the core
quantises the latents into every tier (each tier refines what the tiers below left), codes each
tier and reconstructs exactly as the decoder will. Both core calls release the GIL.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..frame import Frame
from . import _native
from .analysis import AnalysisTransform
from .bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from .synthesis import SynthesisTransform

MAX_QP = 63
KEY_TIER_RATIO = 0  # default step ratio between tiers at keyframes and key pictures (docs/CODEC.md)
FRAME_K = 2  # the core's frame type of a key picture (a P-frame with the switch flag)
FRAME_KC = 3  # a key picture the core coded with a coarse base


@dataclass(frozen=True)
class Tuning:
    """Encoder-only choices (the decoder never sees them): dead-zone rounding in 1/64 of a step,
    motion lambda per unit of step in 1/16, the intra bias in lambda-weighted bits, the skip
    threshold (mean |residual| in 1/256 of the top step; half of it with one tier), the full-pel
    search range, the mean |residual| (1/16 pixel) above which a key picture keeps a coarse base
    (0, the default: never, every key picture's base at the top step: docs/BENCHMARKS.md, "The key
    picture's base"),
    the one (1/16 pixel) below which the motion search stops at a merge candidate's vector, the
    coefficient decisions priced by the entropy model (native/snis.h, docs/CODEC.md): decimation of
    blocks of at most `decimate` lone +-1 levels, their lambda in 1/256 of a squared step per bit,
    rate-aware rounding (`rdoq` 1: floor or one more, 2: the dead-zone level or one less) and the
    skip of macroblocks of at most `mb_rd` levels; 0 turns each off; the adaptive-quantisation
    strength in 1/16 (a macroblock's qp offset per octave of its prediction's luma variance over
    the frame's mean: > 0 flat areas finer, < 0 busy ones finer; 0: off; 8, the default, applied
    only where the camera is still: `aq_still`); whether intra
    macroblocks use intra prediction (1: everywhere, keyframes are then coded in bands, one analysis
    per macroblock row; 2, the default: in key pictures only, whose one-second-old reference leaves
    many macroblocks intra; 0: every intra macroblock predicts flat grey, docs/BENCHMARKS.md "Intra
    prediction");
    then the motion tools (docs/CODEC.md, "Motion"), each 0 = off: quarter-pel refinement, the
    merge mode, 16x16 partitions (1: where one vector leaves a large residual, 2: everywhere, 3: as
    1 and only where another search candidate fits a quadrant clearly better; 4, the default: as 1
    after a P-frame whose search found the camera still, `aq_still`, else as 3),
    rate estimates from the contexts' probabilities (0: a fixed Exp-Golomb-like estimate) and 8x8
    partitions inside the 16x16 ones (`split8`, tried only where `split` is; 1: where the 16x16
    vector leaves a large residual, 2: everywhere, 3: as 1 but only inside a split that has won
    against one vector; 4, the default: as 3 after a P-frame whose search found the camera still,
    else none); last the half-pel refinement around the
    full-pel vector (`subpel` 0: none, 1, the default: the four axial neighbours and the one
    diagonal between the better two, 2: all eight neighbours); then `obmc`, overlapped block
    motion compensation of the luma prediction (1: every P-frame, as in `fast` and `medium`; 2, the
    default: a P-frame whose search found the camera still after one that did too, where few
    vectors differ and the blend costs little); `round_base`, the rounding
    (1/64 of a step) of the base tier's non-zero levels in P-frames and key pictures of a stream of
    several tiers: the dead zone decides which latents the base codes, this how finely (32, the
    default: to the nearest level; 0 or up to `round_lower`: as the dead zone); `round_key`, the same
    for the base tier of keyframes, whose dead zone is `round_intra` (32, the default: to the
    nearest); `key_intra_bias`, the intra bias of key pictures (32: their reference is a second old
    and their intra macroblocks predict from their neighbours); `aq_still`, adaptive quantisation
    (`aq_strength`) only in frames where at least `aq_still`/64 of the macroblocks are inter with
    every vector zero (48, the default: a still camera; 0: in every P-frame; a stream sent to a
    peer has adaptive quantisation off, `presets.LIVE`), the same test `split` 4 and `obmc` 2
    use. `key_qp` is read here, not by the core: at a fixed qp a keyframe is coded that many qp
    finer than the P-frames (3, x264's `--ipratio` 1.4 in qp steps: what later frames inherit
    from it is worth its bits); `key_picture_qp` the same for key pictures (1: the next second's
    thinned decoders predict from them). Rate control plans keyframes and key pictures finer than
    its P-frames by the same offsets where the frame budget allows (codec/ratecontrol.py); a stream
    sent to a peer has both at 0 (`presets.LIVE`)."""

    round_intra: int = 24
    round_inter: int = 8
    round_lower: int = 10
    lambda_q4: int = 16
    intra_bias: int = 96
    skip_sad_q8: int = 16
    search_range: int = 64
    key_sad_q4: int = 0
    me_exit_q4: int = 12
    decimate: int = 0
    rd_lambda_q8: int = 40
    rdoq: int = 0
    mb_rd: int = 0
    aq_strength: int = 8
    qpel: int = 0
    merge: int = 1
    split: int = 4
    rd_rates: int = 1
    intra_pred: int = 2
    split8: int = 4
    subpel: int = 1
    obmc: int = 2
    round_base: int = 32
    round_key: int = 32
    key_intra_bias: int = 32
    aq_still: int = 48
    key_qp: int = 3
    key_picture_qp: int = 1

    def with_overrides(self, items: Sequence[str]) -> Tuning:
        """A copy with `name=value` settings applied (`snisd encode --tune`), for ablations and
        presets; an unknown name, a non-integer value or one outside the field's range (a mode
        beyond its last, a negative threshold) is an InputError naming it."""
        values = dataclasses.asdict(self)
        for item in items:
            name, sep, text = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in values:
                raise InputError(f"--tune {item!r}: expected NAME=INT with NAME one of {', '.join(values)}")
            try:
                value = int(text)
            except ValueError:
                raise InputError(f"--tune {item!r}: {text!r} is not an integer") from None
            low, high = _TUNING_RANGES.get(name, (0, None))
            if value < low or (high is not None and value > high):
                bound = f"{low}..{high}" if high is not None else f">= {low}"
                raise InputError(f"--tune {item!r}: {name} must be {bound}")
            values[name] = value
        return Tuning(**values)

    def as_tuple(self) -> tuple[int, ...]:
        """The native core's fields in declaration order, the order its binding reads them in."""
        return tuple(int(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in _PYTHON_FIELDS)


# Fields the encoder applies in Python (the core never sees them).
_PYTHON_FIELDS = frozenset({"key_qp", "key_picture_qp"})

# Fields whose range is not "any non-negative integer": the modes (0 = off) and the signed AQ strength.
_TUNING_RANGES: dict[str, tuple[int, int | None]] = {
    "rdoq": (0, 2),
    "aq_strength": (-32, 31),  # native AQ_STRENGTH_MAX
    "qpel": (0, 1),
    "merge": (0, 1),
    "split": (0, 4),
    "rd_rates": (0, 1),
    "intra_pred": (0, 2),
    "split8": (0, 4),
    "subpel": (0, 2),
    "obmc": (0, 2),
    "round_base": (0, 63),
    "round_key": (0, 63),
    "aq_still": (0, 64),
}


@dataclass
class EncoderConfig:
    """Everything the encoder needs to know; `model` is the analysis .tflite (default: shipped).

    tier_ratio: quantiser step ratio between adjacent tiers, 1/8 octaves (8: each tier halves it);
    key_tier_ratio: the same at keyframes and key pictures, whose base tier is the reference of the
    next key picture for every decoder (a finer base there costs base-tier bits once a second and
    saves the upper tiers more); None = KEY_TIER_RATIO.
    keyframe_interval: frames between periodic keyframes; None = every 10 s, 0 = on request only.
    switch_interval: frames between key pictures (where tiers may be added and a decoder that
    lost frames resumes); None = every second with several tiers, keyframes only with one tier
    (there is no tier to add, and a key picture costs bits); 0 = at keyframes only.
    """

    width: int
    height: int
    fps_num: int = 30
    fps_den: int = 1
    tiers: int = 3
    qp: int = 28
    tier_ratio: int = 8
    key_tier_ratio: int | None = None
    keyframe_interval: int | None = None
    switch_interval: int | None = None
    model: str | None = None
    threads: int = 1
    tuning: Tuning = field(default_factory=Tuning)

    def __post_init__(self) -> None:
        if not 0 <= self.qp <= MAX_QP:
            raise InputError(f"qp {self.qp} out of range 0..{MAX_QP}")
        if not 1 <= self.tiers <= 8:
            raise InputError(f"tier count {self.tiers} out of range 1..8")
        if not 0 <= self.tier_ratio <= 64:
            raise InputError(f"tier ratio {self.tier_ratio} out of range 0..64 (1/8 octaves)")
        if not 1 <= self.threads <= 16:
            raise InputError(f"thread count {self.threads} out of range 1..16")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise InputError(f"frame size {self.width}x{self.height}: must be even and at least 16x16")
        fps = self.fps_num / max(self.fps_den, 1)
        if self.keyframe_interval is None:
            self.keyframe_interval = max(1, round(10 * fps))
        if self.switch_interval is None:
            self.switch_interval = max(1, round(fps)) if self.tiers > 1 else 0
        if self.key_tier_ratio is None:
            self.key_tier_ratio = min(KEY_TIER_RATIO, self.tier_ratio)
        if not 0 <= self.key_tier_ratio <= 64:
            raise InputError(f"key tier ratio {self.key_tier_ratio} out of range 0..64 (1/8 octaves)")
        if self.keyframe_interval < 0 or self.switch_interval < 0:
            raise InputError(f"intervals must be >= 0, got {self.keyframe_interval} / {self.switch_interval}")


def synthesis_path_for(model: str | None) -> str | None:
    """The synthesis weights that belong to an analysis model: X.tflite -> X_synthesis.npz."""
    if model is None:
        return None
    p = Path(model)
    return str(p.with_name(p.stem + "_synthesis.npz")) if p.suffix == ".tflite" else str(p)


def padded_size(width: int, height: int) -> tuple[int, int]:
    a = _native.ALIGN
    return -(-width // a) * a, -(-height // a) * a


@dataclass
class StageTimes:
    """Milliseconds per stage of the last frames (the core's own clocks, plus the analysis)."""

    per_frame: deque = field(default_factory=lambda: deque(maxlen=1024))
    stages: deque = field(default_factory=lambda: deque(maxlen=1024))
    frames: int = 0


def fixed_multipliers(scale: np.ndarray) -> np.ndarray:
    """Per-channel int8 -> 1/16-pixel multipliers in 16-bit fixed point (native/snis.h)."""
    return np.round(np.asarray(scale, np.float64) * 16 * 65536).astype("<i4")


class Encoder:
    """Encodes frames of one fixed size into a progressive SNIS stream."""

    def __init__(
        self,
        config: EncoderConfig,
        analysis: AnalysisTransform | None = None,
        synthesis: SynthesisTransform | None = None,
    ) -> None:
        assert config.key_tier_ratio is not None  # set by EncoderConfig.__post_init__
        self.config = config
        self.analysis = analysis if analysis is not None else AnalysisTransform(config.model, config.threads)
        if synthesis is None:
            synthesis = SynthesisTransform.load(synthesis_path_for(config.model))
        self.synthesis = synthesis
        self.wp, self.hp = padded_size(config.width, config.height)
        self.sequence_header = SequenceHeader(
            config.width,
            config.height,
            config.fps_num,
            config.fps_den,
            config.tiers,
            config.tier_ratio,
            keyframe_interval=min(config.keyframe_interval or 0, 0xFFFF),
            switch_interval=min(config.switch_interval or 0, 0xFFFF),
            key_step_log2=config.key_tier_ratio,
            model_id="snis896",
            model_hash=self.synthesis.model_hash,
        )
        self._core = _native.Encoder(
            config.width,
            config.height,
            config.tiers,
            config.tier_ratio,
            config.threads,
            self.synthesis.packed,
            config.tuning.as_tuple(),
            config.key_tier_ratio,
        )
        self._ypad, self._uvpad = self.analysis.input_buffers(self.hp, self.wp)
        self._scales: tuple | None = None
        self.index = 0
        self._key_index = 0
        self._since_key = 0
        self.times = StageTimes()
        self._force_key = True

    def request_keyframe(self) -> None:
        self._force_key = True

    def reconstruction(self, tiers: int | None = None) -> Frame:
        """The encoder's picture of the last frame with tiers < `tiers` (default all) over the
        full-tier prediction: what a decoder shows that has all tiers of earlier frames."""
        h, w = self.config.height, self.config.width
        out = Frame(
            np.empty((h, w), np.uint8), np.empty((h // 2, w // 2), np.uint8), np.empty((h // 2, w // 2), np.uint8)
        )
        self._core.reconstruction(tiers or self.config.tiers, out.y, out.u, out.v)
        return out

    def _multipliers(self, out) -> tuple:
        if self._scales is None:
            scales = (out.y_ac_scale, out.y_coarse_scale, out.c_ac_scale, out.c_coarse_scale)
            zps = (out.y_ac_zp, out.y_coarse_zp, out.c_ac_zp, out.c_coarse_zp)
            self._scales = (
                tuple(fixed_multipliers(s).tobytes() for s in scales),
                tuple(np.asarray(z, "<i4").tobytes() for z in zps),
            )
        return self._scales

    def _next_type(self, force_keyframe: bool) -> tuple[bool, bool]:
        """(keyframe, switch point) of the next frame."""
        kint, sint = self.config.keyframe_interval or 0, self.config.switch_interval or 0
        key = force_keyframe or self._force_key or (kint > 0 and self._since_key >= kint)
        return key, key or (sint > 0 and self.index % sint == 0)

    def next_kind(self, force_keyframe: bool = False) -> str:
        """What the next frame will be: 'I' (keyframe), 'K' (key picture) or 'P' (rate control
        plans its qp before it is coded)."""
        key, switch = self._next_type(force_keyframe)
        return "I" if key else ("K" if switch else "P")

    def _keyframe_in_bands(self, frame: Frame, qp: int, t0: float) -> tuple[float, float, tuple]:
        """A keyframe with intra prediction: one macroblock row at a time, each predicted from the
        reconstruction of the rows above, so the analysis runs on one strip per band
        (docs/CODEC.md). Returns the clock after the core's work, that plus the analysis time,
        and the payloads (the clocks as encode() keeps them)."""
        band_rows = _native.ALIGN
        ystrip, uvstrip = self.analysis.input_buffers(band_rows, self.wp)
        self._core.intra_begin(frame.y, frame.u, frame.v, qp)
        analysis_s = 0.0
        lat = None
        mults: tuple = ()
        zps: tuple = ()
        for band in range(self.hp // band_rows):
            self._core.intra_band(band, lat, mults, zps, ystrip, uvstrip)
            ta = time.perf_counter()
            out = self.analysis(ystrip, uvstrip)
            analysis_s += time.perf_counter() - ta
            mults, zps = self._multipliers(out)
            lat = (out.y_ac, out.y_coarse, out.c_ac, out.c_coarse)
        assert lat is not None  # a padded picture has at least one band
        payloads = self._core.code(lat, mults, zps)
        t1 = time.perf_counter() - analysis_s
        return t1, t1 + analysis_s, payloads

    def encode(self, frame: Frame, force_keyframe: bool = False, qp: int | None = None) -> EncodedFrame:
        cfg = self.config
        if (frame.width, frame.height) != (cfg.width, cfg.height):
            raise InputError(f"frame is {frame.width}x{frame.height}, encoder was set up for {cfg.width}x{cfg.height}")
        if qp is not None and not 0 <= qp <= MAX_QP:
            raise InputError(f"qp {qp} out of range 0..{MAX_QP}")
        key, switch = self._next_type(force_keyframe)
        if qp is None:  # fixed qp: the keyframe finer by key_qp, a key picture by key_picture_qp
            finer = cfg.tuning.key_qp if key else (cfg.tuning.key_picture_qp if switch else 0)
            qp = max(0, cfg.qp - finer)
        self._force_key = False
        t0 = time.perf_counter()
        ftype = 0 if key else (FRAME_K if switch else 1)
        if key and cfg.tuning.intra_pred == 1:
            t1, t2, payloads = self._keyframe_in_bands(frame, qp, t0)
        else:
            self._core.predict(frame.y, frame.u, frame.v, ftype, qp, self._ypad, self._uvpad)
            t1 = time.perf_counter()
            out = self.analysis(self._ypad, self._uvpad)
            t2 = time.perf_counter()
            mults, zps = self._multipliers(out)
            payloads = self._core.code((out.y_ac, out.y_coarse, out.c_ac, out.c_coarse), mults, zps)
        t3 = time.perf_counter()
        st = self._core.stats()
        if switch:
            self._key_index = (self._key_index + 1) & 15
        coarse = st["frame_type"] == FRAME_KC
        fh = FrameHeader(FRAME_I if key else FRAME_P, switch, self.index & 0xFFFF, qp, self._key_index, coarse)
        chunks = tuple(
            (fh.to_bytes() if k == 0 else enhancement_header(k, fh.frame_no)) + p for k, p in enumerate(payloads)
        )
        st["analysis_us"] = (t2 - t1) * 1e6
        st["core_us"] = ((t1 - t0) + (t3 - t2)) * 1e6
        self.times.stages.append(st)
        self.times.per_frame.append(t3 - t0)
        self.times.frames += 1
        self._since_key = 1 if key else self._since_key + 1
        ef = EncodedFrame(self.index, frame.pts_us, key, switch, chunks)
        self.index += 1
        return ef
