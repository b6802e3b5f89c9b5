/* Internal types shared by the modules of the native core (not part of the public API). */
#ifndef SNIS_INTERNAL_H
#define SNIS_INTERNAL_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "snis.h"

#define MB 32         /* macroblock, luma samples */
#define BORDER 80     /* edge-replicated border around references (luma; chroma half) */
#define MV_LIMIT 1024 /* |vector component| in quarter-pels; beyond it a stream is corrupt */
#define LAT_Y 64      /* stored channels per luma block (63 used) */
#define LAT_C 16      /* stored channels per chroma block (15 used) */
#define LAT_K 4       /* coarse latents per 1/16-scale position */
#define DEQ_LIMIT (1 << 14) /* |summed dequantised latent| in 1/4 pixel is clamped to this */
#define AQ_MAX 12     /* |per-macroblock qp offset| of adaptive quantisation */
#define AQ_N (2 * AQ_MAX + 1)
#define AQ_STRENGTH_MAX 31 /* adaptive-quantisation strength of a frame: -32..31, in 1/16 */

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__) && \
    !defined(SNIS_NO_CLONES)
#define SNIS_HOT __attribute__((target_clones("avx2", "default")))
#else
#define SNIS_HOT
#endif

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v)); }
/* Wrapping 32-bit arithmetic: defined on every platform, so hostile input can only give wrong
 * pixels (clipped later), never undefined behaviour; real signals stay far inside the range. */
static inline int32_t wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t wmul(int32_t a, int32_t b) { return (int32_t)((uint32_t)a * (uint32_t)b); }

/* Dequantisation of one value: q * step / 4 (1/16 -> 1/4 pixel), truncated toward zero and
 * bounded so that no sum of tiers can overflow. */
static inline int32_t dequant1(int q, int32_t step)
{
    int64_t v = (int64_t)q * step;
    v = v >= 0 ? v >> 2 : -((-v) >> 2);
    return (int32_t)(v > (1 << 20) ? (1 << 20) : (v < -(1 << 20) ? -(1 << 20) : v));
}

/* A block's running sum of tiers with one more dequantised value: prod = level x step, exact in
 * 32 bits (the caller knows it is), divided by 4 toward zero as dequant1() does (adding 3 to a
 * negative product before the shift), added to sum unless fresh (the first tier), clamped to
 * +-DEQ_LIMIT like every partial sum. In lanes the compiler vectorises. */
static inline int16_t deq_sum(int32_t sum, int32_t prod, int fresh)
{
    int32_t v = (prod + ((prod >> 31) & 3)) >> 2;
    v = fresh ? v : sum + v;
    return (int16_t)(v < -DEQ_LIMIT ? -DEQ_LIMIT : (v > DEQ_LIMIT ? DEQ_LIMIT : v));
}

/* An 8-bit plane with an edge-replicated border; data points at sample (0, 0). */
typedef struct {
    uint8_t *alloc;
    uint8_t *data;
    int w, h, border;
    ptrdiff_t stride;
} plane_t;

typedef struct {
    plane_t p[3];
} picture_t;

int picture_alloc(picture_t *pic, int wp, int hp);
void picture_free(picture_t *pic);
void picture_fill(picture_t *pic, int value);
void picture_extend(picture_t *pic); /* replicate the edges into the border */
void picture_copy(picture_t *dst, const picture_t *src);

/* Quantised latents of one tier (or their dequantised sum), block-major, with a flag per block
 * saying whether any of its values is non-zero: a block whose flag is 0 holds garbage. */
typedef struct {
    int hb, wb;        /* 8x8 luma block grid = 4x4 chroma block grid */
    int16_t *y_ac;     /* hb*wb*LAT_Y */
    int16_t *y_k;      /* (hb/2)*(wb/2)*LAT_K */
    int16_t *c_ac[2];  /* hb*wb*LAT_C */
    int16_t *c_k[2];   /* (hb/2)*(wb/2)*LAT_K */
    uint8_t *f_y_ac, *f_y_k, *f_c_ac[2], *f_c_k[2];
} latents_t;

int latents_alloc(latents_t *l, int hb, int wb);
void latents_free(latents_t *l);
void latents_clear_flags(latents_t *l);

/* Macroblock decisions, shared by all tiers. */
typedef struct {
    int mbw, mbh;
    uint8_t *intra;   /* 1: intra (predicts from its own frame, intra.c) */
    uint8_t *imode;   /* intra prediction mode of an intra macroblock (INTRA_* in intra.h) */
    int16_t *mv;      /* (dy, dx) in quarter-pels: the macroblock's vector (its first partition's if split) */
    uint8_t *split;   /* bit 0: four 16x16 partitions with the vectors in smv; bit 1 + p: 16x16
                         partition p (z-order) is four 8x8 partitions */
    uint8_t *merge;   /* 0: vector coded; 1 + k: merge candidate k's vector (merge_candidates) */
    int16_t *smv;     /* (dy, dx) per 8x8 partition, (4 mbh) x (4 mbw): what compensation uses */
    int tools;        /* the frame's motion tools (MT_*), coded at the start of tier 0 of a P-frame */
    uint8_t *skip;    /* encoder only: codes nothing in any tier */
    uint32_t *sad;    /* encoder only: luma SAD of the residual (plus chroma near the skip threshold) */
    /* adaptive quantisation: the frame's strength (0: off; coded in tier 0) and the qp offset of
       every macroblock, derived from the prediction (loop_aq_offsets) */
    int aq;
    int8_t *dqp;
} motion_t;

/* Motion tools a frame uses (docs/BITSTREAM.md): without MT_QPEL every vector is even (half-pel)
 * and differences are coded in half-pels; without MT_MERGE / MT_SPLIT / MT_SPLIT8 no merge /
 * split / 8x8 split flags; with MT_OBMC the luma prediction is blended across the edges of 8x8
 * cells whose vectors differ (overlapped block motion compensation, motion.c). */
enum { MT_QPEL = 1, MT_MERGE = 2, MT_SPLIT = 4, MT_SPLIT8 = 8, MT_OBMC = 16 };
#define MT_ALL 31
#define MT_BITS 5
int motion_alloc(motion_t *m, int mbw, int mbh);
void motion_free(motion_t *m);
int mv_predictor(const motion_t *m, int y, int x, int comp);
/* The vector of 8x8 cell (qy, qx) of the partition grid (four per 16x16 partition). */
static inline int16_t *sub_mv(const motion_t *m, int qy, int qx) { return m->smv + 2 * ((size_t)qy * 4 * m->mbw + qx); }
/* Context of a vector component's zero flag: how many of the left / top cells' vectors (zero if
 * intra) differ from the predictor. */
int mv_zero_ctx(const motion_t *m, int qy, int qx, int comp, int pred);
/* Copy macroblock i's vector to its cells (an unsplit or intra macroblock). */
void set_mb_mv(motion_t *m, int i);
/* Give the size x size cells from (qy, qx) the vector v. */
void set_part_mv(motion_t *m, int qy, int qx, int size, const int16_t *v);
/* Predictor of the partition of size x size cells (2: 16x16, 1: 8x8) at cell (qy, qx): median of
 * the left, top and top-right (else top-left) cells. */
int part_predictor(const motion_t *m, int qy, int qx, int size, int comp);
/* 1: the 16x16 partition (sy, sx) (16x16 grid) is split into 8x8 partitions. */
static inline int part_split8(const motion_t *m, int sy, int sx)
{
    return (m->split[(sy >> 1) * m->mbw + (sx >> 1)] >> (1 + 2 * (sy & 1) + (sx & 1))) & 1;
}
/* Merge candidates of macroblock (y, x): the median predictor, the left and the top partition's
 * vector (zero where absent or intra). */
void merge_candidates(const motion_t *m, int y, int x, int out[3][2]);

/* Thread pool: fn(arg, index) for index in [0, n), results must not depend on the order. */
typedef struct pool pool_t;
pool_t *pool_create(int threads);
void pool_destroy(pool_t *p);
/* fn(arg, 0 .. n-1) on the pool's threads; with p NULL all on the caller (a pool's task may not
 * call pool_run on its own pool). */
void pool_run(pool_t *p, int n, void (*fn)(void *arg, int index), void *arg);
int pool_threads(const pool_t *p);

/* Estimated costs of the tier-0 motion syntax in 1/16 bit, from the contexts' current state
 * (entropy.c), for the encoder's rate-distortion choices. */
#define MVC_N 64 /* |vector difference| with a tabulated cost; larger ones are extrapolated */
typedef struct {
    uint16_t merge[3][2]; /* merge flag by context and value */
    uint16_t midx[3];     /* merge index 0, 1, 2 */
    uint16_t split[3][2]; /* split flag by context and value */
    uint16_t split8[3][2]; /* 8x8 split flag of a 16x16 partition by context and value */
    uint16_t mvd[2][3][MVC_N]; /* vector component by component, zero-flag context and |difference|
                                  in quarter-pels */
} mv_rates;

/* Motion (motion.c). */
typedef struct {
    const picture_t *cur, *ref;
    const motion_t *prev;
    motion_t *out;
    int lambda, intra_bias, range, exit_sad; /* exit_sad: luma SAD of a macroblock that stops the search */
    int qpel, merge, split, split8;          /* tools: quarter-pel refinement, merge mode, 16x16 / 8x8 split */
    int subpel;                              /* half-pel refinement: 0 none, 1 five points, 2 all eight */
    const mv_rates *rates;                   /* NULL: a fixed Exp-Golomb-like estimate */
    volatile int *row_done; /* wavefront progress, one counter per macroblock row */
} me_job;
void motion_estimate_row(me_job *job, int mby);
void motion_compensate_row(const motion_t *m, const picture_t *ref, picture_t *dst, int mby);

/* Synthesis (synthesis.c). */
typedef struct {
    int32_t row[8][16];
    int32_t col[8][8][16]; /* per horizontal frequency u (group filters expanded) */
    int32_t coarse[4][4][4];
    int n; /* block size: 8 luma, 4 chroma */
    /* the same row and column weights in int16, pair-interleaved for simd.h's synthesis kernels:
       row2[(p * 2n + t) * 2 + e] = row[2p + e][t], col2[u][...] likewise over v */
    int16_t row2[128];
    int16_t col2[8][128];
} plane_weights;

typedef struct {
    int w, h;           /* plane size */
    int hb, wb;         /* block grid */
    int32_t *canvas;    /* (h + n) x (w + n), zero between uses */
    ptrdiff_t cstride;
    int32_t *dc;        /* hb * wb */
    uint8_t *nz;        /* hb * wb: block has any non-zero coefficient after the DC stage */
    uint8_t *touched;   /* per block tile of the plane: some coded block's window reaches it */
    int *runs;          /* wb + 1 pairs: the runs of touched tiles of one tile row (synth_rolling) */
    int32_t *ring;      /* 2n canvas rows, canvas row y at ring row y mod 2n (synth_rolling), zero between uses */
    int blocks;         /* blocks synthesised by the last call */
    int band_i, band_y; /* synthesize_band(): the next block row to synthesise, row to finish */
} synth_plane;

int synth_plane_alloc(synth_plane *s, int w, int h, int n);
void synth_plane_free(synth_plane *s);
void weights_expand(const snis_weights *w, plane_weights *luma, plane_weights *chroma);
/* Add the synthesised residual of dequantised latents (1/4 pixel) to dst (one thread; planes
 * are independent and may run in parallel). */
void synthesize_add(synth_plane *s, const plane_weights *pw, const int16_t *ac,
                    const uint8_t *f_ac, int stride_ac, const int16_t *k, const uint8_t *f_k,
                    plane_t *dst);
/* The same synthesis, band by band (macroblock rows of 4 block rows): after the call for band
 * b, the rows of dst that no later band's latents reach are final, dst = pred + synthesis,
 * bit-identical to synthesize_add() on pred. Call with band = 0, 1, ... in turn; the last band
 * finishes the plane and leaves the canvas clear. Returns the first row not yet final. */
int synthesize_band(synth_plane *s, const plane_weights *pw, const int16_t *ac, const uint8_t *f_ac, int stride_ac,
                    const int16_t *k, const uint8_t *f_k, int band, const plane_t *pred, plane_t *dst);

/* Entropy coding (entropy.c): one syntax function for both directions. */
#define N_CONTEXTS 1883
typedef struct {
    uint16_t p[N_CONTEXTS][2];
} tier_contexts;
/* Every context of tier `tier` at its initial probability (context_init.h), as at a keyframe or key picture. */
void contexts_reset(tier_contexts *c, int tier);
/* Each context's probability of a 0 (mean of its two estimates, PROB_BITS bits), for the tool
 * that derives the initial probabilities (tools/make_context_init.py). */
void contexts_export(const tier_contexts *c, uint16_t *out);
/* qpel: the rates of quarter-pel vector differences (else half-pel ones, odd |d| unpriced) */
void motion_rates(const tier_contexts *c, int qpel, mv_rates *r);

typedef struct {
    uint8_t *buf;
    size_t cap, pos;
    const uint8_t *in;
    size_t in_len;
    uint64_t low;
    uint32_t range, code;
    uint8_t cache;
    uint64_t cache_size;
    int decoding;
    size_t overrun;
    int error;
} rangecoder;

int rc_encoder_init(rangecoder *rc, size_t capacity);
void rc_decoder_init(rangecoder *rc, const uint8_t *data, size_t len);
int rc_finish(rangecoder *rc, size_t *len); /* encoder: flush; payload is buf[0 .. len) */
void rc_free(rangecoder *rc);

typedef struct {
    int tier, frame_type;
    motion_t *motion;      /* tier 0 codes it, the others read it */
    latents_t *q;          /* this tier */
    const latents_t *lower; /* the lower tiers' sum (flags and values), NULL for tier 0 */
    tier_contexts *ctx;
    int nz;              /* out: non-zero levels coded */
    uint64_t motion_q8; /* out, encoder: tier 0's macroblock modes and vectors, 1/256 bit */
} tier_job;
int code_tier(rangecoder *rc, tier_job *job);
/* Encoder estimate from a tier's current contexts (read only): the bits, in 1/256, of coding a
 * block of class cls (0 luma AC, 1 chroma AC, 2 luma coarse, 3 chroma coarse) with these levels,
 * lower = the tier below's levels of the block or NULL; *uncoded_q8: of not coding it. Contexts
 * that depend on neighbouring blocks are taken as one coded neighbour, nothing coded there. */
int block_rate_q8(const tier_contexts *ctx, int cls, const int16_t *lev, const int16_t *lower, int pm,
                  int *uncoded_q8);
/* Encoder: rate-aware rounding of one block's latents v (1/16 pixel) to magnitudes mag: along
 * the scan each chooses floor(|v|/step) or one more by squared error * 256 + lam x bits (1/256);
 * down: mag holds levels on entry, and each chooses between its level and one less. */
void rd_round_block(const tier_contexts *ctx, int cls, const int32_t *v, const int32_t *steps, const int32_t *mmax,
                    int64_t lam, const int16_t *lower, int32_t *mag, int down);
#define MAX_OVERRUN 16
#define MAX_TRIM 8 /* trailing zero bytes an encoder may omit: well inside MAX_OVERRUN */

/* Quantisation (quant.c). */
void channel_steps(int step16, int n, int32_t *steps);
/* The qp a macroblock quantises at: the frame's qp plus its adaptive-quantisation offset. */
static inline int mb_qp(int qp, int dqp) { return clampi(qp + dqp, 0, 63); }
/* sum (+)= tier `tier` of q dequantised with each macroblock's step (m: the frame's offsets). */
void dequantize_add(latents_t *sum, const latents_t *q, const motion_t *m, int qp, int tier, int tiers, int ratio,
                    int first);
/* The same for one plane's latents (0: luma, 1: U, 2: V): the planes are independent. */
void dequantize_add_plane(latents_t *sum, const latents_t *q, const motion_t *m, int qp, int tier, int tiers,
                          int ratio, int first, int plane);
/* dequantize_add(first = 1) of the block rows of macroblock row mby only, all at step16 (a frame
 * without adaptive quantisation: keyframes). */
void dequantize_mb_row(latents_t *sum, const latents_t *q, const motion_t *m, int step16, int mby); /* m->aq = 0 */

double now_us(void);

#endif
