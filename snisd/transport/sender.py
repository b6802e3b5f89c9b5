"""The WebRTC sender sink: a pipeline sink that streams to a WHIP endpoint over data channels.

`WhipSender` (``write(EncodedFrame)``, ``close()``) owns a thread running an asyncio loop with the
aiortc peer connection, signals with `WhipClient` (whip.py), reconnects with exponential backoff
when the session drops, and sends the stream as fMP4 over data channels (docs/TRANSPORT.md):

* ``snis-t0``  reliable, ordered: the init segment, then one tier-0 fragment per frame;
* ``snis-tK``  one per enhancement tier, unordered and partially reliable (maxPacketLifeTime);
* ``snis-control`` reliable, ordered, JSON text: receiver reports, keyframe requests, clock pings.

``write`` never blocks: it hands the frame to the loop through a small bounded queue. Send-side
buffers are bounded by watching the channels' ``bufferedAmount``: from it the sender knows how
long the oldest queued frame has waited. Past 150 ms, enhancement tiers are no longer sent; a
tier-0 fragment is only dropped when even the base backlog is too old (2 s) or too large, and
then the sender waits for a keyframe (and asks the encoder for one). The thresholds are a
`SenderPolicy`.

Rate: a `CapacityEstimator` (estimator.py) turns the receiver's reports and this backlog into an
estimate of what the path carries; messages leave through a `Pacer` (pacer.py) at a little more
than that estimate; the tiers sent are those that fit it (feedback.py); and `target_bps` (also
passed to `on_target`, which the pipeline wires to the encoder's rate control) is the bit rate the
encoder should produce: the estimate less the framing the sender adds.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..codec.bitstream import EncodedFrame, SequenceHeader
from ..container import build_init_segment, make_init_info, us_to_ticks
from .channels import CONTROL_LABEL, KIND_FRAGMENT, KIND_INIT, restamp, split, tier_fragment, tier_label
from .clocksync import pong
from .errors import TransportError, WhipError
from .estimator import CapacityEstimator, EstimatorPolicy
from .feedback import TierController
from .ice import apply_environment, rtc_configuration
from .pacer import Pacer
from .whip import WhipClient

log = logging.getLogger("snisd.transport.sender")

KEY_REPEAT_S = 1.0  # while frames wait for a keyframe, ask the encoder again this often
CAPTURE_EPOCH_WINDOW = 64  # frames over which the capture epoch's minimum is taken


@dataclass(frozen=True)
class SenderPolicy:
    """How the sender spends its link and recovers: backlogs, lifetimes, timeouts, backoff."""

    enhancement_lifetime_ms: int = 300  # maxPacketLifeTime of the enhancement channels
    base_backlog: int = 4 << 20  # bytes queued before a base fragment is dropped ...
    base_delay: float = 2.0  # ... or seconds the oldest queued frame has waited
    enhancement_backlog: int = 1 << 20  # enhancements are sent only below this backlog ...
    enhancement_delay: float = 0.15  # ... and this wait
    queue_frames: int = 8  # frames between the pipeline thread and the loop
    adapt: bool = True  # run the capacity estimate, pacing and the tier controller
    estimator: EstimatorPolicy = EstimatorPolicy()  # start, bounds and rules of the capacity estimate
    pace_factor: float = 1.15  # messages leave at this multiple of the estimate
    target_share: float = 1.0  # the encoder's target: this share of the estimate, less the framing
    feedback_timeout: float = 3.0  # no receiver report for this long: the session is dead
    connect_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 15.0


def monotonic_ms() -> float:
    """The default sender clock (ms)."""
    return time.monotonic() * 1000.0


class _Session:
    """One peer connection and its channels."""

    def __init__(self, pc, control, tiers: list) -> None:
        self.pc = pc
        self.control = control
        self.tiers = tiers
        self.resource: str | None = None
        self.opened = asyncio.Event()
        self.dropped = asyncio.Event()
        self.last_feedback = time.monotonic()
        self.sequence = 0
        self.started = time.monotonic()
        self.bytes_queued = 0  # bytes handed to the tier channels in this session
        self.marks: collections.deque[tuple[float, int]] = collections.deque()  # (time, bytes_queued) per frame
        self.pacer: Pacer | None = None
        self.pump: asyncio.TimerHandle | None = None
        self.drained: collections.deque[tuple[float, int]] = collections.deque()  # (time, bytes drained)

    def is_open(self) -> bool:
        return (
            self.opened.is_set()
            and not self.dropped.is_set()
            and self.control.readyState == "open"
            and self.tiers[0].readyState == "open"
        )


class WhipSender:
    """Pipeline sink that streams to a WHIP endpoint over aiortc data channels.

    `request_keyframe` (settable after construction) is called, from any thread, when the
    stream needs a keyframe: on (re)connection, after a dropped base fragment, and when the
    receiver asks for one. `clock` (ms) stamps messages, answers the receiver's clock pings and
    dates captures; `capture_ms(pts_us)`, when given, is the exact capture time of a frame on
    that clock (else: when it reaches the sender, which leaves out capture and encoding).
    Call :meth:`start` before the first write.
    """

    def __init__(
        self,
        peer: str,
        seq: SequenceHeader,
        *,
        token: str | None = None,
        ice_servers: Iterable | None = None,
        request_keyframe: Callable[[], None] | None = None,
        policy: SenderPolicy | None = None,
        colorspace: str = "bt709",
        stream_name: str | None = None,
        ca_file: str | None = None,
        clock: Callable[[], float] = monotonic_ms,
        capture_ms: Callable[[int], float | None] | None = None,
    ) -> None:
        p = self.policy = policy or SenderPolicy()
        self.name = f"whip:{peer}"
        self.peer = peer
        self.seq = seq
        self.client = WhipClient(peer, token, timeout=p.connect_timeout, ca_file=ca_file)
        self.ice_servers = list(ice_servers or [])
        self.request_keyframe = request_keyframe
        self.enhancement_lifetime_ms = p.enhancement_lifetime_ms
        self.base_backlog = p.base_backlog
        self.enhancement_backlog = p.enhancement_backlog
        self.enhancement_delay = p.enhancement_delay
        self.base_delay = p.base_delay
        self.feedback_timeout = p.feedback_timeout
        self.connect_timeout = p.connect_timeout
        self.backoff_initial = p.backoff_initial
        self.backoff_max = p.backoff_max
        self.stream_name = stream_name
        self.clock = clock
        self.capture_ms = capture_ms
        self._epochs: collections.deque[float] = collections.deque(maxlen=CAPTURE_EPOCH_WINDOW)
        self.info = make_init_info(seq, colorspace=colorspace)
        self.init_segment = build_init_segment(seq, colorspace=colorspace)
        self.max_tiers = seq.tiers  # tiers sent; lowered and raised by the controller
        self.controller = TierController(seq.tiers) if p.adapt else None
        self.estimator = CapacityEstimator(p.estimator) if p.adapt else None
        self.pace_factor = p.pace_factor
        self.target_share = p.target_share
        # the encoder's target bit rate; `on_target(bps)` is called (on the sender's thread) when it changes
        self.target_bps: float | None = None
        self.on_target: Callable[[float], None] | None = None
        self._overhead = 0.0  # framing bytes per frame (fragment boxes, message headers), smoothed
        self._tier_size: list[float | None] = [None] * seq.tiers  # bytes per P-frame and tier, smoothed
        # hand-off from the pipeline thread
        self._queue: collections.deque[EncodedFrame] = collections.deque()
        self._queue_frames = p.queue_frames
        self._lock = threading.Lock()
        self._scheduled = False
        self._evicted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._stop_event: asyncio.Event | None = None
        self._session: _Session | None = None
        self._need_key = True
        self._last_key_request = 0.0
        # counters (read by stats(); written on the loop thread unless noted)
        self.state = "new"
        self.last_error: str | None = None
        self.last_report: dict[str, Any] | None = None
        self.frames_in = 0  # pipeline thread
        self.frames_sent = 0
        self.frames_evicted = 0  # pipeline thread: loop fell behind
        self.frames_offline = 0  # no session
        self.frames_waiting_key = 0  # skipped until the next keyframe
        self.base_dropped = 0
        self.sessions = 0
        self.keyframe_requests = 0
        self.tier_sent = [0] * seq.tiers
        self.tier_dropped = [0] * seq.tiers
        self.bytes_sent = [0] * seq.tiers
        self.messages_sent = 0
        self._cpu_clock: int | None = None
        self._cpu_final: float | None = None  # CPU seconds of the loop thread, once it has ended
        self._cpu_at_connect: float | None = None  # ... when the last session had opened
        self.write_cpu_s = 0.0  # CPU seconds spent in write() on the pipeline thread
        self.close_s: float | None = None

    # -- pipeline side -------------------------------------------------------------------------

    def start(self) -> WhipSender:
        if self._thread is None:
            apply_environment()
            ready = threading.Event()
            self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="snisd-whip", daemon=True)
            self._thread.start()
            ready.wait(5.0)
        return self

    def write(self, frame: EncodedFrame) -> None:
        """Queue a frame for sending; never blocks. The oldest queued frame goes when full."""
        t0 = time.thread_time()
        self.frames_in += 1
        try:
            self._hand_off(frame)
        finally:
            self.write_cpu_s += time.thread_time() - t0

    def _hand_off(self, frame: EncodedFrame) -> None:
        loop = self._loop
        if loop is None or self._closing:
            return
        with self._lock:
            if len(self._queue) >= self._queue_frames:
                self._queue.popleft()
                self.frames_evicted += 1
                self._evicted = True
            self._queue.append(frame)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop already closed
                pass

    def close(self, timeout: float = 1.2) -> None:
        """Flush what is queued (briefly), DELETE the WHIP resource and stop the loop thread."""
        if self._closing:
            return
        t0 = time.monotonic()
        self._closing = True
        loop, thread = self._loop, self._thread
        if loop is not None and self._stop_event is not None:
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: transport thread did not stop within %.1f s", self.name, timeout)
        self.close_s = time.monotonic() - t0

    def stats(self) -> dict[str, Any]:
        cpu = self._cpu_final
        if cpu is None and self._cpu_clock is not None:
            try:
                cpu = time.clock_gettime(self._cpu_clock)
            except OSError:
                cpu = None
        return {
            "peer": self.peer,
            "state": self.state,
            "sessions": self.sessions,
            "frames_in": self.frames_in,
            "frames_sent": self.frames_sent,
            "frames_evicted": self.frames_evicted,
            "frames_offline": self.frames_offline,
            "frames_waiting_key": self.frames_waiting_key,
            "base_dropped": self.base_dropped,
            "tier_sent": list(self.tier_sent),
            "tier_dropped": list(self.tier_dropped),
            "bytes_sent": list(self.bytes_sent),
            "messages_sent": self.messages_sent,
            "keyframe_requests": self.keyframe_requests,
            "max_tiers": self.max_tiers,
            "tier_rates_kbps": [round(r / 1e3, 1) for r in self.tier_rates()],
            "estimate": self.estimator.stats() if self.estimator else None,
            "target_kbps": None if self.target_bps is None else round(self.target_bps / 1e3, 1),
            "paced_expired": self._session.pacer.expired if self._session and self._session.pacer else 0,
            "tier_steps": [self.controller.steps_down, self.controller.steps_up] if self.controller else None,
            "transport_cpu_s": cpu,
            "transport_cpu_at_connect_s": self._cpu_at_connect,
            "write_cpu_s": round(self.write_cpu_s, 6),
            "close_s": self.close_s,
            "last_error": self.last_error,
            "last_report": self.last_report,
        }

    def tier_rates(self) -> list[float]:
        """Bits per second of the first 1, 2, ... tiers (P-frames, smoothed; [] before any frame)."""
        if any(v is None for v in self._tier_size):
            return []
        out, total = [], 0.0
        for v in self._tier_size:
            total += v  # type: ignore[operator]
            out.append(8.0 * total * self.seq.fps)
        return out

    # -- loop thread -----------------------------------------------------------------------------

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stop_event = asyncio.Event()
        try:
            self._cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
        except (AttributeError, OSError):
            self._cpu_clock = None
        ready.set()
        try:
            loop.run_until_complete(self._run())
        except Exception:
            log.exception("%s: transport loop failed", self.name)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                if self._cpu_clock is not None:
                    self._cpu_final = time.clock_gettime(self._cpu_clock)
                self._loop = None
                loop.close()
                self.state = "closed"

    def _want_keyframe(self, reason: str) -> None:
        self._need_key = True
        now = time.monotonic()
        if now - self._last_key_request < 0.25:
            return
        self._last_key_request = now
        self.keyframe_requests += 1
        log.debug("%s: keyframe requested (%s)", self.name, reason)
        cb = self.request_keyframe
        if cb is not None:
            try:
                cb()
            except Exception as exc:
                log.warning("%s: keyframe request callback failed: %s", self.name, exc)

    async def _run(self) -> None:
        assert self._stop_event is not None
        attempt = 0
        while not self._closing:
            session = None
            try:
                self.state = "connecting"
                session = await self._connect()
                attempt = 0
                self.sessions += 1
                self.state = "connected"
                self.last_error = None
                log.info("%s: connected (session %d, resource %s)", self.name, self.sessions, session.resource)
                await self._serve(session)
            except WhipError as exc:
                self.last_error = str(exc)
                level = logging.ERROR if exc.unauthorized or attempt == 0 else logging.WARNING
                log.log(level, "%s: %s", self.name, exc)
            except TransportError as exc:
                self.last_error = str(exc)
                quiet = attempt > 0 or self._closing
                log.log(logging.DEBUG if quiet else logging.WARNING, "%s: %s", self.name, exc)
            except Exception as exc:  # aiortc raises assorted errors on broken sessions
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "%s: session failed: %s", self.name, self.last_error, exc_info=log.isEnabledFor(logging.DEBUG)
                )
            finally:
                if session is not None:
                    await self._end_session(session)
            if self._closing:
                break
            delay = min(self.backoff_max, self.backoff_initial * (2**attempt)) * random.uniform(0.8, 1.2)
            attempt += 1
            self.state = "waiting"
            log.info("%s: reconnecting in %.1f s", self.name, delay)
            try:
                await asyncio.wait_for(self._stop_event.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self.state = "closed"

    async def _connect(self) -> _Session:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        control = pc.createDataChannel(CONTROL_LABEL, ordered=True)
        tiers = [pc.createDataChannel(tier_label(0), ordered=True)]
        for k in range(1, self.seq.tiers):
            tiers.append(
                pc.createDataChannel(tier_label(k), ordered=False, maxPacketLifeTime=self.enhancement_lifetime_ms)
            )
        s = _Session(pc, control, tiers)

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                s.dropped.set()

        pc.on("connectionstatechange", on_state)
        opened = {"n": 0}

        def on_open() -> None:
            opened["n"] += 1
            if opened["n"] == 1 + len(tiers):
                s.opened.set()

        for ch in (control, *tiers):
            ch.on("open", on_open)
            ch.on("close", lambda: s.dropped.set())
        control.on("message", lambda m: self._on_control(s, m))
        try:
            await pc.setLocalDescription(await pc.createOffer())
            answer, s.resource = await self.client.publish(pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            stop = self._stop_event
            assert stop is not None
            done, _ = await asyncio.wait(
                [
                    asyncio.ensure_future(s.opened.wait()),
                    asyncio.ensure_future(s.dropped.wait()),
                    asyncio.ensure_future(stop.wait()),
                ],
                timeout=self.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for f in _:
                f.cancel()
            if not s.opened.is_set():
                raise TransportError(
                    f"{self.peer}: data channels did not open within {self.connect_timeout:.0f} s "
                    f"(ICE {pc.iceConnectionState}, connection {pc.connectionState})"
                )
        except BaseException:
            await self._end_session(s)
            raise
        # the stream starts over: init segment, then frames from the next keyframe
        s.last_feedback = time.monotonic()
        self._session = s
        if self._cpu_clock is not None:
            self._cpu_at_connect = time.clock_gettime(self._cpu_clock)
        hello = {
            "type": "hello",
            "version": 1,
            "tiers": self.seq.tiers,
            "stream": self.stream_name,
            "lifetime_ms": self.enhancement_lifetime_ms,
        }
        control.send(json.dumps(hello))
        for msg in split(self.init_segment, KIND_INIT, 0, 0, sent_ms=int(self.clock())):
            tiers[0].send(msg)
            s.bytes_queued += len(msg)
        self._need_key = True
        self._last_key_request = 0.0
        self._want_keyframe("new session")
        if self.controller is not None:
            self.controller.reset()
            self.max_tiers = self.controller.current
        if self.estimator is not None:
            self.estimator.reset()
            s.pacer = Pacer(self.pace_factor * self.estimator.value)
            self._set_target()
        return s

    async def _serve(self, s: _Session) -> None:
        assert self._stop_event is not None
        next_status = 0.0
        while not self._closing:
            now = time.monotonic()
            if now >= next_status and s.is_open():
                # sender-side counters; also tells the receiver we are alive when frames are rare
                s.control.send(
                    json.dumps(
                        {
                            "type": "sender",
                            "frames_sent": self.frames_sent,
                            "tier_sent": self.tier_sent,
                            "tier_dropped": self.tier_dropped,
                            "base_dropped": self.base_dropped,
                            "max_tiers": self.max_tiers,
                            "capture_epoch_ms": self.capture_epoch_ms(),
                            "capture_epoch_from": "capture" if self.capture_ms else "send",
                        }
                    )
                )
                next_status = now + 1.0
            if s.dropped.is_set() or not s.is_open():
                raise TransportError(f"{self.peer}: session closed by the peer or the network")
            if time.monotonic() - s.last_feedback > self.feedback_timeout:
                raise TransportError(f"{self.peer}: no receiver feedback for {self.feedback_timeout:.1f} s")
            if self._need_key and now - self._last_key_request >= KEY_REPEAT_S:
                # a request that came within 0.25 s of the previous one was not passed on, and the
                # keyframe the encoder made for that one may have been sent already: ask again
                self._want_keyframe("still waiting for a keyframe")
            try:
                await asyncio.wait_for(self._stop_event.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        # closing: give queued data a moment to leave before tearing the session down
        self._drain()
        deadline = time.monotonic() + 0.3
        while (
            time.monotonic() < deadline
            and s.is_open()
            and (
                any(ch.bufferedAmount > 0 for ch in s.tiers if ch.readyState == "open")
                or (s.pacer is not None and s.pacer.pending_bytes > 0)
            )
        ):
            await asyncio.sleep(0.02)

    async def _end_session(self, s: _Session) -> None:
        if self._session is s:
            self._session = None
        if s.pump is not None:
            s.pump.cancel()
            s.pump = None
        if s.pacer is not None:
            s.pacer.clear()
        self.state = "disconnected" if not self._closing else "closing"
        if s.resource:
            status = await self.client.delete(s.resource, timeout=0.5 if self._closing else 2.0)
            log.debug("%s: DELETE %s -> %s", self.name, s.resource, status)
            s.resource = None
        try:
            await asyncio.wait_for(s.pc.close(), 0.4 if self._closing else 2.0)
        except Exception as exc:
            log.debug("%s: closing the peer connection: %s", self.name, exc)

    def _on_control(self, s: _Session, message: Any) -> None:
        t1 = self.clock()
        s.last_feedback = time.monotonic()
        try:
            msg = json.loads(message)
        except (TypeError, ValueError):
            log.debug("%s: unreadable control message %r", self.name, message[:80])
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "report":
            self.last_report = msg
            if s is self._session:
                self._adapt(s, msg)
        elif kind == "keyframe":
            self._want_keyframe(f"receiver: {msg.get('reason', '?')}")
        elif kind == "ping":
            answer = pong(msg, t1, self.clock())
            if answer is not None and s.control.readyState == "open":
                s.control.send(json.dumps(answer))

    def _adapt(self, s: _Session, report: dict | None) -> None:
        """Feed the estimator (a report, or the backlog alone) and apply the estimate: pacing rate,
        tiers to send, the encoder's target."""
        est, ctl = self.estimator, self.controller
        if est is None or ctl is None:
            return
        now = time.monotonic()
        value = est.update(report, now, self._channel_backlog_s(s), self._drain_bps(s, now), sum(self.tier_sent[1:]))
        if s.pacer is not None:
            # never below what the encoder's smallest target plus the framing needs
            floor = est.policy.min_bps * 0.5 + 8.0 * self._overhead * self.seq.fps
            s.pacer.rate_bps = self.pace_factor * max(value, floor)
        before = self.max_tiers
        self.max_tiers = ctl.update(value, self.tier_rates(), now)
        if self.max_tiers != before:
            log.info(
                "%s: sending %d of %d tiers (estimate %.0f kbit/s, %s; path queue %s ms, delay trend %s ms/s)",
                self.name,
                self.max_tiers,
                self.seq.tiers,
                value / 1e3,
                est.state,
                report.get("queue_delay_ms") if report else None,
                report.get("delay_trend_ms_per_s") if report else None,
            )
        self._set_target()

    def _set_target(self) -> None:
        est = self.estimator
        if est is None:
            return
        framing = 8.0 * self._overhead * self.seq.fps
        target = max(est.policy.min_bps * 0.5, self.target_share * est.value - framing)
        self.target_bps = target
        cb = self.on_target
        if cb is not None:
            try:
                cb(target)
            except Exception as exc:
                log.warning("%s: target callback failed: %s", self.name, exc)

    def _channel_backlog_s(self, s: _Session) -> float:
        """How long what the channels hold (handed over by the pacer, not yet taken by SCTP) takes
        at the estimate: the first hop's own queue. What the pacer holds back on purpose (a large
        frame at the pacing rate) is not congestion."""
        est = self.estimator
        if est is None:
            return 0.0
        queued = sum(ch.bufferedAmount for ch in s.tiers)
        return 8.0 * queued / max(est.value, 1.0)

    def _drain_bps(self, s: _Session, now: float) -> float | None:
        """The rate the send queue drained at over the last 0.5 s (bytes that left the sender)."""
        d = s.drained
        if len(d) < 2 or d[-1][0] - d[0][0] < 0.2:
            return None
        return 8.0 * (d[-1][1] - d[0][1]) / (d[-1][0] - d[0][0])

    def _note_capture(self, pts_us: int, t_send: float) -> None:
        t = self.capture_ms(pts_us) if self.capture_ms is not None else None
        self._epochs.append((t_send if t is None else t) - pts_us / 1000.0)

    def capture_epoch_ms(self) -> float | None:
        """The sender-clock time of pts 0: a frame was captured at epoch + pts (ms). The minimum
        over recent frames, i.e. the frame that waited least between capture and sending."""
        return round(min(self._epochs), 3) if self._epochs else None

    def _drain(self) -> None:
        with self._lock:
            frames = list(self._queue)
            self._queue.clear()
            self._scheduled = False
            evicted, self._evicted = self._evicted, False
        if evicted:  # the frames lost in the hand-off break the receiver's prediction chain
            self._want_keyframe("sender queue overflow")
        for ef in frames:
            try:
                self._send_frame(ef)
            except Exception as exc:  # a channel closing under us: the session loop notices
                log.debug("%s: send failed: %s", self.name, exc)
                self._want_keyframe(f"send failed: {exc}")

    def _queue_delay(self, s: _Session) -> tuple[int, float]:
        """(bytes waiting in the channels, seconds the oldest of them has waited).

        aiortc keeps every channel's outgoing messages in one FIFO in front of SCTP, and a
        channel's bufferedAmount counts its bytes still in there. Bytes handed over so far minus
        bytes still buffered tells how far the FIFO has drained, and so which frame is at its head.
        """
        queued = sum(ch.bufferedAmount for ch in s.tiers) + (s.pacer.pending_bytes if s.pacer else 0)
        drained = s.bytes_queued - queued
        now = time.monotonic()
        s.drained.append((now, drained))
        while len(s.drained) > 2 and now - s.drained[1][0] >= 0.5:
            s.drained.popleft()
        marks = s.marks
        while marks and marks[0][1] <= drained:
            marks.popleft()
        return queued, (time.monotonic() - marks[0][0]) if marks else 0.0

    def _send_frame(self, ef: EncodedFrame) -> None:
        s = self._session
        if s is None or not s.is_open():
            self.frames_offline += 1
            self._need_key = True
            return
        if self._need_key and not ef.keyframe:
            self.frames_waiting_key += 1
            return
        if not ef.keyframe and not ef.switch_point:  # P-frames: key pictures are larger, and once a second
            for t, chunk in enumerate(ef.tiers[: len(self._tier_size)]):
                old = self._tier_size[t]
                self._tier_size[t] = float(len(chunk)) if old is None else 0.6 * old + 0.4 * len(chunk)
        queued, delay = self._queue_delay(s)
        if queued > self.base_backlog or delay > self.base_delay:
            # the link cannot even carry the base tier: skip to the next keyframe
            self.base_dropped += 1
            self._want_keyframe(f"send queue {queued} bytes, {delay * 1e3:.0f} ms")
            return
        # enhancements only when what is queued is young: they are the first thing to give up
        enh_ok = delay <= self.enhancement_delay and queued <= self.enhancement_backlog
        if self.estimator is not None and self._channel_backlog_s(s) > self.estimator.policy.backlog_overuse_s:
            self._adapt(s, None)  # the first hop is congested: no need to wait for a report
        self._need_key = False
        s.sequence += 1
        seqno = s.sequence
        dt = us_to_ticks(ef.pts_us, self.info.timescale)
        count = 1
        while count < min(len(ef.tiers), self.max_tiers) and enh_ok and s.tiers[count].readyState == "open":
            count += 1
        for t in range(count, len(ef.tiers)):
            self.tier_dropped[t] += 1
        t_send = self.clock()
        now = int(t_send) & 0xFFFFFFFF  # every tier of a frame carries the same send time
        self._note_capture(ef.pts_us, t_send)
        mono = time.monotonic()
        wire = 0
        for tier in range(count):
            ch = s.tiers[tier]
            piece = tier_fragment(ef, tier, seqno, self.info, dt)
            msgs = split(piece, KIND_FRAGMENT, tier, seqno, now, frame_tiers=count)
            for m in msgs:
                if s.pacer is not None:
                    s.pacer.push(tier, m, mono)
                else:
                    ch.send(m)
                s.bytes_queued += len(m)
                wire += len(m)
            self.messages_sent += len(msgs)
            self.tier_sent[tier] += 1
            self.bytes_sent[tier] += len(piece)
        overhead = wire - sum(len(c) for c in ef.tiers[:count])
        self._overhead = 0.9 * self._overhead + 0.1 * overhead if self.frames_sent else float(overhead)
        s.marks.append((mono, s.bytes_queued))
        self.frames_sent += 1
        if s.pacer is not None:
            self._pump(s)

    def _pump(self, s: _Session) -> None:
        """Hand the pacer's due messages to their channels; come back when the next one is due."""
        if s.pump is not None:
            s.pump.cancel()
            s.pump = None
        pacer = s.pacer
        if pacer is None or s is not self._session:
            return
        now = time.monotonic()
        pacer.expire(now, self.enhancement_delay)
        out = pacer.pop(now)
        if out:
            stamp = int(self.clock()) & 0xFFFFFFFF
            for m in out:
                ch = s.tiers[m.tier]
                if ch.readyState == "open":
                    ch.send(restamp(m.data, stamp))
        wait = pacer.wait_s()
        if wait is not None and self._loop is not None:
            s.pump = self._loop.call_later(max(0.002, wait), self._pump, s)


def run_sender(
    transport, seq: SequenceHeader, request_keyframe: Callable[[], None] | None = None, **options: Any
) -> WhipSender:
    """The daemon's hook: a started WhipSender for `transport` (config.TransportConfig: peer,
    token, ice_servers, ca_file) streaming the sequence `seq`. Add it to the pipeline's sinks and set
    ``sender.request_keyframe = pipeline.request_keyframe`` once the pipeline exists."""
    if not transport.peer:
        raise TransportError("no WHIP endpoint configured (transport.peer / --peer)")
    return WhipSender(
        transport.peer,
        seq,
        token=transport.token,
        ice_servers=transport.ice_servers,
        request_keyframe=request_keyframe,
        ca_file=getattr(transport, "ca_file", None),
        **options,
    ).start()
