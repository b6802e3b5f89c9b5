/* SNIS-896 native core: the public C API.
 *
 * One encoder or decoder instance per stream; no global state, so instances on different
 * threads never interfere. All arithmetic that reaches the bitstream or the reconstruction is
 * integer, so x86-64 and aarch64 produce the same bytes and the same pictures.
 *
 * The encoder runs in two stages around the analysis transform, which is the int8 LiteRT model
 * run by the caller: snis_encoder_predict() does motion estimation and compensation and writes
 * the padded int8 residual the model reads; snis_encoder_code() quantises the model's latents
 * into every tier, entropy-codes them and reconstructs. The decoder is one call per frame.
 */
#ifndef SNIS_H
#define SNIS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SNIS_MAX_TIERS 8
#define SNIS_MAX_THREADS 16
#define SNIS_FRAC 12 /* fractional bits of the fixed-point synthesis weights */
#define SNIS_ALIGN 32 /* pictures are padded to a multiple of this (the macroblock size) */
#define SNIS_LUMA_CTX 12 /* samples of symmetric padding around the luma residual */
#define SNIS_CHROMA_CTX 6

enum snis_status {
    SNIS_OK = 0,
    SNIS_E_NOMEM = -1,
    SNIS_E_ARG = -2,     /* a caller error: sizes, tier counts, null pointers */
    SNIS_E_CORRUPT = -3, /* a payload decodes to an impossible value */
    SNIS_E_TRUNCATED = -4, /* a payload ends long before its syntax does */
};

enum snis_frame_type {
    SNIS_FRAME_I = 0, /* keyframe: no prediction across frames */
    SNIS_FRAME_P = 1, /* predicted from the previous reconstruction */
    SNIS_FRAME_K = 2, /* key picture: predicted from the base tier of the last I or K frame */
    SNIS_FRAME_KC = 3, /* the same with a coarse base: tiers spread by tier_step_log2, not key_step_log2 */
};
#define SNIS_IS_KEY_PICTURE(t) ((t) == SNIS_FRAME_K || (t) == SNIS_FRAME_KC)

/* Synthesis weights in SNIS_FRAC-bit fixed point; |w| < 2.0 (checked). */
typedef struct {
    int32_t luma_row[8][16];
    int32_t luma_col[4][8][16];
    int32_t luma_coarse[4][4][4];
    int32_t chroma_row[4][8];
    int32_t chroma_col[3][4][8];
    int32_t chroma_coarse[4][4][4];
} snis_weights;

typedef struct {
    int width, height;  /* luma size, even */
    int tiers;          /* 1..SNIS_MAX_TIERS */
    int tier_step_log2; /* step ratio between adjacent tiers in 1/8 octaves, 0..64 */
    int threads;        /* 1..SNIS_MAX_THREADS; the output does not depend on it */
    int key_step_log2;  /* the same ratio at keyframes and key pictures (whose base tier every
                           decoder's next key picture predicts from), 0..64; 0: the base tier
                           carries them whole */
} snis_params;

/* Encoder choices that never change the decoder: the stream stays the same syntax. */
typedef struct {
    int round_intra;  /* dead-zone rounding offsets in 1/64 of a step */
    int round_inter;
    int round_lower;  /* tiers below the top, which later tiers refine */
    int lambda_q4;    /* motion lambda per unit of quantiser step, in 1/16 */
    int intra_bias;   /* lambda-weighted bits an intra macroblock must win by */
    int skip_sad_q8;  /* a macroblock whose mean |residual| is below this (1/256 of the top step;
                         half of it in a single-tier stream)
                         codes nothing and is not quantised */
    int me_exit_q4;   /* motion search stops at the predicted vector when its mean |residual| is
                         below this (1/16 pixel) */
    int search_range; /* integer-pel search limit */
    int key_sad_q4;   /* a key picture whose mean |residual| exceeds this (1/16 pixel) gets a coarse
                         base (SNIS_FRAME_KC); 0, the default: never (a fine base, the next key
                         picture's reference at full quality, pays on every clip measured) */
    int decimate;     /* a tier's block of at most this many +-1 levels is dropped when lambda times
                         their estimated bits exceeds the distortion they remove; 0: never */
    int rd_lambda_q8; /* lambda of the coefficient decisions: 1/256 of a squared tier step per bit */
    int rdoq;         /* 1: each level chooses between its two nearest values by distortion + lambda
                         x bits (rate-aware rounding) instead of the fixed dead zone */
    int mb_rd;        /* 1: a macroblock whose coded levels (all tiers) are worth less than lambda
                         times their estimated bits codes nothing */
    int aq_strength;  /* adaptive quantisation, in 1/16: a macroblock's qp offset is this times the
                         log2 of its prediction's luma variance over the frame's mean log2 variance (flat areas
                         finer, busy textures coarser); 0: off (docs/BITSTREAM.md) */
    int intra_pred;   /* 1: intra macroblocks choose an intra prediction mode, keyframes are coded in
                         bands (snis_encoder_intra_begin()); 2: only in key pictures (keyframes and
                         P-frames as 0); 0: every intra macroblock predicts grey */
    int qpel;         /* motion tools, 0 = off: 1 = quarter-pel refinement (else half-pel vectors), */
    int merge;        /* 1 = the merge mode (a neighbour's vector for a flag and an index), */
    int split;        /* 16x16 partitions with their own vectors: 1 = tried where one vector leaves a
                         mean |residual| above twice me_exit_q4, 2 = tried everywhere, 3 = as 1 and
                         only where another search candidate fits a 16x16 quadrant clearly better, 4 =
                         as 1 after a P-frame whose search found the camera still (aq_still), else as 3; */
    int rd_rates;     /* 1: motion decisions weigh the bits the contexts predict, 0: a fixed estimate */
    int split8;       /* 8x8 partitions inside a 16x16 one (only where split is tried): 1 = tried where
                         the 16x16 vector leaves a mean |residual| above me_exit_q4, 2 = everywhere,
                         3 = as 1 but only inside a macroblock whose split has won against one
                         vector, 4 = as 3 after a P-frame whose search found the camera still
                         (aq_still), else none */
    int subpel;       /* half-pel refinement around the full-pel vector: 0 = none, 1 = the four axial
                         neighbours and the diagonal between the better two, 2 = all eight */
    int obmc;         /* 1: P-frames blend the luma prediction across the edges of cells whose
                         vectors differ (overlapped block motion compensation), 2: only a P-frame
                         whose search found the camera still (aq_still) after one that did too,
                         0: block edges */
    int round_base;   /* rounding (1/64 of a step) of the non-zero AC levels of the base tier of
                         P-frames and key pictures when higher tiers refine it: round_lower's dead
                         zone decides which latents the base codes, this how finely it codes them
                         (32: to the nearest level); 0, or anything not above round_lower: the dead
                         zone's. The coarse latents keep the dead zone (docs/BENCHMARKS.md) */
    int round_key;    /* the same for the base tier of keyframes (every tier count): round_intra's dead
                         zone decides which AC latents are coded, this how finely (32: to the
                         nearest); 0, or anything not above round_intra: the dead zone's */
    int key_intra_bias; /* intra_bias in key pictures, whose reference is a second old and whose
                           intra macroblocks predict from their neighbours (intra_pred) */
    int aq_still;       /* aq_strength only in a P-frame or key picture where at least aq_still/64 of
                           the macroblocks are inter with every vector zero (a still camera); 0: in
                           every one. The same test gates split 4 and obmc 2 */
} snis_tuning;

typedef struct {
    const uint8_t *plane[3];
    ptrdiff_t stride[3];
} snis_image_in;

typedef struct {
    uint8_t *plane[3];
    ptrdiff_t stride[3];
} snis_image_out;

/* One int8 latent tensor of the analysis output: element (i, j, c) is at
 * data[i * stride_i + j * stride_j + c] (plus stride_p per chroma plane). Its value in 1/16
 * pixel units is ((q - zp[c]) * mult[c] + 2^15) >> 16. */
typedef struct {
    const int8_t *data;
    ptrdiff_t stride_p, stride_i, stride_j;
    int32_t mult[64];
    int32_t zp[64];
} snis_latent_tensor;

typedef struct {
    snis_latent_tensor y_ac;     /* (Hp/8, Wp/8, 63), channel u*8+v-1 */
    snis_latent_tensor y_coarse; /* (Hp/16, Wp/16, 4) */
    snis_latent_tensor c_ac;     /* (2, Hp/8, Wp/8, 15), channel u*4+v-1 */
    snis_latent_tensor c_coarse; /* (2, Hp/16, Wp/16, 4) */
} snis_latents;

/* Stage times of the last frame in microseconds, and counters. */
typedef struct {
    double motion_us, predict_us, quantize_us, entropy_us, synthesis_us;
    int skipped_mbs, intra_mbs, total_mbs;
    int synth_blocks, total_blocks; /* luma blocks the last synthesis touched, of all */
    int error_tier; /* decoder: the tier whose payload failed in the last call, or -1 */
    int frame_type; /* encoder: the type the last frame was coded as (a K may become a KC) */
    int nz_levels[SNIS_MAX_TIERS]; /* encoder: non-zero levels each tier coded in the last frame */
    double motion_bits; /* encoder: bits of the last frame's macroblock modes and vectors (tier 0) */
    int motion_tools;   /* the motion tools (bitstream bits, 1 qpel .. 16 obmc) the last prediction used */
} snis_stats;

typedef struct snis_encoder snis_encoder;
typedef struct snis_decoder snis_decoder;

void snis_default_tuning(snis_tuning *t);
/* Quantiser step of a tier in 1/16 pixel units (exact integer, the same everywhere). */
int snis_step16(int qp, int tier, int tiers, int tier_step_log2);
/* The step ratio a frame of this type uses. */
int snis_frame_ratio(const snis_params *p, int frame_type);

snis_encoder *snis_encoder_create(const snis_params *p, const snis_weights *w, const snis_tuning *t,
                                  int *status);
void snis_encoder_destroy(snis_encoder *e);
/* Stage 1. ypad: (Hp+24) x (Wp+24) int8, row stride ypad_stride; uvpad: 2 planes of
 * (Hp/2+12) x (Wp/2+12), row stride uv_stride, plane stride uv_plane_stride. */
int snis_encoder_predict(snis_encoder *e, const snis_image_in *frame, int frame_type, int qp,
                         int8_t *ypad, ptrdiff_t ypad_stride, int8_t *uvpad, ptrdiff_t uv_stride,
                         ptrdiff_t uv_plane_stride);
/* Stage 2. After it, snis_encoder_payload() gives each tier's entropy-coded payload. After a
 * keyframe coded in bands, lat holds the latents of the last band only (as intra_band()). */
int snis_encoder_code(snis_encoder *e, const snis_latents *lat);
/* A keyframe with intra prediction replaces stage 1 by bands of one macroblock row (32 luma
 * rows), each predicted from the reconstruction of the bands above, so the analysis runs once
 * per band: intra_begin(), then for band = 0 .. Hp/32-1 intra_band() (lat: the latents of band-1,
 * NULL for band 0) and the analysis of the strip it wrote, then snis_encoder_code() with the last
 * band's latents. Strips: luma (32+24) x (Wp+24), chroma 2 planes of (16+12) x (Wp/2+12), the
 * residual of the band with its analysis context, laid out as the padded residual of stage 1;
 * latents: those of a 32-row picture. */
int snis_encoder_intra_begin(snis_encoder *e, const snis_image_in *frame, int qp);
int snis_encoder_intra_band(snis_encoder *e, int band, const snis_latents *lat, int8_t *ystrip, ptrdiff_t ys,
                            int8_t *uvstrip, ptrdiff_t uvs, ptrdiff_t uvps);
const uint8_t *snis_encoder_payload(const snis_encoder *e, int tier, size_t *len);
/* The encoder's reconstruction of the last frame with `tiers` tiers: the picture a decoder
 * shows that has all tiers < `tiers` of this frame and every tier of the frames before it
 * (`tiers` = all: exactly what every full decoder shows). Cropped to width x height. */
int snis_encoder_reconstruction(snis_encoder *e, int tiers, snis_image_out *out);
void snis_encoder_stats(const snis_encoder *e, snis_stats *s);
/* Tier `tier`'s context probabilities after the last frame (probability of a 0 in 1/32768), for
 * deriving the initial ones (tools/make_context_init.py): writes min(n, count) values, returns
 * the count, or -1 for a tier the stream does not have. */
int snis_encoder_contexts(const snis_encoder *e, int tier, uint16_t *out, size_t n);

snis_decoder *snis_decoder_create(const snis_params *p, const snis_weights *w, int *status);
void snis_decoder_destroy(snis_decoder *d);
/* Decode tiers 0..ntiers-1 of one frame (payloads without the chunk headers). The reference
 * for the next frame is the picture of all ntiers tiers; `out` receives the picture of the
 * first show_tiers tiers (show_tiers = ntiers normally). On an error nothing is written and
 * the reference is left unchanged. */
int snis_decoder_decode(snis_decoder *d, int frame_type, int qp, int ntiers, const uint8_t *const payload[],
                        const size_t len[], int show_tiers, snis_image_out *out);
void snis_decoder_stats(const snis_decoder *d, snis_stats *s);

#ifdef __cplusplus
}
#endif
#endif
