/* Unit checks of the native core without Python, for every architecture the core builds on.
 *
 *   core_check [VECTOR]
 *
 * Runs the range coder round trip on random symbol sequences (adaptive bits, bypass bits,
 * Exp-Golomb values), the quantiser step table, an encode -> decode of a synthetic moving
 * picture with fixed int8 latents fed to snis_encoder_code (every tier prefix, thinned
 * decoders, 1 and 2 threads) and corrupt / truncated payloads. With VECTOR (a file written by
 * tools/native/make_vector.py from the Python encoder) it also decodes that stream and checks
 * every picture against the encoder's reconstruction stored in the file.
 *
 * Prints "simd NAME", one "hash NAME SHA256" line per output (payloads, pictures, tables) so
 * that builds for different architectures can be compared, and "checks N failed M". Exits 1
 * when a check failed, 2 on a usage or file error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rangecoder.h"
#include "sha256.h"
#include "simd.h"

static int checks, failed;

#define CHECK(cond, ...)                                                                                      \
    do {                                                                                                      \
        checks++;                                                                                             \
        if (!(cond)) {                                                                                        \
            failed++;                                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                              \
            fprintf(stderr, __VA_ARGS__);                                                                     \
            fputc('\n', stderr);                                                                              \
        }                                                                                                     \
    } while (0)

static void print_hash(const char *name, sha256_ctx *c)
{
    uint8_t d[32];
    char hex[65];
    sha256_final(c, d);
    sha256_hex(d, hex);
    printf("hash %s %s\n", name, hex);
}

static void hash_u32(sha256_ctx *c, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sha256_update(c, b, 4);
}

/* splitmix64: the same pseudo-random sequence on every platform */
static uint64_t rng_state;
static uint64_t rnd64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rnd(uint32_t n) { return (uint32_t)(rnd64() % n); }

/* ------------------------------------------------------------------------------------------ */
/* Range coder */

enum { OP_BIT, OP_BYPASS, OP_BITS, OP_EG };
typedef struct {
    uint8_t kind, ctx, nbits;
    uint32_t value;
} rc_op;

#define RC_CTX 16
#define EG_MAX ((1u << 25) - 2) /* the largest value the 24-bit-capped prefix can carry */

static void rc_run(rangecoder *rc, rc_op *ops, size_t n, uint16_t (*ctx)[2], uint32_t *got)
{
    for (size_t i = 0; i < n; i++) {
        rc_op *o = &ops[i];
        switch (o->kind) {
        case OP_BIT: got[i] = (uint32_t)rc_bit(rc, ctx[o->ctx], (int)o->value); break;
        case OP_BYPASS: got[i] = (uint32_t)rc_bypass(rc, (int)o->value); break;
        case OP_BITS: got[i] = rc_bypass_bits(rc, o->value, o->nbits); break;
        default: got[i] = rc_expgolomb(rc, &ctx[8], 8, o->value); break;
        }
    }
}

static void check_rangecoder(void)
{
    sha256_ctx h;
    sha256_init(&h);
    int sequences = 0, values_ok = 1;
    size_t total_ops = 0, total_bytes = 0;
    for (int seq = 0; seq < 64; seq++) {
        rng_state = 1000 + (uint64_t)seq;
        size_t n = 1 + rnd(seq < 8 ? 40 : 30000);
        /* the mix and skew of each sequence: uniform bits, bits almost always 0 or 1 (long
           carry chains), bypass-only, Exp-Golomb-only */
        static const uint32_t p_one[8] = {32768, 3, 65533, 1, 65535, 16384, 60000, 200};
        uint32_t p1 = p_one[seq % 8];
        int mode = (seq / 8) % 4;
        rc_op *ops = (rc_op *)calloc(n, sizeof(rc_op));
        uint32_t *got = (uint32_t *)calloc(n, sizeof(uint32_t));
        uint32_t *back = (uint32_t *)calloc(n, sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) {
            rc_op *o = &ops[i];
            uint32_t r = rnd(8);
            o->kind = mode == 1 ? OP_BIT : mode == 2 ? (r < 4 ? OP_BYPASS : OP_BITS) : mode == 3 ? OP_EG
                      : (r < 4 ? OP_BIT : r < 5 ? OP_BYPASS : r < 6 ? OP_BITS : OP_EG);
            o->ctx = (uint8_t)rnd(RC_CTX / 2);
            switch (o->kind) {
            case OP_BIT:
            case OP_BYPASS: o->value = rnd(65536) < p1; break;
            case OP_BITS:
                o->nbits = (uint8_t)(1 + rnd(24));
                o->value = (uint32_t)rnd64() & ((1u << o->nbits) - 1);
                if (p1 > 60000)
                    o->value = (1u << o->nbits) - 1;
                break;
            default: {
                uint32_t c = rnd(16);
                o->value = c < 8 ? rnd(4) : c < 12 ? rnd(300) : c < 14 ? rnd(EG_MAX + 1) : (c == 14 ? EG_MAX : (1u << 24) - 1);
                break;
            }
            }
        }
        uint16_t ectx[RC_CTX][2], dctx[RC_CTX][2];
        for (int i = 0; i < RC_CTX; i++)
            ectx[i][0] = ectx[i][1] = dctx[i][0] = dctx[i][1] = PROB_ONE / 2;
        rangecoder enc;
        CHECK(rc_encoder_init(&enc, 1) == SNIS_OK, "rc_encoder_init");
        rc_run(&enc, ops, n, ectx, got);
        size_t len = 0;
        CHECK(rc_finish(&enc, &len) == SNIS_OK, "rc_finish");
        rangecoder dec;
        rc_decoder_init(&dec, enc.buf, len);
        /* the decoder is given the same op list but must not look at the values */
        rc_op *blind = (rc_op *)calloc(n, sizeof(rc_op));
        for (size_t i = 0; i < n; i++) {
            blind[i] = ops[i];
            blind[i].value = 0;
        }
        rc_run(&dec, blind, n, dctx, back);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += back[i] != ops[i].value || got[i] != ops[i].value;
        CHECK(bad == 0, "range coder sequence %d: %zu of %zu symbols differ", seq, bad, n);
        CHECK(memcmp(ectx, dctx, sizeof(ectx)) == 0, "range coder sequence %d: contexts differ", seq);
        /* past the end it reads only the zeros the encoder omitted */
        CHECK(dec.overrun <= MAX_TRIM, "range coder sequence %d: decoder read %zu bytes past the end", seq,
              dec.overrun);
        values_ok &= bad == 0;
        hash_u32(&h, (uint32_t)len);
        sha256_update(&h, enc.buf, len);
        total_ops += n;
        total_bytes += len;
        sequences++;
        rc_free(&enc);
        rc_free(&dec);
        free(ops);
        free(got);
        free(back);
        free(blind);
    }
    printf("rangecoder %d sequences, %zu symbols, %zu bytes, round trip %s\n", sequences, total_ops, total_bytes,
           values_ok ? "exact" : "WRONG");
    print_hash("rangecoder-payloads", &h);
}

/* ------------------------------------------------------------------------------------------ */
/* Quantiser steps */

static void check_steps(void)
{
    sha256_ctx h;
    sha256_init(&h);
    for (int tiers = 1; tiers <= SNIS_MAX_TIERS; tiers++)
        for (int tsl = 0; tsl <= 64; tsl++)
            for (int qp = 0; qp <= 63; qp++)
                for (int k = 0; k < tiers; k++)
                    hash_u32(&h, (uint32_t)snis_step16(qp, k, tiers, tsl));
    print_hash("step16-table", &h);
    int bad_exact = 0, bad_mono = 0, bad_oct = 0, bad_tier = 0;
    for (int qp = 0; qp <= 63; qp++) {
        int s = snis_step16(qp, 0, 1, 0);
        /* 10 * 2^(qp/6) in 1/16 pixel, within one unit of rounding */
        double ideal = 10.0 * pow(2.0, qp / 6.0);
        bad_exact += fabs(s - ideal) > 1.0;
        if (qp > 0)
            bad_mono += s < snis_step16(qp - 1, 0, 1, 0);
        if (qp >= 6)
            bad_oct += abs(s - 2 * snis_step16(qp - 6, 0, 1, 0)) > 2;
        for (int tiers = 1; tiers <= SNIS_MAX_TIERS; tiers++)
            for (int tsl = 0; tsl <= 64; tsl += 8) {
                bad_tier += snis_step16(qp, tiers - 1, tiers, tsl) != s; /* the top tier is the qp's step */
                for (int k = 1; k < tiers; k++)
                    bad_tier += snis_step16(qp, k - 1, tiers, tsl) < snis_step16(qp, k, tiers, tsl);
            }
    }
    CHECK(snis_step16(0, 0, 1, 0) == 10, "step at qp 0 is %d, not 10", snis_step16(0, 0, 1, 0));
    CHECK(bad_exact == 0, "%d steps off 10 * 2^(qp/6) by more than 1", bad_exact);
    CHECK(bad_mono == 0, "%d steps smaller than the step of qp - 1", bad_mono);
    CHECK(bad_oct == 0, "%d steps not twice the step of qp - 6", bad_oct);
    CHECK(bad_tier == 0, "%d tier steps out of order", bad_tier);
    CHECK(snis_step16(63, 0, 8, 64) == 1 << 20, "largest step %d is not capped at 2^20", snis_step16(63, 0, 8, 64));
}

/* ------------------------------------------------------------------------------------------ */
/* Encode -> decode of a synthetic moving picture */

#define W 100 /* not a multiple of the macroblock size: exercises padding and cropping */
#define H 60
#define TIERS 3
#define FRAMES 9

typedef struct {
    uint8_t *y, *u, *v;
} pic;

static pic pic_alloc(void)
{
    uint8_t *b = (uint8_t *)malloc(W * H * 3 / 2);
    pic p = {b, b + W * H, b + W * H + W * H / 4};
    return p;
}
static snis_image_out pic_out(pic *p) { return (snis_image_out){{p->y, p->u, p->v}, {W, W / 2, W / 2}}; }
static int pic_equal(const pic *a, const pic *b) { return memcmp(a->y, b->y, W * H * 3 / 2) == 0; }
static void hash_pic(sha256_ctx *h, const pic *p) { sha256_update(h, p->y, W * H * 3 / 2); }

/* A flat grey left part (x < 60: it equals the keyframe's prediction, so it codes nothing and is
 * skipped in predicted frames), a textured band on the right and over it a square that moves
 * 3 px right and 1 px down per frame. */
static void make_frame(int t, pic *p)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int v = 128;
            if (x >= 60) {
                v = 96 + ((x * 7 + y * 3) & 63) + ((x / 5 + y / 7) % 2) * 40;
                int sx = x - 64 - 3 * t, sy = y - 12 - t;
                if (sx >= 0 && sx < 24 && sy >= 0 && sy < 20)
                    v = 30 + (sx * sx + sy * 5) % 170;
            }
            p->y[y * W + x] = (uint8_t)v;
        }
    for (int y = 0; y < H / 2; y++)
        for (int x = 0; x < W / 2; x++) {
            p->u[y * (W / 2) + x] = (uint8_t)(x < 30 ? 128 : 110 + (x + t) % 30);
            p->v[y * (W / 2) + x] = (uint8_t)(x < 30 ? 128 : 140 - (y * 2 + x) % 25);
        }
}

static const int FRAME_TYPES[FRAMES] = {SNIS_FRAME_I, SNIS_FRAME_P, SNIS_FRAME_P, SNIS_FRAME_K, SNIS_FRAME_P,
                                        SNIS_FRAME_P, SNIS_FRAME_K, SNIS_FRAME_P, SNIS_FRAME_I};

/* Synthetic weights: a fixed pseudo-random pattern inside the allowed range. */
static void make_weights(snis_weights *w)
{
    int32_t *a = (int32_t *)w;
    size_t n = sizeof(*w) / sizeof(int32_t);
    rng_state = 77;
    for (size_t i = 0; i < n; i++)
        a[i] = (int32_t)rnd(2 << SNIS_FRAC) - (1 << SNIS_FRAC);
}

typedef struct {
    int8_t *y_ac, *y_k, *c_ac, *c_k;
    int hb, wb;
    snis_latents lat;
} latent_store;

/* Fixed int8 latents: a sparse pseudo-random pattern (most values zero, as at real rates) in the
 * blocks whose residual is not zero, and the zero point elsewhere; per-channel multipliers and
 * zero points. */
typedef struct {
    const int8_t *ypad, *uvpad;
    ptrdiff_t ys, uvs, uvps;
} residual_view;

static int residual_any(const int8_t *base, ptrdiff_t rs, int ctx, int y0, int x0, int n)
{
    for (int y = y0; y < y0 + n; y++)
        for (int x = x0; x < x0 + n; x++)
            if (base[(y + ctx) * rs + x + ctx])
                return 1;
    return 0;
}

static void make_latents(latent_store *s, int hp, int wp, int frame, const residual_view *r)
{
    int hb = hp / 8, wb = wp / 8;
    s->hb = hb;
    s->wb = wb;
    rng_state = 5000 + (uint64_t)frame;
    snis_latent_tensor *t[4] = {&s->lat.y_ac, &s->lat.y_coarse, &s->lat.c_ac, &s->lat.c_coarse};
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 64; c++) {
            t[i]->mult[c] = (int32_t)(3 * 65536 + (int32_t)rnd(20 * 65536)); /* 0.2 .. 1.4 pixel per unit */
            t[i]->zp[c] = c % 5 == 0 ? (int32_t)rnd(7) - 3 : 0;
        }
    /* tensor, planes, rows, columns, channels, block size in samples of its plane */
    int8_t *buf[4] = {s->y_ac, s->y_k, s->c_ac, s->c_k};
    int planes[4] = {1, 1, 2, 2}, rows[4] = {hb, hb / 2, hb, hb / 2}, cols[4] = {wb, wb / 2, wb, wb / 2};
    int chans[4] = {63, 4, 15, 4}, bsize[4] = {8, 16, 4, 8};
    for (int i = 0; i < 4; i++) {
        int8_t *o = buf[i];
        for (int pl = 0; pl < planes[i]; pl++)
            for (int bi = 0; bi < rows[i]; bi++)
                for (int bj = 0; bj < cols[i]; bj++) {
                    int live = i < 2 ? residual_any(r->ypad, r->ys, SNIS_LUMA_CTX, bi * bsize[i], bj * bsize[i], bsize[i])
                                     : residual_any(r->uvpad + pl * r->uvps, r->uvs, SNIS_CHROMA_CTX, bi * bsize[i],
                                                    bj * bsize[i], bsize[i]);
                    for (int c = 0; c < chans[i]; c++) {
                        uint32_t x = rnd(100);
                        int v = !live || x < 80 ? 0 : (x < 95 ? (int)rnd(9) - 4 : (int)rnd(256) - 128);
                        *o++ = (int8_t)clampi(v + t[i]->zp[c], -128, 127);
                    }
                }
    }
}

static void setup_tensors(latent_store *s)
{
    int hb = s->hb, wb = s->wb;
    s->lat.y_ac.data = s->y_ac;
    s->lat.y_ac.stride_p = 0;
    s->lat.y_ac.stride_i = (ptrdiff_t)wb * 63;
    s->lat.y_ac.stride_j = 63;
    s->lat.y_coarse.data = s->y_k;
    s->lat.y_coarse.stride_p = 0;
    s->lat.y_coarse.stride_i = (ptrdiff_t)(wb / 2) * 4;
    s->lat.y_coarse.stride_j = 4;
    s->lat.c_ac.data = s->c_ac;
    s->lat.c_ac.stride_p = (ptrdiff_t)hb * wb * 15;
    s->lat.c_ac.stride_i = (ptrdiff_t)wb * 15;
    s->lat.c_ac.stride_j = 15;
    s->lat.c_coarse.data = s->c_k;
    s->lat.c_coarse.stride_p = (ptrdiff_t)(hb / 2) * (wb / 2) * 4;
    s->lat.c_coarse.stride_i = (ptrdiff_t)(wb / 2) * 4;
    s->lat.c_coarse.stride_j = 4;
}

typedef struct {
    uint8_t *data[FRAMES][TIERS];
    size_t len[FRAMES][TIERS];
    int type[FRAMES]; /* as coded: the encoder may turn a K into a KC */
} coded_stream;

/* Encode the synthetic sequence; hashes of the residual, payloads and reconstructions. */
static void encode_sequence(const snis_weights *w, int threads, coded_stream *out, pic recon[FRAMES][TIERS],
                            int print)
{
    snis_params p = {W, H, TIERS, 8, threads};
    int st;
    snis_tuning t;
    snis_default_tuning(&t);
    t.aq_strength = 8; /* adaptive quantisation (off by default): its offsets must agree everywhere */
    snis_encoder *e = snis_encoder_create(&p, w, &t, &st);
    CHECK(e != NULL, "snis_encoder_create: %d", st);
    if (!e)
        return;
    int wp = (W + SNIS_ALIGN - 1) / SNIS_ALIGN * SNIS_ALIGN, hp = (H + SNIS_ALIGN - 1) / SNIS_ALIGN * SNIS_ALIGN;
    ptrdiff_t ys = wp + 2 * SNIS_LUMA_CTX, uvs = wp / 2 + 2 * SNIS_CHROMA_CTX;
    ptrdiff_t uvps = uvs * (hp / 2 + 2 * SNIS_CHROMA_CTX);
    int8_t *ypad = (int8_t *)calloc((size_t)ys * (hp + 2 * SNIS_LUMA_CTX), 1);
    int8_t *uvpad = (int8_t *)calloc((size_t)uvps * 2, 1);
    int hb = hp / 8, wb = wp / 8;
    latent_store ls;
    memset(&ls, 0, sizeof(ls));
    ls.y_ac = (int8_t *)malloc((size_t)hb * wb * 63);
    ls.y_k = (int8_t *)malloc((size_t)(hb / 2) * (wb / 2) * 4);
    ls.c_ac = (int8_t *)malloc((size_t)hb * wb * 15 * 2);
    ls.c_k = (int8_t *)malloc((size_t)(hb / 2) * (wb / 2) * 4 * 2);
    sha256_ctx hres, hpay, hrec;
    sha256_init(&hres);
    sha256_init(&hpay);
    sha256_init(&hrec);
    pic src = pic_alloc();
    int skipped = 0, total = 0;
    size_t clipped = 0;
    for (int f = 0; f < FRAMES; f++) {
        make_frame(f, &src);
        snis_image_in in = {{src.y, src.u, src.v}, {W, W / 2, W / 2}};
        int qp = 22 + 3 * (f % 3);
        st = snis_encoder_predict(e, &in, FRAME_TYPES[f], qp, ypad, ys, uvpad, uvs, uvps);
        CHECK(st == SNIS_OK, "snis_encoder_predict frame %d: %d", f, st);
        sha256_update(&hres, ypad, (size_t)ys * (hp + 2 * SNIS_LUMA_CTX));
        sha256_update(&hres, uvpad, (size_t)uvps * 2);
        if (FRAME_TYPES[f] != SNIS_FRAME_I) /* the moving square's edges clip the residual */
            for (size_t k = 0; k < (size_t)ys * (hp + 2 * SNIS_LUMA_CTX); k++)
                clipped += ypad[k] == -128 || ypad[k] == 127;
        residual_view rv = {ypad, uvpad, ys, uvs, uvps};
        make_latents(&ls, hp, wp, f, &rv);
        setup_tensors(&ls);
        st = snis_encoder_code(e, &ls.lat);
        CHECK(st == SNIS_OK, "snis_encoder_code frame %d: %d", f, st);
        snis_stats es;
        snis_encoder_stats(e, &es);
        out->type[f] = es.frame_type;
        snis_stats s;
        snis_encoder_stats(e, &s);
        skipped += s.skipped_mbs;
        total += s.total_mbs;
        for (int k = 0; k < TIERS; k++) {
            size_t len;
            const uint8_t *pl = snis_encoder_payload(e, k, &len);
            out->data[f][k] = (uint8_t *)malloc(len ? len : 1);
            memcpy(out->data[f][k], pl, len);
            out->len[f][k] = len;
            hash_u32(&hpay, (uint32_t)len);
            sha256_update(&hpay, pl, len);
            snis_image_out o = pic_out(&recon[f][k]);
            CHECK(snis_encoder_reconstruction(e, k + 1, &o) == SNIS_OK, "reconstruction");
            hash_pic(&hrec, &recon[f][k]);
        }
    }
    if (print) {
        printf("encode %dx%d, %d frames, %d tiers: %d of %d macroblocks skipped\n", W, H, FRAMES, TIERS, skipped,
               total);
        print_hash("encode-residual", &hres);
        print_hash("encode-payloads", &hpay);
        print_hash("encode-reconstruction", &hrec);
    }
    CHECK(skipped > 0 && skipped < total, "skipped %d of %d macroblocks: the picture has static and moving parts",
          skipped, total);
    CHECK(clipped > 0, "no P-frame residual reached -128 or 127: the clip is not exercised");
    snis_encoder_destroy(e);
    free(ypad);
    free(uvpad);
    free(ls.y_ac);
    free(ls.y_k);
    free(ls.c_ac);
    free(ls.c_k);
    free(src.y);
}

static int decode(snis_decoder *d, int ftype, int qp, int ntiers, uint8_t *const data[], const size_t len[],
                  int show, pic *out)
{
    snis_image_out o = pic_out(out);
    return snis_decoder_decode(d, ftype, qp, ntiers, (const uint8_t *const *)data, len, show, &o);
}

/* Bytes that decode to impossible values, in tier 0 and in tier 1, before a real frame. */
static void check_errors_on(snis_decoder *d, int f, const coded_stream *cs, pic *scratch)
{
    int qp = 22 + 3 * (f % 3);
    size_t len[TIERS];
    uint8_t *data[TIERS];
    for (int k = 0; k < TIERS; k++) {
        data[k] = cs->data[f][k];
        len[k] = cs->len[f][k];
    }
    memset(scratch->y, 0x5A, W * H * 3 / 2);
    pic before = pic_alloc();
    memcpy(before.y, scratch->y, W * H * 3 / 2);
    snis_stats s;
    int st;
    /* corrupt: 0xFF bytes decode to a coded block whose magnitude prefix runs to its cap */
    uint8_t junk[256];
    memset(junk, 0xFF, sizeof(junk));
    uint8_t *bad[TIERS] = {junk, data[1], data[2]};
    size_t blen[TIERS] = {sizeof(junk), len[1], len[2]};
    st = decode(d, cs->type[f], qp, TIERS, bad, blen, TIERS, scratch);
    snis_decoder_stats(d, &s);
    CHECK(st == SNIS_E_CORRUPT, "frame %d: a tier 0 of 0xFF bytes gives %d, not SNIS_E_CORRUPT", f, st);
    CHECK(s.error_tier == 0, "frame %d: error_tier %d after a corrupt tier 0", f, s.error_tier);
    /* the same in tier 1: the error names tier 1 */
    uint8_t *bad1[TIERS] = {data[0], junk, data[2]};
    size_t blen1[TIERS] = {len[0], sizeof(junk), len[2]};
    st = decode(d, cs->type[f], qp, TIERS, bad1, blen1, TIERS, scratch);
    snis_decoder_stats(d, &s);
    CHECK(st == SNIS_E_CORRUPT, "frame %d: a tier 1 of 0xFF bytes gives %d, not SNIS_E_CORRUPT", f, st);
    CHECK(s.error_tier == 1, "frame %d: error_tier %d after a corrupt tier 1", f, s.error_tier);
    CHECK(pic_equal(scratch, &before), "frame %d: a failed decode wrote the output picture", f);
    CHECK(decode(d, 1, qp, 0, data, len, 1, scratch) == SNIS_E_ARG, "0 tiers must be SNIS_E_ARG");
    CHECK(decode(d, 4, qp, 1, data, len, 1, scratch) == SNIS_E_ARG, "frame type 4 must be SNIS_E_ARG");
    CHECK(decode(d, 1, 64, 1, data, len, 1, scratch) == SNIS_E_ARG, "qp 64 must be SNIS_E_ARG");
    free(before.y);
}

/* A predicted frame's tier 0 cut to nothing: the syntax of a 640x352 frame (220 macroblocks, each
 * with a mode, a vector and a coded flag) runs far past the end. A keyframe has no such minimum
 * (an empty one is a grey picture), so its truncation cannot always be told. */
static void check_truncated(const snis_weights *w)
{
    snis_params p = {640, 352, 2, 8, 1};
    int st;
    snis_decoder *d = snis_decoder_create(&p, w, &st);
    CHECK(d != NULL, "snis_decoder_create 640x352: %d", st);
    static const uint8_t zeros[2] = {0, 0};
    const uint8_t *data[2] = {zeros, zeros};
    for (int ft = SNIS_FRAME_P; ft <= SNIS_FRAME_KC; ft++)
        for (size_t n = 0; n <= 2; n++) {
            size_t len[2] = {n, 0};
            st = snis_decoder_decode(d, ft, 30, 2, data, len, 2, NULL);
            snis_stats s;
            snis_decoder_stats(d, &s);
            CHECK(st == SNIS_E_TRUNCATED && s.error_tier == 0,
                  "frame type %d, tier 0 of %zu bytes: status %d, error tier %d (not truncated in tier 0)", ft, n, st,
                  s.error_tier);
        }
    snis_decoder_destroy(d);
}

/* ------------------------------------------------------------------------------------------ */
/* Synthesis against a plain 32-bit reference: the DC plane from the coarse latents, every coded
 * block's lapped window summed term by term into a canvas, the margins folded back, the sum
 * rounded onto the prediction. synthesize_add() (rows in order through a ring) and
 * synthesize_band() must give its pictures exactly, for realistic values and for
 * values beyond 16 bits (where simd.h's 16-bit kernels hand over to the 32-bit path). */

static int ref_fold(int i, int n) { return i < 0 ? -1 - i : (i >= n ? 2 * n - 1 - i : i); }

static void ref_synth(const plane_weights *pw, int w, int h, const int16_t *ac, const uint8_t *f_ac, int sa,
                      const int16_t *k, const uint8_t *f_k, plane_t *dst)
{
    int n = pw->n, half = n / 2, hb = h / n, wb = w / n, cw = w + n, T = 2 * n;
    uint32_t *dc = (uint32_t *)calloc((size_t)hb * wb, sizeof(uint32_t));
    uint32_t *cv = (uint32_t *)calloc((size_t)(h + n) * cw, sizeof(uint32_t));
    uint32_t *fin = (uint32_t *)calloc((size_t)h * w, sizeof(uint32_t));
    for (int ii = 0; ii < hb / 2; ii++)
        for (int jj = 0; jj < wb / 2; jj++) {
            int p = ii * (wb / 2) + jj;
            if (!f_k[p])
                continue;
            for (int kk = 0; kk < 4; kk++)
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        dc[ref_fold(2 * ii - 1 + a, hb) * wb + ref_fold(2 * jj - 1 + b, wb)] +=
                            (uint32_t)pw->coarse[kk][a][b] * (uint32_t)k[p * LAT_K + kk];
        }
    for (int i = 0; i < hb; i++)
        for (int j = 0; j < wb; j++) {
            int b = i * wb + j;
            int32_t d = (int32_t)(dc[b] + (1u << (SNIS_FRAC - 1))) >> SNIS_FRAC;
            if (!f_ac[b] && !d)
                continue;
            for (int u = 0; u < n; u++) {
                uint32_t t[16] = {0};
                for (int v = 0; v < n; v++) {
                    int c = u * n + v;
                    int32_t cf = c == 0 ? d : (f_ac[b] ? ac[(size_t)b * sa + c - 1] : 0);
                    for (int y = 0; y < T; y++)
                        t[y] += (uint32_t)pw->col[u][v][y] * (uint32_t)cf;
                }
                for (int y = 0; y < T; y++) {
                    uint32_t tv = (uint32_t)((int32_t)(t[y] + (1u << (SNIS_FRAC - 1))) >> SNIS_FRAC);
                    for (int x = 0; x < T; x++)
                        cv[(size_t)(i * n + y) * cw + j * n + x] += (uint32_t)pw->row[u][x] * tv;
                }
            }
        }
    for (int cy = 0; cy < h + n; cy++)
        for (int cx = 0; cx < cw; cx++)
            fin[ref_fold(cy - half, h) * w + ref_fold(cx - half, w)] += cv[(size_t)cy * cw + cx];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *px = dst->data + y * dst->stride + x;
            int v = *px + ((int32_t)(fin[y * w + x] + (1u << (SNIS_FRAC + 1))) >> (SNIS_FRAC + 2));
            *px = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
        }
    free(dc);
    free(cv);
    free(fin);
}

/* A value of regime r: 0 realistic (small, mostly zero), 1 anywhere in int16, 2 large but
 * inside the dequantiser's bound. */
static int16_t synth_value(int r)
{
    if (rnd(3))
        return 0;
    switch (r) {
    case 0:
        return (int16_t)((int)rnd(401) - 200);
    case 1:
        return (int16_t)((int)rnd(65536) - 32768);
    default:
        return (int16_t)((int)rnd(2 * DEQ_LIMIT + 1) - DEQ_LIMIT);
    }
}

static int planes_equal(const plane_t *a, const plane_t *b)
{
    for (int y = 0; y < a->h; y++)
        if (memcmp(a->data + y * a->stride, b->data + y * b->stride, (size_t)a->w))
            return 0;
    return 1;
}

static void check_synthesis(void)
{
    enum { SW = 96, SH = 64 };
    snis_weights w;
    int32_t *wa = (int32_t *)&w;
    plane_weights pl, pc;
    picture_t pred, ref, out;
    CHECK(!picture_alloc(&pred, SW, SH) && !picture_alloc(&ref, SW, SH) &&
              !picture_alloc(&out, SW, SH),
          "synthesis check: out of memory");
    int bad = 0, wide = 0;
    for (int trial = 0; trial < 24; trial++) {
        int regime = trial % 3;
        rng_state = 1000 + (uint64_t)trial;
        for (size_t i = 0; i < sizeof(w) / sizeof(int32_t); i++) /* anywhere in the allowed (-2, 2) */
            wa[i] = (int32_t)rnd((4 << SNIS_FRAC) - 1) - ((2 << SNIS_FRAC) - 1);
        weights_expand(&w, &pl, &pc);
        for (int c = 0; c < 3; c++) {
            const plane_weights *pw = c ? &pc : &pl;
            plane_t *pp = &pred.p[c];
            int n = pw->n, hb = pp->h / n, wb = pp->w / n, sa = c ? LAT_C : LAT_Y;
            int16_t *ac = (int16_t *)malloc((size_t)hb * wb * sa * sizeof(int16_t));
            int16_t *k = (int16_t *)malloc((size_t)hb * wb * sizeof(int16_t)); /* (hb/2)(wb/2) LAT_K */
            uint8_t *f_ac = (uint8_t *)malloc((size_t)hb * wb), *f_k = (uint8_t *)malloc((size_t)hb * wb / 4);
            for (int i = 0; i < hb * wb; i++) {
                f_ac[i] = (uint8_t)(rnd(10) < 6);
                for (int j = 0; j < sa; j++) /* unflagged blocks hold garbage, as in the codec */
                    ac[(size_t)i * sa + j] = f_ac[i] ? synth_value(regime) : (int16_t)rnd(65536);
            }
            for (int i = 0; i < hb * wb / 4; i++) {
                f_k[i] = (uint8_t)(rnd(10) < 6);
                for (int j = 0; j < LAT_K; j++)
                    k[i * LAT_K + j] = f_k[i] ? synth_value(regime == 2 ? 0 : regime) : (int16_t)rnd(65536);
            }
            for (int y = 0; y < pp->h; y++)
                for (int x = 0; x < pp->w; x++)
                    pp->data[y * pp->stride + x] = (uint8_t)rnd(256);
            for (int y = 0; y < pp->h; y++)
                memcpy(ref.p[c].data + y * ref.p[c].stride, pp->data + y * pp->stride, (size_t)pp->w);
            ref_synth(pw, pp->w, pp->h, ac, f_ac, sa, k, f_k, &ref.p[c]);
            synth_plane sp;
            CHECK(synth_plane_alloc(&sp, pp->w, pp->h, n) == SNIS_OK, "synth_plane_alloc");
            for (int mode = 0; mode < 2; mode++) { /* whole plane, bands */
                for (int y = 0; y < pp->h; y++)
                    memcpy(out.p[c].data + y * out.p[c].stride, pp->data + y * pp->stride, (size_t)pp->w);
                if (mode == 0) {
                    synthesize_add(&sp, pw, ac, f_ac, sa, k, f_k, &out.p[c]);
                } else {
                    for (int band = 0; 4 * band < hb; band++)
                        synthesize_band(&sp, pw, ac, f_ac, sa, k, f_k, band, pp, &out.p[c]);
                }
                if (!planes_equal(&out.p[c], &ref.p[c])) {
                    bad++;
                    fprintf(stderr, "synthesis trial %d plane %d mode %d differs from the reference\n", trial, c,
                            mode);
                }
                int clear = 1; /* the canvas is left clear for the next call */
                for (size_t i = 0; i < (size_t)(pp->h + n) * (size_t)sp.cstride; i++)
                    clear &= sp.canvas[i] == 0;
                for (size_t i = 0; i < (size_t)(2 * n) * (size_t)sp.cstride; i++)
                    clear &= sp.ring[i] == 0;
                CHECK(clear, "synthesis trial %d plane %d mode %d left the canvas dirty", trial, c, mode);
                for (int i = 0; mode == 0 && i < hb * wb; i++) /* DC beyond 16 bits: the 32-bit path */
                    wide += sp.nz[i] && (sp.dc[i] < -32768 || sp.dc[i] > 32767);
            }
            synth_plane_free(&sp);
            free(ac);
            free(k);
            free(f_ac);
            free(f_k);
        }
    }
    CHECK(bad == 0, "%d synthesised planes differ from the 32-bit reference", bad);
    CHECK(wide > 0, "no block exercised the 32-bit path");
    printf("synthesis: 24 trials x 3 planes x 2 orders against the 32-bit reference, %d wide DC blocks\n", wide);
    picture_free(&pred);
    picture_free(&ref);
    picture_free(&out);
}

static void check_codec(void)
{
    snis_weights w;
    make_weights(&w);
    static pic recon[FRAMES][TIERS], recon2[FRAMES][TIERS];
    for (int f = 0; f < FRAMES; f++)
        for (int k = 0; k < TIERS; k++) {
            recon[f][k] = pic_alloc();
            recon2[f][k] = pic_alloc();
        }
    check_truncated(&w);
    coded_stream cs, cs2;
    encode_sequence(&w, 1, &cs, recon, 1);
    encode_sequence(&w, 2, &cs2, recon2, 0);
    int same = 1;
    for (int f = 0; f < FRAMES; f++)
        for (int k = 0; k < TIERS; k++) {
            same &= cs.len[f][k] == cs2.len[f][k] && memcmp(cs.data[f][k], cs2.data[f][k], cs.len[f][k]) == 0;
            same &= pic_equal(&recon[f][k], &recon2[f][k]);
        }
    CHECK(same, "2 threads give other payloads or pictures than 1 thread");

    /* full decoders showing k tiers; thinned decoders given k tiers */
    snis_params p = {W, H, TIERS, 8, 1};
    snis_decoder *full[TIERS], *thin[TIERS];
    int st;
    for (int k = 0; k < TIERS; k++) {
        full[k] = snis_decoder_create(&p, &w, &st);
        thin[k] = snis_decoder_create(&p, &w, &st);
        CHECK(full[k] && thin[k], "snis_decoder_create: %d", st);
    }
    p.threads = 2;
    snis_decoder *threaded = snis_decoder_create(&p, &w, &st);
    sha256_ctx hdec;
    sha256_init(&hdec);
    pic out = pic_alloc(), scratch = pic_alloc();
    int exact = 1, keys_exact = 1;
    for (int f = 0; f < FRAMES; f++) {
        int qp = 22 + 3 * (f % 3), ft = cs.type[f];
        if (f == 2 || f == 3 || f == 8) /* errors first: the next decode must be unaffected */
            check_errors_on(full[TIERS - 1], f, &cs, &scratch);
        for (int k = 0; k < TIERS; k++) {
            st = decode(full[k], ft, qp, TIERS, cs.data[f], cs.len[f], k + 1, &out);
            CHECK(st == SNIS_OK, "frame %d: full decode showing %d tiers: %d", f, k + 1, st);
            int eq = pic_equal(&out, &recon[f][k]);
            CHECK(eq, "frame %d: decoder showing %d tiers differs from the encoder's reconstruction", f, k + 1);
            exact &= eq;
            hash_pic(&hdec, &out);
            st = decode(thin[k], ft, qp, k + 1, cs.data[f], cs.len[f], k + 1, &out);
            CHECK(st == SNIS_OK, "frame %d: thinned decode with %d tiers: %d", f, k + 1, st);
            if (ft != SNIS_FRAME_P) { /* switch points: no drift */
                eq = pic_equal(&out, &recon[f][k]);
                CHECK(eq, "frame %d (key): decoder given %d tiers differs from the encoder's picture", f, k + 1);
                keys_exact &= eq;
            }
            hash_pic(&hdec, &out);
        }
        st = decode(threaded, ft, qp, TIERS, cs.data[f], cs.len[f], TIERS, &out);
        CHECK(st == SNIS_OK && pic_equal(&out, &recon[f][TIERS - 1]), "frame %d: 2-thread decoder differs", f);
    }
    printf("decode: every tier prefix %s the encoder's reconstruction; thinned decoders at switch points %s\n",
           exact ? "equals" : "DIFFERS FROM", keys_exact ? "equal" : "DIFFER");
    print_hash("decode-pictures", &hdec);
    for (int k = 0; k < TIERS; k++) {
        snis_decoder_destroy(full[k]);
        snis_decoder_destroy(thin[k]);
    }
    snis_decoder_destroy(threaded);
    for (int f = 0; f < FRAMES; f++)
        for (int k = 0; k < TIERS; k++) {
            free(recon[f][k].y);
            free(recon2[f][k].y);
            free(cs.data[f][k]);
            free(cs2.data[f][k]);
        }
    free(out.y);
    free(scratch.y);

    /* argument checks */
    snis_params bad = {W, H, 0, 8, 1};
    CHECK(snis_decoder_create(&bad, &w, &st) == NULL && st == SNIS_E_ARG, "0 tiers must be refused");
    bad.tiers = 1;
    bad.width = W + 1;
    CHECK(snis_decoder_create(&bad, &w, &st) == NULL && st == SNIS_E_ARG, "an odd width must be refused");
    snis_weights big = w;
    big.luma_row[0][0] = 2 << SNIS_FRAC;
    CHECK(snis_decoder_create(&p, &big, &st) == NULL && st == SNIS_E_ARG, "weights of 2.0 must be refused");
}

/* ------------------------------------------------------------------------------------------ */
/* A stream the x86 Python encoder wrote (tools/native/make_vector.py) */

static int read_u32(FILE *f, uint32_t *v)
{
    uint8_t b[4];
    if (fread(b, 1, 4, f) != 4)
        return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

static int check_vector(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "core_check: cannot open %s\n", path);
        return 0;
    }
    char magic[8];
    uint32_t width, height, tiers, tsl, nframes, wlen;
    snis_weights w;
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, "SNISTV01", 8) == 0 && read_u32(f, &width) &&
             read_u32(f, &height) && read_u32(f, &tiers) && read_u32(f, &tsl) && read_u32(f, &nframes) &&
             read_u32(f, &wlen) && wlen == sizeof(w) && fread(&w, 1, sizeof(w), f) == sizeof(w) &&
             tiers >= 1 && tiers <= SNIS_MAX_TIERS && width <= 4096 && height <= 4096;
    if (!ok) {
        fprintf(stderr, "core_check: %s is not a test vector of this format\n", path);
        fclose(f);
        return 0;
    }
    int32_t *wa = (int32_t *)&w; /* stored little-endian */
    for (size_t i = 0; i < sizeof(w) / 4; i++) {
        uint8_t *b = (uint8_t *)&wa[i];
        wa[i] = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
    }
    snis_params p = {(int)width, (int)height, (int)tiers, (int)tsl, 1};
    int st;
    snis_decoder *full = snis_decoder_create(&p, &w, &st), *base = snis_decoder_create(&p, &w, &st);
    CHECK(full && base, "vector decoder: %d", st);
    size_t ny = (size_t)width * height, npix = ny * 3 / 2;
    uint8_t *pix = (uint8_t *)malloc(npix);
    snis_image_out o = {{pix, pix + ny, pix + ny + ny / 4}, {width, width / 2, width / 2}};
    sha256_ctx hall, hbase;
    sha256_init(&hall);
    sha256_init(&hbase);
    int matched = 0;
    for (uint32_t fr = 0; fr < nframes && ok; fr++) {
        uint32_t ftype, qp, nt;
        ok = read_u32(f, &ftype) && read_u32(f, &qp) && read_u32(f, &nt) && nt >= 1 && nt <= tiers;
        uint8_t *data[SNIS_MAX_TIERS] = {0};
        size_t len[SNIS_MAX_TIERS] = {0};
        for (uint32_t k = 0; k < nt && ok; k++) {
            uint32_t n;
            ok = read_u32(f, &n) && n < (64u << 20);
            data[k] = ok ? (uint8_t *)malloc(n ? n : 1) : NULL;
            ok = ok && data[k] && fread(data[k], 1, n, f) == n;
            len[k] = n;
        }
        uint8_t expect[32], got[32];
        ok = ok && fread(expect, 1, 32, f) == 32;
        if (ok) {
            st = snis_decoder_decode(full, (int)ftype, (int)qp, (int)nt, (const uint8_t *const *)data, len, (int)nt,
                                     &o);
            CHECK(st == SNIS_OK, "vector frame %u: %d", fr, st);
            sha256_ctx h;
            sha256_init(&h);
            sha256_update(&h, pix, npix);
            sha256_final(&h, got);
            sha256_update(&hall, pix, npix);
            int eq = memcmp(got, expect, 32) == 0;
            CHECK(eq, "vector frame %u: decoded picture differs from the x86 encoder's reconstruction", fr);
            matched += eq;
            st = snis_decoder_decode(base, (int)ftype, (int)qp, 1, (const uint8_t *const *)data, len, 1, &o);
            CHECK(st == SNIS_OK, "vector frame %u, base tier: %d", fr, st);
            sha256_update(&hbase, pix, npix);
        }
        for (uint32_t k = 0; k < nt; k++)
            free(data[k]);
    }
    if (!ok)
        fprintf(stderr, "core_check: %s is truncated\n", path);
    fclose(f);
    printf("vector %ux%u, %u tiers: %d of %u frames equal the x86 encoder's reconstruction\n", width, height, tiers,
           matched, nframes);
    CHECK(ok && matched == (int)nframes, "vector: %d of %u frames matched", matched, nframes);
    print_hash("vector-decode", &hall);
    print_hash("vector-decode-base-tier", &hbase);
    snis_decoder_destroy(full);
    snis_decoder_destroy(base);
    free(pix);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: core_check [VECTOR]\n");
        return 2;
    }
    printf("simd %s\n", SNIS_SIMD);
    check_rangecoder();
    check_steps();
    check_synthesis();
    check_codec();
    if (argc == 2 && !check_vector(argv[1]))
        return 2;
    printf("checks %d failed %d\n", checks, failed);
    return failed ? 1 : 0;
}
