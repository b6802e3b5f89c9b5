#!/usr/bin/env python3
"""Benchmark of the analysis transform: the whole-frame int8 graph against the old tile graph.

Command (from the repository root; one thread, about a minute):

    python tools/bench_analysis.py [--reps 31] [--old-rev 451b9ab]

Per 1088x1920 frame (a natural-looking synthetic residual; the work does not depend on the
content), medians over interleaved repetitions of:

* new: ``AnalysisTransform.__call__`` (input copy + invoke), the same with the input written
  into ``input_buffers()`` (no copy), and the interpreter's invoke alone;
* old: the tile graph (models/snis896.tflite and snisd/codec/analysis.py of git revision
  ``--old-rev``, the last one with it, read with ``git show``) -- its ``__call__`` (numpy tiling,
  invoke, reassembly to float latents) and its invoke alone;

wall time and thread CPU time (the machine may be shared; CPU time is the steadier figure).
Then the multiply-accumulates of each graph, counted from its operators (CONV_2D: output
elements x kernel taps x input channels per group; DEPTHWISE_CONV_2D: output elements x taps),
per luma pixel for luma, per chroma pixel for chroma, and per frame (luma) pixel in total.

    python tools/bench_analysis.py --forms

times instead the graph forms the shipped one was chosen from, stage by stage, as one-stage
graphs with random int8 weights on a 1088x1920 frame (invoke only; the work does not depend
on the weights), with the MACs per output value of each form.

LiteRT runs as in the encoder, off Intel AMX tiles (snisd/codec/amx.py); `SNISD_AMX=1` in the
environment measures it on them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from snisd.codec import analysis as ana
from snisd.codec.amx import refuse_amx

H, W = 1088, 1920


def residual_frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth residual with texture, clipped to the int8 input range (int16 planes)."""
    rng = np.random.default_rng(seed)

    def plane(h, w, amp):
        low = rng.normal(0, 1, (h // 16 + 1, w // 16 + 1))
        img = np.kron(low, np.ones((16, 16)))[:h, :w] * amp + rng.normal(0, amp / 4, (h, w))
        return np.clip(np.rint(img), -128, 127).astype(np.int16)

    return plane(H, W, 40), plane(H // 2, W // 2, 20), plane(H // 2, W // 2, 20)


def load_old(rev: str, tmp: str):
    """The tile-graph AnalysisTransform class and model file of git revision `rev`."""

    def show(path: str) -> bytes:
        return subprocess.run(["git", "-C", REPO, "show", f"{rev}:{path}"], check=True, capture_output=True).stdout

    model = os.path.join(tmp, "old_snis896.tflite")
    with open(model, "wb") as f:
        f.write(show("models/snis896.tflite"))
    src = os.path.join(tmp, "old_analysis.py")
    with open(src, "wb") as f:
        f.write(show("snisd/codec/analysis.py"))
    spec = importlib.util.spec_from_file_location("old_analysis", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.AnalysisTransform, model


def timed(fn, reps: int, sink: dict, key: str) -> None:
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.thread_time()
        fn()
        sink.setdefault(key, []).append((time.perf_counter() - w0, time.thread_time() - c0))


def sized_interpreter(model: bytes, shapes: dict[str, list[int]]):
    """An interpreter without delegates, inputs resized: every tensor then has its real shape
    (inside a delegated partition the intermediate tensors keep their nominal shapes)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    for d in it.get_input_details():
        it.resize_tensor_input(
            d["index"], shapes[d["name"]] if d["name"] in shapes else shapes[d["shape"][1]], strict=False
        )
    it.allocate_tensors()
    return it


def graph_macs(interp) -> dict[str, float]:
    """MACs of the conv operators of a sized interpreter, split by plane (tensor names)."""
    td = {t["index"]: t for t in interp.get_tensor_details()}
    macs = {"luma": 0, "chroma": 0}
    for op in interp._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w = td[op["inputs"][1]]["shape"]
        out = td[op["outputs"][0]]
        k = int(w[1] * w[2] * (w[3] if op["op_name"] == "CONV_2D" else 1))
        plane = "chroma" if "chroma" in out["name"] else "luma"
        macs[plane] += int(np.prod(out["shape"])) * k
    return macs


def frame_graph_macs(model_path=None, hp: int = H, wp: int = W) -> dict:
    """MACs and tensor bytes of the whole-frame analysis graph sized for an hp x wp frame."""
    tr = ana.AnalysisTransform(model_path)
    it = sized_interpreter(
        tr._model_for(hp, wp), {"luma": [hp // 8 + 3, 8, wp // 8 + 3, 8], "chroma": [2, hp // 2 + 12, wp // 2 + 12, 1]}
    )
    macs = graph_macs(it)
    arena = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in it.get_tensor_details())
    lp, cp = hp * wp, 2 * (hp // 2) * (wp // 2)
    return {
        "model": os.path.basename(tr.model_path),
        "frame": [wp, hp],
        "luma_macs": macs["luma"],
        "chroma_macs": macs["chroma"],
        "macs_per_luma_px": macs["luma"] / lp,
        "macs_per_chroma_px": macs["chroma"] / cp,
        "macs_per_frame_px": (macs["luma"] + macs["chroma"]) / lp,
        "ideal_macs_per_frame_px": 16 + 16 + 64 / 256 + (8 + 8 + 64 / 64) / 2,
        "tensor_bytes": arena,
    }


def old_graph_macs(interp) -> dict[str, float]:
    """The tile graph's MACs: its operators carry no plane names, the batch tells (N luma, 2N chroma)."""
    td = {t["index"]: t for t in interp.get_tensor_details()}
    tiles = (H // 64) * (W // 64)
    macs = {"luma": 0, "chroma": 0}
    luma_in = next(d for d in interp.get_input_details() if d["shape"][1] == 88)
    luma_ops = set()
    # walk the graph from the luma input: every op reachable from it is luma
    reach = {luma_in["index"]}
    for op in interp._get_ops_details():
        if any(i in reach for i in op["inputs"]):
            reach.update(op["outputs"])
            luma_ops.add(op["index"])
    for op in interp._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w = td[op["inputs"][1]]["shape"]
        out = td[op["outputs"][0]]["shape"]
        k = int(w[1] * w[2] * (w[3] if op["op_name"] == "CONV_2D" else 1))
        macs["luma" if op["index"] in luma_ops else "chroma"] += int(np.prod(out)) * k
    assert tiles == luma_in["shape"][0]
    return macs


def _forms() -> list[tuple[str, str, object]]:
    """(stage, form, builder(graph) -> (inputs, outputs)) for every measured graph form."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.normal(0, 0.3, shape)

    ly, lx, nb = H + 24, W + 24, W // 8 + 2
    ch, cw = H // 2, W // 2
    cy, cx, cb = ch + 12, cw + 12, cw // 4 + 2

    def row_1ch(g):
        x = g.activation("x", (1, ly, lx, 1))
        return [x], [g.conv(x, "r", w(8, 1, 16, 1), (1, 8), (1, ly, nb, 8))]

    def row_runs(g):
        x = g.activation("x", (ly // 8, 8, lx // 8, 8))
        return [x], [g.conv(x, "r", w(8, 1, 2, 8), (1, 1), (ly // 8, 8, nb, 8))]

    def col_depthwise(g):
        x = g.activation("x", (1, ly, nb, 8))
        return [x], [g.conv(x, "c", w(1, 16, 1, 64), (8, 1), (1, H // 8 + 2, nb, 64), depthwise=True)]

    def col_dense(g):
        x = g.activation("x", (1, ly, nb, 8))
        return [x], [g.conv(x, "c", w(64, 16, 1, 8), (8, 1), (1, H // 8 + 2, nb, 64))]

    def col_grouped(g):
        x = g.activation("x", (ly // 8, 8, nb, 8))
        b = g.reshape(g.transpose(x, "t", (0, 2, 3, 1)), "b", (1, ly // 8, nb, 64))
        return [x], [g.conv(b, "c", w(64, 2, 1, 8), (1, 1), (1, H // 8 + 2, nb, 64))]

    def luma_kept(g):
        x = g.activation("x", (ly // 8, 8, lx // 8, 8))
        r = g.conv(x, "r", w(8, 1, 2, 8), (1, 1), (ly // 8, 8, nb, 8))
        b = g.reshape(g.transpose(r, "t", (0, 2, 3, 1)), "b", (1, ly // 8, nb, 64))
        return [x], [g.conv(b, "c", w(64, 2, 1, 8), (1, 1), (1, H // 8 + 2, nb, 64))]

    def luma_direct(g):
        x = g.activation("x", (1, ly, lx // 8, 8))
        r = g.conv(x, "r", w(64, 8, 2, 8), (8, 1), (1, ly // 8, nb, 64))
        return [x], [g.conv(r, "c", w(64, 2, 1, 8), (1, 1), (1, H // 8 + 2, nb, 64))]

    def coarse(g, x, batch, name):
        return g.conv(g.channel0(x, name + "dc"), name + "k", w(4, 4, 4, 1), (2, 2), (batch, H // 16, W // 16, 4))

    def chroma_2d_s2d(g):
        x = g.activation("x", (2, cy, cx, 1))
        c = g.conv(g.space_to_depth(x, "s", 4), "c", w(16, 2, 2, 16), (1, 1), (2, ch // 4 + 2, cb, 16))
        return [x], [c, coarse(g, c, 2, "")]

    def chroma_2d_runs(g):
        x = g.activation("x", (2, cy, cx // 4, 4))
        c = g.conv(x, "c", w(16, 8, 2, 4), (4, 1), (2, ch // 4 + 2, cb, 16))
        return [x], [c, coarse(g, c, 2, "")]

    def chroma_sep(column):
        def build(g):
            x = g.activation("x", (2, cy, cx // 4, 4))
            r = g.conv(x, "r", w(4, 1, 2, 4), (1, 1), (2, cy, cb, 4))
            if column == "depthwise":
                c = g.conv(r, "c", w(1, 8, 1, 16), (4, 1), (2, ch // 4 + 2, cb, 16), depthwise=True)
            elif column == "dense":
                c = g.conv(r, "c", w(16, 8, 1, 4), (4, 1), (2, ch // 4 + 2, cb, 16))
            else:
                r4 = g.reshape(r, "r4", (2 * cy // 4, 4, cb, 4))
                b = g.reshape(g.transpose(r4, "t", (0, 2, 3, 1)), "b", (2, cy // 4, cb, 16))
                c = g.conv(b, "c", w(16, 2, 1, 4), (1, 1), (2, ch // 4 + 2, cb, 16))
            return [x], [c, coarse(g, c, 2, "")]

        return build

    return [
        ("luma row", "CONV_2D (1, 16) / (1, 8) on the 1-channel plane, 16 MAC/out", row_1ch),
        ("luma row", "CONV_2D (1, 2) 8 -> 8 on runs of 8 pixels (shipped), 16 MAC/out", row_runs),
        ("luma column", "DEPTHWISE_CONV_2D (16, 1) / (8, 1), depth multiplier 8, 16 MAC/out", col_depthwise),
        ("luma column", "dense CONV_2D (16, 1) / (8, 1) 8 -> 64, block-diagonal, 128 MAC/out", col_dense),
        ("luma column", "TRANSPOSE + RESHAPE + grouped CONV_2D (2, 1) (shipped), 16 MAC/out", col_grouped),
        ("luma row + column", "row runs of 8 + TRANSPOSE + grouped (shipped), 16 + 16 MAC", luma_kept),
        (
            "luma row + column",
            "row CONV_2D (8, 2) / (8, 1) 8 -> 64 into the block layout + grouped, 128 + 16 MAC",
            luma_direct,
        ),
        (
            "chroma (all)",
            "SPACE_TO_DEPTH 4 + 2-D CONV_2D (2, 2) 16 -> 16 (shipped), 64 MAC/out + coarse",
            chroma_2d_s2d,
        ),
        ("chroma (all)", "2-D CONV_2D (8, 2) / (4, 1) on runs of 4 pixels, 64 MAC/out + coarse", chroma_2d_runs),
        (
            "chroma (all)",
            "separable: row + DEPTHWISE column (depth multiplier 4), 8 + 8 MAC + coarse",
            chroma_sep("depthwise"),
        ),
        ("chroma (all)", "separable: row + dense column CONV_2D 4 -> 16, 8 + 32 MAC + coarse", chroma_sep("dense")),
        ("chroma (all)", "separable: row + TRANSPOSE + grouped column, 8 + 8 MAC + coarse", chroma_sep("grouped")),
    ]


def bench_forms(reps: int, threads: int) -> None:
    """Invoke time of every graph form of _forms(), interleaved over `reps` rounds."""
    from ai_edge_litert.interpreter import Interpreter
    from export_model import TFLiteGraph

    runs = []
    for stage, form, build in _forms():
        g = TFLiteGraph()
        ins, outs = build(g)
        it = Interpreter(model_content=g.serialize(ins, outs), num_threads=threads)
        it.allocate_tensors()
        rng = np.random.default_rng(1)
        for d in it.get_input_details():
            it.set_tensor(d["index"], rng.integers(-128, 128, d["shape"]).astype(np.int8))
        it.invoke()
        delegated = [o["op_name"] for o in it._get_ops_details()][-1] == "DELEGATE"
        runs.append((stage, form, it, delegated, []))
    for _ in range(reps):
        for *_, it, _, times in runs:
            t0 = time.perf_counter()
            it.invoke()
            times.append(time.perf_counter() - t0)
    print(f"graph forms, {H}x{W} frame, {threads} thread(s), invoke medians of {reps} interleaved runs\n")
    print("| stage | form | ms |")
    print("| --- | --- | --- |")
    for stage, form, _, delegated, times in runs:
        note = "" if delegated else " (not all in XNNPACK)"
        print(f"| {stage} | {form}{note} | {np.median(times) * 1e3:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--old-rev", default="451b9ab", help="git revision with the tile graph (default 451b9ab)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--forms", action="store_true", help="time the alternative graph forms instead")
    args = ap.parse_args(argv)
    # as the encoder runs LiteRT: off AMX tiles unless SNISD_AMX=1 (snisd/codec/amx.py)
    print(f"LiteRT AMX: {refuse_amx()}")
    if args.forms:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        bench_forms(args.reps, args.threads)
        return 0

    y, u, v = residual_frame()
    yp, uvp = ana.pad_planes(y, u, v)
    new = ana.AnalysisTransform(num_threads=args.threads)
    new(yp, uvp)
    yin, uvin = new.input_buffers(H, W)
    yin[...], uvin[...] = yp, uvp
    invoke = new._interp._interpreter.Invoke

    with tempfile.TemporaryDirectory(prefix="bench_analysis_") as tmp:
        old_cls, old_model = load_old(args.old_rev, tmp)
        old = old_cls(old_model, num_threads=args.threads)
        old(y, u, v)
        old_interp = old._interp
        res: dict[str, list] = {}
        for _ in range(args.reps):  # interleaved, so load changes hit both alike
            timed(lambda: new(yp, uvp), 1, res, "new: __call__ (input copy + invoke)")
            timed(lambda: new(yin, uvin), 1, res, "new: __call__, input written in place")
            timed(invoke, 1, res, "new: invoke only")
            timed(lambda: old(y, u, v), 1, res, "old: __call__ (tiling + invoke + reassembly)")
            timed(old_interp.invoke, 1, res, "old: invoke only")
        print(f"per {H}x{W} frame, {args.threads} thread(s), medians of {args.reps} interleaved runs\n")
        print("| what | wall ms | thread CPU ms |")
        print("| --- | --- | --- |")
        for k, vals in res.items():
            a = np.array(vals) * 1e3
            print(f"| {k} | {np.median(a[:, 0]):.2f} | {np.median(a[:, 1]):.2f} |")

        lp, cp = H * W, (H // 2) * (W // 2)
        print("\n| graph | ops | luma MAC / luma px | chroma MAC / chroma px | total MAC / frame px |")
        print("| --- | --- | --- | --- | --- |")
        new_sized = sized_interpreter(
            new._model_for(H, W), {"luma": [H // 8 + 3, 8, W // 8 + 3, 8], "chroma": [2, H // 2 + 12, W // 2 + 12, 1]}
        )
        tiles = (H // 64) * (W // 64)
        with open(old_model, "rb") as f:
            old_sized = sized_interpreter(f.read(), {88: [tiles, 88, 88, 1], 44: [2 * tiles, 44, 44, 1]})
        for name, interp, macs in (
            ("new (whole frame)", new._interp, graph_macs(new_sized)),
            ("old (510 tiles)", old_interp, old_graph_macs(old_sized)),
        ):
            ops = [o["op_name"] for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]
            total = (macs["luma"] + macs["chroma"]) / lp
            print(f"| {name} | {len(ops)} | {macs['luma'] / lp:.2f} | {macs['chroma'] / (2 * cp):.2f} | {total:.2f} |")
        print(
            "\nideal separable transform: luma 16 + 16 + 0.25 = 32.25 MAC / luma px, chroma 8 + 8 + 1 = 17 MAC /"
            " chroma px, 32.25 + 17 / 2 = 40.75 MAC / frame px"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
