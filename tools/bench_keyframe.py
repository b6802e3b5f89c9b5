"""Keyframes with and without intra prediction: size, PSNR-Y and encode / decode time.

    python tools/bench_keyframe.py --clip CLIP --qps 24,30,36            # the clip's first frame
    python tools/bench_keyframe.py --clip CLIP --qps 30 --hd --repeat 5  # upscaled to 1920x1080

For each qp and each setting of the `intra_pred` tuning, the first frame is coded as a keyframe
(3 tiers, default tuning otherwise) on a warm encoder `--repeat` times; the size, the PSNR-Y of the
full reconstruction and the median encode and decode times (one thread) are printed as JSON. The
decoder's picture is checked against the encoder's. The two settings alternate, so a load on the
machine affects both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snisd.capture.file import iter_frames  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def measure(frame, qp: int, intra_pred: int, repeat: int, tiers: int) -> dict:
    enc = Encoder(
        EncoderConfig(frame.width, frame.height, 25, 1, tiers=tiers, qp=qp, tuning=Tuning(intra_pred=intra_pred))
    )
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
    dec.decode(enc.encode(frame))  # warm-up: the interpreters of both sizes
    te, td = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ef = enc.encode(frame, force_keyframe=True)
        te.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        got = dec.decode(ef)
        td.append((time.perf_counter() - t0) * 1000)
    rec = enc.reconstruction()
    if not np.array_equal(got.y, rec.y):
        raise SystemExit(f"qp {qp} intra_pred {intra_pred}: the decoder's picture differs from the encoder's")
    return {
        "bytes": ef.size,
        "psnr_y": round(psnr(rec.y, frame.y), 3),
        "encode_ms": round(statistics.median(te), 1),
        "decode_ms": round(statistics.median(td), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True)
    ap.add_argument("--qps", default="24,30,36")
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--hd", action="store_true", help="upscale to 1920x1080 (as tools/bench_speed.py)")
    args = ap.parse_args()
    if args.hd:
        from bench_speed import frames_1080p

        frame = frames_1080p(args.clip, 1)[0]
    else:
        frame = next(iter(iter_frames(args.clip, 1)))
    res: dict = {"size": f"{frame.width}x{frame.height}", "tiers": args.tiers, "qps": {}}
    for qp in (int(q) for q in args.qps.split(",")):
        r = {f"intra_pred={ip}": measure(frame, qp, ip, args.repeat, args.tiers) for ip in (0, 1)}
        off, on = r["intra_pred=0"], r["intra_pred=1"]
        r["bytes_change_pct"] = round(100 * (on["bytes"] / off["bytes"] - 1), 2)
        r["psnr_y_change_db"] = round(on["psnr_y"] - off["psnr_y"], 3)
        res["qps"][qp] = r
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
