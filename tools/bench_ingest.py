#!/usr/bin/env python3
"""Receiver ingest under load: N publishers and M live viewers on one `snisd receive`.

The receiver runs as its own process (decoding, recording off); the publishers are WhipSenders in
this process replaying 2 s of pre-encoded frames of the synthetic camera at --fps (from the
keyframe again when they run out or the receiver asks for one), so the benchmark loads the
receiver, not the encoder; the viewers are aiortc WHEP clients in this process, spread over the streams, that
receive and decode the live view's VP8. Everything runs on this machine over loopback, so the
publishers and viewers share its cores with the receiver. Reported:

* frames due (publishers x fps x duration), sent (the replay and the senders keep up or not),
  released and decoded by the receiver, all streams together; dropped = sent - decoded (never
  completed, or skipped by a decoder that fell behind);
* the receiver process's CPU (user+system seconds per second of streaming; 1.0 = one core) and
  peak RSS (sampled every 0.5 s);
* frames each viewer received.

    python tools/bench_ingest.py --size 1280x720 --fps 30 --publishers 4 --viewers 8 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "bench-ingest-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get_json(url: str):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Viewers:
    """WHEP viewers on their own event loop thread; counts the pictures each one decodes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.frames: list[int] = []
        self.pcs: list = []
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def add(self, base: str, sid: str) -> None:
        asyncio.run_coroutine_threadsafe(self._add(base, sid), self.loop).result(30)

    async def _add(self, base: str, sid: str) -> None:
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError

        idx = len(self.frames)
        self.frames.append(0)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track) -> None:
            async def consume() -> None:
                try:
                    while True:
                        await track.recv()
                        self.frames[idx] += 1
                except MediaStreamError:
                    return

            asyncio.ensure_future(consume())

        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/whep/{sid}",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"},
            ) as r:
                if r.status != 201:
                    raise RuntimeError(f"WHEP {r.status}: {await r.text()}")
                answer = await r.text()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def close(self) -> None:
        async def close_all() -> None:
            for pc in self.pcs:
                await pc.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(30)


def run(size: str, fps: float, publishers: int, viewers: int, duration: float, tiers: int, qp: int) -> dict:
    from snisd.capture.synthetic import SyntheticScene
    from snisd.codec.bitstream import EncodedFrame
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.transport.ice import restrict_host_addresses
    from snisd.transport.sender import WhipSender

    w, h = (int(v) for v in size.split("x"))
    enc = Encoder(EncoderConfig(w, h, int(fps * 1000), 1000, tiers=tiers, qp=qp, keyframe_interval=1000))
    scene = SyntheticScene(w, h, fps)
    # a valid stream to replay: a keyframe and 2 s of P-frames, restarted at the keyframe (frame
    # numbers as coded) when it ends or when the receiver asks for one
    coded = [enc.encode(scene.render(n)) for n in range(int(2 * fps))]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rx = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snisd",
            "receive",
            "--listen",
            f"127.0.0.1:{port}",
            "--token",
            TOKEN,
            "--ice-address",
            "127.0.0.1",
            "--stats-interval",
            "60",
            "--log-level",
            os.environ.get("BENCH_RX_LEVEL", "warning"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(os.environ.get("BENCH_RX_LOG", os.devnull), "w"),
        text=True,
    )
    summaries: list[dict] = []
    try:
        assert rx.stdout is not None
        if "WHIP endpoint" not in rx.stdout.readline():
            raise RuntimeError("receiver did not start")
        reader = threading.Thread(
            target=lambda: summaries.extend(json.loads(x) for x in rx.stdout if x.startswith("{")), daemon=True
        )
        reader.start()
        restrict_host_addresses(["127.0.0.1"])
        want = [[True] for _ in range(publishers)]
        pos = [0] * publishers
        senders = [
            WhipSender(
                f"{base}/whip",
                enc.sequence_header,
                token=TOKEN,
                request_keyframe=lambda k=k: want[k].__setitem__(0, True),
            ).start()
            for k in range(publishers)
        ]
        deadline = time.monotonic() + 30
        while any(s.state != "connected" for s in senders) and time.monotonic() < deadline:
            time.sleep(0.05)

        def write(i: int) -> None:
            for k, s in enumerate(senders):
                if want[k][0]:
                    want[k][0], pos[k] = False, 0
                src = coded[pos[k]]
                pos[k] = (pos[k] + 1) % len(coded)
                key = src.keyframe
                s.write(EncodedFrame(i, int(i * 1e6 / fps), key, src.switch_point, src.tiers))

        # the streams exist once their first frames are in; then the viewers join
        for i in range(int(fps)):
            write(i)
            time.sleep(1 / fps)
        sids = sorted(get_json(f"{base}/stats"))
        view = Viewers()
        for v in range(viewers):
            view.add(base, sids[v % len(sids)])
        cpu0, t0 = proc_cpu_s(rx.pid), time.monotonic()
        rss = 0.0
        n = int(duration * fps)
        for i in range(int(fps), int(fps) + n):
            time.sleep(max(0.0, t0 + (i - int(fps)) / fps - time.monotonic()))
            write(i)
            if i % max(1, int(fps / 2)) == 0:
                rss = max(rss, proc_rss_mb(rx.pid))
        time.sleep(1.0)
        cpu = (proc_cpu_s(rx.pid) - cpu0) / (time.monotonic() - t0)
        live = get_json(f"{base}/stats")
        view_frames = list(view.frames)
        view.close()
        for s in senders:
            s.close()
        sent = [s.stats()["frames_sent"] for s in senders]
        time.sleep(1.0)
    finally:
        rx.terminate()
        rx.wait(60)
    reader.join(10)
    released = sum(x["released"] for x in summaries)
    decoded = sum(x["decoded"] for x in summaries)
    return {
        "size": size,
        "fps": fps,
        "tiers": tiers,
        "publishers": publishers,
        "viewers": viewers,
        "duration_s": duration,
        "kbytes_per_frame": round(sum(c.size for c in coded) / len(coded) / 1000, 2),
        "receiver_cpu_cores": round(cpu, 2),
        "receiver_peak_rss_mb": round(rss, 1),
        "frames_due": publishers * (n + int(fps)),
        "frames_sent": sum(sent),
        "frames_released": released,
        "frames_decoded": decoded,
        "frames_dropped": sum(sent) - decoded,
        "decode_skipped": sum(x["decode_skipped"] for x in summaries),
        "keyframe_requests": sum(x["keyframe_requests"] for x in summaries),
        "decoded_per_stream": [x["decoded"] for x in summaries],
        "viewer_frames": view_frames,
        "live_streams_at_end": len(live),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--viewers", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--qp", type=int, default=28)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args.size, args.fps, args.publishers, args.viewers, args.duration, args.tiers, args.qp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
