"""The camera-source interface and the reconnecting wrapper every live source runs behind.

A source produces :class:`snisd.frame.Frame` objects (I420 planes, ``pts_us``) at its own pace:
``open()`` acquires the device, ``read(timeout)`` returns the next picture, ``close()`` releases it.
Sources know nothing of codecs; the pipeline only sees this interface.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InputError
from ..frame import Frame

log = logging.getLogger("snisd.capture")


class SourceError(InputError):
    """A source failed at run time: the device vanished, stalled or returned garbage."""


class SourceTimeout(SourceError):
    """No frame arrived within the read timeout (a stalled camera)."""


class Source(ABC):
    """A frame producer. Subclasses set ``name``, ``width``, ``height`` and ``fps``."""

    name: str = "source"
    width: int = 0
    height: int = 0
    fps: float = 30.0

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file. Raises SourceError (or InputError) when it cannot."""

    @abstractmethod
    def read(self, timeout: float = 2.0) -> Frame:
        """Return the next frame; raise SourceTimeout after ``timeout`` seconds without one."""

    @abstractmethod
    def close(self) -> None:
        """Release the device. Safe to call twice and after a failed open."""

    @property
    def dropped(self) -> int:
        """Frames the source itself skipped because the reader was late (0 if unknown)."""
        return 0

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name} {self.width}x{self.height}@{self.fps:g}"


class Pacer:
    """Releases frame numbers at a fixed rate, like a sensor: a late reader skips frames.

    ``next()`` sleeps until frame n is due and returns n; when the caller is more than one frame
    late, the frames it missed count as dropped and n jumps to the one due now.
    """

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / fps
        self.clock = clock
        self.t0: float | None = None
        self.n = -1
        self.dropped = 0

    def next(self) -> int:
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
            self.n = 0
            return 0
        n = self.n + 1
        due = self.t0 + n * self.period
        if now < due:
            time.sleep(due - now)
        else:
            current = int((now - self.t0) / self.period)
            if current > n:
                self.dropped += current - n
                n = current
        self.n = n
        return n

    def pts_us(self, n: int) -> int:
        return int(round(n * self.period * 1e6))


@dataclass
class SourceStatus:
    """What the daemon reports about its camera: state, reopen count and the last failure."""

    state: str = "closed"  # closed | open | reconnecting | failed
    reopens: int = 0
    failures: int = 0
    attempts: int = 0  # reopen attempts, successful or not (the watchdog counts them as progress)
    last_error: str = ""
    since: float = field(default_factory=time.time)


class ReconnectingSource(Source):
    """Wraps a source factory: a camera that vanishes or stalls is closed and reopened.

    Reopening uses exponential backoff (``backoff_min`` doubling up to ``backoff_max`` seconds);
    every attempt is logged and visible in :attr:`status`. ``read()`` only returns a frame or raises
    :class:`SourceError` once :meth:`stop` was called (or ``max_failures`` consecutive reopen attempts
    failed, when that is non-zero).
    """

    def __init__(
        self,
        factory: Callable[[], Source],
        *,
        read_timeout: float = 2.0,
        backoff_min: float = 0.5,
        backoff_max: float = 10.0,
        max_failures: int = 0,
    ) -> None:
        self.factory = factory
        self.read_timeout = read_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_failures = max_failures
        self.status = SourceStatus()
        self._inner: Source | None = None
        self._stop = threading.Event()
        self._dropped_before = 0
        self._pts_offset = 0
        self._last_pts = -1
        probe = factory()
        self.name, self.width, self.height, self.fps = probe.name, probe.width, probe.height, probe.fps
        self._probe: Source | None = probe

    def stop(self) -> None:
        """Make a pending or future reconnect wait give up (used at shutdown)."""
        self._stop.set()

    @property
    def dropped(self) -> int:
        return self._dropped_before + (self._inner.dropped if self._inner else 0)

    def open(self) -> None:
        inner, self._probe = self._probe or self.factory(), None
        inner.open()
        self._adopt(inner)
        self.status.state = "open"
        self.status.since = time.time()
        log.info("camera %s opened", inner.describe())

    def _adopt(self, inner: Source) -> None:
        if (inner.width, inner.height) != (self.width, self.height):
            inner.close()
            raise SourceError(f"camera came back as {inner.width}x{inner.height}, expected {self.width}x{self.height}")
        self._inner = inner

    def _drop_inner(self) -> None:
        if self._inner is not None:
            self._dropped_before += self._inner.dropped
            try:
                self._inner.close()
            except Exception as exc:  # a vanished device may fail to close; it is gone either way
                log.debug("closing failed camera: %s", exc)
            self._inner = None

    def _reconnect(self, error: Exception) -> None:
        self.status.state = "reconnecting"
        self.status.failures += 1
        self.status.last_error = f"{type(error).__name__}: {error}"
        self.status.since = time.time()
        log.warning("camera %s failed (%s); reopening", self.name, self.status.last_error)
        self._drop_inner()
        delay = self.backoff_min
        attempts = 0
        while not self._stop.is_set():
            if self._stop.wait(delay):
                break
            attempts += 1
            self.status.attempts += 1
            try:
                inner = self.factory()
                inner.open()
                self._adopt(inner)
            except Exception as exc:  # any failure to reopen is retried, with a longer wait
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "camera %s reopen attempt %d failed (%s); next in %.2f s",
                    self.name,
                    attempts,
                    self.status.last_error,
                    min(delay * 2, self.backoff_max),
                )
                if self.max_failures and attempts >= self.max_failures:
                    self.status.state = "failed"
                    raise SourceError(
                        f"camera {self.name} did not come back after {attempts} attempts: {self.status.last_error}"
                    ) from exc
                delay = min(delay * 2, self.backoff_max)
                continue
            self.status.reopens += 1
            self.status.state = "open"
            self.status.since = time.time()
            # Keep timestamps monotonic across a reopen: the new device starts its clock at zero.
            self._pts_offset = self._last_pts + 1
            log.info("camera %s reopened after %d attempt(s)", self.name, attempts)
            return
        raise SourceError(f"camera {self.name}: stopped while reconnecting")

    def read(self, timeout: float | None = None) -> Frame:
        while True:
            if self._stop.is_set():
                raise SourceError(f"camera {self.name}: stopped")
            if self._inner is None:
                self._reconnect(SourceError("not open"))
            assert self._inner is not None
            try:
                frame = self._inner.read(self.read_timeout if timeout is None else timeout)
            except (SourceError, OSError) as exc:
                self._reconnect(exc)
                continue
            pts = frame.pts_us + self._pts_offset
            if pts <= self._last_pts:
                pts = self._last_pts + 1
            self._last_pts = pts
            if pts != frame.pts_us:
                frame = Frame(frame.y, frame.u, frame.v, pts)
            return frame

    def close(self) -> None:
        self._drop_inner()
        if self._probe is not None:
            self._probe.close()
            self._probe = None
        self.status.state = "closed"

    def describe(self) -> str:
        return self._inner.describe() if self._inner else super().describe()
