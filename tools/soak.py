#!/usr/bin/env python3
"""Soak test: run the daemon for a long time on the synthetic camera and watch memory and drops.

    python tools/soak.py                       # 30 minutes of 720p30, three tiers
    python tools/soak.py --minutes 2 --width 640 --height 360
    python tools/soak.py --minutes 60 --record soak.mp4 --csv soak.csv

The daemon runs as a child process (``python -m snisd.daemon``) with metrics on a free localhost
port. Every ``--interval`` seconds the tool samples the child's resident memory (/proc/PID/status)
and scrapes /metrics for frame rate, per-stage drops and encode times, prints one line and, with
``--csv``, appends a row. At the end it prints a summary and exits non-zero when the daemon died,
memory grew by more than ``--max-rss-growth-mb`` between the end of the first tenth of the run and
the end, or the frame rate fell below ``--min-fps``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (VmHWM: its peak so far)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            m = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.M)
    except OSError:
        return float("nan")
    return int(m.group(1)) / 1024 if m else float("nan")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="run time (default 30)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--qp", type=int, default=28)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--record", default=None, help="also record to this .mp4 (default: no recording)")
    ap.add_argument("--csv", default=None, help="write the samples to this CSV file")
    ap.add_argument("--max-rss-growth-mb", type=float, default=32.0)
    ap.add_argument("--min-fps", type=float, default=0.0, help="fail below this average frame rate (default: off)")
    ap.add_argument("--threads", type=int, default=1, help="codec threads (config codec.threads, default 1)")
    ap.add_argument("--cores", type=int, default=0, help="pin the daemon to CPUs 0..N-1 (default: no pinning)")
    args = ap.parse_args(argv)

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "soak.yaml")
        with open(config, "w") as fh:
            fh.write(
                f"camera: {{source: synthetic, width: {args.width}, height: {args.height}, fps: {args.fps}}}\n"
                f"codec: {{tiers: {args.tiers}, qp: {args.qp}, threads: {args.threads}}}\n"
                f"metrics: {{enabled: true, listen: '127.0.0.1:{port}'}}\n"
                f"pipeline: {{status_interval_s: 60}}\n"
            )
        cmd = [sys.executable, "-m", "snisd.daemon", "--config", config]
        if args.record:
            cmd += ["--record", args.record]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        log = open(os.path.join(tmp, "daemon.log"), "w+")
        t_start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, set(range(args.cores)))) if args.cores else None,
        )
        first_frame_s = None
        while first_frame_s is None and time.monotonic() - t_start < 30 and proc.poll() is None:
            try:
                if scrape(port).get('snisd_stage_frames_out_total{stage="encode"}', 0.0) >= 1:
                    first_frame_s = time.monotonic() - t_start
            except OSError:
                pass
            time.sleep(0.02)
        print(
            f"soak: first encoded frame {first_frame_s if first_frame_s is None else round(first_frame_s, 2)} s "
            "after the process started",
            flush=True,
        )
        print(
            f"soak: pid {proc.pid}, {args.width}x{args.height}@{args.fps:g}, {args.tiers} tiers, "
            f"{args.minutes:g} min; metrics on port {port}",
            flush=True,
        )
        rows: list[dict[str, float]] = []
        writer = None
        csv_fh = open(args.csv, "w", newline="") if args.csv else None
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        died = False
        try:
            while time.monotonic() < end:
                time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
                if proc.poll() is not None:
                    died = True
                    break
                try:
                    m = scrape(port)
                except OSError:
                    continue  # still starting
                row = {
                    "t_s": round(time.monotonic() - t0, 1),
                    "rss_mb": round(rss_mb(proc.pid), 1),
                    "fps": m.get("snisd_fps", 0.0),
                    "encode_p50_ms": m.get('snisd_stage_ms_p50{stage="encode"}', 0.0),
                    "encode_p95_ms": m.get('snisd_stage_ms_p95{stage="encode"}', 0.0),
                    "captured": m.get('snisd_stage_frames_out_total{stage="capture"}', 0.0),
                    "encoded": m.get('snisd_stage_frames_out_total{stage="encode"}', 0.0),
                    "dropped_camera": m.get('snisd_stage_frames_dropped_total{stage="capture"}', 0.0),
                    "dropped_encode": m.get('snisd_stage_frames_dropped_total{stage="encode"}', 0.0),
                    "dropped_output": m.get('snisd_stage_frames_dropped_total{stage="output"}', 0.0),
                    "kbps": sum(v for k, v in m.items() if k.startswith("snisd_tier_bitrate_bps")) / 1000,
                }
                rows.append(row)
                print("  ".join(f"{k}={v:g}" for k, v in row.items()), flush=True)
                if csv_fh:
                    if writer is None:
                        writer = csv.DictWriter(csv_fh, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    csv_fh.flush()
        finally:
            peak_mb = rss_mb(proc.pid, "VmHWM")
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if csv_fh:
                csv_fh.close()
            log.seek(0)
            tail = log.read()[-3000:]
            log.close()

    failures = []
    if died or proc.returncode not in (0, None):
        failures.append(f"daemon exited with {proc.returncode}")
    if rows:
        base = rows[max(0, len(rows) // 10 - 1)]["rss_mb"]
        growth = rows[-1]["rss_mb"] - base
        frames = rows[-1]["captured"]
        drops = rows[-1]["dropped_camera"] + rows[-1]["dropped_encode"] + rows[-1]["dropped_output"]
        fps = sum(r["fps"] for r in rows) / len(rows)
        print(
            f"soak: {rows[-1]['t_s']:.0f} s, {frames:.0f} frames captured, {rows[-1]['encoded']:.0f} encoded, "
            f"average {fps:.1f} fps, drops camera/encode/output "
            f"{rows[-1]['dropped_camera']:.0f}/{rows[-1]['dropped_encode']:.0f}/{rows[-1]['dropped_output']:.0f} "
            f"({100 * drops / max(frames, 1):.1f} %), RSS {rows[0]['rss_mb']:.0f} -> {rows[-1]['rss_mb']:.0f} MB "
            f"(growth after warm-up {growth:+.1f} MB), peak RSS {peak_mb:.0f} MB, encode p50/p95 "
            f"{rows[-1]['encode_p50_ms']:.1f}/{rows[-1]['encode_p95_ms']:.1f} ms"
        )
        if growth > args.max_rss_growth_mb:
            failures.append(f"RSS grew {growth:.1f} MB > {args.max_rss_growth_mb:g} MB")
        if args.min_fps and fps < args.min_fps:
            failures.append(f"average {fps:.1f} fps < {args.min_fps:g}")
    else:
        failures.append("no samples (the daemon never served metrics)")
    if failures:
        print("soak: FAILED: " + "; ".join(failures), file=sys.stderr)
        print("daemon log (tail):\n" + tail, file=sys.stderr)
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
