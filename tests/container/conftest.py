"""The recording most container tests read: 20 frames of 3 tiers written by Fmp4Writer."""

from __future__ import annotations

from pathlib import Path

import pytest
from fmp4_samples import make_frames, write_file

from snisd.codec.bitstream import EncodedFrame


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, list[EncodedFrame], list[int]]:
    path = tmp_path_factory.mktemp("fmp4") / "rec.mp4"
    frames = make_frames()
    ends = write_file(path, frames)
    return path, frames, ends
