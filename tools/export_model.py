#!/usr/bin/env python3
"""Export the SNIS-896 analysis transform as a full-integer int8 TFLite model.

Command (from the repository root, after tools/train_transform.py):

    python tools/export_model.py --media ../shared/media

Reads models/snis896_analysis_float.npz (+ models/snis896_synthesis.npz) and writes
    models/snis896.tflite                  trained analysis, int8
    models/dct8.tflite, models/dct8_synthesis.npz   ablation: same graph, DCT weights
then evaluates on held-out frames (a) DCT float, (b) learned float, (c) learned int8
analysis + float synthesis, (d) DCT int8 analysis + float synthesis, and prints the
results table used in models/README.md.

Graph (per tile; see models/README.md): the tile is reshaped so that each run of n
pixels (n = 8 luma, 4 chroma) is a channel vector ("space to depth"); the 2n-tap lapped
filters are then 2-tap convolutions over n channels, and the column stage works on
row-blocks permuted into channels.  The row stage is split into one Conv2D per
column-filter group (so each group gets its own int8 activation scale), the column stage
of each group is split into its v = 0 filter and its v >= 1 filters (the large DC plane and
first-row coefficients then do not set the scale of the others), and each plane's AC
output is split into "lo" (u == 0 or v == 0) and "hi" (u, v >= 1) tensors.  The split changes no parameter count:
weights are exactly the 896 entries of the six analysis arrays.  The representative
dataset is natural training tiles (intra + residual) plus one tile of +/-255 impulses so
the int8 input covers [-255, 255], and two flat +/-128 tiles so the DC/coarse path does not
saturate on intra content (pixel - 128).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (REPO, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)

from snisd.codec import analysis as ana  # noqa: E402

import train_transform as tt  # noqa: E402

# Level of the flat calibration tiles: the DC/coarse path is calibrated to a 16x16 area
# of mean +/-FLAT_LEVEL (intra residuals are within [-128, 127]); a larger flat mean
# saturates the coarse latent.  255 would double the coarse int8 step for all content.
FLAT_LEVEL = 128.0
GROUP_CHANNELS = {"luma": ((0,), (1,), (2, 3), (4, 5, 6, 7)), "chroma": ((0,), (1,), (2, 3))}


def build_keras_model(weights: dict[str, np.ndarray]):
    """Tile analysis graph.  Outputs (names of the serving signature):

    luma_coarse (N,4,4,4), luma_ac_lo (N,8,8,14), luma_ac_hi (N,8,8,49),
    chroma_coarse (2N,4,4,4), chroma_ac_lo (2N,8,8,6), chroma_ac_hi (2N,8,8,9).
    "lo" holds the first row and column of each block (u == 0 or v == 0, DC excluded),
    "hi" the rest (u >= 1 and v >= 1); see ana.ac_split_channels for the channel order.
    Splitting the AC output in two lets the 49 (resp. 9) small high-frequency channels
    use a much finer int8 scale than the large first-row/column coefficients.
    """
    import keras
    from keras import layers

    def reshape(shape, name):
        # constant target shape with -1 batch: converts to one RESHAPE op (layers.Reshape
        # would add SHAPE/STRIDED_SLICE/PACK ops that split the XNNPACK partition)
        return layers.Lambda(lambda t: keras.ops.reshape(t, (-1,) + tuple(shape)), name=name)

    def plane(inp, prefix, n):
        size = 11 * n  # 88 / 44
        nb = 10
        row = np.asarray(weights[f"{prefix}_row"], np.float32)
        col = np.asarray(weights[f"{prefix}_col"], np.float32)
        coarse = np.asarray(weights[f"{prefix}_coarse"], np.float32)
        lo_parts, hi_parts = [], []
        dc = None
        # space-to-depth: the n pixels of each block column become channels, so the
        # lapped 2n-tap filters are 2-tap convolutions over n channels (far faster in
        # XNNPACK than 1-channel convolutions with stride n; same weights, same MACs)
        xs = reshape((size, nb + 1, n), name=f"{prefix}_s2d")(inp)
        for g, us in enumerate(GROUP_CHANNELS[prefix]):
            c = len(us)
            k = row[list(us)].T.reshape(1, 2, n, c)  # [0, p, q, u] = A_row[u, n*p + q]
            conv = layers.Conv2D(c, (1, 2), use_bias=False, name=f"{prefix}_row{g}")
            r = conv(xs)  # (size, nb, c)
            conv.set_weights([k])
            # rows to channels: (11, n, nb*c) -> (11, nb*c, n); channel axis j*c + u
            r = reshape((nb + 1, n, nb * c), name=f"{prefix}_rows{g}")(r)
            r = layers.Permute((1, 3, 2), name=f"{prefix}_perm{g}")(r)
            kc = col[g].T.reshape(2, 1, n, n)  # [p, 0, q, v] = A_col[g][v, n*p + q]
            # v = 0 filter and v >= 1 filters as two convs (same 16*n weights in total)
            for vs, tag in (((0,), "v0"), (tuple(range(1, n)), "vac")):
                conv = layers.Conv2D(len(vs), (2, 1), use_bias=False, name=f"{prefix}_col{g}{tag}")
                y = conv(r)  # (nb, nb*c, len(vs))
                conv.set_weights([kc[..., list(vs)]])
                if c > 1:
                    y = reshape((nb, nb, c * len(vs)), name=f"{prefix}_unflat{g}{tag}")(y)
                if g == 0:
                    if tag == "v0":
                        dc = y
                    else:
                        lo_parts.append(y)
                elif tag == "v0":
                    lo_parts.append(y)
                else:
                    hi_parts.append(y)
        conv = layers.Conv2D(4, (4, 4), strides=(2, 2), use_bias=False, name=f"{prefix}_coarse_conv")
        cz = conv(dc)
        conv.set_weights([coarse.transpose(1, 2, 0)[:, :, None, :]])  # (a, b, in=1, k)
        outs = {f"{prefix}_coarse": layers.Identity(name=f"{prefix}_coarse")(cz)}
        for tag, parts in (("lo", lo_parts), ("hi", hi_parts)):
            t = layers.Concatenate(axis=-1, name=f"{prefix}_concat_{tag}")(parts)
            t = layers.Cropping2D(((1, 1), (1, 1)), name=f"{prefix}_crop_{tag}")(t)
            outs[f"{prefix}_ac_{tag}"] = layers.Identity(name=f"{prefix}_ac_{tag}")(t)
        return outs

    luma = keras.Input((88, 88, 1), name="luma")
    chroma = keras.Input((44, 44, 1), name="chroma")
    outputs = plane(luma, "luma", 8)
    outputs.update(plane(chroma, "chroma", 4))
    return keras.Model(inputs={"luma": luma, "chroma": chroma}, outputs=outputs, name="snis896_analysis")


def representative_tiles(media: str, count: int):
    clips = tt.load_training_frames(media)
    sampler = tt.CropSampler(clips, tt.SEED + 1)
    tiles = []
    for _ in range(count):
        ly, lc = sampler.sample(1, luma_crop=88)
        tiles.append((ly[..., None], lc[..., None]))
    # +/-255 impulses: fix the input range without inflating the coefficient ranges
    ly = np.zeros((1, 88, 88, 1), np.float32)
    lc = np.zeros((2, 44, 44, 1), np.float32)
    ly[0, 20, 30] = 255.0
    ly[0, 60, 50] = -255.0
    lc[0, 10, 12] = 255.0
    lc[1, 30, 25] = -255.0
    tiles.append((ly, lc))
    # flat +/-255 tiles: the DC / coarse path must not saturate on any input in range
    for level in (FLAT_LEVEL, -FLAT_LEVEL):
        tiles.append((np.full((1, 88, 88, 1), level, np.float32), np.full((2, 44, 44, 1), level, np.float32)))
    return tiles


def convert(weights, tiles, path: str) -> None:
    import tensorflow as tf

    import tempfile

    model = build_keras_model(weights)
    # Keras 3: from_keras_model / from_concrete_functions do not work; go through a
    # SavedModel written by model.export (serving signature keeps the input/output names).
    tmp = tempfile.mkdtemp(prefix="snis896_savedmodel_")
    model.export(tmp, verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def rep():
        for ly, lc in tiles:
            yield {"luma": ly, "chroma": lc}

    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    data = conv.convert()
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path} ({len(data)} bytes)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", default="../shared/media", help="directory with the clips (default ../shared/media)")
    ap.add_argument("--models", default="models", help="models directory (default models)")
    ap.add_argument("--rep-tiles", type=int, default=400, help="representative tiles for calibration")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)

    import tensorflow as tf

    tf.keras.utils.set_random_seed(tt.SEED)
    m = args.models
    with np.load(os.path.join(m, "snis896_analysis_float.npz")) as z:
        learned_a = {k: z[k] for k in ana.WEIGHT_NAMES}
    learned_s = ana.load_synthesis_weights(os.path.join(m, "snis896_synthesis.npz"))
    dct = ana.dct_weights()
    np.savez(os.path.join(m, "dct8_synthesis.npz"), **dct)
    tiles = representative_tiles(args.media, args.rep_tiles)
    convert(learned_a, tiles, os.path.join(m, "snis896.tflite"))
    convert(dct, tiles, os.path.join(m, "dct8.tflite"))
    if args.no_eval:
        return 0

    samples = tt.heldout_samples(args.media)
    results = {}
    results["a"] = tt.evaluate(samples, lambda y, u, v: ana.analyze_reference(y, u, v, dct), dct)
    results["b"] = tt.evaluate(samples, lambda y, u, v: ana.analyze_reference(y, u, v, learned_a), learned_s)
    results["c"] = tt.evaluate(samples, ana.AnalysisTransform(os.path.join(m, "snis896.tflite")), learned_s)
    results["d"] = tt.evaluate(samples, ana.AnalysisTransform(os.path.join(m, "dct8.tflite")), dct)
    names = {
        "a": "(a) DCT init, float",
        "b": "(b) learned, float",
        "c": "(c) learned, int8 TFLite analysis + float synthesis",
        "d": "(d) DCT, int8 TFLite analysis + float synthesis",
    }
    for k, (rows, clean) in results.items():
        print(tt.format_rows(names[k], rows, clean))
    print("\n| step s | " + " | ".join(f"{names[k]} PSNR / bpp" for k in "abcd") + " | int8 gap learned (c-b) | int8 gap DCT (d-a) |")
    print("|" + " --- |" * 7)
    for i, s in enumerate(tt.EVAL_STEPS):
        cells = [f"{results[k][0][i][1]:.2f} / {results[k][0][i][2]:.4f}" for k in "abcd"]
        gap_l = results["c"][0][i][1] - results["b"][0][i][1]
        gap_d = results["d"][0][i][1] - results["a"][0][i][1]
        print(f"| {s} | " + " | ".join(cells) + f" | {gap_l:+.2f} dB | {gap_d:+.2f} dB |")
    cl = " | ".join(f"{results[k][1]:.2f}" for k in "abcd")
    print(f"| unquantised | {cl} | {results['c'][1] - results['b'][1]:+.2f} dB | {results['d'][1] - results['a'][1]:+.2f} dB |")
    # PSNR of the learned transform at the DCT's rates (log-rate interpolation)
    for k_l, k_d in (("b", "a"), ("c", "d")):
        rl = np.log([r[2] for r in results[k_l][0]])[::-1]
        pl = np.array([r[1] for r in results[k_l][0]])[::-1]
        gains = []
        for s, p, r in results[k_d][0]:
            if rl[0] <= np.log(r) <= rl[-1]:
                gains.append((s, float(np.interp(np.log(r), rl, pl)) - p))
        print(f"PSNR gain {k_l} over {k_d} at equal rate: " + ", ".join(f"s={s}: {g:+.2f} dB" for s, g in gains))
    return 0


if __name__ == "__main__":
    sys.exit(main())
