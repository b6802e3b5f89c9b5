#!/usr/bin/env python3
"""End-to-end latency of the WebRTC transport, and the sender's CPU cost of it, over loopback.

For each size it starts the receiver (`python -m snisd.transport receive`, decoding) and the
sender (`python -m snisd.transport send`: paced synthetic camera -> encoder -> WhipSender) as two
processes on 127.0.0.1, streams for --duration seconds and matches the two per-frame logs by frame
number. Reported per size:

* capture -> decoded: wall time from the camera handing out the frame to the receiver having
  decoded it (p50/p95); includes waiting for the encoder, encoding, transport and decoding;
* encoded -> received: from the end of encoding to the receiver having all the frame's tiers
  that it will get (transport alone: fragmenting, SCTP/DTLS, reassembly, the hold for late tiers);
* encode and decode ms per frame (p50);
* the sender's transport CPU per frame: CPU time of the transport thread (fMP4 per-tier fragments,
  message framing, SCTP, DTLS, ICE, feedback) from the session opening to the end, plus the
  pipeline thread's time in WhipSender.write, divided by the frames sent.

The codec is slow in pure Python, so pick frame rates it can keep up with (--fps), or the camera
drops frames and capture -> decoded includes waiting for the encoder.

    python tools/bench_transport.py --sizes 1280x720,1920x1080 --fps 0.5,0.25 --duration 30
    python tools/bench_transport.py --sizes 1280x720,1920x1080 --replay 30 --duration 10

The second form measures the transport alone at a real frame rate (see replay_one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return float(p50), float(p95)


def start_receiver(port: int, frame_log: Path, env: dict, *extra: str) -> subprocess.Popen:
    """`snisd receive` on 127.0.0.1:port logging every frame to frame_log (`extra`: more of its
    options), once it says its WHIP endpoint is up."""
    rx = subprocess.Popen(
        [sys.executable, "-m", "snisd", "receive", "--listen", f"127.0.0.1:{port}", "--ice-address", "127.0.0.1"]
        + ["--frame-log", str(frame_log), *extra, "--stats-interval", "30"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert rx.stdout is not None
    line = rx.stdout.readline()
    if "WHIP endpoint" not in line:
        rx.kill()
        raise RuntimeError(f"receiver did not start: {line!r}")
    return rx


def run_one(size: str, fps: float, duration: float, tiers: int, qp: int, tmp: Path, warmup: float = 3.0) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port = free_port()
    rx_log, tx_log = tmp / f"rx-{size}.jsonl", tmp / f"tx-{size}.jsonl"
    rx = start_receiver(port, rx_log, env)
    try:
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "transport_harness.py"),
                "send",
                "--peer",
                f"http://127.0.0.1:{port}/whip",
                "--ice-address",
                "127.0.0.1",
                "--size",
                size,
                "--fps",
                str(fps),
                "--duration",
                str(duration),
                "--tiers",
                str(tiers),
                "--qp",
                str(qp),
                "--frame-log",
                str(tx_log),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=duration + 300,
        )
        time.sleep(2.0)  # let the receiver decode what is still queued
    finally:
        rx.terminate()
        rx.wait(30)
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"sender failed ({out.returncode}): {out.stderr[-2000:]}")
    stats = json.loads(lines[-1])
    sender = stats["sender"]
    sent = {r["frame_no"]: r for r in map(json.loads, tx_log.read_text().splitlines())}
    got = [json.loads(x) for x in rx_log.read_text().splitlines()] if rx_log.exists() else []
    e2e, net, dec, tier_counts = [], [], [], {}
    t_first = min((r["t_capture"] for r in sent.values() if r["t_capture"]), default=0.0)
    for r in got:
        s = sent.get(r["frame_no"])
        if s is None or s["t_capture"] is None or s["t_capture"] < t_first + warmup:
            continue  # the receiver's first decodes may still compile its kernels
        e2e.append((r["t"] - s["t_capture"]) * 1e3)
        net.append((r["t_released"] - s["t_encoded"]) * 1e3)
        dec.append(r["decode_ms"])
        tier_counts[r["tiers"]] = tier_counts.get(r["tiers"], 0) + 1
    frames_sent = max(1, sender["frames_sent"])
    cpu = None
    if sender["transport_cpu_s"] is not None and sender["transport_cpu_at_connect_s"] is not None:
        cpu = (sender["transport_cpu_s"] - sender["transport_cpu_at_connect_s"] + sender["write_cpu_s"]) / frames_sent
    sizes = [sum(r["sizes"]) for r in sent.values()]
    return {
        "size": size,
        "fps": fps,
        "duration_s": duration,
        "frames_encoded": stats["frames_encoded"],
        "frames_sent": sender["frames_sent"],
        "frames_decoded": len(e2e),
        "tiers_decoded": tier_counts,
        "kbytes_per_frame": round(float(np.mean(sizes)) / 1000, 2) if sizes else None,
        "capture_to_decoded_ms": [round(v, 1) for v in pct(e2e)],
        "encoded_to_received_ms": [round(v, 1) for v in pct(net)],
        "encode_ms_p50": round(stats["encode_p50_ms"], 1),
        "decode_ms_p50": round(pct(dec)[0], 1),
        "transport_cpu_ms_per_frame": round(cpu * 1e3, 3) if cpu is not None else None,
        "messages_per_frame": round(sender["messages_sent"] / frames_sent, 2),
    }


def replay_one(size: str, fps: float, duration: float, tiers: int, qp: int, tmp: Path, warmup: float) -> dict:
    """Transport alone at a real frame rate: a few frames are encoded once, then written to a
    WhipSender in this process at `fps` (cycled, frame numbers rewritten) and received by a
    non-decoding receiver; latency is write() -> frame released on the receiver."""
    sys.path.insert(0, str(ROOT))
    from snisd.capture.synthetic import SyntheticScene
    from snisd.codec.bitstream import EncodedFrame, FrameHeader
    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.codec.presets import tuning_for
    from snisd.transport.ice import restrict_host_addresses
    from snisd.transport.sender import WhipSender

    w, h = (int(v) for v in size.split("x"))
    enc = Encoder(
        EncoderConfig(
            w, h, int(fps * 1000), 1000, tiers=tiers, qp=qp, keyframe_interval=1000, tuning=tuning_for(live=True)
        )
    )  # the daemon's with a peer
    scene = SyntheticScene(w, h, fps)
    coded = [enc.encode(scene.render(n)) for n in range(4)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    port = free_port()
    rx_log = tmp / f"replay-rx-{size}.jsonl"
    rx = start_receiver(port, rx_log, env, "--no-decode")
    written: dict[int, float] = {}
    try:
        restrict_host_addresses(["127.0.0.1"])
        want_key = [True]
        sender = WhipSender(
            f"http://127.0.0.1:{port}/whip", enc.sequence_header, request_keyframe=lambda: want_key.__setitem__(0, True)
        ).start()
        deadline = time.monotonic() + 20
        while sender.state != "connected" and time.monotonic() < deadline:
            time.sleep(0.02)
        n_frames = int(duration * fps)
        t0 = time.monotonic()
        for i in range(n_frames):
            key, want_key[0] = want_key[0], False
            src = coded[0] if key else coded[1 + i % (len(coded) - 1)]
            fno = i & 0xFFFF
            head = dataclasses.replace(FrameHeader.from_bytes(src.tiers[0]), frame_no=fno)
            base = head.to_bytes() + src.tiers[0][FrameHeader.SIZE :]
            ef = EncodedFrame(i, int(i * 1e6 / fps), key, src.switch_point, (base, *src.tiers[1:]))
            time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
            written[fno] = time.time()
            sender.write(ef)
        time.sleep(0.5)
        sender.close()
        stats = sender.stats()
        time.sleep(1.0)
    finally:
        rx.terminate()
        rx.wait(30)
    got = [json.loads(x) for x in rx_log.read_text().splitlines()] if rx_log.exists() else []
    lat = [
        (r["t_released"] - written[r["frame_no"]]) * 1e3
        for r in got
        if r["frame_no"] in written and r["frame_no"] >= warmup * fps
    ]
    full = sum(1 for r in got if r["received_tiers"] == tiers)
    cpu = (stats["transport_cpu_s"] - stats["transport_cpu_at_connect_s"] + stats["write_cpu_s"]) / max(
        1, stats["frames_sent"]
    )
    return {
        "size": size,
        "fps": fps,
        "mode": "replay",
        "frames_sent": stats["frames_sent"],
        "frames_received": len(got),
        "frames_with_all_tiers": full,
        "kbytes_per_frame": round(sum(sum(len(c) for c in f.tiers) for f in coded[1:]) / (len(coded) - 1) / 1000, 2),
        "write_to_received_ms": [round(v, 1) for v in pct(lat)],
        "transport_cpu_ms_per_frame": round(cpu * 1e3, 3),
        "messages_per_frame": round(stats["messages_sent"] / max(1, stats["frames_sent"]), 2),
        "tier_dropped": stats["tier_dropped"],
        "base_dropped": stats["base_dropped"],
        "frames_evicted": stats["frames_evicted"],
        "frames_waiting_key": stats["frames_waiting_key"],
        "keyframes": stats["keyframe_requests"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--fps", default="2,1", help="frame rate per size (comma-separated, or one for all)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--qp", type=int, default=28)
    ap.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    ap.add_argument(
        "--replay",
        type=float,
        default=0.0,
        metavar="FPS",
        help="instead: the transport alone, replaying pre-encoded frames at FPS in-process "
        "to a receiver that does not decode",
    )
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of frames left out of the statistics")
    ap.add_argument("--keep", metavar="DIR", help="keep the per-frame logs in DIR")
    args = ap.parse_args(argv)
    sizes = args.sizes.split(",")
    rates = [float(f) for f in args.fps.split(",")]
    rates = rates * len(sizes) if len(rates) == 1 else rates
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_transport_") as tmp:
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            tmp = args.keep
        if args.replay:
            for size in sizes:
                r = replay_one(size, args.replay, args.duration, args.tiers, args.qp, Path(tmp), args.warmup)
                print(json.dumps(r), flush=True)
            return 0
        for size, fps in zip(sizes, rates, strict=True):
            r = run_one(size, fps, args.duration, args.tiers, args.qp, Path(tmp), args.warmup)
            results.append(r)
            if args.json:
                print(json.dumps(r), flush=True)
    if not args.json:
        print(
            f"{'size':>10} {'fps':>4} {'frames':>6} {'kB/fr':>6} {'capture->decoded p50/p95 ms':>28} "
            f"{'encoded->received p50/p95 ms':>29} {'enc ms':>7} {'dec ms':>7} {'tx CPU ms/fr':>12}"
        )
        for r in results:
            print(
                f"{r['size']:>10} {r['fps']:>4g} {r['frames_decoded']:>6} {r['kbytes_per_frame']:>6} "
                f"{r['capture_to_decoded_ms'][0]:>13.1f} / {r['capture_to_decoded_ms'][1]:<12.1f} "
                f"{r['encoded_to_received_ms'][0]:>14.1f} / {r['encoded_to_received_ms'][1]:<12.1f} "
                f"{r['encode_ms_p50']:>7.1f} {r['decode_ms_p50']:>7.1f} {r['transport_cpu_ms_per_frame']!s:>12}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
