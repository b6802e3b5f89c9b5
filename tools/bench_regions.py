"""PSNR-Y of the moving and the still parts of a picture, for decoded streams of one source.

    python tools/bench_regions.py REF.y4m DECODED.y4m [DECODED.y4m ...] [--threshold 3]

A 16x16 block of frame t is *moving* where the source's mean |difference| to frame t-1 exceeds
the threshold (8-bit levels), else still. For each decoded file it prints the moving share of
the picture and the PSNR-Y over the moving and over the still blocks of frames 1 … N-1 (the
first frame has no predecessor): where two codecs at the same rate differ. Decode the streams
to .y4m first (`snisd decode`, `ffmpeg -i X -pix_fmt yuv420p X.y4m`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rdlib import y4m_info, y4m_luma_frames  # noqa: E402

BLOCK = 16


def moving_blocks(ref: str, threshold: float) -> list[np.ndarray]:
    """Per frame from 1 on, the blocks (one flag per 16x16) whose source changed since the last
    frame: block flags, not pixel masks, so that a long clip stays small in memory."""
    blocks, prev = [], None
    for y in y4m_luma_frames(ref):
        cur = y.astype(np.int16)
        if prev is not None:
            h, w = (cur.shape[0] // BLOCK) * BLOCK, (cur.shape[1] // BLOCK) * BLOCK
            d = np.abs(cur[:h, :w] - prev[:h, :w]).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))
            blocks.append(d > threshold)
        prev = cur
    return blocks


def region_psnr(ref: str, dist: str, blocks: list[np.ndarray]) -> tuple[float, float, float]:
    """(moving share, PSNR-Y moving, PSNR-Y still) over frames 1 … len(blocks)."""
    err, cnt = [0.0, 0.0], [0, 0]
    for t, (a, b) in enumerate(zip(y4m_luma_frames(ref), y4m_luma_frames(dist), strict=False)):  # shorter file ends it
        if t == 0:
            continue
        if t > len(blocks):
            break
        e = (a.astype(np.float64) - b.astype(np.float64)) ** 2
        m = np.zeros(e.shape, bool)  # the pixels of the moving blocks (a partial block at the edge is still)
        f = blocks[t - 1]
        m[: f.shape[0] * BLOCK, : f.shape[1] * BLOCK] = np.kron(f, np.ones((BLOCK, BLOCK), bool))
        for k, sel in enumerate((m, ~m)):
            err[k] += float(e[sel].sum())
            cnt[k] += int(sel.sum())

    def psnr(k: int) -> float:
        return 10 * math.log10(255 * 255 * cnt[k] / err[k]) if cnt[k] and err[k] else math.inf

    return cnt[0] / max(cnt[0] + cnt[1], 1), psnr(0), psnr(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="the source as .y4m")
    ap.add_argument("decoded", nargs="+", help="decoded streams of it as .y4m, same size")
    ap.add_argument("--threshold", type=float, default=3.0, help="mean |frame difference| of a moving block")
    args = ap.parse_args()
    info = y4m_info(args.ref)
    blocks = moving_blocks(args.ref, args.threshold)
    for path in args.decoded:
        d = y4m_info(path)
        if (d.width, d.height) != (info.width, info.height):
            print(f"{path}: {d.width}x{d.height}, the source is {info.width}x{info.height}", file=sys.stderr)
            return 2
        share, moving, still = region_psnr(args.ref, path, blocks)
        print(f"{path}: moving {100 * share:.1f} % of the picture, PSNR-Y moving {moving:.2f} dB, still {still:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
