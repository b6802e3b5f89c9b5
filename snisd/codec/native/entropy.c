/* Context model of one tier: macroblock modes and vectors (tier 0), coded-block flags and
 * latents (every tier), in one syntax function that encodes or decodes (rangecoder.h).
 *
 * Macroblocks (32x32) in raster order; in a coded macroblock each 16x16 quadrant has a flag; a
 * coded quadrant carries its 1/16-scale coarse latents and its 8x8 luma / 4x4 chroma AC
 * blocks. A block has a coded flag, then significance / last flags along a zig-zag scan, a
 * greater-than-one flag, an Exp-Golomb remainder and a bypass sign. Contexts come from the left
 * and top neighbours in this tier, the co-located value of the tier below (which this tier
 * refines) and the macroblock's mode. Syntax: docs/BITSTREAM.md.
 */
#include <pthread.h>
#include <stdlib.h>

#include "rangecoder.h"

enum {
    CTX_MODE = 0,    /* 3 */
    CTX_MBCBF = 3,   /* 6 */
    CTX_QCBF = 9,    /* 6 */
    CTX_MVZERO = 15, /* 2 x 3 */
    CTX_MVMAG = 21,  /* 2 x 8 */
    CTX_CLASS = 64,  /* 4 classes x CLASS_SIZE */
    CLASS_SIZE = 128,
    C_CBF = 0, /* 3 x 2 x 2 */
    C_SIG = 18, /* 10 bands x 2 x 3 */
    C_LAST = 78, /* 10 x 2 */
    C_GT1 = 98, /* 3 x 3 */
    C_EG = 107, /* 8 */
};

#define MAG_LIMIT 32767

typedef struct {
    int n;               /* latents per block */
    const uint8_t *scan; /* coding order -> channel */
    const uint8_t *band; /* coding position -> band */
} block_kind;

static uint8_t SCAN_Y[63], SCAN_C[15], BAND_Y[63], BAND_C[15];
static const uint8_t SCAN_K[4] = {0, 1, 2, 3}, BAND_K[4] = {0, 1, 2, 3};
static block_kind KIND_Y = {63, SCAN_Y, BAND_Y}, KIND_C = {15, SCAN_C, BAND_C}, KIND_K = {4, SCAN_K, BAND_K};

/* Zig-zag order of (u, v) by u+v, alternating direction; channel u*n+v-1 (DC excluded). */
static void make_scan(int n, uint8_t *scan, uint8_t *band)
{
    static const int edges[10] = {1, 2, 3, 6, 10, 15, 21, 28, 36, 64};
    int pos = 0;
    for (int s = 1; s <= 2 * (n - 1); s++) {
        for (int i = 0; i <= s; i++) {
            /* the sort key of the reference scan: (u+v, v) on odd diagonals, (u+v, u) on even */
            int u = s % 2 ? s - i : i;
            int v = s - u;
            if (u >= n || v >= n)
                continue;
            scan[pos] = (uint8_t)(u * n + v - 1);
            int b = 0;
            while (pos >= edges[b])
                b++;
            band[pos] = (uint8_t)b;
            pos++;
        }
    }
}

static void make_tables(void)
{
    make_scan(8, SCAN_Y, BAND_Y);
    make_scan(4, SCAN_C, BAND_C);
}

static void init_tables(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_tables);
}

void contexts_reset(tier_contexts *c)
{
    for (int i = 0; i < N_CONTEXTS; i++)
        c->p[i][0] = c->p[i][1] = PROB_ONE / 2;
}

int rc_encoder_init(rangecoder *rc, size_t capacity)
{
    memset(rc, 0, sizeof(*rc));
    rc->cap = capacity < 64 ? 64 : capacity;
    rc->buf = (uint8_t *)malloc(rc->cap);
    if (!rc->buf)
        return SNIS_E_NOMEM;
    rc->range = 0xFFFFFFFFu;
    rc->cache_size = 1;
    return SNIS_OK;
}

void rc_decoder_init(rangecoder *rc, const uint8_t *data, size_t len)
{
    memset(rc, 0, sizeof(*rc));
    rc->decoding = 1;
    rc->in = data;
    rc->in_len = len;
    rc->range = 0xFFFFFFFFu;
    for (int i = 0; i < 4; i++) /* the encoder's always-zero first byte is not transmitted */
        rc->code = (rc->code << 8) | rc_next_byte(rc);
}

int rc_finish(rangecoder *rc, size_t *len)
{
    for (int i = 0; i < 5; i++)
        rc_shift_low(rc);
    if (rc->error)
        return rc->error;
    size_t n = rc->pos;
    /* the decoder reads omitted zeros as past-the-end bytes, and too many of those mean a
       truncated payload: so only a few may be omitted */
    while (n > 1 && rc->buf[n - 1] == 0 && rc->pos - n < MAX_TRIM)
        n--;
    /* drop the leading byte (always zero) */
    if (n > 0)
        memmove(rc->buf, rc->buf + 1, n - 1);
    *len = n > 0 ? n - 1 : 0;
    return SNIS_OK;
}

void rc_free(rangecoder *rc)
{
    if (!rc->decoding)
        free(rc->buf);
    rc->buf = NULL;
}

/* A plane of blocks of one kind: values, flags and geometry. */
typedef struct {
    int16_t *v;
    uint8_t *f;
    int stride, w, h;
} bplane;

static inline int bval(const bplane *p, int i, int j, int c)
{
    int b = i * p->w + j;
    return p->f[b] ? p->v[(size_t)b * p->stride + c] : 0;
}

static void code_block(rangecoder *rc, tier_contexts *ctx, int base, bplane *q, const bplane *lq, uint8_t *cbf,
                       int i, int j, const block_kind *kind, int pm, int *nzc)
{
    int w = q->w, b = i * w + j, n = kind->n;
    int nb = (j > 0 ? cbf[b - 1] : 0) + (i > 0 ? cbf[b - w] : 0);
    int lnz = lq && lq->f[b];
    int coded = rc->decoding ? 0 : q->f[b];
    coded = rc_bit(rc, ctx->p[base + C_CBF + nb * 6 + lnz * 2 + pm], coded);
    cbf[b] = (uint8_t)coded;
    if (rc->decoding) {
        q->f[b] = (uint8_t)coded;
        if (coded)
            memset(q->v + (size_t)b * q->stride, 0, (size_t)q->stride * sizeof(int16_t));
    }
    if (!coded)
        return;
    int16_t *vals = q->v + (size_t)b * q->stride;
    int ngt1 = 0;
    for (int pos = 0; pos < n; pos++) {
        int c = kind->scan[pos], bd = kind->band[pos];
        int lz = lq ? bval(lq, i, j, c) != 0 : 0;
        int sig;
        if (pos == n - 1) {
            sig = 1; /* no "last" flag so far: the final latent is non-zero */
        } else {
            int nbc = (j > 0 && bval(q, i, j - 1, c) != 0) + (i > 0 && bval(q, i - 1, j, c) != 0);
            sig = rc_bit(rc, ctx->p[base + C_SIG + bd * 6 + lz * 3 + nbc], vals[c] != 0);
        }
        if (!sig)
            continue;
        (*nzc)++;
        int v = vals[c];
        int mag = v < 0 ? -v : v;
        int gctx = base + C_GT1 + (bd < 2 ? 0 : (bd < 5 ? 1 : 2)) * 3 + (ngt1 < 2 ? ngt1 : 2);
        int gt1 = rc_bit(rc, ctx->p[gctx], mag > 1);
        if (gt1) {
            ngt1++;
            uint32_t r = rc_expgolomb(rc, &ctx->p[base + C_EG], 8, (uint32_t)(mag - 2));
            if (r > MAG_LIMIT - 2) {
                rc->error = SNIS_E_CORRUPT;
                return;
            }
            mag = 2 + (int)r;
        } else {
            mag = 1;
        }
        int neg = rc_bypass(rc, v < 0);
        if (rc->decoding) /* encoding: the value is already there, and tier k+1 reads it meanwhile */
            vals[c] = (int16_t)(neg ? -mag : mag);
        if (pos < n - 1) {
            int last = 1;
            if (!rc->decoding)
                for (int p2 = pos + 1; p2 < n; p2++)
                    if (vals[kind->scan[p2]]) {
                        last = 0;
                        break;
                    }
            last = rc_bit(rc, ctx->p[base + C_LAST + bd * 2 + lz], last);
            if (last)
                break;
        }
    }
}

/* Any non-zero block in a size x size window of a block plane (encoder side)? */
static int window_any(const bplane *p, int y0, int x0, int size)
{
    for (int i = y0; i < y0 + size; i++)
        for (int j = x0; j < x0 + size; j++)
            if (p->f[i * p->w + j])
                return 1;
    return 0;
}

int code_tier(rangecoder *rc, tier_job *job)
{
    init_tables();
    motion_t *m = job->motion;
    latents_t *q = job->q;
    const latents_t *lq = job->lower;
    int hb = q->hb, wb = q->wb, mbw = m->mbw, mbh = m->mbh;
    int intra_frame = job->frame_type == SNIS_FRAME_I;
    bplane py = {q->y_ac, q->f_y_ac, LAT_Y, wb, hb}, pk = {q->y_k, q->f_y_k, LAT_K, wb / 2, hb / 2};
    bplane pc[2], pck[2], ly, lk, lc[2], lck[2];
    for (int p = 0; p < 2; p++) {
        pc[p] = (bplane){q->c_ac[p], q->f_c_ac[p], LAT_C, wb, hb};
        pck[p] = (bplane){q->c_k[p], q->f_c_k[p], LAT_K, wb / 2, hb / 2};
    }
    if (lq) {
        ly = (bplane){lq->y_ac, lq->f_y_ac, LAT_Y, wb, hb};
        lk = (bplane){lq->y_k, lq->f_y_k, LAT_K, wb / 2, hb / 2};
        for (int p = 0; p < 2; p++) {
            lc[p] = (bplane){lq->c_ac[p], lq->f_c_ac[p], LAT_C, wb, hb};
            lck[p] = (bplane){lq->c_k[p], lq->f_c_k[p], LAT_K, wb / 2, hb / 2};
        }
    }
    size_t nb = (size_t)hb * wb, nk = (size_t)(hb / 2) * (wb / 2);
    /* coded-block flags of this frame and tier: cbf_y, cbf_k, cbf_c[2], cbf_ck[2], mb, quads */
    uint8_t *flags = (uint8_t *)calloc(3 * nb + 3 * nk + (size_t)mbw * mbh * 5, 1);
    if (!flags)
        return SNIS_E_NOMEM;
    uint8_t *cbf_y = flags, *cbf_c0 = flags + nb, *cbf_c1 = flags + 2 * nb, *cbf_k = flags + 3 * nb;
    uint8_t *cbf_ck0 = cbf_k + nk, *cbf_ck1 = cbf_k + 2 * nk, *mbcbf = cbf_k + 3 * nk;
    uint8_t *qmap = mbcbf + (size_t)mbw * mbh;
    uint8_t *cbf_c[2] = {cbf_c0, cbf_c1}, *cbf_ck[2] = {cbf_ck0, cbf_ck1};
    tier_contexts *ctx = job->ctx;
    for (int mby = 0; mby < mbh && !rc->error; mby++) {
        for (int mbx = 0; mbx < mbw; mbx++) {
            int i = mby * mbw + mbx, left = mbx > 0, top = mby > 0;
            if (job->tier == 0) {
                if (intra_frame) {
                    if (rc->decoding) {
                        m->intra[i] = 1;
                        m->mv[2 * i] = m->mv[2 * i + 1] = 0;
                    }
                } else {
                    int c = CTX_MODE + (left ? m->intra[i - 1] : 0) + (top ? m->intra[i - mbw] : 0);
                    int intra = rc_bit(rc, ctx->p[c], m->intra[i]);
                    if (rc->decoding)
                        m->intra[i] = (uint8_t)intra;
                    if (!intra) {
                        for (int comp = 0; comp < 2; comp++) {
                            int pred = mv_predictor(m, mby, mbx, comp);
                            int d = rc->decoding ? 0 : m->mv[2 * i + comp] - pred;
                            int zc = CTX_MVZERO + comp * 3 + (left && m->mv[2 * (i - 1) + comp] != pred) +
                                     (top && m->mv[2 * (i - mbw) + comp] != pred);
                            if (rc_bit(rc, ctx->p[zc], d != 0)) {
                                int mag = d < 0 ? -d : d;
                                uint32_t r = rc_expgolomb(rc, &ctx->p[CTX_MVMAG + comp * 8], 8, (uint32_t)(mag - 1));
                                if (r >= 2 * MV_LIMIT) {
                                    rc->error = SNIS_E_CORRUPT;
                                    break;
                                }
                                mag = 1 + (int)r;
                                d = rc_bypass(rc, d < 0) ? -mag : mag;
                            } else {
                                d = 0;
                            }
                            int v = pred + d;
                            if (v > MV_LIMIT || v < -MV_LIMIT) {
                                rc->error = SNIS_E_CORRUPT;
                                break;
                            }
                            if (rc->decoding)
                                m->mv[2 * i + comp] = (int16_t)v;
                        }
                        if (rc->error)
                            break;
                    } else if (rc->decoding) {
                        m->mv[2 * i] = m->mv[2 * i + 1] = 0;
                    }
                }
            }
            int pm = m->intra[i];
            int by = mby * 4, bx = mbx * 4;
            int coded = 0;
            if (!rc->decoding) {
                coded = window_any(&py, by, bx, 4) || window_any(&pk, by / 2, bx / 2, 2);
                for (int p = 0; p < 2; p++)
                    coded = coded || window_any(&pc[p], by, bx, 4) || window_any(&pck[p], by / 2, bx / 2, 2);
            }
            int nbm = (left ? mbcbf[i - 1] : 0) + (top ? mbcbf[i - mbw] : 0);
            coded = rc_bit(rc, ctx->p[CTX_MBCBF + nbm * 2 + pm], coded);
            mbcbf[i] = (uint8_t)coded;
            if (!coded) {
                if (rc->decoding) { /* nothing coded in this macroblock: clear its flags */
                    for (int yy = 0; yy < 4; yy++)
                        for (int xx = 0; xx < 4; xx++) {
                            size_t b = (size_t)(by + yy) * wb + bx + xx;
                            py.f[b] = pc[0].f[b] = pc[1].f[b] = 0;
                        }
                    for (int yy = 0; yy < 2; yy++)
                        for (int xx = 0; xx < 2; xx++) {
                            size_t b = (size_t)(by / 2 + yy) * (wb / 2) + bx / 2 + xx;
                            pk.f[b] = pck[0].f[b] = pck[1].f[b] = 0;
                        }
                }
                continue;
            }
            for (int quad = 0; quad < 4; quad++) {
                int qy = mby * 2 + (quad >> 1), qx = mbx * 2 + (quad & 1);
                int qi = qy * (mbw * 2) + qx;
                int qc = 0;
                if (!rc->decoding) {
                    qc = window_any(&py, qy * 2, qx * 2, 2) || pk.f[qy * (wb / 2) + qx];
                    for (int p = 0; p < 2; p++)
                        qc = qc || window_any(&pc[p], qy * 2, qx * 2, 2) || pck[p].f[qy * (wb / 2) + qx];
                }
                int nbq = (qx > 0 ? qmap[qi - 1] : 0) + (qy > 0 ? qmap[qi - mbw * 2] : 0);
                qc = rc_bit(rc, ctx->p[CTX_QCBF + nbq * 2 + pm], qc);
                qmap[qi] = (uint8_t)qc;
                if (!qc) {
                    if (rc->decoding) {
                        for (int yy = 0; yy < 2; yy++)
                            for (int xx = 0; xx < 2; xx++) {
                                size_t b = (size_t)(qy * 2 + yy) * wb + qx * 2 + xx;
                                py.f[b] = pc[0].f[b] = pc[1].f[b] = 0;
                            }
                        size_t b = (size_t)qy * (wb / 2) + qx;
                        pk.f[b] = pck[0].f[b] = pck[1].f[b] = 0;
                    }
                    continue;
                }
                code_block(rc, ctx, CTX_CLASS + 2 * CLASS_SIZE, &pk, lq ? &lk : NULL, cbf_k, qy, qx, &KIND_K, pm, &job->nz);
                for (int b = 0; b < 4; b++)
                    code_block(rc, ctx, CTX_CLASS, &py, lq ? &ly : NULL, cbf_y, qy * 2 + (b >> 1), qx * 2 + (b & 1),
                               &KIND_Y, pm, &job->nz);
                for (int p = 0; p < 2; p++) {
                    code_block(rc, ctx, CTX_CLASS + 3 * CLASS_SIZE, &pck[p], lq ? &lck[p] : NULL, cbf_ck[p], qy, qx,
                               &KIND_K, pm, &job->nz);
                    for (int b = 0; b < 4; b++)
                        code_block(rc, ctx, CTX_CLASS + CLASS_SIZE, &pc[p], lq ? &lc[p] : NULL, cbf_c[p],
                                   qy * 2 + (b >> 1), qx * 2 + (b & 1), &KIND_C, pm, &job->nz);
                }
                if (rc->error)
                    break;
            }
            if (rc->error)
                break;
        }
        if (rc->decoding && rc->overrun > MAX_OVERRUN && !rc->error)
            rc->error = SNIS_E_TRUNCATED;
    }
    free(flags);
    return rc->error;
}
