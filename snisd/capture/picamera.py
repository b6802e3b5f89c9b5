"""Raspberry Pi CSI cameras through picamera2 (libcamera).

The ISP delivers YUV420 (I420) directly, so no colour conversion happens on the board: the planes
are cut out of the request buffer using the stride libcamera reports.

NOT RUN ON A CAMERA HERE: the build machine has no Pi camera and no picamera2. ``picamera2`` is
imported only where it exists (Raspberry Pi OS: ``apt install python3-picamera2``; a virtualenv
needs ``--system-site-packages`` to see it). What the tests cover is the plane extraction from a
strided buffer and this module's use of picamera2's job queue, against a fake ``Picamera2`` that
queues jobs and hands out requests as picamera2 documents it.

A frame is fetched in picamera2's asynchronous form: ``capture_request(wait=False)`` queues a job,
``wait(job, timeout)`` waits for it. A job that timed out stays queued in picamera2 and would take
the next completed request for nobody to release (the camera stalls once its buffers are all
held), so a timeout clears the queue with ``cancel_all_and_flush()`` and releases a request the job
got in the meantime.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from typing import Any

import numpy as np

from ..errors import InputError
from ..frame import Frame
from .source import Source, SourceError, SourceTimeout

log = logging.getLogger("snisd.capture")

#: How long a cancelled job may take to hand over a request it completed just before the flush.
_LATE_RESULT_WAIT = 0.5


def available() -> bool:
    """True when picamera2 can be imported (it is not on PyPI for every platform)."""
    try:
        import picamera2  # noqa: F401
    except Exception:  # ImportError, or libcamera failing to load
        return False
    return True


def camera_count() -> int:
    """Number of cameras libcamera sees; 0 when picamera2 is missing."""
    if not available():
        return 0
    from picamera2 import Picamera2

    try:
        return len(Picamera2.global_camera_info())
    except Exception as exc:  # libcamera errors are not typed
        log.debug("picamera2 camera enumeration failed: %s", exc)
        return 0


def i420_from_strided(buf: np.ndarray | bytes, width: int, height: int, stride: int, pts_us: int = 0) -> Frame:
    """Cut I420 planes out of a buffer whose luma rows are ``stride`` bytes (chroma: stride/2)."""
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.reshape(-1)
    cstride = stride // 2
    ysize, csize = stride * height, cstride * (height // 2)
    if data.size < ysize + 2 * csize or stride < width:
        raise InputError(f"YUV420 buffer of {data.size} bytes, stride {stride}, does not hold {width}x{height}")
    y = data[:ysize].reshape(height, stride)[:, :width]
    u = data[ysize : ysize + csize].reshape(height // 2, cstride)[:, : width // 2]
    v = data[ysize + csize : ysize + 2 * csize].reshape(height // 2, cstride)[:, : width // 2]
    return Frame(np.ascontiguousarray(y), np.ascontiguousarray(u), np.ascontiguousarray(v), pts_us)


class PiCameraSource(Source):
    """A libcamera camera at ``width`` x ``height`` and ``fps``, YUV420 from the ISP."""

    def __init__(self, index: int = 0, width: int = 1280, height: int = 720, fps: float = 30.0) -> None:
        self.index = index
        self.name = f"picamera:{index}"
        self.width, self.height, self.fps = width, height, float(fps)
        self._cam: Any = None
        self._stride = width

    def open(self) -> None:
        if not available():
            raise SourceError("picamera2 is not installed (apt install python3-picamera2)", self.name)
        from picamera2 import Picamera2

        try:
            cam = Picamera2(self.index)
            frame_us = int(1e6 / self.fps)
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
                buffer_count=4,
            )
            cam.configure(config)
            self._stride = int(cam.camera_configuration()["main"]["stride"])
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError/IndexError/... untyped
            raise SourceError(f"cannot open Pi camera {self.index}: {exc}", self.name) from None
        self._cam = cam

    def read(self, timeout: float = 2.0) -> Frame:
        cam = self._cam
        if cam is None:
            raise SourceError("camera is not open", self.name)
        job = None
        try:
            job = cam.capture_request(wait=False)
            request = cam.wait(job, timeout=timeout)
        # concurrent.futures.TimeoutError is the builtin TimeoutError only from Python 3.11 on.
        except (TimeoutError, concurrent.futures.TimeoutError):
            if job is not None:
                self._abandon(job)
            raise SourceTimeout(f"no frame for {timeout:g} s", self.name) from None
        except Exception as exc:  # libcamera errors are not typed
            raise SourceError(f"capture failed: {exc}", self.name) from None
        try:
            meta = request.get_metadata()
            ts = meta.get("SensorTimestamp")
            pts_us = int(ts // 1000) if ts else int(time.monotonic() * 1e6)
            buf = request.make_buffer("main")
            return i420_from_strided(buf, self.width, self.height, self._stride, pts_us)
        finally:
            request.release()

    def _abandon(self, job: Any) -> None:
        """Take a timed-out capture job off picamera2's queue, and release what it got if it won the race."""
        cam = self._cam
        try:
            cam.cancel_all_and_flush()
        except Exception as exc:  # the camera may be gone; closing it follows
            log.debug("%s: cancel_all_and_flush failed: %s", self.name, exc)
            return
        # Cancelled, the job raises CancelledError at once. If it completed between the timeout and
        # the flush, it is off the queue and holds a request, delivered as soon as picamera2 signals it.
        try:
            late = cam.wait(job, timeout=_LATE_RESULT_WAIT)
        except Exception:  # CancelledError (the usual case), or no result after all
            return
        if late is not None:
            late.release()

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
