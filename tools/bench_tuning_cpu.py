"""CPU time per 1080p P-frame of encoder tunings, interleaved frame by frame in one process.

    python tools/bench_tuning_cpu.py --clip CLIP --frames 20 --variant '' --variant 'mb_rd=4' ...

Each variant (comma-separated `NAME=INT` overrides; '' is the default tuning) gets its own encoder
(3 tiers, qp 30, one codec thread); every frame is encoded by all of them in turn, so on a shared,
loaded machine they see the same load, and the process's CPU time (getrusage) is less disturbed
by it than the wall clock. Medians over the P-frames, and over the key pictures (every 30th frame:
give --frames 61 or more) on their own, since some tools act only there; the core's own stage
clocks (wall, P-frames) beside:
motion estimation, prediction (compensation, residual, skip decisions), quantisation, entropy
coding, synthesis.
The frames are bench_speed.py's: the clip upscaled to 1920x1080.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's snisd
sys.path.insert(0, str(ROOT / "tools"))

from bench_speed import frames_1080p  # noqa: E402

from snisd.codec.encoder import Encoder, EncoderConfig, Tuning  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True, help="a natural video clip (any file PyAV reads)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--variant", action="append", default=[], help="comma-separated NAME=INT overrides")
    args = ap.parse_args()
    variants = [[x for x in v.split(",") if x] for v in (args.variant or [""])]
    frames = frames_1080p(args.clip, args.frames)
    encs = [
        Encoder(EncoderConfig(1920, 1080, tiers=3, qp=30, threads=1, tuning=Tuning().with_overrides(v)))
        for v in variants
    ]
    cpu: list[list[float]] = [[] for _ in variants]
    key_cpu: list[list[float]] = [[] for _ in variants]
    stages = ("motion", "predict", "quantize", "entropy", "synthesis")  # the core's wall clocks
    wall: list[dict[str, list[float]]] = [{k: [] for k in stages} for _ in variants]
    for f in frames:
        for i, enc in enumerate(encs):
            kind = enc.next_kind()
            t0 = cpu_s()
            enc.encode(f)
            t1 = cpu_s()
            if kind == "K":
                key_cpu[i].append((t1 - t0) * 1000)
            elif kind == "P":
                st = enc.times.stages[-1]
                cpu[i].append((t1 - t0) * 1000)
                for k in stages:
                    wall[i][k].append(st[f"{k}_us"] / 1000)
    for i, v in enumerate(variants):
        walls = ", ".join(f"{k} {statistics.median(wall[i][k]):6.2f}" for k in stages)
        keys = "no key picture"
        if key_cpu[i]:
            keys = f"{statistics.median(key_cpu[i]):7.2f} ms/key picture ({len(key_cpu[i])})"
        p_ms = statistics.median(cpu[i])
        print(f"{','.join(v) or 'default':32s} CPU {p_ms:7.2f} ms/P-frame, {keys}  (wall: {walls})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
