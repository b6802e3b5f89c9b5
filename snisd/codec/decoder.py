"""SNIS-896 decoder: EncodedFrame (any prefix of its tiers) in, Frame out.

The decoder follows the same closed loop as the encoder (loop.py), so its output for k tiers is
bit-identical to the encoder's own reconstruction with k tiers. It tracks which tiers still have
an intact reference chain: a tier that was missing from a frame is not used again until the next
switch point, and a missing or undecodable base tier requires a keyframe (ReferenceError).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import BitstreamError, ModelError
from ..frame import Frame
from .bitstream import FRAME_I, EncodedFrame, FrameHeader, SequenceHeader, check_enhancement_header
from .entropy import decode_tier
from .loop import LoopState, MotionField, StageTimes, TierLatents, padded_size, reconstruct
from .synthesis import SynthesisTransform
from .tiers import step16


class ReferenceError(BitstreamError):
    """A P-frame arrived without the reference it needs; the sender should send a keyframe."""


class Decoder:
    """Decodes one SNIS stream; frames must be given in order."""

    def __init__(self, seq: SequenceHeader, model: str | None = None,
                 synthesis: SynthesisTransform | None = None) -> None:
        self.seq = seq
        self.synthesis = synthesis if synthesis is not None else SynthesisTransform.load(model)
        if self.synthesis.model_hash != seq.model_hash:
            raise ModelError(
                f"stream was coded with model {seq.model_id} #{seq.model_hash.hex()}, "
                f"but the synthesis weights {self.synthesis.path} are #{self.synthesis.model_hash.hex()}")
        self.wp, self.hp = padded_size(seq.width, seq.height)
        self.state = LoopState(self.wp, self.hp, seq.tiers)
        self.valid_tiers = 0  # tiers whose reference chain is intact
        self.expected_frame_no: int | None = None
        self.last_tiers = 0  # tiers used for the last decoded frame
        self.times = StageTimes()

    def decode(self, frame: EncodedFrame | tuple[bytes, ...], tiers: int | None = None) -> Frame:
        chunks = frame.tiers if isinstance(frame, EncodedFrame) else tuple(frame)
        pts = frame.pts_us if isinstance(frame, EncodedFrame) else 0
        if not chunks:
            raise BitstreamError("frame has no tier chunks")
        if len(chunks) > self.seq.tiers:
            raise BitstreamError(f"frame has {len(chunks)} tiers, sequence header allows {self.seq.tiers}")
        fh = FrameHeader.from_bytes(chunks[0])
        key = fh.frame_type == FRAME_I
        st = self.state
        if not key:
            if self.valid_tiers == 0:
                raise ReferenceError(f"P-frame {fh.frame_no} without a decoded reference: waiting for a keyframe")
            if self.expected_frame_no is not None and fh.frame_no != self.expected_frame_no:
                self.valid_tiers = 0
                raise ReferenceError(f"frame {fh.frame_no} follows a gap (expected {self.expected_frame_no})")
        want = min(len(chunks), tiers or self.seq.tiers, self.seq.tiers)
        if key:
            st.reset(0)
            ntiers = want
        elif fh.switch_point:
            st.reset(1)
            ntiers = want
        else:
            ntiers = min(want, self.valid_tiers)
        try:
            out = self._decode_tiers(chunks, fh, ntiers, key)
        except BitstreamError:
            self.valid_tiers = 0
            raise
        self.valid_tiers = ntiers
        self.last_tiers = ntiers
        self.expected_frame_no = (fh.frame_no + 1) & 0xFFFF
        h, w = self.seq.height, self.seq.width
        return Frame(out.y[:h, :w].copy(), out.u[: h // 2, : w // 2].copy(), out.v[: h // 2, : w // 2].copy(), pts)

    def _decode_tiers(self, chunks, fh: FrameHeader, ntiers: int, key: bool):
        st = self.state
        seq = self.seq
        motion = MotionField.zeros(self.wp, self.hp)
        st.begin_frame()
        lq = TierLatents.zeros(self.wp, self.hp)
        lower = None
        recons = list(st.refs)
        for k in range(ntiers):
            if k > 0:
                check_enhancement_header(chunks[k], k, fh.frame_no)
            payload = chunks[k][FrameHeader.SIZE if k == 0 else 1:]
            predk = np.zeros_like(motion.mode0)
            q = TierLatents.zeros(self.wp, self.hp)
            t0 = time.perf_counter()
            decode_tier(payload, st.probs[k], k, key, fh.switch_point, motion, predk, q, lq)
            t1 = time.perf_counter()
            pred = st.predict(k, motion, predk, lower)
            t2 = time.perf_counter()
            lower = reconstruct(pred, q, step16(fh.qp, k, seq.tiers, seq.tier_step_log2), self.synthesis)
            self.times.entropy += t1 - t0
            self.times.prediction += t2 - t1
            self.times.synthesis += time.perf_counter() - t2
            recons[k] = lower
            lq = q
        for k in range(ntiers, seq.tiers):
            recons[k] = None
        st.refs = recons
        st.prev_motion = motion
        return lower
