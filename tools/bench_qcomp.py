#!/usr/bin/env python3
"""An upper bound for frame-level qp modulation by complexity (x264's `qcomp`), before building it.

    python tools/bench_qcomp.py --media DIR --clip bikes.mp4 [--qcomp 0.6] [--frames 150]

x264's CRF gives each frame a quantiser scale proportional to its complexity^(1 - qcomp), so a
frame that costs many bits at a fixed quantiser is coded coarser (its artefacts are masked by its
own motion) and a cheap one finer. SNIS codes every P-frame at the one qp of `--qp`. This measures
what the rule could gain at best: pass 1 codes the clip at each fixed qp of the RD sweep (3 tiers,
the default preset) and records each P-frame's bits, which is a better complexity measure than any
a live encoder has in advance; pass 2 codes each P-frame at qp + round(6 (1 - qcomp) log2(bits /
geometric mean of the P-frames' bits)), within +-6, keyframes and key pictures at their usual
offsets. Printed: BD-rate (VMAF, PSNR-Y) of pass 2 against pass 1 for the base tier, tiers 0-1 and
all tiers (negative: the modulation saves bits). VMAF from the libvmaf of imageio-ffmpeg's ffmpeg,
as tools/rd_benchmark.py.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rdlib  # noqa: E402

from snisd.bdrate import bd_rate  # noqa: E402
from snisd.capture.file import iter_frames  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning  # noqa: E402
from snisd.y4m import Y4mWriter  # noqa: E402

QPS = (26, 30, 34, 38, 42, 46)
TIERS = 3


def encode(frames, fps: tuple[int, int], qp: int, qps: list[int | None] | None = None):
    """The clip at qp, or at qps[i] per frame (None: the encoder's own rule for that frame)."""
    w, h = frames[0].width, frames[0].height
    enc = Encoder(EncoderConfig(w, h, fps[0], fps[1], tiers=TIERS, qp=qp, tuning=Tuning()))
    return enc, [enc.encode(f, qp=None if qps is None else qps[i]) for i, f in enumerate(frames)]


def modulated(coded, qp: int, qcomp: float) -> list[int | None]:
    """Pass 2's qp of each P-frame from pass 1's bits; keyframes and key pictures keep the
    encoder's fixed-qp offsets (None)."""
    p_bits = [sum(len(c) for c in ef.tiers) for ef in coded if not ef.switch_point]
    mean = math.exp(sum(math.log(b) for b in p_bits) / len(p_bits))
    out: list[int | None] = []
    for ef in coded:
        if ef.switch_point:  # keyframes are switch points too
            out.append(None)
            continue
        b = sum(len(c) for c in ef.tiers)
        out.append(max(0, min(63, qp + max(-6, min(6, round(6 * (1 - qcomp) * math.log2(b / mean)))))))
    return out


def measure(enc, coded, tiers: int, ref: Path, work: Path, tag: str) -> tuple[float, float, float]:
    """(kbit, VMAF, PSNR-Y) of the first `tiers` tiers."""
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
    path = work / f"{tag}.y4m"
    with open(path, "wb") as fo:
        out = Y4mWriter(fo, enc.config.width, enc.config.height, Fraction(enc.config.fps_num, enc.config.fps_den))
        for ef in coded:
            out.write(dec.decode(ef, tiers=tiers))
    kbit = sum(sum(len(c) for c in ef.tiers[:tiers]) for ef in coded) * 8 / 1000
    vmaf = rdlib.vmaf(ref, path, work / f"{tag}.json")["vmaf"]
    return kbit, vmaf, rdlib.psnr_y(ref, path)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", required=True, help="directory of the test clips")
    ap.add_argument("--clip", required=True)
    ap.add_argument("--qcomp", type=float, default=0.6, help="x264's default: 0.6; 1.0 = no modulation")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_qcomp_") as tmp:
        work = Path(tmp)
        ref = work / "ref.y4m"
        info = rdlib.make_reference(Path(args.media) / args.clip, ref, args.frames)
        frames = list(iter_frames(ref, args.frames))
        curves: dict[str, dict[int, list[tuple[float, float, float]]]] = {"fixed": {}, "qcomp": {}}
        for qp in QPS:
            enc, coded = encode(frames, info.fps_ratio, qp)
            enc2, coded2 = encode(frames, info.fps_ratio, qp, modulated(coded, qp, args.qcomp))
            for t in range(1, TIERS + 1):
                curves["fixed"].setdefault(t, []).append(measure(enc, coded, t, ref, work, f"f{qp}_{t}"))
                curves["qcomp"].setdefault(t, []).append(measure(enc2, coded2, t, ref, work, f"q{qp}_{t}"))
    cells = []
    for t, name in zip(range(1, TIERS + 1), ("base", "tiers 0-1", "all"), strict=True):
        a, b = curves["fixed"][t], curves["qcomp"][t]
        ra, rb = [x[0] for x in a], [x[0] for x in b]
        bv = bd_rate(ra, [x[1] for x in a], rb, [x[1] for x in b])
        bp = bd_rate(ra, [x[2] for x in a], rb, [x[2] for x in b])
        cells.append(f"{name} {bv:+.1f} % ({bp:+.1f})")
    print(f"{args.clip} qcomp {args.qcomp}: BD-rate VMAF (PSNR-Y) of the modulated qp: " + " / ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
