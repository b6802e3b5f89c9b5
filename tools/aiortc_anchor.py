#!/usr/bin/env python3
"""aiortc's own video senders as anchors for tools/bench_link_quality.py.

    aiortc_anchor.py receive --listen HOST:PORT --ice-address ADDR --out DIR
    aiortc_anchor.py send --clip FILE --peer http://HOST:PORT/offer --codec vp8|h264 --ice-address ADDR --log F

`send` plays the clip with aiortc's MediaPlayer (paced at the clip's frame rate) into an
RTCPeerConnection whose only video codec is VP8 or H.264 (plus RTX), so aiortc's encoder, its
REMB-driven bitrate and its packetisation are what is measured. A pass-through track between
the player and the peer connection logs every frame it hands on: its index in the clip (the
player decodes every frame in order), its pts and the sender-clock time (the capture time).
A data channel answers the receiver's clock pings (snisd/transport/clocksync.py).

`receive` answers one offer (POST of {"sdp", "type"} JSON, the answer in the reply), takes the
video track and writes every decoded picture as I420 to DIR/shown.yuv with one JSON line in
DIR/shown.jsonl (the RTP timestamp relative to the first one, 90 kHz, as aiortc hands it on,
and the receiver-clock time it was shown); it pings the sender every second and logs the
samples to DIR/clock.jsonl. Both sides use time.monotonic() in ms as their clock.

Pictures are not marked: which source frame a picture shows follows from its relative RTP
timestamp (the sender's pts at 90 kHz) and the source index of the first picture received, found
by comparing pictures (linkscore.match_start); nothing is drawn into the video.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def now_ms() -> float:
    return time.monotonic() * 1000.0


async def _send(args: argparse.Namespace) -> int:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    from snisd.transport.clocksync import pong
    from snisd.transport.ice import restrict_host_addresses

    restrict_host_addresses([args.ice_address])
    player = MediaPlayer(args.clip)
    if player.video is None:
        print(f"aiortc_anchor: {args.clip} has no video", file=sys.stderr)
        return 2
    log = open(args.log, "w", buffering=1)
    ended = asyncio.Event()

    class Tap(MediaStreamTrack):
        """The player's frames, passed on unchanged and logged when handed to the encoder, released
        like a camera's: when the encoder asks late, frames more than one frame interval past
        their time are skipped while a newer one is waiting (MediaPlayer alone would queue every
        frame of a file for a slow encoder, and the delay would grow without bound; snisd's file
        camera skips the same way)."""

        kind = "video"

        def __init__(self, src: MediaStreamTrack) -> None:
            super().__init__()
            self.src = src
            self.count = 0
            self.skipped = 0
            self.t0: float | None = None  # sender clock of pts 0

        async def recv(self):
            while True:
                try:
                    frame = await self.src.recv()
                except MediaStreamError:
                    ended.set()
                    raise
                t = now_ms()
                tb = frame.time_base or fractions.Fraction(1, 90000)
                pts_ms = float(frame.pts * tb) * 1000.0
                if self.t0 is None:
                    self.t0 = t - pts_ms
                queue = getattr(self.src, "_queue", None)
                waiting = queue.qsize() if queue is not None else 0
                if t - (self.t0 + pts_ms) > 1000.0 / args.fps and waiting > 0:
                    self.skipped += 1
                    continue
                break
            log.write(
                json.dumps(
                    {
                        "i": self.count,
                        "pts_90k": int(round(frame.pts * tb * 90000)),
                        "t_ms": round(t, 3),
                        "w": frame.width,
                        "h": frame.height,
                        "skipped": self.skipped,
                    }
                )
                + "\n"
            )
            self.count += 1
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN: host candidates only
    tap = Tap(player.video)
    tr = pc.addTransceiver(tap, direction="sendonly")
    want = "video/" + {"vp8": "VP8", "h264": "H264"}[args.codec]
    codecs = RTCRtpSender.getCapabilities("video").codecs
    tr.setCodecPreferences([c for c in codecs if c.mimeType == want] + [c for c in codecs if c.mimeType == "video/rtx"])
    ctl = pc.createDataChannel("clock")

    @ctl.on("message")
    def _ping(message) -> None:
        t1 = now_ms()
        try:
            msg = json.loads(message)
        except (TypeError, ValueError):
            return
        if isinstance(msg, dict) and msg.get("type") == "ping":
            answer = pong(msg, t1, now_ms())
            if answer is not None:
                ctl.send(json.dumps(answer))

    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    async def _state() -> None:
        if pc.connectionState == "connected":
            connected.set()
        elif pc.connectionState in ("failed", "closed"):
            ended.set()

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(
            args.peer,
            json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
            timeout=aiohttp.ClientTimeout(total=15),
        ) as r:
            if r.status != 200:
                print(f"aiortc_anchor: offer refused: {r.status} {await r.text()}", file=sys.stderr)
                return 1
            ans = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
    try:
        await asyncio.wait_for(connected.wait(), 20)
    except asyncio.TimeoutError:
        print("aiortc_anchor: no connection within 20 s", file=sys.stderr)
        return 1
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, ended)]
    await asyncio.wait(waits, timeout=args.duration or None, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    print(json.dumps({"frames": tap.count, "skipped": tap.skipped, "codec": args.codec}), flush=True)
    await pc.close()
    log.close()
    return 0


async def _receive(args: argparse.Namespace) -> int:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from snisd.transport.clocksync import ClockSync
    from snisd.transport.ice import restrict_host_addresses

    restrict_host_addresses([args.ice_address])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pics = open(out / "shown.yuv", "wb")
    shown = open(out / "shown.jsonl", "w", buffering=1)
    clock_log = open(out / "clock.jsonl", "w", buffering=1)
    pcs: list = []
    tasks: list[asyncio.Task] = []
    stats: dict = {"pictures": 0}

    async def consume(track) -> None:
        k = 0
        offset = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            t = now_ms()
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            data = frame.to_ndarray().tobytes()  # I420, planes one after the other
            pics.write(data)
            shown.write(
                json.dumps(
                    {
                        "k": k,
                        "rel_90k": int(frame.pts),
                        "t_shown_ms": round(t, 3),
                        "w": frame.width,
                        "h": frame.height,
                        "offset": offset,
                    }
                )
                + "\n"
            )
            offset += len(data)
            k += 1
            stats["pictures"] = k

    async def pinger(channel, sync: ClockSync) -> None:
        while channel.readyState in ("connecting", "open"):
            if channel.readyState == "open":
                channel.send(json.dumps(sync.ping(now_ms())))
            await asyncio.sleep(1.0)

    async def offer(request: web.Request) -> web.Response:
        params = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        sync = ClockSync()

        @pc.on("track")
        def _track(track) -> None:
            if track.kind == "video":
                tasks.append(asyncio.ensure_future(consume(track)))

        @pc.on("datachannel")
        def _channel(channel) -> None:
            @channel.on("message")
            def _pong(message) -> None:
                t3 = now_ms()
                try:
                    msg = json.loads(message)
                except (TypeError, ValueError):
                    return
                s = sync.on_pong(msg, t3) if isinstance(msg, dict) else None
                if s is not None:
                    clock_log.write(json.dumps({"offset_ms": s.offset_ms, "rtt_ms": s.rtt_ms, "at_ms": s.at_ms}) + "\n")

            tasks.append(asyncio.ensure_future(pinger(channel, sync)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=params["sdp"], type=params["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    app = web.Application()
    app.router.add_post("/offer", offer)
    runner = web.AppRunner(app)
    await runner.setup()
    host, port = args.listen.rsplit(":", 1)
    await web.TCPSite(runner, host, int(port)).start()
    print(f"READY {args.listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for pc in pcs:
        await pc.close()
    for t in tasks:
        t.cancel()
    await runner.cleanup()
    pics.close()
    shown.close()
    clock_log.close()
    print(json.dumps(stats), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--clip", required=True)
    s.add_argument("--peer", required=True)
    s.add_argument("--codec", choices=("vp8", "h264"), required=True)
    s.add_argument("--ice-address", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--fps", type=float, required=True, help="the clip's frame rate (for the camera-like release)")
    s.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds connected (0: never)")
    r = sub.add_parser("receive")
    r.add_argument("--listen", required=True)
    r.add_argument("--ice-address", required=True)
    r.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_send(args) if args.cmd == "send" else _receive(args))


if __name__ == "__main__":
    sys.exit(main())
