/* Quantiser steps and dequantisation, shared by encoder and decoder.
 *
 * Steps are integers in 1/16 pixel: the top tier's step is 10 * 2^(qp/6) (0.625 * 2^(qp/6)
 * pixels, H.264-like), each tier below it coarser by 2^(tier_step_log2/8). Powers of two are
 * taken from a table of 2^(i/48), so every platform computes the same step. Within a tier the
 * step of a channel grows with its frequency u+v (the eye and VMAF forgive the high ones).
 * Tiers are embedded: tier k quantises what tiers < k left of the same latents, and the
 * picture of k tiers is the synthesis of the sum of their dequantised values.
 */
#include "internal.h"

/* round(2^16 * 2^(i/48)), i = 0..47 */
static const uint32_t POW2_48[48] = {
    65536, 66489, 67456, 68438, 69433, 70443, 71468, 72507, 73562, 74632, 75717, 76819,
    77936, 79069, 80220, 81386, 82570, 83771, 84990, 86226, 87480, 88752, 90043, 91353,
    92682, 94030, 95398, 96785, 98193, 99621, 101070, 102540, 104032, 105545, 107080, 108638,
    110218, 111821, 113448, 115098, 116772, 118470, 120194, 121942, 123715, 125515, 127341, 129193};

int snis_step16(int qp, int tier, int tiers, int tier_step_log2)
{
    int e = 8 * qp + 6 * tier_step_log2 * (tiers - 1 - tier); /* in 1/48 octave */
    if (e < 0)
        e = 0;
    uint64_t v = (uint64_t)10 * POW2_48[e % 48];
    int sh = e / 48;
    if (sh >= 16 + 20) /* far beyond the cap (v >= 2^19): shifting would wrap */
        return 1 << 20;
    v = sh >= 16 ? v << (sh - 16) : (v + ((uint64_t)1 << (15 - sh))) >> (16 - sh);
    if (v > 1u << 20)
        v = 1u << 20;
    return v < 1 ? 1 : (int)v;
}

int snis_frame_ratio(const snis_params *p, int frame_type)
{
    return frame_type == SNIS_FRAME_P || frame_type == SNIS_FRAME_KC ? p->tier_step_log2 : p->key_step_log2;
}

/* Per-channel steps of an n x n block (channel u*n+v-1): step * (1 + (u+v) / (2(n-1))). */
void channel_steps(int step16, int n, int32_t *steps)
{
    int d = 2 * (n - 1);
    for (int c = 0; c < n * n - 1; c++) {
        int u = (c + 1) / n, v = (c + 1) % n;
        int64_t s = ((int64_t)step16 * (d + u + v) + d / 2) / d;
        steps[c] = s < 1 ? 1 : (int32_t)s;
    }
}

static inline int16_t clamp_sum(int32_t v) { return (int16_t)clampi(v, -DEQ_LIMIT, DEQ_LIMIT); }

/* The channel steps of one block kind at every qp offset a frame may use; narrow: every step
 * below 2^15, with int16 copies in steps16 (the 16-bit path of deq_block). */
typedef struct {
    const int32_t *steps[AQ_N];
    int16_t steps16[AQ_N][64];
    int narrow;
} kind_steps;

static void kind_init(kind_steps *ks)
{
    memset(ks->steps, 0, sizeof(ks->steps));
    ks->narrow = 1;
}

static void kind_set(kind_steps *ks, int a, const int32_t *steps, int nch)
{
    ks->steps[a] = steps;
    memset(ks->steps16[a], 0, sizeof(ks->steps16[a])); /* the stored lanes beyond nch: 0 */
    for (int c = 0; c < nch; c++) {
        ks->narrow &= steps[c] < 32768;
        ks->steps16[a][c] = (int16_t)steps[c];
    }
}

/* One block's levels x dequantised into its sum s. With steps below 2^15 the product of a level
 * and a step is exact in 32 bits (a widening 16-bit multiply the compiler vectorises), and
 * truncation toward zero is an add of 3 to negative values before the shift: the same values
 * as dequant1(), which the other path calls. The 16-bit path runs over all `lanes` stored
 * values of the block (a whole number of vectors; the unused lane of a block gets a value that
 * nothing reads), lanes a compile-time constant in each instance. */
static inline __attribute__((always_inline)) void deq_block(int16_t *s, const int16_t *x, const int32_t *steps,
                                                            const int16_t *st16, int nch, int fresh, int narrow,
                                                            const int lanes)
{
    if (!narrow) {
        for (int c = 0; c < nch; c++) {
            int32_t v = dequant1(x[c], steps[c]);
            s[c] = clamp_sum(fresh ? v : s[c] + v);
        }
        return;
    }
    if (fresh) {
        for (int c = 0; c < lanes; c++)
            s[c] = deq_sum(0, (int32_t)x[c] * st16[c], 1);
    } else {
        for (int c = 0; c < lanes; c++)
            s[c] = deq_sum(s[c], (int32_t)x[c] * st16[c], 0);
    }
}

/* Blocks of one kind; block (i, j) belongs to macroblock (i / per_mb, j / per_mb). */
SNIS_HOT static void deq_plane(int16_t *sum, uint8_t *fsum, const int16_t *q, const uint8_t *fq, int hb, int wb,
                               int per_mb, const motion_t *m, int stride, int nch, const kind_steps *ks, int first)
{
    if (first)
        memset(fsum, 0, (size_t)hb * wb);
    for (int i = 0; i < hb; i++) {
        const int8_t *drow = m->dqp + (size_t)(i / per_mb) * m->mbw;
        for (int j = 0; j < wb; j++) {
            size_t b = (size_t)i * wb + j;
            if (!fq[b])
                continue;
            int a = m->aq ? clampi(drow[j / per_mb], -AQ_MAX, AQ_MAX) + AQ_MAX : AQ_MAX;
            int16_t *sb = sum + b * (size_t)stride;
            const int16_t *qb = q + b * (size_t)stride;
            if (stride == LAT_Y)
                deq_block(sb, qb, ks->steps[a], ks->steps16[a], nch, !fsum[b], ks->narrow, LAT_Y);
            else if (stride == LAT_C)
                deq_block(sb, qb, ks->steps[a], ks->steps16[a], nch, !fsum[b], ks->narrow, LAT_C);
            else
                deq_block(sb, qb, ks->steps[a], ks->steps16[a], nch, !fsum[b], ks->narrow, LAT_K);
            fsum[b] = 1;
        }
    }
}

void dequantize_add_plane(latents_t *sum, const latents_t *q, const motion_t *m, int qp, int tier, int tiers,
                          int ratio, int first, int plane)
{
    /* steps of the offsets the frame uses: all of them with adaptive quantisation, else offset 0 */
    int32_t sa[AQ_N][63], sk[AQ_N][4];
    int n = plane ? 4 : 8, nch = n * n - 1;
    kind_steps ka, kk;
    kind_init(&ka);
    kind_init(&kk);
    for (int d = -AQ_MAX; d <= AQ_MAX; d++) {
        int a = d + AQ_MAX;
        if (d && !m->aq)
            continue;
        int step16 = snis_step16(mb_qp(qp, d), tier, tiers, ratio);
        channel_steps(step16, n, sa[a]);
        for (int c = 0; c < 4; c++)
            sk[a][c] = step16;
        kind_set(&ka, a, sa[a], nch);
        kind_set(&kk, a, sk[a], 4);
    }
    int hb = q->hb, wb = q->wb;
    if (!plane) {
        deq_plane(sum->y_ac, sum->f_y_ac, q->y_ac, q->f_y_ac, hb, wb, 4, m, LAT_Y, 63, &ka, first);
        deq_plane(sum->y_k, sum->f_y_k, q->y_k, q->f_y_k, hb / 2, wb / 2, 2, m, LAT_K, 4, &kk, first);
    } else {
        int p = plane - 1;
        deq_plane(sum->c_ac[p], sum->f_c_ac[p], q->c_ac[p], q->f_c_ac[p], hb, wb, 4, m, LAT_C, 15, &ka, first);
        deq_plane(sum->c_k[p], sum->f_c_k[p], q->c_k[p], q->f_c_k[p], hb / 2, wb / 2, 2, m, LAT_K, 4, &kk, first);
    }
}

void dequantize_add(latents_t *sum, const latents_t *q, const motion_t *m, int qp, int tier, int tiers, int ratio,
                    int first)
{
    for (int plane = 0; plane < 3; plane++)
        dequantize_add_plane(sum, q, m, qp, tier, tiers, ratio, first, plane);
}

void dequantize_mb_row(latents_t *sum, const latents_t *q, const motion_t *m, int step16, int mby)
{
    int32_t sy[63], sc[15], sk[4] = {step16, step16, step16, step16};
    channel_steps(step16, 8, sy);
    channel_steps(step16, 4, sc);
    kind_steps ky, kc, kk;
    kind_init(&ky);
    kind_init(&kc);
    kind_init(&kk);
    kind_set(&ky, AQ_MAX, sy, 63);
    kind_set(&kc, AQ_MAX, sc, 15);
    kind_set(&kk, AQ_MAX, sk, 4);
    size_t b0 = (size_t)mby * 4 * q->wb, k0 = (size_t)mby * 2 * (q->wb / 2);
    int wb = q->wb;
    deq_plane(sum->y_ac + b0 * LAT_Y, sum->f_y_ac + b0, q->y_ac + b0 * LAT_Y, q->f_y_ac + b0, 4, wb, 4, m, LAT_Y, 63,
              &ky, 1);
    deq_plane(sum->y_k + k0 * LAT_K, sum->f_y_k + k0, q->y_k + k0 * LAT_K, q->f_y_k + k0, 2, wb / 2, 2, m, LAT_K, 4,
              &kk, 1);
    for (int p = 0; p < 2; p++) {
        deq_plane(sum->c_ac[p] + b0 * LAT_C, sum->f_c_ac[p] + b0, q->c_ac[p] + b0 * LAT_C, q->f_c_ac[p] + b0, 4, wb, 4,
                  m, LAT_C, 15, &kc, 1);
        deq_plane(sum->c_k[p] + k0 * LAT_K, sum->f_c_k[p] + k0, q->c_k[p] + k0 * LAT_K, q->f_c_k[p] + k0, 2, wb / 2, 2,
                  m, LAT_K, 4, &kk, 1);
    }
}
