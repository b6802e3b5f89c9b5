"""Context-adaptive entropy model of one tier: macroblock modes, motion vectors and latents.

A tier is coded macroblock by macroblock (32x32 luma pixels, raster order). Inside a coded
macroblock each 16x16 quadrant has a flag; a coded quadrant carries the 1/16-scale coarse latents
(luma, then U and V) and the 1/8-scale AC latents of its 8x8 luma / 4x4 chroma blocks. Each
block has a coded-block flag, then CABAC-style significance / last flags along a zig-zag scan,
a greater-than-one flag and an Exp-Golomb remainder. Contexts come from the left and top
neighbours in the same tier, the co-located coefficient of the lower tier of the same frame and
the macroblock's prediction mode.

The same function codes and decodes (see rangecoder.py): in decode mode the arrays passed in
are zero-filled and get the decoded values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .rangecoder import code_bit, code_bypass, code_expgolomb, new_probs

MB = 32  # macroblock size in luma pixels
MV_LIMIT = 512  # |mv| bound in half-pels; larger values mean a corrupt stream

# Context layout (offsets into one tier's probability table).
CTX_MODE = 0  # 3
CTX_MBCBF = 3  # 6
CTX_QCBF = 9  # 6
CTX_MVZERO = 15  # 2 x 3
CTX_MVMAG = 21  # 2 x 8
CTX_PRED2 = 37  # 3
CTX_CLASS = 64  # 4 classes x CLASS_SIZE
CLASS_SIZE = 128
C_CBF, C_SIG, C_LAST, C_GT1, C_EG = 0, 18, 78, 98, 107
N_CONTEXTS = CTX_CLASS + 4 * CLASS_SIZE
ERR = 7  # state slot flagging a semantic error while decoding


def _zigzag(n: int) -> np.ndarray:
    """Channel indices (u*n+v-1, DC excluded) in zig-zag order of u+v."""
    order = sorted(((u, v) for u in range(n) for v in range(n) if u or v),
                   key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 else p[0]))
    return np.array([u * n + v - 1 for u, v in order], dtype=np.int32)


def _bands(n: int) -> np.ndarray:
    edges = [1, 2, 3, 6, 10, 15, 21, 28, 36, 64]
    return np.array([next(b for b, e in enumerate(edges) if pos < e) for pos in range(n)], dtype=np.int32)


SCAN_Y = _zigzag(8)
SCAN_C = _zigzag(4)
SCAN_COARSE = np.arange(4, dtype=np.int32)
BAND_Y = _bands(63)
BAND_C = _bands(15)
BAND_COARSE = np.arange(4, dtype=np.int32)


def new_tier_probs() -> np.ndarray:
    return new_probs(N_CONTEXTS)


@njit(cache=True)
def _block_nonzero(q, i, j, n):
    for c in range(n):
        if q[i, j, c] != 0:
            return 1
    return 0


@njit(cache=True)
def _code_block(st, buf, probs, base, q, lq, cbf, i, j, scan, band, n, pm):
    """Code the n latents of block (i, j) of q; returns its coded-block flag."""
    h, w = cbf.shape
    nb = (cbf[i, j - 1] if j > 0 else 0) + (cbf[i - 1, j] if i > 0 else 0)
    lnz = _block_nonzero(lq, i, j, n)
    coded = _block_nonzero(q, i, j, n) if st[5] == 0 else 0
    coded = code_bit(st, buf, probs, base + C_CBF + nb * 6 + lnz * 2 + pm, coded)
    cbf[i, j] = coded
    if not coded:
        return 0
    ngt1 = 0
    for pos in range(n):
        c = scan[pos]
        b = band[pos]
        lz = 1 if lq[i, j, c] != 0 else 0
        if pos == n - 1:
            sig = 1  # reached the end without a "last" flag: the final coefficient is non-zero
        else:
            nbc = (1 if j > 0 and q[i, j - 1, c] != 0 else 0) + (1 if i > 0 and q[i - 1, j, c] != 0 else 0)
            sig = 1 if q[i, j, c] != 0 else 0
            sig = code_bit(st, buf, probs, base + C_SIG + b * 6 + lz * 3 + nbc, sig)
        if sig:
            v = q[i, j, c]
            mag = v if v > 0 else -v
            gctx = base + C_GT1 + (0 if b < 2 else (1 if b < 5 else 2)) * 3 + min(ngt1, 2)
            gt1 = code_bit(st, buf, probs, gctx, 1 if mag > 1 else 0)
            if gt1:
                ngt1 += 1
                mag = 2 + code_expgolomb(st, buf, probs, base + C_EG, 8, mag - 2)
                if mag > 1 << 20:
                    st[ERR] = 1
                    return 1
            else:
                mag = 1
            neg = code_bypass(st, buf, 1 if v < 0 else 0)
            q[i, j, c] = -mag if neg else mag
            if pos < n - 1:
                last = 1
                if st[5] == 0:
                    for p2 in range(pos + 1, n):
                        if q[i, j, scan[p2]] != 0:
                            last = 0
                            break
                last = code_bit(st, buf, probs, base + C_LAST + b * 2 + lz, last)
                if last:
                    break
    return 1


@njit(cache=True)
def _median3(a, b, c):
    return max(min(a, b), min(max(a, b), c))


@njit(cache=True)
def mv_predictor(mvs, mode0, y, x, comp):
    """Median of the left, top and top-right (else top-left) vectors; intra neighbours count as 0."""
    mw = mvs.shape[1]
    a = mvs[y, x - 1, comp] if x > 0 and mode0[y, x - 1] == 0 else 0
    if y == 0:
        return a
    b = mvs[y - 1, x, comp] if mode0[y - 1, x] == 0 else 0
    if x + 1 < mw:
        c = mvs[y - 1, x + 1, comp] if mode0[y - 1, x + 1] == 0 else 0
    elif x > 0:
        c = mvs[y - 1, x - 1, comp] if mode0[y - 1, x - 1] == 0 else 0
    else:
        c = b
    return _median3(a, b, c)


@njit(cache=True)
def _mb_any(q, y0, x0, size, n):
    """Any non-zero latent in a size x size window of block grid q starting at (y0, x0)?"""
    for i in range(y0, y0 + size):
        for j in range(x0, x0 + size):
            if _block_nonzero(q, i, j, n):
                return 1
    return 0


@njit(cache=True)
def _region_coded(qy, qyc, qc, qcc, by, bx, size):
    """Encoder side: does the luma-block window (by, bx, size) hold any non-zero latent?"""
    if _mb_any(qy, by, bx, size, 63):
        return 1
    if _mb_any(qyc, by // 2, bx // 2, max(size // 2, 1), 4):
        return 1
    for p in range(2):
        if _mb_any(qc[p], by, bx, size, 15) or _mb_any(qcc[p], by // 2, bx // 2, max(size // 2, 1), 4):
            return 1
    return 0


@njit(cache=True)
def code_tier(st, buf, probs, tier, intra_frame, switch, mode0, mvs, predk,
              qy, qyc, qc, qcc, lqy, lqyc, lqc, lqcc,
              scan_y, band_y, scan_c, band_c, scan_k, band_k):
    """Code (or decode) everything of one tier of one frame.

    mode0[mby, mbx]: tier-0 macroblock mode, 0 inter / 1 intra (coded by tier 0, read by the others).
    mvs[mby, mbx, 2]: motion vectors in half-pels (dy, dx), coded by tier 0.
    predk[mby, mbx]: for tiers >= 1, 0 = predict from this tier's own previous frame,
                     1 = predict from the lower tier of this frame (forced on intra frames,
                     switch points and intra macroblocks), 2 = this tier's own previous frame
                     plus the lower tier's innovation (see loop.py).
    q*: this tier's latents; lq*: the lower tier's (zeros for tier 0).
    """
    encoding = st[5] == 0
    mbh, mbw = mode0.shape
    hb, wb = qy.shape[0], qy.shape[1]
    cbf_y = np.zeros((hb, wb), np.int8)
    cbf_yc = np.zeros((hb // 2, wb // 2), np.int8)
    cbf_c = np.zeros((2, hb, wb), np.int8)
    cbf_cc = np.zeros((2, hb // 2, wb // 2), np.int8)
    mbcbf = np.zeros((mbh, mbw), np.int8)
    qmap = np.zeros((mbh * 2, mbw * 2), np.int8)
    for mby in range(mbh):
        for mbx in range(mbw):
            left = mbx > 0
            top = mby > 0
            if tier == 0:
                if intra_frame:
                    mode0[mby, mbx] = 1
                    pm = 1
                else:
                    ctx = CTX_MODE + (mode0[mby, mbx - 1] if left else 0) + (mode0[mby - 1, mbx] if top else 0)
                    pm = code_bit(st, buf, probs, ctx, mode0[mby, mbx])
                    mode0[mby, mbx] = pm
                    if pm == 0:
                        for comp in range(2):
                            pred = mv_predictor(mvs, mode0, mby, mbx, comp)
                            d = mvs[mby, mbx, comp] - pred if encoding else 0
                            zctx = CTX_MVZERO + comp * 3
                            nz = code_bit(st, buf, probs, zctx + (1 if left and mvs[mby, mbx - 1, comp] != pred else 0)
                                          + (1 if top and mvs[mby - 1, mbx, comp] != pred else 0), 1 if d != 0 else 0)
                            if nz:
                                mag = d if d > 0 else -d
                                mag = 1 + code_expgolomb(st, buf, probs, CTX_MVMAG + comp * 8, 8, mag - 1)
                                neg = code_bypass(st, buf, 1 if d < 0 else 0)
                                d = -mag if neg else mag
                            else:
                                d = 0
                            v = pred + d
                            if v > MV_LIMIT or v < -MV_LIMIT:
                                st[ERR] = 1
                                return
                            mvs[mby, mbx, comp] = v
                    else:
                        mvs[mby, mbx, 0] = 0
                        mvs[mby, mbx, 1] = 0
            else:
                if intra_frame or switch or mode0[mby, mbx] == 1:
                    predk[mby, mbx] = 1
                else:
                    v = predk[mby, mbx]
                    ctx = CTX_MODE + (1 if left and predk[mby, mbx - 1] == 1 else 0) \
                        + (1 if top and predk[mby - 1, mbx] == 1 else 0)
                    lower = code_bit(st, buf, probs, ctx, 1 if v == 1 else 0)
                    if lower:
                        v = 1
                    else:
                        ctx = CTX_PRED2 + (1 if left and predk[mby, mbx - 1] == 2 else 0) \
                            + (1 if top and predk[mby - 1, mbx] == 2 else 0)
                        v = 2 * code_bit(st, buf, probs, ctx, 1 if v == 2 else 0)
                    predk[mby, mbx] = v
                pm = 1 if predk[mby, mbx] == 1 else 0
            by, bx = mby * 4, mbx * 4
            coded = _region_coded(qy, qyc, qc, qcc, by, bx, 4) if encoding else 0
            nb = (mbcbf[mby, mbx - 1] if left else 0) + (mbcbf[mby - 1, mbx] if top else 0)
            coded = code_bit(st, buf, probs, CTX_MBCBF + nb * 2 + pm, coded)
            mbcbf[mby, mbx] = coded
            if not coded:
                continue
            for quad in range(4):
                qy_ = mby * 2 + (quad >> 1)
                qx_ = mbx * 2 + (quad & 1)
                qcoded = _region_coded(qy, qyc, qc, qcc, qy_ * 2, qx_ * 2, 2) if encoding else 0
                nb = (qmap[qy_, qx_ - 1] if qx_ > 0 else 0) + (qmap[qy_ - 1, qx_] if qy_ > 0 else 0)
                qcoded = code_bit(st, buf, probs, CTX_QCBF + nb * 2 + pm, qcoded)
                qmap[qy_, qx_] = qcoded
                if not qcoded:
                    continue
                _code_block(st, buf, probs, CTX_CLASS + 2 * CLASS_SIZE, qyc, lqyc, cbf_yc, qy_, qx_,
                            scan_k, band_k, 4, pm)
                for b in range(4):
                    _code_block(st, buf, probs, CTX_CLASS, qy, lqy, cbf_y, qy_ * 2 + (b >> 1), qx_ * 2 + (b & 1),
                                scan_y, band_y, 63, pm)
                for p in range(2):
                    _code_block(st, buf, probs, CTX_CLASS + 3 * CLASS_SIZE, qcc[p], lqcc[p], cbf_cc[p], qy_, qx_,
                                scan_k, band_k, 4, pm)
                    for b in range(4):
                        _code_block(st, buf, probs, CTX_CLASS + CLASS_SIZE, qc[p], lqc[p], cbf_c[p],
                                    qy_ * 2 + (b >> 1), qx_ * 2 + (b & 1), scan_c, band_c, 15, pm)
                if st[ERR]:
                    return


def _code(st, buf, probs, tier, intra_frame, switch, motion, predk, q, lq) -> None:
    code_tier(st, buf, probs, tier, intra_frame, switch, motion.mode0, motion.mvs, predk,
              q.y_ac, q.y_coarse, q.c_ac, q.c_coarse, lq.y_ac, lq.y_coarse, lq.c_ac, lq.c_coarse,
              SCAN_Y, BAND_Y, SCAN_C, BAND_C, SCAN_COARSE, BAND_COARSE)


def encode_tier(probs, tier, intra_frame, switch, motion, predk, q, lq) -> bytes:
    """Entropy-code one tier; `probs` adapts in place exactly as the decoder's will."""
    from .rangecoder import finish, new_encoder

    capacity = 1 << 16
    while True:
        saved = probs.copy()
        st, buf = new_encoder(capacity)
        _code(st, buf, probs, tier, intra_frame, switch, motion, predk, q, lq)
        out = finish(st, buf)
        if out is not None:
            return out
        probs[...] = saved
        capacity *= 4


def decode_tier(data: bytes, probs, tier, intra_frame, switch, motion, predk, q, lq) -> None:
    """Decode one tier's payload into the zeroed latents `q` (and motion / predk)."""
    from ..errors import BitstreamError
    from .rangecoder import MAX_OVERRUN, OVERRUN, new_decoder

    st, buf = new_decoder(data)
    _code(st, buf, probs, tier, intra_frame, switch, motion, predk, q, lq)
    if st[ERR]:
        raise BitstreamError(f"tier {tier}: corrupt payload (value out of range)")
    if st[OVERRUN] > MAX_OVERRUN:
        raise BitstreamError(f"tier {tier}: payload truncated ({len(data)} bytes, "
                             f"{int(st[OVERRUN])} more needed)")
