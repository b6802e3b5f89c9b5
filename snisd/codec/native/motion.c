/* Block motion: estimation (encoder) and compensation (both sides).
 *
 * Vectors are in quarter-pels of luma (eighth-pels of chroma). A 32x32 macroblock has one
 * vector, a merge candidate's vector (the median predictor, the left or the top neighbour's), or
 * four 16x16 partitions with a vector each. Luma is interpolated by separable filters, one per
 * quarter-pel phase, horizontally and then vertically on the rounded 8-bit output (SIMD, simd.h);
 * the taps are bilinear (a 6-tap set lost, see LUMA_TAPS). Chroma is bilinear in 1/64. All
 * integer, the same on every platform.
 *
 * The estimate is a 3DRS-like candidate search (zero, the median predictor, the left / top /
 * top-right vectors of this frame and three of the previous frame), a shrinking diamond at full
 * pel and half- and quarter-pel refinements (bilinear samples in one rounding; at half pel the
 * four axial neighbours and one diagonal, or all eight with subpel 2), every candidate
 * paying lambda times its vector-coding bits. Then a rate-distortion choice between that vector,
 * the merge candidates and a 16x16 split. A macroblock where a merge candidate already matches
 * almost exactly stops searching at once.
 * References carry an edge-replicated border, so vectors inside it need no clamping, and any
 * other vector takes the clamped path with the same result.
 */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>

#include <limits.h>

#include "internal.h"
#include "simd.h"

/* Estimated bits of one vector-difference component (Exp-Golomb-like growth). */
static int mv_bits(int d)
{
    if (d == 0)
        return 1;
    int a = d < 0 ? -d : d, n = 0;
    while (a) {
        n++;
        a >>= 1;
    }
    return 2 * n + 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Interpolation */

#define SUB_MAX (MB + 5) /* source rows / columns an n x n block's filter reads */

/* The luma filters of the quarter-pel phases (sum 64): bilinear. Sharper 6-tap filters
 * ((2, -9, 39, 39, -9, 2) at half-pel) were measured and lost: on noisy hand-held video they
 * carry the reference's noise into the prediction (docs/BENCHMARKS.md, "Compression tools"). */
static const int16_t LUMA_TAPS[4][6] = {
    {0, 0, 64, 0, 0, 0}, {0, 0, 48, 16, 0, 0}, {0, 0, 32, 32, 0, 0}, {0, 0, 16, 48, 0, 0}};

/* One row of n samples of the filter k (8, 16 or 32 wide). The half-pel phase, (32, 32), is the
 * rounded average of two samples, one instruction per 16 of them. */
static inline void filt_row(const uint8_t *p, ptrdiff_t s, const int16_t *k, int n, uint8_t *o)
{
    if (k == LUMA_TAPS[2]) {
        if (n == 8)
            avg8(p, p + s, o);
        for (int x = 0; x + 16 <= n; x += 16)
            avg16(p + x, p + s + x, o + x);
        return;
    }
    if (n == 8) {
        filt6_8(p, s, k, o);
        return;
    }
    for (int x = 0; x < n; x += 16)
        filt6_16(p + x, s, k, o + x);
}

/* The rows (bit y: row y) of an n x n luma block at quarter-pel fraction (fy, fx) of integer
 * position src: the horizontal filter of phase fx, then the vertical one of phase fy on its
 * (8-bit) output, which is computed only on the source rows the vertical taps of the wanted rows
 * read (the bilinear taps read two of the six). */
static void interp_luma(const uint8_t *src, ptrdiff_t ss, int fy, int fx, int n, uint64_t rows, uint8_t *dst,
                        ptrdiff_t ds)
{
    if (!fy && !fx) {
        for (int y = 0; y < n; y++)
            if (rows >> y & 1)
                memcpy(dst + y * ds, src + y * ss, (size_t)n);
    } else if (!fy || !fx) {
        for (int y = 0; y < n; y++)
            if (rows >> y & 1)
                filt_row(src + y * ss, fy ? ss : 1, LUMA_TAPS[fy | fx], n, dst + y * ds);
    } else {
        uint8_t t[SUB_MAX * MB]; /* row j: source row j - 2 */
        uint64_t taps = 0, need = 0;
        for (int j = 0; j < 6; j++)
            if (LUMA_TAPS[fy][j])
                taps |= 1u << j;
        for (int y = 0; y < n; y++)
            if (rows >> y & 1)
                need |= taps << y;
        for (int j = 0; j < n + 5; j++)
            if (need >> j & 1)
                filt_row(src + (j - 2) * ss, 1, LUMA_TAPS[fx], n, t + j * n);
        for (int y = 0; y < n; y++)
            if (rows >> y & 1)
                filt_row(t + (y + 2) * n, n, LUMA_TAPS[fy], n, dst + y * ds);
    }
}

/* The rows `rows` (bit y: row y) of the luma n x n block at (x0, y0) displaced by a quarter-pel
 * vector. */
static void luma_rows(const plane_t *ref, int x0, int y0, int mvy, int mvx, int n, uint64_t rows, uint8_t *dst,
                      ptrdiff_t ds)
{
    int sy = y0 + (mvy >> 2), sx = x0 + (mvx >> 2), fy = mvy & 3, fx = mvx & 3;
    int b = ref->border;
    ptrdiff_t rs = ref->stride;
    if (sy - 2 >= -b && sx - 2 >= -b && sy + n + 4 <= ref->h + b && sx + n + 4 <= ref->w + b) {
        interp_luma(ref->data + sy * rs + sx, rs, fy, fx, n, rows, dst, ds);
        return;
    }
    /* outside the border: the same filter on a copy with clamped coordinates */
    uint8_t tmp[(SUB_MAX + 1) * (SUB_MAX + 1)];
    const int ts = SUB_MAX + 1;
    int h1 = ref->h - 1, w1 = ref->w - 1;
    for (int y = 0; y < n + 6; y++) {
        const uint8_t *r = ref->data + clampi(sy + y - 2, 0, h1) * rs;
        for (int x = 0; x < n + 6; x++)
            tmp[y * ts + x] = r[clampi(sx + x - 2, 0, w1)];
    }
    interp_luma(tmp + 2 * ts + 2, ts, fy, fx, n, rows, dst, ds);
}

/* The whole block. */
static void luma_block(const plane_t *ref, int x0, int y0, int mvy, int mvx, int n, uint8_t *dst, ptrdiff_t ds)
{
    luma_rows(ref, x0, y0, mvy, mvx, n, ((uint64_t)1 << n) - 1, dst, ds);
}

/* Chroma n x n block at an eighth-pel vector (the luma quarter-pel vector), bilinear in 1/64. */
static void chroma_block(const plane_t *ref, int x0, int y0, int mvy, int mvx, int n, uint8_t *dst, ptrdiff_t ds)
{
    int sy = y0 + (mvy >> 3), sx = x0 + (mvx >> 3), fy = mvy & 7, fx = mvx & 7;
    int b = ref->border;
    ptrdiff_t rs = ref->stride;
    int w00 = (8 - fx) * (8 - fy), w01 = fx * (8 - fy), w10 = (8 - fx) * fy, w11 = fx * fy;
    if (sy >= -b && sx >= -b && sy + n + 1 <= ref->h + b && sx + n + 1 <= ref->w + b) {
        const uint8_t *r = ref->data + sy * rs + sx;
        for (int y = 0; y < n; y++, r += rs, dst += ds) {
            const uint8_t *r1 = r + rs;
            if (!fx && !fy)
                memcpy(dst, r, (size_t)n);
            else if (n >= 16)
                for (int x = 0; x < n; x += 16)
                    bilin16(r + x, r1 + x, w00, w01, w10, w11, 6, dst + x);
            else if (n == 8)
                bilin8(r, r1, w00, w01, w10, w11, 6, dst);
            else
                for (int x = 0; x < n; x++)
                    dst[x] = (uint8_t)((w00 * r[x] + w01 * r[x + 1] + w10 * r1[x] + w11 * r1[x + 1] + 32) >> 6);
        }
        return;
    }
    int h1 = ref->h - 1, w1 = ref->w - 1;
    for (int y = 0; y < n; y++, dst += ds) {
        const uint8_t *ra = ref->data + clampi(sy + y, 0, h1) * rs;
        const uint8_t *rb = ref->data + clampi(sy + y + 1, 0, h1) * rs;
        for (int x = 0; x < n; x++) {
            int xa = clampi(sx + x, 0, w1), xb = clampi(sx + x + 1, 0, w1);
            dst[x] = (uint8_t)((w00 * ra[xa] + w01 * ra[xb] + w10 * rb[xa] + w11 * rb[xb] + 32) >> 6);
        }
    }
}

static void predict_block(const picture_t *ref, picture_t *dst, int x0, int y0, int n, int mvy, int mvx)
{
    luma_block(&ref->p[0], x0, y0, mvy, mvx, n, dst->p[0].data + y0 * dst->p[0].stride + x0, dst->p[0].stride);
    for (int c = 1; c < 3; c++)
        chroma_block(&ref->p[c], x0 / 2, y0 / 2, mvy, mvx, n / 2,
                     dst->p[c].data + (y0 / 2) * dst->p[c].stride + x0 / 2, dst->p[c].stride);
}

/* Overlapped block motion compensation (luma). A lapped transform codes a discontinuity at a
 * block edge expensively, and block motion compensation puts one wherever two neighbouring
 * vectors differ. Each 8x8 cell's prediction is therefore blended, near its edges, with the
 * predictions of the same pixels by its neighbours' vectors: across the vertical edges, then
 * across the horizontal ones, each rounded to 8 bits, with weights that fall from 64 to 46 of
 * 64 over the 3 samples next to an edge (a raised cosine; the two sides of an edge sum to one),
 * so that where the vectors agree nothing changes. Intra macroblocks and the picture's outside
 * lend no vector. Every pixel's value depends only on the reference and the vectors, so rows
 * stay independent; everything fits 16-bit lanes. */
/* Own weight (of 64) of the sample at column or row i of a cell. */
static const uint16_t OBMC_W[8] = {46, 56, 62, 64, 64, 62, 56, 46};

/* A cell's vector as one comparable value, OBMC_NONE where the cell lends none (intra, outside). */
#define OBMC_NONE ((int64_t)1 << 40)
static int64_t obmc_key(const motion_t *m, int qy, int qx)
{
    if (qy < 0 || qx < 0 || qy >= 4 * m->mbh || qx >= 4 * m->mbw || m->intra[(qy >> 2) * m->mbw + (qx >> 2)])
        return OBMC_NONE;
    const int16_t *v = sub_mv(m, qy, qx);
    return (int64_t)(((uint32_t)(uint16_t)v[0] << 16) | (uint16_t)v[1]);
}

/* Rows needed of a neighbour's prediction in the role of neighbour n (0..8, row-major around the
 * cell, 4 the cell itself): the horizontal ones (3, 5) blend into every row, the others only into
 * the rows of their half whose weight is below 64. */
static unsigned obmc_rows(int n)
{
    if (n == 3 || n == 5)
        return 0xFF;
    unsigned m = 0;
    for (int y = n < 3 ? 0 : 4; y < (n < 3 ? 4 : 8); y++)
        if (OBMC_W[y] != 64)
            m |= 1u << y;
    return m;
}

static void obmc_row(const motion_t *m, const plane_t *ref, plane_t *dst, int mby)
{
    unsigned role_rows[9];
    for (int n = 0; n < 9; n++)
        role_rows[n] = obmc_rows(n);
    ptrdiff_t ds = dst->stride;
    /* the cells' vectors of cell rows 4 mby - 1 .. 4 mby + 4, OBMC_CHUNK macroblocks at a time
       (columns 4 mbx0 - 1 .. 4 (mbx0 + OBMC_CHUNK)) */
    enum { OBMC_CHUNK = 32, KW = 4 * OBMC_CHUNK + 2 };
    int64_t key[6 * KW];
    for (int mbx = 0; mbx < m->mbw; mbx++) {
        int mbx0 = mbx - mbx % OBMC_CHUNK;
        if (mbx == mbx0)
            for (int r = 0; r < 6; r++)
                for (int x = 0; x < KW; x++)
                    key[r * KW + x] = obmc_key(m, 4 * mby - 1 + r, 4 * mbx0 - 1 + x);
        if (m->intra[mby * m->mbw + mbx])
            continue;
        for (int c = 0; c < 16; c++) {
            int cy = c >> 2, cx = 4 * mbx + (c & 3);
            const int64_t *k0 = key + (cy + 1) * KW + cx - 4 * mbx0 + 1;
            int64_t own = *k0;
            /* the eight neighbours (n = 4 is the cell itself): each distinct vector other than
               its own is interpolated once, on the rows its roles need */
            int64_t dv[8];
            unsigned dr[8];
            int idx[9], nd = 0;
            for (int n = 0; n < 9; n++) {
                int64_t v = k0[(n / 3 - 1) * KW + n % 3 - 1];
                idx[n] = 0;
                if (v == own || v == OBMC_NONE)
                    continue;
                for (int k = 0; k < nd && !idx[n]; k++)
                    if (v == dv[k])
                        idx[n] = 1 + k;
                if (!idx[n]) {
                    dv[nd] = v;
                    dr[nd] = 0;
                    idx[n] = 1 + nd++;
                }
                dr[idx[n] - 1] |= role_rows[n];
            }
            if (!nd) /* most cells inside a macroblock */
                continue;
            int x0 = 8 * cx, y0 = 8 * (4 * mby + cy);
            uint8_t *d = dst->data + y0 * ds + x0;
            uint8_t pred[8][64]; /* vector dv[k]'s prediction */
            for (int k = 0; k < nd; k++)
                luma_rows(ref, x0, y0, (int16_t)(dv[k] >> 16), (int16_t)dv[k], 8, dr[k], pred[k], 8);
            /* row by row: the own prediction (in place), and for each half row the horizontal,
               vertical and diagonal neighbours' predictions (the own one where they lend none) */
            for (int y = 0; y < 8; y++) {
                int hy = y >> 2;
                uint8_t *o = d + y * ds;
#define SNIS_ROW(n) (idx[n] ? pred[idx[n] - 1] + 8 * y : o)
                const uint8_t *h[2] = {SNIS_ROW(3), SNIS_ROW(5)};
                const uint8_t *v[2] = {SNIS_ROW(1 + 6 * hy), SNIS_ROW(1 + 6 * hy)};
                const uint8_t *g[2] = {SNIS_ROW(6 * hy), SNIS_ROW(6 * hy + 2)};
#undef SNIS_ROW
                if (OBMC_W[y] == 64 && !idx[3] && !idx[5])
                    continue; /* nothing to blend in this row */
                obmc_row8(o, h, v, g, OBMC_W, OBMC_W[y]);
            }
        }
    }
}

void motion_compensate_row(const motion_t *m, const picture_t *ref, picture_t *dst, int mby)
{
    for (int mbx = 0; mbx < m->mbw; mbx++) {
        int i = mby * m->mbw + mbx;
        int x0 = mbx * MB, y0 = mby * MB;
        if (m->intra[i]) {
            for (int y = 0; y < MB; y++)
                memset(dst->p[0].data + (y0 + y) * dst->p[0].stride + x0, 128, MB);
            for (int c = 1; c < 3; c++)
                for (int y = 0; y < MB / 2; y++)
                    memset(dst->p[c].data + (y0 / 2 + y) * dst->p[c].stride + x0 / 2, 128, MB / 2);
            continue;
        }
        if (!m->split[i]) {
            predict_block(ref, dst, x0, y0, MB, m->mv[2 * i], m->mv[2 * i + 1]);
            continue;
        }
        for (int p = 0; p < 4; p++) {
            int px = x0 + (p & 1) * (MB / 2), py = y0 + (p >> 1) * (MB / 2);
            int qy = 4 * mby + 2 * (p >> 1), qx = 4 * mbx + 2 * (p & 1);
            if (!((m->split[i] >> (1 + p)) & 1)) {
                const int16_t *v = sub_mv(m, qy, qx);
                predict_block(ref, dst, px, py, MB / 2, v[0], v[1]);
                continue;
            }
            for (int q = 0; q < 4; q++) {
                const int16_t *v = sub_mv(m, qy + (q >> 1), qx + (q & 1));
                predict_block(ref, dst, px + (q & 1) * (MB / 4), py + (q >> 1) * (MB / 4), MB / 4, v[0], v[1]);
            }
        }
    }
    if (m->tools & MT_OBMC)
        obmc_row(m, &ref->p[0], &dst->p[0], mby);
}

/* ------------------------------------------------------------------------------------------ */
/* Estimation. SADs use every other row (the full row width, which SIMD handles in one go). */

/* Rows of 8 bytes (8x8 partitions; plain C, vectorised by the compiler). */
static inline uint32_t sad8(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    uint32_t s = 0;
    for (int y = 0; y < rows; y += step)
        for (int x = 0; x < 8; x++) {
            int d = a[y * sa + x] - b[y * sb + x];
            s += (uint32_t)(d < 0 ? -d : d);
        }
    return s;
}

static inline uint32_t sad_n(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int n, int rows,
                             int step)
{
    return n == MB ? sad32(a, sa, b, sb, rows, step) : sad16(a, sa, b, sb, rows, step); /* 8x8: sad8 */
}

static uint32_t sad_int(const plane_t *cur, const plane_t *ref, int x0, int y0, int n, int dy, int dx)
{
    const uint8_t *c = cur->data + y0 * cur->stride + x0;
    const uint8_t *r = ref->data + (y0 + dy) * ref->stride + x0 + dx;
    if (n < 16) /* every row: half of an 8x8 block's rows is too noisy a sample to choose by */
        return sad8(c, cur->stride, r, ref->stride, n, 1);
    return 2 * sad_n(c, cur->stride, r, ref->stride, n, n, 2);
}

/* SAD at a quarter-pel vector, the sub-pel samples bilinear (the search's stand-in for the
 * filter); only the rows the SAD reads are interpolated. The encoder's vectors stay inside the
 * reference border, so no clamping is needed. */
static uint32_t sad_sub(const plane_t *cur, const plane_t *ref, int x0, int y0, int n, int mvy, int mvx)
{
    int fy = mvy & 3, fx = mvx & 3;
    if (!fy && !fx)
        return sad_int(cur, ref, x0, y0, n, mvy >> 2, mvx >> 2);
    uint8_t tmp[MB / 2 * MB];
    const uint8_t *c = cur->data + y0 * cur->stride + x0;
    ptrdiff_t rs = ref->stride;
    const uint8_t *r = ref->data + (y0 + (mvy >> 2)) * rs + x0 + (mvx >> 2);
    int w00 = (4 - fx) * (4 - fy), w01 = fx * (4 - fy), w10 = (4 - fx) * fy, w11 = fx * fy;
    if (n < 16) { /* every row (as sad_int) */
        for (int y = 0; y < n; y++)
            for (int x = 0; x < n; x++)
                tmp[y * n + x] = (uint8_t)((w00 * r[y * rs + x] + w01 * r[y * rs + x + 1] + w10 * r[(y + 1) * rs + x] +
                                            w11 * r[(y + 1) * rs + x + 1] + 8) >> 4);
        return sad8(c, cur->stride, tmp, n, n, 1);
    }
    if ((fx | fy) == 2 && !(fx & fy)) { /* an axial half-pel: weights 8 and 8 of 16, (a + b + 1) >> 1 */
        ptrdiff_t off = fx ? 1 : rs;
        for (int y = 0; y < n / 2; y++) {
            const uint8_t *r0 = r + 2 * y * rs;
            for (int x = 0; x < n; x += 16)
                avg16(r0 + x, r0 + off + x, tmp + y * n + x);
        }
        return 2 * sad_n(c, 2 * cur->stride, tmp, n, n, n / 2, 1);
    }
    for (int y = 0; y < n / 2; y++) {
        const uint8_t *r0 = r + 2 * y * rs;
        for (int x = 0; x < n; x += 16)
            bilin16(r0 + x, r0 + rs + x, w00, w01, w10, w11, 4, tmp + y * n + x);
    }
    return 2 * sad_n(c, 2 * cur->stride, tmp, n, n, n / 2, 1);
}

static void wait_row(volatile int *row_done, int row, int need)
{
    /* spin a little (the row above is usually just ahead), then yield the core: on a busy board
       the thread we wait for may be the one the scheduler has to run */
    for (int spins = 0; __atomic_load_n(&row_done[row], __ATOMIC_ACQUIRE) < need; spins++)
        if (spins > 256)
            sched_yield();
}

typedef struct {
    const plane_t *cur, *ref;
    int x0, y0, n, lam, range, qpel, subpel;
    int py, px; /* predictor, quarter-pel */
    int zc[2];  /* zero-flag contexts of the two components */
    const mv_rates *rates;
} block_search;

static inline int bit_length(int a)
{
    int n = 0;
    while (a) {
        n++;
        a >>= 1;
    }
    return n;
}

/* Bits of one component difference in 1/16 bit: the contexts' estimate, or a fixed one. */
static inline uint32_t comp_bits16(const block_search *s, int comp, int d)
{
    int a = d < 0 ? -d : d;
    if (!s->rates) /* a half-pel frame codes half the difference (the vectors are even) */
        return (uint32_t)(16 * mv_bits(s->qpel ? d : d / 2));
    if (a < MVC_N)
        return s->rates->mvd[comp][s->zc[comp]][a];
    /* beyond the table: from its last even entry (codable in either kind of frame), 2 bits more
       per doubling */
    return s->rates->mvd[comp][s->zc[comp]][MVC_N - 2] + 32u * (uint32_t)(bit_length(a) - bit_length(MVC_N - 2));
}

static inline uint32_t vec_cost(const block_search *s, int vy, int vx)
{
    return (uint32_t)(((uint64_t)s->lam * (comp_bits16(s, 0, vy - s->py) + comp_bits16(s, 1, vx - s->px)) + 8) >> 4);
}

/* lambda times a flag cost in 1/16 bit */
static inline uint32_t lam_bits(int lam, uint32_t bits16) { return (uint32_t)(((uint64_t)lam * bits16 + 8) >> 4); }

/* The block's cost (SAD + lambda bits) at a full-pel vector (dy, dx) or a quarter-pel one (vy, vx). */
static inline uint32_t cost_full(const block_search *s, int dy, int dx)
{
    return sad_int(s->cur, s->ref, s->x0, s->y0, s->n, dy, dx) + vec_cost(s, 4 * dy, 4 * dx);
}
static inline uint32_t cost_sub(const block_search *s, int vy, int vx)
{
    return sad_sub(s->cur, s->ref, s->x0, s->y0, s->n, vy, vx) + vec_cost(s, vy, vx);
}

/* A candidate's quarter-pel component rounded to full pel, inside the search range. */
static inline int full_pel(const block_search *s, int q) { return clampi((q + 2) >> 2, -s->range, s->range); }

/* Full-pel diamond from the best of the candidates (quarter-pel, rounded to full pel), then the
 * half- and quarter-pel refinements. Returns the cost (SAD + lambda bits); *vy, *vx the vector. */
static uint32_t search_block(const block_search *s, const int (*cand)[2], int n, int diamond, int *vy, int *vx)
{
    int by = 0, bx = 0;
    uint32_t best = UINT32_MAX;
    for (int c = 0; c < n; c++) {
        int cy = full_pel(s, cand[c][0]), cx = full_pel(s, cand[c][1]);
        uint32_t cost = cost_full(s, cy, cx);
        if (cost < best) {
            best = cost;
            by = cy;
            bx = cx;
        }
    }
    /* the position the last move left: it cost more than the best, so scoring it again (the
       next direction, or the next round's step back) cannot move the best */
    int fy = INT_MIN, fx = INT_MIN;
    for (int step = diamond; step >= 1; step >>= 1) {
        for (int it = 0; it < 2; it++) {
            int moved = 0;
            static const int dirs[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
            for (int d = 0; d < 4; d++) {
                int ny = by + dirs[d][0] * step, nx = bx + dirs[d][1] * step;
                if (ny > s->range || ny < -s->range || nx > s->range || nx < -s->range || (ny == fy && nx == fx))
                    continue;
                uint32_t cost = cost_full(s, ny, nx);
                if (cost < best) {
                    best = cost;
                    fy = by;
                    fx = bx;
                    by = ny;
                    bx = nx;
                    moved = 1;
                }
            }
            if (!moved)
                break;
        }
    }
    int hy = 4 * by, hx = 4 * bx;
    if (s->subpel == 1) {
        /* half-pel: the four axial neighbours, then only the diagonal between the better
           vertical and the better horizontal one (5 interpolated SADs instead of 8) */
        static const int ax[4][2] = {{-2, 0}, {2, 0}, {0, -2}, {0, 2}};
        uint32_t c[4];
        for (int d = 0; d < 4; d++) {
            int ny = 4 * by + ax[d][0], nx = 4 * bx + ax[d][1];
            c[d] = cost_sub(s, ny, nx);
            if (c[d] < best) {
                best = c[d];
                hy = ny;
                hx = nx;
            }
        }
        int ny = 4 * by + (c[1] < c[0] ? 2 : -2), nx = 4 * bx + (c[3] < c[2] ? 2 : -2);
        uint32_t cost = cost_sub(s, ny, nx);
        if (cost < best) {
            best = cost;
            hy = ny;
            hx = nx;
        }
    }
    /* the square of eight half-pel neighbours (subpel 2), then the quarter-pel refinement */
    for (int d = s->subpel == 2 ? 2 : 1; d >= (s->qpel ? 1 : 2); d--) {
        int cy0 = hy, cx0 = hx;
        for (int dy = -d; dy <= d; dy += d)
            for (int dx = -d; dx <= d; dx += d) {
                if ((!dy && !dx) || (d == 1 && dy && dx)) /* quarter-pel: the four closest only */
                    continue;
                int ny = cy0 + dy, nx = cx0 + dx;
                uint32_t cost = cost_sub(s, ny, nx);
                if (cost < best) {
                    best = cost;
                    hy = ny;
                    hx = nx;
                }
            }
    }
    *vy = hy;
    *vx = hx;
    return best;
}

/* Block search of the partition of size x size cells at cell (qy, qx) (n pixels), from the
 * candidates cy, cx and its predictor; the vector goes to its cells. Returns the cost. */
static uint32_t search_cells(const me_job *job, int qy, int qx, int size, int cy, int cx, int *vy, int *vx)
{
    motion_t *m = job->out;
    block_search s = {&job->cur->p[0], &job->ref->p[0], qx * (MB / 4), qy * (MB / 4), size * (MB / 4), job->lambda,
                      job->range, job->qpel, job->subpel, part_predictor(m, qy, qx, size, 0),
                      part_predictor(m, qy, qx, size, 1), {0, 0}, job->rates};
    s.zc[0] = mv_zero_ctx(m, qy, qx, 0, s.py);
    s.zc[1] = mv_zero_ctx(m, qy, qx, 1, s.px);
    int pc[2][2] = {{cy, cx}, {s.py, s.px}};
    uint32_t cost = search_block(&s, (const int(*)[2])pc, 2, 1, vy, vx);
    int16_t v[2] = {(int16_t)*vy, (int16_t)*vx};
    set_part_mv(m, qy, qx, size, v);
    return cost;
}

static uint32_t try_split8(const me_job *job, int sy, int sx, int vy, int vx, uint32_t one, uint32_t flag1);

/* 16x16 partition (sy, sx) of a split macroblock: one vector (searched from the macroblock's
 * cy, cx), or four 8x8 ones where that pays (job->split8). Sets the cells and the split bit;
 * returns the cost with the 8x8 flag's. */
static uint32_t search_partition(const me_job *job, int sy, int sx, int cy, int cx)
{
    motion_t *m = job->out;
    const mv_rates *rt = job->rates;
    int c8 = (sx > 0 && part_split8(m, sy, sx - 1)) + (sy > 0 && part_split8(m, sy - 1, sx));
    uint32_t flag0 = !job->split8 ? 0 : rt ? rt->split8[c8][0] : 16, flag1 = rt ? rt->split8[c8][1] : 16;
    int vy, vx;
    uint32_t one = search_cells(job, 2 * sy, 2 * sx, 2, cy, cx, &vy, &vx) + lam_bits(job->lambda, flag0);
    /* (split8 = 1: only where the vector leaves a large residual; 2: everywhere; 3: not here but
       once the split has won, refine_partitions) */
    if (!job->split8 || job->split8 == 3 || (job->split8 == 1 && one <= (uint32_t)job->exit_sad / 2))
        return one;
    return try_split8(job, sy, sx, vy, vx, one, flag1);
}

/* Four 8x8 vectors for 16x16 partition (sy, sx), searched from its vector (vy, vx), where they
 * cost less than its one (cost `one`); the cells and the 8x8 bit are left as chosen. */
static uint32_t try_split8(const me_job *job, int sy, int sx, int vy, int vx, uint32_t one, uint32_t flag1)
{
    motion_t *m = job->out;
    int i = (sy >> 1) * m->mbw + (sx >> 1), bit = 1 << (1 + 2 * (sy & 1) + (sx & 1));
    m->split[i] = (uint8_t)(m->split[i] | bit);
    uint32_t four = lam_bits(job->lambda, flag1);
    for (int q = 0; q < 4 && four < one; q++) {
        int ey, ex;
        four += search_cells(job, 2 * sy + (q >> 1), 2 * sx + (q & 1), 1, vy, vx, &ey, &ex);
    }
    if (four < one)
        return four;
    m->split[i] = (uint8_t)(m->split[i] & ~bit);
    int16_t v[2] = {(int16_t)vy, (int16_t)vx};
    set_part_mv(m, 2 * sy, 2 * sx, 2, v);
    return one;
}

/* split8 = 3: the 8x8 search in each 16x16 partition of a macroblock whose split has won, where
 * the partition's vector leaves a large residual; returns the macroblock's new cost. */
static uint32_t refine_partitions(const me_job *job, int mby, int mbx, uint32_t total)
{
    motion_t *m = job->out;
    const mv_rates *rt = job->rates;
    for (int p = 0; p < 4; p++) {
        int sy = 2 * mby + (p >> 1), sx = 2 * mbx + (p & 1);
        int c8 = (sx > 0 && part_split8(m, sy, sx - 1)) + (sy > 0 && part_split8(m, sy - 1, sx));
        uint32_t flag0 = rt ? rt->split8[c8][0] : 16, flag1 = rt ? rt->split8[c8][1] : 16;
        const int16_t *v = sub_mv(m, 2 * sy, 2 * sx);
        int vy = v[0], vx = v[1];
        int qy = 2 * sy, qx = 2 * sx;
        block_search s = {&job->cur->p[0], &job->ref->p[0], qx * (MB / 4), qy * (MB / 4), MB / 2, job->lambda,
                          job->range, job->qpel, job->subpel, part_predictor(m, qy, qx, 2, 0),
                          part_predictor(m, qy, qx, 2, 1), {0, 0}, job->rates};
        s.zc[0] = mv_zero_ctx(m, qy, qx, 0, s.py);
        s.zc[1] = mv_zero_ctx(m, qy, qx, 1, s.px);
        uint32_t sad = sad_sub(s.cur, s.ref, s.x0, s.y0, s.n, vy, vx);
        if (sad <= (uint32_t)job->exit_sad / 2)
            continue;
        uint32_t one = sad + vec_cost(&s, vy, vx) + lam_bits(job->lambda, flag0);
        uint32_t four = try_split8(job, sy, sx, vy, vx, one, flag1);
        if (four < one)
            total = total - one + four;
    }
    return total;
}

/* Whether another vector fits part of the macroblock clearly better than its own (one of the
 * search candidates lowers a 16x16 quadrant's SAD by an eighth and two bits' worth): what four
 * vectors can exploit. Where one motion fits every quadrant (a pan, sensor noise) the split
 * search rarely pays and is skipped (split = 3). */
static int split_promising(const block_search *s, const int (*cand)[2], int n, int vy, int vx)
{
    int u[9][2], nu = 0; /* the distinct full-pel candidates other than the vector itself */
    for (int c = 0; c < n && nu < 9; c++) {
        int cy = full_pel(s, cand[c][0]), cx = full_pel(s, cand[c][1]);
        int dup = 4 * cy == vy && 4 * cx == vx;
        for (int j = 0; j < nu && !dup; j++)
            dup = u[j][0] == cy && u[j][1] == cx;
        if (!dup) {
            u[nu][0] = cy;
            u[nu][1] = cx;
            nu++;
        }
    }
    for (int p = 0; p < 4 && nu; p++) {
        int x = s->x0 + (p & 1) * (MB / 2), y = s->y0 + (p >> 1) * (MB / 2);
        uint32_t own = sad_sub(s->cur, s->ref, x, y, MB / 2, vy, vx);
        uint32_t margin = own / 8 + (uint32_t)s->lam * 2;
        if (own <= margin)
            continue;
        for (int c = 0; c < nu; c++)
            if (sad_int(s->cur, s->ref, x, y, MB / 2, u[c][0], u[c][1]) < own - margin)
                return 1;
    }
    return 0;
}

void motion_estimate_row(me_job *job, int mby)
{
    motion_t *m = job->out;
    const motion_t *prev = job->prev;
    const plane_t *cur = &job->cur->p[0], *ref = &job->ref->p[0];
    int mbw = m->mbw, mbh = m->mbh, lam = job->lambda, range = job->range;
    for (int mbx = 0; mbx < mbw; mbx++) {
        if (mby > 0)
            wait_row(job->row_done, mby - 1, mbx + 2 < mbw ? mbx + 2 : mbw);
        int i = mby * mbw + mbx, x0 = mbx * MB, y0 = mby * MB;
        m->intra[i] = 0;
        m->split[i] = 0;
        m->merge[i] = 0;
        int py = mv_predictor(m, mby, mbx, 0), px = mv_predictor(m, mby, mbx, 1);
        int cand[9][2], n = 0;
#define CAND(a, b)                                                                                                      \
    do {                                                                                                               \
        cand[n][0] = (a);                                                                                              \
        cand[n][1] = (b);                                                                                              \
        n++;                                                                                                           \
    } while (0)
        CAND(py, px);
        CAND(0, 0);
        if (mbx > 0)
            CAND(m->mv[2 * (i - 1)], m->mv[2 * (i - 1) + 1]);
        if (mby > 0) {
            CAND(m->mv[2 * (i - mbw)], m->mv[2 * (i - mbw) + 1]);
            if (mbx + 1 < mbw)
                CAND(m->mv[2 * (i - mbw + 1)], m->mv[2 * (i - mbw + 1) + 1]);
        }
        CAND(prev->mv[2 * i], prev->mv[2 * i + 1]);
        if (mby + 1 < mbh)
            CAND(prev->mv[2 * (i + mbw)], prev->mv[2 * (i + mbw) + 1]);
        if (mbx + 1 < mbw)
            CAND(prev->mv[2 * (i + 1)], prev->mv[2 * (i + 1) + 1]);
#undef CAND
        block_search s = {cur, ref, x0, y0, MB, lam, range, job->qpel, job->subpel, py, px,
                          {mv_zero_ctx(m, 4 * mby, 4 * mbx, 0, py), mv_zero_ctx(m, 4 * mby, 4 * mbx, 1, px)},
                          job->rates};
        /* flag costs (1/16 bit) in this macroblock's contexts */
        const mv_rates *rt = job->rates;
        int mctx = (mbx > 0 && m->merge[i - 1]) + (mby > 0 && m->merge[i - mbw]);
        int sctx = (mbx > 0 && m->split[i - 1] != 0) + (mby > 0 && m->split[i - mbw] != 0);
        /* a tool that is off has no flag (docs/BITSTREAM.md: the frame's motion tools) */
        uint32_t merge0 = !job->merge ? 0 : rt ? rt->merge[mctx][0] : 16, merge1 = rt ? rt->merge[mctx][1] : 16;
        uint32_t split0 = !job->split ? 0 : rt ? rt->split[sctx][0] : 16, split1 = rt ? rt->split[sctx][1] : 16;
        int hy = py, hx = px;
        int pmax = 4 * range;
        /* merge candidates (0 is the predictor), each scored once; a duplicate is skipped */
        int mc[3][2];
        uint32_t msad[3] = {UINT32_MAX, UINT32_MAX, UINT32_MAX};
        merge_candidates(m, mby, mbx, mc);
        int done = 0;
        for (int k = 0; k < (job->merge ? 3 : 1) && !done; k++) {
            int dup = 0;
            for (int j = 0; j < k; j++)
                dup |= mc[j][0] == mc[k][0] && mc[j][1] == mc[k][1];
            if (dup || mc[k][0] < -pmax || mc[k][0] > pmax || mc[k][1] < -pmax || mc[k][1] > pmax)
                continue;
            msad[k] = sad_sub(cur, ref, x0, y0, MB, mc[k][0], mc[k][1]);
            if (msad[k] < (uint32_t)job->exit_sad) { /* a candidate's vector is already right */
                hy = mc[k][0];
                hx = mc[k][1];
                m->merge[i] = (uint8_t)(job->merge ? 1 + k : 0);
                done = 1;
            }
        }
        if (!done) {
            uint32_t best = search_block(&s, (const int(*)[2])cand, n, 4, &hy, &hx);
            /* every choice pays its flags: a coded vector the merge and the split flag */
            best += lam_bits(lam, merge0 + split0);
            /* merge: a candidate's vector for the merge flag and its index */
            if (job->merge) {
                for (int k = 0; k < 3; k++) /* the searched vector is a candidate: merge it */
                    if (msad[k] != UINT32_MAX && mc[k][0] == hy && mc[k][1] == hx) {
                        uint32_t bits = merge1 + (rt ? rt->midx[k] : (k ? 32u : 16u));
                        best = best - vec_cost(&s, hy, hx) - lam_bits(lam, merge0 + split0) + lam_bits(lam, bits);
                        m->merge[i] = (uint8_t)(1 + k);
                        break;
                    }
                for (int k = 0; k < 3; k++) {
                    if (msad[k] == UINT32_MAX || m->merge[i] == 1 + k)
                        continue;
                    uint32_t cost = msad[k] + lam_bits(lam, merge1 + (rt ? rt->midx[k] : (k ? 32u : 16u)));
                    if (cost < best) {
                        best = cost;
                        hy = mc[k][0];
                        hx = mc[k][1];
                        m->merge[i] = (uint8_t)(1 + k);
                    }
                }
            }
            /* (split = 1: only where the single vector leaves a large residual; 2: everywhere; 3: where
               the residual is large and another candidate fits a quadrant better) */
            int try_split = job->split == 2 || (job->split != 0 && best > 2 * (uint32_t)job->exit_sad);
            if (try_split && job->split == 3)
                try_split = split_promising(&s, (const int(*)[2])cand, n, hy, hx);
            if (try_split) {
                int16_t save[16][2];
                for (int c = 0; c < 16; c++) {
                    int16_t *v = sub_mv(m, 4 * mby + (c >> 2), 4 * mbx + (c & 3));
                    save[c][0] = v[0];
                    save[c][1] = v[1];
                }
                uint32_t total = lam_bits(lam, merge0 + split1);
                m->split[i] = 1; /* (the 8x8 flags' contexts read this macroblock's bits) */
                for (int p = 0; p < 4 && total < best; p++) {
                    int sy = 2 * mby + (p >> 1), sx = 2 * mbx + (p & 1);
                    total += search_partition(job, sy, sx, hy, hx);
                }
                if (total < best && job->split8 == 3) /* 8x8 vectors only inside a split that won */
                    total = refine_partitions(job, mby, mbx, total);
                if (total < best) {
                    m->merge[i] = 0;
                    best = total;
                    hy = sub_mv(m, 4 * mby, 4 * mbx)[0];
                    hx = sub_mv(m, 4 * mby, 4 * mbx)[1];
                } else {
                    m->split[i] = 0;
                    for (int c = 0; c < 16; c++) {
                        int16_t *v = sub_mv(m, 4 * mby + (c >> 2), 4 * mbx + (c & 3));
                        v[0] = save[c][0];
                        v[1] = save[c][1];
                    }
                }
            }
            /* intra if the block's own texture is cheaper than the motion-compensated residual */
            const uint8_t *c = cur->data + y0 * cur->stride + x0;
            int mean = (int)(sum32(c, cur->stride, MB) / (MB * MB));
            uint32_t sad_intra = sad_even32(c, 2 * cur->stride, MB / 2, (uint8_t)mean); /* every other row and column */
            if ((uint64_t)sad_intra * 4 + (uint64_t)job->intra_bias * lam < best) {
                m->intra[i] = 1;
                m->split[i] = 0;
                m->merge[i] = 0;
                hy = hx = 0;
            }
        }
        m->mv[2 * i] = (int16_t)hy;
        m->mv[2 * i + 1] = (int16_t)hx;
        if (!m->split[i])
            set_mb_mv(m, i);
        __atomic_store_n(&job->row_done[mby], mbx + 1, __ATOMIC_RELEASE);
    }
}
