"""The daemon as a subprocess under a real NOTIFY_SOCKET (READY, WATCHDOG, STATUS, STOPPING,
SIGHUP reload, SIGTERM within 2 s with a readable recording), its configuration checks, and
streaming to the receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from snisd.container import read_fmp4

ROOT = Path(__file__).resolve().parents[1]


def shipped_model_present() -> bool:
    from snisd.codec import weights

    return (ROOT / "models" / weights.ANALYSIS_MODEL).exists()


# -- the daemon as a process --------------------------------------------------------------------

LAUNCHER = """
import sys
sys.path.insert(0, {tests!r})
if {double}:
    import snisd.codec.encoder as enc
    from doubles import DoubleEncoder
    enc.Encoder = lambda cfg: DoubleEncoder(cfg.width, cfg.height, cfg.tiers)
from snisd.daemon import main
sys.exit(main(sys.argv[1:]))
"""


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
            except TimeoutError:
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


def start_daemon(
    tmp_path: Path, config: Path, notify: NotifyListener, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(ROOT / "tests"), double=not shipped_model_present()))
    env = dict(os.environ, **(env or {}), NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000", PYTHONPATH=str(ROOT))
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, str(script), "--config", str(config), *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
        assert notify.wait_for("READY=1", 120, proc=proc), (
            proc.stderr.read() if proc.poll() is not None else notify.messages
        )
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
        [
            sys.executable,
            "-m",
            "snisd",
            "receive",
            "--listen",
            f"127.0.0.1:{port}",
            "--record-dir",
            str(received),
            "--no-decode",
            "--ice-address",
            "127.0.0.1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        proc = start_daemon(
            tmp_path,
            config,
            notify,
            "--peer",
            f"http://127.0.0.1:{port}/whip",
            env={"SNISD_ICE_ADDRESSES": "127.0.0.1"},
        )
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
