"""SNIS-896 decoder: EncodedFrame (any prefix of its tiers) in, Frame out.

The native core runs the loop the encoder runs, so with every tier the output is bit-identical
to the encoder's reconstruction. This module keeps the stream's state: which tiers the reference
holds (tiers are added only at keyframes and key pictures, dropped at any frame), whether the key
reference chain is intact (then a decoder that lost frames resumes at the next key picture
without a keyframe), and frame-counter gaps.
"""

from __future__ import annotations

import numpy as np

from ..errors import BitstreamError, ModelError
from ..frame import Frame
from . import _native
from .bitstream import BITSTREAM_VERSION, EncodedFrame, FrameHeader, SequenceHeader, tier_payload
from .synthesis import SynthesisTransform


class MissingReferenceError(BitstreamError):
    """A frame arrived without the reference it needs; the sender should send a keyframe."""


class Decoder:
    """Decodes one SNIS stream; frames must be given in order."""

    def __init__(
        self,
        seq: SequenceHeader,
        model: str | None = None,
        synthesis: SynthesisTransform | None = None,
        threads: int = 1,
    ) -> None:
        self.seq = seq
        if seq.version != BITSTREAM_VERSION:
            raise BitstreamError(f"unsupported bitstream version {seq.version}")
        self.synthesis = synthesis if synthesis is not None else SynthesisTransform.load(model)
        if self.synthesis.model_hash != seq.model_hash:
            raise ModelError(
                f"stream was coded with model {seq.model_id} #{seq.model_hash.hex()}, "
                f"but the synthesis weights {self.synthesis.path} are #{self.synthesis.model_hash.hex()}"
            )
        self._core = _native.Decoder(
            seq.width, seq.height, seq.tiers, seq.tier_step_log2, threads, self.synthesis.packed, seq.key_step_log2
        )
        self.valid_tiers = 0  # tiers the reference holds (0: no reference)
        self._key_index: int | None = None  # of the last decoded keyframe / key picture
        self.expected_frame_no: int | None = None
        self.last_tiers = 0  # tiers used for the last decoded frame

    def _usable(self, fh: FrameHeader) -> int:
        """How many tiers the reference allows for this frame (0: it cannot be decoded)."""
        if fh.keyframe:
            return self.seq.tiers
        if fh.switch_point:  # key picture: needs the previous key picture's base tier
            if self._key_index is None or fh.key_index != (self._key_index + 1) & 15:
                return 0
            return self.seq.tiers
        if self.expected_frame_no is not None and fh.frame_no != self.expected_frame_no:
            self.valid_tiers = 0
        return self.valid_tiers

    def stats(self) -> dict[str, float]:
        """The core's stage clocks and counters of the last decoded frame; `motion_tools` holds
        the motion-tool bits its prediction used (a decoder of fewer tiers drops OBMC's)."""
        return self._core.stats()

    def decode(
        self, frame: EncodedFrame | tuple[bytes, ...], tiers: int | None = None, show_tiers: int | None = None
    ) -> Frame:
        """Decode one frame with up to `tiers` tiers; `show_tiers` < tiers returns the picture of
        fewer tiers over the same prediction (what the encoder's reconstruction(show_tiers) is)."""
        chunks = frame.tiers if isinstance(frame, EncodedFrame) else tuple(frame)
        pts = frame.pts_us if isinstance(frame, EncodedFrame) else 0
        if not chunks:
            raise BitstreamError("frame has no tier chunks")
        if len(chunks) > self.seq.tiers:
            raise BitstreamError(f"frame has {len(chunks)} tiers, sequence header allows {self.seq.tiers}")
        fh = FrameHeader.from_bytes(chunks[0])
        usable = self._usable(fh)
        if usable == 0:
            if fh.switch_point and not fh.keyframe:
                self._key_index = None
                raise MissingReferenceError(
                    f"key picture {fh.frame_no} (key index {fh.key_index}) follows a lost "
                    f"key picture: waiting for a keyframe"
                )
            raise MissingReferenceError(f"P-frame {fh.frame_no} without its reference: waiting for a key picture")
        n = min(len(chunks), tiers or self.seq.tiers, usable)
        payloads = tuple(tier_payload(chunks[k], k, fh.frame_no) for k in range(n))
        h, w = self.seq.height, self.seq.width
        out = Frame(
            np.empty((h, w), np.uint8), np.empty((h // 2, w // 2), np.uint8), np.empty((h // 2, w // 2), np.uint8), pts
        )
        ftype = 0 if fh.keyframe else ((3 if fh.coarse_key else 2) if fh.switch_point else 1)
        while True:
            try:
                self._core.decode(ftype, fh.qp, payloads[:n], min(show_tiers or n, n), out.y, out.u, out.v)
                break
            except _native.NativeError as exc:
                code, what, tier = exc.args
                if tier > 0:  # an enhancement tier is corrupt: the tiers below it still decode
                    n = tier
                    continue
                self.valid_tiers = 0
                if fh.key_picture:
                    self._key_index = None
                raise BitstreamError(f"frame {fh.frame_no} tier {tier}: {what}") from None
        self.valid_tiers = n
        self.last_tiers = n
        if fh.key_picture:
            self._key_index = fh.key_index
        self.expected_frame_no = (fh.frame_no + 1) & 0xFFFF
        return out
