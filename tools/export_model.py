#!/usr/bin/env python3
"""Export the SNIS-896 analysis transform as a full-integer int8 TFLite model (whole frame).

Command (from the repository root; seeded, about a minute, no TensorFlow needed):

    python tools/export_model.py --media DIR      # DIR: the clips listed in models/README.md

Reads models/snis896_analysis_float.npz and writes
    models/snis896.tflite                         trained analysis, int8
    models/dct8.tflite, models/dct8_synthesis.npz ablation: the same graph with DCT weights
then evaluates on held-out frames (a) DCT float, (b) learned float, (c) learned int8 analysis +
float synthesis, (d) DCT int8 analysis + float synthesis, and prints the table of
models/README.md.

The flatbuffer is written directly with the TFLite schema (``ai_edge_litert.schema_py_generated``
and ``flatbuffers``), so every quantisation parameter is chosen here.  Graph per plane (block n =
8 luma, 4 chroma), on the whole symmetric-padded frame in one interpreter call:

1. row stage: CONV_2D kernel (1, 2n), stride (1, n), 1 -> n channels (row frequency u);
2. column stage: DEPTHWISE_CONV_2D kernel (2n, 1), stride (n, 1), depth multiplier n (output
   channel u*n + v); the column filter of group g(u) is repeated for every u of the group;
3. coarse stage: SLICE of channel 0 (the DC plane, border blocks included), CONV_2D 4x4 stride 2.

Every activation tensor has scale 1.0 and zero point 0; the per-channel gains (int8 steps per
pixel unit, set from the calibrated range of each channel) are folded into the weights: row
filter u is multiplied by gain_row[u], column filter (u, v) by gain_col[u*n+v] / gain_row[u],
coarse filter k by gain_coarse[k] / gain_col[0].  The per-channel dequantisation steps
(1 / gain) are stored in the model's metadata ``snis896.dequant`` (JSON), where
snisd.codec.analysis reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (REPO, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)

import train_transform as tt

from snisd.codec import analysis as ana
from snisd.codec import reference as ref
from snisd.codec import weights as wts
from snisd.errors import ModelError

INPUT_MIN, INPUT_MAX = -128, 127
CALIB_PERCENTILE = 100.0  # channel range = this percentile of |value| on the calibration frames
CALIB_FRAMES = 24  # per clip: training frames (first 40 %), evenly spaced, intra + residual


# ---------------------------------------------------------------------------
# calibration: per-channel ranges of every stage on natural frames (float reference)
# ---------------------------------------------------------------------------
def calibration_planes(media: str, per_clip: int = CALIB_FRAMES):
    """Natural calibration planes: training frames as intra (pixel - 128) and as residuals.

    Returns a list of (luma, [u, v]) int16 planes clipped to the int8 input range, cropped to
    multiples of 32 (the codec pads frames to that).
    """
    out = []
    for name in tt.CALIB_CLIPS:
        frames = tt.read_clip(os.path.join(media, name))
        n = len(frames) if name == "tree.avi" else int(len(frames) * tt.CALIB_FRACTION)
        for t in np.linspace(1, n - 1, per_clip).astype(int):
            cur, prev = frames[t], frames[t - 1]
            h, w = (cur[0].shape[0] // 32) * 32, (cur[0].shape[1] // 32) * 32
            intra = [p.astype(np.int16) - 128 for p in cur]
            resid = [a.astype(np.int16) - b.astype(np.int16) for a, b in zip(cur, prev, strict=True)]
            for planes in (intra, resid):
                y = np.clip(planes[0][:h, :w], INPUT_MIN, INPUT_MAX)
                c = [np.clip(p[: h // 2, : w // 2], INPUT_MIN, INPUT_MAX) for p in planes[1:]]
                out.append((y, c))
    return out


def channel_ranges(weights, planes, percentile: float | dict[str, float] = CALIB_PERCENTILE, keep: int = 4096):
    """Per-channel range of the row, column and coarse outputs of each plane kind (float reference).

    The range is the given percentile of |value| over all calibration samples of the channel
    (100 = the maximum); `percentile` may be one number or one per stage ("row", "col", "coarse").
    Only the `keep` largest values per channel and frame are kept, which is exact for every
    percentile whose tail is shorter than that.
    """
    pct = percentile if isinstance(percentile, dict) else dict.fromkeys(("row", "col", "coarse"), percentile)
    res: dict[str, dict[str, np.ndarray]] = {}
    for prefix, (n, _) in wts.PLANES.items():
        tops: dict[str, list[np.ndarray]] = {"row": [], "col": [], "coarse": []}
        counts = dict.fromkeys(tops, 0)
        for y, c in planes:
            for x in [y] if prefix == "luma" else c:
                xp = np.pad(x.astype(np.float64), 3 * n // 2, mode="symmetric")
                r, coef, coarse = ref.analyze_plane_stages(xp, weights, prefix)
                for k, a in (
                    ("row", r.reshape(-1, n)),
                    ("col", coef.reshape(-1, n * n)),
                    ("coarse", coarse.reshape(-1, 4)),
                ):
                    a = np.abs(a)
                    counts[k] += a.shape[0]
                    if a.shape[0] > keep:
                        a = np.partition(a, a.shape[0] - keep, axis=0)[-keep:]
                    tops[k].append(a)
        res[prefix] = {}
        for k, parts in tops.items():
            a = -np.sort(-np.concatenate(parts), axis=0)  # descending per channel
            rank = int(np.floor(counts[k] * (1.0 - pct[k] / 100.0)))
            if rank >= a.shape[0]:
                raise ValueError(
                    f"percentile {pct[k]} of {prefix} {k} needs more than the kept tail ({keep} per frame)"
                )
            res[prefix][k] = np.maximum(a[rank], 1e-3)
    return res


def dequant_steps(ranges) -> dict[str, dict[str, list[float]]]:
    """Per-channel int8 step (pixel units per int8 unit): the range maps onto +-127.

    Chroma has no int8 row intermediate (one 2-D filter per coefficient), so no row steps.
    """
    return {
        p: {k: (np.asarray(v, np.float64) / 127.0).tolist() for k, v in d.items() if not (p == "chroma" and k == "row")}
        for p, d in ranges.items()
    }


# ---------------------------------------------------------------------------
# the TFLite flatbuffer
# ---------------------------------------------------------------------------
def _quantise_filter(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 (channel axis `axis`): (int8 array, float scale per channel)."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    peak = np.abs(w).max(axis=red)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale


def folded_filters(weights, steps) -> dict[str, np.ndarray]:
    """The float filters as stored in the model (layout of the TFLite operators), gains folded.

    Luma (separable, n = 8): ``luma_row`` (8, 1, 2, 8) [u, 0, p, q] = A_row[u, 8p+q] / step_row[u]
    (the input holds 8 pixels per channel vector); ``luma_ac`` (64, 2, 1, 8), a grouped CONV_2D
    with one group per u over the 8 rows of a block: [u*8+v, p, 0, t] = A_col[g(u)][v, 8p+t] *
    step_row[u] / step_col[u*8+v] (the u of one group share A_col[g]).
    Chroma (n = 4, one 2-D lapped filter per coefficient over SPACE_TO_DEPTH cells, no int8
    intermediate): ``chroma_ac`` (16, 2, 2, 16) [u*4+v, p, q, 4t+s] =
    A_col[h(u)][v, 4p+t] * A_row[u, 4q+s] / step_col[u*4+v].
    Both: ``<plane>_coarse`` (4, 4, 4, 1) [k, a, b, 0] = A_coarse[k, a, b] * step_col[0] / step_coarse[k].
    """
    out = {}
    for prefix, (n, groups) in wts.PLANES.items():
        st = {k: np.asarray(v, np.float64) for k, v in steps[prefix].items()}
        a_row = np.asarray(weights[f"{prefix}_row"], np.float64)
        a_col = np.asarray(weights[f"{prefix}_col"], np.float64)[list(groups)]  # (u, v, t)
        a_coarse = np.asarray(weights[f"{prefix}_coarse"], np.float64)
        col_gain = 1.0 / st["col"].reshape(n, n)
        if prefix == "luma":
            out["luma_row"] = (a_row / st["row"][:, None]).reshape(n, 1, 2, n)
            col = a_col * (col_gain * st["row"][:, None])[..., None]  # (u, v, t)
            out["luma_ac"] = col.reshape(n * n, 2, n)[:, :, None, :]
        else:
            # [u, v, p, t, q, s] = A_col[h(u)][v, n p + t] * A_row[u, n q + s]
            f = np.einsum("uvy,ux->uvyx", a_col, a_row) * col_gain[..., None, None]
            f = f.reshape(n, n, 2, n, 2, n).transpose(0, 1, 2, 4, 3, 5)
            out["chroma_ac"] = f.reshape(n * n, 2, 2, n * n)
        out[f"{prefix}_coarse"] = (a_coarse * (st["col"][0] / st["coarse"])[:, None, None])[..., None]
    return out


class TFLiteGraph:
    """A small writer of single-subgraph int8 TFLite flatbuffers (the ops this model needs)."""

    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as fb

        self.fb = fb
        self.tensors: list = []
        self.buffers = [fb.BufferT()]  # buffer 0: the empty sentinel
        self.ops: list = []
        self.codes: list = []

    def quant(self, scale, axis: int = 0):
        q = self.fb.QuantizationParametersT()
        q.scale = [float(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [0] * len(q.scale)
        q.quantizedDimension = axis
        return q

    def buffer(self, data: bytes) -> int:
        b = self.fb.BufferT()
        b.data = list(data)
        self.buffers.append(b)
        return len(self.buffers) - 1

    def tensor(self, name, shape, ttype, data=None, q=None) -> int:
        # no shape signatures: resize_tensor_input(strict=False) works without them, and with -1
        # in a signature some kernels make their outputs dynamic (allocated during invoke)
        t = self.fb.TensorT()
        t.name, t.shape, t.type, t.quantization = name, list(shape), ttype, q
        t.buffer = self.buffer(np.ascontiguousarray(data).tobytes()) if data is not None else 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name, shape) -> int:
        return self.tensor(name, shape, self.fb.TensorType.INT8, q=self.quant(1.0))

    def op(self, code: int, version: int, inputs, outputs, opt_type: int = 0, opt=None) -> None:
        index = next((i for i, c in enumerate(self.codes) if c.builtinCode == code), None)
        if index is None:
            c = self.fb.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
            self.codes.append(c)
            index = len(self.codes) - 1
        o = self.fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = index, list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opt
        self.ops.append(o)

    def conv(self, x: int, name: str, w: np.ndarray, stride, out_shape, depthwise: bool = False) -> int:
        """CONV_2D (filter (O, KH, KW, I)) or DEPTHWISE_CONV_2D (filter (1, KH, KW, O)), VALID,
        per-channel symmetric int8 filter, zero int32 bias, output scale 1.0 (input scale 1.0)."""
        fb = self.fb
        axis = 3 if depthwise else 0
        qw, sw = _quantise_filter(w, axis)
        wi = self.tensor(f"{name}/filter", w.shape, fb.TensorType.INT8, qw, self.quant(sw, axis))
        bi = self.tensor(f"{name}/bias", (len(sw),), fb.TensorType.INT32, np.zeros(len(sw), np.int32), self.quant(sw))
        yi = self.activation(name, out_shape)
        if depthwise:
            o = fb.DepthwiseConv2DOptionsT()
            o.depthMultiplier = w.shape[3] // self.tensors[x].shape[3]
            kind, code = fb.BuiltinOptions.DepthwiseConv2DOptions, fb.BuiltinOperator.DEPTHWISE_CONV_2D
        else:
            o = fb.Conv2DOptionsT()
            kind, code = fb.BuiltinOptions.Conv2DOptions, fb.BuiltinOperator.CONV_2D
        o.padding = fb.Padding.VALID
        o.strideH, o.strideW = stride
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = fb.ActivationFunctionType.NONE
        self.op(code, 3, [x, wi, bi], [yi], kind, o)
        return yi

    def channel0(self, x: int, name: str) -> int:
        """STRIDED_SLICE of channel 0 (every other axis whole; SLICE with size -1 does not resize)."""
        fb = self.fb
        shape = list(self.tensors[x].shape[:3]) + [1]
        begin = self.tensor(f"{name}/begin", (4,), fb.TensorType.INT32, np.zeros(4, np.int32))
        end = self.tensor(f"{name}/end", (4,), fb.TensorType.INT32, np.array([0, 0, 0, 1], np.int32))
        one = self.tensor(f"{name}/strides", (4,), fb.TensorType.INT32, np.ones(4, np.int32))
        y = self.activation(name, shape)
        o = fb.StridedSliceOptionsT()
        o.beginMask, o.endMask = 0b0111, 0b0111
        self.op(
            fb.BuiltinOperator.STRIDED_SLICE, 4, [x, begin, end, one], [y], fb.BuiltinOptions.StridedSliceOptions, o
        )
        return y

    def transpose(self, x: int, name: str, perm) -> int:
        fb = self.fb
        p = self.tensor(f"{name}/perm", (len(perm),), fb.TensorType.INT32, np.array(perm, np.int32))
        y = self.activation(name, [self.tensors[x].shape[i] for i in perm])
        self.op(
            fb.BuiltinOperator.TRANSPOSE, 2, [x, p], [y], fb.BuiltinOptions.TransposeOptions, fb.TransposeOptionsT()
        )
        return y

    def reshape(self, x: int, name: str, shape) -> int:
        """RESHAPE to a constant shape held in tensor ``<name>/shape`` (the runtime may rewrite it)."""
        fb = self.fb
        s = self.tensor(f"{name}/shape", (len(shape),), fb.TensorType.INT32, np.array(shape, np.int32))
        y = self.activation(name, shape)
        self.op(fb.BuiltinOperator.RESHAPE, 1, [x, s], [y], fb.BuiltinOptions.ReshapeOptions, fb.ReshapeOptionsT())
        return y

    def space_to_depth(self, x: int, name: str, block: int) -> int:
        fb = self.fb
        b, h, w, c = self.tensors[x].shape
        y = self.activation(name, (b, h // block, w // block, c * block * block))
        o = fb.SpaceToDepthOptionsT()
        o.blockSize = block
        self.op(fb.BuiltinOperator.SPACE_TO_DEPTH, 2, [x], [y], fb.BuiltinOptions.SpaceToDepthOptions, o)
        return y

    def serialize(self, inputs, outputs, description: str = "", metadata: dict[str, bytes] | None = None) -> bytes:
        import flatbuffers

        fb = self.fb
        sg = fb.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = (
            self.tensors,
            list(inputs),
            list(outputs),
            self.ops,
            "main",
        )
        model = fb.ModelT()
        model.version, model.operatorCodes, model.subgraphs, model.description = 3, self.codes, [sg], description
        model.metadata = []
        for name, data in (metadata or {}).items():
            md = fb.MetadataT()
            md.name, md.buffer = name, self.buffer(data)
            model.metadata.append(md)
        model.buffers = self.buffers
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def build_tflite(weights, steps, description: str) -> bytes:
    """The whole-frame analysis graph (nominal 64x64 frame; the runtime resizes it).

    Luma: input (Hp/8+3, 8, (Wp+24)/8, 8) -- the padded plane, block rows in the batch, runs of
    8 pixels in the channels (a free view of the row-major plane) -> row CONV_2D (1, 2) 8 -> 8
    -> TRANSPOSE (0, 2, 3, 1) puts the 8 rows of a block into the channels, u first -> RESHAPE
    (1, Hp/8+3, Wp/8+2, 64) -> grouped CONV_2D (2, 1), 8 groups (one per u) of 8 -> 8.
    Chroma: input (2, Hp/2+12, Wp/2+12, 1) -> SPACE_TO_DEPTH 4 -> CONV_2D (2, 2) 16 -> 16.
    Both: STRIDED_SLICE of channel 0 (the DC plane with its border blocks) -> coarse CONV_2D
    (4, 4) stride 2.  Outputs ``<plane>_ac`` (all n*n coefficients incl. DC and border blocks)
    and ``<plane>_coarse``.
    """
    g = TFLiteGraph()
    f = folded_filters(weights, steps)
    hp = wp = 64  # nominal frame
    ly, lx = hp + 24, wp + 24
    x = g.activation("luma", (ly // 8, 8, lx // 8, 8))
    r = g.conv(x, "luma_row", f["luma_row"], (1, 1), (ly // 8, 8, wp // 8 + 2, 8))
    t = g.transpose(r, "luma_rows", (0, 2, 3, 1))
    blocks = g.reshape(t, ana.LUMA_BLOCKS_SHAPE.split("/")[0], (1, ly // 8, wp // 8 + 2, 64))
    yac = g.conv(blocks, "luma_ac", f["luma_ac"], (1, 1), (1, hp // 8 + 2, wp // 8 + 2, 64))
    yco = g.conv(g.channel0(yac, "luma_dc"), "luma_coarse", f["luma_coarse"], (2, 2), (1, hp // 16, wp // 16, 4))
    ch, cw = hp // 2, wp // 2
    xc = g.activation("chroma", (2, ch + 12, cw + 12, 1))
    cells = g.space_to_depth(xc, "chroma_cells", 4)
    cac = g.conv(cells, "chroma_ac", f["chroma_ac"], (1, 1), (2, ch // 4 + 2, cw // 4 + 2, 16))
    cco = g.conv(g.channel0(cac, "chroma_dc"), "chroma_coarse", f["chroma_coarse"], (2, 2), (2, hp // 16, wp // 16, 4))
    meta = json.dumps({"version": 2, "steps": steps}).encode()
    return g.serialize([x, xc], [yac, yco, cac, cco], description, {ana.DEQUANT_METADATA: meta})


def export(weights, planes, path: str, percentile: float = CALIB_PERCENTILE, label: str = "") -> dict:
    ranges = channel_ranges(weights, planes, percentile)
    steps = dequant_steps(ranges)
    data = build_tflite(weights, steps, f"SNIS-896 analysis ({label}), whole frame, int8")
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path} ({len(data)} bytes)", flush=True)
    return steps


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------
def int8_analyser(model_path: str):
    """analyse(y, u, v) -> reference Latents through the int8 model (dequantised)."""
    tr = ana.AnalysisTransform(model_path)

    def analyse(y, u, v):
        yp, uvp = ana.pad_planes(y, u, v)
        return ref.Latents(*tr(yp, uvp).dequantized())

    return analyse


def evaluate_all(media: str, models: str, learned_a, learned_s, dct) -> None:
    samples = [
        (label, *(np.clip(p, INPUT_MIN, INPUT_MAX).astype(np.int16) for p in planes))
        for label, *planes in tt.heldout_samples(media)
    ]
    results = {
        "a": tt.evaluate(samples, lambda y, u, v: ref.analyze_reference(y, u, v, dct), dct),
        "b": tt.evaluate(samples, lambda y, u, v: ref.analyze_reference(y, u, v, learned_a), learned_s),
        "c": tt.evaluate(samples, int8_analyser(os.path.join(models, "snis896.tflite")), learned_s),
        "d": tt.evaluate(samples, int8_analyser(os.path.join(models, "dct8.tflite")), dct),
    }
    names = {
        "a": "(a) DCT init, float",
        "b": "(b) learned, float",
        "c": "(c) learned, int8 TFLite analysis + float synthesis",
        "d": "(d) DCT, int8 TFLite analysis + float synthesis",
    }
    for k, (rows, clean) in results.items():
        print(tt.format_rows(names[k], rows, clean))
    print(
        "\n| step s | "
        + " | ".join(f"{names[k]} PSNR / bpp" for k in "abcd")
        + " | int8 gap learned (c-b) | int8 gap DCT (d-a) |"
    )
    print("|" + " --- |" * 7)
    for i, s in enumerate(tt.EVAL_STEPS):
        cells = [f"{results[k][0][i][1]:.2f} / {results[k][0][i][2]:.3f}" for k in "abcd"]
        gap_l = results["c"][0][i][1] - results["b"][0][i][1]
        gap_d = results["d"][0][i][1] - results["a"][0][i][1]
        print(f"| {s} | " + " | ".join(cells) + f" | {gap_l:+.2f} dB | {gap_d:+.2f} dB |")
    cl = " | ".join(f"{results[k][1]:.2f}" for k in "abcd")
    print(
        f"| unquantised | {cl} | {results['c'][1] - results['b'][1]:+.2f} dB "
        f"| {results['d'][1] - results['a'][1]:+.2f} dB |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", required=True, help="directory with the clips (models/README.md lists them)")
    ap.add_argument("--models", default=os.path.join(REPO, "models"), help="models directory")
    ap.add_argument(
        "--percentile",
        type=float,
        default=CALIB_PERCENTILE,
        help="calibrated channel range: this percentile of |value| (100 = maximum)",
    )
    ap.add_argument("--calib-frames", type=int, default=CALIB_FRAMES, help="calibration frames per clip")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)

    m = args.models
    learned_a = wts.load_weights(os.path.join(m, wts.ANALYSIS_FLOAT_WEIGHTS))
    learned_s = wts.load_weights(os.path.join(m, wts.SYNTHESIS_WEIGHTS))
    dct = ref.dct_weights()
    dct_path = os.path.join(m, "dct8_synthesis.npz")
    try:  # rewrite only on change: the file's hash identifies the model in streams
        same = all(np.array_equal(a, dct[k]) for k, a in wts.load_weights(dct_path).items())
    except ModelError:
        same = False
    if not same:
        np.savez(dct_path, **dct)
    planes = calibration_planes(args.media, args.calib_frames)
    print(f"calibration: {len(planes)} frames (training part of the clips)", flush=True)
    export(learned_a, planes, os.path.join(m, "snis896.tflite"), args.percentile, "learned")
    export(dct, planes, os.path.join(m, "dct8.tflite"), args.percentile, "dct8 ablation")
    if not args.no_eval:
        evaluate_all(args.media, m, learned_a, learned_s, dct)
    return 0


if __name__ == "__main__":
    sys.exit(main())
