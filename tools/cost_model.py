#!/usr/bin/env python3
"""Cost model of SNIS-896 per frame: MACs, range-coder decisions, bytes touched, stage times.

    python3 tools/cost_model.py [--input CLIP] [--size 1920x1080] [--frames 6] [--qp 28]
                                [--tiers 3] [--json OUT.json]

What it does, on the host it runs on:

1. reads the first --frames frames of CLIP (default ../shared/media/cockatoo.mp4 next to the
   repository) and scales them to --size with swscale's Lanczos filter (PyAV), in memory;
2. **measured**: encodes them with the shipped model (after a JIT warm-up on a small clip so that
   compilation is not counted), decodes the stream, and prints the encoder's and decoder's
   per-stage times in ms/frame (the codec's own StageTimes);
3. **counted**: in a child process whose range coder is instrumented (code_bit / code_bypass are
   replaced by counting wrappers before the entropy coder is compiled, in a private numba cache),
   encodes the same frames again and counts, per frame and tier, the context-coded binary
   decisions and the bypass bits the range coder makes.  A decoder makes the same decisions by
   construction (one code path serves both directions, see rangecoder.py).  The same child counts
   the multiply-accumulates the integer synthesis actually performs (it skips all-zero blocks and
   all-zero frequency rows), from the latents handed to it;
4. **from the model**: MACs per frame pixel of the int8 analysis, counted from the conv operators
   of the whole-frame .tflite graph (tools/bench_analysis.py), next to the ideal separable count;
5. **estimated**: bytes read + written per frame per stage, from the array sizes (compulsory
   traffic of each stage's inputs and outputs; caches and re-reads ignored), and the LiteRT
   tensor arena from the interpreter's tensor list.

The ARM estimates in docs/ARM.md are derived from these numbers; this tool does not guess them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

STAGES_ENC = ("motion", "prediction", "analysis", "quantize", "entropy", "synthesis")
STAGES_DEC = ("entropy", "prediction", "synthesis")


# --------------------------------------------------------------------------- input
def load_frames(path: str, size: tuple[int, int], n: int):
    """First n frames of `path`, Lanczos-scaled to `size`, as snisd Frames."""
    import av

    from snisd.capture.file import video_frame_to_frame

    w, h = size
    out = []
    with av.open(path) as c:
        s = c.streams.video[0]
        fps = s.average_rate or 30
        for i, vf in enumerate(c.decode(s)):
            vf = vf.reformat(width=w, height=h, format="yuv420p", interpolation="LANCZOS")
            out.append(video_frame_to_frame(vf, int(i * 1_000_000 / fps)))
            if len(out) >= n:
                break
    return out, fps


def encoder_config(w: int, h: int, qp: int, tiers: int, fps) -> "object":
    from fractions import Fraction

    from snisd.codec.encoder import EncoderConfig

    f = Fraction(fps).limit_denominator(1001)
    return EncoderConfig(w, h, f.numerator, f.denominator, tiers=tiers, qp=qp)


# --------------------------------------------------------------------------- counting child
def count_child(args) -> dict:
    """Runs in a fresh process: instrument the range coder, encode, count."""
    from numba import njit

    from snisd.codec import rangecoder as rc

    orig_bit, orig_bypass = rc.code_bit, rc.code_bypass
    CTX, BYP = rc.STATE_SIZE, rc.STATE_SIZE + 1  # two extra state slots hold the counts

    @njit
    def counting_bit(st, buf, probs, ctx, bit):
        st[CTX] += 1
        return orig_bit(st, buf, probs, ctx, bit)

    @njit
    def counting_bypass(st, buf, bit):
        st[BYP] += 1
        return orig_bypass(st, buf, bit)

    # Rebind before anything that calls them is compiled: numba resolves globals at compile time.
    rc.code_bit, rc.code_bypass = counting_bit, counting_bypass
    rc.STATE_SIZE += 2
    from snisd.codec import entropy

    entropy.code_bit, entropy.code_bypass = counting_bit, counting_bypass
    encoders = []
    orig_new = rc.new_encoder

    def recording_new_encoder(capacity=1 << 16):
        st, buf = orig_new(capacity)
        encoders.append(st)
        return st, buf

    rc.new_encoder = recording_new_encoder

    from snisd.codec.encoder import Encoder
    from snisd.codec.synthesis import SynthesisTransform

    synth_macs = []
    orig_plane = SynthesisTransform.plane

    def counting_plane(self, ac, coarse, chroma):
        pw = self.chroma if chroma else self.luma
        synth_macs.append(int(_synthesis_macs(ac, coarse, pw.row.shape[0], pw.row.shape[1])))
        return orig_plane(self, ac, coarse, chroma)

    SynthesisTransform.plane = counting_plane

    frames, fps = load_frames(args.input, args.size, args.frames)
    w, h = args.size
    enc = Encoder(encoder_config(w, h, args.qp, args.tiers, fps))
    per_frame = []
    for f in frames:
        mark = len(synth_macs)
        encoders.clear()
        ef = enc.encode(f)
        # encode_tier retries with a larger buffer on overflow: the last encoder of each tier counts
        tiers = []
        sts = encoders[-len(ef.tiers):] if len(encoders) >= len(ef.tiers) else encoders
        for k, (chunk, st) in enumerate(zip(ef.tiers, sts)):
            tiers.append({"bytes": len(chunk), "ctx": int(st[CTX]), "bypass": int(st[BYP])})
        per_frame.append({"key": bool(ef.keyframe), "tiers": tiers,
                          "synthesis_macs": int(sum(synth_macs[mark:]))})
    return {"frames": per_frame}


def _synthesis_macs(ac: np.ndarray, coarse: np.ndarray, bs: int, taps: int) -> int:
    """MACs synthesize_plane performs on these latents (its loops, counted, not run)."""
    hb, wb, _ = ac.shape
    # 1. coarse -> DC: 16 MACs per non-zero coarse latent
    macs = 16 * int(np.count_nonzero(coarse))
    # DC of each block, exactly as synthesize_plane computes it
    acc = np.zeros((hb, wb), np.int64)
    ci, cj, ck = np.nonzero(coarse)
    if ci.size:
        for a in range(4):
            y = 2 * ci - 1 + a
            y = np.where(y < 0, -1 - y, np.where(y >= hb, 2 * hb - 1 - y, y))
            for b in range(4):
                x = 2 * cj - 1 + b
                x = np.where(x < 0, -1 - x, np.where(x >= wb, 2 * wb - 1 - x, x))
                # a DC reached by a non-zero coarse latent is taken as non-zero (an upper bound:
                # a sum can cancel or round to zero)
                np.add.at(acc, (y, x), 1)
    coef = np.zeros((hb, wb, bs * bs), bool)
    coef[..., 1:] = ac != 0
    coef[..., 0] = acc != 0
    nu = coef.reshape(hb, wb, bs, bs).any(axis=3).sum(axis=2)  # non-zero frequency rows per block
    # 2. per block with nu rows: column stage taps*bs*nu, row stage taps*taps*nu
    macs += int(nu.sum()) * (taps * bs + taps * taps)
    return macs


# --------------------------------------------------------------------------- model MACs
def analysis_macs(model_path: str | None = None, wp: int = 1920, hp: int = 1088) -> dict:
    """MACs of the whole-frame int8 analysis graph, counted from its operators (bench_analysis.py)."""
    from bench_analysis import frame_graph_macs

    return frame_graph_macs(model_path, hp, wp)


def synthesis_dense_macs_per_px() -> float:
    """Upper bound: every block coded, every frequency row non-zero."""
    luma = 64 / 256 + 8 * (16 * 8 + 16 * 16) / 64
    chroma = 64 / 64 + 4 * (8 * 4 + 8 * 8) / 16
    return luma + 2 * chroma / 4


# --------------------------------------------------------------------------- bytes touched
def bytes_touched(wp: int, hp: int, tiers: int, arena: int) -> dict:
    """Compulsory bytes read + written per frame and stage (array sizes; estimates)."""
    px = wp * hp
    pic8 = px * 3 // 2  # an I420 picture, uint8
    lat = px * (63 / 64 + 4 / 256) + 2 * (px / 4) * (15 / 16 + 4 / 64)  # latents per frame
    ctx = ((hp + 24) * (wp + 24) + 2 * (hp // 2 + 12) * (wp // 2 + 12)) / pic8  # padded model input
    b = {}
    b["motion"] = 2 * px + px // 64  # current and reference luma (search window reuse assumed)
    # per tier: reference (+ lower) picture in, prediction out; residual int16 out
    b["prediction"] = tiers * (2 * pic8 + pic8 + (pic8 + pic8 + 2 * pic8))
    # per tier: int16 residual in, padded int8 input, interpreter tensors, float32 latents out
    b["analysis"] = int(tiers * (2 * pic8 + 2 * ctx * pic8 + arena + 2 * 4 * lat))
    b["quantize"] = int(tiers * (4 * lat + 4 * lat))
    b["entropy"] = int(tiers * (2 * 4 * lat))  # this tier's and the lower tier's int32 latents
    # per tier: dequantise int32 -> int32, int64 canvas (with margins) written and re-read,
    # int32 plane out, prediction in + reconstruction out
    b["synthesis"] = int(tiers * (2 * 4 * lat + 2 * 8 * px * 1.5 + 4 * pic8 + 2 * pic8))
    return b


# --------------------------------------------------------------------------- timing
def measure(args) -> dict:
    from snisd.codec.decoder import Decoder
    from snisd.codec.encoder import Encoder

    frames, fps = load_frames(args.input, args.size, args.frames)
    w, h = args.size
    # JIT warm-up on a small picture (I and P frames, every tier), not counted
    small = [f.__class__(f.y[:128, :192].copy(), f.u[:64, :96].copy(), f.v[:64, :96].copy(), f.pts_us)
             for f in frames[:3]]
    t0 = time.perf_counter()
    wenc = Encoder(encoder_config(192, 128, args.qp, args.tiers, fps))
    wdec = Decoder(wenc.sequence_header)
    for f in small:
        wdec.decode(wenc.encode(f))
    warm = time.perf_counter() - t0

    enc = Encoder(encoder_config(w, h, args.qp, args.tiers, fps))
    dec = Decoder(enc.sequence_header)
    rows = []
    for f in frames:
        e0 = {s: getattr(enc.times, s) for s in STAGES_ENC}
        d0 = {s: getattr(dec.times, s) for s in STAGES_DEC}
        t, c = time.perf_counter(), time.thread_time()
        ef = enc.encode(f)
        te, ce = time.perf_counter() - t, time.thread_time() - c
        t, c = time.perf_counter(), time.thread_time()
        dec.decode(ef)
        td, cd = time.perf_counter() - t, time.thread_time() - c
        rows.append({"key": bool(ef.keyframe), "bytes": sum(len(c) for c in ef.tiers),
                     "enc_ms": {s: 1e3 * (getattr(enc.times, s) - e0[s]) for s in STAGES_ENC} | {"total": 1e3 * te, "cpu": 1e3 * ce},
                     "dec_ms": {s: 1e3 * (getattr(dec.times, s) - d0[s]) for s in STAGES_DEC} | {"total": 1e3 * td, "cpu": 1e3 * cd}})
    return {"warmup_s": warm, "frames": rows, "padded": [enc.wp, enc.hp], "loadavg": os.getloadavg()}


def versions() -> dict:
    import importlib.metadata as md
    import platform

    v = {"python": platform.python_version(), "machine": platform.machine()}
    for p in ("numpy", "numba", "llvmlite", "ai-edge-litert", "av"):
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            v[p] = None
    try:
        with open("/proc/cpuinfo") as f:
            v["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        v["cpu"] = None
    return v


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(HERE.parent.parent / "shared" / "media" / "cockatoo.mp4"))
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--qp", type=int, default=28)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--count-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.size = tuple(int(x) for x in args.size.lower().split("x"))
    if not os.path.exists(args.input):
        ap.error(f"{args.input}: not found (give --input)")

    if args.count_child:
        json.dump(count_child(args), sys.stdout)
        return 0

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cmd = [sys.executable, __file__, "--count-child", "--input", args.input, "--size",
               "x".join(map(str, args.size)), "--frames", str(args.frames), "--qp", str(args.qp),
               "--tiers", str(args.tiers)]
        counted = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    measured = measure(args)
    wp, hp = measured["padded"]
    model = analysis_macs(None, wp, hp)
    w, h = args.size
    traffic = bytes_touched(wp, hp, args.tiers, model["tensor_bytes"])

    res = {"versions": versions(), "size": [w, h], "padded": [wp, hp], "qp": args.qp, "tiers": args.tiers,
           "input": os.path.basename(args.input), "model": model,
           "synthesis_dense_macs_per_luma_px": synthesis_dense_macs_per_px(),
           "measured": measured, "counted": counted, "bytes_per_frame": traffic}

    v = res["versions"]
    print(f"host: {v['cpu']} ({v['machine']}), python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, "
          f"ai-edge-litert {v['ai-edge-litert']}, av {v['av']}")
    print(f"input: {res['input']} scaled to {w}x{h} (Lanczos), padded {wp}x{hp}, {args.frames} frames, "
          f"qp {args.qp}, {args.tiers} tiers; JIT warm-up {measured['warmup_s']:.1f} s (not counted)")
    print(f"\nanalysis MACs / frame pixel: {model['macs_per_frame_px']:.1f} as the int8 whole-frame graph runs "
          f"(border blocks included), {model['ideal_macs_per_frame_px']:.2f} ideal separable; per tier")
    px = wp * hp
    sm = [f["synthesis_macs"] for f in counted["frames"]]
    print(f"synthesis MACs / luma pixel: {res['synthesis_dense_macs_per_luma_px']:.2f} dense bound per tier; "
          f"counted {mean(sm) / px:.2f} per frame over all tiers "
          f"(I {mean(s for s, f in zip(sm, counted['frames']) if f['key']) / px:.2f}, "
          f"P {mean(s for s, f in zip(sm, counted['frames']) if not f['key']) / px:.2f})")

    print("\nrange-coder decisions per frame (counted; the decoder makes the same ones):")
    print("frame  type  " + "  ".join(f"tier{k}: ctx+bypass (bytes)" for k in range(args.tiers)) + "   total")
    for i, f in enumerate(counted["frames"]):
        cells = [f"{t['ctx']:>8} + {t['bypass']:<7} ({t['bytes']:>6})" for t in f["tiers"]]
        tot = sum(t["ctx"] + t["bypass"] for t in f["tiers"])
        print(f"{i:>5}  {'I' if f['key'] else 'P'}     " + "  ".join(cells) + f"   {tot}")

    print("\nmeasured ms/frame on this host (codec StageTimes, wall clock; cpu = the thread's CPU time for the"
          f" whole frame; I = frame 0, P = mean of the rest; load average {measured['loadavg'][0]:.1f}):")
    fr = measured["frames"]
    for name, stages, key in (("encode", STAGES_ENC + ("total", "cpu"), "enc_ms"), ("decode", STAGES_DEC + ("total", "cpu"), "dec_ms")):
        print(f"  {name}:")
        for s in stages:
            i_ms = mean(r[key][s] for r in fr if r["key"])
            p_ms = mean(r[key][s] for r in fr if not r["key"])
            print(f"    {s:<11} I {i_ms:8.1f}   P {p_ms:8.1f}")
    print("\nbytes read + written per frame (estimated from array sizes, all tiers):")
    for s, b in traffic.items():
        print(f"    {s:<11} {b / 1e6:8.1f} MB")
    print(f"    {'total':<11} {sum(traffic.values()) / 1e6:8.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
