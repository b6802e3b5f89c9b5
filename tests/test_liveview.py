"""Live view of `snisd receive`: pages, stats and WHEP playback of a real stream over loopback.

A receiver and a publisher run as processes (helpers of test_transport.py); viewers are an aiortc
WHEP client (several at once: the stream is encoded once and fanned out) and, when Chromium is
installed, headless Chromium loading the view page.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

from test_transport import ReceiverProc, free_port, run_sender  # noqa: E402

TOKEN = "view-token"


def http(
    url: str, method: str = "GET", token: str | None = None, body: bytes | None = None, ctype: str | None = None
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_stream(base: str, token: str | None, timeout: float = 60.0) -> str:
    t_end = time.time() + timeout
    while time.time() < t_end:
        status, _, body = http(f"{base}/stats", token=token)
        assert status == 200
        streams = json.loads(body)
        for sid, s in streams.items():
            if s["decoded"] > 0:
                return sid
        time.sleep(0.3)
    raise AssertionError("no stream decoded in time")


@pytest.fixture
def live(tmp_path):
    """A receiver with a token and a publisher streaming the synthetic camera for a while."""
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--token", TOKEN)
    base = f"http://127.0.0.1:{port}"
    tx, _ = run_sender(tmp_path, f"{base}/whip", 40.0, "--token", TOKEN, background=True)
    try:
        sid = wait_stream(base, TOKEN)
        yield base, sid, rx
    finally:
        tx.terminate()
        try:
            tx.wait(20)
        except subprocess.TimeoutExpired:
            tx.kill()
        rx.stop()


async def whep_watch(base: str, sid: str, token: str | None, nframes: int) -> tuple[list, int]:
    """Play /whep/<sid> with aiortc; returns the decoded frames and the DELETE status."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    frames: list = []

    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            try:
                while len(frames) < nframes:
                    frames.append(await track.recv())
                got.set_result(True)
            except Exception as exc:  # pragma: no cover
                if not got.done():
                    got.set_exception(exc)

        asyncio.ensure_future(pull())

    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http_session:
        async with http_session.post(f"{base}/whep/{sid}", data=pc.localDescription.sdp, headers=headers) as r:
            assert r.status == 201, await r.text()
            location = r.headers["Location"]
            answer = await r.text()
        assert "VP8" in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        try:
            await asyncio.wait_for(got, 30)
        finally:
            async with http_session.delete(base + location, headers=headers) as r:
                deleted = r.status
            await pc.close()
    return frames, deleted


@pytest.mark.slow
def test_pages_stats_and_token(live):
    base, sid, _ = live
    # nothing without the token
    for path in ("/", f"/view/{sid}", f"/stats/{sid}"):
        assert http(base + path)[0] == 401
        assert http(base + path + "?token=wrong")[0] == 401
    assert http(f"{base}/whep/{sid}", "POST", body=b"v=0\r\n", ctype="application/sdp")[0] == 401
    assert http(f"{base}/whep/{sid}", "POST", token="wrong", body=b"v=0\r\n", ctype="application/sdp")[0] == 401
    # with it
    status, _, body = http(f"{base}/?token={TOKEN}")
    assert status == 200 and f"/view/{sid}?token={TOKEN}" in body.decode()
    status, headers, body = http(f"{base}/view/{sid}?token={TOKEN}")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and json.dumps(sid) in body.decode()
    assert http(f"{base}/view/nosuchstream?token={TOKEN}")[0] == 404
    http(f"{base}/stats/{sid}", token=TOKEN)
    time.sleep(1.5)
    status, _, body = http(f"{base}/stats/{sid}", token=TOKEN)
    s = json.loads(body)
    assert status == 200 and s["stream"] == sid and (s["width"], s["height"]) == (256, 144)
    assert s["tiers"] == 3 and 1 <= s["tier"] <= 3 and len(s["kbps_per_tier"]) == 3
    assert s["kbps_per_tier"][0] > 0 and 5 <= s["fps"] <= 15 and s["latency_ms"] >= 0


@pytest.mark.slow
def test_whep_viewers_get_the_decoded_video(live):
    base, sid, rx = live

    async def two_viewers():
        return await asyncio.gather(whep_watch(base, sid, TOKEN, 8), whep_watch(base, sid, TOKEN, 8))

    results = asyncio.run(two_viewers())
    for frames, deleted in results:
        assert deleted == 200 and len(frames) == 8
        f = frames[-1]
        assert (f.width, f.height) == (256, 144)
        y = f.to_ndarray(format="yuv420p")[:144]
        assert y.std() > 10  # a picture, not a flat field
    status, _, body = http(f"{base}/stats/{sid}", token=TOKEN)
    s = json.loads(body)
    assert s["viewers"] == 0 and s["view_frames_encoded"] >= 8
    assert http(f"{base}/whep/{sid}/nosuchviewer", "DELETE", token=TOKEN)[0] == 404


# ---------------------------------------------------------------------------------------------
# Headless Chromium (skipped when it is not installed).


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


async def cdp_view(url: str, profile: str) -> tuple[dict, bytes]:
    """Open `url` in headless Chromium, wait until the video plays; returns its state and a PNG."""
    import base64

    import aiohttp

    args = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--window-size=1280,800",
        "about:blank",
    ]
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                n = 0

                async def call(method: str, **params):
                    nonlocal n
                    n += 1
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == n:
                            if "error" in msg:
                                raise AssertionError(f"{method}: {msg['error']}")
                            return msg["result"]

                async def js(expr: str):
                    res = await call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
                    return res["result"].get("value")

                await call("Page.navigate", url=url)
                state = {}
                for _ in range(300):
                    await asyncio.sleep(0.1)
                    state = (
                        await js(
                            "(() => { const v = document.getElementById('video'); return v ? "
                            "{t: v.currentTime, w: v.videoWidth, h: v.videoHeight, paused: v.paused, "
                            "state: document.getElementById('state').textContent, "
                            "tier: document.getElementById('s-tier').textContent} : {}; })()"
                        )
                        or {}
                    )
                    if state.get("t", 0) > 1.0 and state.get("w") and state.get("tier", "–") != "–":
                        break
                # the video's pixels at native size (luma), via a canvas
                state["luma"] = await js("""(() => { const v = document.getElementById('video');
                    const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
                    const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                    const d = g.getImageData(0, 0, c.width, c.height).data; const out = [];
                    for (let i = 0; i < d.length; i += 4) out.push(Math.round(0.299*d[i]+0.587*d[i+1]+0.114*d[i+2]));
                    return out; })()""")
                shot = await call("Page.captureScreenshot", format="png")
                return state, base64.b64decode(shot["data"])
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed")
def test_headless_chromium_plays_the_view_page(live, tmp_path):
    base, sid, rx = live
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    state, png = asyncio.run(cdp_view(f"{base}/view/{sid}?token={TOKEN}", profile))
    (tmp_path / "view.png").write_bytes(png)
    assert state.get("w") == 256 and state.get("h") == 144, state.get("state")
    assert state["t"] > 1.0 and not state["paused"]
    luma = np.array(state["luma"], dtype=np.float64).reshape(144, 256)
    assert luma.mean() > 20 and luma.std() > 10  # not black, not flat

    # It resembles what the receiver decodes: the synthetic scene moves, so compare the picture
    # with the sender's own frames near that time by structure (normalised correlation with the
    # best-matching frame of the synthetic camera).
    from snisd.capture.synthetic import SyntheticScene

    scene = SyntheticScene(256, 144, 10.0)
    best = max(np.corrcoef(luma.ravel(), scene.render(n).y.astype(np.float64).ravel())[0, 1] for n in range(400))
    assert best > 0.8, best

    # and the screenshot (the whole page) is not black either
    import av

    with av.open(str(tmp_path / "view.png")) as c:
        shot = next(c.decode(video=0)).to_ndarray(format="gray")
    assert shot.std() > 10


# ---------------------------------------------------------------------------------------------
# In-process (fast): one encoder, many viewers.


def test_one_encoder_fans_out_to_every_viewer():
    from snisd import reencode
    from snisd.capture.synthetic import SyntheticScene
    from snisd.transport import fanout

    async def main():
        loop = asyncio.get_running_loop()
        track_cls = fanout.packet_track_class()
        viewers = [track_cls() for _ in range(3)]
        keys = []

        def fan_out(packets, keyframe):
            keys.append(keyframe)
            for v in viewers:
                v.offer(packets, keyframe)

        enc = reencode.LiveEncoder(loop, fan_out, 10.0)
        scene = SyntheticScene(128, 96, 10.0)
        enc.start()
        for n in range(6):
            enc.put(scene.render(n))
            for _ in range(100):  # the encoder keeps only the latest picture: wait for each
                await asyncio.sleep(0.01)
                if len(keys) > n:
                    break
        enc.stop()
        assert enc.frames_encoded == 6 and len(keys) == 6  # once per picture, not per viewer
        assert keys[0] and not any(keys[1:])
        for v in viewers:
            got = [await v.recv() for _ in range(v.queue.qsize())]
            assert len(got) == 6 and got[0].is_keyframe
        # a viewer that joins late waits for a keyframe; one that falls behind skips to the next
        late = track_cls()
        assert late.offer([object()], False) is False and late.queue.empty()
        assert late.offer(["k"], True) and late.queue.qsize() == 1
        for _ in range(fanout.VIEWER_QUEUE):
            late.offer(["p"], False)
        assert late.offer(["p"], False) is False and late.waiting_key and late.queue.empty()
        late.stop()
        for v in viewers:
            v.stop()

    asyncio.run(main())
