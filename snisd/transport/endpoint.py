"""The receiver's HTTP endpoint: WHIP for publishers, stats and metrics, and the live view's routes.

Every publisher POSTs an SDP offer to ``/whip`` and gets its own resource ``/whip/<id>``; any
number of publishers (up to ``max_streams``) may stream at once, each a `Stream` (stream.py).
Publishing needs a token of the ``publish`` scope, stats and metrics one of the ``view`` scope
(auth.py). A publisher whose config names a forward target gets a `Forwarder` (forward.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sys
import time
from typing import Any

from .auth import PUBLISH, VIEW, Access, refusal
from .fanout import Fanout
from .forward import Forwarder, ForwardTarget
from .framelog import FrameLog
from .ice import rtc_configuration
from .stream import Stream, StreamSettings

log = logging.getLogger("snisd.transport.receiver")


class Receiver:
    """The WHIP endpoint application (aiohttp), holding every live stream."""

    def __init__(
        self,
        *,
        access: Access | None = None,
        settings: StreamSettings | None = None,
        ice_servers: list | None = None,
        frame_log: str | None = None,
        stats_interval: float = 5.0,
        max_streams: int = 16,
        summary_out=None,
        cors_origins: tuple[str, ...] = ("*",),
        forwards: dict[str, ForwardTarget] | None = None,
    ) -> None:
        self.access = access or Access()
        self.settings = settings or StreamSettings()
        self.ice_servers = ice_servers or []
        self.frame_log = FrameLog(frame_log) if frame_log else None
        self.stats_interval = stats_interval
        self.max_streams = max_streams
        self.summary_out = summary_out if summary_out is not None else sys.stdout
        self.cors_origins = tuple(cors_origins)
        self.forwards = dict(forwards or {})
        self.streams: dict[str, Stream] = {}
        self.fanouts: dict[str, Fanout] = {}
        self.forwarders: dict[str, Forwarder] = {}
        self.rejected = 0
        self.started = time.time()
        self.liveview = None  # liveview.LiveView once app() has run

    # -- per-stream parts ----------------------------------------------------------------------

    def fanout(self, stream: Stream) -> Fanout:
        """The stream's one re-encoder (VP8, or the forward target's codec), made on first use."""
        f = self.fanouts.get(stream.id)
        if f is None:
            target = self.forwards.get(stream.publisher)
            fps = stream.info.sequence_header.fps if stream.info is not None else 25.0
            f = self.fanouts.setdefault(stream.id, Fanout(stream.loop, fps, target.codec if target else "vp8"))
        return f

    def forward_state(self, sid: str) -> dict[str, Any] | None:
        fw = self.forwarders.get(sid)
        return fw.state() if fw is not None else None

    def _on_decoded(self, stream: Stream, frame, t_released: float) -> None:
        """Decoder thread: hand the picture to the re-encoder (it keeps the latest) and the view."""
        fan = self.fanout(stream)
        if stream.info is not None:
            fan.encoder.fps = stream.info.sequence_header.fps  # made before the init segment: 25 until now
        fan.put(frame)
        if self.liveview is not None:
            self.liveview.on_frame(stream, frame, t_released)

    def _on_idle(self, stream: Stream, reason: str) -> None:
        asyncio.ensure_future(self.end_stream(stream.id, reason))

    # -- HTTP ----------------------------------------------------------------------------------

    def _refuse(self, request, status: int, what: str):
        self.rejected += 1
        log.warning(
            "rejected %s from %s: %s",
            what,
            request.remote,
            "token of another scope" if status == 403 else "bad or missing token",
        )
        return refusal(status)

    def app(self):
        from aiohttp import web

        from .liveview import LiveView

        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/whip", self.handle_post)
        app.router.add_route("OPTIONS", "/whip", self.handle_options)
        app.router.add_delete("/whip/{sid}", self.handle_delete)
        app.router.add_patch("/whip/{sid}", self.handle_patch)
        app.router.add_get("/stats", self.handle_stats)
        app.router.add_get("/metrics", self.handle_metrics)
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

        grant, status = self.access.check(request, PUBLISH)
        if grant is None:
            return self._refuse(request, status, "a publisher")
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="the offer must be application/sdp\n")
        if len(self.streams) >= self.max_streams:
            return web.Response(status=503, text="too many streams\n", headers={"Retry-After": "5"})
        offer = await request.text()
        sid = secrets.token_hex(8)
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        stream = Stream(
            sid,
            pc,
            self.settings,
            publisher=grant.name,
            frame_log=self.frame_log,
            on_decoded=self._on_decoded,
            on_idle=self._on_idle,
        )
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
        log.info("stream %s: publisher %s connected from %s", sid, grant.name or "(open)", request.remote)
        target = self.forwards.get(grant.name)
        if target is not None and not self.settings.decode:
            log.warning("stream %s: not forwarded to %s: the receiver runs with --no-decode", sid, target.url)
        elif target is not None:
            fw = Forwarder(sid, target, self.fanout(stream), ice_servers=self.ice_servers)
            self.forwarders[sid] = fw
            fw.start()
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whip/{sid}"},
        )

    async def handle_delete(self, request):
        from aiohttp import web

        grant, status = self.access.check(request, PUBLISH)
        if grant is None:
            return self._refuse(request, status, "a DELETE")
        sid = request.match_info["sid"]
        stream = self.streams.get(sid)
        if stream is None or (grant.name and stream.publisher != grant.name):
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

        grant, status = self.access.check(request, VIEW)
        if grant is None:
            return self._refuse(request, status, "a stats request")
        out = {}
        for sid, s in self.streams.items():
            out[sid] = s.summary()
            out[sid]["forward"] = self.forward_state(sid)
        return web.json_response(out)

    async def handle_metrics(self, request):
        from aiohttp import web

        from .metrics import receiver_metrics

        grant, status = self.access.check(request, VIEW)
        if grant is None:
            return self._refuse(request, status, "a metrics request")
        return web.Response(
            text=receiver_metrics(self), content_type="text/plain", headers={"Cache-Control": "no-store"}
        )

    # -- lifetime ------------------------------------------------------------------------------

    async def end_stream(self, sid: str, reason: str, quiet: bool = False) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        fw = self.forwarders.pop(sid, None)
        forward = fw.state() if fw is not None else None
        if fw is not None:
            await fw.close()
        if self.liveview is not None:
            await self.liveview.stream_ended(sid)
        fan = self.fanouts.pop(sid, None)
        if fan is not None:
            fan.close()
        await stream.close()
        if not quiet:
            log.info("stream %s ended: %s", sid, reason)
            summary = stream.summary()
            summary["reason"] = reason
            summary["forward"] = forward
            print(json.dumps(summary), file=self.summary_out, flush=True)

    async def stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval)
            for s in list(self.streams.values()):
                r = s.report()
                lat = s.latency_stats()
                log.info(
                    "stream %s: released %d decoded %d frames/tier %s kB/tier %s tiers %s delay trend %.1f ms/s"
                    " e2e p50 %s ms%s",
                    s.id,
                    r["released"],
                    r["decoded"],
                    r["frames"],
                    [b // 1000 for b in r["bytes"]],
                    dict(s.tier_histogram),
                    r["delay_trend_ms_per_s"],
                    lat["e2e_latency_p50_ms"],
                    f" recording stopped: {s.recording_stopped}" if s.recording_stopped else "",
                )

    async def _on_shutdown(self, app) -> None:
        for sid in list(self.streams):
            await self.end_stream(sid, "receiver shutting down")

    def close(self) -> None:
        if self.frame_log is not None:
            self.frame_log.close()
