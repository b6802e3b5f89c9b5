"""Test vector for tools/native/core_check.c: a short stream coded by the Python encoder.

    python tools/native/make_vector.py OUT [--size 160x96] [--frames 8]

The file is this check's own (the product's framing is `snisd.codec.bitstream`'s): all
integers 4-byte little-endian,

    "SNISTV01", width, height, tiers, tier_step_log2, frames,
    weights length, the synthesis weights packed as `snis_weights`,
    per frame: frame type (0 I, 1 P, 2 K), qp, tier count, per tier its length and payload,
               then the SHA-256 of the encoder's reconstruction (Y, U, V planes in turn).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
if any((ROOT / "snisd" / "codec").glob("_native*")):  # this checkout, built in place
    sys.path.insert(0, str(ROOT))
else:
    try:  # an installed snisd (a non-editable install has the built native core; the checkout not)
        import snisd  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT))

from snisd.capture.file import iter_frames  # noqa: E402
from snisd.codec.bitstream import FrameHeader, tier_payload  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig, Tuning  # noqa: E402

CLIP = ROOT / "tests" / "data" / "bikes_12f.mp4"
MAGIC = b"SNISTV01"


def write_vector(out: Path, width: int = 160, height: int = 96, frames: int = 8, tiers: int = 3, qp: int = 30) -> None:
    # adaptive quantisation, intra prediction and every motion tool on (most are off by default),
    # so the cross-platform check covers them: AQ's offsets are derived from the prediction on both
    # ends and must agree bit for bit; intra prediction codes keyframes in bands; 16x16 and 8x8
    # partitions and quarter-pel vectors take the small-block compensation paths
    tuning = Tuning(aq_strength=8, intra_pred=1, qpel=1, split=2, split8=2, obmc=1)
    enc = Encoder(EncoderConfig(width, height, 25, 1, tiers=tiers, qp=qp, switch_interval=3, tuning=tuning))
    seq = enc.sequence_header
    parts = [
        MAGIC,
        struct.pack("<6I", width, height, tiers, seq.tier_step_log2, frames, len(enc.synthesis.packed)),
        enc.synthesis.packed,
    ]
    n = 0
    for frame in iter_frames(CLIP, frames, width, height):
        ef = enc.encode(frame)
        fh = FrameHeader.from_bytes(ef.tiers[0])
        ftype = 0 if fh.keyframe else ((3 if fh.coarse_key else 2) if fh.switch_point else 1)
        parts.append(struct.pack("<3I", ftype, fh.qp, len(ef.tiers)))
        for k, chunk in enumerate(ef.tiers):
            p = tier_payload(chunk, k, fh.frame_no)
            parts += [struct.pack("<I", len(p)), p]
        rec = enc.reconstruction()
        parts.append(hashlib.sha256(rec.y.tobytes() + rec.u.tobytes() + rec.v.tobytes()).digest())
        n += 1
    if n != frames:
        raise SystemExit(f"{CLIP} gave {n} frames, {frames} wanted")
    out.write_bytes(b"".join(parts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--size", default="160x96")
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    write_vector(Path(args.out), w, h, args.frames)
    print(f"{args.out}: {w}x{h}, {args.frames} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
