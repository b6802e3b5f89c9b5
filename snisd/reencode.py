"""Re-encoding a decoded stream for standard WebRTC players: VP8 (libvpx) or H.264 (libx264).

The receiver decodes SNIS once per stream; browsers and media servers do not read SNIS, so the
decoded pictures are encoded once more, on a worker thread, to a codec every WebRTC stack
knows. One `LiveEncoder` per stream serves every consumer of that stream (the live view's
viewers and the forwarder): it keeps only the latest picture, so it never blocks the decoder,
encodes in real-time mode and emits a keyframe every KEYFRAME_INTERVAL_S or when asked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

log = logging.getLogger("snisd.reencode")

VIDEO_CLOCK = Fraction(1, 90000)
KEYFRAME_INTERVAL_S = 2.0
CODECS = ("vp8", "h264")
MIME_TYPES = {"vp8": "video/vp8", "h264": "video/h264"}


def bitrate_for(width: int, height: int) -> int:
    """Bit rate of the re-encoded view: ~3 bits per 100 pixels per frame at 25 fps, 0.3..6 Mbit/s."""
    return int(min(6_000_000, max(300_000, width * height * 25 * 0.06)))


def _codec_context(codec: str, width: int, height: int, fps: float):
    import av

    if codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        # Constrained baseline, Annex B with SPS/PPS before every keyframe: what WebRTC's H.264
        # packetization (packetization-mode 1) and a player joining mid-stream need.
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": "repeat-headers=1:bframes=0:keyint=100000",
        }
    elif codec == "vp8":
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "error-resilient": "1",
            "static-thresh": "1",
        }
    else:
        raise ValueError(f"re-encoding codec must be one of {CODECS}, got {codec!r}")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = VIDEO_CLOCK
    # the rate control spends bit_rate / framerate per picture: without the frame rate libx264
    # takes the 90 kHz clock for one and codes flat grey pictures
    ctx.framerate = Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = bitrate_for(width, height)
    ctx.gop_size = 100000  # keyframes only when asked (here)
    ctx.thread_count = 2
    return ctx


class LiveEncoder:
    """The single re-encoder of one stream; runs on its own thread while started.

    `on_packets(packets, keyframe)` is called on `loop` with each encoded picture's packets.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_packets: Callable[[list, bool], None], fps: float, codec: str = "vp8"
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"re-encoding codec must be one of {CODECS}, got {codec!r}")
        self.loop = loop
        self.on_packets = on_packets
        self.fps = fps or 25.0
        self.codec = codec
        self._cond = threading.Condition()
        self._latest: Any = None  # the latest decoded picture (a Frame)
        self._seq = 0
        self._keyframe = True
        self._running = False
        self._gen = 0  # a stopped thread exits even if a new one started meanwhile
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()
        self.frames_encoded = 0
        self.encode_ms = 0.0

    def put(self, frame) -> None:
        """Called by the decoder thread for every decoded picture; never blocks on encoding."""
        with self._cond:
            self._latest = frame
            self._seq += 1
            self._cond.notify()

    @property
    def latest(self):
        return self._latest

    @property
    def running(self) -> bool:
        return self._running

    def request_keyframe(self) -> None:
        with self._cond:
            self._keyframe = True

    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
            self._keyframe = True
            self._gen += 1
            gen = self._gen
        self._thread = threading.Thread(target=self._main, args=(gen,), name=f"reencode-{self.codec}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread = None

    def _main(self, gen: int) -> None:
        import av
        import numpy as np

        ctx = None
        seen = 0
        since_key = 0
        while True:
            with self._cond:
                while self._running and gen == self._gen and (self._latest is None or self._seq == seen):
                    self._cond.wait(0.5)
                if not self._running or gen != self._gen:
                    return
                frame, seen = self._latest, self._seq
                gop = max(1, int(round(self.fps * KEYFRAME_INTERVAL_S)))
                key = self._keyframe or since_key >= gop
                self._keyframe = False
            t0 = time.perf_counter()
            h, w = frame.y.shape
            if ctx is None or (ctx.width, ctx.height) != (w, h):
                ctx = _codec_context(self.codec, w, h, self.fps)
                key = True
            planes = np.concatenate((frame.y.ravel(), frame.u.ravel(), frame.v.ravel()))
            vf = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
            vf.pts = int((time.monotonic() - self._t0) / VIDEO_CLOCK)
            vf.time_base = VIDEO_CLOCK
            vf.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            try:
                packets = list(ctx.encode(vf))
            except Exception as exc:  # pragma: no cover - encoder trouble: start over
                log.warning("re-encoding to %s failed: %s", self.codec, exc)
                ctx = None
                continue
            for p in packets:
                p.time_base = VIDEO_CLOCK
            since_key = 0 if key else since_key + 1
            self.frames_encoded += 1
            self.encode_ms = 0.9 * self.encode_ms + 0.1 * (time.perf_counter() - t0) * 1e3
            if packets:
                try:
                    self.loop.call_soon_threadsafe(self.on_packets, packets, any(p.is_keyframe for p in packets))
                except RuntimeError:  # loop closed
                    return
