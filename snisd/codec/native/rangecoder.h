/* Adaptive binary range coder (LZMA-style carry handling), one code path for both directions:
 * every rc_* call takes the value to encode and returns it when encoding, or ignores it and
 * returns the decoded value when decoding, so the syntax in entropy.c is written once.
 * A probability is a pair of 15-bit estimates of a 0 bit adapting at rates 1/16 and 1/128;
 * their mean is used. A decoder reads zeros past the end of its input and counts them. */
#ifndef SNIS_RANGECODER_H
#define SNIS_RANGECODER_H

#include <stdlib.h>

#include "internal.h"

#define PROB_BITS 15
#define PROB_ONE (1 << PROB_BITS)
#define RC_TOP (1u << 24)

static inline void rc_put(rangecoder *rc, uint8_t byte)
{
    if (rc->pos >= rc->cap) {
        size_t cap = rc->cap * 2;
        uint8_t *nb = (uint8_t *)realloc(rc->buf, cap);
        if (!nb) {
            rc->error = SNIS_E_NOMEM;
            return;
        }
        rc->buf = nb;
        rc->cap = cap;
    }
    rc->buf[rc->pos++] = byte;
}

static inline void rc_shift_low(rangecoder *rc)
{
    if (rc->low < 0xFF000000u || rc->low > 0xFFFFFFFFu) {
        uint8_t carry = (uint8_t)(rc->low >> 32);
        uint8_t temp = rc->cache;
        do {
            rc_put(rc, (uint8_t)(temp + carry));
            temp = 0xFF;
        } while (--rc->cache_size != 0);
        rc->cache = (uint8_t)(rc->low >> 24);
    }
    rc->cache_size++;
    rc->low = (rc->low & 0x00FFFFFFu) << 8;
}

static inline uint32_t rc_next_byte(rangecoder *rc)
{
    if (rc->pos < rc->in_len)
        return rc->in[rc->pos++];
    rc->overrun++;
    return 0;
}

/* Encoder: the information written so far in 1/256 bit, up to a constant (the bytes out and
 * pending plus what the range has narrowed): the difference of two calls is the cost of the
 * symbols between them, to within a tenth of a bit (the fraction of log2 is taken linearly). */
static inline uint64_t rc_tell_q8(const rangecoder *rc)
{
    int lz = __builtin_clz(rc->range);           /* range >= 2^24 after every symbol: lz <= 7 */
    uint32_t frac = (rc->range << lz) >> 23 & 0xFF; /* log2's fraction, linear between powers */
    return ((uint64_t)(rc->pos + rc->cache_size) * 8 + (uint64_t)lz) * 256 - frac;
}

static inline int rc_bit(rangecoder *rc, uint16_t *p, int bit)
{
    uint32_t prob = ((uint32_t)p[0] + p[1]) >> 1;
    uint32_t bound = (rc->range >> PROB_BITS) * prob;
    if (!rc->decoding) {
        if (!bit) {
            rc->range = bound;
        } else {
            rc->low += bound;
            rc->range -= bound;
        }
        while (rc->range < RC_TOP) {
            rc->range <<= 8;
            rc_shift_low(rc);
        }
    } else {
        if (rc->code < bound) {
            rc->range = bound;
            bit = 0;
        } else {
            rc->code -= bound;
            rc->range -= bound;
            bit = 1;
        }
        while (rc->range < RC_TOP) {
            rc->range <<= 8;
            rc->code = (rc->code << 8) | rc_next_byte(rc);
        }
    }
    if (!bit) {
        p[0] = (uint16_t)(p[0] + ((PROB_ONE - p[0]) >> 4));
        p[1] = (uint16_t)(p[1] + ((PROB_ONE - p[1]) >> 7));
    } else {
        p[0] = (uint16_t)(p[0] - (p[0] >> 4));
        p[1] = (uint16_t)(p[1] - (p[1] >> 7));
    }
    return bit;
}

static inline int rc_bypass(rangecoder *rc, int bit)
{
    rc->range >>= 1;
    if (!rc->decoding) {
        if (bit)
            rc->low += rc->range;
        while (rc->range < RC_TOP) {
            rc->range <<= 8;
            rc_shift_low(rc);
        }
    } else {
        if (rc->code >= rc->range) {
            rc->code -= rc->range;
            bit = 1;
        } else {
            bit = 0;
        }
        while (rc->range < RC_TOP) {
            rc->range <<= 8;
            rc->code = (rc->code << 8) | rc_next_byte(rc);
        }
    }
    return bit;
}

static inline uint32_t rc_bypass_bits(rangecoder *rc, uint32_t value, int nbits)
{
    uint32_t out = 0;
    for (int i = nbits - 1; i >= 0; i--)
        out = (out << 1) | (uint32_t)rc_bypass(rc, (int)((value >> i) & 1));
    return out;
}

/* Non-negative integer: adaptive unary prefix (nctx contexts, the last reused), bypass suffix.
 * The decoder caps the prefix at 24, so corrupt input cannot loop for long. */
static inline uint32_t rc_expgolomb(rangecoder *rc, uint16_t (*ctx)[2], int nctx, uint32_t value)
{
    int k = 0;
    if (!rc->decoding) {
        while (k < 24 && value >= (1u << (k + 1)) - 1) {
            rc_bit(rc, ctx[k < nctx - 1 ? k : nctx - 1], 1);
            k++;
        }
        if (k < 24)
            rc_bit(rc, ctx[k < nctx - 1 ? k : nctx - 1], 0);
        rc_bypass_bits(rc, value - ((1u << k) - 1), k);
        return value;
    }
    while (k < 24 && rc_bit(rc, ctx[k < nctx - 1 ? k : nctx - 1], 0))
        k++;
    return ((1u << k) - 1) + rc_bypass_bits(rc, 0, k);
}

#endif
