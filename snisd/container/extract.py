"""Tier extraction: a copy of a recording that keeps tiers < k, payload bytes unchanged."""

from __future__ import annotations

import os

from ..errors import ContainerError
from .layout import InitInfo
from .mux import fragment_bytes, init_segment
from .reader import Fmp4Reader


def extract_tiers(src_path: str | os.PathLike, dst_path: str | os.PathLike, k: int) -> int:
    """Copy `src_path` to `dst_path` keeping tiers < k: drops tracks and trafs, copies the tier
    payloads byte for byte. Returns the number of frames written. A truncated source gives a
    destination with its complete fragments."""
    if k < 1:
        raise ContainerError(f"tier count {k} must be at least 1")
    reader = Fmp4Reader(src_path)
    if reader.init is None:
        raise ContainerError(f"{src_path}: no complete init segment", 0, "moov")
    info = reader.init
    n = min(k, info.tiers)
    out_info = InitInfo(
        info.seq_bytes,
        info.width,
        info.height,
        info.timescale,
        info.default_duration,
        info.nclx,
        info.full_range,
        info.tracks[:n],
    )
    count = 0
    with open(dst_path, "wb") as out:
        out.write(init_segment(out_info))
        for frag in reader.fragments():
            out.write(fragment_bytes(frag.sequence_number, frag.samples[:n], out_info.tracks))
            count += 1
    return count
