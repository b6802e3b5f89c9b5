"""Video files as frame sources: any clip PyAV (FFmpeg) can read, including .y4m.

Two uses:

* :func:`iter_frames` - an unpaced iterator for ``snisd encode``: every frame of the file once,
  as I420 :class:`~snisd.frame.Frame` objects.
* :class:`FileSource` - the same file as a live camera: looped forever, released at the clip's own
  frame rate, optionally scaled to a fixed size.

Odd widths or heights are cropped to even (the last column or row is dropped). Pixel formats other
than I420 are converted by FFmpeg's swscale (a file is not the board's camera path, so this is fine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from ..errors import InputError
from ..frame import Frame
from .source import Pacer, Source, SourceError


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise InputError("no such file", path)
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot read as video: {exc}", path) from None
    if not container.streams.video:
        container.close()
        raise InputError("file has no video stream", path)
    return container


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return Fraction(30)


def video_frame_to_frame(vf: av.VideoFrame, pts_us: int, width: int = 0, height: int = 0) -> Frame:
    """Convert one decoded PyAV frame to an I420 Frame, scaled to width x height if given.

    Without a target size the picture keeps its own size, cropped to even dimensions.
    """
    if width and height:
        if (vf.width, vf.height, vf.format.name) != (width, height, "yuv420p"):
            vf = vf.reformat(width=width, height=height, format="yuv420p")
    elif vf.format.name != "yuv420p":
        vf = vf.reformat(format="yuv420p")
    w, h = vf.width & ~1, vf.height & ~1
    if w < 16 or h < 16:
        raise InputError(f"frame size {vf.width}x{vf.height} is below the 16x16 minimum")
    planes = []
    for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
        plane = vf.planes[i]
        rows = np.frombuffer(plane, dtype=np.uint8)  # type: ignore[call-overload]  # PyAV planes are buffers
        stride = plane.line_size
        rows = rows[: stride * ((vf.height + (1 if i else 0)) // (2 if i else 1))]
        rows = rows.reshape(-1, stride)
        planes.append(np.ascontiguousarray(rows[:ph, :pw]))
    return Frame(planes[0], planes[1], planes[2], pts_us)


def probe(path: str) -> tuple[int, int, Fraction]:
    """(even width, even height, frame rate) of the first video stream."""
    with _open(str(path)) as container:
        stream = container.streams.video[0]
        w, h = stream.codec_context.width & ~1, stream.codec_context.height & ~1
        fps = _stream_fps(stream)
    if w < 16 or h < 16:
        raise InputError(f"video size {w}x{h} is below the 16x16 minimum", path)
    return w, h, fps


def iter_frames(path: str | os.PathLike, max_frames: int = 0, width: int = 0, height: int = 0) -> Iterator[Frame]:
    """Yield the frames of a video file in order, unpaced, as I420 Frames.

    ``max_frames`` > 0 stops after that many. ``pts_us`` comes from the file's timestamps, or from
    the frame index and rate when the file has none. Raises InputError for a missing, unreadable or
    undecodable file, naming the path.
    """
    path = str(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        count = 0
        try:
            for vf in container.decode(stream):
                if vf.pts is not None and vf.time_base is not None:
                    pts_us = int(round(vf.pts * vf.time_base * 1_000_000))
                else:
                    pts_us = int(round(count / fps * 1_000_000))
                yield video_frame_to_frame(vf, pts_us, width, height)
                count += 1
                if max_frames and count >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            raise InputError(f"decoding failed after {count} frames: {exc}", path) from None
        if count == 0:
            raise InputError("no decodable video frames", path)
    finally:
        container.close()


class FileSource(Source):
    """A file played as a camera: looped, paced at its frame rate, timestamps keep increasing."""

    def __init__(self, path: str | os.PathLike, width: int = 0, height: int = 0, paced: bool = True) -> None:
        self.path = str(path)
        self.name = f"file:{self.path}"
        nw, nh, rate = probe(self.path)
        self.width, self.height = (width, height) if width and height else (nw, nh)
        self.fps = float(rate)
        self.paced = paced
        self._frames: Iterator[Frame] | None = None
        self._pacer: Pacer | None = None
        self._n = -1

    def open(self) -> None:
        self._pacer = Pacer(self.fps) if self.paced else None
        self._frames = self._loop()
        self._n = -1

    def _loop(self) -> Iterator[Frame]:
        while True:
            got = False
            for frame in iter_frames(self.path, 0, self.width, self.height):
                got = True
                yield frame
            if not got:  # pragma: no cover - iter_frames raises first
                raise SourceError("file yielded no frames", self.path)

    @property
    def dropped(self) -> int:
        return self._pacer.dropped if self._pacer else 0

    def read(self, timeout: float = 2.0) -> Frame:
        if self._frames is None:
            self.open()
        assert self._frames is not None
        if self._pacer is not None:
            n = self._pacer.next()
            # a late reader skips frames, as a sensor would
            while self._n + 1 < n:
                next(self._frames)
                self._n += 1
            pts = self._pacer.pts_us(n)
        else:
            n = self._n + 1
            pts = int(round(n * 1e6 / self.fps))
        self._n = n
        frame = next(self._frames)
        return Frame(frame.y, frame.u, frame.v, pts)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
            self._frames = None
