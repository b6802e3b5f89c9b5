"""Live view for `snisd receive`: watch the incoming streams in a browser over standard WebRTC.

Routes added to the receiver's aiohttp app (docs/VIEWING.md):

* ``GET /`` – an index of the live streams (HTML, links to their pages);
* ``GET /view/<id>`` – a page with the video and the stream's stats beside it;
* ``POST /whep/<id>`` – WHEP-style playback: an SDP offer in, ``201`` + answer + ``Location``;
  ``DELETE /whep/<id>/<viewer>`` ends it; CORS headers let players on other origins use it;
* ``GET /stats/<id>`` – JSON stats the page polls (tier, kbps per tier, fps, latency).

Every route needs a token of the ``view`` scope (auth.py): the ``Authorization`` header, or
``?token=`` for what a browser opens by URL (the pages). With no token configured everything is
open (and the receiver listens on loopback only).

Encoding happens ONCE per stream, whatever the number of viewers: the stream's Fanout
(fanout.py) re-encodes the latest decoded picture (VP8, or H.264 when the stream is forwarded as
H.264) and hands the packets to each viewer's track. Stream pictures are not resized: the
browser scales them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from ..reencode import MIME_TYPES
from .auth import VIEW, refusal
from .fanout import new_track

log = logging.getLogger("snisd.transport.liveview")

MAX_VIEWERS = 16  # per stream
HTML = Path(__file__).with_name("viewer.html")
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location",
}


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
    """The live-view side of one Stream: its viewers and the figures its page shows."""

    def __init__(self, view: LiveView, stream, fanout) -> None:
        self.view = view
        self.stream = stream
        self.fanout = fanout
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

    def add_viewer(self, vid: str, pc, track) -> None:
        self.viewers[vid] = (pc, track)
        self.fanout.subscribe(track)

    def drop_viewer(self, vid: str) -> Any:
        item = self.viewers.pop(vid, None)
        if item is not None:
            self.fanout.unsubscribe(item[1])
        return item

    def stats(self) -> dict[str, Any]:
        s = self.stream
        kbps, fps = self.rates.update(time.monotonic(), s.bytes, s.frames_decoded)
        cum: list[float] = []
        for k in kbps:
            cum.append(round((cum[-1] if cum else 0) + k, 1))
        queue_ms = s.delay.queueing()
        seq = s.info.sequence_header if s.info is not None else None
        enc = self.fanout.encoder
        return {
            "stream": s.id,
            "publisher": s.publisher,
            "width": seq.width if seq else 0,
            "height": seq.height if seq else 0,
            "nominal_fps": round(seq.fps, 3) if seq else 0,
            "tiers": s.tiers,
            "tier": s.last_decoded_tiers,  # tiers used for the latest decoded picture
            "tiers_released": {str(k): v for k, v in sorted(s.tier_histogram.items())},
            "kbps_per_tier": kbps,
            "kbps_cumulative": cum,
            "fps": fps,
            "latency_ms": round(self.latency_ms + queue_ms, 1),
            "receive_decode_ms": round(self.latency_ms, 1),
            "queue_delay_ms": round(queue_ms, 1),
            **s.latency_stats(),
            "hold_ms": round(s.hold_s * 1000, 1),
            "released": s.frames_released,
            "decoded": s.frames_decoded,
            "gaps": s.gaps,
            "decode_errors": s.decode_errors,
            "keyframe_requests": s.keyframe_requests,
            "recorded": s.frames_recorded,
            "recording_stopped": s.recording_stopped,
            "viewers": len(self.viewers),
            "view_codec": enc.codec,
            "view_frames_encoded": enc.frames_encoded,
            "view_encode_ms": round(enc.encode_ms, 2),
            "forward": self.view.receiver.forward_state(s.id),
            "age_ms": round((time.time() - self.decoded_at) * 1000) if self.decoded_at else None,
            "seconds": round(time.time() - s.created, 1),
        }

    async def close(self) -> None:
        for vid in list(self.viewers):
            pc, track = self.drop_viewer(vid)
            track.stop()
            try:
                await asyncio.wait_for(pc.close(), 2.0)
            except Exception:
                pass


class LiveView:
    """Adds the viewing routes to a Receiver's aiohttp app.

    `receiver` is the endpoint (endpoint.Receiver): its streams, access, settings, ICE servers,
    the per-stream fanout and forward state; this module does not import it.
    """

    def __init__(self, receiver) -> None:
        self.receiver = receiver
        self.views: dict[str, StreamView] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rejected = 0

    # -- hooks from the receiver ---------------------------------------------------------------

    def _view(self, stream) -> StreamView:
        v = self.views.get(stream.id)
        if v is None:  # the decoder thread and the loop may race here: setdefault keeps one
            v = self.views.setdefault(stream.id, StreamView(self, stream, self.receiver.fanout(stream)))
        return v

    def on_frame(self, stream, frame, t_released: float) -> None:
        """Decoder thread of `stream`: a decoded picture."""
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
        app.router.add_route("OPTIONS", "/whep/{sid}/{vid}", self.handle_options)
        app.router.add_delete("/whep/{sid}/{vid}", self.handle_delete)
        app.router.add_patch("/whep/{sid}/{vid}", self.handle_patch)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_startup(self, app) -> None:
        self.loop = asyncio.get_running_loop()

    async def _on_shutdown(self, app) -> None:
        for sid in list(self.views):
            await self.stream_ended(sid)

    def _check(self, request, allow_query: bool) -> int:
        """0 when the request may view; else the refusal status."""
        _, status = self.receiver.access.check(request, VIEW, allow_query)
        return status

    def _refuse(self, request, status: int):
        self.rejected += 1
        log.warning(
            "live view: refused %s %s from %s (%s)",
            request.method,
            request.path,
            request.remote,
            "token of another scope" if status == 403 else "bad or missing token",
        )
        return self._cors(request, refusal(status))

    def _cors(self, request, response):
        """CORS headers on WHEP answers, so browser players on other origins can use them."""
        allowed = self.receiver.cors_origins
        origin = request.headers.get("Origin")
        if origin and ("*" in allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            if "*" not in allowed:
                response.headers["Vary"] = "Origin"
            response.headers.update(CORS_HEADERS)
        return response

    def _token_query(self, request) -> str:
        from urllib.parse import quote

        t = request.query.get("token")
        return f"?token={quote(t)}" if t and not self.receiver.access.open else ""

    async def handle_index(self, request):
        from html import escape

        from aiohttp import web

        status = self._check(request, True)
        if status:
            return self._refuse(request, status)
        q = self._token_query(request)
        rows = []
        for sid, s in sorted(self.receiver.streams.items()):
            seq = s.info.sequence_header if s.info is not None else None
            desc = f"{seq.width}x{seq.height} {seq.fps:.3g} fps, {s.tiers} tiers" if seq else "starting"
            rows.append(
                f'<li><a href="/view/{escape(sid)}{escape(q)}">{escape(sid)}</a> – {escape(desc)}, '
                f"{s.frames_decoded} frames decoded</li>"
            )
        body = "\n".join(rows) or "<li>no stream right now</li>"
        html = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>snisd streams</title>"
            f"<meta http-equiv='refresh' content='5'></head><body style='font-family:sans-serif'>"
            f"<h1>snisd: live streams</h1><ul>{body}</ul></body></html>"
        )
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def handle_page(self, request):
        from aiohttp import web

        status = self._check(request, True)
        if status:
            return self._refuse(request, status)
        sid = request.match_info["sid"]
        if sid not in self.receiver.streams:
            return web.Response(status=404, text="no such stream\n")
        html = HTML.read_text(encoding="utf-8").replace("{{STREAM_ID}}", json.dumps(sid))
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    async def handle_stream_stats(self, request):
        from aiohttp import web

        status = self._check(request, True)
        if status:
            return self._refuse(request, status)
        stream = self.receiver.streams.get(request.match_info["sid"])
        if stream is None:
            return web.json_response({"error": "no such stream"}, status=404)
        return web.json_response(self._view(stream).stats(), headers={"Cache-Control": "no-store"})

    async def handle_options(self, request):
        from aiohttp import web

        return self._cors(
            request,
            web.Response(status=204, headers={"Allow": "OPTIONS, POST, DELETE", "Accept-Post": "application/sdp"}),
        )

    async def handle_whep(self, request):
        return self._cors(request, await self._whep(request))

    async def _whep(self, request):
        from aiohttp import web
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        from .ice import rtc_configuration

        status = self._check(request, False)
        if status:
            return self._refuse(request, status)
        sid = request.match_info["sid"]
        stream = self.receiver.streams.get(sid)
        if stream is None:
            return web.Response(status=404, text="no such stream\n")
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="the offer must be application/sdp\n")
        if not self.receiver.settings.decode:
            return web.Response(status=409, text="the receiver runs with --no-decode: nothing to show\n")
        view = self._view(stream)
        if len(view.viewers) >= MAX_VIEWERS:
            return web.Response(status=503, text="too many viewers\n", headers={"Retry-After": "5"})
        offer = await request.text()
        vid = secrets.token_hex(6)
        track = new_track()
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
            mime = MIME_TYPES[view.fanout.codec]
            codecs = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in (mime, "video/rtx")
                and (mime != "video/h264" or c.parameters.get("packetization-mode") == "1")
            ]
            video[0].setCodecPreferences(codecs)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            track.stop()
            await pc.close()
            return web.Response(status=400, text=f"cannot use this offer: {exc}\n")
        view.add_viewer(vid, pc, track)
        log.info("stream %s: viewer %s from %s (%d watching)", sid, vid, request.remote, len(view.viewers))
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whep/{sid}/{vid}"},
        )

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

        status = self._check(request, False)
        if status:
            return self._refuse(request, status)
        sid, vid = request.match_info["sid"], request.match_info["vid"]
        view = self.views.get(sid)
        if view is None or vid not in view.viewers:
            return self._cors(request, web.Response(status=404, text="no such viewer\n"))
        await self._end_viewer(sid, vid, "viewer sent DELETE")
        return self._cors(request, web.Response(status=200))

    async def handle_patch(self, request):
        from aiohttp import web

        return web.Response(status=405, headers={"Allow": "DELETE"})
