"""The Pi camera source (there is no Pi camera here): plane extraction from a strided buffer, and
the use of picamera2's job queue against a fake ``Picamera2`` that queues jobs and hands out
requests the way picamera2 does (``capture_request(wait=False)`` queues a job, ``wait(job,
timeout)`` waits on its future, a job left queued takes the next completed request,
``cancel_all_and_flush()`` cancels and removes queued jobs, each request must be released)."""

from __future__ import annotations

import concurrent.futures
import sys
import types

import numpy as np
import pytest

from snisd.capture.picamera import PiCameraSource, i420_from_strided
from snisd.capture.source import SourceError, SourceTimeout
from snisd.capture.synthetic import SyntheticScene
from snisd.errors import InputError

W, H, STRIDE = 48, 32, 64
FUTURE_TIMEOUT = concurrent.futures.TimeoutError  # what Future.result raises, before any test patches the name


def strided_i420(n: int) -> tuple[np.ndarray, object]:
    f = SyntheticScene(W, H).render(n)
    buf = np.zeros(STRIDE * H + 2 * (STRIDE // 2) * (H // 2), np.uint8)
    buf[: STRIDE * H].reshape(H, STRIDE)[:, :W] = f.y
    off = STRIDE * H
    csize = (STRIDE // 2) * (H // 2)
    buf[off : off + csize].reshape(H // 2, STRIDE // 2)[:, : W // 2] = f.u
    buf[off + csize :].reshape(H // 2, STRIDE // 2)[:, : W // 2] = f.v
    return buf, f


def test_picamera_planes_from_strided_buffer():
    buf, f = strided_i420(0)
    out = i420_from_strided(buf, W, H, STRIDE)
    assert np.array_equal(out.y, f.y) and np.array_equal(out.u, f.u) and np.array_equal(out.v, f.v)
    with pytest.raises(InputError):
        i420_from_strided(buf[:100], W, H, STRIDE)


# -- a fake picamera2 ---------------------------------------------------------------------------


class FakeRequest:
    def __init__(self, cam: FakePicamera2, n: int) -> None:
        self.cam, self.n = cam, n
        self.buffer, _ = strided_i420(n)
        self.released = False

    def get_metadata(self) -> dict:
        return {"SensorTimestamp": 1_000_000_000 + self.n * 33_000_000}

    def make_buffer(self, name: str) -> np.ndarray:
        assert name == "main" and not self.released
        return self.buffer

    def release(self) -> None:
        assert not self.released, "request released twice"
        self.released = True
        self.cam.free_buffers += 1


class FakeJob:
    """picamera2's Job: a future completed with the request the job takes from the camera."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def cancel(self) -> None:
        self.future.set_exception(concurrent.futures.CancelledError())


class FakePicamera2:
    """The parts of Picamera2 a video source uses, with its job queue and a fixed buffer pool."""

    def __init__(self, index: int = 0) -> None:
        self.jobs: list[FakeJob] = []
        self.completed: list[FakeRequest] = []  # requests waiting for a job (picamera2 keeps one)
        self.handed_out: list[FakeRequest] = []
        self.free_buffers = 4
        self.frames = 0
        self.during_wait: list[str] = []  # what happens inside the next wait(): "frame", "frame-after-timeout"
        self.timeout_error: type[BaseException] = FUTURE_TIMEOUT
        self.started = self.closed = False
        FakePicamera2.last = self

    def create_video_configuration(self, main: dict, controls: dict, buffer_count: int) -> dict:
        self.free_buffers = buffer_count
        return {"main": dict(main), "controls": controls}

    def configure(self, config: dict) -> None:
        self.config = config

    def camera_configuration(self) -> dict:
        return {"main": {**self.config["main"], "stride": STRIDE}}

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    # the camera event loop: a frame completes when a buffer is free
    def frame(self) -> bool:
        if self.free_buffers == 0:
            return False  # every buffer is held: the camera stalls
        self.free_buffers -= 1
        req = FakeRequest(self, self.frames)
        self.frames += 1
        self.completed.append(req)
        while self.jobs and self.completed:  # the oldest queued job takes the oldest request
            job, got = self.jobs.pop(0), self.completed.pop(0)
            self.handed_out.append(got)
            job.future.set_result(got)
        while len(self.completed) > 1:  # picamera2 keeps at most one completed request queued
            self.completed.pop(0).release()
        return True

    def capture_request(self, wait=None, signal_function=None):
        job = FakeJob()
        self.jobs.append(job)
        if self.completed:
            got = self.completed.pop(0)
            self.jobs.remove(job)
            self.handed_out.append(got)
            job.future.set_result(got)
        if wait is False:
            return job
        return self.wait(job, None if wait is True or wait is None else wait)

    def wait(self, job: FakeJob, timeout: float | None = None):
        step = self.during_wait.pop(0) if self.during_wait else ""
        if step == "frame":
            self.frame()
        try:
            return job.future.result(timeout=min(timeout, 0.01) if timeout else timeout)
        except FUTURE_TIMEOUT:
            if step == "frame-after-timeout":
                self.frame()  # the frame lands between the timeout and the caller's flush
            raise self.timeout_error() from None

    def cancel_all_and_flush(self) -> None:
        for job in self.jobs:
            job.cancel()
        self.jobs = []

    def outstanding(self) -> list[FakeRequest]:
        return [r for r in self.handed_out if not r.released]


@pytest.fixture
def camera(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    src = PiCameraSource(0, W, H, 30)
    src.open()
    yield src, FakePicamera2.last
    src.close()


def test_read_returns_the_frame_and_releases_its_request(camera):
    src, cam = camera
    cam.during_wait = ["frame", "frame"]
    a, b = src.read(0.5), src.read(0.5)
    _, f1 = strided_i420(1)
    assert np.array_equal(b.y, f1.y) and b.pts_us - a.pts_us == 33_000
    assert len(cam.handed_out) == 2 and not cam.outstanding() and not cam.jobs


def test_timeout_leaves_no_job_queued_and_loses_no_buffer(camera):
    src, cam = camera
    for n in range(6):  # more timeouts than the camera has buffers
        with pytest.raises(SourceTimeout):
            src.read(0.05)
        assert not cam.jobs  # the timed-out job is off the queue
        assert cam.frame()  # a buffer is free for the late frame, and no dead job takes it
        _, late = strided_i420(n)
        assert np.array_equal(src.read(0.05).y, late.y)  # the next read gets it
        assert not cam.outstanding()


def test_request_won_by_a_job_that_timed_out_is_released(camera):
    src, cam = camera
    cam.during_wait = ["frame-after-timeout"]
    with pytest.raises(SourceTimeout):
        src.read(0.05)
    assert len(cam.handed_out) == 1 and not cam.outstanding() and not cam.jobs


def test_python_3_10_futures_timeout_is_a_source_timeout(camera, monkeypatch):
    """Before Python 3.11 concurrent.futures.TimeoutError is not the builtin TimeoutError."""

    class FuturesTimeoutError(concurrent.futures._base.Error):  # as defined in Python 3.10
        pass

    assert not issubclass(FuturesTimeoutError, TimeoutError)
    monkeypatch.setattr(concurrent.futures, "TimeoutError", FuturesTimeoutError)
    src, cam = camera
    cam.timeout_error = FuturesTimeoutError
    with pytest.raises(SourceTimeout):
        src.read(0.05)
    assert not cam.jobs


def test_capture_failure_is_a_source_error(camera):
    src, cam = camera

    def broken(*args, **kwargs):
        raise RuntimeError("Camera frontend has timed out!")

    cam.capture_request = broken
    with pytest.raises(SourceError, match="capture failed: Camera frontend") as err:
        src.read(0.05)
    assert not isinstance(err.value, SourceTimeout)
