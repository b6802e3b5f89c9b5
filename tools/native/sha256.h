/* SHA-256 (FIPS 180-4), for printing comparable digests of payloads and pictures. */
#ifndef SNIS_CHECK_SHA256_H
#define SNIS_CHECK_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t digest[32]);
/* Lower-case hex of a digest into out (65 bytes). */
void sha256_hex(const uint8_t digest[32], char out[65]);

#endif
