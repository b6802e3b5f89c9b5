#!/usr/bin/env python3
"""Cost model of the SNIS engine per 1080p frame: measured host stage times and the board estimates.

    python3 tools/cost_model.py --clip CLIP [--frames 30] [--qp 30] [--tiers 3] [--json OUT.json]

1. **measured** (host, one thread): encodes and decodes the clip's first frames scaled to 1080p
   (swscale Lanczos, in memory), and takes each frame's thread CPU time (`time.thread_time`: steady
   on a shared machine, where wall clock is not) and the core's per-stage split (its own clocks),
   scaled to that CPU time; medians over the P-frames;
2. **counted** (from the model): multiply-accumulates of the int8 analysis graph, read from its
   convolution operators (snisd.codec.tflite_file / tools/bench_analysis.py);
3. **estimated** (boards, one core): every stage but the analysis scaled by
   R = (f_host * IPC_host) / (f_core * IPC_core) from the assumptions in docs/ARM.md; the analysis
   from its MAC count at the core's int8 multiply-accumulate rate (SMLAL without dot product on
   the A72/A73, SDOT on the A76) at an assumed 50 % of peak, or R-scaled if that is larger.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import frames_1080p  # noqa: E402

from snisd.codec.amx import refuse_amx  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig  # noqa: E402

STAGES = ("motion_us", "predict_us", "analysis_us", "quantize_us", "entropy_us", "synthesis_us")
HOST_GHZ = 3.0
# core: (GHz, IPC relative to the host core on this code, int8 MAC per cycle at peak)
CORES = {
    "A72 1.8 GHz (Pi 4)": (1.8, 0.40, 8),
    "A73 2.2 GHz (Odroid N2)": (2.2, 0.45, 8),
    "A76 2.4 GHz (Pi 5)": (2.4, 0.70, 32),
}
MAC_EFFICIENCY = 0.5


def analysis_macs(hp: int, wp: int) -> float:
    try:
        from bench_analysis import frame_graph_macs

        m = frame_graph_macs(None, hp, wp)
        return float(m["luma_macs"] + m["chroma_macs"])
    except Exception:  # noqa: BLE001 - the count is optional for the measured part
        return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--qp", type=int, default=30)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    frames = frames_1080p(args.clip, args.frames)
    enc = Encoder(EncoderConfig(1920, 1080, 20, 1, tiers=args.tiers, qp=args.qp))
    cpu, coded = [], []
    for f in frames:
        t0 = time.thread_time()
        coded.append(enc.encode(f))
        cpu.append((time.thread_time() - t0) * 1000)
    stages = list(enc.times.stages)[1:]
    dec = Decoder(enc.sequence_header, synthesis=enc.synthesis)
    dcpu, dst = [], []
    for ef in coded:
        t0 = time.thread_time()
        dec.decode(ef)
        dcpu.append((time.thread_time() - t0) * 1000)
        dst.append(dec._core.stats())
    dstages = dst[1:]
    enc_cpu = statistics.median(cpu[1:])
    dec_cpu = statistics.median(dcpu[1:])
    split = {s: statistics.median(st[s] for st in stages) for s in STAGES}
    total = sum(split.values())
    host = {s[:-3]: enc_cpu * v / total for s, v in split.items()}
    dsplit = {s: statistics.median(st[s] for st in dstages) for s in ("entropy_us", "predict_us", "synthesis_us")}
    dtotal = sum(dsplit.values())
    dhost = {s[:-3]: dec_cpu * v / dtotal for s, v in dsplit.items()}
    macs = analysis_macs(1088, 1920)
    rows = {}
    for name, (ghz, ipc, mac) in CORES.items():
        r = HOST_GHZ / (ghz * ipc)
        est = {s: v * r for s, v in host.items() if s != "analysis"}
        by_mac = macs / (mac * MAC_EFFICIENCY * ghz * 1e9) * 1000 if macs == macs else float("nan")
        est["analysis"] = max(by_mac, host["analysis"] * r) if by_mac == by_mac else host["analysis"] * r
        est["encode"] = sum(est.values())
        est["decode"] = sum(v * r for v in dhost.values())
        rows[name] = {k: round(v, 1) for k, v in est.items()}
    res = {
        "frames": len(frames),
        "qp": args.qp,
        "tiers": args.tiers,
        "litert_amx": refuse_amx(),
        "host_encode_cpu_ms": round(enc_cpu, 2),
        "host_decode_cpu_ms": round(dec_cpu, 2),
        "host_encode_stages_ms": {k: round(v, 2) for k, v in host.items()},
        "host_decode_stages_ms": {k: round(v, 2) for k, v in dhost.items()},
        "analysis_macs_per_frame": macs,
        "boards_ms": rows,
    }
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
