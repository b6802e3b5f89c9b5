"""Forwarding: re-publish a decoded stream to another WHIP server (a media server that fans out).

The board sends SNIS once over its poor link; the receiver decodes it and hands it on as
standard WebRTC video (H.264 or VP8) to a media server - MediaMTX, LiveKit, Janus, Cloudflare -
that serves the many viewers. Per publisher (receiver config, ``publishers.<name>.forward``) a
WHIP URL, a token and a codec. The video is the stream's shared re-encoding (fanout.py): encoded
once, for the forward target and the live view alike. When the media server goes away the
forwarder reconnects with exponential backoff; its state is in the stream's stats and metrics.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from ..reencode import MIME_TYPES
from .errors import TransportError
from .ice import rtc_configuration
from .whip import WhipClient

log = logging.getLogger("snisd.transport.forward")


@dataclass(frozen=True)
class ForwardTarget:
    url: str
    token: str | None = None
    codec: str = "h264"  # h264 (widest support) or vp8
    ca_file: str | None = None  # extra CA certificates for an https:// URL


class Forwarder:
    """Keeps one stream published to its forward target until closed."""

    def __init__(
        self,
        sid: str,
        target: ForwardTarget,
        fanout,
        *,
        ice_servers: list | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 15.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.sid = sid
        self.target = target
        self.fanout = fanout
        self.ice_servers = ice_servers or []
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.client = WhipClient(target.url, target.token, timeout=connect_timeout, ca_file=target.ca_file)
        self.status = "new"
        self.sessions = 0
        self.failures = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.packets = 0
        self._task: asyncio.Task | None = None
        self._closing = False
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def state(self) -> dict[str, Any]:
        return {
            "url": self.target.url,
            "codec": self.target.codec,
            "state": self.status,
            "sessions": self.sessions,
            "failures": self.failures,
            "last_error": self.last_error,
            "connected_s": round(time.time() - self.connected_since, 1) if self.connected_since else None,
        }

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                self.status = "connecting"
                await self._session()
                attempt = 0  # it was up: start the backoff over
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - signalling, ICE or the server: all mean retry
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TransportError) else str(exc)
                log.log(
                    logging.WARNING if attempt == 0 else logging.DEBUG,
                    "stream %s: forward to %s: %s",
                    self.sid,
                    self.target.url,
                    self.last_error,
                )
            self.connected_since = None
            if self._closing:
                break
            delay = min(self.backoff_max, self.backoff_initial * 2**attempt) * random.uniform(0.8, 1.2)
            attempt += 1
            self.status = "waiting"
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self.status = "closed"

    async def _session(self) -> None:
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        from .fanout import new_track

        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        track = new_track()
        resource = None
        ended = asyncio.Event()

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        pc.on("connectionstatechange", on_state)
        try:
            tr = pc.addTransceiver(track, direction="sendonly")
            mime = MIME_TYPES[self.target.codec]
            tr.setCodecPreferences(
                [
                    c
                    for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() == mime
                    and (mime != "video/h264" or c.parameters.get("packetization-mode") == "1")
                ]
            )
            await pc.setLocalDescription(await pc.createOffer())
            answer, resource = await self.client.publish(pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            deadline = time.monotonic() + self.connect_timeout
            while pc.connectionState != "connected":
                if ended.is_set() or time.monotonic() > deadline or self._closing:
                    raise TransportError(f"forward to {self.target.url}: connection {pc.connectionState}")
                await asyncio.sleep(0.05)
            self.sessions += 1
            self.status = "connected"
            self.last_error = None
            self.connected_since = time.time()
            log.info("stream %s: forwarding to %s as %s", self.sid, self.target.url, self.target.codec)
            self.fanout.subscribe(track)
            while not (ended.is_set() or self._closing):
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
            if not self._closing:
                raise TransportError(f"forward to {self.target.url}: connection {pc.connectionState}")
        finally:
            self.fanout.unsubscribe(track)
            track.stop()
            if resource:
                await self.client.delete(resource, timeout=1.0)
            try:
                await asyncio.wait_for(pc.close(), 2.0)
            except Exception:  # noqa: BLE001
                pass

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        self.status = "closed"
