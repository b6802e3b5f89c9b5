/* The few kernels that need explicit SIMD, behind one small header: SSE2 on x86-64, NEON on
 * aarch64, portable C elsewhere. Everything else is written so that the compiler vectorises it
 * (-O3), and on x86-64 the hottest loops are also built for AVX2 with runtime dispatch. */
#ifndef SNIS_SIMD_H
#define SNIS_SIMD_H

#include <stddef.h>
#include <stdint.h>

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
#endif

#endif
