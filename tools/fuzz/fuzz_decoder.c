/* libFuzzer harness for the native SNIS decoder (snis_decoder_*), built with AddressSanitizer
 * and UndefinedBehaviorSanitizer by tools/fuzz/run.sh.
 *
 * One input is one short stream for a fresh decoder, in this harness's own layout:
 *
 *   (an input of odd length is decoded with two threads, so that the decoder's parallel paths
 *   see hostile streams too)
 *   byte 0        bits 0-1: tier count - 1 (3 reads as 0: one tier)
 *                 bit 2: picture size (0: 64x48, 1: 96x64)
 *                 bits 3-7: tier_step_log2 / 2 (bit 3 set: key_step_log2 0, else the same ratio)
 *   then frames, at most MAX_FRAMES, while bytes remain:
 *     byte        bits 0-1: frame type (0 I, 1 P, 2 K, 3 KC)
 *                 bits 2-4: tiers given (1 + value mod tier count)
 *                 bits 5-7: tiers shown (1 + value mod tiers given)
 *     byte        qp (low 6 bits)
 *     per tier    2-byte little-endian length (cut to what is left), then that many bytes
 *
 * The synthesis weights are the shipped ones in fixed point, generated into weights.h by
 * tools/fuzz/make_seeds.py. Every call must return SNIS_OK, SNIS_E_CORRUPT or
 * SNIS_E_TRUNCATED; anything else aborts. Where a call fails, the output picture must be
 * untouched (the API promises that nothing is written on an error).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snis.h"
#include "weights.h" /* SNIS_FUZZ_WEIGHTS[] */

#define MAX_FRAMES 8

static snis_weights weights;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sizeof(SNIS_FUZZ_WEIGHTS) != sizeof(weights)) {
        fprintf(stderr, "weights.h has %zu bytes, snis_weights %zu: regenerate it\n", sizeof(SNIS_FUZZ_WEIGHTS),
                sizeof(weights));
        abort();
    }
    memcpy(&weights, SNIS_FUZZ_WEIGHTS, sizeof(weights));
    return 0;
}

static void config_of(uint8_t b, snis_params *p)
{
    p->tiers = 1 + (b & 3) % 3;
    p->width = b & 4 ? 96 : 64;
    p->height = b & 4 ? 64 : 48;
    p->tier_step_log2 = (b >> 3) * 2;
    p->key_step_log2 = b & 8 ? 0 : p->tier_step_log2;
    p->threads = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    snis_params p;
    config_of(data[0], &p);
    p.threads = 1 + (int)(size & 1);
    int st = 0;
    snis_decoder *d = snis_decoder_create(&p, &weights, &st);
    if (!d) {
        fprintf(stderr, "snis_decoder_create failed: %d\n", st);
        abort();
    }
    int w = p.width, h = p.height;
    size_t ny = (size_t)w * h, nc = ny / 4;
    uint8_t *pix = (uint8_t *)malloc(ny + 2 * nc), *copy = (uint8_t *)malloc(ny + 2 * nc);
    if (!pix || !copy)
        abort();
    snis_image_out out = {{pix, pix + ny, pix + ny + nc}, {w, w / 2, w / 2}};
    size_t pos = 1;
    for (int f = 0; f < MAX_FRAMES && pos + 2 <= size; f++) {
        int ftype = data[pos] & 3, ntiers = 1 + ((data[pos] >> 2) & 7) % p.tiers; /* 3: a coarse key picture */
        int show = 1 + (data[pos] >> 5) % ntiers, qp = data[pos + 1] & 63;
        pos += 2;
        const uint8_t *payload[SNIS_MAX_TIERS];
        size_t len[SNIS_MAX_TIERS];
        for (int k = 0; k < ntiers; k++) {
            size_t n = 0;
            if (pos + 2 <= size) {
                n = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
                pos += 2;
            } else {
                pos = size;
            }
            if (n > size - pos)
                n = size - pos;
            /* each payload in its own allocation, so ASan sees any read past its end */
            uint8_t *buf = n ? (uint8_t *)malloc(n) : NULL;
            if (n)
                memcpy(buf, data + pos, n);
            payload[k] = buf;
            len[k] = n;
            pos += n;
        }
        memset(pix, 0xA5, ny + 2 * nc);
        memcpy(copy, pix, ny + 2 * nc);
        st = snis_decoder_decode(d, ftype, qp, ntiers, payload, len, show, &out);
        for (int k = 0; k < ntiers; k++)
            free((void *)payload[k]);
        if (st != SNIS_OK && st != SNIS_E_CORRUPT && st != SNIS_E_TRUNCATED) {
            fprintf(stderr, "snis_decoder_decode returned %d\n", st);
            abort();
        }
        if (st != SNIS_OK && memcmp(pix, copy, ny + 2 * nc) != 0) {
            fprintf(stderr, "snis_decoder_decode wrote the picture although it failed (%d)\n", st);
            abort();
        }
        snis_stats s;
        snis_decoder_stats(d, &s);
        if ((st == SNIS_OK) != (s.error_tier == -1) || s.error_tier >= ntiers) {
            fprintf(stderr, "status %d but error_tier %d\n", st, s.error_tier);
            abort();
        }
    }
    free(pix);
    free(copy);
    snis_decoder_destroy(d);
    return 0;
}
