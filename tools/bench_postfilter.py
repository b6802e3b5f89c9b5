"""Does a deblocking post filter earn its place? VMAF and PSNR-Y of decoded SNIS pictures with and
without a light deblocking filter across the 8x8 (luma) / 4x4 (chroma) block edges of the lapped
synthesis, at the same bits (the filter runs after decoding, so the rate is unchanged).

    python tools/bench_postfilter.py --media DIR --clip bikes.mp4 [--frames 30] [--qps 30,36,42,48]

The filter is H.264's weak edge filter in spirit: across an edge p1 p0 | q0 q1 with |p0 - q0| below
`alpha = k * step` and both sides' gradients below alpha/2, p0 and q0 move toward each other by
`clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, +-tc)`, `tc = k * step / 4` (step: the top tier's
quantiser step in pixels). Prints one line per point and the BD-rates of each strength k against
the unfiltered decode.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(REPO))

from rdlib import make_reference, psnr_y, vmaf, y4m_info  # noqa: E402

from snisd.bdrate import bd_rate  # noqa: E402


def read_y4m(path: Path) -> tuple[bytes, int, int, list[np.ndarray]]:
    data = path.read_bytes()
    end = data.index(b"\n") + 1
    info = y4m_info(path)
    size = info.width * info.height * 3 // 2
    frames, pos = [], end
    while pos < len(data):
        pos = data.index(b"\n", pos) + 1
        frames.append(np.frombuffer(data[pos : pos + size], np.uint8).copy())
        pos += size
    return data[:end], info.width, info.height, frames


def write_y4m(path: Path, header: bytes, frames: list[np.ndarray]) -> None:
    with open(path, "wb") as f:
        f.write(header)
        for fr in frames:
            f.write(b"FRAME\n")
            f.write(fr.tobytes())


def deblock_plane(plane: np.ndarray, n: int, tc: int, alpha: int) -> np.ndarray:
    p = plane.astype(np.int32)
    for axis in (1, 0):
        a = p if axis == 1 else p.T.copy()
        for x in range(n, a.shape[1] - 1, n):
            p1, p0, q0, q1 = a[:, x - 2], a[:, x - 1], a[:, x], a[:, x + 1]
            on = (np.abs(p0 - q0) < alpha) & (np.abs(p1 - p0) < alpha // 2 + 1) & (np.abs(q1 - q0) < alpha // 2 + 1)
            d = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -tc, tc) * on
            a[:, x - 1] = p0 + d
            a[:, x] = q0 - d
        p = a if axis == 1 else a.T.copy()
    return np.clip(p, 0, 255).astype(np.uint8)


def deblock(frame: np.ndarray, w: int, h: int, qp: int, k: int) -> np.ndarray:
    step = 0.625 * 2 ** (qp / 6)
    tc, alpha = max(1, int(k * step / 4)), max(2, int(k * step))
    y = frame[: w * h].reshape(h, w)
    u = frame[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
    v = frame[w * h * 5 // 4 :].reshape(h // 2, w // 2)
    return np.concatenate(
        [
            deblock_plane(y, 8, tc, alpha).ravel(),
            deblock_plane(u, 4, tc, alpha).ravel(),
            deblock_plane(v, 4, tc, alpha).ravel(),
        ]
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", required=True, help="directory with the test clips")
    ap.add_argument("--clip", required=True)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--qps", default="30,36,42,48")
    ap.add_argument("--strengths", default="1,2", help="filter strengths k to try")
    args = ap.parse_args()
    qps = [int(q) for q in args.qps.split(",")]
    ks = [int(k) for k in args.strengths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ref = work / "ref.y4m"
        info = make_reference(Path(args.media) / args.clip, ref, args.frames)
        fps = info.fps
        points: dict[int, list[tuple[float, float, float]]] = {k: [] for k in [0, *ks]}
        for qp in qps:
            stream, dec = work / f"{qp}.snis", work / f"{qp}.y4m"
            cli = [sys.executable, "-m", "snisd"]
            subprocess.run(
                [*cli, "encode", str(ref), "-o", str(stream), "--qp", str(qp), "--frames", str(args.frames)],
                check=True,
                cwd=REPO,
                capture_output=True,
            )
            subprocess.run([*cli, "decode", str(stream), "-o", str(dec)], check=True, cwd=REPO, capture_output=True)
            kbps = os.path.getsize(stream) * 8 / 1000 / (args.frames / fps)
            header, w, h, frames = read_y4m(dec)
            for k in [0, *ks]:
                out = dec
                if k:
                    out = work / f"{qp}_k{k}.y4m"
                    write_y4m(out, header, [deblock(f, w, h, qp, k) for f in frames])
                vm = vmaf(ref, out, work / f"{qp}_{k}.json")["vmaf"]
                ps = psnr_y(ref, out)[0]
                points[k].append((kbps, vm, ps))
                print(f"{args.clip} qp={qp} k={k} {kbps:.1f} kbps VMAF {vm:.2f} PSNR-Y {ps:.2f}", flush=True)
    r0 = [p[0] for p in points[0]]
    for k in ks:
        bv = bd_rate(r0, [p[1] for p in points[0]], r0, [p[1] for p in points[k]])
        bp = bd_rate(r0, [p[2] for p in points[0]], r0, [p[2] for p in points[k]])
        print(f"{args.clip} deblocking k={k} vs none: BD-rate VMAF {bv:+.1f} %, PSNR-Y {bp:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
