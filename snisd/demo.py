"""`snisd demo`: the whole chain on one machine with no setup.

A receiver (`snisd receive`) listens on loopback; the daemon streams the synthetic camera to it over
WebRTC and records locally; both print live stats. Afterwards the receiver's recording is decoded
to prove it is complete. Nothing leaves the machine: ICE offers only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=20.0, help="how long the camera runs (default 20)")
    p.add_argument("--size", default="640x360", help="picture size WxH (default 640x360)")
    p.add_argument("--fps", type=float, default=10.0, help="camera frame rate (default 10)")
    p.add_argument("--out", default="snisd-demo", help="directory for the recordings (default ./snisd-demo)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(args: argparse.Namespace) -> int:
    from .daemon import add_daemon_arguments, run_daemon
    from .errors import InputError
    from .files import decode_file

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {args.size!r}: expected WxH, e.g. 640x360") from None
    out = Path(args.out)
    (out / "received").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, SNISD_ICE_ADDRESSES="127.0.0.1")
    os.environ["SNISD_ICE_ADDRESSES"] = "127.0.0.1"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snisd",
            "receive",
            "--listen",
            f"127.0.0.1:{port}",
            "--record-dir",
            str(out / "received"),
            "--ice-address",
            "127.0.0.1",
            "--stats-interval",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    # the receiver prints one JSON summary per stream when it ends: its own live counts
    live: list[dict] = []
    reader = threading.Thread(target=_relay, args=(receiver.stdout, live), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the endpoint accepts connections
            if receiver.poll() is not None:
                print("snisd demo: the receiver did not start", file=sys.stderr)
                return 1
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.3)
        print(f"snisd demo: live view at http://127.0.0.1:{port}/ while the demo runs", flush=True)
        frames = max(1, int(args.seconds * args.fps))
        daemon_parser = argparse.ArgumentParser(prog="snisd")
        add_daemon_arguments(daemon_parser)
        daemon_args = daemon_parser.parse_args(
            [
                "--camera",
                "synthetic",
                "--width",
                str(width),
                "--height",
                str(height),
                "--fps",
                str(args.fps),
                "--peer",
                f"http://127.0.0.1:{port}/whip",
                "--record",
                str(out / "local.mp4"),
                "--max-frames",
                str(frames),
            ]
        )
        rc = run_daemon(daemon_args)
    finally:
        time.sleep(1.0)  # let the last fragments arrive
        receiver.terminate()
        try:
            receiver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.kill()
    reader.join(5.0)
    recordings = sorted((out / "received").glob("*.mp4"), key=lambda p: p.stat().st_mtime)
    summary = {
        "daemon_exit": rc,
        "local_recording": str(out / "local.mp4"),
        "received_recordings": [str(p) for p in recordings],
    }
    # what the receiver did live (its own counts), then a decode of its recording afterwards
    summary["receiver_recorded_frames"] = sum(s.get("recorded", 0) for s in live)
    live_decoded = sum(s.get("decoded", 0) for s in live)
    summary["receiver_live_decoded_frames"] = live_decoded
    summary["receiver_decode_errors"] = sum(s.get("decode_errors", 0) for s in live)
    failed = [s["decoder_failed"] for s in live if s.get("decoder_failed")]
    if failed:
        summary["receiver_decoder_failed"] = failed
    if recordings:
        rep = decode_file(str(recordings[-1]), str(out / "received.y4m"))
        summary["recording_decoded_afterwards_frames"] = rep.frames
        summary["recording_decoded_afterwards_tiers"] = rep.tiers
        summary["decoded_to"] = str(out / "received.y4m")
    print(json.dumps(summary, indent=1))
    live_ok = live_decoded > 0 and not failed
    return 0 if rc == 0 and recordings and live_ok else 1


def _relay(stream, summaries: list[dict]) -> None:
    """Echo the receiver's output and keep its per-stream JSON summaries."""
    for line in stream:
        if line.startswith("{"):
            try:
                summaries.append(json.loads(line))
                continue
            except ValueError:
                pass
        sys.stdout.write(line)
        sys.stdout.flush()
