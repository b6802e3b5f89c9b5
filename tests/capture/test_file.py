"""Video files as a camera: PyAV and .y4m reading, odd sizes, bad files, looping and scaling."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from snisd.capture import open_source
from snisd.capture.file import FileSource, iter_frames, probe
from snisd.errors import InputError

CLIP = Path(__file__).resolve().parents[1] / "data" / "bikes_12f.mp4"  # 12 frames, 640x272, 25 fps


def test_iter_frames_reads_clips():
    frames = list(iter_frames(CLIP, max_frames=5))
    assert len(frames) == 5
    w, h, fps = probe(str(CLIP))
    assert (w, h, fps) == (640, 272, 25)
    assert all((f.width, f.height) == (w, h) for f in frames)
    assert [f.pts_us for f in frames] == sorted(f.pts_us for f in frames)
    assert frames[0].y.std() > 5  # real picture content


def write_y4m(path: Path, width: int, height: int, frames: int = 3) -> list[np.ndarray]:
    """A .y4m written by FFmpeg; returns the luma planes written."""
    out = av.open(str(path), "w", format="yuv4mpegpipe")
    st = out.add_stream("rawvideo", rate=25)
    st.width, st.height, st.pix_fmt = width, height, "yuv420p"
    rng = np.random.default_rng(1)
    lumas = []
    for i in range(frames):
        vf = av.VideoFrame(width, height, "yuv420p")
        y = rng.integers(16, 235, (height, width), dtype=np.uint8)
        rows = np.frombuffer(vf.planes[0], np.uint8).reshape(-1, vf.planes[0].line_size)
        rows[:height, :width] = y
        for p in vf.planes[1:]:
            np.frombuffer(p, np.uint8)[:] = 128
        vf.pts = i
        lumas.append(y)
        for pkt in st.encode(vf):
            out.mux(pkt)
    for pkt in st.encode():
        out.mux(pkt)
    out.close()
    return lumas


def test_y4m_odd_size_is_cropped_to_even(tmp_path):
    path = tmp_path / "odd.y4m"
    lumas = write_y4m(path, 35, 27)
    frames = list(iter_frames(path))
    assert len(frames) == 3
    assert (frames[0].width, frames[0].height) == (34, 26)
    assert np.array_equal(frames[1].y, lumas[1][:26, :34])
    assert frames[1].pts_us == 40000


def test_iter_frames_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_frames(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(InputError, match="junk.mp4"):
        list(iter_frames(junk))
    tiny = tmp_path / "tiny.y4m"
    write_y4m(tiny, 8, 8, 1)
    with pytest.raises(InputError, match="16x16"):
        list(iter_frames(tiny))


def test_file_source_loops_with_increasing_pts():
    src = FileSource(CLIP, paced=False)  # 12 frames: 30 reads loop it twice
    with src:
        pts = [src.read().pts_us for _ in range(30)]
    assert all(b > a for a, b in pairwise(pts))
    assert src.fps == pytest.approx(25, rel=0.01)


def test_file_source_scales_to_requested_size():
    src = open_source(f"file:{CLIP}", 320, 136)
    try:
        f = src.read()
        assert (f.width, f.height) == (320, 136)
        assert src.fps == 25
    finally:
        src.close()
