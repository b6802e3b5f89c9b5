"""Codec speed at 1080p: SNIS encode (3 tiers and 1 tier) and decode per stage, against x264
ultrafast and FFmpeg's H.264 decoder on the same frames, in one run.

    python tools/bench_speed.py --clip CLIP --frames 30              # one core (pinned to CPU 0)
    python tools/bench_speed.py --clip CLIP --frames 30 --threads 2  # both cores

The 1080p frames are the clip's first N frames upscaled to 1920x1080 with Lanczos (FFmpeg's
swscale through PyAV), held in memory so every coder sees the same frames. x264 runs in the same
process through PyAV's libx264 (`-preset ultrafast -tune zerolatency`, one thread); its output is
decoded by FFmpeg's H.264 decoder (one thread). Medians over the P-frames are reported (the
first frame, a keyframe, is listed on its own, and keyframes are the median of three forced on
the warm encoder afterwards); ratios are of medians from this run. `litert_amx` says whether the
encoder kept XNNPACK off AMX tiles (snisd/codec/amx.py; `SNISD_AMX=1` measures it on them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from snisd.capture.file import video_frame_to_frame
from snisd.codec.amx import refuse_amx
from snisd.codec.decoder import Decoder
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning
from snisd.codec.presets import tuning_for

STAGES = ("motion_us", "predict_us", "analysis_us", "quantize_us", "entropy_us", "synthesis_us")


def frames_1080p(clip: str, n: int) -> list:
    out = []
    with av.open(clip) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i >= n:
                break
            big = vf.reformat(width=1920, height=1080, format="yuv420p", interpolation="LANCZOS")
            out.append(video_frame_to_frame(big, i * 50_000))
    return out


def x264(frames, qp: int) -> tuple[list[float], list[float], int]:
    """Per-frame x264 ultrafast encode ms, FFmpeg H.264 decode ms of its output, and bytes."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 1920, 1080, "yuv420p"
    codec.time_base = Fraction(1, 20)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1", "qp": str(qp)}
    codec.thread_count = 1
    times, packets = [], []
    for i, f in enumerate(frames):
        vf = av.VideoFrame(1920, 1080, "yuv420p")
        for plane, arr in zip(vf.planes, (f.y, f.u, f.v), strict=True):
            buf = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
            buf[: arr.shape[0], : arr.shape[1]] = arr
        vf.pts = i
        t0 = time.perf_counter()
        out = codec.encode(vf)
        times.append((time.perf_counter() - t0) * 1000)
        packets.extend(out)
    packets.extend(codec.encode(None))
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    dtimes = []
    for p in packets:
        t0 = time.perf_counter()
        dec.decode(p)
        dtimes.append((time.perf_counter() - t0) * 1000)
    return times, dtimes, sum(p.size for p in packets)


def snis(frames, tiers: int, qp: int, threads: int, tuning: Tuning):
    enc = Encoder(EncoderConfig(1920, 1080, 20, 1, tiers=tiers, qp=qp, threads=threads, tuning=tuning))
    total, coded = [], []
    for f in frames:
        t0 = time.perf_counter()
        coded.append(enc.encode(f))
        total.append((time.perf_counter() - t0) * 1000)
    stages = list(enc.times.stages)
    return enc, total, coded, stages


def med(v: list[float]) -> float:
    return round(statistics.median(v[1:] if len(v) > 2 else v), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True, help="a natural video clip (any file PyAV reads)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="cores and codec threads (1 or 2 here)")
    ap.add_argument("--qp", type=int, default=30)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--preset", default="realtime", help="encoder preset (as snisd encode)")
    ap.add_argument("--tune", action="append", default=[], metavar="NAME=INT", help="encoder tuning (as snisd encode)")
    args = ap.parse_args()
    os.sched_setaffinity(0, set(range(args.threads)))
    frames = frames_1080p(args.clip, args.frames)
    tuning = tuning_for(args.preset, args.tune)
    enc, total, coded, stages = snis(frames, args.tiers, args.qp, args.threads, tuning)
    _, total1, coded1, _ = snis(frames, 1, args.qp, args.threads, tuning)
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis, threads=args.threads)
    dec_ms = []
    for ef in coded:
        t0 = time.perf_counter()
        dec.decode(ef)
        dec_ms.append((time.perf_counter() - t0) * 1000)
    # keyframes on the warm encoder (the first frame also pays the interpreters' set-up)
    kdec = Decoder(enc.sequence_header, synthesis=enc.synthesis, threads=args.threads)
    key_enc, key_dec = [], []
    for f in frames[1:4]:
        t0 = time.perf_counter()
        ef = enc.encode(f, force_keyframe=True)
        key_enc.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        kdec.decode(ef)
        key_dec.append((time.perf_counter() - t0) * 1000)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    os.sched_setaffinity(0, {0})
    xt, xd, xsize = x264(frames, args.qp)
    res = {
        "frames": len(total),
        "threads": args.threads,
        "qp": args.qp,
        "tiers": args.tiers,
        "preset": args.preset,
        "tune": args.tune,
        "load_avg": round(os.getloadavg()[0], 2),
        "litert_amx": refuse_amx(),  # "refused": XNNPACK ran its AVX-512 VNNI kernels (snisd/codec/amx.py)
        "snis_encode_ms": med(total),
        "snis_encode_1tier_ms": med(total1),
        "tiers_over_one_tier": round(med(total) / med(total1), 2),
        "snis_encode_stages_ms": {
            s[:-3]: round(statistics.median([st[s] for st in stages[1:]]) / 1000, 2) for s in STAGES
        },
        "skipped_mb_fraction": round(statistics.median([st["skipped_mbs"] / st["total_mbs"] for st in stages[1:]]), 3),
        "snis_first_frame_encode_ms": round(total[0], 1),
        "snis_keyframe_encode_ms": round(statistics.median(key_enc), 1),
        "snis_keyframe_decode_ms": round(statistics.median(key_dec), 1),
        "snis_decode_ms": med(dec_ms),
        "snis_kbytes": round(sum(e.size for e in coded) / 1024, 1),
        "snis_1tier_kbytes": round(sum(e.size for e in coded1) / 1024, 1),
        "x264_ultrafast_ms": med(xt),
        "ffmpeg_h264_decode_ms": med(xd),
        "x264_kbytes": round(xsize / 1024, 1),
        "encode_ratio_snis_over_x264": round(med(total) / med(xt), 2),
        "decode_ratio_snis_over_ffmpeg": round(med(dec_ms) / med(xd), 2),
        "peak_rss_mb": round(rss_mb, 1),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
