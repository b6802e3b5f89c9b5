"""Drift of thinned streams: PSNR of a decoder that receives only tiers < k against the encoder's
picture of those tiers (its prediction from the full-tier reference), frame by frame.

    python tools/bench_drift.py --clip CLIP [--frames 100] [--qp 30] [--plot docs/img/drift.png]

The loop is closed on the top tier, so a decoder without the upper tiers predicts from a picture
that lacks their detail and drifts; key pictures (every second by default) predict from the base
tier of the previous key picture, which every decoder has, so the drift is gone there. This tool
measures that bound. Prints JSON; with --plot it draws the per-frame curves.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from snisd.capture.file import iter_frames
from snisd.codec.decoder import Decoder
from snisd.codec.encoder import Encoder, EncoderConfig


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--qp", type=int, default=30)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--switch", type=int, default=None, help="frames between key pictures (default: 1 s)")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()
    frames = list(iter_frames(args.clip, args.frames))
    from snisd.files import probe

    _, _, fps = probe(args.clip)
    f0 = frames[0]
    enc = Encoder(
        EncoderConfig(
            f0.width, f0.height, round(fps * 1000), 1000, tiers=args.tiers, qp=args.qp, switch_interval=args.switch
        )
    )
    decs = {k: Decoder(enc.sequence_header, synthesis=enc.synthesis) for k in range(1, args.tiers)}
    curves = {k: [] for k in decs}
    vs_source = {k: [] for k in range(1, args.tiers + 1)}
    keys = []
    for i, f in enumerate(frames):
        ef = enc.encode(f)
        if ef.keyframe or ef.switch_point:
            keys.append(i)
        for k, dec in decs.items():
            got = dec.decode(ef.thinned(k))
            want = enc.reconstruction(k)
            curves[k].append(psnr(want.y, got.y))
            vs_source[k].append(psnr(f.y, got.y))
        vs_source[args.tiers].append(psnr(f.y, enc.reconstruction().y))
    res = {
        "clip": args.clip,
        "frames": len(frames),
        "qp": args.qp,
        "tiers": args.tiers,
        "switch_interval": enc.config.switch_interval,
        "key_pictures": keys,
        "drift_psnr_min_db": {k: round(min(v), 2) for k, v in curves.items()},
        "drift_psnr_median_db": {k: round(float(np.median(v)), 2) for k, v in curves.items()},
        "exact_at_key_pictures": {k: all(curves[k][i] == 99.0 for i in keys) for k in curves},
        "psnr_vs_source_mean_db": {k: round(float(np.mean(v)), 2) for k, v in vs_source.items()},
    }
    print(json.dumps(res, indent=1))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.2))
        for k, v in curves.items():
            ax.plot(range(len(v)), np.minimum(v, 60), label=f"{k} of {args.tiers} tiers received")
        for i in keys:
            ax.axvline(i, color="0.8", lw=0.8, zorder=0)
        ax.set_xlabel("frame (grey lines: key pictures)")
        ax.set_ylabel("PSNR-Y vs encoder (dB; 60: exact)")
        ax.set_title(f"Drift of thinned streams, {args.clip.rsplit('/', 1)[-1]}, qp {args.qp}")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
