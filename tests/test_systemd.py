"""systemd integration: the unit file verifies, sd_notify reaches a real socket, the watchdog."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from snisd.systemd import Notifier, Watchdog, watchdog_interval

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "snisd.service"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt: systemd)")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify also checks that ExecStart exists; point it at a stand-in executable, nothing else changes
    exe = tmp_path / "snisd"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "snisd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/snisd", str(exe)))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr  # warnings (unknown keys, bad values) fail too


def test_unit_has_the_required_settings():
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) > 0
    for key, value in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("SupplementaryGroups", "video"),
        ("StateDirectory", "snisd"),
        ("DynamicUser", "yes"),
    ]:
        assert s[key] == [value], key
    assert any(v.startswith("char-video4linux") for v in s["DeviceAllow"])
    assert not any("NUMBA" in v for v in s["Environment"])  # no JIT cache: the core is compiled at install
    assert "-HUP" in s["ExecReload"][0]
    assert "--config /etc/snisd/config.yaml" in s["ExecStart"][0]


def bind(tmp_path: Path, abstract: bool) -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"snisd-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        addr = "@" + name
    else:
        addr = str(tmp_path / "notify.sock")
        sock.bind(addr)
    sock.settimeout(2)
    return sock, addr


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_sends_datagrams(tmp_path, abstract):
    sock, addr = bind(tmp_path, abstract)
    with sock:
        n = Notifier(addr)
        assert n.enabled
        assert n.ready("1.0 fps")
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.split("\n") and "STATUS=1.0 fps" in msg
        assert f"MAINPID={os.getpid()}" in msg
        n.status("two\nlines")
        assert sock.recv(4096) == b"STATUS=two lines"
        n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.reloading()
        assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        n.close()
        assert not n.notify("X=1")


def test_notifier_without_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready() and not n.watchdog()
    assert not Notifier("relative/path").enabled
    gone = Notifier("/nonexistent-dir/sock")  # systemd went away: sending fails quietly
    assert gone.enabled and not gone.watchdog()


def test_watchdog_interval():
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "zero"}) is None


def test_watchdog_pings_only_on_progress(tmp_path):
    sock, addr = bind(tmp_path, False)
    counter = [0]
    with sock:
        n = Notifier(addr)
        wd = Watchdog(n, lambda: counter[0], 0.05)
        wd.start()
        for _ in range(4):
            counter[0] += 1
            time.sleep(0.05)
        time.sleep(0.3)  # stalled: no pings now
        wd.stop()
        assert 2 <= wd.pings <= 6
        assert wd.missed >= 3
        pings = 0
        sock.settimeout(0.1)
        try:
            while True:
                assert sock.recv(64) == b"WATCHDOG=1"
                pings += 1
        except TimeoutError:
            pass
        assert pings == wd.pings
