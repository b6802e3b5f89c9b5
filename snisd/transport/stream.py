"""One publisher's session on the receiver: its channels, frames, recording, decoder and reports.

Per stream the receiver

* reassembles the fMP4 pieces from the tier channels (channels.py) and rebuilds each frame from
  its tier-0 fragment and whatever enhancement fragments arrived in time (assembly.py);
* records the stream to ``<record-dir>/<id>.mp4`` (recording.py: stops at its limits, the
  stream goes on);
* decodes it on a worker thread (decoding.py) and hands every picture to the live view;
* sends feedback on the control channel: a JSON report twice a second, keyframe requests after a
  gap or a decode error, and clock pings (clocksync.py) for the capture-to-display latency.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..codec.bitstream import EncodedFrame, FrameHeader
from ..container import Fragment, InitInfo, fragment_to_frame
from ..errors import SnisError
from .assembly import FrameAssembler, Slot
from .channels import (
    CONTROL_LABEL,
    HEADER,
    KIND_INIT,
    MAX_MESSAGE,
    Reassembler,
    clock_ms,
    label_tier,
    parse_header_bytes,
    parse_init_segment,
    parse_tier_fragment,
)
from .clocksync import ClockSync, Percentiles
from .decoding import DecodeWorker
from .delay import DelayTrend
from .errors import TransportError
from .framelog import FrameLog, frame_hash
from .recording import Recorder, RecordingLimits

log = logging.getLogger("snisd.transport.receiver")

REPORT_INTERVAL_S = 0.25
PING_INTERVAL_S = 1.0
EARLY_REPORT_RISE_MS = 50.0  # a path queue that grew this much since the last report is reported at once ...
EARLY_REPORT_GAP_S = 0.1  # ... but not more often than this
MAX_CONTROL_MESSAGE = 16 * 1024
DEFAULT_MAX_FRAME_BYTES = 8 << 20


def receiver_clock_ms() -> float:
    """The receiver's clock for pings and latency (monotonic, ms)."""
    return time.monotonic() * 1000.0


@dataclass
class StreamSettings:
    """What every stream of one receiver shares (from the command line or the config file)."""

    record_dir: str | None = None
    decode: bool = True
    model: str | None = None
    hold_ms: float = 60.0
    idle_timeout: float = 10.0
    limits: RecordingLimits = field(default_factory=RecordingLimits)
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES  # one tier of one frame, reassembled


class Stream:
    """One publisher session. `on_decoded(stream, frame, t_released)` runs on the decoder
    thread; `on_idle(stream, reason)` on the loop when the publisher went silent."""

    def __init__(
        self,
        sid: str,
        pc,
        settings: StreamSettings,
        *,
        publisher: str = "",
        frame_log: FrameLog | None = None,
        on_decoded: Callable[[Stream, Any, float], None] | None = None,
        on_idle: Callable[[Stream, str], None] | None = None,
    ) -> None:
        self.id = sid
        self.pc = pc
        self.settings = settings
        self.publisher = publisher  # the name of the publisher's token ("" when open)
        self.frame_log = frame_log
        self.on_decoded = on_decoded
        self.on_idle = on_idle
        self.loop = asyncio.get_running_loop()
        self.created = time.time()
        self.control = None
        self.hello: dict[str, Any] = {}
        self.sender_report: dict[str, Any] = {}
        self.info: InitInfo | None = None
        self.tiers = 0
        self.reassemblers: dict[int, Reassembler] = {}
        self.assembler: FrameAssembler | None = None
        self.recorder: Recorder | None = None
        self.decoder: DecodeWorker | None = None
        self.delay = DelayTrend()
        self.clock = ClockSync()
        self.latency = Percentiles()  # capture (sender clock, corrected) to decoded, ms
        self.wire_bytes = 0  # every tier message as it arrives, complete pieces or not: the link's throughput
        self.last_message = time.monotonic()
        self.closed = False
        self.hold_s = settings.hold_ms / 1000.0
        self._report_task: asyncio.Task | None = None
        self._last_report = 0.0
        self._last_ping = 0.0
        self._reported_queue_ms = 0.0
        self._last_key_request = 0.0
        # counters
        self.frames = [0]  # fragments received per tier
        self.bytes = [0]
        self.frames_released = 0
        self.gaps = 0
        self.keyframe_requests = 0
        self.tier_histogram: collections.Counter[int] = collections.Counter()
        self.bad_messages = 0

    # -- counters of the parts -----------------------------------------------------------------

    @property
    def record_path(self) -> str | None:
        r = self.recorder
        return r.path if r is not None and (r.frames or r.active) else None

    @property
    def frames_recorded(self) -> int:
        return self.recorder.frames if self.recorder is not None else 0

    @property
    def recording_stopped(self) -> str | None:
        return self.recorder.stopped if self.recorder is not None else None

    @property
    def frames_decoded(self) -> int:
        return self.decoder.decoded if self.decoder is not None else 0

    @property
    def decode_errors(self) -> int:
        return self.decoder.errors if self.decoder is not None else 0

    @property
    def decode_skipped(self) -> int:
        return self.decoder.skipped if self.decoder is not None else 0

    @property
    def last_decoded_tiers(self) -> int:
        return self.decoder.last_tiers if self.decoder is not None else 0

    # -- channels ------------------------------------------------------------------------------

    def attach(self, channel) -> None:
        label = channel.label
        if label == CONTROL_LABEL:
            self.control = channel
            channel.on("message", self._on_control)
            if self._report_task is None:
                self._report_task = asyncio.ensure_future(self._report_loop())
            return
        tier = label_tier(label)
        if tier is None:
            log.warning("stream %s: ignoring unknown data channel %r", self.id, label)
            return
        self.reassemblers[tier] = Reassembler(max_piece=self.settings.max_frame_bytes)
        channel.on("message", lambda m, t=tier: self._on_tier_message(t, m))

    def _on_control(self, message: Any) -> None:
        t3 = receiver_clock_ms()
        self.last_message = time.monotonic()
        if len(message) > MAX_CONTROL_MESSAGE:
            self.bad_messages += 1
            return
        try:
            msg = json.loads(message)
        except (TypeError, ValueError):
            self.bad_messages += 1
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "hello":
            self.hello = msg
            log.info("stream %s: publisher says %s", self.id, msg)
        elif kind == "sender":
            self.sender_report = msg
        elif kind == "pong":
            self.clock.on_pong(msg, t3)

    def _on_tier_message(self, tier: int, message: Any) -> None:
        if self.closed or not isinstance(message, (bytes, bytearray)):
            return
        self.wire_bytes += len(message)
        self.last_message = time.monotonic()
        arrival = self.last_message * 1000.0
        try:
            if len(message) > MAX_MESSAGE:
                raise TransportError(f"message of {len(message)} bytes exceeds the {MAX_MESSAGE}-byte bound")
            got = self.reassemblers[tier].add(bytes(message))
            if got is None:
                return
            header, piece = got
            if header.kind == KIND_INIT:
                self._on_init(piece)
                return
            if self.info is None:
                raise TransportError("fragment before the init segment")
            if not 0 <= tier < self.tiers:
                raise TransportError(f"tier {tier} outside the stream's {self.tiers} tiers")
            seq, sample = parse_tier_fragment(piece, self.info, tier)
        except TransportError as exc:
            self.bad_messages += 1
            log.warning("stream %s: tier %d: %s", self.id, tier, exc)
            if tier == 0:
                self.request_keyframe(f"bad base message: {exc}")
            return
        self.frames[tier] += 1
        self.bytes[tier] += len(piece)
        if tier == 0:
            # the one-way delay of the message that completed the piece: a paced sender stamps each
            # message as it leaves, so a large frame's own sending time is not taken for a queue
            self.delay.add(parse_header_bytes(bytes(message[: HEADER.size])).sent_ms, arrival)
            if (
                self.delay.queueing() - self._reported_queue_ms >= EARLY_REPORT_RISE_MS
                and time.monotonic() - self._last_report >= EARLY_REPORT_GAP_S
            ):
                self._send_report()  # a capacity drop: tell the sender now, not at the next tick
        assert self.assembler is not None
        self.assembler.add(seq, tier, sample, header.frame_tiers)

    def _on_init(self, piece: bytes) -> None:
        info = parse_init_segment(piece)
        if self.info is not None:
            if info.seq_bytes != self.info.seq_bytes:
                raise TransportError("the publisher changed its sequence header mid-session")
            return
        self.info = info
        self.tiers = info.tiers
        self.frames = [0] * self.tiers
        self.bytes = [0] * self.tiers
        self.assembler = FrameAssembler(self.loop, self.tiers, self.hold_s, self._release)
        seq = info.sequence_header
        log.info("stream %s: %dx%d %.3g fps, %d tiers", self.id, seq.width, seq.height, seq.fps, seq.tiers)
        rdir = self.settings.record_dir
        if rdir:
            self.recorder = Recorder(
                os.path.join(rdir, f"{self.id}.mp4"), seq, self.settings.limits, label=f"stream {self.id}"
            )
            if self.recorder.active:
                log.info("stream %s: recording to %s", self.id, self.recorder.path)
        if self.settings.decode:
            self.decoder = DecodeWorker(self.id, seq, self.settings.model, self._on_decoded, self._threadsafe_keyframe)
            self.decoder.start()

    # -- released frames -----------------------------------------------------------------------

    def _release(self, slot: Slot, previous: int) -> None:
        assert self.info is not None
        if previous and slot.seq != previous + 1:
            self.gaps += 1
            self.request_keyframe(f"gap: fragment {slot.seq} after {previous}")
        for r in self.reassemblers.values():
            r.forget_before(slot.seq - 8)
        samples = tuple(slot.prefix())
        ef = fragment_to_frame(Fragment(slot.seq, samples, 0, 0), self.info, self.frames_released)
        self.frames_released += 1
        self.tier_histogram[len(samples)] += 1
        if self.recorder is not None:
            self.recorder.write(ef)
        if self.decoder is None and self.frame_log is not None and not self.settings.decode:
            self.frame_log.write(
                {
                    "stream": self.id,
                    "frame_no": _frame_no(ef),
                    "received_tiers": len(ef.tiers),
                    "keyframe": ef.keyframe,
                    "t_released": time.time(),
                }
            )
        if self.decoder is not None and not self.decoder.put(ef, time.time()):
            # The decoder fell behind: what was queued is skipped; restart from a keyframe.
            self.request_keyframe("decoder behind")

    def _on_decoded(self, frame, ef: EncodedFrame, t_released: float, tiers: int, decode_ms: float) -> None:
        """Decoder thread: one picture."""
        shown_ms = receiver_clock_ms()
        latency = self._note_latency(ef.pts_us, shown_ms)
        if self.on_decoded is not None:
            self.on_decoded(self, frame, t_released)
        if self.frame_log is not None:
            best = self.clock.best()
            self.frame_log.write(
                {
                    "stream": self.id,
                    "frame_no": _frame_no(ef),
                    "pts_us": ef.pts_us,
                    "tiers": tiers,
                    "received_tiers": len(ef.tiers),
                    "bytes": sum(len(t) for t in ef.tiers),
                    "keyframe": ef.keyframe,
                    "hash": frame_hash(frame),
                    "t_released": t_released,
                    "decode_ms": round(decode_ms, 3),
                    "t": time.time(),
                    # the receiver clock when it was shown, and what places it on the sender's
                    # capture timeline: the sender's capture epoch and the clock offset estimate
                    "t_shown_ms": round(shown_ms, 3),
                    "e2e_ms": None if latency is None else round(latency, 3),
                    "capture_epoch_ms": self.sender_report.get("capture_epoch_ms"),
                    "capture_epoch_from": self.sender_report.get("capture_epoch_from"),
                    "clock_offset_ms": None if best is None else round(best.offset_ms, 3),
                    "clock_rtt_ms": None if best is None else round(best.rtt_ms, 3),
                }
            )

    def _note_latency(self, pts_us: int, now_ms: float) -> float | None:
        """Capture-to-display latency of a picture shown at `now_ms` (this clock): its capture
        time on the sender's clock (the sender's capture epoch plus the pts), moved to this clock
        by the offset. None before the first epoch and pong."""
        epoch = self.sender_report.get("capture_epoch_ms")
        best = self.clock.best()
        if not isinstance(epoch, (int, float)) or best is None:
            return None
        latency = now_ms - (epoch + pts_us / 1000.0 - best.offset_ms)
        self.latency.add(latency)
        return latency

    def latency_stats(self) -> dict[str, Any]:
        best = self.clock.best()
        p50, p95 = self.latency.get(0.5), self.latency.get(0.95)
        return {
            "e2e_latency_p50_ms": None if p50 is None else round(p50, 1),
            "e2e_latency_p95_ms": None if p95 is None else round(p95, 1),
            "clock_offset_ms": None if best is None else round(best.offset_ms, 2),
            "clock_rtt_ms": None if best is None else round(best.rtt_ms, 2),
            # "capture": from the sender's capture times; "send": from when frames reached its
            # sink (a lower bound that leaves out capture and encoding)
            "e2e_latency_from": self.sender_report.get("capture_epoch_from"),
        }

    def _threadsafe_keyframe(self, reason: str) -> None:
        try:
            self.loop.call_soon_threadsafe(self.request_keyframe, reason)
        except RuntimeError:
            pass

    # -- feedback ------------------------------------------------------------------------------

    def request_keyframe(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_key_request < 0.3:
            return
        self._last_key_request = now
        self.keyframe_requests += 1
        log.info("stream %s: asking for a keyframe (%s)", self.id, reason)
        self._send_control({"type": "keyframe", "reason": reason})

    def _send_control(self, msg: dict[str, Any]) -> None:
        ch = self.control
        if ch is not None and ch.readyState == "open":
            try:
                ch.send(json.dumps(msg))
            except Exception as exc:
                log.debug("stream %s: control send failed: %s", self.id, exc)

    def report(self) -> dict[str, Any]:
        return {
            "type": "report",
            "t_ms": clock_ms(),
            "frames": list(self.frames),
            "bytes": list(self.bytes),
            "wire_bytes": self.wire_bytes,
            "released": self.frames_released,
            "decoded": self.frames_decoded,
            "tiers_decoded": self.last_decoded_tiers,
            "gaps": self.gaps,
            "delay_trend_ms_per_s": round(self.delay.slope(), 2),
            "delay_spread_ms": round(self.delay.spread(), 2),
            "queue_delay_ms": round(self.delay.queueing(), 2),
        }

    def _send_report(self) -> None:
        r = self.report()
        self._last_report = time.monotonic()
        self._reported_queue_ms = r["queue_delay_ms"]
        self._send_control(r)

    async def _report_loop(self) -> None:
        while not self.closed:
            self._send_report()
            if time.monotonic() - self._last_ping >= PING_INTERVAL_S:
                self._last_ping = time.monotonic()
                self._send_control(self.clock.ping(receiver_clock_ms()))
            await asyncio.sleep(REPORT_INTERVAL_S)
            idle = self.settings.idle_timeout
            if time.monotonic() - self.last_message > idle and self.on_idle is not None:
                # the publisher vanished without a DELETE; ICE consent would take ~30 s to notice
                self.on_idle(self, f"no data for {idle:.0f} s")
                return

    def summary(self) -> dict[str, Any]:
        return {
            "stream": self.id,
            "publisher": self.publisher,
            "seconds": round(time.time() - self.created, 2),
            "tiers": self.tiers,
            "frames_per_tier": list(self.frames),
            "bytes_per_tier": list(self.bytes),
            "released": self.frames_released,
            "recorded": self.frames_recorded,
            "recording_stopped": self.recording_stopped,
            "decoded": self.frames_decoded,
            "decode_errors": self.decode_errors,
            "decode_skipped": self.decode_skipped,
            "decoder_failed": self.decoder.failed if self.decoder is not None else None,
            "gaps": self.gaps,
            "keyframe_requests": self.keyframe_requests,
            "tiers_released": {str(k): v for k, v in sorted(self.tier_histogram.items())},
            "bad_messages": self.bad_messages,
            "record": self.record_path,
            **self.latency_stats(),
            "sender": self.sender_report,
        }

    # -- teardown ------------------------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.assembler is not None:
            self.assembler.flush()  # release what is still held, in order
        if self._report_task is not None:
            self._report_task.cancel()
        try:
            await asyncio.wait_for(self.pc.close(), 2.0)
        except Exception as exc:
            log.debug("stream %s: closing peer connection: %s", self.id, exc)
        if self.decoder is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.decoder.stop, 10.0)
        if self.recorder is not None:
            self.recorder.close()


def _frame_no(ef: EncodedFrame) -> int | None:
    """The frame counter of a released frame (None when its base header is unreadable)."""
    try:
        return FrameHeader.from_bytes(ef.tiers[0]).frame_no
    except SnisError:
        return None
