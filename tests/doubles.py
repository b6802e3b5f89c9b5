"""Test doubles shared by the pipeline and daemon tests."""

from __future__ import annotations

import time

from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from snisd.frame import Frame


class DoubleEncoder:
    """Test double with the Encoder's interface: valid tier headers, fixed-size payloads."""

    def __init__(self, width: int, height: int, tiers: int = 3, delay: float = 0.0) -> None:
        self.sequence_header = SequenceHeader(width, height, 30, 1, tiers)
        self.delay = delay
        self.i = 0
        self.forced: list[int] = []

    def encode(self, frame: Frame, force_keyframe: bool = False) -> EncodedFrame:
        if self.delay:
            time.sleep(self.delay)
        key = force_keyframe or self.i == 0
        if force_keyframe:
            self.forced.append(self.i)
        tiers = [FrameHeader(FRAME_I if key else FRAME_P, key, self.i & 0xFFFF, 28).to_bytes() + bytes(200)]
        tiers += [enhancement_header(k, self.i) + bytes(100) for k in range(1, self.sequence_header.tiers)]
        ef = EncodedFrame(self.i, frame.pts_us, key, key, tuple(tiers))
        self.i += 1
        return ef
