#!/usr/bin/env python3
"""Train the SNIS-896 lapped transform for what the codec does (analysis + synthesis, 896 each).

Command (from the repository root; TensorFlow, the `train` extra; seeded, one thread by default;
by default 1500 steps of 16 crops, Adam 3e-3, x0.3 for the last 30 %; checkpoints every 100
steps with --checkpoint-dir, the pair every N steps with --snapshot-every N):

    python tools/train_transform.py --media DIR      # DIR: the clips listed in models/README.md

It writes models/snis896_analysis_float.npz, models/snis896_synthesis.npz and
models/snis896_rate_model.json (the fitted bit model and how well it matches the coder), then
prints a float before/after comparison on held-out frames.  tools/export_model.py builds the int8
TFLite models from the analysis weights.

**Parametrisation (perfect reconstruction by construction).**  Each 1-D lapped stage (luma rows,
the column stage of each row-frequency group, the same for chroma, and both directions of the
coarse stage) is a time-domain lapped transform: a pre-filter P = B diag(I, V) B across every
block boundary (B the butterfly that pairs the n/2 samples before a boundary with their mirror
images after it, V an invertible (n/2 x n/2) matrix learned from V = I) followed by the
orthonormal block DCT (the Haar pair for the coarse stage).  Written as 2n-tap filters this is
exactly the analysis arrays of the contract; the synthesis arrays are the same structure with
P^-1 = B diag(I, V^-1) B, so synthesis(analysis(x)) = x exactly for any V, frame edges included
(the symmetric reflection leaves the boundary pre-filter at an edge the identity, and the folding
synthesis undoes the post-filter).  Each analysis filter is scaled to unit L2 norm (latents stay in
pixel units) and its synthesis filter by the inverse.  V = I is the DCT ablation itself.  Learned:
100 numbers (luma rows 16, luma columns 4 x 16, chroma rows 4, chroma columns 3 x 4, coarse
2 x 2), expanded into the 896 + 896 stored parameters.

**Training data: the codec's own residuals.**  The real encoder (DCT ablation model, 3 tiers)
codes frames 60..119 of cockatoo.mp4, bikes.mp4 and vtest.avi at qp 28, 36, 44; every frame's
padded int8 residual (intra: pixel - 128 at keyframes; motion-compensated at P-frames and key
pictures) is what the analysis sees in the codec, and is kept with its frame type and qp.  The RD
benchmark codes the first 60 frames, which are never used here; tree.avi is held out entirely.

**Rate term calibrated on the coder.**  The same encodes give the bits of every tier of every
frame.  The bit model follows the coder's contexts (native/entropy.c): each latent of a coded
block up to its last non-zero position costs -log2 p(significant | context), the context being
the core's band x in-block template x neighbour template x lower-tier level, per tier and block
kind (luma AC, chroma AC, luma / chroma coarse); the probabilities are counted on the hard levels
(add-one-half), never fitted, so no band is free; during training they are a running count over
the batches (decay 0.98 per step), so they follow the transform as the adaptive coder does.  On
top of that entropy, one weight each (shared by every latent) for the count of non-zero levels
(sign, greater-than flags), their log2-magnitude (Exp-Golomb) and the coded blocks, plus
per-macroblock and per-chunk constants, fitted to the coder's bits by non-negative least squares.
Every feature takes the hard value of the real levels and the gradient of a smooth version
(straight-through): a soft indicator's tail on the many zero latents was most of the previous
model's 35 % per-frame error.  Its error on the fit frames, on tree.avi (held out) and on the
shipped model's encodes (a different transform) is printed and stored, also for the same fit
without the context entropy.  (Free weights per band or plane were tried first: the fit put zero
cost on some bands, and the training moved energy into them.)

**Loss per sample** (qp and frame type of its residual; steps as the core: top step 0.625 *
2^(qp/6), frequency-weighted per channel, tiers 2x coarser each at P-frames, one step at
keyframes and key pictures, the encoder's dead-zone rounding per tier):
    [D + kappa * s^2 * R] / (s^2 / 12)
D: MSE (Y+U+V) of the reconstruction from all tiers, plus --grad times the MSE of the horizontal
and vertical differences of the error (a perceptual term: blocking and ringing edges);
R: the fitted bit model in bits per luma pixel summed over the tiers; s: the top step.
The quantiser is the real embedded dead-zone quantiser with a straight-through gradient; the
analysis outputs and the luma row intermediate are fake-quantised to int8 with the per-channel
steps the export will use (max |value| over a calibration pool, re-measured every 200 steps);
the synthesis filters are rounded to the core's 12-bit fixed point (straight-through).
"""

from __future__ import annotations

import argparse
import json
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
TRAIN_CLIPS = ("cockatoo.mp4", "bikes.mp4", "vtest.avi")
HELDOUT_CLIP = "tree.avi"
BENCH_FRAMES = 60  # tools/rd_benchmark.py --frames 60 codes these: training starts after them
COLLECT_FRAMES = 60  # frames per clip coded for the training data (from BENCH_FRAMES on)
COLLECT_QPS = (28, 36, 44)
TIERS = 3
TIER_RATIO = 8  # 1/8 octave: each tier halves the step (EncoderConfig default)
ROUND_INTRA, ROUND_INTER = 24 / 64, 10 / 64  # the encoder's dead-zone rounding (Tuning)
FRAC = 12  # fixed-point bits of the synthesis weights
LUMA_CROP = 136  # 16 luma blocks of 8 (incl. 4+4 px overlap), 7x7 coarse latents
CHROMA_CROP = LUMA_CROP // 2
KAPPA = 0.12  # rate weight (times s^2): the high-rate slope of D(R) is 2 ln 2 * s^2 / 12 = 0.116 s^2
GRAD_WEIGHT = 0.5
INTRA_SHARE = 0.0  # fraction of the crops from keyframes (0: by area, about 2 %; 0.3 measured worse on tree)
EVAL_STEPS = (4, 8, 16, 32, 64)
# frames of the export's calibration and of the float evaluation table (models/README.md)
CALIB_CLIPS = ("tree.avi", "cockatoo.mp4", "bikes.mp4", "vtest.avi")
CALIB_FRACTION = 0.4
HELDOUT_CLIPS = ("cockatoo.mp4", "bikes.mp4", "vtest.avi")
NZ_SHARPNESS = 6.0  # slope of the soft non-zero indicator (per step)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def read_clip(path: str, start: int = 0, count: int | None = None):
    """Frames start .. start+count-1 of a clip as (y, u, v) uint8 arrays (YUV 4:2:0)."""
    import av

    frames = []
    with av.open(path) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i < start:
                continue
            if count is not None and len(frames) >= count:
                break
            a = fr.to_ndarray(format="yuv420p")
            h, w = fr.height, fr.width
            y = a[:h]
            uv = a[h:].reshape(2, h // 2, w // 2)
            frames.append((y.copy(), uv[0].copy(), uv[1].copy()))
    return frames


def heldout_samples(media: str, per_clip: int = 2):
    """Frames from the last 60 % of the test clips, intra + plain residual (the export's table).

    Returns a list of (label, y, u, v) int16 residual planes cropped to multiples of 64.
    """
    out = []
    for name in HELDOUT_CLIPS:
        frames = read_clip(os.path.join(media, name))
        n = len(frames)
        first = int(np.ceil(n * CALIB_FRACTION)) + 1
        idx = np.linspace(first, n - 1, per_clip).astype(int)
        for t in idx:
            y, u, v = frames[t]
            py, pu, pv = frames[t - 1]
            h, w = (y.shape[0] // 64) * 64, (y.shape[1] // 64) * 64
            intra = [p.astype(np.int16) - 128 for p in (y, u, v)]
            resid = [a.astype(np.int16) - b.astype(np.int16) for a, b in ((y, py), (u, pu), (v, pv))]
            for kind, planes in (("intra", intra), ("resid", resid)):
                out.append(
                    (
                        f"{name}#{t}:{kind}",
                        planes[0][:h, :w],
                        planes[1][: h // 2, : w // 2],
                        planes[2][: h // 2, : w // 2],
                    )
                )
    return out


def step_px(qp: int) -> float:
    """The top tier's step in pixels (native/quant.c: 10 * 2^(qp/6) in 1/16 pixel)."""
    return 10.0 * 2.0 ** (qp / 6.0) / 16.0


def tier_plan(frame_type: int, qp: int) -> tuple[list[float], list[float]]:
    """(step multipliers of the top step per tier, dead-zone rounding per tier) as the core does.

    Keyframes (0) and key pictures with a fine base (2) put every tier at the top step (all but
    tier 0 code nothing); P-frames (1) and coarse key pictures (3) halve the step per tier.
    """
    if frame_type in (0, 2):
        return [1.0], [ROUND_INTRA if frame_type == 0 else ROUND_INTER]
    mult = [2.0 ** (TIER_RATIO * (TIERS - 1 - k) / 8.0) for k in range(TIERS)]
    return mult, [ROUND_INTER] * TIERS


def collect(media: str, clips, model: str | None, qps=COLLECT_QPS, keep_residuals: bool = True):
    """Code clips with the real encoder; per frame: residual planes, frame type, qp, bits per tier.

    clips: (name, first frame, count).  The residual is the padded int8 buffer the analysis
    reads (its interior Hp x Wp); the latents are the analysis' int8 outputs, dequantised.
    """
    from fractions import Fraction

    from snisd.codec.encoder import Encoder, EncoderConfig
    from snisd.files import probe
    from snisd.frame import Frame

    out = []
    for name, first, count in clips:
        path = os.path.join(media, name)
        frames = read_clip(path, first, count)
        h, w = frames[0][0].shape
        # the clip's frame rate, as `snisd encode` sets it: it places the key pictures (1 a second)
        fps = Fraction(probe(path)[2]).limit_denominator(1001)
        for qp in qps:
            cfg = EncoderConfig(
                w, h, fps.numerator, fps.denominator, tiers=TIERS, qp=qp, tier_ratio=TIER_RATIO, model=model
            )
            enc = Encoder(cfg)
            for y, u, v in frames:
                ef = enc.encode(Frame(y, u, v))
                ftype = int(enc.times.stages[-1]["frame_type"])
                yp, uvp = enc._ypad, enc._uvpad
                lat = enc.analysis(yp, uvp).dequantized()
                rec = {
                    "clip": name,
                    "qp": qp,
                    "type": ftype,
                    "bits": [8 * len(c) for c in ef.tiers],
                    "latents": lat,
                }
                if keep_residuals:
                    rec["y"] = yp[12:-12, 12:-12].copy()
                    rec["uv"] = uvp[:, 6:-6, 6:-6].copy()
                out.append(rec)
        print(f"  coded {name} frames {first}..{first + count - 1} at qp {','.join(map(str, qps))}", flush=True)
    return out


# ---------------------------------------------------------------------------
# the lapped transform from its 100 free parameters
# ---------------------------------------------------------------------------
def _butterfly(n: int) -> np.ndarray:
    h = n // 2
    eye, j = np.eye(h), np.eye(h)[::-1]
    return np.block([[eye, j], [j, -eye]]) / np.sqrt(2.0)


def _haar() -> np.ndarray:
    return np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)


def free_init() -> dict[str, np.ndarray]:
    """The free parameters at the DCT ablation (every V = I)."""
    return {
        "luma_row": np.eye(4, dtype=np.float32),
        "luma_col": np.repeat(np.eye(4, dtype=np.float32)[None], 4, axis=0),
        "chroma_row": np.eye(2, dtype=np.float32),
        "chroma_col": np.repeat(np.eye(2, dtype=np.float32)[None], 3, axis=0),
        "luma_coarse": np.ones((2, 1, 1), np.float32),
        "chroma_coarse": np.ones((2, 1, 1), np.float32),
    }


def lapped_pair(xp, v, basis: np.ndarray):
    """Analysis and synthesis 2n-tap filters (n, 2n) of one 1-D lapped stage from V (n/2, n/2).

    xp: numpy or tensorflow (the same algebra); basis: the orthonormal block transform (n, n).
    Returns (A, S) with unit-norm analysis rows and synthesis rows scaled inversely.
    """
    n = basis.shape[0]
    h = n // 2
    bf = _butterfly(n)
    if xp is np:
        vi = np.linalg.inv(v)
        blk = lambda m: np.block([[np.eye(h), np.zeros((h, h))], [np.zeros((h, h)), m]])  # noqa: E731
        concat, norm = np.concatenate, lambda a: np.sqrt(np.sum(a * a, axis=1, keepdims=True))  # noqa: E731
    else:
        tf = xp
        vi = tf.linalg.inv(v)
        z = tf.zeros((h, h), v.dtype)

        def blk(m):
            return tf.concat([tf.concat([tf.eye(h, dtype=v.dtype), z], 1), tf.concat([z, m], 1)], 0)

        concat = lambda a, axis: tf.concat(a, axis)  # noqa: E731
        norm = lambda a: tf.sqrt(tf.reduce_sum(a * a, axis=1, keepdims=True))  # noqa: E731
        bf = tf.constant(bf, v.dtype)
        basis = tf.constant(basis, v.dtype)
    p = bf @ blk(v) @ bf
    q = bf @ blk(vi) @ bf
    a = concat([basis[:, :h] @ p[h:, :], basis[:, h:] @ p[:h, :]], 1)
    s = concat([basis[:, :h] @ _t(xp, q[:, h:]), basis[:, h:] @ _t(xp, q[:, :h])], 1)
    g = norm(a)
    return a / g, s * g


def _t(xp, m):
    return m.T if xp is np else xp.transpose(m)


def expand(xp, free) -> tuple[dict, dict]:
    """The contract's six analysis and six synthesis arrays from the free parameters."""
    ana, syn = {}, {}
    for prefix, n in (("luma", 8), ("chroma", 4)):
        c = ref.dct_matrix(n)
        ana[f"{prefix}_row"], syn[f"{prefix}_row"] = lapped_pair(xp, free[f"{prefix}_row"], c)
        cols = [lapped_pair(xp, free[f"{prefix}_col"][g], c) for g in range(free[f"{prefix}_col"].shape[0])]
        stack = np.stack if xp is np else xp.stack
        ana[f"{prefix}_col"] = stack([a for a, _ in cols])
        syn[f"{prefix}_col"] = stack([s for _, s in cols])
        (fa_y, fs_y), (fa_x, fs_x) = (lapped_pair(xp, free[f"{prefix}_coarse"][d], _haar()) for d in range(2))
        # coarse k = 2*ka + kb: vertical filter ka (over a) times horizontal kb (over b)
        ka, kb = [0, 0, 1, 1], [0, 1, 0, 1]
        if xp is np:
            ana[f"{prefix}_coarse"] = np.stack([np.outer(fa_y[i], fa_x[j]) for i, j in zip(ka, kb, strict=True)])
            syn[f"{prefix}_coarse"] = np.stack([np.outer(fs_y[i], fs_x[j]) for i, j in zip(ka, kb, strict=True)])
        else:
            pairs = list(zip(ka, kb, strict=True))
            ana[f"{prefix}_coarse"] = xp.stack([fa_y[i][:, None] * fa_x[j][None, :] for i, j in pairs])
            syn[f"{prefix}_coarse"] = xp.stack([fs_y[i][:, None] * fs_x[j][None, :] for i, j in pairs])
    return ana, syn


def expand_numpy(free) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    a, s = expand(np, {k: np.asarray(v, np.float64) for k, v in free.items()})
    return ({k: v.astype(np.float32) for k, v in a.items()}, {k: v.astype(np.float32) for k, v in s.items()})


# ---------------------------------------------------------------------------
# TensorFlow transform (training only; general crop size)
# ---------------------------------------------------------------------------
def _tf():
    import tensorflow as tf

    return tf


def _fq(tf, x, step):
    """Straight-through int8 fake quantisation with per-channel step (last axis), clipped at 127."""
    q = tf.clip_by_value(tf.round(x / step), -127.0, 127.0) * step
    return x + tf.stop_gradient(q - x)


def tf_analysis(tf, x, a_row, a_col_full, a_coarse, n, q=None):
    """x (B, H, W) -> coef (B, nby, nbx, n*n) for all blocks of the crop, coarse (B, nI, nJ, 4).

    q: optional int8 steps {"row": (n,) or None, "ac": (n*n,), "coarse": (4,)} (fake quantisation
    of the int8 graph's tensors: the luma row intermediate, the column output, the coarse output).
    """
    taps = 2 * n
    w = tf.signal.frame(x, taps, n, axis=2)  # (B, H, nbx, t)
    r = tf.einsum("byjt,ut->byju", w, a_row)
    if q is not None and q.get("row") is not None:
        r = _fq(tf, r, q["row"])
    w = tf.signal.frame(r, taps, n, axis=1)  # (B, nby, t, nbx, u)
    coef = tf.einsum("bitju,uvt->bijuv", w, a_col_full)
    sh = tf.shape(coef)
    coef = tf.reshape(coef, [sh[0], sh[1], sh[2], n * n])
    if q is not None:
        coef = _fq(tf, coef, q["ac"])
    dc = coef[..., 0]
    w = tf.signal.frame(tf.signal.frame(dc, 4, 2, axis=1), 4, 2, axis=3)  # (B, nI, a, nJ, b)
    coarse = tf.einsum("bIaJc,kac->bIJk", w, a_coarse)
    if q is not None:
        coarse = _fq(tf, coarse, q["coarse"])
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


# ---------------------------------------------------------------------------
# quantiser and bit model (shared by the fit and the training loss)
# ---------------------------------------------------------------------------
def channel_weights(n: int) -> np.ndarray:
    """The core's frequency weighting of the AC steps: 1 + (u+v) / (2(n-1)), channel u*n+v-1."""
    c = np.arange(1, n * n)
    return (1.0 + (c // n + c % n) / (2.0 * (n - 1))).astype(np.float32)


# The bit model.  Its rate follows the coder's significance contexts (native/entropy.c): every
# latent of a coded block up to its last non-zero position pays -log2 p(sig | context) with the
# context band(pos) x in-block template T x neighbour template N x lower-tier level L of the
# core, per tier and block kind; the probabilities are measured (counts of the hard levels), not
# fitted, so no band can get zero cost, and during training they follow the transform (a running
# count over the batches), as the adaptive coder does.  On top of that context entropy a few
# weights shared by all latents (non-negative least squares against the coder's bits): the
# entropy, the count of non-zero levels (sign, greater-than flags), their log2-magnitude
# (Exp-Golomb), coded blocks, and per-macroblock / per-chunk constants.  (Free weights per band
# were tried first: the fit put zero cost on some bands and training moved energy into them.)
FEATURES = ("ctx_entropy", "nz", "mag", "cbf", "mb_intra", "mb_inter_tier0", "mb_upper_tier", "chunk")
N_CONST = 4  # the per-macroblock and per-chunk constants at the end (no gradient)
N_SIG_CTX = 270  # 10 bands x 3 T x 3 N x 3 L (native/entropy.c C_SIG)
N_KINDS = 4  # luma AC, chroma AC, luma coarse, chroma coarse (each has its own contexts)
BAND_EDGES = (1, 2, 3, 6, 10, 15, 21, 28, 36, 64)
CTX_PRIOR = 0.5  # add-one-half counts of the probability estimates
CTX_DECAY = 0.98  # per training step, of the running context counts


def scan_tables(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per AC channel u*n+v-1 of an n x n block: (zig-zag position, band, template neighbours
    (u-1, v) and (u, v-1), n*n-1 where absent), as native/entropy.c make_scan."""
    c = n * n - 1
    pos, band, nba, nbb = (np.zeros(c, np.int32) for _ in range(4))
    p = 0
    for s in range(1, 2 * (n - 1) + 1):
        for i in range(s + 1):
            u = s - i if s % 2 else i
            v = s - u
            if u >= n or v >= n:
                continue
            ch = u * n + v - 1
            pos[ch] = p
            band[ch] = int(np.searchsorted(BAND_EDGES, p, side="right"))
            nba[ch] = (u - 1) * n + v - 1 if u > 0 and u - 1 + v > 0 else c
            nbb[ch] = u * n + v - 2 if v > 0 and u + v - 1 > 0 else c
            p += 1
    return pos, band, nba, nbb


def _kind_tables():
    k = (np.arange(4, dtype=np.int32), np.arange(4, dtype=np.int32), np.array([4, 0, 1, 2], np.int32),
         np.array([4, 4, 0, 1], np.int32))  # fmt: skip
    return (scan_tables(8), scan_tables(4), k, k)


KIND_TABLES = _kind_tables()


def sig_terms(tf, z, rnd, m_prev, kind: int):
    """Context and masks of one block kind of one tier.  z (N, H, W, C) = |residual| / step of
    this tier, rnd its rounding, m_prev the lower tier's hard level magnitudes (or None).
    Returns (ctx int32, mask: inside a coded block up to its last non-zero position, soft
    non-zero indicator, hard level magnitudes)."""
    pos, band, nba, nbb = (tf.constant(a) for a in KIND_TABLES[kind])
    m = tf.stop_gradient(tf.floor(z + rnd))
    mc = tf.minimum(m, 3.0)
    mpad = tf.concat([mc, tf.zeros_like(mc[..., :1])], axis=-1)
    t = tf.minimum(tf.gather(mpad, nba, axis=-1) + tf.gather(mpad, nbb, axis=-1), 2.0)
    left = tf.pad(m[:, :, :-1, :], [[0, 0], [0, 0], [1, 0], [0, 0]])
    top = tf.pad(m[:, :-1, :, :], [[0, 0], [1, 0], [0, 0], [0, 0]])
    nb = tf.minimum(left + top, 2.0)
    low = tf.zeros_like(m) if m_prev is None else tf.minimum(m_prev, 2.0)
    ctx = tf.cast(band, tf.int32) * 27 + tf.cast(t, tf.int32) * 9 + tf.cast(nb, tf.int32) * 3 + tf.cast(low, tf.int32)
    posf = tf.cast(pos, tf.float32)
    last = tf.reduce_max(tf.where(m > 0, posf, -1.0), axis=-1, keepdims=True)
    mask = tf.cast(posf <= last, tf.float32)
    nz, _ = _soft(tf, z, rnd)
    return ctx, mask, nz, m


def ctx_costs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(-log2 p(sig), -log2 p(zero)) per (tier, kind, context) from counts (..., 2): (non-zero, all)."""
    p = (counts[..., 0] + CTX_PRIOR) / (counts[..., 1] + 2 * CTX_PRIOR)
    return (-np.log2(p)).astype(np.float32), (-np.log2(1.0 - p)).astype(np.float32)


def quantise_tiers(tf, y, steps, rnds):
    """Embedded dead-zone quantisation of latents y (..., C) over tiers.

    steps: list of per-tier per-channel steps broadcastable to y; rnds: per-tier rounding.
    Returns (dequantised sum with a straight-through gradient, per-tier list of z = |r|/step,
    where r is what the tiers below left).
    """
    r = y
    total = tf.zeros_like(y)
    zs = []
    for s, rnd in zip(steps, rnds, strict=True):
        z = tf.abs(r) / s
        zs.append((z, rnd))
        m = tf.stop_gradient(tf.floor(z + rnd))
        dq = tf.sign(r) * m * s
        r = r - tf.stop_gradient(dq)
        total = total + tf.stop_gradient(dq)
    return y + tf.stop_gradient(total - y), zs


def _ste(tf, hard, soft):
    """The hard value with the soft one's gradient (the features count the coder's real levels)."""
    return hard + soft - tf.stop_gradient(soft)


def _soft(tf, z, rnd):
    """(non-zero indicator, log2-magnitude) of a tier's levels, hard values, smooth gradients."""
    hard = tf.stop_gradient(tf.cast(tf.floor(z + rnd) > 0, z.dtype))
    nz = _ste(tf, hard, tf.sigmoid(NZ_SHARPNESS * (z - (1.0 - rnd))))
    mag = tf.math.log(1.0 + tf.nn.relu(z + rnd - 1.0)) / np.log(2.0)
    return nz, mag


def kind_terms(tf, zs, kind: int, costs=None):
    """Per tier of one block kind (z (N, H, W, C) per tier): per-sample (N,) soft features
    (nz, mag, cbf), and either the context entropy (costs: per tier (c1, c0) arrays (270,)) or,
    without costs, the histograms (N, 3, 270) of soft non-zero / zero mass inside the mask and
    soft non-zero mass outside it, plus the hard counts (270, 2) of (non-zero, all) in the mask.
    """
    out = []
    m_prev = None
    for k, (z, rnd) in enumerate(zs):
        ctx, mask, nz, m = sig_terms(tf, z, rnd, m_prev, kind)
        _, mag = _soft(tf, z, rnd)
        f_nz = tf.reduce_sum(nz, axis=[1, 2, 3])
        f_mag = tf.reduce_sum(mag, axis=[1, 2, 3])
        # coded blocks: the hard count, the gradient of 1 - P(every latent of the block is zero)
        soft = tf.sigmoid(NZ_SHARPNESS * (z - (1.0 - rnd)))
        cbf_soft = 1.0 - tf.exp(tf.reduce_sum(tf.math.log(1.0 - soft + 1e-6), axis=3))
        cbf = _ste(tf, tf.cast(tf.reduce_max(m, axis=3) > 0, z.dtype), cbf_soft)
        f_cbf = tf.reduce_sum(cbf, axis=[1, 2])
        hard = tf.cast(m > 0, tf.float32) * mask
        flat = tf.reshape(ctx, [-1])
        counts = tf.stack(
            [
                tf.math.unsorted_segment_sum(tf.reshape(hard, [-1]), flat, N_SIG_CTX),
                tf.math.unsorted_segment_sum(tf.reshape(mask, [-1]), flat, N_SIG_CTX),
            ],
            axis=1,
        )
        if costs is not None:
            c1 = tf.gather(costs[k][0], ctx)
            c0 = tf.gather(costs[k][1], ctx)
            h = tf.reduce_sum(mask * (nz * c1 + (1.0 - nz) * c0) + (1.0 - mask) * nz * c1, axis=[1, 2, 3])
            out.append((f_nz, f_mag, f_cbf, h, counts))
        else:
            n = tf.shape(z)[0]
            seg = tf.reshape(tf.range(n)[:, None, None, None] * N_SIG_CTX + ctx, [-1])

            def hist(w, seg=seg, n=n):
                return tf.reshape(tf.math.unsorted_segment_sum(tf.reshape(w, [-1]), seg, n * N_SIG_CTX), [n, N_SIG_CTX])

            hh = tf.stack([hist(mask * nz), hist(mask * (1.0 - nz)), hist((1.0 - mask) * nz)], axis=1)
            out.append((f_nz, f_mag, f_cbf, hh, counts))
        m_prev = m
    return out


def frame_steps(ftype: int, qp: int):
    """Per-tier step arrays (luma AC, chroma AC, coarse) and roundings of a frame type and qp."""
    mult, rnds = tier_plan(ftype, qp)
    s = step_px(qp)
    wy, wc = channel_weights(8), channel_weights(4)
    return [(s * m * wy, s * m * wc, np.full(4, s * m, np.float32)) for m in mult], rnds


def record_terms(tf, rec) -> dict:
    """Per tier of a coded frame's int8 latents: soft features (nz, mag, cbf summed over the
    kinds), the context histograms (kind, 3, 270) and hard counts (kind, 270, 2), and the
    constants (for the bit fit; computed once per record and kept in it)."""
    if "terms" in rec:
        return rec["terms"]
    y_coarse, y_ac, c_coarse, c_ac = rec["latents"]
    steps, rnds = frame_steps(rec["type"], rec["qp"])
    lats = [y_ac[None], c_ac, y_coarse[None], c_coarse]  # (N, H, W, C) per kind
    per_kind = []
    for kind, (lat, si) in enumerate(zip(lats, (0, 1, 2, 2), strict=True)):
        _, zs = quantise_tiers(tf, tf.constant(lat), [st[si] for st in steps], rnds)
        per_kind.append(kind_terms(tf, zs, kind))
    hb, wb = y_ac.shape[:2]
    mbs = hb * wb / 16.0  # 32x32 macroblocks
    soft = np.zeros((TIERS, 3))
    hist = np.zeros((TIERS, N_KINDS, 3, N_SIG_CTX))
    counts = np.zeros((TIERS, N_KINDS, N_SIG_CTX, 2))
    const = np.zeros((TIERS, N_CONST))
    for k in range(TIERS):
        const[k] = [
            mbs if (rec["type"] == 0 and k == 0) else 0.0,
            mbs if (rec["type"] != 0 and k == 0) else 0.0,
            mbs if k > 0 else 0.0,
            1.0,
        ]
        if k >= len(steps):  # tiers that only carry their header at keyframes / key pictures
            continue
        for kind in range(N_KINDS):
            f_nz, f_mag, f_cbf, hh, cnt = per_kind[kind][k]
            soft[k] += [float(tf.reduce_sum(f_nz)), float(tf.reduce_sum(f_mag)), float(tf.reduce_sum(f_cbf))]
            hist[k, kind] = hh.numpy().sum(0)
            counts[k, kind] = cnt.numpy()
    rec["terms"] = {"soft": soft, "hist": hist, "counts": counts, "const": const}
    return rec["terms"]


def context_counts(tf, records) -> np.ndarray:
    """Hard (non-zero, all) counts per (tier, kind, context) over the records' masks."""
    return sum(record_terms(tf, r)["counts"] for r in records)


def record_features(tf, rec, costs) -> np.ndarray:
    """Rows (one per tier) of FEATURES of a coded frame under context costs (c1, c0) (tier, kind, 270)."""
    t = record_terms(tf, rec)
    c1, c0 = costs
    h = (t["hist"][:, :, 0] * c1 + t["hist"][:, :, 1] * c0 + t["hist"][:, :, 2] * c1).sum(axis=(1, 2))
    return np.concatenate([h[:, None], t["soft"], t["const"]], axis=1)


def nnls(a: np.ndarray, b: np.ndarray, iters: int = 5000) -> np.ndarray:
    """Non-negative least squares by projected gradient on column-normalised features."""
    scale = np.sqrt((a * a).sum(0)) + 1e-12
    an = a / scale
    x = np.linalg.lstsq(an, b, rcond=None)[0].clip(0)
    lip = np.linalg.norm(an, 2) ** 2
    for _ in range(iters):
        x = (x - (an.T @ (an @ x - b)) / lip).clip(0)
    return x / scale


def fit_bits(tf, records, use=None):
    """Fit the bit model to the coder's bits per tier; returns (weights, context costs).

    use: names of FEATURES to fit (the others get weight 0; for the comparison of models)."""
    costs = ctx_costs(context_counts(tf, records))
    rows, bits = [], []
    for rec in records:
        f = record_features(tf, rec, costs)
        rows.append(f)
        bits.extend(rec["bits"][: len(f)] + [0] * (len(f) - len(rec["bits"])))
    a = np.concatenate(rows)
    if use is not None:
        a = a * np.array([name in use for name in FEATURES], np.float64)
    b = np.array(bits, np.float64)
    wr = 1.0 / np.sqrt(b + 256.0)  # between absolute and relative errors: small frames count too
    return nnls(a * wr[:, None], b * wr), costs


def bit_errors(w, costs, records, tf) -> dict[str, float]:
    """How well the bit model predicts the coder: per-frame total error, overall ratio."""
    pred, real = [], []
    for rec in records:
        f = record_features(tf, rec, costs)
        pred.append(float((f @ w).sum()))
        real.append(float(sum(rec["bits"])))
    p, r = np.array(pred), np.array(real)
    rel = np.abs(p - r) / r
    return {
        "frames": len(r),
        "median_abs_rel_error": float(np.median(rel)),
        "mean_abs_rel_error": float(rel.mean()),
        "total_ratio_pred_over_real": float(p.sum() / r.sum()),
        "log_correlation": float(np.corrcoef(np.log(p + 1), np.log(r))[0, 1]),
    }


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
class CropSampler:
    """Deterministic random crops of the coded residuals, with their frame type and qp."""

    def __init__(self, records, seed: int, intra_share: float = 0.0):
        """intra_share > 0: that fraction of the crops comes from keyframes (intra residuals),
        else every frame is sampled in proportion to its area."""
        self.rng = np.random.default_rng(seed)
        self.recs = [r for r in records if r["y"].shape[0] >= LUMA_CROP and r["y"].shape[1] >= LUMA_CROP]
        area = np.array([r["y"].size for r in self.recs], np.float64)
        key = np.array([r["type"] == 0 for r in self.recs])
        if intra_share > 0 and key.any() and not key.all():
            area[key] *= intra_share / area[key].sum()
            area[~key] *= (1.0 - intra_share) / area[~key].sum()
        self.p = area / area.sum()

    def sample(self, batch: int):
        ly = np.empty((batch, LUMA_CROP, LUMA_CROP), np.float32)
        lc = np.empty((batch, 2, CHROMA_CROP, CHROMA_CROP), np.float32)
        meta = []
        for b in range(batch):
            rec = self.recs[int(self.rng.choice(len(self.recs), p=self.p))]
            h, w = rec["y"].shape
            r0 = int(self.rng.integers(0, (h - LUMA_CROP) // 2 + 1)) * 2
            c0 = int(self.rng.integers(0, (w - LUMA_CROP) // 2 + 1)) * 2
            ly[b] = rec["y"][r0 : r0 + LUMA_CROP, c0 : c0 + LUMA_CROP]
            lc[b] = rec["uv"][:, r0 // 2 : r0 // 2 + CHROMA_CROP, c0 // 2 : c0 // 2 + CHROMA_CROP]
            # the qp of the steps: the residual's own qp +- 2, so the coded range 26..46 is covered
            meta.append((rec["type"], rec["qp"] + int(self.rng.integers(-2, 3))))
        return ly, lc.reshape(batch * 2, CHROMA_CROP, CHROMA_CROP), meta


def batch_steps(meta):
    """Per-sample step tensors for the batch: (tiers, B, C) arrays for luma AC, chroma AC, coarse,
    rounding (tiers, B) and the top step (B,).  Samples with fewer tiers get huge steps above."""
    k = TIERS
    sy = np.full((k, len(meta), 63), 1e9, np.float32)
    sc = np.full((k, len(meta), 15), 1e9, np.float32)
    sk = np.full((k, len(meta), 4), 1e9, np.float32)
    rnd = np.zeros((k, len(meta)), np.float32)
    top = np.zeros(len(meta), np.float32)
    for b, (ft, qp) in enumerate(meta):
        steps, rnds = frame_steps(ft, qp)
        for t, ((a, c, d), r) in enumerate(zip(steps, rnds, strict=True)):
            sy[t, b], sc[t, b], sk[t, b], rnd[t, b] = a, c, d, r
        top[b] = step_px(qp)
    return sy, sc, sk, rnd, top


def train(args, records, bit_w, fit_counts):
    tf = _tf()
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    sampler = CropSampler(records, SEED, args.intra_share)
    free0 = free_init()
    free = {k: tf.Variable(v.astype(np.float32), name=k) for k, v in free0.items()}
    variables = list(free.values())
    opt = tf.keras.optimizers.Adam(learning_rate=args.lr)
    lg = tf.constant(wts.LUMA_GROUPS)
    cg = tf.constant(wts.CHROMA_GROUPS)
    bw = tf.constant(bit_w[: len(FEATURES) - N_CONST], tf.float32)
    # running context counts (non-zero, all) per (tier, kind, context): start from the fit frames'
    fit_px = float(sum(r["y"].size for r in records))
    ctx_state = tf.Variable(np.zeros((TIERS, N_KINDS, N_SIG_CTX, 2), np.float32), trainable=False, name="ctx")
    kappa = tf.constant(args.kappa, tf.float32)
    gradw = tf.constant(args.grad, tf.float32)

    def arrays():
        a, s = expand(tf, free)
        # synthesis on the core's 12-bit grid (straight-through)
        s = {k: v + tf.stop_gradient(tf.round(v * (1 << FRAC)) / (1 << FRAC) - v) for k, v in s.items()}
        return a, s

    # a fixed calibration pool for the int8 steps (max |value| per channel, like the export)
    pool = [sampler.sample(16) for _ in range(8)]

    def int8_steps():
        a, _ = arrays()
        mx = {"luma_row": 0, "luma_ac": 0, "luma_coarse": 0, "chroma_ac": 0, "chroma_coarse": 0}
        for ly, lc, _ in pool:
            for prefix, x, g, n in (("luma", ly, lg, 8), ("chroma", lc, cg, 4)):
                xt = tf.constant(x)
                w = tf.signal.frame(xt, 2 * n, n, axis=2)
                r = tf.einsum("byjt,ut->byju", w, a[prefix + "_row"])
                coef, coarse = tf_analysis(
                    tf, xt, a[prefix + "_row"], tf.gather(a[prefix + "_col"], g), a[prefix + "_coarse"], n
                )
                red = lambda t: tf.reduce_max(tf.reshape(tf.abs(t), [-1, t.shape[-1]]), axis=0)  # noqa: E731
                if prefix == "luma":
                    mx["luma_row"] = tf.maximum(mx["luma_row"], red(r))
                mx[prefix + "_ac"] = tf.maximum(mx[prefix + "_ac"], red(coef))
                mx[prefix + "_coarse"] = tf.maximum(mx[prefix + "_coarse"], red(coarse))
        return {k: tf.constant(np.maximum(v.numpy(), 1e-3) / 127.0, tf.float32) for k, v in mx.items()}

    def plane(x, prefix, groups, n, q, st_ac, st_k, rnd, a, s):
        coef, coarse = tf_analysis(
            tf, x, a[prefix + "_row"], tf.gather(a[prefix + "_col"], groups), a[prefix + "_coarse"], n, q
        )
        ac = coef[..., 1:]
        ac_q, zac = quantise_tiers(tf, ac, st_ac, rnd)
        k_q, zk = quantise_tiers(tf, coarse, st_k, rnd)
        coef_q = tf.concat([coef[..., :1], ac_q], axis=-1)
        xh = tf_synthesis(
            tf, coef_q, k_q, s[prefix + "_row"], tf.gather(s[prefix + "_col"], groups), s[prefix + "_coarse"], n
        )
        lo, hi = 3 * n, x.shape[1] - 3 * n  # region reconstructed from complete latents
        e = xh[:, lo:hi, lo:hi] - x[:, lo:hi, lo:hi]
        se = tf.reduce_sum(tf.square(e), axis=[1, 2])
        ge = tf.reduce_sum(tf.square(e[:, 1:, :] - e[:, :-1, :]), axis=[1, 2]) + tf.reduce_sum(
            tf.square(e[:, :, 1:] - e[:, :, :-1]), axis=[1, 2]
        )
        return se, ge, (hi - lo) ** 2, zac, zk

    @tf.function(reduce_retracing=True)
    def step_fn(ly, lc, sy, sc, sk, rnd, top, qy, qc, c1, c0):
        b = tf.shape(ly)[0]
        with tf.GradientTape() as tape:
            a, s = arrays()
            sy_l = [sy[t][:, None, None, :] for t in range(TIERS)]
            sk_l = [sk[t][:, None, None, :] for t in range(TIERS)]
            sc_l = [tf.repeat(sc[t], 2, axis=0)[:, None, None, :] for t in range(TIERS)]
            skc_l = [tf.repeat(sk[t], 2, axis=0)[:, None, None, :] for t in range(TIERS)]
            rnd_y = [rnd[t][:, None, None, None] for t in range(TIERS)]
            rnd_c = [tf.repeat(rnd[t], 2, axis=0)[:, None, None, None] for t in range(TIERS)]
            se_y, ge_y, n_y, zy, zky = plane(ly, "luma", lg, 8, qy, sy_l, sk_l, rnd_y, a, s)
            se_c, ge_c, n_c, zc, zkc = plane(lc, "chroma", cg, 4, qc, sc_l, skc_l, rnd_c, a, s)
            se_c = tf.reduce_sum(tf.reshape(se_c, [b, 2]), axis=1)
            ge_c = tf.reduce_sum(tf.reshape(ge_c, [b, 2]), axis=1)
            npx = float(n_y + 2 * n_c)
            mse = (se_y + se_c) / npx
            gmse = (ge_y + ge_c) / npx
            cost = [[(c1[t, kd], c0[t, kd]) for t in range(TIERS)] for kd in range(N_KINDS)]
            terms = [
                kind_terms(tf, zy, 0, cost[0]),
                kind_terms(tf, zc, 1, cost[1]),
                kind_terms(tf, zky, 2, cost[2]),
                kind_terms(tf, zkc, 3, cost[3]),
            ]
            bits = 0.0
            counts = []
            for t in range(TIERS):
                for kd in range(N_KINDS):
                    f_nz, f_mag, f_cbf, h, cnt = terms[kd][t]
                    f = tf.stack([h, f_nz, f_mag, f_cbf], axis=1)
                    if kd in (1, 3):  # U and V of a sample are consecutive in the batch
                        f = tf.reduce_sum(tf.reshape(f, [b, 2, 4]), axis=1)
                    bits = bits + tf.reduce_sum(f * bw, axis=1)
                    counts.append(cnt)
            bpp = bits / float(LUMA_CROP * LUMA_CROP)
            d = mse + gradw * gmse
            loss = tf.reduce_mean((d + kappa * top * top * bpp) / (top * top / 12.0))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        return (
            loss,
            tf.reduce_mean(mse),
            tf.reduce_mean(bpp),
            tf.reshape(tf.stack(counts), [TIERS, N_KINDS, N_SIG_CTX, 2]),
        )

    ckpt = tf.train.Checkpoint(opt=opt, ctx=ctx_state, **free)
    manager = tf.train.CheckpointManager(ckpt, args.checkpoint_dir, max_to_keep=2) if args.checkpoint_dir else None
    start = 0
    if manager is not None and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        start = int(opt.iterations.numpy())
        for _ in range(start):  # replay the sampler so a resumed run sees the same batches
            sampler.sample(args.batch)
        print(f"  resumed at step {start}", flush=True)
    t0 = time.time()
    q = None
    for it in range(start, args.steps):
        opt.learning_rate.assign(args.lr * (args.lr_drop if it >= int(args.steps * 0.7) else 1.0))
        if it % 200 == 0 or q is None:
            q = int8_steps()
        ly, lc, meta = sampler.sample(args.batch)
        sy, sc, sk, rnd, top = batch_steps(meta)
        qy = {"row": q["luma_row"], "ac": q["luma_ac"], "coarse": q["luma_coarse"]}
        qc = {"row": None, "ac": q["chroma_ac"], "coarse": q["chroma_coarse"]}
        state = ctx_state.numpy()
        if it == 0:  # fit frames' statistics at the scale of a steady running count
            state = fit_counts * (args.batch * LUMA_CROP**2 / fit_px / (1.0 - CTX_DECAY))
        c1, c0 = ctx_costs(state)
        loss, mse, bpp, cnt = step_fn(ly, lc, sy, sc, sk, rnd, top, qy, qc, tf.constant(c1), tf.constant(c0))
        ctx_state.assign((CTX_DECAY * state + cnt.numpy()).astype(np.float32))
        if it % 50 == 0 or it == args.steps - 1:
            print(
                f"  step {it:5d}  loss={float(loss):8.4f}  mse={float(mse):8.3f}  bpp={float(bpp):6.4f}  "
                f"({time.time() - t0:.0f}s)",
                flush=True,
            )
        if manager is not None and (it + 1) % 100 == 0:
            manager.save()
        if args.snapshot_every and (it + 1) % args.snapshot_every == 0 and it + 1 < args.steps:
            d = os.path.join(args.out, f"step{it + 1}")
            os.makedirs(d, exist_ok=True)
            write_pair(d, {k: v.numpy() for k, v in free.items()})
    return {k: v.numpy() for k, v in free.items()}


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
        for lat, (_, y, u, v) in zip(lat_list, samples, strict=True):
            rec = ref.synthesize_reference(lat, synthesis)
            for r, x in zip(rec, (y, u, v), strict=True):
                se += float(np.sum((r.astype(np.float64) - x) ** 2))
                n += x.size
        return se / n

    rows = []
    for s in steps:
        qlat, bits = [], 0.0
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


def write_pair(out: str, free) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Write the analysis (float) and synthesis arrays of the free parameters into out."""
    a, s = expand_numpy(free)
    np.savez(os.path.join(out, "snis896_analysis_float.npz"), **a)
    np.savez(os.path.join(out, "snis896_synthesis.npz"), **s)
    return a, s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", required=True, help="directory with the clips (models/README.md lists them)")
    ap.add_argument("--out", default="models", help="output directory (default models)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lr-drop", type=float, default=0.3, help="learning-rate factor for the last 30 %% of the steps")
    ap.add_argument("--intra-share", type=float, default=INTRA_SHARE, help="fraction of crops from keyframes")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also write the pair to OUT/stepN every N steps")
    ap.add_argument("--kappa", type=float, default=KAPPA, help="rate weight (multiplied by s^2)")
    ap.add_argument("--grad", type=float, default=GRAD_WEIGHT, help="weight of the gradient (perceptual) term")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint-dir", default=None, help="checkpoint every 100 steps here and resume from it")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--fit-only", action="store_true", help="only code the frames and fit the bit model")
    args = ap.parse_args(argv)

    tf = _tf()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    dct_model = os.path.join(REPO, "models", "dct8.tflite")
    t0 = time.time()
    print("coding the training frames with the DCT ablation model", flush=True)
    train_recs = collect(args.media, [(c, BENCH_FRAMES, COLLECT_FRAMES) for c in TRAIN_CLIPS], dct_model)
    held_recs = collect(args.media, [(HELDOUT_CLIP, 0, COLLECT_FRAMES)], dct_model, keep_residuals=False)
    shipped = collect(args.media, [(c, BENCH_FRAMES, 10) for c in TRAIN_CLIPS], None, keep_residuals=False)
    print(f"  {len(train_recs)} training frames ({time.time() - t0:.0f}s)", flush=True)
    bit_w, costs = fit_bits(tf, train_recs)
    report = {
        "features": dict(zip(FEATURES, map(float, bit_w), strict=True)),
        "fit_frames": bit_errors(bit_w, costs, train_recs, tf),
        "heldout_tree": bit_errors(bit_w, costs, held_recs, tf),
        "shipped_model_frames": bit_errors(bit_w, costs, shipped, tf),
    }
    # the same fit without the context entropy (the previous model's features, hard-valued)
    w0, _ = fit_bits(tf, train_recs, use=set(FEATURES) - {"ctx_entropy"})
    report["without_contexts"] = {
        "features": dict(zip(FEATURES, map(float, w0), strict=True)),
        **{k: bit_errors(w0, costs, r, tf) for k, r in (("fit_frames", train_recs), ("heldout_tree", held_recs))},
    }
    for k in ("fit_frames", "heldout_tree", "shipped_model_frames"):
        print(f"  bit model on {k}: {report[k]}", flush=True)
    print(f"  without the context entropy: {report['without_contexts']}", flush=True)
    fit_counts = context_counts(tf, train_recs)
    for rec in train_recs + held_recs + shipped:
        rec.pop("latents", None)  # the bit fit is done; keep only the residuals
    os.makedirs(args.out, exist_ok=True)
    rate_path = os.path.join(args.out, "snis896_rate_model.json")
    if args.fit_only:
        with open(rate_path, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {rate_path}")
        return 0
    free = train(args, train_recs, bit_w, fit_counts)
    a, s = write_pair(args.out, free)
    report["free_parameters"] = {k: np.asarray(v, np.float64).round(6).tolist() for k, v in free.items()}
    with open(rate_path, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
        f.write("\n")
    print(
        f"wrote {args.out}/snis896_analysis_float.npz, snis896_synthesis.npz, snis896_rate_model.json "
        f"({time.time() - t0:.0f}s)"
    )
    if not args.no_eval:
        samples = heldout_samples(args.media)
        d = ref.dct_weights()
        rows, clean = evaluate(samples, lambda y, u, v: ref.analyze_reference(y, u, v, d), d)
        print(format_rows("DCT init (float)", rows, clean))
        rows, clean = evaluate(samples, lambda y, u, v: ref.analyze_reference(y, u, v, a), s)
        print(format_rows("learned (float)", rows, clean))
    return 0


if __name__ == "__main__":
    sys.exit(main())
