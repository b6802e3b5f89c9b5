"""V4L2 cameras (there is no camera here): YUYV and MJPEG conversion on real data made by FFmpeg,
and the read loop with FFmpeg reading a file in place of the device."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from snisd.capture.source import SourceError, SourceTimeout
from snisd.capture.synthetic import SyntheticScene
from snisd.capture.v4l2 import MjpegDecoder, V4l2Source, device_path, mjpeg_to_i420, yuyv_to_i420
from snisd.errors import InputError
from snisd.frame import Frame


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


def to_video_frame(f: Frame) -> av.VideoFrame:
    vf = av.VideoFrame(f.width, f.height, "yuv420p")
    for plane, data in zip(vf.planes, (f.y, f.u, f.v), strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        rows[: data.shape[0], : data.shape[1]] = data
    return vf


def test_yuyv_to_i420_matches_ffmpeg():
    f = SyntheticScene(64, 48).render(5)
    packed = to_video_frame(f).reformat(format="yuyv422")
    data = bytes(packed.planes[0])[: 64 * 48 * 2]
    out = yuyv_to_i420(data + b"\0" * 64, 64, 48, pts_us=7)  # drivers may pad the buffer
    assert out.pts_us == 7
    assert np.array_equal(out.y, f.y)
    # 4:2:0 -> 4:2:2 (FFmpeg) -> 4:2:0 (ours) keeps chroma close
    assert np.abs(out.u.astype(int) - f.u).max() <= 12 and psnr(out.u, f.u) > 38
    assert psnr(out.v, f.v) > 38
    ref = to_video_frame(f).reformat(format="yuyv422").reformat(format="yuv420p")
    ref_u = np.frombuffer(ref.planes[1], np.uint8).reshape(-1, ref.planes[1].line_size)[:24, :32]
    assert np.abs(out.u.astype(int) - ref_u).max() <= 1  # same as swscale's own conversion


def test_yuyv_rejects_short_buffer():
    with pytest.raises(InputError, match="too small"):
        yuyv_to_i420(b"\0" * 100, 64, 48)


def make_mjpeg(frame: Frame, pix_fmt: str = "yuvj422p") -> bytes:
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, pix_fmt
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"qscale": "2"}
    ctx.qmin = ctx.qmax = 2
    vf = to_video_frame(frame).reformat(format=pix_fmt)
    packets = ctx.encode(vf) + ctx.encode(None)
    return bytes(packets[0])


@pytest.mark.parametrize("pix_fmt", ["yuvj422p", "yuvj420p"])
def test_mjpeg_to_i420_decodes_real_jpeg(pix_fmt):
    f = SyntheticScene(160, 120).render(3)
    jpeg = make_mjpeg(f, pix_fmt)
    assert jpeg[:2] == b"\xff\xd8"  # a JPEG SOI marker: real MJPEG data
    out = mjpeg_to_i420(jpeg, pts_us=5)
    assert (out.width, out.height, out.pts_us) == (160, 120, 5)
    assert psnr(out.y, f.y) > 30
    assert psnr(out.u, f.u) > 30 and psnr(out.v, f.v) > 30
    dec = MjpegDecoder()  # a decoder is reused frame after frame
    assert np.array_equal(dec.decode(jpeg).y, dec.decode(jpeg).y)


def test_corrupt_mjpeg_is_a_source_error():
    with pytest.raises(SourceError):
        mjpeg_to_i420(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_v4l2_missing_device():
    assert device_path(3) == "/dev/video3" and device_path("/dev/video1") == "/dev/video1"
    src = V4l2Source("/dev/video-snisd-missing", 640, 480)
    assert src.pixel_format == "yuyv"
    assert V4l2Source(0, 1280, 720).pixel_format == "mjpeg"
    with pytest.raises(SourceError, match="no such camera"):
        src.open()
    with pytest.raises(InputError):
        V4l2Source(0, 640, 480, pixel_format="rgb")


def write_camera_clip(path: Path, codec: str, pix_fmt: str, frames: list[Frame]) -> None:
    """A clip of what a UVC camera sends: MJPEG packets, or raw YUYV packets."""
    out = av.open(str(path), "w", format="nut")
    st = out.add_stream(codec, rate=30)
    st.width, st.height, st.pix_fmt = frames[0].width, frames[0].height, pix_fmt
    for i, f in enumerate(frames):
        vf = to_video_frame(f).reformat(format=pix_fmt)
        vf.pts = i
        for pkt in st.encode(vf):
            out.mux(pkt)
    for pkt in st.encode():
        out.mux(pkt)
    out.close()


@pytest.mark.parametrize("fmt, codec, pix_fmt", [("mjpeg", "mjpeg", "yuvj422p"), ("yuyv", "rawvideo", "yuyv422")])
def test_v4l2_source_reads_camera_packets(tmp_path, monkeypatch, fmt, codec, pix_fmt):
    import snisd.capture.v4l2 as v4l2

    scene = SyntheticScene(160, 120)
    frames = [scene.render(n) for n in range(4)]
    clip = tmp_path / "video0"
    write_camera_clip(clip, codec, pix_fmt, frames)
    opened = {}
    real_open = av.open

    def fake_open(path, format=None, options=None):  # the device node is a file here
        opened.update(path=path, format=format, options=options)
        return real_open(path)

    monkeypatch.setattr(v4l2.av, "open", fake_open)
    src = V4l2Source(str(clip), 160, 120, 30, pixel_format=fmt)
    src.open()
    try:
        assert opened["format"] == "v4l2" and opened["options"]["fflags"] == "nonblock"
        assert opened["options"]["input_format"] == ("mjpeg" if fmt == "mjpeg" else "yuyv422")
        assert opened["options"]["video_size"] == "160x120"
        got = [src.read() for _ in range(4)]
        for a, b in zip(got, frames, strict=True):
            assert psnr(a.y, b.y) >= (25 if fmt == "mjpeg" else 99)  # YUYV luma is exact
        assert [f.pts_us for f in got] == sorted(f.pts_us for f in got)
        with pytest.raises(SourceError, match="ended"):
            src.read()
    finally:
        src.close()


def test_v4l2_source_times_out_on_a_stalled_camera(tmp_path):
    import snisd.capture.v4l2 as v4l2

    class Stalled:
        def demux(self, stream):
            raise av.error.BlockingIOError(11, "Resource temporarily unavailable")
            yield  # pragma: no cover - makes this a generator

        def close(self):
            pass

    src = V4l2Source(str(tmp_path / "video0"), 160, 120)
    src._container, src._stream = Stalled(), None
    t = time.monotonic()
    with pytest.raises(SourceTimeout):
        src.read(timeout=0.1)
    assert 0.09 <= time.monotonic() - t < 1
    src.close()
    with pytest.raises(SourceError, match="not open"):
        src.read()
    assert v4l2._POLL_S < 0.01
