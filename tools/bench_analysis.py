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

    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    for d in it.get_input_details():
        it.resize_tensor_input(d["index"], shapes[d["name"]] if d["name"] in shapes else shapes[d["shape"][1]],
                               strict=False)
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
    it = sized_interpreter(tr._model_for(hp, wp), {"luma": [hp // 8 + 3, 8, wp // 8 + 3, 8],
                                                    "chroma": [2, hp // 2 + 12, wp // 2 + 12, 1]})
    macs = graph_macs(it)
    arena = sum(int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in it.get_tensor_details())
    lp, cp = hp * wp, 2 * (hp // 2) * (wp // 2)
    return {"model": os.path.basename(tr.model_path), "frame": [wp, hp],
            "luma_macs": macs["luma"], "chroma_macs": macs["chroma"],
            "macs_per_luma_px": macs["luma"] / lp, "macs_per_chroma_px": macs["chroma"] / cp,
            "macs_per_frame_px": (macs["luma"] + macs["chroma"]) / lp,
            "ideal_macs_per_frame_px": 16 + 16 + 64 / 256 + (8 + 8 + 64 / 64) / 2,
            "tensor_bytes": arena}


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--old-rev", default="451b9ab", help="git revision with the tile graph (default 451b9ab)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

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
        new_sized = sized_interpreter(new._model_for(H, W), {"luma": [H // 8 + 3, 8, W // 8 + 3, 8],
                                                             "chroma": [2, H // 2 + 12, W // 2 + 12, 1]})
        tiles = (H // 64) * (W // 64)
        with open(old_model, "rb") as f:
            old_sized = sized_interpreter(f.read(), {88: [tiles, 88, 88, 1], 44: [2 * tiles, 44, 44, 1]})
        for name, interp, macs in (("new (whole frame)", new._interp, graph_macs(new_sized)),
                                   ("old (510 tiles)", old_interp, old_graph_macs(old_sized))):
            ops = [o["op_name"] for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]
            total = (macs["luma"] + macs["chroma"]) / lp
            print(f"| {name} | {len(ops)} | {macs['luma'] / lp:.2f} | {macs['chroma'] / (2 * cp):.2f} | {total:.2f} |")
        print("\nideal separable transform: luma 16 + 16 + 0.25 = 32.25 MAC / luma px, chroma 8 + 8 + 1 = 17 MAC /"
              " chroma px, 32.25 + 17 / 2 = 40.75 MAC / frame px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
