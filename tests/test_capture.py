"""Camera sources: the synthetic scene, video files, YUYV/MJPEG conversion, reconnect with backoff."""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from snisd.capture import make_source, open_source, parse_spec
from snisd.capture.file import FileSource, iter_frames, probe
from snisd.capture.picamera import i420_from_strided
from snisd.capture.source import Pacer, ReconnectingSource, Source, SourceError, SourceTimeout
from snisd.capture.synthetic import SyntheticScene, SyntheticSource
from snisd.capture.v4l2 import MjpegDecoder, V4l2Source, device_path, mjpeg_to_i420, yuyv_to_i420
from snisd.errors import InputError
from snisd.frame import Frame

CLIP = Path(__file__).resolve().parent / "data" / "bikes_12f.mp4"  # 12 frames, 640x272, 25 fps


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def to_video_frame(f: Frame) -> av.VideoFrame:
    vf = av.VideoFrame(f.width, f.height, "yuv420p")
    for plane, data in zip(vf.planes, (f.y, f.u, f.v)):
        rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        rows[: data.shape[0], : data.shape[1]] = data
    return vf


# -- synthetic ----------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_moves():
    a, b = SyntheticScene(320, 240, seed=3), SyntheticScene(320, 240, seed=3)
    for n in (0, 1, 77):
        fa, fb = a.render(n), b.render(n)
        assert np.array_equal(fa.y, fb.y) and np.array_equal(fa.u, fb.u) and np.array_equal(fa.v, fb.v)
    other = SyntheticScene(320, 240, seed=4).render(0)
    assert not np.array_equal(other.y, a.render(0).y)
    f0, f1, f30 = a.render(0), a.render(1), a.render(30)
    assert np.mean(np.abs(f1.y.astype(int) - f0.y)) > 0.5  # noise and motion between frames
    assert np.mean(np.abs(f30.y.astype(int) - f0.y)) > 5  # the scene has moved a lot after a second
    assert f1.pts_us == 33333


def test_synthetic_looks_natural():
    f = SyntheticScene(640, 360).render(10)
    y = f.y.astype(np.float64)
    assert 90 < y.mean() < 160 and 12 < y.std() < 60  # mid-grey, good contrast, nothing clipped
    assert f.y.min() >= 1 and f.y.max() <= 254
    # texture at every scale: neighbouring pixels correlate strongly but not perfectly
    dx = np.abs(np.diff(y, axis=1)).mean()
    assert 1.0 < dx < 15.0
    assert f.u.std() > 2 and f.v.std() > 2  # there is colour


def test_synthetic_pans_smoothly():
    s = SyntheticScene(320, 240)
    offsets = [s.pan(n) for n in range(60)]
    steps = [abs(b[1] - a[1]) for a, b in zip(offsets, offsets[1:])]
    assert max(steps) <= 8  # slow pan: a few pixels per frame at most (wrap aside)


def test_synthetic_is_fast_enough_for_1080p30():
    s = SyntheticScene(1920, 1080)
    s.render(0)
    t = time.perf_counter()
    for n in range(1, 31):
        s.render(n)
    per_frame = (time.perf_counter() - t) / 30
    assert per_frame < 1 / 30 / 2, f"{per_frame * 1e3:.1f} ms per 1080p frame"


def test_synthetic_source_paces_and_counts_drops():
    src = SyntheticSource(64, 48, fps=50)
    with src:
        t = time.monotonic()
        pts = [src.read().pts_us for _ in range(10)]
        elapsed = time.monotonic() - t
        assert 0.15 <= elapsed < 0.6  # 9 periods of 20 ms
        assert pts == sorted(pts)
        time.sleep(0.2)  # a late reader: ten frame periods missed
        src.read()
        assert src.dropped >= 8


def test_pacer_jumps_when_late():
    now = [0.0]
    p = Pacer(10, clock=lambda: now[0])
    assert p.next() == 0
    now[0] = 0.55
    assert p.next() == 5 and p.dropped == 4
    assert p.pts_us(5) == 500000


# -- files --------------------------------------------------------------------------------------

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
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert src.fps == pytest.approx(25, rel=0.01)


def test_file_source_scales_to_requested_size():
    src = open_source(f"file:{CLIP}", 320, 136)
    try:
        f = src.read()
        assert (f.width, f.height) == (320, 136)
        assert src.fps == 25
    finally:
        src.close()


# -- V4L2 pixel conversion (real data made by FFmpeg; there is no camera here) -------------------

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


def test_picamera_planes_from_strided_buffer():
    f = SyntheticScene(48, 32).render(0)
    stride = 64
    buf = np.zeros(stride * 32 + 2 * (stride // 2) * 16, np.uint8)
    buf[: stride * 32].reshape(32, stride)[:, :48] = f.y
    off = stride * 32
    buf[off:off + 32 * 16].reshape(16, 32)[:, :24] = f.u
    buf[off + 32 * 16:].reshape(16, 32)[:, :24] = f.v
    out = i420_from_strided(buf, 48, 32, stride)
    assert np.array_equal(out.y, f.y) and np.array_equal(out.u, f.u) and np.array_equal(out.v, f.v)
    with pytest.raises(InputError):
        i420_from_strided(buf[:100], 48, 32, stride)


# -- specs --------------------------------------------------------------------------------------

def test_parse_spec():
    assert parse_spec("0") == ("auto", "0")
    assert parse_spec("/dev/video2") == ("v4l2", "/dev/video2")
    assert parse_spec("v4l2:1") == ("v4l2", "1")
    assert parse_spec("picamera") == ("picamera", "0")
    assert parse_spec("file:a b.mp4") == ("file", "a b.mp4")
    assert parse_spec("synthetic") == ("synthetic", "")
    assert parse_spec("synthetic:7") == ("synthetic", "7")
    for bad in ("", "rtsp://x", "file:", "synthetic:x"):
        with pytest.raises(InputError):
            parse_spec(bad)


def test_number_falls_back_to_v4l2_without_picamera2():
    from snisd.capture import picamera

    if picamera.camera_count():
        pytest.skip("a Pi camera is present")
    src = make_source("0", 640, 480, 30)
    assert isinstance(src, V4l2Source) and src.device == "/dev/video0"


def test_open_source_synthetic():
    src = open_source("synthetic:2", 64, 48, 30)
    try:
        assert isinstance(src, SyntheticSource) and src.seed == 2
        assert src.read().width == 64
    finally:
        src.close()


# -- reconnect ----------------------------------------------------------------------------------

class FlakySource(Source):
    """Fails reads and opens on a script: a camera unplugged and plugged back in."""

    name = "flaky"
    width, height, fps = 32, 32, 30.0
    opens_failing = 0
    instances: list["FlakySource"] = []

    def __init__(self, fail_after: int, stall: bool = False) -> None:
        self.fail_after = fail_after
        self.stall = stall
        self.reads = 0
        self.closed = False
        FlakySource.instances.append(self)

    def open(self) -> None:
        if FlakySource.opens_failing > 0:
            FlakySource.opens_failing -= 1
            raise SourceError("no such device")

    def read(self, timeout: float = 2.0) -> Frame:
        self.reads += 1
        if self.reads > self.fail_after:
            if self.stall:
                raise SourceTimeout(f"no frame for {timeout} s")
            raise OSError(19, "No such device")
        y = np.full((32, 32), self.reads, np.uint8)
        c = np.full((16, 16), 128, np.uint8)
        return Frame(y, c, c.copy(), pts_us=self.reads * 33333)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("stall", [False, True])
def test_reconnect_with_backoff(stall, caplog):
    caplog.set_level(logging.INFO, "snisd.capture")
    FlakySource.instances = []
    FlakySource.opens_failing = 0
    src = ReconnectingSource(lambda: FlakySource(3, stall), backoff_min=0.01, backoff_max=0.04)
    src.open()
    pts = [src.read().pts_us for _ in range(3)]
    FlakySource.opens_failing = 3  # the device is gone for three attempts
    t = time.monotonic()
    pts += [src.read().pts_us for _ in range(3)]
    elapsed = time.monotonic() - t
    assert elapsed >= 0.01 + 0.02 + 0.04 + 0.04 - 0.005  # backoff doubled, capped at 0.04
    assert src.status.reopens == 1 and src.status.failures == 1 and src.status.attempts == 4
    assert src.status.state == "open"
    assert all(b > a for a, b in zip(pts, pts[1:])), pts  # timestamps stay monotonic across reopen
    assert FlakySource.instances[0].closed
    assert "reopening" in caplog.text and "reopened" in caplog.text
    src.close()
    assert src.status.state == "closed"


def test_reconnect_gives_up_after_max_failures_and_stop_interrupts():
    FlakySource.opens_failing = 0
    src = ReconnectingSource(lambda: FlakySource(0), backoff_min=0.01, backoff_max=0.01, max_failures=2)
    src.open()
    FlakySource.opens_failing = 100
    with pytest.raises(SourceError, match="did not come back"):
        src.read()
    assert src.status.state == "failed"
    FlakySource.opens_failing = 0
    src2 = ReconnectingSource(lambda: FlakySource(0), backoff_min=5, backoff_max=5)
    src2.open()
    src2.stop()
    t = time.monotonic()
    with pytest.raises(SourceError):
        src2.read()
    assert time.monotonic() - t < 1


# -- the V4L2 read loop, with FFmpeg reading a file in place of the device ----------------------

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
        for a, b in zip(got, frames):
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
