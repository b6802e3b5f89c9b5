"""Codec speed at 1080p: SNIS encode and decode per stage, and x264 on the same frames, one run.

    python tools/bench_speed.py --frames 30            # one core (process pinned to CPU 0)
    python tools/bench_speed.py --frames 30 --cores 2  # both cores, LiteRT with 2 threads

The 1080p frames are the first N frames of ../shared/media/cockatoo.mp4 (1280x720) upscaled to
1920x1080 with Lanczos (FFmpeg's swscale through PyAV). x264 runs in the same process through
PyAV's libx264 with `-preset ultrafast -tune zerolatency`, single-threaded, on the same frames.
Medians are reported; the first frame (a keyframe) and numba's first-call loading are excluded
from the P-frame medians. Peak RSS is the process's maximum resident set size after SNIS encode and decode (frames
are generated one at a time; the coded frames are kept for the decode pass).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snisd.capture.file import iter_frames, video_frame_to_frame  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig  # noqa: E402
from snisd.frame import Frame  # noqa: E402

STAGES = ("motion", "prediction", "analysis", "quantize", "entropy", "synthesis")


def frames_1080p(clip: str, n: int):
    """The clip's first n frames upscaled to 1080p, generated lazily (not held in memory)."""
    with av.open(clip) as c:
        for i, vf in enumerate(c.decode(video=0)):
            if i >= n:
                break
            big = vf.reformat(width=1920, height=1080, format="yuv420p", interpolation="LANCZOS")
            yield video_frame_to_frame(big, i * 50_000)


def x264_ms(frames, qp: int) -> tuple[list[float], int]:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 1920, 1080, "yuv420p"
    codec.time_base = Fraction(1, 20)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1", "qp": str(qp)}
    codec.thread_count = 1
    times, size = [], 0
    for i, f in enumerate(frames):
        vf = av.VideoFrame(1920, 1080, "yuv420p")
        for plane, arr in zip(vf.planes, (f.y, f.u, f.v)):
            stride = plane.line_size
            buf = np.frombuffer(plane, dtype=np.uint8).reshape(-1, stride)
            buf[: arr.shape[0], : arr.shape[1]] = arr
        vf.pts = i
        t0 = time.perf_counter()
        packets = codec.encode(vf)
        times.append((time.perf_counter() - t0) * 1000)
        size += sum(p.size for p in packets)
    for p in codec.encode(None):
        size += p.size
    return times, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "media" / "cockatoo.mp4"))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--cores", type=int, default=1, choices=(1, 2))
    ap.add_argument("--qp", type=int, default=30)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    os.sched_setaffinity(0, set(range(args.cores)))
    enc = Encoder(EncoderConfig(1920, 1080, 20, 1, tiers=args.tiers, qp=args.qp, threads=args.cores))
    stage_ms = {s: [] for s in STAGES}
    total_ms, coded = [], []
    for f in frames_1080p(args.clip, args.frames):
        before = {s: getattr(enc.times, s) for s in STAGES}
        t0 = time.perf_counter()
        coded.append(enc.encode(f))
        total_ms.append((time.perf_counter() - t0) * 1000)
        for s in STAGES:
            stage_ms[s].append((getattr(enc.times, s) - before[s]) * 1000)
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
    dstage = {s: [] for s in ("entropy", "prediction", "synthesis")}
    dec_ms = []
    for ef in coded:
        before = {s: getattr(dec.times, s) for s in dstage}
        t0 = time.perf_counter()
        dec.decode(ef)
        dec_ms.append((time.perf_counter() - t0) * 1000)
        for s in dstage:
            dstage[s].append((getattr(dec.times, s) - before[s]) * 1000)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    os.sched_setaffinity(0, {0})
    xt, xsize = x264_ms(frames_1080p(args.clip, args.frames), args.qp)

    def med(v: list[float]) -> float:
        return round(statistics.median(v[1:] if len(v) > 2 else v), 2)

    res = {
        "frames": len(total_ms), "cores": args.cores, "qp": args.qp, "tiers": args.tiers,
        "load_avg": os.getloadavg()[0],
        "snis_encode_ms": med(total_ms), "snis_encode_stages_ms": {s: med(v) for s, v in stage_ms.items()},
        "snis_keyframe_encode_ms": round(total_ms[0], 1),
        "snis_decode_ms": med(dec_ms), "snis_decode_stages_ms": {s: med(v) for s, v in dstage.items()},
        "snis_kbytes": round(sum(e.size for e in coded) / 1024, 1),
        "x264_ultrafast_ms": med(xt), "x264_kbytes": round(xsize / 1024, 1),
        "encode_ratio_snis_over_x264": round(med(total_ms) / med(xt), 1),
        "peak_rss_mb_after_snis": round(rss_mb, 1),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
