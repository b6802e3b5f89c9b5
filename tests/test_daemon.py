"""The real-time pipeline and the daemon: drop-oldest queues, stage counters, metrics, and the
daemon run as a subprocess under a real NOTIFY_SOCKET (READY, WATCHDOG, STATUS, STOPPING,
SIGHUP reload, SIGTERM within 2 s with a readable recording)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from snisd.capture.synthetic import SyntheticSource
from snisd.codec.bitstream import FRAME_I, FRAME_P, EncodedFrame, FrameHeader, SequenceHeader, enhancement_header
from snisd.container.fmp4 import read_fmp4
from snisd.frame import Frame
from snisd.metrics import MetricsServer, families_from_snapshot, render
from snisd.pipeline import Closed, LatestQueue, Pipeline, RateMeter, RecordSink

ROOT = Path(__file__).resolve().parents[1]


def shipped_model_present() -> bool:
    from snisd.codec import analysis

    return (ROOT / "models" / analysis.MODEL_FILE).exists()


class DoubleEncoder:
    """Test double with the Encoder's interface: valid tier headers, fixed-size payloads."""

    def __init__(self, width: int, height: int, tiers: int = 3, delay: float = 0.0) -> None:
        self.sequence_header = SequenceHeader(width, height, 30, 1, tiers)
        self.delay = delay
        self.i = 0
        self.forced: list[int] = []

    def encode(self, frame: Frame, force_keyframe: bool = False) -> EncodedFrame:
        if self.delay:
            time.sleep(self.delay)
        key = force_keyframe or self.i == 0
        if force_keyframe:
            self.forced.append(self.i)
        tiers = [FrameHeader(FRAME_I if key else FRAME_P, key, self.i & 0xFFFF, 28).to_bytes() + bytes(200)]
        tiers += [enhancement_header(k, self.i) + bytes(100) for k in range(1, self.sequence_header.tiers)]
        ef = EncodedFrame(self.i, frame.pts_us, key, key, tuple(tiers))
        self.i += 1
        return ef


# -- queue and counters -------------------------------------------------------------------------

def test_latest_queue_drops_oldest():
    q: LatestQueue[int] = LatestQueue(2)
    assert q.put(1) == 0 and q.put(2) == 0
    assert q.put(3) == 1  # 1 is evicted: the latest frame wins
    assert q.dropped == 1 and len(q) == 2
    assert q.get() == 2 and q.get() == 3
    with pytest.raises(TimeoutError):
        q.get(timeout=0.01)
    q.put(4)
    q.close()
    assert q.get() == 4  # what was queued is still delivered
    with pytest.raises(Closed):
        q.get()
    with pytest.raises(Closed):
        q.put(5)


def test_latest_queue_wakes_a_waiting_consumer():
    q: LatestQueue[int] = LatestQueue(1)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=2)))
    t.start()
    time.sleep(0.05)
    q.put(7)
    t.join(2)
    assert got == [7]


def test_rate_meter():
    m = RateMeter(seconds=10)
    for i in range(31):
        m.add((1000, 500), now=i / 30)
    fps, bps = m.rates(now=1.0)
    assert fps == pytest.approx(30)
    assert bps == [pytest.approx(240000), pytest.approx(120000)]
    assert m.rates(now=100.0) == (0.0, [0.0, 0.0])  # stalled
    slow = RateMeter(seconds=2)
    for t in (0.0, 3.0, 6.0):  # one frame every 3 s: slower than the window
        slow.add((3000,), now=t)
    assert slow.rates(now=7.0) == (pytest.approx(1 / 3), [pytest.approx(8000)])
    assert slow.rates(now=13.0)[0] == 0.0


class ListSink:
    name = "list"

    def __init__(self, delay: float = 0.0) -> None:
        self.frames: list[EncodedFrame] = []
        self.closed = False
        self.delay = delay

    def write(self, frame: EncodedFrame) -> None:
        time.sleep(self.delay)
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def test_pipeline_runs_and_counts():
    src = SyntheticSource(64, 48, fps=200)
    src.open()
    sink = ListSink()
    p = Pipeline(src, DoubleEncoder(64, 48), [sink], max_frames=40).start()
    assert p.done.wait(10)
    assert p.join(1)
    snap = p.snapshot()
    st = snap["stages"]
    assert st["capture"]["out"] == 40
    assert st["encode"]["in"] == st["encode"]["out"] == 40 - st["encode"]["dropped"]
    assert st["output"]["out"] == len(sink.frames) == st["encode"]["out"] - st["output"]["dropped"]
    assert sink.closed and not p.errors
    assert [f.index for f in sink.frames] == sorted(f.index for f in sink.frames)
    assert snap["fps"] > 0 and len(snap["tier_bitrate_bps"]) == 3 and snap["tiers"] == 3
    assert st["encode"]["p95_ms"] >= st["encode"]["p50_ms"] >= 0


def test_slow_encoder_drops_oldest_frames_not_latency():
    src = SyntheticSource(64, 48, fps=100)
    src.open()
    enc = DoubleEncoder(64, 48, delay=0.05)  # 20 fps encoder behind a 100 fps camera
    sink = ListSink()
    p = Pipeline(src, enc, [sink], queue_size=2).start()
    time.sleep(1.0)
    p.stop()
    assert p.join(2)
    st = p.snapshot()["stages"]
    assert st["encode"]["dropped"] > 40  # most camera frames never reach the encoder
    assert st["encode"]["out"] < 30
    # the newest frames were coded: the last frame encoded is one of the last captured
    assert sink.frames[-1].pts_us >= (st["capture"]["out"] - 3) * 10000
    assert sink.closed


def test_slow_output_drops_and_asks_for_a_keyframe():
    src = SyntheticSource(64, 48, fps=200)
    src.open()
    enc = DoubleEncoder(64, 48)
    sink = ListSink(delay=0.03)
    p = Pipeline(src, enc, [sink], queue_size=1).start()
    time.sleep(0.8)
    p.stop()
    assert p.join(2)
    assert p.output.dropped > 0
    assert enc.forced, "a dropped fragment must be followed by a keyframe"


def test_stage_failure_stops_the_pipeline():
    class Broken(DoubleEncoder):
        def encode(self, frame, force_keyframe=False):
            if self.i == 5:
                raise RuntimeError("boom")
            return super().encode(frame, force_keyframe)

    src = SyntheticSource(64, 48, fps=200)
    src.open()
    sink = ListSink()
    p = Pipeline(src, Broken(64, 48), [sink]).start()
    assert p.done.wait(5)
    assert any("boom" in e for e in p.errors)
    assert sink.closed


def test_record_sink_writes_a_readable_file(tmp_path):
    path = str(tmp_path / "r.mp4")
    src = SyntheticSource(64, 48, fps=300)
    src.open()
    enc = DoubleEncoder(64, 48)
    sink = RecordSink(path, enc.sequence_header)
    p = Pipeline(src, enc, [sink], max_frames=20, queue_size=64).start()
    assert p.done.wait(10)
    seq, frames, truncated = read_fmp4(path)
    assert seq == enc.sequence_header and len(frames) == 20 and not truncated
    # a second run continues the same recording
    sink2 = RecordSink(path, enc.sequence_header)
    enc2 = DoubleEncoder(64, 48)
    for i in range(3):
        sink2.write(enc2.encode(Frame(*(np.zeros(s, np.uint8) for s in ((48, 64), (24, 32), (24, 32))), i * 33333)))
    sink2.close()
    assert len(read_fmp4(path)[1]) == 23
    # another stream format moves the old file aside
    other = RecordSink(path, SequenceHeader(32, 32, 30, 1, 3))
    other.close()
    assert other.moved_aside and os.path.exists(other.moved_aside)


# -- metrics ------------------------------------------------------------------------------------

def test_metrics_text_and_http():
    snap = {"stages": {"encode": {"in": 5, "out": 4, "dropped": 1, "p50_ms": 2.5, "p95_ms": 7.0}},
            "fps": 29.97, "tier_bitrate_bps": [100000, 50000], "tiers": 2, "uptime_s": 3.0,
            "rss_bytes": 1000, "camera": {"state": "reconnecting", "reopens": 1, "failures": 2}}
    text = render(families_from_snapshot(snap))
    assert '# TYPE snisd_stage_frames_dropped_total counter' in text
    assert 'snisd_stage_frames_dropped_total{stage="encode"} 1\n' in text
    assert 'snisd_stage_ms_p95{stage="encode"} 7\n' in text
    assert 'snisd_tier_bitrate_bps{tier="1"} 50000\n' in text
    assert 'snisd_camera_up{state="reconnecting"} 0\n' in text
    for line in text.splitlines():  # every sample line: name{labels} value
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            float(value)
            assert name.startswith("snisd_")
    srv = MetricsServer("127.0.0.1:0", lambda: text).start()
    try:
        host, port = srv.address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert r.read().decode() == text
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{host}:{port}/other", timeout=5)
        assert err.value.code == 404
    finally:
        srv.close()


# -- the daemon as a process --------------------------------------------------------------------

LAUNCHER = '''
import sys
sys.path.insert(0, {tests!r})
if {double}:
    import snisd.codec.encoder as enc
    from test_daemon import DoubleEncoder
    enc.Encoder = lambda cfg: DoubleEncoder(cfg.width, cfg.height, cfg.tiers)
from snisd.daemon import main
sys.exit(main(sys.argv[1:]))
'''


class NotifyListener:
    """A bound NOTIFY_SOCKET collecting the daemon's messages in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self) -> list[str]:
        return [f for _, m in self.messages for f in m.split("\n")]

    def wait_for(self, prefix: str, timeout: float, after: int = 0, proc: subprocess.Popen | None = None) -> bool:
        """True once a field starting with ``prefix`` arrived; False on timeout or if ``proc`` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f.startswith(prefix) for f in self.fields()[after:]):
                return True
            if proc is not None and proc.poll() is not None:
                time.sleep(0.1)  # let the last datagrams arrive
                return any(f.startswith(prefix) for f in self.fields()[after:])
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._t.join(1)
        self.sock.close()


def start_daemon(tmp_path: Path, config: Path, notify: NotifyListener, *extra: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(ROOT / "tests"), double=not shipped_model_present()))
    env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000", PYTHONPATH=str(ROOT))
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, str(script), "--config", str(config), *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_config(path: Path, record: Path, qp: int = 28, level: str = "info") -> None:
    path.write_text(f"""
camera: {{source: synthetic, width: 320, height: 240, fps: 30}}
codec: {{qp: {qp}, tiers: 3}}
record: {{path: {str(record)!r}}}
pipeline: {{status_interval_s: 0.5}}
log_level: {level}
""")


def test_daemon_under_notify_socket(tmp_path):
    record = tmp_path / "live.mp4"
    config = tmp_path / "config.yaml"
    write_config(config, record)
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(tmp_path, config, notify)
    try:
        assert notify.wait_for("READY=1", 120, proc=proc), proc.stderr.read() if proc.poll() is not None else notify.messages
        ready_at = len(notify.fields())
        assert notify.wait_for("WATCHDOG=1", 5, ready_at)
        assert notify.wait_for("STATUS=", 5, ready_at)
        status = [f for f in notify.fields() if f.startswith("STATUS=") and "fps" in f]
        assert status and "tiers" in status[-1]

        # SIGHUP: a changed codec setting rebuilds the pipeline, the daemon says READY again
        write_config(config, record, qp=34)
        mark = len(notify.fields())
        proc.send_signal(signal.SIGHUP)
        assert notify.wait_for("RELOADING=1", 10, mark)
        assert notify.wait_for("READY=1", 60, mark)
        # a broken file is rejected; the daemon keeps running
        config.write_text("codec: {tiers: 99}\n")
        mark = len(notify.fields())
        proc.send_signal(signal.SIGHUP)
        assert notify.wait_for("READY=1", 10, mark)
        time.sleep(0.5)
        assert proc.poll() is None

        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=5)
        elapsed = time.monotonic() - t
        err = proc.stderr.read()
        assert rc == 0, err
        assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s"
        assert "STOPPING=1" in notify.fields()
        assert "configuration reloaded" in err
        assert "reload rejected" in err and "codec.tiers" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    seq, frames, truncated = read_fmp4(record)
    assert not truncated and len(frames) > 10
    assert seq.width == 320 and seq.height == 240 and seq.tiers == 3
    pts = [f.pts_us for f in frames]
    assert pts == sorted(pts)


def test_daemon_rejects_bad_config_before_starting(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("camera: {source: synthetic, width: 321}\n")
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = start_daemon(tmp_path, config, notify)
    try:
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        notify.close()
    assert rc == 2
    assert "camera.width" in err and "321" in err and "even" in err
    assert not any(f.startswith("READY") for f in notify.fields())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_streams_to_the_receiver(tmp_path):
    pytest.importorskip("aiortc")
    pytest.importorskip("aiohttp")
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), SNISD_ICE_ADDRESSES="127.0.0.1")
    receiver = subprocess.Popen(
        [sys.executable, "-m", "snisd", "receive", "--listen", f"127.0.0.1:{port}",
         "--record-dir", str(received), "--no-decode", "--ice-address", "127.0.0.1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    config = tmp_path / "config.yaml"
    write_config(config, tmp_path / "local.mp4")
    notify = NotifyListener(tmp_path / "notify.sock")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for the endpoint
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        proc = start_daemon(tmp_path, config, notify, "--peer", f"http://127.0.0.1:{port}/whip",
                            env={"SNISD_ICE_ADDRESSES": "127.0.0.1"})
        assert notify.wait_for("READY=1", 120, proc=proc), proc.stderr.read()
        mark = len(notify.fields())
        assert notify.wait_for("STATUS=", 10, mark)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("peer connected" in f for f in notify.fields()):
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        err = proc.stderr.read()
        assert rc == 0, err
        assert any("peer connected" in f for f in notify.fields()), err
    finally:
        notify.close()
        receiver.send_signal(signal.SIGTERM)
        try:
            receiver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.kill()
    recordings = list(received.glob("*.mp4"))
    assert recordings, receiver.stdout.read()
    seq, frames, _ = read_fmp4(recordings[0])
    assert seq.width == 320 and len(frames) > 0
    assert len(read_fmp4(tmp_path / "local.mp4")[1]) >= len(frames)  # the local recording ran alongside


def test_check_config_prints_effective_settings(tmp_path):
    from snisd.daemon import main

    config = tmp_path / "c.yaml"
    config.write_text("codec: {qp: 30}\n")
    assert main(["--config", str(config), "--camera", "synthetic", "--check-config"]) == 0
    assert main(["--config", str(tmp_path / "missing.yaml"), "--check-config"]) == 2


def test_unusable_camera_is_an_error_exit(tmp_path, capsys):
    from snisd.daemon import main

    config = tmp_path / "c.yaml"
    config.write_text("log_level: error\n")
    assert main(["--config", str(config), "--camera", f"file:{tmp_path / 'missing.mp4'}"]) == 1
