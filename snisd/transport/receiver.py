"""`snisd receive`: a WHIP endpoint (aiohttp + aiortc) that records and decodes incoming streams.

Every publisher POSTs an SDP offer to ``/whip`` and gets its own resource ``/whip/<id>``; any number
of publishers may stream at once. Per stream the receiver

* reassembles the fMP4 pieces from the tier channels (channels.py) and rebuilds each frame from
  its tier-0 fragment and whatever enhancement fragments arrived in time (a prefix of tiers);
* records the stream to ``<record-dir>/<id>.mp4`` with Fmp4Writer (flushed per fragment, so a
  crash leaves a file readable up to its last complete fragment);
* decodes it on a worker thread (Decoder, the tiers received and still consistent);
* sends feedback on the control channel: a JSON report twice a second, and keyframe requests
  after a gap or a decode error (docs/TRANSPORT.md);
* logs a stats line per stream and prints a JSON summary per stream when the stream ends.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import signal
import sys
import threading
import time
from typing import Any

from ..codec.bitstream import EncodedFrame
from ..container import InitInfo, ticks_to_us
from .channels import (CONTROL_LABEL, KIND_INIT, Reassembler, clock_ms, label_tier,
                       parse_init_segment, parse_tier_fragment)
from ..hostport import parse_host_port
from .errors import TransportError
from .ice import restrict_host_addresses, rtc_configuration

log = logging.getLogger("snisd.transport.receiver")

REPORT_INTERVAL_S = 0.5
EARLY_REPORT_RISE_MS = 50.0  # a path queue that grew this much since the last report is reported at once ...
EARLY_REPORT_GAP_S = 0.1  # ... but not more often than this
DECODE_QUEUE = 32


def frame_hash(frame) -> str:
    """Hash of a decoded picture (Y, U, V planes), the same on sender and receiver."""
    h = hashlib.sha1()
    for plane in (frame.y, frame.u, frame.v):
        h.update(plane.tobytes())
    return h.hexdigest()


class DelayTrend:
    """Slope of the one-way delay (arrival minus sender clock) over a sliding window, in ms per s.

    The clocks' offset is unknown and cancels out; a positive slope means a queue is building.
    """

    def __init__(self, window_s: float = 2.0, base_window_s: float = 10.0) -> None:
        self.window_ms = window_s * 1000
        self.base_window_ms = base_window_s * 1000
        self._pts: collections.deque[tuple[float, float]] = collections.deque()
        self._long: collections.deque[tuple[float, float]] = collections.deque()  # for the minimum
        self._base_sent: int | None = None
        self._unwrapped = 0

    def add(self, sent_ms: int, arrival_ms: float) -> None:
        if self._base_sent is None:
            self._base_sent = sent_ms
        d = (sent_ms - self._base_sent) & 0xFFFFFFFF  # sender clock relative to the first sample
        if d > 0x80000000:
            d -= 1 << 32
        self._pts.append((arrival_ms, arrival_ms - d))
        while self._pts and arrival_ms - self._pts[0][0] > self.window_ms:
            self._pts.popleft()
        self._long.append((arrival_ms, arrival_ms - d))
        while self._long and arrival_ms - self._long[0][0] > self.base_window_ms:
            self._long.popleft()

    def queueing(self) -> float:
        """Latest one-way delay above the smallest of the last 10 s, ms: an estimate of the
        queueing delay on the path (the smallest delay approximates an empty queue)."""
        if not self._long:
            return 0.0
        return self._long[-1][1] - min(p[1] for p in self._long)

    def slope(self) -> float:
        n = len(self._pts)
        if n < 3:
            return 0.0
        mx = sum(p[0] for p in self._pts) / n
        my = sum(p[1] for p in self._pts) / n
        sxx = sum((p[0] - mx) ** 2 for p in self._pts)
        if sxx <= 0:
            return 0.0
        sxy = sum((p[0] - mx) * (p[1] - my) for p in self._pts)
        return 1000.0 * sxy / sxx  # ms of delay per s of arrivals

    def spread(self) -> float:
        """Max minus min delay in the window, ms (jitter plus queueing)."""
        if not self._pts:
            return 0.0
        ys = [p[1] for p in self._pts]
        return max(ys) - min(ys)


class _Slot:
    __slots__ = ("seq", "samples", "first", "deadline", "expected")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.expected = 0  # tiers the sender sent for this frame (from the tier-0 header; 0: all)
        self.samples: dict[int, Any] = {}
        self.first = time.monotonic()
        self.deadline = 0.0


class Stream:
    """One publisher session: its peer connection, reassembly, recording, decoding and stats."""

    def __init__(self, receiver: "Receiver", sid: str, pc) -> None:
        self.receiver = receiver
        self.id = sid
        self.pc = pc
        self.loop = asyncio.get_running_loop()
        self.created = time.time()
        self.control = None
        self.hello: dict[str, Any] = {}
        self.sender_report: dict[str, Any] = {}
        self.info: InitInfo | None = None
        self.tiers = 0
        self.reassemblers: dict[int, Reassembler] = {}
        self.slots: dict[int, _Slot] = {}
        self.last_seq = 0  # last frame released to recording/decoding
        self.writer = None
        self.record_path: str | None = None
        self.delay = DelayTrend()
        self.wire_bytes = 0  # every tier message as it arrives, complete pieces or not: the link's throughput
        self.last_message = time.monotonic()
        self.closed = False
        self.hold_s = receiver.hold_ms / 1000.0
        self._timer: asyncio.TimerHandle | None = None
        self._report_task: asyncio.Task | None = None
        self._last_report = 0.0
        self._reported_queue_ms = 0.0
        # counters
        self.frames = [0]  # fragments received per tier
        self.bytes = [0]
        self.frames_released = 0
        self.frames_recorded = 0
        self.frames_decoded = 0
        self.decode_errors = 0
        self.decode_skipped = 0
        self.gaps = 0
        self.keyframe_requests = 0
        self.tier_histogram: collections.Counter[int] = collections.Counter()
        self.last_decoded_tiers = 0
        self.bad_messages = 0
        self._last_key_request = 0.0
        # decoding
        self._decode_q: queue.Queue = queue.Queue(DECODE_QUEUE)
        self._decoder_thread: threading.Thread | None = None

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
        self.reassemblers[tier] = Reassembler()
        channel.on("message", lambda m, t=tier: self._on_tier_message(t, m))

    def _on_control(self, message: Any) -> None:
        self.last_message = time.monotonic()
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

    def _on_tier_message(self, tier: int, message: Any) -> None:
        if self.closed or not isinstance(message, (bytes, bytearray)):
            return
        self.wire_bytes += len(message)
        self.last_message = time.monotonic()
        arrival = self.last_message * 1000.0
        try:
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
            self.delay.add(header.sent_ms, arrival)
            if (self.delay.queueing() - self._reported_queue_ms >= EARLY_REPORT_RISE_MS
                    and time.monotonic() - self._last_report >= EARLY_REPORT_GAP_S):
                self._send_report()  # a capacity drop: tell the sender now, not at the next tick
        if seq <= self.last_seq:
            return  # a late enhancement for a frame already released
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = _Slot(seq)
        slot.samples[tier] = sample
        if tier == 0:
            slot.deadline = time.monotonic() + self.hold_s
            slot.expected = header.frame_tiers
        self._pump()

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
        seq = info.sequence_header
        log.info("stream %s: %dx%d %.3g fps, %d tiers", self.id, seq.width, seq.height, seq.fps, seq.tiers)
        rdir = self.receiver.record_dir
        if rdir:
            from ..container import Fmp4Writer

            os.makedirs(rdir, exist_ok=True)
            self.record_path = os.path.join(rdir, f"{self.id}.mp4")
            self.writer = Fmp4Writer(self.record_path, seq)
            log.info("stream %s: recording to %s", self.id, self.record_path)
        if self.receiver.decode:
            self._decoder_thread = threading.Thread(target=self._decode_main, name=f"decode-{self.id}",
                                                    daemon=True)
            self._decoder_thread.start()

    # -- frame assembly ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Release frames in order: complete ones at once, incomplete ones at their deadline or
        as soon as a later frame's base has arrived."""
        now = time.monotonic()
        while self.slots:
            seq = min(self.slots)
            slot = self.slots[seq]
            if 0 not in slot.samples:
                if len(self.slots) > 64 or now - slot.first > 2.0:  # stray enhancement data
                    del self.slots[seq]
                    continue
                break
            complete = all(t in slot.samples for t in range(min(slot.expected or self.tiers, self.tiers)))
            newer_base = any(s > seq and 0 in self.slots[s].samples for s in self.slots)
            if not (complete or newer_base or now >= slot.deadline):
                self._arm(slot.deadline - now)
                break
            del self.slots[seq]
            self._release(slot)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(max(delay, 0.001), self._pump)

    def _release(self, slot: _Slot) -> None:
        assert self.info is not None
        if self.last_seq and slot.seq != self.last_seq + 1:
            self.gaps += 1
            self.request_keyframe(f"gap: fragment {slot.seq} after {self.last_seq}")
        self.last_seq = slot.seq
        for r in self.reassemblers.values():
            r.forget_before(slot.seq - 8)
        chunks = []
        for t in range(self.tiers):
            if t not in slot.samples:
                break
            chunks.append(slot.samples[t].data)
        s0 = slot.samples[0]
        ef = EncodedFrame(self.frames_released, ticks_to_us(s0.decode_time, self.info.timescale),
                          s0.is_sync, bool(s0.data and s0.data[0] & 4), tuple(chunks))
        self.frames_released += 1
        self.tier_histogram[len(chunks)] += 1
        if self.writer is not None:
            try:
                self.writer.write(ef)
                self.frames_recorded += 1
            except Exception as exc:
                log.error("stream %s: recording failed, stopping it: %s", self.id, exc)
                self._close_writer()
        if self._decoder_thread is None and self.receiver.frame_log is not None and not self.receiver.decode:
            self.receiver.frame_log.write({"stream": self.id, "frame_no": ef.tiers[0][1] << 8 | ef.tiers[0][2],
                                           "received_tiers": len(ef.tiers), "keyframe": ef.keyframe,
                                           "t_released": time.time()})
        if self._decoder_thread is not None:
            try:
                self._decode_q.put_nowait((ef, time.time()))
            except queue.Full:
                # The decoder fell behind: skip what is queued and restart from a keyframe.
                self._flush_decode_queue()
                self.request_keyframe("decoder behind")

    def _flush_decode_queue(self) -> None:
        while True:
            try:
                self._decode_q.get_nowait()
                self.decode_skipped += 1
            except queue.Empty:
                return

    # -- decoding (worker thread) --------------------------------------------------------------

    def _decode_main(self) -> None:
        from ..codec.decoder import Decoder, ReferenceError
        from ..errors import SnisError

        assert self.info is not None
        try:
            decoder = Decoder(self.info.sequence_header, model=self.receiver.model)
        except SnisError as exc:
            log.error("stream %s: cannot decode: %s", self.id, exc)
            return
        frame_log = self.receiver.frame_log
        while True:
            item = self._decode_q.get()
            if item is None:
                return
            ef, t_released = item
            t0 = time.perf_counter()
            try:
                frame = decoder.decode(ef)
            except ReferenceError as exc:
                self.decode_skipped += 1
                self._threadsafe_keyframe(str(exc))
                continue
            except SnisError as exc:
                self.decode_errors += 1
                log.warning("stream %s: decode error: %s", self.id, exc)
                self._threadsafe_keyframe(f"decode error: {exc}")
                continue
            self.frames_decoded += 1
            self.last_decoded_tiers = decoder.last_tiers
            if self.receiver.liveview is not None:
                self.receiver.liveview.on_frame(self, frame, t_released)
            if frame_log is not None:
                frame_no = ef.tiers[0][1] << 8 | ef.tiers[0][2]
                frame_log.write({"stream": self.id, "frame_no": frame_no, "tiers": decoder.last_tiers,
                                 "received_tiers": len(ef.tiers), "keyframe": ef.keyframe,
                                 "hash": frame_hash(frame), "t_released": t_released,
                                 "decode_ms": round((time.perf_counter() - t0) * 1e3, 3), "t": time.time()})

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
        return {"type": "report", "t_ms": clock_ms(), "frames": list(self.frames), "bytes": list(self.bytes),
                "wire_bytes": self.wire_bytes,
                "released": self.frames_released, "decoded": self.frames_decoded,
                "tiers_decoded": self.last_decoded_tiers, "gaps": self.gaps,
                "delay_trend_ms_per_s": round(self.delay.slope(), 2),
                "delay_spread_ms": round(self.delay.spread(), 2),
                "queue_delay_ms": round(self.delay.queueing(), 2)}

    def _send_report(self) -> None:
        r = self.report()
        self._last_report = time.monotonic()
        self._reported_queue_ms = r["queue_delay_ms"]
        self._send_control(r)

    async def _report_loop(self) -> None:
        while not self.closed:
            self._send_report()
            await asyncio.sleep(REPORT_INTERVAL_S)
            if time.monotonic() - self.last_message > self.receiver.idle_timeout:
                # the publisher vanished without a DELETE; ICE consent would take ~30 s to notice
                asyncio.ensure_future(self.receiver.end_stream(
                    self.id, f"no data for {self.receiver.idle_timeout:.0f} s"))
                return

    def summary(self) -> dict[str, Any]:
        return {"stream": self.id, "seconds": round(time.time() - self.created, 2), "tiers": self.tiers,
                "frames_per_tier": list(self.frames), "bytes_per_tier": list(self.bytes),
                "released": self.frames_released, "recorded": self.frames_recorded,
                "decoded": self.frames_decoded, "decode_errors": self.decode_errors,
                "decode_skipped": self.decode_skipped, "gaps": self.gaps,
                "keyframe_requests": self.keyframe_requests,
                "tiers_released": {str(k): v for k, v in sorted(self.tier_histogram.items())},
                "bad_messages": self.bad_messages, "record": self.record_path,
                "sender": self.sender_report}

    # -- teardown ------------------------------------------------------------------------------

    def _close_writer(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            finally:
                self.writer = None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        # release what is still held, in order
        for seq in sorted(self.slots):
            if 0 in self.slots[seq].samples:
                self._release(self.slots[seq])
        self.slots.clear()
        if self._report_task is not None:
            self._report_task.cancel()
        try:
            await asyncio.wait_for(self.pc.close(), 2.0)
        except Exception as exc:
            log.debug("stream %s: closing peer connection: %s", self.id, exc)
        if self._decoder_thread is not None:
            try:
                self._decode_q.put(None, timeout=2.0)
            except queue.Full:
                self._flush_decode_queue()
                self._decode_q.put_nowait(None)
            await asyncio.get_running_loop().run_in_executor(None, self._decoder_thread.join, 10.0)
        self._close_writer()


class FrameLog:
    """JSON lines, one per decoded frame (tests and benchmarks compare them with the sender's)."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def write(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()


class Receiver:
    """The WHIP endpoint application."""

    def __init__(self, *, token: str | None = None, record_dir: str | None = None, decode: bool = True,
                 model: str | None = None, ice_servers: list | None = None, hold_ms: float = 60.0,
                 frame_log: str | None = None, stats_interval: float = 5.0, max_streams: int = 16,
                 summary_out=None, idle_timeout: float = 10.0) -> None:
        self.idle_timeout = idle_timeout
        self.token = token
        self.record_dir = record_dir
        self.decode = decode
        self.model = model
        self.ice_servers = ice_servers or []
        self.hold_ms = hold_ms
        self.frame_log = FrameLog(frame_log) if frame_log else None
        self.stats_interval = stats_interval
        self.max_streams = max_streams
        self.summary_out = summary_out if summary_out is not None else sys.stdout
        self.streams: dict[str, Stream] = {}
        self.rejected = 0
        self.liveview = None  # liveview.LiveView once app() has run

    def _authorized(self, request) -> bool:
        if not self.token:
            return True
        got = request.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode())

    def _unauthorized(self):
        from aiohttp import web

        self.rejected += 1
        return web.Response(status=401, text="missing or wrong bearer token\n",
                            headers={"WWW-Authenticate": 'Bearer realm="snisd"'})

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/whip", self.handle_post)
        app.router.add_route("OPTIONS", "/whip", self.handle_options)
        app.router.add_delete("/whip/{sid}", self.handle_delete)
        app.router.add_patch("/whip/{sid}", self.handle_patch)
        app.router.add_get("/stats", self.handle_stats)
        from .liveview import LiveView

        self.liveview = LiveView(self)
        self.liveview.add_routes(app)  # /, /view/<id>, /stats/<id>, /whep/<id> (docs/VIEWING.md)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def handle_options(self, request):
        from aiohttp import web

        return web.Response(status=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"})

    async def handle_post(self, request):
        from aiohttp import web
        from aiortc import RTCPeerConnection, RTCSessionDescription

        if not self._authorized(request):
            log.warning("rejected a publisher from %s: bad or missing token", request.remote)
            return self._unauthorized()
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="the offer must be application/sdp\n")
        if len(self.streams) >= self.max_streams:
            return web.Response(status=503, text="too many streams\n", headers={"Retry-After": "5"})
        offer = await request.text()
        sid = secrets.token_hex(8)
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        stream = Stream(self, sid, pc)
        self.streams[sid] = stream
        pc.on("datachannel", stream.attach)

        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and sid in self.streams:
                await self.end_stream(sid, f"connection {pc.connectionState}")

        pc.on("connectionstatechange", on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self.end_stream(sid, f"bad offer: {exc}", quiet=True)
            return web.Response(status=400, text=f"cannot use this offer: {exc}\n")
        log.info("stream %s: publisher %s connected", sid, request.remote)
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": f"/whip/{sid}"})

    async def handle_delete(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._unauthorized()
        sid = request.match_info["sid"]
        if sid not in self.streams:
            return web.Response(status=404, text="no such session\n")
        # answer at once; tearing the session down (flush the recording, stop the decoder) follows
        asyncio.ensure_future(self.end_stream(sid, "publisher sent DELETE"))
        return web.Response(status=200)

    async def handle_patch(self, request):
        from aiohttp import web

        # Trickle ICE and ICE restarts are not supported: candidates are all in the offer.
        return web.Response(status=405, headers={"Allow": "DELETE"})

    async def handle_stats(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response({sid: s.summary() for sid, s in self.streams.items()})

    async def end_stream(self, sid: str, reason: str, quiet: bool = False) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        if self.liveview is not None:
            await self.liveview.stream_ended(sid)
        await stream.close()
        if not quiet:
            log.info("stream %s ended: %s", sid, reason)
            summary = stream.summary()
            summary["reason"] = reason
            print(json.dumps(summary), file=self.summary_out, flush=True)

    async def stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            for s in list(self.streams.values()):
                r = s.report()
                log.info("stream %s: released %d decoded %d frames/tier %s kB/tier %s tiers %s delay trend %.1f ms/s",
                         s.id, r["released"], r["decoded"], r["frames"], [b // 1000 for b in r["bytes"]],
                         dict(s.tier_histogram), r["delay_trend_ms_per_s"])

    async def _on_shutdown(self, app) -> None:
        for sid in list(self.streams):
            await self.end_stream(sid, "receiver shutting down")

    def close(self) -> None:
        if self.frame_log is not None:
            self.frame_log.close()


# ---------------------------------------------------------------------------------------------
# Command line.


def add_receiver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="0.0.0.0:8080", metavar="HOST:PORT",
                        help="address of the WHIP endpoint; publishers POST to http://HOST:PORT/whip (default 0.0.0.0:8080)")
    parser.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' (default: no check)")
    parser.add_argument("--record-dir", default=None, metavar="DIR",
                        help="record every stream to DIR/<session id>.mp4 (default: do not record)")
    parser.add_argument("--no-decode", dest="decode", action="store_false",
                        help="only record, do not decode")
    parser.add_argument("--model", default=None, help="synthesis weights (.npz) matching the sender's model")
    parser.add_argument("--ice-server", dest="ice_servers", action="append", default=[], metavar="URL",
                        help="STUN/TURN server URL (repeatable; default: none, host candidates only)")
    parser.add_argument("--ice-address", dest="ice_addresses", action="append", default=[], metavar="ADDR",
                        help="offer only this local address as an ICE host candidate (repeatable; "
                             "127.0.0.1 is allowed; default: every interface but loopback)")
    parser.add_argument("--hold-ms", type=float, default=60.0,
                        help="how long a frame waits for its enhancement tiers (default 60)")
    parser.add_argument("--frame-log", default=None, metavar="FILE",
                        help="append one JSON line per decoded frame (frame number, tiers, hash, times); "
                             "with --no-decode, per received frame")
    parser.add_argument("--stats-interval", type=float, default=5.0, help="seconds between stats log lines")
    parser.add_argument("--max-streams", type=int, default=16, help="concurrent publishers (default 16)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def warm_up_codec(model: str | None = None) -> float:
    """Run the decoder once on a tiny stream so its numba kernels are compiled (or loaded from
    the cache) before the first publisher arrives; returns the seconds it took. Best effort."""
    t0 = time.monotonic()
    try:
        from ..capture.synthetic import SyntheticScene
        from ..codec.decoder import Decoder
        from ..codec.encoder import Encoder, EncoderConfig

        enc = Encoder(EncoderConfig(64, 64, tiers=2))
        dec = Decoder(enc.sequence_header, model=model)
        scene = SyntheticScene(64, 64, 10.0)
        for n in range(2):
            dec.decode(enc.encode(scene.render(n)))
    except Exception as exc:  # a missing analysis model, say: decoding still works, just later
        log.debug("codec warm-up skipped: %s", exc)
    return time.monotonic() - t0


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> int:
    from aiohttp import web

    try:
        host, port = parse_host_port(args.listen)
    except ValueError as exc:
        raise TransportError(f"--listen: {exc}") from None
    if args.ice_addresses:
        restrict_host_addresses(args.ice_addresses)
    else:
        from .ice import apply_environment

        apply_environment()
    rx = Receiver(token=args.token, record_dir=args.record_dir, decode=args.decode, model=args.model,
                  ice_servers=args.ice_servers, hold_ms=args.hold_ms, frame_log=args.frame_log,
                  stats_interval=args.stats_interval, max_streams=args.max_streams)
    if args.decode:
        took = await asyncio.get_running_loop().run_in_executor(None, warm_up_codec, args.model)
        log.info("decoder ready (warm-up %.1f s)", took)
    runner = web.AppRunner(rx.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise TransportError(f"cannot listen on {host}:{port}: {exc}") from None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    stats = asyncio.ensure_future(rx.stats_loop())
    print(f"snisd receive: WHIP endpoint at http://{host}:{port}/whip", flush=True)
    try:
        await stop.wait()
    finally:
        stats.cancel()
        await runner.cleanup()  # ends every stream (on_shutdown)
        rx.close()
    return 0


def run_receiver(args: argparse.Namespace) -> int:
    """Entry point of `snisd receive` (arguments from add_receiver_arguments)."""
    level = getattr(args, "log_level", "info") or "info"
    if not logging.getLogger().handlers:
        logging.basicConfig(level=getattr(logging, level.upper()),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return asyncio.run(serve(args))
    except TransportError as exc:
        print(f"snisd receive: error: {exc}", file=sys.stderr)
        return 1
