"""The real-time pipeline: capture -> encode -> output sinks, one thread per stage.

Stages are joined by :class:`LatestQueue` - a bounded queue that drops its OLDEST item when a
producer puts into a full queue ("latest frame wins"): a stage that falls behind loses frames, it
never makes the camera wait or memory grow. The native codec core and LiteRT release the GIL, so the stages
really run in parallel on a multi-core board.

Every stage counts frames in/out/dropped and keeps its recent per-frame times (p50/p95); the
encoder stage also keeps the bit rate of each tier. :meth:`Pipeline.snapshot` gathers all of it for
the log, systemd's STATUS= line and the metrics endpoint.

Sinks receive every encoded frame in order: ``write(EncodedFrame)`` and ``close()``. The fMP4
recording (:class:`RecordSink`) is one, the WebRTC sender (``snisd.transport.whip.WhipSender``)
another.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from .codec.bitstream import EncodedFrame, SequenceHeader
from .frame import Frame

log = logging.getLogger("snisd.pipeline")

T = TypeVar("T")

CAPTURE_TIMES = 256  # capture times kept for the sinks (frames in flight are far fewer)


class Closed(Exception):
    """The queue was closed and is empty."""


class LatestQueue(Generic[T]):
    """A bounded FIFO that evicts the oldest item when full. Thread-safe.

    ``close()`` lets consumers take what is left and then raises :class:`Closed` from ``get``.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> int:
        """Append ``item``; returns how many old items were evicted to make room (0 or more)."""
        with self._cond:
            if self._closed:
                raise Closed()
            evicted = 0
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                evicted += 1
            self._items.append(item)
            self.dropped += evicted
            self._cond.notify()
            return evicted

    def get(self, timeout: float | None = None) -> T:
        """The oldest item; raises TimeoutError after ``timeout`` s, Closed when closed and empty."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    raise Closed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError()
                self._cond.wait(remaining)
            return self._items.popleft()

    def close(self, discard: bool = False) -> None:
        with self._cond:
            self._closed = True
            if discard:
                self.dropped += len(self._items)
                self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class StageStats:
    """Counters and a window of recent per-frame processing times for one stage."""

    def __init__(self, name: str, window: int = 300) -> None:
        self.name = name
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self._times: collections.deque[float] = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def record(self, ms: float) -> None:
        with self._lock:
            self._times.append(ms)

    def percentiles(self) -> tuple[float, float]:
        with self._lock:
            if not self._times:
                return 0.0, 0.0
            arr = np.fromiter(self._times, dtype=np.float64)
        p50, p95 = np.percentile(arr, [50, 95])
        return float(p50), float(p95)

    def snapshot(self) -> dict[str, Any]:
        p50, p95 = self.percentiles()
        return {
            "in": self.frames_in,
            "out": self.frames_out,
            "dropped": self.dropped,
            "p50_ms": round(p50, 3),
            "p95_ms": round(p95, 3),
        }


class RateMeter:
    """Bit rate per tier and frame rate over a sliding window of encoded frames (wall clock).

    The window keeps at least the last two frames, so that an encoder slower than one frame per
    window still reads as e.g. 0.5 fps rather than 0; once no frame came for two frame intervals
    (and at least a window), the rates drop to 0.
    """

    def __init__(self, seconds: float = 2.0) -> None:
        self.seconds = seconds
        self._events: collections.deque[tuple[float, tuple[int, ...]]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, sizes: tuple[int, ...], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._events.append((now, sizes))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while len(self._events) > 2 and now - self._events[0][0] > self.seconds:
            self._events.popleft()

    def rates(self, now: float | None = None) -> tuple[float, list[float]]:
        """(frames per second, [bits per second of tier k])."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            events = list(self._events)
        ntiers = max((len(s) for _, s in events), default=0)
        span = events[-1][0] - events[0][0] if len(events) >= 2 else 0.0
        if span <= 0 or now - events[-1][0] > max(self.seconds, 2 * span / (len(events) - 1)):
            return 0.0, [0.0] * ntiers
        totals = [0] * ntiers
        for _, sizes in events[1:]:  # n events span n-1 intervals
            for k, b in enumerate(sizes):
                totals[k] += b
        return (len(events) - 1) / span, [8.0 * t / span for t in totals]


class Sink(Protocol):
    """Where encoded frames go: a recording, a network sender."""

    name: str

    def write(self, frame: EncodedFrame) -> None: ...

    def close(self) -> None: ...


class RecordSink:
    """Writes the stream to a fragmented MP4 file, one fragment per frame.

    An existing recording with the same sequence header is continued (cut back to its last
    complete fragment first); anything else at ``path`` is renamed aside with a timestamp.
    """

    def __init__(self, path: str, seq: SequenceHeader, fsync: bool = False) -> None:
        from .container import Fmp4Writer
        from .errors import ContainerError

        self.name = f"record:{path}"
        self.path = path
        self.moved_aside: str | None = None
        if os.path.exists(path) and os.path.getsize(path) > 0:
            try:
                self.writer = Fmp4Writer.resume(path, seq, fsync=fsync)
                log.info("continuing recording %s after frame %d", path, self.writer.frames_written)
                return
            except ContainerError as exc:
                stem, ext = os.path.splitext(path)
                aside = f"{stem}.{time.strftime('%Y%m%d-%H%M%S')}{ext}"
                os.replace(path, aside)
                self.moved_aside = aside
                log.warning("%s cannot be continued (%s); moved it to %s", path, exc, aside)
        self.writer = Fmp4Writer(path, seq, fsync=fsync)

    @property
    def frames(self) -> int:
        return self.writer.frames_written

    def write(self, frame: EncodedFrame) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()


class FrameSource(Protocol):
    name: str
    width: int
    height: int
    fps: float

    def read(self, timeout: float = 2.0) -> Frame: ...

    def close(self) -> None: ...


class FrameEncoder(Protocol):
    sequence_header: SequenceHeader

    def encode(self, frame: Frame, force_keyframe: bool = False) -> EncodedFrame: ...


def rss_bytes() -> int:
    """Resident set size of this process from /proc (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Pipeline:
    """Runs capture, encode and output threads until :meth:`stop` (or ``max_frames``)."""

    def __init__(
        self,
        source: FrameSource,
        encoder: FrameEncoder,
        sinks: Iterable[Sink] = (),
        *,
        queue_size: int = 2,
        max_frames: int = 0,
        read_timeout: float = 2.0,
    ) -> None:
        self.source = source
        self.encoder = encoder
        self.sinks: list[Sink] = list(sinks)
        self.max_frames = max_frames
        self.read_timeout = read_timeout
        self.capture = StageStats("capture")
        self.encode = StageStats("encode")
        self.output = StageStats("output")
        self.rate = RateMeter()
        self._enc_q: LatestQueue[Frame] = LatestQueue(queue_size)
        self._out_q: LatestQueue[EncodedFrame] = LatestQueue(queue_size)
        self._stop = threading.Event()
        self._keyframe = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self.errors: list[str] = []
        self.done = threading.Event()  # set when every stage has finished
        self._sinks_lock = threading.Lock()
        self._running = 0
        # capture time (monotonic ms) of recent frames by pts, for the sender's latency figures
        self._captured: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._captured_lock = threading.Lock()

    # -- control -------------------------------------------------------------------------------

    def start(self) -> Pipeline:
        self._started = time.monotonic()
        self._running = 3
        for name, target in (
            ("capture", self._run_capture),
            ("encode", self._run_encode),
            ("output", self._run_output),
        ):
            t = threading.Thread(target=self._guard(name, target), name=f"snisd-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def _guard(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # a dying stage stops the pipeline; the daemon reports it
                log.exception("%s stage failed", name)
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                self._stop.set()
                self._enc_q.close(discard=True)
                self._out_q.close(discard=True)
                stop = getattr(self.source, "stop", None)
                if stop:
                    stop()
            finally:
                with self._sinks_lock:
                    self._running -= 1
                    if self._running == 0:
                        self.done.set()

        return run

    def request_keyframe(self) -> None:
        self._keyframe.set()

    def stop(self) -> None:
        """Ask capture to stop; encode and output finish what is queued (a few frames at most)."""
        self._stop.set()
        stop = getattr(self.source, "stop", None)
        if stop:  # wakes a source that is waiting to reconnect
            stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every stage to finish; True when they did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def capture_ms(self, pts_us: int) -> float | None:
        """When the frame with this pts left the camera (``time.monotonic()`` in ms, the clock of
        the WebRTC sender), for the last CAPTURE_TIMES frames; None for an older or unknown one."""
        with self._captured_lock:
            return self._captured.get(pts_us)

    def _note_capture(self, pts_us: int) -> None:
        with self._captured_lock:
            self._captured[pts_us] = time.monotonic() * 1000.0
            while len(self._captured) > CAPTURE_TIMES:
                self._captured.popitem(last=False)

    @property
    def progress(self) -> int:
        """A counter that moves while frames flow (what the watchdog looks at)."""
        return self.encode.frames_out + self.output.frames_out

    # -- stages --------------------------------------------------------------------------------

    def _run_capture(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = self.source.read(self.read_timeout)
                except Exception:
                    if self._stop.is_set():
                        break
                    raise
                self._note_capture(frame.pts_us)
                self.capture.record((time.perf_counter() - t0) * 1e3)
                self.capture.frames_in += 1
                self.capture.dropped = int(getattr(self.source, "dropped", 0))
                try:
                    self.encode.dropped += self._enc_q.put(frame)
                except Closed:  # a later stage failed and closed the queue
                    break
                self.capture.frames_out += 1
                if self.max_frames and self.capture.frames_out >= self.max_frames:
                    break
        finally:
            self._enc_q.close()

    def _run_encode(self) -> None:
        try:
            while True:
                try:
                    frame = self._enc_q.get()
                except Closed:
                    break
                self.encode.frames_in += 1
                force = self._keyframe.is_set()
                if force:
                    self._keyframe.clear()
                t0 = time.perf_counter()
                ef = self.encoder.encode(frame, force_keyframe=force)
                self.encode.record((time.perf_counter() - t0) * 1e3)
                self.encode.frames_out += 1
                self.rate.add(tuple(len(t) for t in ef.tiers))
                try:
                    evicted = self._out_q.put(ef)
                except Closed:
                    break
                if evicted:
                    # Output fell behind. A dropped fragment breaks prediction for the receiver,
                    # so ask for a keyframe to resynchronise.
                    self.output.dropped += evicted
                    self._keyframe.set()
        finally:
            self._out_q.close()

    def _run_output(self) -> None:
        try:
            while True:
                try:
                    ef = self._out_q.get()
                except Closed:
                    break
                self.output.frames_in += 1
                t0 = time.perf_counter()
                with self._sinks_lock:
                    sinks = list(self.sinks)
                for sink in sinks:
                    sink.write(ef)
                self.output.record((time.perf_counter() - t0) * 1e3)
                self.output.frames_out += 1
        finally:
            with self._sinks_lock:
                sinks, self.sinks = list(self.sinks), []
            for sink in sinks:
                try:
                    sink.close()
                except Exception as exc:
                    log.error("closing %s failed: %s", sink.name, exc)
                    self.errors.append(f"close {sink.name}: {exc}")

    # -- reporting -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        fps, bps = self.rate.rates()
        snap: dict[str, Any] = {
            "stages": {s.name: s.snapshot() for s in (self.capture, self.encode, self.output)},
            "fps": round(fps, 2),
            "tier_bitrate_bps": [round(b) for b in bps],
            "tiers": self.encoder.sequence_header.tiers,
            "uptime_s": round(time.monotonic() - self._started, 3) if self._started else 0.0,
            "rss_bytes": rss_bytes(),
        }
        status = getattr(self.source, "status", None)
        if status is not None:
            snap["camera"] = {
                "state": status.state,
                "reopens": status.reopens,
                "failures": status.failures,
                "last_error": status.last_error,
            }
        rc = getattr(self.encoder, "stats", None)
        if callable(rc):  # a rate-controlled encoder: target, chosen qp, buffer
            snap["rate_control"] = rc()
        with self._sinks_lock:
            recorded = [s.frames for s in self.sinks if isinstance(s, RecordSink)]
            senders: list[Any] = [s for s in self.sinks if callable(getattr(s, "stats", None))]
        if senders:
            st = senders[0].stats()
            snap["transport"] = {
                k: st.get(k)
                for k in (
                    "peer",
                    "state",
                    "sessions",
                    "frames_sent",
                    "bytes_sent",
                    "tier_dropped",
                    "max_tiers",
                    "estimate",
                    "target_kbps",
                    "last_error",
                )
            }
        if recorded:
            snap["recorded_frames"] = recorded[0]
        return snap

    def status_line(self) -> str:
        snap = self.snapshot()
        st = snap["stages"]
        kbps = "/".join(f"{b / 1000:.0f}" for b in snap["tier_bitrate_bps"]) or "0"
        line = (
            f"{snap['fps']:.1f} fps, {snap['tiers']} tiers ({kbps} kbit/s), "
            f"encode {st['encode']['p50_ms']:.1f}/{st['encode']['p95_ms']:.1f} ms p50/p95, "
            f"dropped {st['capture']['dropped']}/{st['encode']['dropped']}/{st['output']['dropped']}"
        )
        cam = snap.get("camera")
        if cam and cam["state"] != "open":
            line += f", camera {cam['state']} ({cam['last_error']})"
        rc = snap.get("rate_control")
        if rc:
            line += f", qp {rc['qp']} for {rc['target_kbps']:.0f} kbit/s"
        tr = snap.get("transport")
        if tr:
            line += f", peer {tr['state']}"
            est = tr.get("estimate")
            if est:
                line += f" (estimate {est['estimate_kbps']:.0f} kbit/s, {tr.get('max_tiers')} tiers)"
            if tr["state"] != "connected" and tr.get("last_error"):
                line += f" ({tr['last_error']})"
        return line
