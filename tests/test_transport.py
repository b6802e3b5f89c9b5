"""WebRTC transport: message framing, WHIP signalling, and real sender/receiver processes.

The stream tests run `tools/transport_harness.py send` (paced synthetic camera -> encoder ->
WhipSender) and `python -m snisd receive` (the `snisd receive` endpoint) as separate
processes over loopback, or across two network namespaces joined by a veth pair. Both sides
write one JSON line per frame: the sender the hash of its own reconstruction for every tier
count, the receiver the hash of what it decoded and with how many tiers; they must agree.
ICE is told to use 127.0.0.1 (or the veth addresses), so no packet leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

pytest.importorskip("aiortc")
pytest.importorskip("aiohttp")

from snisd.codec.bitstream import EncodedFrame, SequenceHeader  # noqa: E402
from snisd.container import init_segment, make_init_info, read_fmp4  # noqa: E402
from snisd.transport import channels  # noqa: E402
from snisd.transport.errors import TransportError, WhipError  # noqa: E402
from snisd.transport.whip import WhipClient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tools" / "transport_harness.py"  # run as a program, never imported
SIZE = "256x144"
FPS = "10"


# ---------------------------------------------------------------------------------------------
# Framing (fast).


def test_split_and_reassemble_large_piece_out_of_order():
    piece = os.urandom(70_000)
    msgs = channels.split(piece, channels.KIND_FRAGMENT, 2, 77, sent_ms=1234)
    assert len(msgs) == 5 and all(len(m) <= channels.MAX_MESSAGE for m in msgs)
    r = channels.Reassembler()
    order = [3, 0, 4, 1]
    assert all(r.add(msgs[i]) is None for i in order)
    header, out = r.add(msgs[2])
    assert out == piece
    assert (header.kind, header.tier, header.sequence, header.part, header.count, header.sent_ms) == (
        channels.KIND_FRAGMENT,
        2,
        77,
        0,
        5,
        1234,
    )


def test_reassembler_is_bounded_and_rejects_garbage():
    r = channels.Reassembler(max_pending=4)
    for seq in range(10):  # first part of ten pieces, never completed
        assert r.add(channels.split(b"x" * 40_000, 1, 1, seq)[0]) is None
    assert len(r._pending) == 4 and r.abandoned == 6
    with pytest.raises(TransportError):
        r.add(b"\x01\x02")
    with pytest.raises(TransportError):
        r.add(bytes([0x21]) + bytes(13))  # version 2


def test_tier_fragments_round_trip():
    seq = SequenceHeader(64, 48, 10, 1, tiers=3)
    info = make_init_info(seq)
    assert channels.parse_init_segment(init_segment(info)) == info
    chunks = (b"\x00\x00\x05\x1c" + b"base", bytes([0x15]) + b"one", bytes([0x25]) + b"two" * 10)
    ef = EncodedFrame(5, 500_000, True, True, chunks)
    for tier in range(3):
        frag = channels.tier_fragment(ef, tier, 9, info, 45_000)
        seqno, sample = channels.parse_tier_fragment(frag, info, tier)
        assert (seqno, sample.tier, sample.decode_time, sample.data) == (9, tier, 45_000, chunks[tier])
    with pytest.raises(TransportError):
        channels.parse_tier_fragment(channels.tier_fragment(ef, 1, 9, info, 0), info, 2)


# ---------------------------------------------------------------------------------------------
# Process helpers.


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


class ReceiverProc:
    """`python -m snisd receive` in the background, stdout collected."""

    def __init__(
        self,
        tmp: Path,
        listen: str,
        *extra: str,
        prefix: list[str] | None = None,
        ice_address: str = "127.0.0.1",
        tag: str = "rx",
    ) -> None:
        self.frame_log = tmp / f"{tag}.jsonl"
        self.record_dir = tmp / f"{tag}-rec"
        self.stderr_path = tmp / f"{tag}.err"
        cmd = [
            *(prefix or []),
            sys.executable,
            "-m",
            "snisd",
            "receive",
            "--listen",
            listen,
            "--ice-address",
            ice_address,
            "--record-dir",
            str(self.record_dir),
            "--frame-log",
            str(self.frame_log),
            "--stats-interval",
            "2",
            "--hold-ms",
            "300",
            *extra,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), text=True
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60):
            self.stop()
            raise AssertionError(f"receiver did not start: {self.stderr_path.read_text()[-2000:]}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "WHIP endpoint at" in line:
                self._ready.set()

    def summaries(self) -> list[dict]:
        return [json.loads(x) for x in self.lines if x.startswith("{")]

    def frames(self) -> list[dict]:
        if not self.frame_log.exists():
            return []
        return [json.loads(x) for x in self.frame_log.read_text().splitlines() if x.strip()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def run_sender(
    tmp: Path,
    peer: str,
    duration: float,
    *extra: str,
    prefix: list[str] | None = None,
    ice_address: str = "127.0.0.1",
    tag: str = "tx",
    background: bool = False,
):
    log = tmp / f"{tag}.jsonl"
    cmd = [
        *(prefix or []),
        sys.executable,
        str(HARNESS),
        "send",
        "--peer",
        peer,
        "--size",
        SIZE,
        "--fps",
        FPS,
        "--duration",
        str(duration),
        "--ice-address",
        ice_address,
        "--frame-log",
        str(log),
        *extra,
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=open(tmp / f"{tag}.err", "w"), text=True
    )
    if background:
        return proc, log
    return finish_sender(proc, tmp, tag), log


def finish_sender(proc: subprocess.Popen, tmp: Path, tag: str = "tx") -> dict:
    out, _ = proc.communicate(timeout=120)
    lines = [x for x in out.splitlines() if x.startswith("{")]
    assert proc.returncode == 0 and lines, (proc.returncode, out[-1000:], (tmp / f"{tag}.err").read_text()[-3000:])
    return json.loads(lines[-1])


def check_frames(tx_log: Path, rx_frames: list[dict]) -> dict[int, int]:
    """Decoded frames equal the sender's reconstruction with the same tier count wherever the codec
    guarantees it: every frame decoded with all tiers since the last key picture, and every
    keyframe and key picture whatever its tiers. A P-frame decoded after tiers were dropped
    predicts from a picture without them and drifts until the next key picture (docs/CODEC.md
    measures that bound); such frames are counted, not compared."""
    sent = {r["frame_no"]: r for r in map(json.loads, tx_log.read_text().splitlines())}
    assert rx_frames, "the receiver decoded nothing"
    tiers: dict[int, int] = {}
    full = len(next(iter(sent.values()))["hashes"])
    exact_chain = False  # all tiers decoded since the last key picture
    compared = 0
    for r in rx_frames:
        s = sent[r["frame_no"]]
        key = s.get("key_picture", s["keyframe"])
        exact_chain = r["tiers"] == full if key else exact_chain and r["tiers"] == full
        if key or exact_chain:
            assert r["hash"] == s["hashes"][r["tiers"] - 1], f"frame {r['frame_no']} with {r['tiers']} tiers differs"
            compared += 1
        tiers[r["tiers"]] = tiers.get(r["tiers"], 0) + 1
    assert compared > 0, "no frame could be compared"
    return tiers


# ---------------------------------------------------------------------------------------------
# Signalling.


def test_bad_token_is_refused_and_nothing_recorded(tmp_path):
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--token", "right-token", "--no-decode")
    try:
        url = f"http://127.0.0.1:{port}/whip"
        for token in ("wrong-token", None):
            with pytest.raises(WhipError) as err:
                asyncio.run(WhipClient(url, token).publish("v=0\r\n"))
            assert err.value.status == 401 and err.value.unauthorized
        # the real sender with a wrong token: it keeps retrying, never connects, reports the 401
        stats, _ = run_sender(tmp_path, url, 2.0, "--token", "wrong-token", "--connect-wait", "2")
        assert stats["sender"]["sessions"] == 0 and "401" in stats["sender"]["last_error"]
    finally:
        rx.stop()
    assert not rx.record_dir.exists() or not any(rx.record_dir.iterdir())
    assert rx.frames() == [] and rx.summaries() == []


def test_unreachable_peer_is_a_transport_error():
    port = free_port()  # nothing listens there
    with pytest.raises(TransportError) as err:
        asyncio.run(WhipClient(f"http://127.0.0.1:{port}/whip", timeout=3).publish("v=0\r\n"))
    assert not isinstance(err.value, WhipError) and "cannot reach" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Streams between real processes.


def _check_stream(tmp: Path, stats: dict, tx_log: Path, rx: ReceiverProc, min_frames: int) -> None:
    frames = rx.frames()
    tiers = check_frames(tx_log, frames)
    sent = stats["sender"]["frames_sent"]
    assert sent >= min_frames, stats
    assert len(frames) >= 0.9 * sent, (len(frames), stats)
    # no loss on these links: most frames arrive with every tier (on a badly overloaded machine a
    # frame's enhancements can miss the receiver's hold time, so not necessarily all of them)
    assert tiers.get(3, 0) >= 0.5 * len(frames), tiers
    (summary,) = rx.summaries()
    assert summary["reason"] == "publisher sent DELETE" and summary["decode_errors"] == 0
    # the recording holds every released frame and reads back cleanly
    rec = list(rx.record_dir.iterdir())
    assert len(rec) == 1
    seq, recorded, truncated = read_fmp4(rec[0])
    assert not truncated and len(recorded) == summary["recorded"] >= len(frames) and recorded[0].keyframe
    assert (seq.width, seq.height, seq.tiers) == (256, 144, 3)


@pytest.mark.slow
def test_stream_over_loopback(tmp_path):
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}", "--token", "t0k")
    try:
        stats, tx_log = run_sender(tmp_path, f"http://127.0.0.1:{port}/whip", 8.0, "--token", "t0k")
        time.sleep(1.0)
    finally:
        rx.stop()
    assert stats["sender"]["sessions"] == 1 and stats["sender"]["last_report"]["type"] == "report"
    _check_stream(tmp_path, stats, tx_log, rx, min_frames=8)


@pytest.mark.slow
def test_sender_survives_receiver_restart(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/whip"
    rx1 = ReceiverProc(tmp_path, f"127.0.0.1:{port}", tag="rx1")
    proc, tx_log = run_sender(tmp_path, url, 13.0, background=True)
    try:
        deadline = time.monotonic() + 40
        while len(rx1.frames()) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(rx1.frames()) >= 5, rx1.stderr_path.read_text()[-2000:]
        rx1.stop(signal.SIGKILL)  # no goodbye: the sender must notice the silence
        time.sleep(1.0)
        rx2 = ReceiverProc(tmp_path, f"127.0.0.1:{port}", tag="rx2")
        try:
            stats = finish_sender(proc, tmp_path)
            time.sleep(1.0)
        finally:
            rx2.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        rx1.stop(signal.SIGKILL)  # a no-op when it is already gone
    s = stats["sender"]
    assert s["sessions"] == 2, s
    first, second = rx1.frames(), rx2.frames()
    assert second, rx2.stderr_path.read_text()[-2000:]
    assert second[0]["keyframe"], "the new session must start with a keyframe"
    assert second[0]["frame_no"] > first[-1]["frame_no"]
    check_frames(tx_log, first)
    tiers = check_frames(tx_log, second)
    assert sum(tiers.values()) >= 3


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "no ip(8) command"
    name = f"snis-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture
def veth_pair():
    """Two network namespaces joined by a veth pair: (tx ns, tx addr, rx ns, rx addr)."""
    why = _netns_available()
    if why:
        pytest.skip(why)
    tag = f"{os.getpid() % 100000}"
    tx, rx = f"snis-tx-{tag}", f"snis-rx-{tag}"
    a, b = f"vsntx{tag}", f"vsnrx{tag}"
    ta, ra = "10.231.77.1", "10.231.77.2"
    cmds = [
        ["ip", "netns", "add", tx],
        ["ip", "netns", "add", rx],
        ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        ["ip", "link", "set", a, "netns", tx],
        ["ip", "link", "set", b, "netns", rx],
        ["ip", "-n", tx, "addr", "add", f"{ta}/24", "dev", a],
        ["ip", "-n", rx, "addr", "add", f"{ra}/24", "dev", b],
        ["ip", "-n", tx, "link", "set", a, "up"],
        ["ip", "-n", rx, "link", "set", b, "up"],
        ["ip", "-n", tx, "link", "set", "lo", "up"],
        ["ip", "-n", rx, "link", "set", "lo", "up"],
    ]
    try:
        for c in cmds:
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"{' '.join(c)} failed: {r.stderr.strip()}")
        yield tx, ta, rx, ra, a
    finally:
        for ns in (tx, rx):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", a], capture_output=True)


@pytest.mark.slow
def test_stream_across_network_namespaces(tmp_path, veth_pair):
    tx_ns, tx_addr, rx_ns, rx_addr, _ = veth_pair
    port = 18000 + os.getpid() % 1000
    rx = ReceiverProc(
        tmp_path, f"{rx_addr}:{port}", "--allow-open", prefix=["ip", "netns", "exec", rx_ns], ice_address=rx_addr
    )
    try:
        stats, tx_log = run_sender(
            tmp_path, f"http://{rx_addr}:{port}/whip", 6.0, prefix=["ip", "netns", "exec", tx_ns], ice_address=tx_addr
        )
        time.sleep(1.0)
    finally:
        rx.stop()
    assert stats["sender"]["sessions"] == 1
    _check_stream(tmp_path, stats, tx_log, rx, min_frames=5)


@pytest.mark.slow
def test_narrow_link_drops_enhancements_not_the_base(tmp_path, veth_pair):
    """A token bucket on the sender's side of the veth carries the base tier but not all tiers:
    the sender must give up enhancement data, and the base must keep flowing."""
    tx_ns, tx_addr, rx_ns, rx_addr, tx_dev = veth_pair
    r = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            tx_ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            tx_dev,
            "root",
            "tbf",
            "rate",
            "96kbit",
            "burst",
            "16kb",
            "latency",
            "300ms",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"tc tbf failed: {r.stderr.strip()}")
    # timing on a shared 2-core machine: a run that misses a bound runs once more and must then
    # meet them all (as the adaptation scenarios do)
    try:
        _narrow_link_once(tmp_path / "a", veth_pair, 18000 + os.getpid() % 1000)
    except AssertionError:
        _narrow_link_once(tmp_path / "b", veth_pair, 19000 + os.getpid() % 1000)


def _narrow_link_once(tmp_path, veth_pair, port):
    tx_ns, tx_addr, rx_ns, rx_addr, tx_dev = veth_pair
    tmp_path.mkdir()
    rx = ReceiverProc(
        tmp_path, f"{rx_addr}:{port}", "--allow-open", prefix=["ip", "netns", "exec", rx_ns], ice_address=rx_addr
    )
    try:
        stats, tx_log = run_sender(
            tmp_path, f"http://{rx_addr}:{port}/whip", 10.0, prefix=["ip", "netns", "exec", tx_ns], ice_address=tx_addr
        )
        time.sleep(1.5)
    finally:
        rx.stop()
    s = stats["sender"]
    assert s["sessions"] == 1, s
    frames = rx.frames()
    tiers = check_frames(tx_log, frames)  # whatever arrived decodes exactly
    # all tiers (~150 kbit/s here) do not fit: the controller stepped down, the top tier was dropped
    assert s["tier_steps"][0] >= 1 and s["tier_dropped"][2] > 0, s
    (summary,) = rx.summaries()
    # the base kept flowing: nearly every frame sent was released, and decoded
    assert summary["released"] >= 0.85 * s["frames_sent"], (summary, s)
    assert len(frames) >= 0.7 * s["frames_sent"], (len(frames), tiers, s)
    # and the queue that built up before the step down has drained: the late frames are on time
    sent = {r["frame_no"]: r for r in map(json.loads, tx_log.read_text().splitlines())}
    late = sorted(frames, key=lambda r: r["frame_no"])[len(frames) * 6 // 10 :]
    delays = sorted(r["t_released"] - sent[r["frame_no"]]["t_encoded"] for r in late)
    assert delays and delays[len(delays) // 2] < 0.4, delays


@pytest.mark.slow
def test_sender_asks_again_while_it_waits_for_a_keyframe(tmp_path):
    """A keyframe request the sender received must not be lost: while frames wait for a keyframe
    it asks the encoder again (about once a second), even when the first request was swallowed by
    the 0.25-s rate limit or its keyframe is gone."""
    from snisd.capture.synthetic import SyntheticScene
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.transport.ice import restrict_host_addresses
    from snisd.transport.sender import WhipSender

    enc = Encoder(EncoderConfig(64, 48, 10, 1, tiers=2, keyframe_interval=1000))
    scene = SyntheticScene(64, 48, 10.0)
    coded = [enc.encode(scene.render(n)) for n in range(6)]
    port = free_port()
    rx = ReceiverProc(tmp_path, f"127.0.0.1:{port}")
    restrict_host_addresses(["127.0.0.1"])
    asked: list[float] = []
    sender = WhipSender(
        f"http://127.0.0.1:{port}/whip", enc.sequence_header, request_keyframe=lambda: asked.append(time.monotonic())
    ).start()
    try:
        deadline = time.monotonic() + 20
        while sender.state != "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        for ef in (coded[0], coded[1], coded[4]):  # frame 4 after 1: a gap, the receiver wants a keyframe
            sender.write(ef)
            time.sleep(0.1)
        n_before = len(asked)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.5:  # only P-frames: the encoder "ignores" the requests
            sender.write(coded[5])
            time.sleep(0.1)
        st = sender.stats()
    finally:
        sender.close()
        rx.stop()
    assert st["frames_waiting_key"] >= 20, st
    assert len(asked) - n_before >= 2, (asked, st)  # asked again while waiting
    gaps = [b - a for a, b in pairwise(asked[n_before:])]
    assert all(g >= 0.9 for g in gaps), gaps  # but not more than about once a second
