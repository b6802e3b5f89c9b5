/* The few kernels that need explicit SIMD, behind one small header: SSE2 on x86-64, NEON on
 * aarch64, portable C elsewhere. Everything else is written so that the compiler vectorises it
 * (-O3), and on x86-64 the hottest loops are also built for AVX2 with runtime dispatch. */
#ifndef SNIS_SIMD_H
#define SNIS_SIMD_H

#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include "snis.h" /* SNIS_FRAC */

/* 4 bytes from any address. */
static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#if defined(__SSE2__)
#include <emmintrin.h>
#define SNIS_SIMD "sse2"
/* Sum of absolute differences of `rows` rows of 32 bytes, stepping `step` rows. */
static inline uint32_t sad32(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    __m128i acc = _mm_setzero_si128();
    for (int y = 0; y < rows; y += step) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(a + y * sa));
        __m128i a1 = _mm_loadu_si128((const __m128i *)(a + y * sa + 16));
        __m128i b0 = _mm_loadu_si128((const __m128i *)(b + y * sb));
        __m128i b1 = _mm_loadu_si128((const __m128i *)(b + y * sb + 16));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(a0, b0));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(a1, b1));
    }
    return (uint32_t)(_mm_cvtsi128_si32(acc) + _mm_cvtsi128_si32(_mm_srli_si128(acc, 8)));
}
/* The same for rows of 16 bytes. */
static inline uint32_t sad16(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    __m128i acc = _mm_setzero_si128();
    for (int y = 0; y < rows; y += step) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(a + y * sa));
        __m128i b0 = _mm_loadu_si128((const __m128i *)(b + y * sb));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(a0, b0));
    }
    return (uint32_t)(_mm_cvtsi128_si32(acc) + _mm_cvtsi128_si32(_mm_srli_si128(acc, 8)));
}
/* Sum of `rows` rows of 32 bytes (the motion search's intra check: a macroblock's mean). */
static inline uint32_t sum32(const uint8_t *a, ptrdiff_t sa, int rows)
{
    const __m128i z = _mm_setzero_si128();
    __m128i acc = z;
    for (int y = 0; y < rows; y++) {
        acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(a + y * sa)), z));
        acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(a + y * sa + 16)), z));
    }
    return (uint32_t)(_mm_cvtsi128_si32(acc) + _mm_cvtsi128_si32(_mm_srli_si128(acc, 8)));
}
/* Sum of |a - m| over the even bytes of `rows` rows of 32 (the odd ones masked to 0 on both
 * sides of the SAD, so they add nothing). */
static inline uint32_t sad_even32(const uint8_t *a, ptrdiff_t sa, int rows, uint8_t m)
{
    const __m128i even = _mm_set1_epi16(0x00FF), mv = _mm_set1_epi16(m);
    __m128i acc = _mm_setzero_si128();
    for (int y = 0; y < rows; y++) {
        __m128i a0 = _mm_and_si128(_mm_loadu_si128((const __m128i *)(a + y * sa)), even);
        __m128i a1 = _mm_and_si128(_mm_loadu_si128((const __m128i *)(a + y * sa + 16)), even);
        acc = _mm_add_epi64(acc, _mm_add_epi64(_mm_sad_epu8(a0, mv), _mm_sad_epu8(a1, mv)));
    }
    return (uint32_t)(_mm_cvtsi128_si32(acc) + _mm_cvtsi128_si32(_mm_srli_si128(acc, 8)));
}
/* A 6-tap filter k[0..5] (sum 64) over 16 samples: taps at p[j * s], j = -2..3 (s = 1:
 * horizontal, s = stride: vertical); rounded, clipped to 0..255. In 16-bit lanes (the taps keep
 * every sum inside them). */
static inline void filt6_16(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o)
{
    const __m128i z = _mm_setzero_si128();
    __m128i lo = _mm_set1_epi16(32), hi = lo;
    for (int j = 0; j < 6; j++) {
        if (!k[j])
            continue;
        __m128i v = _mm_loadu_si128((const __m128i *)(p + (j - 2) * s)), kj = _mm_set1_epi16(k[j]);
        lo = _mm_add_epi16(lo, _mm_mullo_epi16(_mm_unpacklo_epi8(v, z), kj));
        hi = _mm_add_epi16(hi, _mm_mullo_epi16(_mm_unpackhi_epi8(v, z), kj));
    }
    _mm_storeu_si128((__m128i *)o, _mm_packus_epi16(_mm_srai_epi16(lo, 6), _mm_srai_epi16(hi, 6)));
}
/* The same filter over 8 samples. */
static inline void filt6_8(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o)
{
    const __m128i z = _mm_setzero_si128();
    __m128i acc = _mm_set1_epi16(32);
    for (int j = 0; j < 6; j++) {
        if (!k[j])
            continue;
        __m128i v = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(p + (j - 2) * s)), z);
        acc = _mm_add_epi16(acc, _mm_mullo_epi16(v, _mm_set1_epi16(k[j])));
    }
    acc = _mm_srai_epi16(acc, 6);
    _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(acc, acc));
}
/* Bilinear sample of 16 positions with weights summing to 2^sh (sh <= 6):
 * (w00 a[x] + w01 a[x+1] + w10 b[x] + w11 b[x+1] + 2^(sh-1)) >> sh; every sum fits 16 bits. */
static inline __m128i bilin_half(__m128i a0, __m128i a1, __m128i b0, __m128i b1, const __m128i w[4], __m128i rnd,
                                 __m128i sh)
{
    __m128i v = _mm_add_epi16(_mm_mullo_epi16(a0, w[0]), _mm_mullo_epi16(a1, w[1]));
    v = _mm_add_epi16(v, _mm_add_epi16(_mm_mullo_epi16(b0, w[2]), _mm_mullo_epi16(b1, w[3])));
    return _mm_srl_epi16(_mm_add_epi16(v, rnd), sh);
}
static inline void bilin16(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    const __m128i z = _mm_setzero_si128(), rnd = _mm_set1_epi16((short)(1 << sh >> 1)), c = _mm_cvtsi32_si128(sh);
    const __m128i w[4] = {_mm_set1_epi16((short)w00), _mm_set1_epi16((short)w01), _mm_set1_epi16((short)w10),
                          _mm_set1_epi16((short)w11)};
    __m128i p0 = _mm_loadu_si128((const __m128i *)a), p1 = _mm_loadu_si128((const __m128i *)(a + 1));
    __m128i q0 = _mm_loadu_si128((const __m128i *)b), q1 = _mm_loadu_si128((const __m128i *)(b + 1));
    __m128i lo = bilin_half(_mm_unpacklo_epi8(p0, z), _mm_unpacklo_epi8(p1, z), _mm_unpacklo_epi8(q0, z),
                            _mm_unpacklo_epi8(q1, z), w, rnd, c);
    __m128i hi = bilin_half(_mm_unpackhi_epi8(p0, z), _mm_unpackhi_epi8(p1, z), _mm_unpackhi_epi8(q0, z),
                            _mm_unpackhi_epi8(q1, z), w, rnd, c);
    _mm_storeu_si128((__m128i *)o, _mm_packus_epi16(lo, hi));
}
/* The same over 8 positions. */
static inline void bilin8(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    const __m128i z = _mm_setzero_si128(), rnd = _mm_set1_epi16((short)(1 << sh >> 1)), c = _mm_cvtsi32_si128(sh);
    const __m128i w[4] = {_mm_set1_epi16((short)w00), _mm_set1_epi16((short)w01), _mm_set1_epi16((short)w10),
                          _mm_set1_epi16((short)w11)};
    __m128i v = bilin_half(_mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)a), z),
                           _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(a + 1)), z),
                           _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)b), z),
                           _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(b + 1)), z), w, rnd, c);
    _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(v, v));
}
/* (a[x] + b[x] + 1) >> 1 over 16 and over 8 bytes: the half-pel bilinear filter, (32 a + 32 b + 32) >> 6. */
static inline void avg16(const uint8_t *a, const uint8_t *b, uint8_t *o)
{
    _mm_storeu_si128((__m128i *)o,
                     _mm_avg_epu8(_mm_loadu_si128((const __m128i *)a), _mm_loadu_si128((const __m128i *)b)));
}
static inline void avg8(const uint8_t *a, const uint8_t *b, uint8_t *o)
{
    _mm_storel_epi64((__m128i *)o,
                     _mm_avg_epu8(_mm_loadl_epi64((const __m128i *)a), _mm_loadl_epi64((const __m128i *)b)));
}
/* a[x] - b[x] clipped to -128..127 over 16 bytes (the residual): the bytes biased by 128 are
 * a - 128 and b - 128, whose saturating signed difference is that clipped a - b. */
static inline void diff_sat16(const uint8_t *a, const uint8_t *b, int8_t *o)
{
    const __m128i bias = _mm_set1_epi8((char)0x80);
    __m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)a), bias);
    __m128i y = _mm_xor_si128(_mm_loadu_si128((const __m128i *)b), bias);
    _mm_storeu_si128((__m128i *)o, _mm_subs_epi8(x, y));
}
/* Synthesis kernels (synthesis.c) in 16-bit lanes: int16 x int16 products summed in pairs into
 * 32-bit lanes (pmaddwd), which are exact, so the wrapping 32-bit sums equal the scalar ones.
 * Weights are pair-interleaved: w2[(p * T + t) * 2 + e] = w[2p + e][t].
 *
 * Column stage of one horizontal frequency: t[y] = sum_v col[v][y] cf[v] over the N/2 pairs of
 * v, rounded by 2^-SNIS_FRAC (wrapping add, arithmetic shift) into tv[0 .. T) in int16. Returns 0
 * if some value does not fit in int16 (the caller then takes the 32-bit path). T = 2N. */
static inline int synth_col16(const int16_t *col2, const int16_t *cf, int N, int16_t *tv)
{
    const int T = 2 * N;
    __m128i acc[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
    for (int p = 0; p < N / 2; p++) {
        uint32_t pr = (uint32_t)(uint16_t)cf[2 * p] | (uint32_t)(uint16_t)cf[2 * p + 1] << 16;
        if (!pr)
            continue;
        __m128i b = _mm_set1_epi32((int32_t)pr);
        for (int q = 0; q < T / 4; q++)
            acc[q] = _mm_add_epi32(acc[q], _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(col2 + (p * T + 4 * q) * 2)), b));
    }
    const __m128i rnd = _mm_set1_epi32(1 << (SNIS_FRAC - 1));
    __m128i ok = _mm_set1_epi32(-1);
    for (int h = 0; h < T / 8; h++) {
        __m128i lo = _mm_srai_epi32(_mm_add_epi32(acc[2 * h], rnd), SNIS_FRAC);
        __m128i hi = _mm_srai_epi32(_mm_add_epi32(acc[2 * h + 1], rnd), SNIS_FRAC);
        __m128i pk = _mm_packs_epi32(lo, hi);
        ok = _mm_and_si128(ok, _mm_cmpeq_epi32(_mm_srai_epi32(_mm_unpacklo_epi16(pk, pk), 16), lo));
        ok = _mm_and_si128(ok, _mm_cmpeq_epi32(_mm_srai_epi32(_mm_unpackhi_epi16(pk, pk), 16), hi));
        _mm_storeu_si128((__m128i *)(tv + 8 * h), pk);
    }
    return _mm_movemask_epi8(ok) == 0xFFFF;
}
/* Row stage: cv[y][x] += sum_u row[u][x] tv[u][y] over the pairs of u in pairs[0 .. np) (tv:
 * N rows of T, a row of a pair that is not live holds zeros), x, y < T, wrapping; rows y >= N
 * of the window are at cvb + (y - N) cs (cvb = cv + N cs in a whole canvas, else a ring's). */
static inline void synth_row16(int32_t *cv, int32_t *cvb, ptrdiff_t cs, const int16_t *row2,
                               const int16_t (*tv)[16], const int *pairs, int np, int N)
{
    const int T = 2 * N;
    uint32_t tp[4][16];
    for (int i = 0; i < np; i++) {
        int p = pairs[i];
        for (int h = 0; h < T / 8; h++) {
            __m128i a = _mm_loadu_si128((const __m128i *)(tv[2 * p] + 8 * h));
            __m128i b = _mm_loadu_si128((const __m128i *)(tv[2 * p + 1] + 8 * h));
            _mm_storeu_si128((__m128i *)(tp[i] + 8 * h), _mm_unpacklo_epi16(a, b));
            _mm_storeu_si128((__m128i *)(tp[i] + 8 * h + 4), _mm_unpackhi_epi16(a, b));
        }
    }
    for (int y = 0; y < T; y++) {
        __m128i acc[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
        for (int i = 0; i < np; i++) {
            __m128i b = _mm_set1_epi32((int32_t)tp[i][y]);
            const int16_t *w = row2 + pairs[i] * T * 2;
            for (int q = 0; q < T / 4; q++)
                acc[q] = _mm_add_epi32(acc[q], _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(w + 8 * q)), b));
        }
        int32_t *r = y < N ? cv + y * cs : cvb + (y - N) * cs;
        for (int q = 0; q < T / 4; q++)
            _mm_storeu_si128((__m128i *)(r + 4 * q), _mm_add_epi32(_mm_loadu_si128((const __m128i *)(r + 4 * q)), acc[q]));
    }
}
/* Synthesis read-back of 8 samples: d = clip(d + ((cv + 2^(F+1)) >> (F+2))) with F = SNIS_FRAC (a
 * wrapping add, an arithmetic shift), cv cleared. Saturating to int16, then a saturating add
 * and the clip to 0..255: what saturates lies beyond 0..255 either way, so the result is exact. */
static inline void readback8(int32_t *cv, uint8_t *d)
{
    const __m128i rnd = _mm_set1_epi32(1 << (SNIS_FRAC + 1)), z = _mm_setzero_si128();
    __m128i a = _mm_srai_epi32(_mm_add_epi32(_mm_loadu_si128((const __m128i *)cv), rnd), SNIS_FRAC + 2);
    __m128i b = _mm_srai_epi32(_mm_add_epi32(_mm_loadu_si128((const __m128i *)(cv + 4)), rnd), SNIS_FRAC + 2);
    __m128i p = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)d), z);
    __m128i v = _mm_adds_epi16(p, _mm_packs_epi32(a, b));
    _mm_storel_epi64((__m128i *)d, _mm_packus_epi16(v, v));
    _mm_storeu_si128((__m128i *)cv, z);
    _mm_storeu_si128((__m128i *)(cv + 4), z);
}
/* One row of the overlapped luma prediction (motion.c): 8 samples whose left and right halves
 * take the horizontal (h), vertical (v) and diagonal (d) neighbours' samples from two different
 * rows each ([0]: columns 0-3, [1]: 4-7). a1 = (o wx + h (64 - wx) + 32) >> 6 with the column
 * weights wx, a2 the same of v and d, out = (a1 wy + a2 (64 - wy) + 32) >> 6; wy = 64 gives a1
 * and reads no v, d. Every sum fits a 16-bit lane. o is overwritten. */
static inline void obmc_row8(uint8_t *o, const uint8_t *const h[2], const uint8_t *const v[2],
                             const uint8_t *const d[2], const uint16_t *wx, int wy)
{
    const __m128i z = _mm_setzero_si128(), r = _mm_set1_epi16(32);
    __m128i w = _mm_loadu_si128((const __m128i *)wx), w1 = _mm_sub_epi16(_mm_set1_epi16(64), w);
#define SNIS_HALVES(p) _mm_unpacklo_epi8(_mm_unpacklo_epi32(_mm_cvtsi32_si128(load_u32(p[0])), \
                                                              _mm_cvtsi32_si128(load_u32(p[1] + 4))), z)
/* (a b + c e + 32) >> 6 in 16-bit lanes */
#define SNIS_MIX(a, b, c, e) \
    _mm_srli_epi16(_mm_add_epi16(_mm_add_epi16(_mm_mullo_epi16(a, b), _mm_mullo_epi16(c, e)), r), 6)
    __m128i a1 = SNIS_MIX(_mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)o), z), w, SNIS_HALVES(h), w1);
    if (wy != 64) {
        __m128i a2 = SNIS_MIX(SNIS_HALVES(v), w, SNIS_HALVES(d), w1);
        a1 = SNIS_MIX(a1, _mm_set1_epi16((short)wy), a2, _mm_set1_epi16((short)(64 - wy)));
    }
#undef SNIS_MIX
#undef SNIS_HALVES
    _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(a1, a1));
}
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#define SNIS_SIMD "neon"
static inline uint32_t sad32(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    uint16x8_t acc0 = vdupq_n_u16(0), acc1 = vdupq_n_u16(0);
    for (int y = 0; y < rows; y += step) {
        uint8x16_t a0 = vld1q_u8(a + y * sa), a1 = vld1q_u8(a + y * sa + 16);
        uint8x16_t b0 = vld1q_u8(b + y * sb), b1 = vld1q_u8(b + y * sb + 16);
        acc0 = vpadalq_u8(acc0, vabdq_u8(a0, b0));
        acc1 = vpadalq_u8(acc1, vabdq_u8(a1, b1));
    }
    uint32x4_t s = vpaddlq_u16(acc0);
    s = vpadalq_u16(s, acc1);
    uint64x2_t t = vpaddlq_u32(s);
    return (uint32_t)(vgetq_lane_u64(t, 0) + vgetq_lane_u64(t, 1));
}
static inline uint32_t sad16(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    uint16x8_t acc = vdupq_n_u16(0);
    for (int y = 0; y < rows; y += step)
        acc = vpadalq_u8(acc, vabdq_u8(vld1q_u8(a + y * sa), vld1q_u8(b + y * sb)));
    uint64x2_t t = vpaddlq_u32(vpaddlq_u16(acc));
    return (uint32_t)(vgetq_lane_u64(t, 0) + vgetq_lane_u64(t, 1));
}
static inline void filt6_16(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o)
{
    int16x8_t lo = vdupq_n_s16(0), hi = vdupq_n_s16(0);
    for (int j = 0; j < 6; j++) {
        if (!k[j])
            continue;
        uint8x16_t v = vld1q_u8(p + (j - 2) * s);
        lo = vmlaq_n_s16(lo, vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(v))), k[j]);
        hi = vmlaq_n_s16(hi, vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(v))), k[j]);
    }
    vst1q_u8(o, vcombine_u8(vqrshrun_n_s16(lo, 6), vqrshrun_n_s16(hi, 6)));
}
static inline void filt6_8(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o)
{
    int16x8_t acc = vdupq_n_s16(0);
    for (int j = 0; j < 6; j++)
        if (k[j])
            acc = vmlaq_n_s16(acc, vreinterpretq_s16_u16(vmovl_u8(vld1_u8(p + (j - 2) * s))), k[j]);
    vst1_u8(o, vqrshrun_n_s16(acc, 6));
}
static inline uint32_t sum32(const uint8_t *a, ptrdiff_t sa, int rows)
{
    uint32x4_t acc = vdupq_n_u32(0);
    for (int y = 0; y < rows; y++)
        acc = vpadalq_u16(acc, vaddq_u16(vpaddlq_u8(vld1q_u8(a + y * sa)), vpaddlq_u8(vld1q_u8(a + y * sa + 16))));
    return vaddvq_u32(acc);
}
static inline uint32_t sad_even32(const uint8_t *a, ptrdiff_t sa, int rows, uint8_t m)
{
    const uint8x16_t mv = vdupq_n_u8(m);
    uint32x4_t acc = vdupq_n_u32(0);
    for (int y = 0; y < rows; y++) /* vld2 splits even and odd bytes */
        acc = vpadalq_u16(acc, vpaddlq_u8(vabdq_u8(vld2q_u8(a + y * sa).val[0], mv)));
    return vaddvq_u32(acc);
}
static inline uint16x8_t bilin_lanes(uint8x8_t a0, uint8x8_t a1, uint8x8_t b0, uint8x8_t b1, int w00, int w01,
                                      int w10, int w11)
{
    uint16x8_t v = vmull_u8(a0, vdup_n_u8((uint8_t)w00));
    v = vmlal_u8(v, a1, vdup_n_u8((uint8_t)w01));
    v = vmlal_u8(v, b0, vdup_n_u8((uint8_t)w10));
    return vmlal_u8(v, b1, vdup_n_u8((uint8_t)w11));
}
static inline void bilin16(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    uint8x16_t p0 = vld1q_u8(a), p1 = vld1q_u8(a + 1), q0 = vld1q_u8(b), q1 = vld1q_u8(b + 1);
    int16x8_t n = vdupq_n_s16((int16_t)-sh); /* a rounding shift right by sh */
    uint16x8_t l = bilin_lanes(vget_low_u8(p0), vget_low_u8(p1), vget_low_u8(q0), vget_low_u8(q1), w00, w01, w10, w11);
    uint16x8_t h =
        bilin_lanes(vget_high_u8(p0), vget_high_u8(p1), vget_high_u8(q0), vget_high_u8(q1), w00, w01, w10, w11);
    vst1q_u8(o, vcombine_u8(vmovn_u16(vrshlq_u16(l, n)), vmovn_u16(vrshlq_u16(h, n))));
}
static inline void bilin8(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    uint16x8_t v = bilin_lanes(vld1_u8(a), vld1_u8(a + 1), vld1_u8(b), vld1_u8(b + 1), w00, w01, w10, w11);
    vst1_u8(o, vmovn_u16(vrshlq_u16(v, vdupq_n_s16((int16_t)-sh))));
}
static inline void avg16(const uint8_t *a, const uint8_t *b, uint8_t *o) { vst1q_u8(o, vrhaddq_u8(vld1q_u8(a), vld1q_u8(b))); }
static inline void avg8(const uint8_t *a, const uint8_t *b, uint8_t *o) { vst1_u8(o, vrhadd_u8(vld1_u8(a), vld1_u8(b))); }
static inline void diff_sat16(const uint8_t *a, const uint8_t *b, int8_t *o)
{
    const uint8x16_t bias = vdupq_n_u8(0x80);
    vst1q_s8(o, vqsubq_s8(vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a), bias)),
                          vreinterpretq_s8_u8(veorq_u8(vld1q_u8(b), bias))));
}
/* NEON: the same 16-bit products and wrapping 32-bit sums; vld2 splits the pair-interleaved
 * weights into the even and odd member of each pair, vmlal multiplies by one lane. */
static inline int synth_col16(const int16_t *col2, const int16_t *cf, int N, int16_t *tv)
{
    const int T = 2 * N;
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    for (int p = 0; p < N / 2; p++) {
        int16_t a = cf[2 * p], b = cf[2 * p + 1];
        if (!a && !b)
            continue;
        for (int h = 0; h < T / 8; h++) {
            int16x8x2_t w = vld2q_s16(col2 + (p * T + 8 * h) * 2);
            acc[2 * h] = vmlal_n_s16(acc[2 * h], vget_low_s16(w.val[0]), a);
            acc[2 * h] = vmlal_n_s16(acc[2 * h], vget_low_s16(w.val[1]), b);
            acc[2 * h + 1] = vmlal_high_n_s16(acc[2 * h + 1], w.val[0], a);
            acc[2 * h + 1] = vmlal_high_n_s16(acc[2 * h + 1], w.val[1], b);
        }
    }
    const int32x4_t rnd = vdupq_n_s32(1 << (SNIS_FRAC - 1));
    uint32x4_t ok = vdupq_n_u32(0xFFFFFFFFu);
    for (int h = 0; h < T / 8; h++) {
        /* an explicit wrapping add: vrshr would round without wrapping */
        int32x4_t lo = vshrq_n_s32(vaddq_s32(acc[2 * h], rnd), SNIS_FRAC);
        int32x4_t hi = vshrq_n_s32(vaddq_s32(acc[2 * h + 1], rnd), SNIS_FRAC);
        int16x4_t nl = vqmovn_s32(lo), nh = vqmovn_s32(hi);
        ok = vandq_u32(ok, vandq_u32(vceqq_s32(vmovl_s16(nl), lo), vceqq_s32(vmovl_s16(nh), hi)));
        vst1q_s16(tv + 8 * h, vcombine_s16(nl, nh));
    }
    return vminvq_u32(ok) == 0xFFFFFFFFu;
}
static inline void synth_row16(int32_t *cv, int32_t *cvb, ptrdiff_t cs, const int16_t *row2,
                               const int16_t (*tv)[16], const int *pairs, int np, int N)
{
    const int T = 2 * N;
    for (int y = 0; y < T; y++) {
        int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
        for (int i = 0; i < np; i++) {
            int p = pairs[i];
            int16x4_t t = vset_lane_s16(tv[2 * p + 1][y], vdup_n_s16(tv[2 * p][y]), 1);
            const int16_t *w = row2 + p * T * 2;
            for (int h = 0; h < T / 8; h++) {
                int16x8x2_t k = vld2q_s16(w + 16 * h);
                acc[2 * h] = vmlal_lane_s16(acc[2 * h], vget_low_s16(k.val[0]), t, 0);
                acc[2 * h] = vmlal_lane_s16(acc[2 * h], vget_low_s16(k.val[1]), t, 1);
                acc[2 * h + 1] = vmlal_high_lane_s16(acc[2 * h + 1], k.val[0], t, 0);
                acc[2 * h + 1] = vmlal_high_lane_s16(acc[2 * h + 1], k.val[1], t, 1);
            }
        }
        int32_t *r = y < N ? cv + y * cs : cvb + (y - N) * cs;
        for (int q = 0; q < T / 4; q++)
            vst1q_s32(r + 4 * q, vaddq_s32(vld1q_s32(r + 4 * q), acc[q]));
    }
}
static inline void readback8(int32_t *cv, uint8_t *d)
{
    const int32x4_t rnd = vdupq_n_s32(1 << (SNIS_FRAC + 1));
    int32x4_t a = vshrq_n_s32(vaddq_s32(vld1q_s32(cv), rnd), SNIS_FRAC + 2);
    int32x4_t b = vshrq_n_s32(vaddq_s32(vld1q_s32(cv + 4), rnd), SNIS_FRAC + 2);
    int16x8_t p = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(d)));
    vst1_u8(d, vqmovun_s16(vqaddq_s16(p, vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)))));
    vst1q_s32(cv, vdupq_n_s32(0));
    vst1q_s32(cv + 4, vdupq_n_s32(0));
}
static inline void obmc_row8(uint8_t *o, const uint8_t *const h[2], const uint8_t *const v[2],
                             const uint8_t *const d[2], const uint16_t *wx, int wy)
{
    uint16x8_t w = vld1q_u16(wx), w1 = vsubq_u16(vdupq_n_u16(64), w);
#define SNIS_HALVES(p) vmovl_u8(vreinterpret_u8_u32(vset_lane_u32(load_u32(p[1] + 4), \
                                                    vdup_n_u32(load_u32(p[0])), 1)))
    uint16x8_t a1 = vrshrq_n_u16(vmlaq_u16(vmulq_u16(vmovl_u8(vld1_u8(o)), w), SNIS_HALVES(h), w1), 6);
    if (wy != 64) {
        uint16x8_t a2 = vrshrq_n_u16(vmlaq_u16(vmulq_u16(SNIS_HALVES(v), w), SNIS_HALVES(d), w1), 6);
        a1 = vrshrq_n_u16(vmlaq_n_u16(vmulq_n_u16(a1, (uint16_t)wy), a2, (uint16_t)(64 - wy)), 6);
    }
#undef SNIS_HALVES
    vst1_u8(o, vmovn_u16(a1));
}
#else
#define SNIS_SIMD "c"
static inline uint32_t sadn(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step, int n)
{
    uint32_t s = 0;
    for (int y = 0; y < rows; y += step)
        for (int x = 0; x < n; x++) {
            int d = a[y * sa + x] - b[y * sb + x];
            s += (uint32_t)(d < 0 ? -d : d);
        }
    return s;
}
static inline uint32_t sad32(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    return sadn(a, sa, b, sb, rows, step, 32);
}
static inline uint32_t sad16(const uint8_t *a, ptrdiff_t sa, const uint8_t *b, ptrdiff_t sb, int rows, int step)
{
    return sadn(a, sa, b, sb, rows, step, 16);
}
static inline void filt6_n(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o, int n)
{
    for (int x = 0; x < n; x++) {
        int v = 32;
        for (int j = 0; j < 6; j++)
            if (k[j]) /* as the SIMD kernels: a zero tap reads nothing */
                v += k[j] * p[x + (j - 2) * s];
        v >>= 6;
        o[x] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
}
static inline void filt6_16(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o) { filt6_n(p, s, k, o, 16); }
static inline void filt6_8(const uint8_t *p, ptrdiff_t s, const int16_t *k, uint8_t *o) { filt6_n(p, s, k, o, 8); }
static inline uint32_t sum32(const uint8_t *a, ptrdiff_t sa, int rows)
{
    uint32_t s = 0;
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < 32; x++)
            s += a[y * sa + x];
    return s;
}
static inline uint32_t sad_even32(const uint8_t *a, ptrdiff_t sa, int rows, uint8_t m)
{
    uint32_t s = 0;
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < 32; x += 2)
            s += (uint32_t)(a[y * sa + x] > m ? a[y * sa + x] - m : m - a[y * sa + x]);
    return s;
}
static inline void bilin_n(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, int n,
                           uint8_t *o)
{
    for (int x = 0; x < n; x++)
        o[x] = (uint8_t)((w00 * a[x] + w01 * a[x + 1] + w10 * b[x] + w11 * b[x + 1] + (1 << sh >> 1)) >> sh);
}
static inline void bilin16(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    bilin_n(a, b, w00, w01, w10, w11, sh, 16, o);
}
static inline void bilin8(const uint8_t *a, const uint8_t *b, int w00, int w01, int w10, int w11, int sh, uint8_t *o)
{
    bilin_n(a, b, w00, w01, w10, w11, sh, 8, o);
}
static inline void avg_n(const uint8_t *a, const uint8_t *b, int n, uint8_t *o)
{
    for (int x = 0; x < n; x++)
        o[x] = (uint8_t)((a[x] + b[x] + 1) >> 1);
}
static inline void avg16(const uint8_t *a, const uint8_t *b, uint8_t *o) { avg_n(a, b, 16, o); }
static inline void avg8(const uint8_t *a, const uint8_t *b, uint8_t *o) { avg_n(a, b, 8, o); }
static inline void diff_sat16(const uint8_t *a, const uint8_t *b, int8_t *o)
{
    for (int x = 0; x < 16; x++) {
        int d = a[x] - b[x];
        o[x] = (int8_t)(d < -128 ? -128 : (d > 127 ? 127 : d));
    }
}
/* Portable C: the same 16-bit products and wrapping 32-bit sums. */
static inline int synth_col16(const int16_t *col2, const int16_t *cf, int N, int16_t *tv)
{
    const int T = 2 * N;
    uint32_t acc[16] = {0};
    for (int p = 0; p < N / 2; p++) {
        int a = cf[2 * p], b = cf[2 * p + 1];
        if (!a && !b)
            continue;
        for (int t = 0; t < T; t++)
            acc[t] += (uint32_t)(col2[(p * T + t) * 2] * a + col2[(p * T + t) * 2 + 1] * b);
    }
    int ok = 1;
    for (int t = 0; t < T; t++) {
        int32_t v = (int32_t)(acc[t] + (1u << (SNIS_FRAC - 1))) >> SNIS_FRAC;
        ok &= v >= -32768 && v <= 32767;
        tv[t] = (int16_t)v;
    }
    return ok;
}
static inline void synth_row16(int32_t *cv, int32_t *cvb, ptrdiff_t cs, const int16_t *row2,
                               const int16_t (*tv)[16], const int *pairs, int np, int N)
{
    const int T = 2 * N;
    for (int y = 0; y < T; y++) {
        uint32_t acc[16] = {0};
        for (int i = 0; i < np; i++) {
            int p = pairs[i], a = tv[2 * p][y], b = tv[2 * p + 1][y];
            const int16_t *w = row2 + p * T * 2;
            for (int x = 0; x < T; x++)
                acc[x] += (uint32_t)(w[2 * x] * a + w[2 * x + 1] * b);
        }
        int32_t *r = y < N ? cv + y * cs : cvb + (y - N) * cs;
        for (int x = 0; x < T; x++)
            r[x] = (int32_t)((uint32_t)r[x] + acc[x]);
    }
}
static inline void readback8(int32_t *cv, uint8_t *d)
{
    for (int x = 0; x < 8; x++) {
        int v = d[x] + ((int32_t)((uint32_t)cv[x] + (1u << (SNIS_FRAC + 1))) >> (SNIS_FRAC + 2));
        d[x] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        cv[x] = 0;
    }
}
static inline void obmc_row8(uint8_t *o, const uint8_t *const h[2], const uint8_t *const v[2],
                             const uint8_t *const d[2], const uint16_t *wx, int wy)
{
    for (int x = 0; x < 8; x++) {
        int k = x >> 2, a1 = (o[x] * wx[x] + h[k][x] * (64 - wx[x]) + 32) >> 6;
        if (wy != 64) {
            int a2 = (v[k][x] * wx[x] + d[k][x] * (64 - wx[x]) + 32) >> 6;
            a1 = (a1 * wy + a2 * (64 - wy) + 32) >> 6;
        }
        o[x] = (uint8_t)a1;
    }
}
#endif

#endif
