"""Live view for `snisd receive`: watch the incoming streams in a browser over standard WebRTC.

Routes added to the receiver's aiohttp app (docs/VIEWING.md):

* ``GET /`` – an index of the live streams (HTML, links to their pages);
* ``GET /view/<id>`` – a page with the video and the stream's stats beside it;
* ``POST /whep/<id>`` – WHEP-style playback: an SDP offer in, ``201`` + answer + ``Location``;
  ``DELETE /whep/<id>/<viewer>`` ends it;
* ``GET /stats/<id>`` – JSON stats the page polls (tier, kbps per tier, fps, latency).

Every route honours the receiver's Bearer token: the ``Authorization`` header, or ``?token=``
for what a browser opens by URL (the pages). With no token configured everything is open.

Encoding happens ONCE per stream, whatever the number of viewers: the decoder thread hands every
decoded picture to the stream's LiveEncoder (it only keeps the latest one, so it never blocks
decoding); while someone watches, a worker thread encodes the latest picture to VP8 (libvpx,
realtime) and the event loop fans the packets out to each viewer's PacketTrack, which aiortc only
packetizes (RTCRtpSender.pack). A viewer that falls behind skips to the next keyframe; a new
viewer asks for one. Stream pictures are not resized: the browser scales them.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import logging
import secrets
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger("snisd.transport.liveview")

VIDEO_CLOCK = Fraction(1, 90000)
VIEWER_QUEUE = 30  # packets a viewer may lag behind before it skips to the next keyframe
KEYFRAME_INTERVAL_S = 2.0
MAX_VIEWERS = 16  # per stream
HTML = Path(__file__).with_name("viewer.html")


def _bitrate_for(width: int, height: int) -> int:
    """VP8 bit rate for the view: ~3 bits per 100 pixels per frame at 25 fps, 0.3..6 Mbit/s."""
    return int(min(6_000_000, max(300_000, width * height * 25 * 0.06)))


class LiveEncoder:
    """The single VP8 encoder of one stream; runs on its own thread while anyone watches."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_packets, fps: float) -> None:
        self.loop = loop
        self.on_packets = on_packets  # called on the loop with (packets, keyframe)
        self.fps = fps or 25.0
        self._cond = threading.Condition()
        self._latest = None
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
        self._thread = threading.Thread(target=self._main, args=(gen,), name="liveview-encode", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread = None

    def _main(self, gen: int) -> None:
        import av
        import numpy as np

        codec = None
        seen = 0
        gop = max(1, int(round(self.fps * KEYFRAME_INTERVAL_S)))
        since_key = 0
        while True:
            with self._cond:
                while self._running and gen == self._gen and (self._latest is None or self._seq == seen):
                    self._cond.wait(0.5)
                if not self._running or gen != self._gen:
                    return
                frame, seen = self._latest, self._seq
                key = self._keyframe or since_key >= gop
                self._keyframe = False
            t0 = time.perf_counter()
            h, w = frame.y.shape
            if codec is None or (codec.width, codec.height) != (w, h):
                codec = av.CodecContext.create("libvpx", "w")
                codec.width, codec.height = w, h
                codec.pix_fmt = "yuv420p"
                codec.time_base = VIDEO_CLOCK
                codec.bit_rate = _bitrate_for(w, h)
                codec.gop_size = 100000  # keyframes only when asked (here)
                codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                                 "error-resilient": "1", "static-thresh": "1"}
                codec.thread_count = 2
                key = True
            planes = np.concatenate((frame.y.ravel(), frame.u.ravel(), frame.v.ravel()))
            vf = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
            vf.pts = int((time.monotonic() - self._t0) / VIDEO_CLOCK)
            vf.time_base = VIDEO_CLOCK
            vf.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            try:
                packets = list(codec.encode(vf))
            except Exception as exc:  # pragma: no cover - libvpx trouble: start over
                log.warning("live view: VP8 encoding failed: %s", exc)
                codec = None
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


def _packet_track_class():
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class PacketTrack(MediaStreamTrack):
        """One viewer's video track: already-encoded VP8 packets from the stream's LiveEncoder."""

        kind = "video"

        def __init__(self, on_stop=None) -> None:
            super().__init__()
            self.queue: asyncio.Queue = asyncio.Queue()
            self.waiting_key = True
            self._on_stop = on_stop

        def offer(self, packets, keyframe: bool) -> bool:
            """Queue a frame's packets; returns False when this viewer needs a keyframe."""
            if self.readyState != "live":
                return True
            if self.waiting_key and not keyframe:
                return False
            if self.queue.qsize() >= VIEWER_QUEUE:
                self.waiting_key = True
                while not self.queue.empty():
                    self.queue.get_nowait()
                return keyframe
            self.waiting_key = False
            for p in packets:
                self.queue.put_nowait(p)
            return True

        async def recv(self):
            if self.readyState != "live":
                raise MediaStreamError
            item = await self.queue.get()
            if item is None:
                raise MediaStreamError
            return item

        def stop(self) -> None:
            if self.readyState == "live":
                self.queue.put_nowait(None)
            super().stop()
            if self._on_stop is not None:
                self._on_stop(self)

    return PacketTrack


class _Rates:
    """Rates over the last few seconds from periodic samples of a stream's counters."""

    def __init__(self, window_s: float = 3.0) -> None:
        self.window_s = window_s
        self.samples: collections.deque = collections.deque()

    def update(self, now: float, byte_counts: list, decoded: int) -> tuple[list, float]:
        self.samples.append((now, list(byte_counts), decoded))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        t0, b0, d0 = self.samples[0]
        dt = now - t0
        if dt < 0.2:
            return [0.0] * len(byte_counts), 0.0
        per_tier = [(b - (b0[i] if i < len(b0) else 0)) * 8 / dt / 1000 for i, b in enumerate(byte_counts)]
        return [round(x, 1) for x in per_tier], round((decoded - d0) / dt, 2)


class StreamView:
    """The live-view side of one Stream: its encoder, its viewers, its latency figures."""

    def __init__(self, view: "LiveView", stream) -> None:
        self.view = view
        self.stream = stream
        fps = stream.info.sequence_header.fps if stream.info is not None else 25.0
        self.encoder = LiveEncoder(view.loop, self._fan_out, fps)
        self.viewers: dict[str, tuple[Any, Any]] = {}  # viewer id -> (pc, track)
        self.rates = _Rates()
        self.latency_ms = 0.0  # release -> decoded, smoothed
        self.decoded_at = 0.0
        self.width = self.height = 0

    def on_frame(self, frame, t_released: float) -> None:
        """Decoder thread: one decoded picture."""
        now = time.time()
        self.decoded_at = now
        self.height, self.width = frame.y.shape
        d = (now - t_released) * 1000
        self.latency_ms = d if not self.latency_ms else 0.8 * self.latency_ms + 0.2 * d
        self.encoder.put(frame)

    def _fan_out(self, packets, keyframe: bool) -> None:
        need_key = False
        for _, track in list(self.viewers.values()):
            if not track.offer(packets, keyframe):
                need_key = True
        if need_key:
            self.encoder.request_keyframe()

    def add_viewer(self, vid: str, pc, track) -> None:
        self.viewers[vid] = (pc, track)
        self.encoder.start()
        self.encoder.request_keyframe()

    def drop_viewer(self, vid: str) -> Any:
        item = self.viewers.pop(vid, None)
        if not self.viewers:
            self.encoder.stop()
        return item

    def stats(self) -> dict[str, Any]:
        s = self.stream
        kbps, fps = self.rates.update(time.monotonic(), s.bytes, s.frames_decoded)
        cum = []
        for k in kbps:
            cum.append(round((cum[-1] if cum else 0) + k, 1))
        queue_ms = s.delay.queueing()
        seq = s.info.sequence_header if s.info is not None else None
        return {
            "stream": s.id, "width": seq.width if seq else 0, "height": seq.height if seq else 0,
            "nominal_fps": round(seq.fps, 3) if seq else 0, "tiers": s.tiers,
            "tier": s.last_decoded_tiers,  # tiers used for the latest decoded picture
            "tiers_released": {str(k): v for k, v in sorted(s.tier_histogram.items())},
            "kbps_per_tier": kbps, "kbps_cumulative": cum, "fps": fps,
            "latency_ms": round(self.latency_ms + queue_ms, 1),
            "receive_decode_ms": round(self.latency_ms, 1), "queue_delay_ms": round(queue_ms, 1),
            "hold_ms": round(s.hold_s * 1000, 1),
            "released": s.frames_released, "decoded": s.frames_decoded, "gaps": s.gaps,
            "decode_errors": s.decode_errors, "keyframe_requests": s.keyframe_requests,
            "viewers": len(self.viewers), "view_frames_encoded": self.encoder.frames_encoded,
            "view_encode_ms": round(self.encoder.encode_ms, 2),
            "age_ms": round((time.time() - self.decoded_at) * 1000) if self.decoded_at else None,
            "seconds": round(time.time() - s.created, 1),
        }

    async def close(self) -> None:
        self.encoder.stop()
        for vid in list(self.viewers):
            pc, track = self.viewers.pop(vid)
            track.stop()
            try:
                await asyncio.wait_for(pc.close(), 2.0)
            except Exception:
                pass


class LiveView:
    """Adds the viewing routes to a Receiver's aiohttp app."""

    def __init__(self, receiver) -> None:
        self.receiver = receiver
        self.views: dict[str, StreamView] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._track_cls = None
        self.rejected = 0

    # -- hooks from the receiver ---------------------------------------------------------------

    def _view(self, stream) -> StreamView:
        v = self.views.get(stream.id)
        if v is None:  # the decoder thread and the loop may race here: setdefault keeps one
            v = self.views.setdefault(stream.id, StreamView(self, stream))
        return v

    def on_frame(self, stream, frame, t_released: float) -> None:
        """Decoder thread of `stream`: a decoded picture (kept if anyone watches)."""
        v = self.views.get(stream.id)
        if v is None:
            if self.loop is None:
                return
            v = self._view(stream)  # dict assignment is atomic; the loop only reads it
        v.on_frame(frame, t_released)

    async def stream_ended(self, sid: str) -> None:
        v = self.views.pop(sid, None)
        if v is not None:
            await v.close()

    # -- routes --------------------------------------------------------------------------------

    def add_routes(self, app) -> None:
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/view/{sid}", self.handle_page)
        app.router.add_get("/stats/{sid}", self.handle_stream_stats)
        app.router.add_post("/whep/{sid}", self.handle_whep)
        app.router.add_route("OPTIONS", "/whep/{sid}", self.handle_options)
        app.router.add_delete("/whep/{sid}/{vid}", self.handle_delete)
        app.router.add_patch("/whep/{sid}/{vid}", self.handle_patch)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_startup(self, app) -> None:
        self.loop = asyncio.get_running_loop()

    async def _on_shutdown(self, app) -> None:
        for sid in list(self.views):
            await self.stream_ended(sid)

    def _authorized(self, request, allow_query: bool) -> bool:
        token = self.receiver.token
        if not token:
            return True
        if self.receiver._authorized(request):
            return True
        if allow_query:
            got = request.query.get("token", "")
            return hmac.compare_digest(got.encode(), token.encode())
        return False

    def _refuse(self, request):
        self.rejected += 1
        log.warning("live view: refused %s %s from %s (bad or missing token)", request.method,
                    request.path, request.remote)
        return self.receiver._unauthorized()

    def _token_query(self, request) -> str:
        from urllib.parse import quote

        t = request.query.get("token")
        return f"?token={quote(t)}" if t and self.receiver.token else ""

    async def handle_index(self, request):
        from aiohttp import web
        from html import escape

        if not self._authorized(request, True):
            return self._refuse(request)
        q = self._token_query(request)
        rows = []
        for sid, s in sorted(self.receiver.streams.items()):
            seq = s.info.sequence_header if s.info is not None else None
            desc = f"{seq.width}x{seq.height} {seq.fps:.3g} fps, {s.tiers} tiers" if seq else "starting"
            rows.append(f'<li><a href="/view/{escape(sid)}{escape(q)}">{escape(sid)}</a> – {escape(desc)}, '
                        f"{s.frames_decoded} frames decoded</li>")
        body = "\n".join(rows) or "<li>no stream right now</li>"
        html = (f"<!doctype html><html><head><meta charset='utf-8'><title>snisd streams</title>"
                f"<meta http-equiv='refresh' content='5'></head><body style='font-family:sans-serif'>"
                f"<h1>snisd: live streams</h1><ul>{body}</ul></body></html>")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def handle_page(self, request):
        from aiohttp import web

        if not self._authorized(request, True):
            return self._refuse(request)
        sid = request.match_info["sid"]
        if sid not in self.receiver.streams:
            return web.Response(status=404, text="no such stream\n")
        html = HTML.read_text(encoding="utf-8").replace("{{STREAM_ID}}", json.dumps(sid))
        return web.Response(text=html, content_type="text/html",
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def handle_stream_stats(self, request):
        from aiohttp import web

        if not self._authorized(request, True):
            return self._refuse(request)
        stream = self.receiver.streams.get(request.match_info["sid"])
        if stream is None:
            return web.json_response({"error": "no such stream"}, status=404)
        return web.json_response(self._view(stream).stats(), headers={"Cache-Control": "no-store"})

    async def handle_options(self, request):
        from aiohttp import web

        return web.Response(status=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": "application/sdp"})

    async def handle_whep(self, request):
        from aiohttp import web
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        from .ice import rtc_configuration

        if not self._authorized(request, False):
            return self._refuse(request)
        sid = request.match_info["sid"]
        stream = self.receiver.streams.get(sid)
        if stream is None:
            return web.Response(status=404, text="no such stream\n")
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="the offer must be application/sdp\n")
        if not self.receiver.decode:
            return web.Response(status=409, text="the receiver runs with --no-decode: nothing to show\n")
        view = self._view(stream)
        if len(view.viewers) >= MAX_VIEWERS:
            return web.Response(status=503, text="too many viewers\n", headers={"Retry-After": "5"})
        offer = await request.text()
        vid = secrets.token_hex(6)
        if self._track_cls is None:
            self._track_cls = _packet_track_class()
        track = self._track_cls()
        pc = RTCPeerConnection(rtc_configuration(self.receiver.ice_servers))

        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._end_viewer(sid, vid, f"connection {pc.connectionState}")

        pc.on("connectionstatechange", on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            video = [t for t in pc.getTransceivers() if t.kind == "video"]
            if not video:
                raise ValueError("the offer has no video section")
            pc.addTrack(track)
            vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs
                   if c.mimeType.lower() in ("video/vp8", "video/rtx")]
            video[0].setCodecPreferences(vp8)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            track.stop()
            await pc.close()
            return web.Response(status=400, text=f"cannot use this offer: {exc}\n")
        view.add_viewer(vid, pc, track)
        log.info("stream %s: viewer %s from %s (%d watching)", sid, vid, request.remote, len(view.viewers))
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": f"/whep/{sid}/{vid}"})

    async def _end_viewer(self, sid: str, vid: str, reason: str) -> bool:
        view = self.views.get(sid)
        item = view.drop_viewer(vid) if view is not None else None
        if item is None:
            return False
        pc, track = item
        track.stop()
        log.info("stream %s: viewer %s left (%s)", sid, vid, reason)
        try:
            await asyncio.wait_for(pc.close(), 2.0)
        except Exception:
            pass
        return True

    async def handle_delete(self, request):
        from aiohttp import web

        if not self._authorized(request, False):
            return self._refuse(request)
        sid, vid = request.match_info["sid"], request.match_info["vid"]
        view = self.views.get(sid)
        if view is None or vid not in view.viewers:
            return web.Response(status=404, text="no such viewer\n")
        await self._end_viewer(sid, vid, "viewer sent DELETE")
        return web.Response(status=200)

    async def handle_patch(self, request):
        from aiohttp import web

        return web.Response(status=405, headers={"Allow": "DELETE"})
