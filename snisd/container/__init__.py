"""SNIS streams in fragmented MP4 (ISO/IEC 14496-12), one track per tier (docs/CONTAINER.md).

This package owns the fMP4 bytes; other packages use the names below, never slices:

* layout.py     the layout's constants and parsed descriptions (InitInfo, Sample, Fragment)
* boxes.py      box primitives: writing boxes, reading headers checked against their parent
* mux.py        init segments and one-frame fragments as bytes
* demux.py      complete `moov` / `moof` + `mdat` boxes parsed back, samples turned into frames
* streaming.py  the incremental parser fed with bytes as they arrive
* reader.py     a recorded file read lazily; writer.py  recording with crash-safe resume
* extract.py    keeping tiers < k of a recording
"""

from .demux import fragment_to_frame, frame_from_samples, parse_fragment, parse_init
from .extract import extract_tiers
from .layout import (
    COLORSPACES,
    NON_SYNC_FLAGS,
    SYNC_FLAGS,
    Fragment,
    InitInfo,
    Sample,
    frame_duration,
    sample_flags,
    ticks_to_us,
    timescale_for,
    us_to_ticks,
)
from .mux import build_fragment, build_init_segment, fragment_bytes, frame_samples, init_segment, make_init_info
from .reader import Fmp4Reader, open_fmp4, read_fmp4
from .streaming import Fmp4StreamParser
from .writer import Fmp4Writer

__all__ = [
    "COLORSPACES",
    "NON_SYNC_FLAGS",
    "SYNC_FLAGS",
    "Fmp4Reader",
    "Fmp4StreamParser",
    "Fmp4Writer",
    "Fragment",
    "InitInfo",
    "Sample",
    "build_fragment",
    "build_init_segment",
    "extract_tiers",
    "fragment_bytes",
    "fragment_to_frame",
    "frame_duration",
    "frame_from_samples",
    "frame_samples",
    "init_segment",
    "make_init_info",
    "open_fmp4",
    "parse_fragment",
    "parse_init",
    "read_fmp4",
    "sample_flags",
    "ticks_to_us",
    "timescale_for",
    "us_to_ticks",
]
