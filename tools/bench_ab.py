"""Paired speed A/B of two builds of the native core, in one process, frame by frame.

    python tools/bench_ab.py --a CHECKOUT_A --b CHECKOUT_B --clip CLIP [--frames 16] [--preset P] [--tune NAME=INT]
                             [--threads N]

Each CHECKOUT is a source tree whose extension is built in place (`python setup.py build_ext
--inplace`); this checkout's Python code drives both. On a shared machine whose speed drifts
between runs by more than the change being measured, two separate runs of tools/bench_speed.py
cannot tell a 3 % change; here both builds encode the same 1080p frames (the clip's first N
upscaled with Lanczos, as bench_speed) alternately, frame by frame, on one core (`--threads N`:
on N cores with N codec threads), and the three decoders of each build alternate in the same
way, so a slow spell of the machine hits both. It prints the medians of each build and the median
of the per-frame ratio B / A, over the P-frames and, for encoding, where the clip is long enough
to hold them (one a second, 20 frames), over the key pictures on their own; `--a` and `--b` the
same checkout measures the method's own spread. Streams are compared: a change meant to be exact
should print `streams identical: True`. Both builds must take the tuning fields this checkout's
`Tuning` sends (the binding refuses another count).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's snisd
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed import STAGES, frames_1080p  # noqa: E402

from snisd.codec import decoder as decoder_module  # noqa: E402
from snisd.codec import encoder as encoder_module  # noqa: E402
from snisd.codec.decoder import Decoder  # noqa: E402
from snisd.codec.encoder import Encoder, EncoderConfig  # noqa: E402
from snisd.codec.presets import tuning_for  # noqa: E402

DECODE_ROUNDS = 3


def load_core(checkout: str, name: str):
    """The `_native` extension built in `checkout`, loaded under its own module name."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    path = Path(checkout) / "snisd" / "codec" / f"_native{suffix}"
    if not path.is_file():
        raise SystemExit(f"{path}: no built extension (python setup.py build_ext --inplace in {checkout})")
    loader = importlib.machinery.ExtensionFileLoader(f"{name}._native", str(path))
    spec = importlib.util.spec_from_file_location(f"{name}._native", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def with_core(core, make):
    """`make()` with the codec modules bound to `core` (the objects keep the core they were made with)."""
    saved = encoder_module._native, decoder_module._native
    encoder_module._native = decoder_module._native = core
    try:
        return make()
    finally:
        encoder_module._native, decoder_module._native = saved


def paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(y / x for x, y in zip(a, b, strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="checkout of build A (the reference)")
    ap.add_argument("--b", required=True, help="checkout of build B")
    ap.add_argument("--clip", required=True, help="a natural video clip (any file PyAV reads)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--qp", type=int, default=30)
    ap.add_argument("--tiers", type=int, default=3)
    ap.add_argument("--preset", default="realtime")
    ap.add_argument("--tune", action="append", default=[], metavar="NAME=INT")
    ap.add_argument("--threads", type=int, default=1, help="cores and codec threads of both builds")
    args = ap.parse_args()
    if args.frames < 3:
        ap.error("--frames must be at least 3 (the first frame, a keyframe, is left out)")
    os.sched_setaffinity(0, set(range(args.threads)))
    cores = {"A": load_core(args.a, "build_a"), "B": load_core(args.b, "build_b")}
    frames = frames_1080p(args.clip, args.frames)
    tuning = tuning_for(args.preset, args.tune)
    cfg = EncoderConfig(1920, 1080, 20, 1, tiers=args.tiers, qp=args.qp, threads=args.threads, tuning=tuning)
    enc = {k: with_core(cores[k], lambda: Encoder(cfg)) for k in cores}
    enc_ms: dict[str, list[float]] = {k: [] for k in cores}
    stage_ms: dict[str, dict[str, list[float]]] = {s: {k: [] for k in cores} for s in STAGES}
    coded: dict[str, list] = {k: [] for k in cores}
    kinds: list[str] = []
    for i, frame in enumerate(frames):
        kinds.append(enc["A"].next_kind())
        for k in "AB" if i % 2 else "BA":
            t0 = time.perf_counter()
            coded[k].append(enc[k].encode(frame))
            enc_ms[k].append((time.perf_counter() - t0) * 1000)
            for s in STAGES:
                stage_ms[s][k].append(enc[k].times.stages[-1][s] / 1000)
    identical = all(x.tiers == y.tiers for x, y in zip(coded["A"], coded["B"], strict=True))
    dec_ms: dict[str, list[float]] = {k: [] for k in cores}
    for r in range(DECODE_ROUNDS):
        dec = {
            k: with_core(
                cores[k], lambda k=k: Decoder(enc[k].sequence_header, synthesis=enc[k].synthesis, threads=args.threads)
            )
            for k in cores
        }
        for i in range(len(frames)):
            for k in "AB" if (i + r) % 2 else "BA":
                t0 = time.perf_counter()
                dec[k].decode(coded[k][i])
                if kinds[i] == "P":
                    dec_ms[k].append((time.perf_counter() - t0) * 1000)
    # P-frames and key pictures apart: some tools act in key pictures only
    p_idx = [i for i, kind in enumerate(kinds) if kind == "P"]
    k_idx = [i for i, kind in enumerate(kinds) if kind == "K"]

    def pick(v: list[float], idx: list[int]) -> list[float]:
        return [v[i] for i in idx]

    def medians(series: dict[str, list[float]], idx: list[int]) -> dict[str, float]:
        return {k: round(statistics.median(pick(v, idx)), 2) for k, v in series.items()}

    def ratio(series: dict[str, list[float]], idx: list[int]) -> float:
        return round(paired_ratio(pick(series["A"], idx), pick(series["B"], idx)), 3)

    res = {
        "frames": len(frames),
        "preset": args.preset,
        "tune": args.tune,
        "streams_identical": identical,
        "encode_ms": medians(enc_ms, p_idx),
        "encode_b_over_a": ratio(enc_ms, p_idx),
        "stages_ms": {s[:-3]: medians(stage_ms[s], p_idx) for s in STAGES},
        "stages_b_over_a": {s[:-3]: ratio(stage_ms[s], p_idx) for s in STAGES},
        "decode_ms": {k: round(statistics.median(v), 2) for k, v in dec_ms.items()},
        "decode_b_over_a": round(paired_ratio(dec_ms["A"], dec_ms["B"]), 3),
    }
    if k_idx:
        res["key_pictures"] = len(k_idx)
        res["key_encode_ms"] = medians(enc_ms, k_idx)
        res["key_encode_b_over_a"] = ratio(enc_ms, k_idx)
        res["key_stages_ms"] = {s[:-3]: medians(stage_ms[s], k_idx) for s in STAGES}
    print(f"streams identical: {identical}")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
