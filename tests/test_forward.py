"""Forwarding: `snisd receive` re-publishes a decoded stream to another WHIP server.

The other server is written here (aiohttp + aiortc, nothing from the project's receiver): it
accepts a WHIP offer, decodes the video it gets, and keeps the pictures. They must be the
stream the board sent - the synthetic camera's pictures, matched by normalised correlation -
in the codec configured, and the forwarder must come back after the server went away.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

from test_transport import ReceiverProc, free_port, run_sender  # noqa: E402

PUB = "publisher-token-cam1-0123456789"
VIEWER = "viewer-token-alice-0123456789"
FWD_TOKEN = "media-server-token"


class MediaServer:
    """A minimal WHIP ingest on its own thread: one publisher at a time, pictures decoded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pictures: list[np.ndarray] = []
        self.codecs: list[str] = []
        self.sessions = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._pcs: set = set()
        self._runner = None
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def _call(self, coro, timeout: float = 20.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> MediaServer:
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())

    async def _start(self) -> None:
        from aiohttp import web

        from snisd.transport.ice import restrict_host_addresses

        restrict_host_addresses(["127.0.0.1"])  # aioice leaves loopback out of host candidates
        app = web.Application()
        app.router.add_post("/live/whip", self._post)
        app.router.add_delete("/live/whip/{n}", self._delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        for pc in list(self._pcs):
            await pc.close()
        self._pcs.clear()
        await self._runner.cleanup()

    async def _post(self, request):
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import MediaStreamError

        if request.headers.get("Authorization") != f"Bearer {FWD_TOKEN}":
            self.refused += 1
            return web.Response(status=401)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pcs.add(pc)

        @pc.on("track")
        def on_track(track) -> None:
            async def consume() -> None:
                try:
                    while True:
                        frame = await track.recv()
                        self.pictures.append(frame.to_ndarray(format="gray").astype(np.float64))
                except MediaStreamError:
                    return

            asyncio.ensure_future(consume())

        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        self.codecs.extend(
            line.split()[1].split("/")[0]
            for line in answer.splitlines()
            if line.startswith("a=rtpmap:") and "rtx" not in line.lower()
        )
        self.sessions += 1
        return web.Response(
            status=201, text=answer, content_type="application/sdp", headers={"Location": f"/live/whip/{self.sessions}"}
        )

    async def _delete(self, request):
        from aiohttp import web

        return web.Response(status=200)


def stream_stats(base: str) -> dict:
    req = urllib.request.Request(f"{base}/stats", headers={"Authorization": f"Bearer {VIEWER}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def matches_the_camera(pictures: list[np.ndarray], n: int = 8) -> list[float]:
    """Best normalised correlation of a few received pictures with the synthetic camera's frames."""
    from snisd.capture.synthetic import SyntheticScene

    scene = SyntheticScene(256, 144, 10.0)
    refs = [scene.render(k).y.astype(np.float64).ravel() for k in range(300)]
    picks = pictures[len(pictures) // 4 :: max(1, len(pictures) // (2 * n))][:n]
    return [max(np.corrcoef(p.ravel(), r)[0, 1] for r in refs) for p in picks]


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_forward_to_a_whip_server_and_reconnect(tmp_path, codec):
    mport = free_port()
    media = MediaServer(mport).start()
    config = tmp_path / "receiver.yaml"
    config.write_text(f"""
publishers:
  cam1:
    token: "{PUB}"
    forward: {{url: "http://127.0.0.1:{mport}/live/whip", token: "{FWD_TOKEN}", codec: {codec}}}
viewers:
  alice: {{token: "{VIEWER}"}}
""")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--config", str(config))
    proc, _ = run_sender(tmp_path, f"{base}/whip", 24.0, "--token", PUB, background=True)
    try:
        deadline = time.monotonic() + 60
        while len(media.pictures) < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        first = len(media.pictures)
        assert first >= 30, (first, rx.stderr_path.read_text()[-3000:])
        (st,) = stream_stats(base).values()
        assert st["forward"]["state"] == "connected" and st["forward"]["codec"] == codec, st["forward"]
        # the media server goes away ...
        media.stop()
        deadline = time.monotonic() + 20
        while stream_stats(base) and next(iter(stream_stats(base).values()))["forward"]["state"] == "connected":
            assert time.monotonic() < deadline, "the forwarder did not notice the server going away"
            time.sleep(0.2)
        time.sleep(1.0)
        # ... and comes back: the forwarder reconnects by itself
        before = len(media.pictures)
        media.start()
        deadline = time.monotonic() + 30
        while len(media.pictures) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(media.pictures) >= before + 20, rx.stderr_path.read_text()[-3000:]
        (st,) = stream_stats(base).values()
        assert st["forward"]["sessions"] == 2 and st["forward"]["failures"] >= 1, st["forward"]
        req = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {VIEWER}"})
        metrics = urllib.request.urlopen(req, timeout=5).read().decode()
        connected = [
            ln
            for ln in metrics.splitlines()
            if ln.startswith("snisd_receiver_forward_state{") and 'state="connected"' in ln and 'stream="' in ln
        ]
        assert connected and float(connected[0].rsplit(" ", 1)[1]) == 1, metrics
    finally:
        proc.kill()
        proc.wait(10)
        rx.stop()
        try:
            media.stop()
        except Exception:
            pass
    assert media.sessions == 2 and media.refused == 0
    assert set(media.codecs) == {"H264" if codec == "h264" else "VP8"}, media.codecs
    assert media.pictures[0].shape == (144, 256)
    corr = matches_the_camera(media.pictures)
    assert min(corr) > 0.8, corr
