"""Containers for SNIS streams: fragmented MP4 (ISO/IEC 14496-12)."""

from .fmp4 import (COLORSPACES, Fmp4Reader, Fmp4StreamParser, Fmp4Writer, build_fragment, build_init_segment,
                   extract_tiers, open_fmp4, read_fmp4, timescale_for)

__all__ = [
    "COLORSPACES", "Fmp4Reader", "Fmp4StreamParser", "Fmp4Writer", "build_fragment", "build_init_segment",
    "extract_tiers", "open_fmp4", "read_fmp4", "timescale_for",
]
