"""Entropy-coding efficiency: bits per non-zero latent level, per tier, and PSNR-Y, on one clip.

    python tools/bench_entropy.py --clip CLIP --frames 30 --qps 30,38 [--tiers 3] [--tune NAME=INT] [--by-kind]

Encodes the clip's first N frames at each qp (the native encoder counts the non-zero levels each
tier coded, `nz_levels` in its stats) and prints the payload bits of each tier (chunk headers
excluded) divided by its non-zero levels: the cost of a coded latent including its share of the
flags around it (coded-block flags, significance, last), and, for tier 0, the macroblock modes and
vectors. PSNR-Y is of the encoder's full-tier reconstruction against the input, so an encoder-only
change (`--tune`) shows its rate and its distortion together.

With `--by-kind` it splits the payload instead by the kind of frame (the keyframe, the key
pictures, the other P-frames) and by tier, and gives tier 0's bits of macroblock modes and
vectors (the intra / merge / split flags, merge indices, vector differences, intra modes:
`motion_bits` in the native encoder's stats, counted on the range coder), which every tier's
prediction uses and the base tier alone pays for; the key-picture and keyframe intervals follow
the clip's frame rate there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's snisd

from snisd.capture.file import iter_frames, probe  # noqa: E402
from snisd.codec.bitstream import FrameHeader, tier_payload  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning  # noqa: E402


def measure(clip: str, frames: int, qp: int, tiers: int, tuning: Tuning) -> dict:
    """Bits, non-zero levels and squared error summed over the first `frames` frames at one qp."""
    enc: Encoder | None = None
    bits = [0] * tiers
    nz = [0] * tiers
    sse = 0.0
    samples = 0
    n = 0
    for frame in iter_frames(clip, frames):
        if enc is None:
            enc = Encoder(EncoderConfig(frame.width, frame.height, tiers=tiers, qp=qp, tuning=tuning))
        ef = enc.encode(frame)
        fh = FrameHeader.from_bytes(ef.tiers[0])
        for k, chunk in enumerate(ef.tiers):
            bits[k] += 8 * len(tier_payload(chunk, k, fh.frame_no))
            nz[k] += enc.times.stages[-1]["nz_levels"][k]
        rec = enc.reconstruction()
        d = rec.y.astype(np.int32) - frame.y.astype(np.int32)
        sse += float(np.sum(d * d))
        samples += d.size
        n += 1
    mse = sse / max(samples, 1)
    return {
        "qp": qp,
        "frames": n,
        "bits": bits,
        "nz_levels": nz,
        "bits_per_nz": [b / z if z else math.nan for b, z in zip(bits, nz, strict=True)],
        "total_bits_per_nz": sum(bits) / max(sum(nz), 1),
        "psnr_y": 10 * math.log10(255 * 255 / mse) if mse > 0 else math.inf,
    }


KINDS = ("keyframe", "key picture", "P-frame")


def measure_by_kind(clip: str, frames: int, qp: int, tiers: int, tuning: Tuning) -> dict:
    """Payload bits per frame kind and tier, and tier 0's motion-syntax bits per kind."""
    _, _, fps = probe(clip)  # the key-picture and keyframe intervals follow the clip's rate
    enc: Encoder | None = None
    count = dict.fromkeys(KINDS, 0)
    bits = {k: [0] * tiers for k in KINDS}
    motion = dict.fromkeys(KINDS, 0.0)
    for frame in iter_frames(clip, frames):
        if enc is None:
            rate = {"fps_num": fps.numerator, "fps_den": fps.denominator}
            enc = Encoder(EncoderConfig(frame.width, frame.height, tiers=tiers, qp=qp, tuning=tuning, **rate))
        ef = enc.encode(frame)
        kind = KINDS[0] if ef.keyframe else KINDS[1] if ef.switch_point else KINDS[2]
        fh = FrameHeader.from_bytes(ef.tiers[0])
        count[kind] += 1
        for t, chunk in enumerate(ef.tiers):
            bits[kind][t] += 8 * len(tier_payload(chunk, t, fh.frame_no))
        motion[kind] += enc.times.stages[-1]["motion_bits"]
    return {"qp": qp, "frames": sum(count.values()), "count": count, "bits": bits, "motion_bits": motion}


def report_by_kind(r: dict) -> list[str]:
    total = sum(sum(b) for b in r["bits"].values()) or 1
    tiers = len(r["bits"][KINDS[0]])
    lines = [f"qp {r['qp']}: {total / 1000:.1f} kbit in {r['frames']} frames"]
    for kind in KINDS:
        n, b = r["count"][kind], r["bits"][kind]
        if not n:
            continue
        per_tier = " / ".join(f"{x / n / 8:.0f}" for x in b)
        base_motion = r["motion_bits"][kind] / b[0] if b[0] else 0.0
        lines.append(
            f"  {kind:11s} x{n:<3d} {100 * sum(b) / total:5.1f} % of the stream; bytes per frame, tier 0…{tiers - 1}: "
            f"{per_tier}; modes and vectors {100 * base_motion:.0f} % of tier 0"
        )
    tier_share = [sum(r["bits"][k][t] for k in KINDS) / total for t in range(tiers)]
    lines.append("  tiers' shares: " + " / ".join(f"{100 * s:.1f} %" for s in tier_share))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True, help="a natural video clip (any file PyAV reads)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--qps", default="30,38", help="comma-separated qps")
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--tune", action="append", default=[], metavar="NAME=INT", help="encoder tuning (as snisd encode)")
    ap.add_argument("--by-kind", action="store_true", help="split the bits by frame kind and tier instead")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    tuning = Tuning().with_overrides(args.tune)
    qps = [int(q) for q in args.qps.split(",")]
    if args.by_kind:
        rows = [measure_by_kind(args.clip, args.frames, q, args.tiers, tuning) for q in qps]
        for r in rows:
            print("\n".join(report_by_kind(r)))
    else:
        rows = [measure(args.clip, args.frames, q, args.tiers, tuning) for q in qps]
        for r in rows:
            cols = zip(r["bits"], r["nz_levels"], r["bits_per_nz"], strict=True)
            per_tier = " ".join(f"t{k}: {b / 1000:.1f} kbit / {z} nz = {bpn:.2f}" for k, (b, z, bpn) in enumerate(cols))
            print(
                f"qp {r['qp']}: {sum(r['bits']) / 1000:.1f} kbit, {r['total_bits_per_nz']:.3f} bits/nz, "
                f"PSNR-Y {r['psnr_y']:.3f} dB  ({per_tier})"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"clip": args.clip, "tune": args.tune, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
