"""Fixed SNIS streams for the container tests: frames with valid tier headers and random payloads."""

from __future__ import annotations

import random
from pathlib import Path

from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from snisd.container import Fmp4Writer

SEQ = SequenceHeader(1280, 720, 30, 1, tiers=3, keyframe_interval=10)


def make_frames(
    n: int = 20, seed: int = 0, tiers: int = 3, max_chunk: int = 3000, pts0: int = 0, fps: float = 30.0
) -> list[EncodedFrame]:
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        key = i % 10 == 0
        switch = i % 5 == 0
        t0 = FrameHeader(FRAME_I if key else FRAME_P, switch, i & 0xFFFF, 20).to_bytes() + rng.randbytes(
            rng.randint(0, max_chunk)
        )
        chunks = [t0] + [enhancement_header(t, i) + rng.randbytes(rng.randint(0, max_chunk)) for t in range(1, tiers)]
        frames.append(EncodedFrame(i, pts0 + round(i * 1e6 / fps), key, switch, tuple(chunks)))
    return frames


def write_file(path: Path, frames: list[EncodedFrame], seq: SequenceHeader = SEQ, **kw) -> list[int]:
    """Write a recording; returns the file size after the init segment and after each fragment."""
    ends = []
    with Fmp4Writer(path, seq, **kw) as w:
        ends.append(path.stat().st_size)
        for f in frames:
            w.write(f)
            ends.append(path.stat().st_size)
    return ends
