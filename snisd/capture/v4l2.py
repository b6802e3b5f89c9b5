"""USB (UVC) cameras through Video4Linux2, e.g. on an Odroid.

The device is opened with PyAV's ``v4l2`` input in non-blocking mode and read packet by packet;
the pixels are converted here, not by FFmpeg, so that the conversion is ours to test:

* YUYV (YUV 4:2:2 packed, what UVC cameras send uncompressed) -> I420 by plain numpy: luma is every
  other byte, chroma is averaged over each pair of rows.
* MJPEG (what UVC cameras send at 720p/1080p) -> decoded by FFmpeg's JPEG decoder into planar YUV
  (usually 4:2:2) and brought to 4:2:0 by swscale. Never through RGB.

Not tested against a real camera here (the build machine has none): the conversions are tested with
real YUYV and MJPEG data made by FFmpeg, the device path is not.
"""

from __future__ import annotations

import logging
import os
import time

import av
import numpy as np

from ..errors import InputError
from ..frame import Frame
from .file import video_frame_to_frame
from .source import Source, SourceError, SourceTimeout

log = logging.getLogger("snisd.capture")

FORMATS = ("auto", "yuyv", "mjpeg")
_POLL_S = 0.002


def yuyv_to_i420(data: bytes | np.ndarray, width: int, height: int, pts_us: int = 0) -> Frame:
    """Convert one packed YUYV (Y0 U Y1 V) picture to an I420 Frame.

    Chroma is already half width; vertically, each output row is the rounded mean of two input
    rows. ``data`` may carry padding after the picture (some drivers round the buffer size up).
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    need = width * height * 2
    if buf.size < need:
        raise InputError(f"YUYV buffer of {buf.size} bytes is too small for {width}x{height} ({need})")
    if width % 2 or height % 2:
        raise InputError(f"YUYV size {width}x{height} must be even")
    pix = buf[:need].reshape(height, width // 2, 4)
    y = np.ascontiguousarray(pix[:, :, 0::2].reshape(height, width))
    pairs = pix[:, :, 1::2].astype(np.uint16)  # (h, w/2, 2): U and V for every pixel pair
    uv = ((pairs[0::2] + pairs[1::2] + 1) >> 1).astype(np.uint8)
    return Frame(y, np.ascontiguousarray(uv[:, :, 0]), np.ascontiguousarray(uv[:, :, 1]), pts_us)


class MjpegDecoder:
    """Decodes MJPEG packets (one JPEG per frame) to I420 Frames of the JPEG's own size."""

    def __init__(self) -> None:
        self._ctx = av.CodecContext.create("mjpeg", "r")

    def decode(self, data: bytes, pts_us: int = 0) -> Frame:
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            raise SourceError(f"corrupt MJPEG frame ({len(data)} bytes): {exc}") from None
        if not frames:
            raise SourceError(f"MJPEG packet of {len(data)} bytes gave no picture")
        return video_frame_to_frame(frames[-1], pts_us)


def mjpeg_to_i420(data: bytes, pts_us: int = 0) -> Frame:
    """One-shot convenience: decode a single JPEG picture to an I420 Frame."""
    return MjpegDecoder().decode(data, pts_us)


def device_path(spec: str | int) -> str:
    """``0`` -> ``/dev/video0``; a path is returned unchanged."""
    s = str(spec)
    return f"/dev/video{s}" if s.isdigit() else s


class V4l2Source(Source):
    """A V4L2 capture device. ``pixel_format`` is ``auto`` (MJPEG above 640x480, else YUYV)."""

    def __init__(
        self, device: str | int = 0, width: int = 1280, height: int = 720, fps: float = 30.0, pixel_format: str = "auto"
    ) -> None:
        if pixel_format not in FORMATS:
            raise InputError(f"pixel format {pixel_format!r} is not one of {FORMATS}")
        self.device = device_path(device)
        self.name = f"v4l2:{self.device}"
        self.width, self.height, self.fps = width, height, float(fps)
        if pixel_format == "auto":
            pixel_format = "mjpeg" if width * height > 640 * 480 else "yuyv"
        self.pixel_format = pixel_format
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._mjpeg: MjpegDecoder | None = None
        self._t0 = 0.0

    def open(self) -> None:
        if not os.path.exists(self.device):
            raise SourceError("no such camera device", self.device)
        options = {
            "video_size": f"{self.width}x{self.height}",
            "framerate": f"{self.fps:g}",
            "input_format": "mjpeg" if self.pixel_format == "mjpeg" else "yuyv422",
            "fflags": "nonblock",  # read() polls so that a stalled camera times out
        }
        try:
            container = av.open(self.device, format="v4l2", options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open camera: {exc}", self.device) from None
        self._container = container
        self._stream = stream = container.streams.video[0]
        cc = stream.codec_context
        if (cc.width, cc.height) != (self.width, self.height):
            got = f"{cc.width}x{cc.height}"
            self.close()
            raise SourceError(f"camera gave {got}, not the {self.width}x{self.height} asked for", self.device)
        self._mjpeg = MjpegDecoder() if self.pixel_format == "mjpeg" else None
        self._t0 = time.monotonic()

    def read(self, timeout: float = 2.0) -> Frame:
        if self._container is None:
            raise SourceError("camera is not open", self.device)
        deadline = time.monotonic() + timeout
        while True:
            try:
                packet = next(self._container.demux(self._stream))
            except (BlockingIOError, av.error.BlockingIOError):
                if time.monotonic() >= deadline:
                    raise SourceTimeout(f"no frame for {timeout:g} s", self.device) from None
                time.sleep(_POLL_S)
                continue
            except StopIteration:
                raise SourceError("camera stream ended", self.device) from None
            except (av.error.FFmpegError, OSError) as exc:
                raise SourceError(f"camera read failed: {exc}", self.device) from None
            if packet.size == 0:  # PyAV's end-of-stream flush packet: the device is gone
                raise SourceError("camera stream ended", self.device)
            pts_us = int((time.monotonic() - self._t0) * 1e6)
            data = bytes(packet)
            if self._mjpeg is not None:
                frame = self._mjpeg.decode(data, pts_us)
                if (frame.width, frame.height) != (self.width, self.height):
                    raise SourceError(f"MJPEG frame is {frame.width}x{frame.height}", self.device)
                return frame
            return yuyv_to_i420(data, self.width, self.height, pts_us)

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
                self._stream = None
