/* Synthesis transform: dequantised latents back to a residual picture, in integer arithmetic.
 *
 * The mirror of the analysis: a 1/16-scale coarse stage rebuilds the DC plane (contributions
 * beyond the picture fold back onto their mirror block), then every block with a non-zero
 * coefficient spreads its coefficients over a lapped window of twice the block size, columns
 * first, then rows, into a canvas with a margin of half a block; the margins fold back (the
 * adjoint of the analysis' symmetric extension) and the result is added to the prediction.
 * Only blocks that code something cost anything, and only the canvas tiles they touch are read
 * back and cleared. The planes are independent: with several threads they run in parallel
 * (loop.c).
 */
#include <stdlib.h>

#include "internal.h"
#include "simd.h"

static const int LUMA_GROUPS[8] = {0, 1, 2, 2, 3, 3, 3, 3};
static const int CHROMA_GROUPS[4] = {0, 1, 2, 2};

void weights_expand(const snis_weights *w, plane_weights *luma, plane_weights *chroma)
{
    memset(luma, 0, sizeof(*luma));
    memset(chroma, 0, sizeof(*chroma));
    luma->n = 8;
    chroma->n = 4;
    for (int u = 0; u < 8; u++) {
        for (int t = 0; t < 16; t++)
            luma->row[u][t] = w->luma_row[u][t];
        for (int v = 0; v < 8; v++)
            for (int t = 0; t < 16; t++)
                luma->col[u][v][t] = w->luma_col[LUMA_GROUPS[u]][v][t];
    }
    for (int u = 0; u < 4; u++) {
        for (int t = 0; t < 8; t++)
            chroma->row[u][t] = w->chroma_row[u][t];
        for (int v = 0; v < 4; v++)
            for (int t = 0; t < 8; t++)
                chroma->col[u][v][t] = w->chroma_col[CHROMA_GROUPS[u]][v][t];
    }
    memcpy(luma->coarse, w->luma_coarse, sizeof(luma->coarse));
    memcpy(chroma->coarse, w->chroma_coarse, sizeof(chroma->coarse));
    /* int16 copies for the 16-bit kernels: loop_init() checked |w| < 2 << SNIS_FRAC = 2^13 */
    plane_weights *pws[2] = {luma, chroma};
    for (int i = 0; i < 2; i++) {
        plane_weights *pw = pws[i];
        int n = pw->n, T = 2 * n;
        for (int p = 0; p < n / 2; p++)
            for (int t = 0; t < T; t++)
                for (int e = 0; e < 2; e++) {
                    pw->row2[(p * T + t) * 2 + e] = (int16_t)pw->row[2 * p + e][t];
                    for (int u = 0; u < n; u++)
                        pw->col2[u][(p * T + t) * 2 + e] = (int16_t)pw->col[u][2 * p + e][t];
                }
    }
}

int synth_plane_alloc(synth_plane *s, int w, int h, int n)
{
    memset(s, 0, sizeof(*s));
    s->w = w;
    s->h = h;
    s->hb = h / n;
    s->wb = w / n;
    s->cstride = w + n;
    s->canvas = (int32_t *)calloc((size_t)(h + n) * (size_t)s->cstride, sizeof(int32_t));
    s->dc = (int32_t *)calloc((size_t)s->hb * s->wb, sizeof(int32_t));
    s->nz = (uint8_t *)calloc((size_t)s->hb * s->wb, 1);
    s->touched = (uint8_t *)calloc((size_t)s->hb * s->wb, 1);
    s->runs = (int *)calloc((size_t)s->wb + 1, 2 * sizeof(int));
    s->ring = (int32_t *)calloc((size_t)(2 * n) * (size_t)s->cstride, sizeof(int32_t));
    if (!s->canvas || !s->dc || !s->nz || !s->touched || !s->runs || !s->ring) {
        synth_plane_free(s);
        return SNIS_E_NOMEM;
    }
    return SNIS_OK;
}

void synth_plane_free(synth_plane *s)
{
    free(s->canvas);
    free(s->dc);
    free(s->nz);
    free(s->touched);
    free(s->runs);
    free(s->ring);
    memset(s, 0, sizeof(*s));
}

static int fold(int i, int n)
{
    if (i < 0)
        return -1 - i;
    if (i >= n)
        return 2 * n - 1 - i;
    return i;
}

typedef struct {
    synth_plane *s;
    const plane_weights *pw;
    const int16_t *ac;
    const uint8_t *f_ac;
    int stride_ac;
    plane_t *dst;
} synth_job;

/* One block of size N (8 luma, 4 chroma) in 32-bit arithmetic: column then row stage into a
 * local 2N x 2N window, added to the canvas once. The reference for synth_block(), and its path
 * for values beyond 16 bits (hostile streams). */
static void synth_block_wide(const plane_weights *pw, const int16_t *a, int has_ac, int32_t dc, int32_t *cv,
                             int32_t *cvb, ptrdiff_t cs, const int N)
{
    const int T = 2 * N;
    uint32_t blk[16][16];
    int used = 0;
    for (int u = 0; u < N; u++) {
        int32_t cf[8];
        int any = 0;
        for (int v = 0; v < N; v++) {
            int c = u * N + v;
            cf[v] = c == 0 ? dc : (has_ac ? a[c - 1] : 0);
            any |= cf[v];
        }
        if (!any)
            continue;
        uint32_t tu[16] = {0};
        for (int v = 0; v < N; v++) {
            if (!cf[v])
                continue;
            const int32_t *k = pw->col[u][v];
            for (int yy = 0; yy < T; yy++)
                tu[yy] += (uint32_t)k[yy] * (uint32_t)cf[v];
        }
        const int32_t *r = pw->row[u];
        for (int yy = 0; yy < T; yy++) {
            uint32_t tv = (uint32_t)((int32_t)(tu[yy] + (1u << (SNIS_FRAC - 1))) >> SNIS_FRAC);
            if (!used)
                for (int xx = 0; xx < T; xx++)
                    blk[yy][xx] = (uint32_t)r[xx] * tv;
            else
                for (int xx = 0; xx < T; xx++)
                    blk[yy][xx] += (uint32_t)r[xx] * tv;
        }
        used = 1;
    }
    if (!used)
        return;
    for (int yy = 0; yy < T; yy++) {
        int32_t *row = yy < N ? cv + yy * cs : cvb + (yy - N) * cs;
        for (int xx = 0; xx < T; xx++)
            row[xx] = (int32_t)((uint32_t)row[xx] + blk[yy][xx]);
    }
}

/* The same block with simd.h's 16-bit kernels: every weight and coefficient fits in int16 and
 * every product is exact in 32 bits, so the wrapping sums are those of synth_block_wide(). The
 * DC and the column stage's outputs (the row stage's inputs) may exceed 16 bits only in hostile
 * streams: then the block takes the 32-bit path. Frequencies u with no coefficient are skipped
 * in pairs (a pair with one live u multiplies zeros for the other). N is a compile-time constant
 * in each instance. */
static inline __attribute__((always_inline)) void synth_block(const plane_weights *pw, const int16_t *a, int has_ac,
                                                              int32_t dc, int32_t *cv, int32_t *cvb, ptrdiff_t cs,
                                                              const int N)
{
    if (dc < -32768 || dc > 32767) {
        synth_block_wide(pw, a, has_ac, dc, cv, cvb, cs, N);
        return;
    }
    int16_t cfb[64]; /* coefficient (u, v) at cfb[8u + v] */
    if (has_ac) {
        cfb[0] = (int16_t)dc;
        memcpy(cfb + 1, a, sizeof(int16_t) * (size_t)(N * N - 1));
        if (N == 4) /* rows of 4: spread into rows of 8 */
            for (int u = N - 1; u > 0; u--)
                memmove(cfb + 8 * u, cfb + N * u, sizeof(int16_t) * (size_t)N);
    } else {
        memset(cfb, 0, sizeof(cfb));
        cfb[0] = (int16_t)dc;
    }
    const int16_t(*cf)[8] = (const int16_t(*)[8])cfb;
    int16_t tv[8][16];
    int pairs[4], np = 0;
    for (int p = 0; p < N / 2; p++) {
        int live = 0;
        for (int e = 0; e < 2; e++) {
            int u = 2 * p + e, any = 0;
            if (u == 0 || has_ac)
                for (int v = 0; v < N; v++)
                    any |= cf[u][v];
            if (!any) {
                memset(tv[u], 0, sizeof(tv[u]));
                continue;
            }
            if (!synth_col16(pw->col2[u], cf[u], N, tv[u])) {
                synth_block_wide(pw, a, has_ac, dc, cv, cvb, cs, N);
                return;
            }
            live = 1;
        }
        if (live)
            pairs[np++] = p;
    }
    if (np)
        synth_row16(cv, cvb, cs, pw->row2, (const int16_t(*)[16])tv, pairs, np, N);
}

/* The coded blocks of block row i into the canvas: the top half of their windows in the rows
 * from top, the bottom half from bot (stride cstride). */
static inline __attribute__((always_inline)) void synth_blocks(synth_job *job, int i, int32_t *top, int32_t *bot)
{
    synth_plane *s = job->s;
    const plane_weights *pw = job->pw;
    int n = pw->n;
    for (int j = 0; j < s->wb; j++) {
        int b = i * s->wb + j;
        if (!s->nz[b])
            continue;
        const int16_t *a = job->ac + (size_t)b * job->stride_ac;
        if (n == 8)
            synth_block(pw, a, job->f_ac[b], s->dc[b], top + j * n, bot + j * n, s->cstride, 8);
        else
            synth_block(pw, a, job->f_ac[b], s->dc[b], top + j * n, bot + j * n, s->cstride, 4);
    }
}

/* len samples of a canvas row (rounded) added to dst, clipped; the canvas samples cleared. */
static inline void readback_span(int32_t *cv, uint8_t *d, int len)
{
    const int shift = SNIS_FRAC + 2;
    const int32_t rnd = 1 << (shift - 1);
    int x = 0;
    for (; x + 8 <= len; x += 8)
        readback8(cv + x, d + x);
    for (; x < len; x++) {
        int v = d[x] + ((int32_t)((uint32_t)cv[x] + (uint32_t)rnd) >> shift);
        d[x] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        cv[x] = 0;
    }
}

/* Fold the margins of canvas row `row` (w + n values, half = n/2 of margin each side) into the
 * picture: the top or bottom margin row mirrored onto it (top / bottom: that canvas row, or NULL),
 * then its own left and right margins; every folded value is cleared. */
static inline void fold_margins(int32_t *row, int32_t *top, int32_t *bottom, int w, int n)
{
    int half = n / 2;
    int32_t *outs[2] = {top, bottom};
    for (int k = 0; k < 2; k++) {
        int32_t *out = outs[k];
        if (!out)
            continue;
        for (int x = 0; x < w + n; x++) {
            row[x] = wadd(row[x], out[x]);
            out[x] = 0;
        }
    }
    for (int m = 0; m < half; m++) {
        row[half + m] = wadd(row[half + m], row[half - 1 - m]);
        row[half - 1 - m] = 0;
        row[half + w - 1 - m] = wadd(row[half + w - 1 - m], row[half + w + m]);
        row[half + w + m] = 0;
    }
}

/* One plane on one thread: the block rows in order, and each picture row added to dst as soon as
 * no later block row reaches it. Block row i's windows cover canvas rows [n i, n i + 2n), and
 * every row above them is final and cleared by then, so the canvas is a ring of 2n rows that
 * stays in cache (instead of a whole canvas written and then read back: on 1080p luma 8 MB). The
 * same wrapping sums as synthesize_band()'s whole-canvas order, margins folded as there (a top or
 * bottom margin row over the full width, then the left and right margins of the row); only
 * touched tiles are read back. */
SNIS_HOT static void synth_rolling(synth_job *job)
{
    synth_plane *s = job->s;
    int n = job->pw->n, half = n / 2, h = s->h, w = s->w, hb = s->hb, wb = s->wb, nr = 0;
    ptrdiff_t cs = s->cstride;
    int *runs = s->runs;
#define RING(cy) (s->ring + (ptrdiff_t)((cy) % (2 * n)) * cs) /* canvas row cy */
    for (int i = 0, y0 = 0; i < hb; i++) {
        synth_blocks(job, i, RING(i * n), RING(i * n + n));
        int last = i == hb - 1, y1 = last ? h : (i + 1) * n - half;
        for (int y = y0; y < y1; y++) {
            int32_t *row = RING(y + half);
            fold_margins(row, y < half ? RING(half - 1 - y) : NULL,
                         last && y >= h - half ? RING(half + h + (h - 1 - y)) : NULL, w, n);
            int t = y / n;
            uint8_t *touched = s->touched + (size_t)t * wb;
            if (y == y0 || y % n == 0) { /* the runs of this tile row */
                nr = 0;
                for (int j0 = 0; j0 < wb;) {
                    if (!touched[j0]) {
                        j0++;
                        continue;
                    }
                    int j1 = j0;
                    while (j1 < wb && touched[j1])
                        j1++;
                    runs[2 * nr] = j0 * n;
                    runs[2 * nr + 1] = (j1 - j0) * n;
                    nr++;
                    j0 = j1;
                }
            }
            uint8_t *d = job->dst->data + y * job->dst->stride;
            for (int r = 0; r < nr; r++)
                readback_span(row + half + runs[2 * r], d + runs[2 * r], runs[2 * r + 1]);
            if (y % n == n - 1)
                memset(touched, 0, (size_t)wb);
        }
        y0 = y1;
    }
#undef RING
}

/* Coarse latents of coarse rows [ii0, ii1) into the (unrounded) DC plane: each spreads over the
 * 4 x 4 blocks around its 2 x 2 ones, contributions beyond the picture folded back onto their
 * mirror block. The four latents of a position are summed per tap first (wrapping, so in any
 * order); positions whose 4 x 4 window lies inside the plane need no fold. */
static void coarse_rows(synth_plane *s, const plane_weights *pw, const int16_t *k, const uint8_t *f_k, int ii0,
                        int ii1)
{
    int hb = s->hb, wb = s->wb;
    for (int ii = ii0; ii < ii1; ii++)
        for (int jj = 0; jj < wb / 2; jj++) {
            int p = ii * (wb / 2) + jj;
            if (!f_k[p])
                continue;
            const int16_t *c = k + (size_t)p * LAT_K;
            if (!(c[0] | c[1] | c[2] | c[3]))
                continue;
            uint32_t tap[4][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                    tap[a][b] = (uint32_t)pw->coarse[0][a][b] * (uint32_t)c[0] +
                                (uint32_t)pw->coarse[1][a][b] * (uint32_t)c[1] +
                                (uint32_t)pw->coarse[2][a][b] * (uint32_t)c[2] +
                                (uint32_t)pw->coarse[3][a][b] * (uint32_t)c[3];
            int y0 = 2 * ii - 1, x0 = 2 * jj - 1;
            if (y0 >= 0 && y0 + 4 <= hb && x0 >= 0 && x0 + 4 <= wb) {
                for (int a = 0; a < 4; a++) {
                    int32_t *d = s->dc + (size_t)(y0 + a) * wb + x0;
                    for (int b = 0; b < 4; b++)
                        d[b] = (int32_t)((uint32_t)d[b] + tap[a][b]);
                }
                continue;
            }
            for (int a = 0; a < 4; a++) {
                int y = fold(y0 + a, hb);
                for (int b = 0; b < 4; b++) {
                    int x = fold(x0 + b, wb);
                    s->dc[y * wb + x] = (int32_t)((uint32_t)s->dc[y * wb + x] + tap[a][b]);
                }
            }
        }
}

void synthesize_add(synth_plane *s, const plane_weights *pw, const int16_t *ac, const uint8_t *f_ac,
                    int stride_ac, const int16_t *k, const uint8_t *f_k, plane_t *dst)
{
    int hb = s->hb, wb = s->wb;
    /* 1. coarse latents -> DC plane */
    memset(s->dc, 0, (size_t)hb * wb * sizeof(int32_t));
    int any = 0;
    coarse_rows(s, pw, k, f_k, 0, hb / 2);
    for (int b = 0; b < hb * wb; b++) {
        s->dc[b] = wadd(s->dc[b], 1 << (SNIS_FRAC - 1)) >> SNIS_FRAC;
        s->nz[b] = (uint8_t)(f_ac[b] || s->dc[b]);
        any += s->nz[b];
    }
    s->blocks = any;
    if (!any)
        return;
    /* 2. mark the tiles each coded block's window touches: the 3 x 3 dilation of nz (touched is
       clear between calls) */
    for (int i = 0; i < hb; i++) {
        uint8_t *t = s->touched + (size_t)i * wb;
        for (int r = i - 1; r <= i + 1; r++) {
            if (r < 0 || r >= hb)
                continue;
            const uint8_t *z = s->nz + (size_t)r * wb;
            t[0] |= z[0] | (wb > 1 ? z[1] : 0);
            for (int j = 1; j < wb - 1; j++)
                t[j] |= z[j - 1] | z[j] | z[j + 1];
            if (wb > 1)
                t[wb - 1] |= z[wb - 2] | z[wb - 1];
        }
    }
    synth_job job = {s, pw, ac, f_ac, stride_ac, dst};
    synth_rolling(&job);
}

/* Band-sequential synthesis (see internal.h). A band is 4 block rows and 2 coarse rows; coarse
 * row ii reaches block rows 2ii-1 .. 2ii+2, so after band b the block rows < 4b+3 have their
 * final DC; a block's window reaches n/2 samples beyond it, so the rows < 4n(b+1) - 3n/2 are
 * final. Every sum is the wrapping 32-bit sum synthesize_add() forms, in another order. */
int synthesize_band(synth_plane *s, const plane_weights *pw, const int16_t *ac, const uint8_t *f_ac, int stride_ac,
                    const int16_t *k, const uint8_t *f_k, int band, const plane_t *pred, plane_t *dst)
{
    int hb = s->hb, wb = s->wb, n = pw->n, half = n / 2, h = s->h, w = s->w;
    int last = 4 * (band + 1) >= hb;
    if (band == 0) {
        memset(s->dc, 0, (size_t)hb * wb * sizeof(int32_t));
        s->band_i = s->band_y = 0;
    }
    coarse_rows(s, pw, k, f_k, 2 * band, last ? hb / 2 : 2 * band + 2);
    int i1 = last ? hb : 4 * band + 3;
    ptrdiff_t cs = s->cstride;
    for (int i = s->band_i; i < i1; i++)
        for (int j = 0; j < wb; j++) {
            int b = i * wb + j;
            int32_t dc = wadd(s->dc[b], 1 << (SNIS_FRAC - 1)) >> SNIS_FRAC;
            if (!f_ac[b] && !dc)
                continue;
            int32_t *cv0 = s->canvas + (ptrdiff_t)(i * n) * cs + j * n;
            const int16_t *a = ac + (size_t)b * stride_ac;
            if (n == 8)
                synth_block(pw, a, f_ac[b], dc, cv0, cv0 + n * cs, cs, 8);
            else
                synth_block(pw, a, f_ac[b], dc, cv0, cv0 + n * cs, cs, 4);
        }
    s->band_i = i1;
    int y1 = last ? h : 4 * n * (band + 1) - 3 * half;
    const int shift = SNIS_FRAC + 2;
    const int32_t rnd = 1 << (shift - 1);
    for (int y = s->band_y; y < y1; y++) {
        int32_t *row = s->canvas + (ptrdiff_t)(y + half) * cs;
        fold_margins(row, y < half ? s->canvas + (ptrdiff_t)(half - 1 - y) * cs : NULL,
                     last && y >= h - half ? s->canvas + (ptrdiff_t)(half + h + (h - 1 - y)) * cs : NULL, w, n);
        const uint8_t *pp = pred->data + y * pred->stride;
        uint8_t *d = dst->data + y * dst->stride;
        int32_t *cv = row + half;
        for (int x = 0; x < w; x++) {
            int v = pp[x] + ((int32_t)((uint32_t)cv[x] + (uint32_t)rnd) >> shift);
            d[x] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
            cv[x] = 0;
        }
    }
    s->band_y = y1;
    return y1;
}

