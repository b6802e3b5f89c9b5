/* Context model of one tier: macroblock modes and vectors (tier 0), coded-block flags and
 * latents (every tier), in one syntax function that encodes or decodes (rangecoder.h), and the
 * encoder's rate estimates from the same contexts.
 *
 * Macroblocks (32x32) in raster order; in a coded macroblock each 16x16 quadrant has a flag; a
 * coded quadrant carries its 1/16-scale coarse latents and its 8x8 luma / 4x4 chroma AC
 * blocks. A block has a coded flag, then significance / last flags along a zig-zag scan,
 * greater-than-one and greater-than-two flags, an Exp-Golomb remainder and a sign. Contexts come
 * from a template of the magnitudes already coded in the block, the left and top neighbours in
 * this tier, the co-located value of the tier below (which this tier refines), the co-sited
 * block of the component coded before and the macroblock's mode. Syntax: docs/BITSTREAM.md.
 */
#include <pthread.h>
#include <stdlib.h>

#include "context_init.h"
#include "intra.h"
#include "rangecoder.h"

enum {
    CTX_MODE = 0,    /* 3 */
    CTX_IMODE = 3,   /* 2 (mode == most probable one) + 7 (binary tree of the mode) */
    CTX_MERGE = 12,  /* 3 */
    CTX_MVZERO = 15, /* 2 x 3 */
    CTX_MVMAG = 21,  /* 2 x 8 */
    CTX_SPLIT = 37,  /* 3 */
    CTX_MBCBF = 40,  /* 3 neighbours x 3 kinds (inter, merge, intra) x 2 lower tier coded it */
    CTX_QCBF = 58,   /* the same */
    CTX_CLASS = 76,  /* 4 classes x CLASS_SIZE */
    C_CBF = 0,       /* 3 neighbours x 2 lower x 2 intra x 2 cross */
    C_SIG = 24,      /* 10 bands x 3 in-block template x 3 neighbour template x 3 lower */
    C_LAST = 294,    /* 10 bands x 2 lower x 3 levels so far */
    C_GT1 = 354,     /* 3 band classes x 3 template x 3 earlier >1 x 2 lower */
    C_GT2 = 408,     /* 3 band classes x 3 template */
    C_EG = 417,      /* 3 band classes x 8 */
    C_SIGN = 441,    /* 3 lower sign x 3 neighbour sign */
    CLASS_SIZE = 450,
    CTX_MIDX = CTX_CLASS + 4 * CLASS_SIZE, /* 2 */
    CTX_MVQPEL = CTX_MIDX + 2,             /* 2: the quarter-pel bit of a vector difference, per component */
    CTX_SPLIT8 = CTX_MVQPEL + 2,           /* 3: a 16x16 partition's 8x8 split, by left / top ones */
};
_Static_assert(CTX_SPLIT8 + 3 <= N_CONTEXTS, "context table too small");
_Static_assert(sizeof(CONTEXT_INIT[0]) == N_CONTEXTS, "context_init.h is for another context layout: regenerate it");

#define MAG_LIMIT 32767
#define NO_NB 64 /* template index of a neighbour outside the block (always zero) */

typedef struct {
    int n;               /* latents per block */
    const uint8_t *scan; /* coding order -> channel */
    const uint8_t *band; /* coding position -> band */
    const uint8_t *nb_a, *nb_b; /* coding position -> channels of its lower-frequency neighbours */
} block_kind;

static uint8_t SCAN_Y[63], SCAN_C[15], BAND_Y[63], BAND_C[15];
static uint8_t NBA_Y[63], NBB_Y[63], NBA_C[15], NBB_C[15];
static const uint8_t SCAN_K[4] = {0, 1, 2, 3}, BAND_K[4] = {0, 1, 2, 3};
static const uint8_t NBA_K[4] = {NO_NB, 0, 1, 2}, NBB_K[4] = {NO_NB, NO_NB, 0, 1};
static block_kind KIND_Y = {63, SCAN_Y, BAND_Y, NBA_Y, NBB_Y}, KIND_C = {15, SCAN_C, BAND_C, NBA_C, NBB_C},
                  KIND_K = {4, SCAN_K, BAND_K, NBA_K, NBB_K};

/* Zig-zag order of (u, v) by u+v, alternating direction; channel u*n+v-1 (DC excluded). The
 * template of a position is (u-1, v) and (u, v-1): both lie on an earlier diagonal, so they are
 * coded before it (the DC is not a latent: NO_NB). */
static void make_scan(int n, uint8_t *scan, uint8_t *band, uint8_t *nba, uint8_t *nbb)
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
            nba[pos] = (uint8_t)(u > 0 && u - 1 + v > 0 ? (u - 1) * n + v - 1 : NO_NB);
            nbb[pos] = (uint8_t)(v > 0 && u + v - 1 > 0 ? u * n + v - 2 : NO_NB);
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
    make_scan(8, SCAN_Y, BAND_Y, NBA_Y, NBB_Y);
    make_scan(4, SCAN_C, BAND_C, NBA_C, NBB_C);
}

static void init_tables(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_tables);
}

void contexts_reset(tier_contexts *c, int tier)
{
    /* the initial probability of a 0, in 1/256 (context_init.h); both estimates start there */
    const uint8_t *init = CONTEXT_INIT[tier < CONTEXT_INIT_TIERS ? tier : CONTEXT_INIT_TIERS - 1];
    for (int i = 0; i < N_CONTEXTS; i++)
        c->p[i][0] = c->p[i][1] = (uint16_t)(((uint32_t)init[i] << (PROB_BITS - 8)) + (1u << (PROB_BITS - 9)));
}

void contexts_export(const tier_contexts *c, uint16_t *out)
{
    for (int i = 0; i < N_CONTEXTS; i++)
        out[i] = (uint16_t)(((uint32_t)c->p[i][0] + c->p[i][1]) >> 1);
}

/* -log2(p / PROB_ONE) in 1/16 bit, integer only (encoder decisions must be the same on every
 * platform): the integer part from the leading bit, four fractional bits by squaring. */
static uint32_t bit_cost16(uint32_t p)
{
    if (p >= PROB_ONE)
        return 0;
    if (p < 1)
        p = 1;
    int e = 0;
    while ((p << e) < (1u << (PROB_BITS - 1)))
        e++;
    /* p / 2^15 = x 2^-e with x = (p << e) / 2^15 in [0.5, 1): the bits of -log2(x) by squaring x */
    uint32_t m = p << e, frac = 0;
    for (int i = 0; i < 4; i++) {
        m = (m * m) >> PROB_BITS;
        frac <<= 1;
        if (m < (1u << (PROB_BITS - 1))) {
            m <<= 1;
            frac |= 1;
        }
    }
    return (uint32_t)e * 16 + frac;
}

static uint32_t ctx_cost(const uint16_t *p, int bit)
{
    uint32_t prob0 = ((uint32_t)p[0] + p[1]) >> 1;
    return bit_cost16(bit ? PROB_ONE - prob0 : prob0);
}

void motion_rates(const tier_contexts *c, int qpel, mv_rates *r)
{
    for (int k = 0; k < 3; k++)
        for (int b = 0; b < 2; b++) {
            r->merge[k][b] = (uint16_t)ctx_cost(c->p[CTX_MERGE + k], b);
            r->split[k][b] = (uint16_t)ctx_cost(c->p[CTX_SPLIT + k], b);
            r->split8[k][b] = (uint16_t)ctx_cost(c->p[CTX_SPLIT8 + k], b);
        }
    r->midx[0] = (uint16_t)ctx_cost(c->p[CTX_MIDX], 0);
    r->midx[1] = (uint16_t)(ctx_cost(c->p[CTX_MIDX], 1) + ctx_cost(c->p[CTX_MIDX + 1], 0));
    r->midx[2] = (uint16_t)(ctx_cost(c->p[CTX_MIDX], 1) + ctx_cost(c->p[CTX_MIDX + 1], 1));
    for (int comp = 0; comp < 2; comp++) {
        const uint16_t(*eg)[2] = (const uint16_t(*)[2]) & c->p[CTX_MVMAG + comp * 8];
        uint32_t mag[MVC_N];
        mag[0] = 0;
        for (int a = 1; a < MVC_N; a++) {
            /* code_mv(): quarter-pel bit (qpel only), Exp-Golomb of the half-pel magnitude, sign */
            int odd = a & 1;
            if (odd && !qpel) {
                mag[a] = 0xFFFF; /* not codable in a half-pel frame */
                continue;
            }
            uint32_t v = (uint32_t)(odd ? (a - 1) / 2 : a / 2 - 1), bits = 16;
            if (qpel)
                bits += ctx_cost(c->p[CTX_MVQPEL + comp], odd);
            int k = 0;
            while (v >= (1u << (k + 1)) - 1) {
                bits += ctx_cost(eg[k < 7 ? k : 7], 1);
                k++;
            }
            bits += ctx_cost(eg[k < 7 ? k : 7], 0) + 16u * (uint32_t)k;
            mag[a] = bits;
        }
        for (int z = 0; z < 3; z++) {
            const uint16_t *zp = c->p[CTX_MVZERO + comp * 3 + z];
            r->mvd[comp][z][0] = (uint16_t)ctx_cost(zp, 0);
            for (int a = 1; a < MVC_N; a++) {
                uint32_t t = ctx_cost(zp, 1) + mag[a];
                r->mvd[comp][z][a] = (uint16_t)(t > 0xFFFF ? 0xFFFF : t);
            }
        }
    }
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
    /* a coder's code is always below its range (0xFFFFFFFF here): four 0xFF bytes are no stream */
    if (rc->code >= rc->range)
        rc->error = SNIS_E_CORRUPT;
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

static inline int min2(int v) { return v < 2 ? v : 2; }
static inline int absi(int v) { return v < 0 ? -v : v; }

/* One block: coded flag, then along the scan significance, greater-than-one, greater-than-two,
 * an Exp-Golomb remainder, a sign and a last flag after each non-zero level. Contexts: the
 * magnitudes already coded at the position's two lower-frequency neighbours in this block (the
 * template), the magnitudes at the same position in the left and top blocks, and the magnitude
 * of the tier below at the same position (which this tier refines); the sign's, the signs of the
 * tier below and of the neighbours there. `cross`: the co-sited block of the component coded just
 * before (luma coarse for luma AC, luma for U, U for V) is coded. */
static void code_block(rangecoder *rc, tier_contexts *ctx, int base, bplane *q, const bplane *lq, uint8_t *cbf,
                       int i, int j, const block_kind *kind, int pm, int cross, int *nzc)
{
    int w = q->w, b = i * w + j, n = kind->n;
    int nb = (j > 0 ? cbf[b - 1] : 0) + (i > 0 ? cbf[b - w] : 0);
    int lnz = lq && lq->f[b];
    int coded = rc->decoding ? 0 : q->f[b];
    coded = rc_bit(rc, ctx->p[base + C_CBF + nb * 8 + lnz * 4 + pm * 2 + cross], coded);
    cbf[b] = (uint8_t)coded;
    if (rc->decoding) {
        q->f[b] = (uint8_t)coded;
        if (coded)
            memset(q->v + (size_t)b * q->stride, 0, (size_t)q->stride * sizeof(int16_t));
    }
    if (!coded)
        return;
    int16_t *vals = q->v + (size_t)b * q->stride;
    const int16_t *lv = lnz ? lq->v + (size_t)b * lq->stride : NULL;
    const int16_t *left = j > 0 && q->f[b - 1] ? vals - q->stride : NULL;
    const int16_t *top = i > 0 && q->f[b - w] ? vals - (size_t)w * q->stride : NULL;
    uint8_t m[NO_NB + 1]; /* magnitudes coded so far in this block, clipped to 3 */
    memset(m, 0, sizeof(m));
    int last_pos = n - 1;
    if (!rc->decoding)
        while (last_pos > 0 && vals[kind->scan[last_pos]] == 0)
            last_pos--;
    int ngt1 = 0, count = 0;
    for (int pos = 0; pos < n; pos++) {
        int c = kind->scan[pos], bd = kind->band[pos];
        int lm = lv ? min2(absi(lv[c])) : 0;
        int ta = m[kind->nb_a[pos]], tb = m[kind->nb_b[pos]];
        int na = left ? absi(left[c]) : 0, nt = top ? absi(top[c]) : 0;
        int sig;
        if (pos == n - 1) {
            sig = 1; /* reached without a last flag: the final latent is non-zero */
        } else {
            int cx = bd * 27 + min2(ta + tb) * 9 + min2(na + nt) * 3 + lm;
            sig = rc_bit(rc, ctx->p[base + C_SIG + cx], vals[c] != 0);
        }
        if (!sig)
            continue;
        count++;
        int v = vals[c];
        int mag = absi(v);
        int cls = bd < 2 ? 0 : (bd < 5 ? 1 : 2);
        int t = min2((ta > 1) + (tb > 1) + (na > 1) + (nt > 1));
        int gt1 = rc_bit(rc, ctx->p[base + C_GT1 + cls * 18 + t * 6 + min2(ngt1) * 2 + (lm != 0)], mag > 1);
        if (gt1) {
            ngt1++;
            int gt2 = rc_bit(rc, ctx->p[base + C_GT2 + cls * 3 + t], mag > 2);
            if (gt2) {
                uint32_t r = rc_expgolomb(rc, &ctx->p[base + C_EG + cls * 8], 8, (uint32_t)(mag - 3));
                if (r > MAG_LIMIT - 3) {
                    rc->error = SNIS_E_CORRUPT;
                    return;
                }
                mag = 3 + (int)r;
            } else {
                mag = 2;
            }
        } else {
            mag = 1;
        }
        m[c] = (uint8_t)(mag < 3 ? mag : 3);
        int ls = lv && lv[c] ? 1 + (lv[c] < 0) : 0;
        int ns = (na ? (left[c] > 0 ? 1 : -1) : 0) + (nt ? (top[c] > 0 ? 1 : -1) : 0);
        int neg = rc_bit(rc, ctx->p[base + C_SIGN + ls * 3 + (ns > 0 ? 1 : (ns < 0 ? 2 : 0))], v < 0);
        if (rc->decoding) /* encoding: the value is already there, and tier k+1 reads it meanwhile */
            vals[c] = (int16_t)(neg ? -mag : mag);
        if (pos < n - 1) {
            int last = rc_bit(rc, ctx->p[base + C_LAST + bd * 6 + (lm != 0) * 3 + min2(count - 1)], pos == last_pos);
            if (last)
                break;
        }
    }
    *nzc += count;
}

/* round(-256 log2((i + 0.5) / 128)): the cost in 1/256 bit of a decision of probability i/128. */
static const uint16_t COST_Q8[128] = {
    2048, 1642, 1454, 1329, 1236, 1162, 1101, 1048, 1002, 961, 924, 890, 859, 831, 804, 780,
    757, 735, 714, 695, 676, 659, 642, 626, 611, 596, 582, 568, 555, 542, 530, 518,
    506, 495, 484, 474, 463, 453, 444, 434, 425, 416, 407, 399, 390, 382, 374, 366,
    358, 351, 343, 336, 329, 322, 315, 309, 302, 296, 289, 283, 277, 271, 265, 259,
    253, 247, 242, 236, 231, 226, 220, 215, 210, 205, 200, 195, 190, 185, 181, 176,
    171, 167, 162, 158, 153, 149, 145, 140, 136, 132, 128, 124, 120, 116, 112, 108,
    104, 101, 97, 93, 89, 86, 82, 78, 75, 71, 68, 64, 61, 58, 54, 51,
    48, 44, 41, 38, 35, 32, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1};

static inline int bit_cost(const uint16_t *p, int bit)
{
    uint32_t prob = ((uint32_t)p[0] + p[1]) >> 1; /* of a 0, in 1 .. PROB_ONE - 1 */
    if (bit)
        prob = PROB_ONE - prob;
    return COST_Q8[prob >> (PROB_BITS - 7)];
}

static const block_kind *const KINDS[4] = {&KIND_Y, &KIND_C, &KIND_K, &KIND_K};

/* Cost in 1/256 bit of magnitude mag (> 0) at a position as code_block codes it: the
 * greater-than-one and -two flags and the Exp-Golomb remainder, without the sign. */
static int magnitude_cost(uint16_t (*p)[2], int base, int cls3, int t, int ngt1, int lm, int mag)
{
    int bits = bit_cost(p[base + C_GT1 + cls3 * 18 + t * 6 + min2(ngt1) * 2 + (lm != 0)], mag > 1);
    if (mag > 1) {
        bits += bit_cost(p[base + C_GT2 + cls3 * 3 + t], mag > 2);
        if (mag > 2) {
            uint32_t r = (uint32_t)(mag - 3);
            int k = 0;
            while (k < 24 && r >= (1u << (k + 1)) - 1) {
                bits += bit_cost(p[base + C_EG + cls3 * 8 + (k < 7 ? k : 7)], 1);
                k++;
            }
            bits += bit_cost(p[base + C_EG + cls3 * 8 + (k < 7 ? k : 7)], 0) + 256 * k;
        }
    }
    return bits;
}

int block_rate_q8(const tier_contexts *ctx, int cls, const int16_t *lev, const int16_t *lower, int pm,
                  int *uncoded_q8)
{
    init_tables();
    const block_kind *kind = KINDS[cls];
    int base = CTX_CLASS + cls * CLASS_SIZE, n = kind->n;
    uint16_t(*p)[2] = (uint16_t(*)[2])ctx->p; /* read only */
    int lnz = lower != NULL, cross = cls != 2;
    int cb = base + C_CBF + 1 * 8 + lnz * 4 + pm * 2 + cross; /* one coded neighbour assumed */
    *uncoded_q8 = bit_cost(p[cb], 0);
    int bits = bit_cost(p[cb], 1);
    int last_pos = n - 1;
    while (last_pos > 0 && lev[kind->scan[last_pos]] == 0)
        last_pos--;
    uint8_t m[NO_NB + 1];
    memset(m, 0, sizeof(m));
    int ngt1 = 0, count = 0;
    for (int pos = 0; pos <= last_pos; pos++) {
        int c = kind->scan[pos], bd = kind->band[pos];
        int lm = lower ? min2(absi(lower[c])) : 0;
        int ta = m[kind->nb_a[pos]], tb = m[kind->nb_b[pos]];
        int mag = absi(lev[c]);
        if (pos < n - 1)
            bits += bit_cost(p[base + C_SIG + bd * 27 + min2(ta + tb) * 9 + lm], mag != 0);
        if (!mag)
            continue;
        count++;
        int cls3 = bd < 2 ? 0 : (bd < 5 ? 1 : 2);
        int t = min2((ta > 1) + (tb > 1));
        bits += magnitude_cost(p, base, cls3, t, ngt1, lm, mag);
        ngt1 += mag > 1;
        int ls = lower && lower[c] ? 1 + (lower[c] < 0) : 0;
        bits += bit_cost(p[base + C_SIGN + ls * 3], lev[c] < 0);
        m[c] = (uint8_t)(mag < 3 ? mag : 3);
        if (pos < n - 1)
            bits += bit_cost(p[base + C_LAST + bd * 6 + (lm != 0) * 3 + min2(count - 1)], pos == last_pos);
    }
    return bits;
}

/* Cost in 1/256 bit of magnitude mag (> 0) and its sign at a position, as code_block codes it
 * (the sign at the mean of its two costs). */
static int level_cost(uint16_t (*p)[2], int base, int cls3, int t, int ngt1, int lm, int ls, int mag)
{
    return magnitude_cost(p, base, cls3, t, ngt1, lm, mag) + bit_cost(p[base + C_SIGN + ls * 3], 0) / 2 +
           bit_cost(p[base + C_SIGN + ls * 3], 1) / 2;
}

void rd_round_block(const tier_contexts *ctx, int cls, const int32_t *v, const int32_t *steps, const int32_t *mmax,
                    int64_t lam, const int16_t *lower, int32_t *mag, int down)
{
    init_tables();
    const block_kind *kind = KINDS[cls];
    int base = CTX_CLASS + cls * CLASS_SIZE, n = kind->n;
    uint16_t(*p)[2] = (uint16_t(*)[2])ctx->p;
    uint8_t m[NO_NB + 1];
    memset(m, 0, sizeof(m));
    int ngt1 = 0;
    for (int pos = 0; pos < n; pos++) {
        int c = kind->scan[pos], bd = kind->band[pos];
        int64_t a = v[c] < 0 ? -(int64_t)v[c] : v[c];
        int32_t st = steps[c];
        int32_t lo = (int32_t)(a / st);
        if (lo > mmax[c])
            lo = mmax[c];
        if (down) { /* mag holds the dead-zone levels: choose between it and one less */
            lo = mag[c] - 1;
        }
        int32_t best = down ? mag[c] : lo;
        if (down ? lo >= 0 : 2 * a >= st && lo < mmax[c]) { /* lo or lo + 1, by distortion + lambda x rate */
            int lm = lower ? min2(absi(lower[c])) : 0;
            int ls = lower && lower[c] ? 1 + (lower[c] < 0) : 0;
            int ta = m[kind->nb_a[pos]], tb = m[kind->nb_b[pos]];
            int cls3 = bd < 2 ? 0 : (bd < 5 ? 1 : 2), t = min2((ta > 1) + (tb > 1));
            uint16_t *ps = p[base + C_SIG + bd * 27 + min2(ta + tb) * 9 + lm];
            int64_t j[2];
            for (int h = 0; h < 2; h++) {
                int32_t q = lo + h;
                int64_t e = a - 4 * (((int64_t)q * st) >> 2);
                int r = q ? bit_cost(ps, 1) + level_cost(p, base, cls3, t, ngt1, lm, ls, q) : bit_cost(ps, 0);
                j[h] = e * e * 256 + lam * r;
            }
            best = j[1] < j[0] ? lo + 1 : lo;
        }
        mag[c] = best;
        if (best) {
            m[c] = (uint8_t)(best < 3 ? best : 3);
            ngt1 += best > 1;
        }
    }
}

/* Intra mode of macroblock i: a flag "the most probable mode", else the mode's 3 bits. */
static void code_imode(rangecoder *rc, tier_contexts *ctx, motion_t *m, int i)
{
    int mpm = intra_mpm(m, i);
    int mode = rc->decoding ? 0 : m->imode[i];
    if (rc_bit(rc, ctx->p[CTX_IMODE + (mpm == INTRA_GREY)], mode == mpm)) {
        mode = mpm;
    } else {
        int node = 1;
        for (int b = 2; b >= 0; b--)
            node = 2 * node + rc_bit(rc, ctx->p[CTX_IMODE + 1 + node], (mode >> b) & 1);
        mode = node - 8;
        if (mode >= INTRA_MODES) { /* read from past the end of the payload: it was cut short */
            rc->error = rc->overrun > MAX_TRIM ? SNIS_E_TRUNCATED : SNIS_E_CORRUPT;
            return;
        }
    }
    if (rc->decoding)
        m->imode[i] = (uint8_t)mode;
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

/* One vector against its predictor (pred[2]): per component a zero flag (context: how many of
 * the left / top vectors differ from the predictor), in a quarter-pel frame the difference's
 * quarter-pel bit (its own context), the half-pel magnitude as Exp-Golomb, a bypass sign. In a
 * half-pel frame every vector and predictor is even and the difference is coded in half-pels. */
static void code_mv(rangecoder *rc, tier_contexts *ctx, int qpel, int16_t *v, const int pred[2], const int nbdiff[2])
{
    for (int comp = 0; comp < 2 && !rc->error; comp++) {
        int d = rc->decoding ? 0 : v[comp] - pred[comp];
        if (!qpel && (d & 1)) { /* the encoder's frame flags say half-pel: a bug, not a stream */
            rc->error = SNIS_E_ARG;
            return;
        }
        if (rc_bit(rc, ctx->p[CTX_MVZERO + comp * 3 + nbdiff[comp]], d != 0)) {
            int mag = d < 0 ? -d : d;
            int odd = qpel ? rc_bit(rc, ctx->p[CTX_MVQPEL + comp], mag & 1) : 0;
            uint32_t half = rc->decoding ? 0 : (uint32_t)(odd ? (mag - 1) / 2 : mag / 2 - 1);
            uint32_t r = rc_expgolomb(rc, &ctx->p[CTX_MVMAG + comp * 8], 8, half);
            if (r >= MV_LIMIT) {
                rc->error = SNIS_E_CORRUPT;
                return;
            }
            mag = 2 * (int)r + (odd ? 1 : 2);
            d = rc_bypass(rc, d < 0) ? -mag : mag;
        } else {
            d = 0;
        }
        int val = pred[comp] + d;
        if (val > MV_LIMIT || val < -MV_LIMIT) {
            rc->error = SNIS_E_CORRUPT;
            return;
        }
        if (rc->decoding)
            v[comp] = (int16_t)val;
    }
}

/* Vector syntax of an inter macroblock of tier 0 (docs/BITSTREAM.md): merge flag and index, or
 * a split flag and one or four vectors. */
static void code_inter_mb(rangecoder *rc, tier_contexts *ctx, motion_t *m, int mby, int mbx)
{
    int mbw = m->mbw, i = mby * mbw + mbx, left = mbx > 0, top = mby > 0;
    int mctx = CTX_MERGE + (left && m->merge[i - 1]) + (top && m->merge[i - mbw]);
    int merge = (m->tools & MT_MERGE) ? rc_bit(rc, ctx->p[mctx], m->merge[i] != 0) : 0;
    if (merge) {
        int k = m->merge[i] - 1;
        int b0 = rc_bit(rc, ctx->p[CTX_MIDX], k > 0);
        k = b0 ? 1 + rc_bit(rc, ctx->p[CTX_MIDX + 1], k > 1) : 0;
        int mc[3][2];
        merge_candidates(m, mby, mbx, mc);
        if (rc->decoding) {
            m->merge[i] = (uint8_t)(1 + k);
            m->split[i] = 0;
            m->mv[2 * i] = (int16_t)mc[k][0];
            m->mv[2 * i + 1] = (int16_t)mc[k][1];
            set_mb_mv(m, i);
        }
        return;
    }
    if (rc->decoding)
        m->merge[i] = 0;
    int sctx = CTX_SPLIT + (left && m->split[i - 1]) + (top && m->split[i - mbw]);
    int split = (m->tools & MT_SPLIT) ? rc_bit(rc, ctx->p[sctx], m->split[i] & 1) : 0;
    if (rc->decoding)
        m->split[i] = (uint8_t)split;
    if (!split) {
        int pred[2], nbd[2];
        for (int c = 0; c < 2; c++) {
            pred[c] = mv_predictor(m, mby, mbx, c);
            nbd[c] = mv_zero_ctx(m, 4 * mby, 4 * mbx, c, pred[c]);
        }
        code_mv(rc, ctx, m->tools & MT_QPEL, m->mv + 2 * i, pred, nbd);
        if (rc->decoding && !rc->error)
            set_mb_mv(m, i);
        return;
    }
    for (int p = 0; p < 4 && !rc->error; p++) {
        int sy = 2 * mby + (p >> 1), sx = 2 * mbx + (p & 1);
        int s8 = 0;
        if (m->tools & MT_SPLIT8) {
            int c8 = CTX_SPLIT8 + (sx > 0 && part_split8(m, sy, sx - 1)) + (sy > 0 && part_split8(m, sy - 1, sx));
            s8 = rc_bit(rc, ctx->p[c8], part_split8(m, sy, sx));
            if (rc->decoding)
                m->split[i] = (uint8_t)(m->split[i] | (s8 << (1 + p)));
        }
        for (int q = 0; q < (s8 ? 4 : 1) && !rc->error; q++) {
            int qy = 2 * sy + (q >> 1), qx = 2 * sx + (q & 1), size = s8 ? 1 : 2;
            int pred[2], nbd[2];
            for (int c = 0; c < 2; c++) {
                pred[c] = part_predictor(m, qy, qx, size, c);
                nbd[c] = mv_zero_ctx(m, qy, qx, c, pred[c]);
            }
            int16_t *v = sub_mv(m, qy, qx);
            code_mv(rc, ctx, m->tools & MT_QPEL, v, pred, nbd);
            if (rc->decoding && !s8) /* the later partitions' predictors read every cell */
                set_part_mv(m, qy, qx, 2, v);
        }
    }
    if (rc->decoding && !rc->error) {
        m->mv[2 * i] = sub_mv(m, 4 * mby, 4 * mbx)[0];
        m->mv[2 * i + 1] = sub_mv(m, 4 * mby, 4 * mbx)[1];
    }
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
    if (job->tier == 0) { /* adaptive quantisation: the frame's strength (loop.c derives the offsets) */
        int aq = rc_bypass(rc, m->aq != 0);
        if (aq)
            aq = (int)rc_bypass_bits(rc, (uint32_t)(m->aq + AQ_STRENGTH_MAX + 1), 6) - (AQ_STRENGTH_MAX + 1);
        if (rc->decoding)
            m->aq = aq;
        /* the frame's motion tools: five bypass bits (quarter-pel, merge, split, 8x8 split, OBMC) on
           P-frames */
        if (intra_frame) {
            if (rc->decoding)
                m->tools = 0;
        } else {
            int t = (int)rc_bypass_bits(rc, (uint32_t)m->tools & MT_ALL, MT_BITS);
            if (rc->decoding)
                m->tools = t;
        }
    }
    for (int mby = 0; mby < mbh && !rc->error; mby++) {
        for (int mbx = 0; mbx < mbw; mbx++) {
            int i = mby * mbw + mbx, left = mbx > 0, top = mby > 0;
            if (job->tier == 0) {
                uint64_t t0 = rc->decoding ? 0 : rc_tell_q8(rc);
                if (intra_frame) {
                    if (rc->decoding) {
                        m->intra[i] = 1;
                        m->mv[2 * i] = m->mv[2 * i + 1] = 0;
                        m->split[i] = m->merge[i] = 0;
                        set_mb_mv(m, i);
                    }
                    code_imode(rc, ctx, m, i);
                    if (rc->error)
                        break;
                } else {
                    int c = CTX_MODE + (left ? m->intra[i - 1] : 0) + (top ? m->intra[i - mbw] : 0);
                    int intra = rc_bit(rc, ctx->p[c], m->intra[i]);
                    if (rc->decoding)
                        m->intra[i] = (uint8_t)intra;
                    if (!intra) {
                        code_inter_mb(rc, ctx, m, mby, mbx);
                        if (rc->error)
                            break;
                    } else {
                        if (rc->decoding) {
                            m->mv[2 * i] = m->mv[2 * i + 1] = 0;
                            m->split[i] = m->merge[i] = 0;
                            set_mb_mv(m, i);
                        }
                        code_imode(rc, ctx, m, i);
                        if (rc->error)
                            break;
                    }
                }
                if (!rc->decoding)
                    job->motion_q8 += rc_tell_q8(rc) - t0;
            }
            int pm = m->intra[i];
            int kind = pm ? 2 : m->merge[i] != 0; /* a merged macroblock is the one most often empty */
            int by = mby * 4, bx = mbx * 4;
            int coded = 0;
            if (!rc->decoding) {
                coded = window_any(&py, by, bx, 4) || window_any(&pk, by / 2, bx / 2, 2);
                for (int p = 0; p < 2; p++)
                    coded = coded || window_any(&pc[p], by, bx, 4) || window_any(&pck[p], by / 2, bx / 2, 2);
            }
            int nbm = (left ? mbcbf[i - 1] : 0) + (top ? mbcbf[i - mbw] : 0);
            int lmb = 0;
            if (lq) {
                lmb = window_any(&ly, by, bx, 4) || window_any(&lk, by / 2, bx / 2, 2);
                for (int p = 0; p < 2; p++)
                    lmb = lmb || window_any(&lc[p], by, bx, 4) || window_any(&lck[p], by / 2, bx / 2, 2);
            }
            coded = rc_bit(rc, ctx->p[CTX_MBCBF + nbm * 6 + kind * 2 + lmb], coded);
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
                int lqc = 0;
                if (lq) {
                    lqc = window_any(&ly, qy * 2, qx * 2, 2) || lk.f[qy * (wb / 2) + qx];
                    for (int p = 0; p < 2; p++)
                        lqc = lqc || window_any(&lc[p], qy * 2, qx * 2, 2) || lck[p].f[qy * (wb / 2) + qx];
                }
                qc = rc_bit(rc, ctx->p[CTX_QCBF + nbq * 6 + kind * 2 + lqc], qc);
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
                int kb = qy * (wb / 2) + qx;
                code_block(rc, ctx, CTX_CLASS + 2 * CLASS_SIZE, &pk, lq ? &lk : NULL, cbf_k, qy, qx, &KIND_K, pm, 0,
                           &job->nz);
                for (int b = 0; b < 4; b++)
                    code_block(rc, ctx, CTX_CLASS, &py, lq ? &ly : NULL, cbf_y, qy * 2 + (b >> 1), qx * 2 + (b & 1),
                               &KIND_Y, pm, cbf_k[kb], &job->nz);
                for (int p = 0; p < 2; p++) {
                    code_block(rc, ctx, CTX_CLASS + 3 * CLASS_SIZE, &pck[p], lq ? &lck[p] : NULL, cbf_ck[p], qy, qx,
                               &KIND_K, pm, p ? cbf_ck[0][kb] : cbf_k[kb], &job->nz);
                    for (int b = 0; b < 4; b++) {
                        size_t cb = (size_t)(qy * 2 + (b >> 1)) * wb + qx * 2 + (b & 1);
                        code_block(rc, ctx, CTX_CLASS + CLASS_SIZE, &pc[p], lq ? &lc[p] : NULL, cbf_c[p],
                                   qy * 2 + (b >> 1), qx * 2 + (b & 1), &KIND_C, pm, p ? cbf_c[0][cb] : cbf_y[cb],
                                   &job->nz);
                    }
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
