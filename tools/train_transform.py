#!/usr/bin/env python3
"""Train the SNIS-896 linear lapped transform (analysis + synthesis, 896 parameters each).

Command (from the repository root, about 9 CPU-minutes, fully seeded):

    python tools/train_transform.py --media DIR      # DIR: the clips listed in models/README.md

It writes models/snis896_analysis_float.npz and models/snis896_synthesis.npz and prints a
float before/after comparison on held-out frames.  tools/export_model.py then builds the
int8 TFLite models and the full results table.

Training data: tree.avi (all frames) and the FIRST 40 % of the frames of cockatoo.mp4,
bikes.mp4 and vtest.avi, decoded with PyAV to YUV 4:2:0.  Held-out evaluation frames come
from the last 60 % of cockatoo.mp4, bikes.mp4 and vtest.avi.

Loss per batch (quantiser step s drawn log-uniformly from [4, 64]):
    [MSE(x, synth(analysis(x) + U(-s/2, s/2)))  +  LAMBDA * s^2 * R] / (s^2 / 12)
with R = sum over latents of log2(1 + |y| / s) per pixel (a rate proxy in bits/pixel).
The division by s^2/12 gives every step the same weight in the gradient.  The MSE is the
mean of the MSE under additive uniform noise and the MSE under hard rounding with a
straight-through gradient (--ste 0.5): with noise only, the synthesis learns a shrinkage
that is right for noise but wrong for the dead zone of a real rounding quantiser, and the
learned transform lost to the DCT at small steps.
Tying the rate weight to s^2 (the slope of the distortion-rate curve at high rate) makes
one transform good over the whole range of steps.  After every optimiser step each
analysis filter (each row of the row/column/coarse arrays) is renormalised to unit L2
norm, as in the orthonormal DCT: latents stay in pixel units, so a step s means the same
for the learned transform and for the DCT, and the int8 ranges do not grow.  A small penalty keeps each filter close
to the even/odd symmetry of its DCT initialisation; that symmetry is what makes the
reflection at frame edges + folding synthesis (nearly) perfectly reconstructing.

TensorFlow is needed only here and in tools/export_model.py (the `train` extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from snisd.codec import reference as ref
from snisd.codec import weights as wts

SEED = 896
TRAIN_CLIPS = ("tree.avi", "cockatoo.mp4", "bikes.mp4", "vtest.avi")
HELDOUT_CLIPS = ("cockatoo.mp4", "bikes.mp4", "vtest.avi")
TRAIN_FRACTION = 0.4
LUMA_CROP = 136  # 16 luma blocks of 8 (incl. 4+4 px overlap), 7x7 coarse latents
CHROMA_CROP = LUMA_CROP // 2
LAMBDA = 0.02
SYM_WEIGHT = 1.0
STE_WEIGHT = 0.5
STEP_RANGE = (4.0, 64.0)
EVAL_STEPS = (4, 8, 16, 32, 64)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def read_clip(path: str):
    """All frames of a clip as a list of (y, u, v) uint8 arrays (YUV 4:2:0)."""
    import av

    frames = []
    with av.open(path) as c:
        for fr in c.decode(video=0):
            a = fr.to_ndarray(format="yuv420p")
            h, w = fr.height, fr.width
            y = a[:h]
            uv = a[h:].reshape(2, h // 2, w // 2)
            frames.append((y.copy(), uv[0].copy(), uv[1].copy()))
    return frames


def load_training_frames(media: str):
    clips = []
    for name in TRAIN_CLIPS:
        frames = read_clip(os.path.join(media, name))
        n = len(frames) if name == "tree.avi" else int(len(frames) * TRAIN_FRACTION)
        clips.append((name, frames[:n]))
        print(f"  train: {name}: frames 0..{n - 1} of {len(frames)}", flush=True)
    return clips


def heldout_samples(media: str, per_clip: int = 2):
    """Held-out frames from the last 60 % of the test clips: intra + temporal residuals.

    Returns a list of (label, y, u, v) int16 residual planes cropped to multiples of 64.
    """
    out = []
    for name in HELDOUT_CLIPS:
        frames = read_clip(os.path.join(media, name))
        n = len(frames)
        first = int(np.ceil(n * TRAIN_FRACTION)) + 1
        idx = np.linspace(first, n - 1, per_clip).astype(int)
        for t in idx:
            y, u, v = frames[t]
            py, pu, pv = frames[t - 1]
            h, w = (y.shape[0] // 64) * 64, (y.shape[1] // 64) * 64
            intra = [p.astype(np.int16) - 128 for p in (y, u, v)]
            resid = [a.astype(np.int16) - b.astype(np.int16) for a, b in ((y, py), (u, pu), (v, pv))]
            for kind, planes in (("intra", intra), ("resid", resid)):
                out.append(
                    (f"{name}#{t}:{kind}", planes[0][:h, :w], planes[1][: h // 2, : w // 2], planes[2][: h // 2, : w // 2])
                )
    return out


class CropSampler:
    """Deterministic random crops: 50 % intra (pixel - 128), 50 % shifted temporal residuals."""

    def __init__(self, clips, seed: int):
        self.rng = np.random.default_rng(seed)
        # weight clips by frame area so large clips are not under-sampled
        self.frames = []
        for _, frames in clips:
            self.frames.extend(frames)
        area = np.array([f[0].size for f in self.frames], np.float64)
        self.p = area / area.sum()

    def sample(self, batch: int, luma_crop: int = LUMA_CROP):
        LUMA_CROP, CHROMA_CROP = luma_crop, luma_crop // 2
        ly = np.empty((batch, LUMA_CROP, LUMA_CROP), np.float32)
        lc = np.empty((batch, 2, CHROMA_CROP, CHROMA_CROP), np.float32)
        rng = self.rng
        for b in range(batch):
            k = int(rng.choice(len(self.frames), p=self.p))
            if k == 0:
                k = 1
            y, u, v = self.frames[k]
            h, w = y.shape
            r0 = int(rng.integers(4, (h - LUMA_CROP - 4) // 2)) * 2
            c0 = int(rng.integers(4, (w - LUMA_CROP - 4) // 2)) * 2
            cr, cc = r0 // 2, c0 // 2
            if rng.random() < 0.5:
                ly[b] = y[r0 : r0 + LUMA_CROP, c0 : c0 + LUMA_CROP].astype(np.float32) - 128
                lc[b, 0] = u[cr : cr + CHROMA_CROP, cc : cc + CHROMA_CROP].astype(np.float32) - 128
                lc[b, 1] = v[cr : cr + CHROMA_CROP, cc : cc + CHROMA_CROP].astype(np.float32) - 128
            else:
                py, pu, pv = self.frames[k - 1]
                if py.shape != y.shape:  # first frame of another clip: use the same frame
                    py, pu, pv = y, u, v
                dy, dx = (int(s) for s in rng.integers(-3, 4, size=2))
                cdy, cdx = int(np.fix(dy / 2)), int(np.fix(dx / 2))
                ly[b] = y[r0 : r0 + LUMA_CROP, c0 : c0 + LUMA_CROP].astype(np.float32) - py[
                    r0 + dy : r0 + dy + LUMA_CROP, c0 + dx : c0 + dx + LUMA_CROP
                ]
                for ci, (cur, prev) in enumerate(((u, pu), (v, pv))):
                    lc[b, ci] = cur[cr : cr + CHROMA_CROP, cc : cc + CHROMA_CROP].astype(np.float32) - prev[
                        cr + cdy : cr + cdy + CHROMA_CROP, cc + cdx : cc + cdx + CHROMA_CROP
                    ]
        lc = lc.reshape(batch * 2, CHROMA_CROP, CHROMA_CROP)
        return ly, lc


# ---------------------------------------------------------------------------
# TensorFlow transform (training only; general crop size)
# ---------------------------------------------------------------------------
def _tf():
    import tensorflow as tf

    return tf


def tf_analysis(tf, x, a_row, a_col_full, a_coarse, n):
    """x (B, H, W) -> coef (B, nby, nbx, n*n) for all blocks of the crop, coarse (B, nI, nJ, 4)."""
    taps = 2 * n
    w = tf.signal.frame(x, taps, n, axis=2)  # (B, H, nbx, t)
    r = tf.einsum("byjt,ut->byju", w, a_row)
    w = tf.signal.frame(r, taps, n, axis=1)  # (B, nby, t, nbx, u)
    coef = tf.einsum("bitju,uvt->bijuv", w, a_col_full)
    sh = tf.shape(coef)
    coef = tf.reshape(coef, [sh[0], sh[1], sh[2], n * n])
    dc = coef[..., 0]
    w = tf.signal.frame(tf.signal.frame(dc, 4, 2, axis=1), 4, 2, axis=3)  # (B, nI, a, nJ, b)
    coarse = tf.einsum("bIaJc,kac->bIJk", w, a_coarse)
    return coef, coarse


def tf_synthesis(tf, coef, coarse, s_row, s_col_full, s_coarse, n):
    """Inverse structure of tf_analysis (overlap-add); coef's DC slot is replaced from coarse."""
    c = tf.einsum("bIJk,kac->bIaJc", coarse, s_coarse)  # (B, nI, a, nJ, b)
    c = tf.signal.overlap_and_add(c, 2)  # (B, nI, a, nbx)
    c = tf.transpose(c, [0, 3, 1, 2])  # (B, nbx, nI, a)
    dc = tf.transpose(tf.signal.overlap_and_add(c, 2), [0, 2, 1])  # (B, nby, nbx)
    coef = tf.concat([dc[..., None], coef[..., 1:]], axis=-1)
    sh = tf.shape(coef)
    coef = tf.reshape(coef, [sh[0], sh[1], sh[2], n, n])
    r = tf.einsum("bijuv,uvt->bjuit", coef, s_col_full)
    r = tf.signal.overlap_and_add(r, n)  # (B, nbx, u, H)
    x = tf.einsum("bjuy,ut->byjt", r, s_row)
    return tf.signal.overlap_and_add(x, n)  # (B, H, W)


def parity_masks(w0: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each array, the parity (+1/-1) of its DCT initialisation under tap reversal."""
    out = {}
    for k, v in w0.items():
        if k.endswith("coarse"):
            p = np.ones((4,), np.float32)
            p[[2, 3]] *= -1  # ka = 1 (odd in a)
            out[k] = p
        else:
            n = v.shape[-2]
            out[k] = np.array([(-1.0) ** u for u in range(n)], np.float32)
    return out


def train(args) -> dict[str, dict[str, np.ndarray]]:
    tf = _tf()
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    print("loading training frames", flush=True)
    clips = load_training_frames(args.media)
    sampler = CropSampler(clips, SEED)
    w0 = ref.dct_weights()
    par = parity_masks(w0)
    va = {k: tf.Variable(v, name="a_" + k) for k, v in w0.items()}
    vs = {k: tf.Variable(v, name="s_" + k) for k, v in w0.items()}
    lg = tf.constant(wts.LUMA_GROUPS)
    cg = tf.constant(wts.CHROMA_GROUPS)
    opt = tf.keras.optimizers.Adam(learning_rate=args.lr)
    variables = list(va.values()) + list(vs.values())
    lam = tf.constant(args.lam, tf.float32)

    def sym_penalty(d):
        tot = 0.0
        for k, v in d.items():
            if k.endswith("coarse"):
                pa = tf.constant(par[k])[:, None, None]
                tot += tf.reduce_sum(tf.square(v - pa * tf.reverse(v, [1])))
                pb = tf.constant(np.array([1, -1, 1, -1], np.float32))[:, None, None]
                tot += tf.reduce_sum(tf.square(v - pb * tf.reverse(v, [2])))
            elif k.endswith("row"):
                tot += tf.reduce_sum(tf.square(v - tf.constant(par[k])[:, None] * tf.reverse(v, [1])))
            else:
                tot += tf.reduce_sum(tf.square(v - tf.constant(par[k])[None, :, None] * tf.reverse(v, [2])))
        return 0.25 * tot

    def plane_loss(x, prefix, groups, n, step, noise_c, noise_k, ste):
        a_col = tf.gather(va[prefix + "_col"], groups)
        s_col = tf.gather(vs[prefix + "_col"], groups)
        coef, coarse = tf_analysis(tf, x, va[prefix + "_row"], a_col, va[prefix + "_coarse"], n)
        ac = coef[..., 1:]
        rate = tf.reduce_sum(tf.math.log(1.0 + tf.abs(ac) / step)) + tf.reduce_sum(
            tf.math.log(1.0 + tf.abs(coarse) / step)
        )
        if ste:
            # hard rounding with a straight-through gradient (matches the codec's quantiser)
            ac_n = ac + tf.stop_gradient(tf.round(ac / step) * step - ac)
            coarse_n = coarse + tf.stop_gradient(tf.round(coarse / step) * step - coarse)
        else:
            ac_n = ac + noise_c * step
            coarse_n = coarse + noise_k * step
        coef_n = tf.concat([coef[..., :1], ac_n], axis=-1)
        xh = tf_synthesis(tf, coef_n, coarse_n, vs[prefix + "_row"], s_col, vs[prefix + "_coarse"], n)
        lo, hi = 3 * n, x.shape[1] - 3 * n  # region reconstructed from complete latents
        sse = tf.reduce_sum(tf.square(xh[:, lo:hi, lo:hi] - x[:, lo:hi, lo:hi]))
        npx = tf.cast(tf.shape(x)[0] * (hi - lo) * (hi - lo), tf.float32)
        # rate is normalised by the crop area (all latents of the crop are counted)
        area = tf.cast(tf.shape(x)[0] * x.shape[1] * x.shape[2], tf.float32)
        return sse, npx, rate / np.log(2.0), area

    @tf.function(jit_compile=False, reduce_retracing=True)
    def step_fn(ly, lc, step, nly, nky, nlc, nkc):
        with tf.GradientTape() as tape:
            se_y, n_y, r_y, a_y = plane_loss(ly, "luma", lg, 8, step, nly, nky, False)
            se_c, n_c, r_c, _ = plane_loss(lc, "chroma", cg, 4, step, nlc, nkc, False)
            mse = (se_y + se_c) / (n_y + n_c)
            if args.ste > 0:
                # mix in the distortion under hard rounding (straight-through gradient)
                se_y2, _, _, _ = plane_loss(ly, "luma", lg, 8, step, nly, nky, True)
                se_c2, _, _, _ = plane_loss(lc, "chroma", cg, 4, step, nlc, nkc, True)
                mse = (1.0 - args.ste) * mse + args.ste * (se_y2 + se_c2) / (n_y + n_c)
            bpp = (r_y + r_c) / a_y  # bits per luma pixel
            # divided by s^2/12 (the noise MSE of an orthonormal transform) so that every
            # step in the range weighs the same in the gradient
            loss = (mse + lam * step * step * bpp) / (step * step / 12.0) + SYM_WEIGHT * (
                sym_penalty(va) + sym_penalty(vs)
            )
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        # projection: every analysis filter keeps unit L2 norm, like the orthonormal DCT,
        # so latents stay in pixel units (no escape from the noise by a gain > 1, and the
        # int8 output ranges stay those of the DCT)
        for k, v in va.items():
            axes = [1, 2] if k.endswith("coarse") else [v.shape.rank - 1]
            v.assign(v / tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes, keepdims=True)))
        return loss, mse, bpp

    nb_y = (LUMA_CROP - 16) // 8 + 1
    nb_c = (CHROMA_CROP - 8) // 4 + 1
    ni = (nb_y - 4) // 2 + 1
    t0 = time.time()
    for it in range(args.steps):
        if it == int(args.steps * 0.7):
            opt.learning_rate.assign(args.lr * 0.3)
        ly, lc = sampler.sample(args.batch)
        rng = sampler.rng
        s = float(np.exp(rng.uniform(np.log(STEP_RANGE[0]), np.log(STEP_RANGE[1]))))
        b = args.batch
        nly = rng.uniform(-0.5, 0.5, (b, nb_y, nb_y, 63)).astype(np.float32)
        nky = rng.uniform(-0.5, 0.5, (b, ni, ni, 4)).astype(np.float32)
        nlc = rng.uniform(-0.5, 0.5, (2 * b, nb_c, nb_c, 15)).astype(np.float32)
        nkc = rng.uniform(-0.5, 0.5, (2 * b, ni, ni, 4)).astype(np.float32)
        loss, mse, bpp = step_fn(ly, lc, tf.constant(s, tf.float32), nly, nky, nlc, nkc)
        if it % 100 == 0 or it == args.steps - 1:
            print(
                f"  step {it:5d}  s={s:5.1f}  loss={float(loss):9.3f}  mse={float(mse):8.3f}  "
                f"bpp={float(bpp):6.3f}  ({time.time() - t0:.0f}s)",
                flush=True,
            )
    analysis = {k: v.numpy().astype(np.float32) for k, v in va.items()}
    synthesis = {k: v.numpy().astype(np.float32) for k, v in vs.items()}
    return {"analysis": analysis, "synthesis": synthesis}


# ---------------------------------------------------------------------------
# evaluation (numpy reference transforms, hard rounding)
# ---------------------------------------------------------------------------
def _entropy_bits(q: np.ndarray) -> float:
    """Zeroth-order entropy (bits) of the integers in q, per channel (last axis), summed."""
    q = q.reshape(-1, q.shape[-1]).astype(np.int64)
    total = 0.0
    for c in range(q.shape[1]):
        _, cnt = np.unique(q[:, c], return_counts=True)
        p = cnt / cnt.sum()
        total += -(cnt * np.log2(p)).sum()
    return float(total)


def quantise_latents(lat: ref.Latents, step: float) -> tuple[ref.Latents, float]:
    """Hard-round the latents at step; return dequantised latents and their coded bits."""
    qs = [np.rint(a / step) for a in (lat.y_coarse, lat.y_ac, lat.c_coarse, lat.c_ac)]
    bits = sum(_entropy_bits(q) for q in qs)
    return ref.Latents(*[(q * step).astype(np.float32) for q in qs]), bits


def psnr(mse: float) -> float:
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def evaluate(samples, analyse, synthesis, steps=EVAL_STEPS):
    """Rows per step: PSNR (YUV pooled MSE) and coded-rate proxy (bits per luma pixel).

    analyse(y, u, v) -> Latents.  Per-channel zeroth-order entropy of the rounded latents,
    pooled over all held-out samples, is the rate proxy.  Also returns the unquantised PSNR.
    """
    lats = [analyse(y, u, v) for _, y, u, v in samples]
    npix = sum(y.size for _, y, _, _ in samples)

    def mse_of(lat_list):
        se, n = 0.0, 0
        for lat, (_, y, u, v) in zip(lat_list, samples):
            rec = ref.synthesize_reference(lat, synthesis)
            for r, x in zip(rec, (y, u, v)):
                se += float(np.sum((r.astype(np.float64) - x) ** 2))
                n += x.size
        return se / n

    rows = []
    for s in steps:
        qlat, bits = [], 0.0
        # entropy pooled over samples: concatenate symbols per latent array kind
        for lat in lats:
            ql, _ = quantise_latents(lat, s)
            qlat.append(ql)
        for field in ("y_coarse", "y_ac", "c_coarse", "c_ac"):
            arrs = [np.rint(getattr(lat, field) / s).reshape(-1, getattr(lat, field).shape[-1]) for lat in lats]
            bits += _entropy_bits(np.concatenate(arrs))
        rows.append((s, psnr(mse_of(qlat)), bits / npix))
    return rows, psnr(mse_of(lats))


def format_rows(title, rows, clean):
    lines = [f"{title}: unquantised PSNR {clean:.2f} dB"]
    for s, p, r in rows:
        lines.append(f"  s={s:3d}  PSNR {p:6.2f} dB  rate {r:6.4f} bit/luma-px")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", required=True, help="directory with the clips (models/README.md lists them)")
    ap.add_argument("--out", default="models", help="output directory (default models)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lam", type=float, default=LAMBDA, help="rate weight (multiplied by s^2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ste", type=float, default=STE_WEIGHT, help="weight of the hard-rounding distortion")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)

    w = train(args)
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, "snis896_analysis_float.npz"), **w["analysis"])
    np.savez(os.path.join(args.out, "snis896_synthesis.npz"), **w["synthesis"])
    print(f"wrote {args.out}/snis896_analysis_float.npz and {args.out}/snis896_synthesis.npz")
    if not args.no_eval:
        samples = heldout_samples(args.media)
        d = ref.dct_weights()
        rows, clean = evaluate(samples, lambda y, u, v: ref.analyze_reference(y, u, v, d), d)
        print(format_rows("DCT init (float)", rows, clean))
        rows, clean = evaluate(
            samples, lambda y, u, v: ref.analyze_reference(y, u, v, w["analysis"]), w["synthesis"]
        )
        print(format_rows("learned (float)", rows, clean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
