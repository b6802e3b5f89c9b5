/* SNIS encoder: motion, residual, embedded quantisation of every tier, entropy coding and the
 * shared reconstruction. The analysis transform runs between snis_encoder_predict() and
 * snis_encoder_code() (the caller's int8 LiteRT model). */
#include <stdlib.h>

#include "intra.h"
#include "loop.h"
#include "rangecoder.h"
#include "simd.h"

typedef struct quant_set quant_set;
static size_t sizeof_quant_set(void);

struct snis_encoder {
    loop_t l;
    quant_set *qsets; /* AQ_N: the step tables of every macroblock qp offset */
    snis_tuning t;
    picture_t cur;
    uint8_t *buf[SNIS_MAX_TIERS];
    size_t cap[SNIS_MAX_TIERS], len[SNIS_MAX_TIERS];
    int frame_type, qp, predicted;
    int was_still; /* the last P-frame's motion search found the camera still (aq_still) */
    volatile int *row_done;
    /* residual output of stage 1 */
    int8_t *ypad, *uvpad;
    ptrdiff_t ys, uvs, uvps;
    /* a keyframe coded in bands (snis_encoder_intra_begin) */
    int band_open, band, lambda;
    struct quant_job *bq; /* quantiser tables of the bands */
};

void snis_default_tuning(snis_tuning *t)
{
    t->round_intra = 24; /* 0.38 */
    t->round_inter = 8;  /* 0.125 (10, 0.16, before the sweep of docs/BENCHMARKS.md) */
    t->round_lower = 10;
    t->lambda_q4 = 16;   /* 1.0 x step */
    t->intra_bias = 96;
    t->key_intra_bias = 32; /* key pictures: intra at a third of the bias (docs/BENCHMARKS.md "Intra prediction") */
    t->skip_sad_q8 = 16; /* mean |residual| below 1/16 of the top step, 1/32 with one tier (docs/BENCHMARKS.md "The skip threshold") */
    t->me_exit_q4 = 12;  /* 0.75 pixel */
    t->search_range = 64;
    t->key_sad_q4 = 0;   /* every key picture's base fine (48, 3 pixels, until docs/BENCHMARKS.md "The key picture's base") */
    t->decimate = 0;
    t->rd_lambda_q8 = 40;
    t->rdoq = 0;
    t->mb_rd = 0; /* 4 in the slower presets (snisd/codec/presets.py) */
    t->aq_strength = 8;  /* x264's direction (flat areas finer), ... */
    t->aq_still = 48;    /* ... only where the camera is still: everywhere it does not generalise
                            (docs/BENCHMARKS.md "Adaptive quantisation") */
    t->intra_pred = 2; /* key pictures only: elsewhere it does not pay (docs/BENCHMARKS.md "Intra prediction") */
    t->qpel = 0; /* measured not to pay (docs/BENCHMARKS.md, "Compression tools") */
    t->merge = 1;
    t->split = 4; /* after a still P-frame as 1, else where another candidate fits a quadrant (1 in the slower presets) */
    t->split8 = 4; /* after a still P-frame, inside a split that won (docs/BENCHMARKS.md) */
    t->subpel = 1;
    t->obmc = 2; /* where the camera is still (1 in the slower presets: 1-2.5 % fewer bits for about 6 % more time, docs/BENCHMARKS.md) */
    t->round_base = 32; /* the base tier 3.5-5.4 % fewer bits at equal VMAF, PSNR-Y and SSIM within 1 % (docs/BENCHMARKS.md) */
    t->round_key = 32;  /* the fixed cameras' streams 6-8 % fewer bits at equal VMAF, PSNR-Y and SSIM within 1.2 % (docs/BENCHMARKS.md) */
    t->rd_rates = 1;
}

snis_encoder *snis_encoder_create(const snis_params *p, const snis_weights *w, const snis_tuning *t, int *status)
{
    snis_encoder *e = (snis_encoder *)calloc(1, sizeof(*e));
    int st = e ? loop_init(&e->l, p, w) : SNIS_E_NOMEM;
    if (st == SNIS_OK && picture_alloc(&e->cur, e->l.wp, e->l.hp))
        st = SNIS_E_NOMEM;
    if (st == SNIS_OK) {
        e->row_done = (volatile int *)calloc((size_t)e->l.mbh, sizeof(int));
        e->qsets = (quant_set *)calloc(AQ_N, sizeof_quant_set());
        if (!e->row_done || !e->qsets)
            st = SNIS_E_NOMEM;
    }
    if (st == SNIS_OK) {
        if (t)
            e->t = *t;
        else
            snis_default_tuning(&e->t);
        e->t.search_range = clampi(e->t.search_range, 1, BORDER - 8); /* the filter reads 3 samples beyond */
        for (int k = 0; k < p->tiers; k++) {
            e->cap[k] = 1 << 16;
            e->buf[k] = (uint8_t *)malloc(e->cap[k]);
            if (!e->buf[k])
                st = SNIS_E_NOMEM;
        }
    }
    if (st != SNIS_OK) {
        if (e) {
            loop_free(&e->l);
            picture_free(&e->cur);
            free((void *)e->row_done);
            free(e->qsets);
            for (int k = 0; k < SNIS_MAX_TIERS; k++)
                free(e->buf[k]);
            free(e);
        }
        if (status)
            *status = st;
        return NULL;
    }
    if (status)
        *status = SNIS_OK;
    return e;
}

void snis_encoder_destroy(snis_encoder *e)
{
    if (!e)
        return;
    loop_free(&e->l);
    picture_free(&e->cur);
    free((void *)e->row_done);
    free(e->qsets);
    free(e->bq);
    for (int k = 0; k < SNIS_MAX_TIERS; k++)
        free(e->buf[k]);
    free(e);
}

/* ------------------------------------------------------------------------------------------ */
/* Stage 1 */

static void load_input(snis_encoder *e, const snis_image_in *in)
{
    const snis_params *p = &e->l.p;
    for (int c = 0; c < 3; c++) {
        plane_t *d = &e->cur.p[c];
        int w = c ? p->width / 2 : p->width, h = c ? p->height / 2 : p->height;
        for (int y = 0; y < d->h; y++) {
            const uint8_t *s = in->plane[c] + (y < h ? y : h - 1) * in->stride[c];
            uint8_t *row = d->data + y * d->stride;
            memcpy(row, s, (size_t)w);
            if (d->w > w)
                memset(row + w, s[w - 1], (size_t)(d->w - w));
        }
    }
}

static void me_row(void *arg, int mby) { motion_estimate_row((me_job *)arg, mby); }

/* The motion tools a frame's decisions use (MT_*): what the frame header of tier 0 announces, so
 * a tool that was not used costs no bits (no flags; half-pel differences if no vector is odd). */
static int motion_tools_used(const motion_t *m)
{
    int t = 0;
    size_t n = (size_t)m->mbw * m->mbh;
    for (size_t i = 0; i < n; i++) {
        if (m->merge[i])
            t |= MT_MERGE;
        if (m->split[i])
            t |= MT_SPLIT;
        if (m->split[i] & ~1)
            t |= MT_SPLIT8;
    }
    for (size_t j = 0; j < 32 * n; j++)
        if (m->smv[j] & 1)
            t |= MT_QPEL;
    return t;
}

typedef struct {
    snis_encoder *e;
    uint32_t skip_sad[AQ_N]; /* per macroblock qp offset: the threshold scales with the step */
    int allow_skip;
} res_job;

_Static_assert(SNIS_ALIGN % 32 == 0, "residual_row takes luma and chroma rows 16 samples at a time");

/* Residual of one macroblock row into the padded int8 buffers, and the skip decision. */
SNIS_HOT static void residual_row(void *arg, int mby)
{
    res_job *j = (res_job *)arg;
    snis_encoder *e = j->e;
    loop_t *l = &e->l;
    int mbw = l->mbw;
    for (int c = 0; c < 3; c++) {
        const plane_t *x = &e->cur.p[c], *pr = &l->pred.p[c];
        int size = c ? MB / 2 : MB, ctx = c ? SNIS_CHROMA_CTX : SNIS_LUMA_CTX, w = x->w;
        int8_t *base = c ? e->uvpad + (c - 1) * e->uvps : e->ypad;
        ptrdiff_t rs = c ? e->uvs : e->ys;
        for (int y = mby * size; y < (mby + 1) * size; y++) {
            const uint8_t *xr = x->data + y * x->stride, *pp = pr->data + y * pr->stride;
            int8_t *o = base + (y + ctx) * rs + ctx;
            for (int xx = 0; xx < w; xx += 16) /* plane widths are multiples of 16 (SNIS_ALIGN) */
                diff_sat16(xr + xx, pp + xx, o + xx);
        }
    }
    for (int mbx = 0; mbx < mbw; mbx++) {
        int i = mby * mbw + mbx;
        uint32_t sad = 0;
        uint32_t skip_sad = j->skip_sad[l->motion.aq ? l->motion.dqp[i] + AQ_MAX : AQ_MAX];
        {
            const plane_t *x = &e->cur.p[0], *pr = &l->pred.p[0];
            sad = sad32(x->data + mby * MB * x->stride + mbx * MB, x->stride,
                        pr->data + mby * MB * pr->stride + mbx * MB, pr->stride, MB, 1);
            for (int c = 1; c < 3 && sad < skip_sad; c++) { /* chroma only matters near the threshold */
                const plane_t *xc = &e->cur.p[c], *pc = &l->pred.p[c];
                sad += sad16(xc->data + mby * (MB / 2) * xc->stride + mbx * (MB / 2), xc->stride,
                             pc->data + mby * (MB / 2) * pc->stride + mbx * (MB / 2), pc->stride, MB / 2, 1);
            }
        }
        l->motion.skip[i] = (uint8_t)(j->allow_skip && sad < skip_sad);
        l->motion.sad[i] = sad;
    }
}

/* Symmetric extension (the edge sample repeated) of a residual plane by ctx samples. */
static void pad_symmetric(int8_t *base, ptrdiff_t rs, int w, int h, int ctx)
{
    for (int y = 0; y < h; y++) {
        int8_t *row = base + (y + ctx) * rs;
        for (int m = 0; m < ctx; m++) {
            row[ctx - 1 - m] = row[ctx + m];
            row[ctx + w + m] = row[ctx + w - 1 - m];
        }
    }
    for (int m = 0; m < ctx; m++) {
        memcpy(base + (ctx - 1 - m) * rs, base + (ctx + m) * rs, (size_t)(w + 2 * ctx));
        memcpy(base + (ctx + h + m) * rs, base + (ctx + h - 1 - m) * rs, (size_t)(w + 2 * ctx));
    }
}

/* Macroblocks that are inter with every vector zero: a still camera's share (aq_still). */
static int still_mbs(const motion_t *m)
{
    int n = 0;
    for (int y = 0; y < m->mbh; y++)
        for (int x = 0; x < m->mbw; x++) {
            if (m->intra[(size_t)y * m->mbw + x])
                continue;
            int moving = 0;
            for (int q = 0; q < 16 && !moving; q++) {
                const int16_t *v = sub_mv(m, 4 * y + q / 4, 4 * x + q % 4);
                moving = v[0] || v[1];
            }
            n += !moving;
        }
    return n;
}

/* lambda = scale * sqrt(base * top step), in SAD per bit */
static int frame_lambda(const snis_encoder *e, int top, int base)
{
    double lam = e->t.lambda_q4 / 16.0;
    uint64_t bt = (uint64_t)base * (uint64_t)top;
    uint64_t r = 0;
    while ((r + 1) * (r + 1) <= bt)
        r++;
    int lambda = (int)(lam * (double)r / 16.0 + 0.5);
    return lambda < 1 ? 1 : lambda;
}

int snis_encoder_predict(snis_encoder *e, const snis_image_in *frame, int frame_type, int qp, int8_t *ypad,
                         ptrdiff_t ypad_stride, int8_t *uvpad, ptrdiff_t uv_stride, ptrdiff_t uv_plane_stride)
{
    if (!e || !frame || !ypad || !uvpad || frame_type < 0 || frame_type > SNIS_FRAME_K || qp < 0 || qp > 63)
        return SNIS_E_ARG;
    loop_t *l = &e->l;
    if (ypad_stride < l->wp + 2 * SNIS_LUMA_CTX || uv_stride < l->wp / 2 + 2 * SNIS_CHROMA_CTX ||
        uv_plane_stride < uv_stride * (l->hp / 2 + 2 * SNIS_CHROMA_CTX))
        return SNIS_E_ARG;
    double t0 = now_us();
    e->frame_type = frame_type;
    e->qp = qp;
    e->ypad = ypad;
    e->uvpad = uvpad;
    e->ys = ypad_stride;
    e->uvs = uv_stride;
    e->uvps = uv_plane_stride;
    load_input(e, frame);
    picture_extend(&e->cur);
    int ratio = snis_frame_ratio(&l->p, frame_type);
    int top = snis_step16(qp, l->p.tiers - 1, l->p.tiers, ratio);
    int base = snis_step16(qp, 0, l->p.tiers, ratio);
    /* skip threshold: mean |residual| per sample below skip_sad_q8/256 of the top step (in pixels);
       half of that in a single-tier stream, which has no thinned decoder whose drift a skip spares */
    uint32_t skip_sad = (uint32_t)((uint64_t)MB * MB * 3 / 2 * (uint64_t)top * (uint64_t)e->t.skip_sad_q8 /
                                   (l->p.tiers > 1 ? 4096u : 8192u));
    uint32_t me_exit = (uint32_t)((uint64_t)MB * MB * (uint64_t)e->t.me_exit_q4 / 16);
    int lambda = frame_lambda(e, top, base);
    if (frame_type != SNIS_FRAME_I) {
        for (int r2 = 0; r2 < l->mbh; r2++)
            e->row_done[r2] = 0;
        /* the rates of the motion syntax in the contexts it will be coded with (reset at key pictures) */
        mv_rates rates;
        tier_contexts fresh;
        const tier_contexts *tc = &l->ctx[0];
        if (frame_type != SNIS_FRAME_P) {
            contexts_reset(&fresh, 0);
            tc = &fresh;
        }
        motion_rates(tc, e->t.qpel, &rates);
        me_job job = {&e->cur, SNIS_IS_KEY_PICTURE(frame_type) ? &l->keyref : &l->ref, &l->prev_motion, &l->motion,
                      lambda, SNIS_IS_KEY_PICTURE(frame_type) ? e->t.key_intra_bias : e->t.intra_bias,
                      e->t.search_range, (int)me_exit,
                      e->t.qpel, e->t.merge, e->t.split == 4 ? (e->was_still ? 1 : 3) : e->t.split, e->t.split8 == 4 ? (e->was_still ? 3 : 0) : e->t.split8, e->t.subpel, e->t.rd_rates ? &rates : NULL,
                      e->row_done};
        pool_run(l->pool, l->mbh, me_row, &job);
    }
    /* a still camera (aq_still): the gate of adaptive quantisation, of the blend (obmc 2: this
       P-frame and the one before still) and of the next frame's split search (split 4) */
    int still = frame_type != SNIS_FRAME_I &&
                (e->t.aq_still == 0 || 64 * still_mbs(&l->motion) >= e->t.aq_still * l->mbw * l->mbh);
    int blend = e->t.obmc == 1 || (e->t.obmc == 2 && still && e->was_still);
    e->was_still = still;
    if (frame_type != SNIS_FRAME_I)
        l->motion.tools = motion_tools_used(&l->motion) | (blend ? MT_OBMC : 0);
    double t1 = now_us();
    if (e->band_open) { /* a keyframe in bands was abandoned */
        loop_clear_synthesis(l);
        e->band_open = 0;
    }
    if (frame_type == SNIS_FRAME_I) {
        memset(l->motion.imode, INTRA_GREY, (size_t)l->mbw * l->mbh);
        l->ipred_valid = 0;
    }
    /* adaptive quantisation (loop_predict derives the offsets): not on keyframes, whose grey
       prediction says nothing about the picture */
    l->motion.aq = frame_type == SNIS_FRAME_I ? 0 : clampi(e->t.aq_strength, -AQ_STRENGTH_MAX - 1, AQ_STRENGTH_MAX);
    if (!still)
        l->motion.aq = 0;
    loop_predict(l, frame_type, &e->cur, lambda,
                 e->t.intra_pred == 1 || (e->t.intra_pred == 2 && SNIS_IS_KEY_PICTURE(frame_type)));
    res_job rj;
    rj.e = e;
    rj.allow_skip = frame_type != SNIS_FRAME_I;
    for (int d = -AQ_MAX; d <= AQ_MAX; d++) /* the skip threshold follows the macroblock's top step */
        rj.skip_sad[d + AQ_MAX] = d == 0 || !l->motion.aq ? skip_sad
            : (uint32_t)((uint64_t)skip_sad * (uint64_t)snis_step16(mb_qp(qp, d), l->p.tiers - 1, l->p.tiers, ratio) /
                         (uint64_t)top);
    pool_run(l->pool, l->mbh, residual_row, &rj);
    pad_symmetric(ypad, ypad_stride, l->wp, l->hp, SNIS_LUMA_CTX);
    for (int c = 0; c < 2; c++)
        pad_symmetric(uvpad + c * uv_plane_stride, uv_stride, l->wp / 2, l->hp / 2, SNIS_CHROMA_CTX);
    int skipped = 0, intra = 0;
    for (int i = 0; i < l->mbw * l->mbh; i++) {
        skipped += l->motion.skip[i];
        intra += l->motion.intra[i];
    }
    if (frame_type == SNIS_FRAME_K && e->t.key_sad_q4 > 0) {
        /* moving content: the key picture's base stays coarse (see snis_tuning.key_sad_q4) */
        uint64_t sad = 0;
        for (int i = 0; i < l->mbw * l->mbh; i++)
            sad += l->motion.sad[i];
        if (sad * 16 > (uint64_t)e->t.key_sad_q4 * (uint64_t)l->wp * l->hp)
            e->frame_type = SNIS_FRAME_KC;
    }
    l->stats.frame_type = e->frame_type;
    l->stats.skipped_mbs = skipped;
    l->stats.intra_mbs = intra;
    l->stats.motion_us = t1 - t0;
    l->stats.predict_us = now_us() - t1;
    e->predicted = 1;
    return SNIS_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Stage 2: quantisation of every tier (embedded: tier k quantises what tiers < k left). */

/* Per-tier steps of one kind of block. The encoder's quantisation is integer like everything
 * that reaches the bitstream, in 32-bit lanes the compiler vectorises: latents in 1/16 pixel from
 * an 8-bit fixed-point multiplier, levels from a 16-bit reciprocal of the step. */
typedef struct {
    int32_t steps[SNIS_MAX_TIERS][64];
    uint32_t inv[SNIS_MAX_TIERS][64];  /* ceil(2^16 / step), at most 2^16 - 1 */
    uint32_t off[SNIS_MAX_TIERS][64];  /* dead-zone rounding offset, 1/16 pixel */
    uint32_t off_base[64];             /* tier 0's rounding of non-zero levels (snis_tuning.round_base / round_key) */
    int base_round;                    /* whether off_base applies: AC latents of keyframes, and of P-frames and key pictures with tiers > 1 */
    int32_t mmax[SNIS_MAX_TIERS][64];  /* largest level whose dequantised value stays in int32 */
    int32_t mult8[64];                 /* int8 latent -> 1/16 pixel, 8 fractional bits */
    int16_t thr8[64];                  /* |int8 latent - zp| below this quantises to 0 in every tier */
    int tiers, nch, lanes; /* lanes: nch rounded up to the stored block width (dummy channels code 0) */
    int cls;               /* block class of the entropy model (block_rate_q8) */
    int64_t lam[SNIS_MAX_TIERS]; /* rate-distortion lambda: (1/16 pixel)^2 / 256 per 1/256 bit */
} step_table;

/* The tables of one macroblock qp offset. */
struct quant_set {
    step_table ac_y, ac_c, coarse, coarse_c;
};
static size_t sizeof_quant_set(void) { return sizeof(quant_set); }

typedef struct quant_job {
    snis_encoder *e;
    const snis_latents *lat;
    const quant_set *set[AQ_N]; /* by macroblock qp offset + AQ_MAX; only the offsets in use */
    int row0; /* the macroblock row of the latents' first row (a band's latents) */
} quant_job;

#define A_MAX 0xFFFF /* |latent| + offset is clamped to 16 bits (real latents stay below 2^15) */

static inline int32_t to16(int32_t d, int32_t mult8) { return (d * mult8 + 128) >> 8; }

static inline int32_t level(uint32_t a, uint32_t off, uint32_t inv, int32_t mmax)
{
    uint32_t x = a + off;
    x = x > A_MAX ? A_MAX : x;
    int32_t m = (int32_t)((x * inv) >> 16);
    return m > mmax ? mmax : m;
}

static void make_table(step_table *t, int n, const snis_encoder *e, int qp, int coarse, const snis_latent_tensor *lt,
                       int cls)
{
    const loop_t *l = &e->l;
    int key = e->frame_type == SNIS_FRAME_I;
    int nch = coarse ? 4 : n * n - 1;
    t->tiers = l->p.tiers;
    t->nch = nch;
    t->lanes = coarse ? LAT_K : (n == 8 ? LAT_Y : LAT_C);
    t->cls = cls;
    memset(t->steps, 0, sizeof(t->steps));
    memset(t->inv, 0, sizeof(t->inv));
    memset(t->off, 0, sizeof(t->off));
    memset(t->mmax, 0, sizeof(t->mmax));
    memset(t->mult8, 0, sizeof(t->mult8));
    memset(t->off_base, 0, sizeof(t->off_base));
    int base_rnd = key ? e->t.round_key : e->t.round_base;
    t->base_round = !coarse && (key ? base_rnd > e->t.round_intra : l->p.tiers > 1 && base_rnd > e->t.round_lower);
    for (int c = 0; c < 64; c++)
        t->thr8[c] = 256;
    for (int k = 0; k < l->p.tiers; k++) {
        int s16 = snis_step16(qp, k, l->p.tiers, snis_frame_ratio(&l->p, e->frame_type));
        int rnd = key ? e->t.round_intra : (k == l->p.tiers - 1 ? e->t.round_inter : e->t.round_lower);
        t->lam[k] = (int64_t)s16 * s16 * e->t.rd_lambda_q8 / 256; /* rd_lambda_q8/256 step^2 per bit */
        if (coarse) {
            for (int c = 0; c < 4; c++)
                t->steps[k][c] = s16;
        } else {
            channel_steps(s16, n, t->steps[k]);
        }
        for (int c = 0; c < nch; c++) {
            uint32_t st = (uint32_t)t->steps[k][c];
            uint32_t inv = (65536u + st - 1) / st;
            t->inv[k][c] = inv > 0xFFFF ? 0xFFFF : inv;
            t->off[k][c] = (uint32_t)(((uint64_t)rnd * st) >> 6);
            if (k == 0)
                t->off_base[c] = (uint32_t)(((uint64_t)base_rnd * st) >> 6);
            int32_t mm = (int32_t)((1 << 30) / (int32_t)st);
            t->mmax[k][c] = mm < 32767 ? mm : 32767;
        }
    }
    for (int c = 0; c < nch; c++) {
        int64_t m8 = ((int64_t)lt->mult[c] + 128) >> 8; /* 16 -> 8 fractional bits */
        t->mult8[c] = (int32_t)(m8 > (1 << 22) ? (1 << 22) : m8);
        /* the smallest |d| in 0..256 that some tier quantises to non-zero: "all tiers zero" only
           gets less likely as |d| grows, so a binary search finds it */
        int lo = 0, hi = 256;
        while (lo < hi) {
            int d = (lo + hi) / 2;
            int32_t a = to16(d, t->mult8[c]), b = -to16(-d, t->mult8[c]);
            uint32_t m = (uint32_t)(a > b ? a : b);
            int zero = 1;
            for (int k = 0; k < l->p.tiers && zero; k++)
                zero = level(m, t->off[k][c], t->inv[k][c], t->mmax[k][c]) == 0;
            if (zero)
                lo = d + 1;
            else
                hi = d;
        }
        t->thr8[c] = (int16_t)lo;
    }
}

/* Rate-distortion decimation of a tier's block that holds only a few +-1 levels: drop them when
 * the distortion they remove is worth less than lambda times the bits the entropy model says
 * they cost (the block, its coded flag, their positions and signs). What is dropped is left in
 * the residual for the tiers above. Returns 1 if the block was dropped. */
static int decimate_block(const snis_encoder *e, const step_table *st, int k, int16_t *q, int32_t *r,
                          const int32_t *v0, int pm, size_t b, int16_t *(*dst)(latents_t *, size_t),
                          uint8_t *(*flag)(latents_t *))
{
    const loop_t *l = &e->l;
    int n = 0;
    for (int c = 0; c < st->nch; c++) {
        int m = q[c];
        if (m > 1 || m < -1)
            return 0;
        n += m != 0;
    }
    if (n == 0 || n > e->t.decimate)
        return 0;
    int64_t dd = 0; /* distortion the levels remove, (1/16 pixel)^2 */
    for (int c = 0; c < st->nch; c++)
        if (q[c]) {
            int64_t a = v0[c], rr = r[c];
            dd += a * a - rr * rr;
        }
    latents_t *lq = (latents_t *)l->q;
    const int16_t *lower = k > 0 && flag(&lq[k - 1])[b] ? dst(&lq[k - 1], b) : NULL;
    int r0, r1 = block_rate_q8(&l->ctx[k], st->cls, q, lower, pm, &r0);
    if (dd * 256 >= st->lam[k] * (r1 - r0))
        return 0;
    for (int c = 0; c < st->nch; c++)
        if (q[c]) {
            q[c] = 0;
            r[c] = v0[c];
        }
    return 1;
}

/* Rate-aware rounding of a tier's block (rd_round_block); returns whether a level is non-zero. */
static int rd_round(const snis_encoder *e, const step_table *st, int k, int16_t *q, int32_t *r, const int32_t *v0,
                    size_t b, int16_t *(*dst)(latents_t *, size_t), uint8_t *(*flag)(latents_t *))
{
    latents_t *l = (latents_t *)e->l.q;
    const int16_t *lower = k > 0 && flag(&l[k - 1])[b] ? dst(&l[k - 1], b) : NULL;
    int32_t mag[64];
    for (int c = 0; c < st->nch; c++)
        mag[c] = q[c] < 0 ? -q[c] : q[c];
    rd_round_block(&e->l.ctx[k], st->cls, v0, st->steps[k], st->mmax[k], st->lam[k], lower, mag, e->t.rdoq == 2);
    int nz = 0;
    for (int c = 0; c < st->nch; c++) {
        int32_t v = v0[c], m = mag[c];
        int32_t dq = 4 * ((m * st->steps[k][c]) >> 2);
        q[c] = (int16_t)(v < 0 ? -m : m);
        r[c] = v < 0 ? v + dq : v - dq;
        nz |= m;
    }
    return nz != 0;
}

/* One tier's levels of a block's lanes and what they leave for the tiers above (r, in place);
 * returns non-zero if a level is. With `base`, a latent the dead zone (off) lets through is
 * rounded with off_base instead (tier 0's non-zero levels, snis_tuning.round_base / round_key). */
static inline int32_t quant_lanes(int32_t *r, int16_t *q, int lanes, const uint32_t *off, const uint32_t *off_base,
                                  const uint32_t *inv, const int32_t *steps, const int32_t *mmax, int base)
{
    int32_t nz = 0;
    for (int c = 0; c < lanes; c++) {
        int32_t v = r[c];
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        int32_t m = level(a, off[c], inv[c], mmax[c]);
        if (base) {
            int32_t m2 = level(a, off_base[c], inv[c], mmax[c]);
            m = m && m2 > m ? m2 : m;
        }
        int32_t dq = 4 * ((m * steps[c]) >> 2); /* dequant1() of the level, exact in int32 here */
        q[c] = (int16_t)(v < 0 ? -m : m);
        nz |= m;
        r[c] = v < 0 ? v + dq : v - dq;
    }
    return nz;
}

/* A P-frame block's dequantised levels of every tier summed into l->sum, as dequantize_add_plane()
 * would sum them (tier after tier, each partial sum clamped; a tier whose flag is clear adds
 * nothing): here, while the levels are in cache, instead of another pass over the planes. */
static inline void sum_block(loop_t *l, const step_table *st, size_t b, int16_t *(*dst)(latents_t *, size_t),
                             uint8_t *(*flag)(latents_t *))
{
    int16_t *s = dst(&l->sum, b);
    int fresh = 1;
    for (int k = 0; k < st->tiers; k++) {
        if (!flag(&l->q[k])[b])
            continue;
        const int16_t *q = dst(&l->q[k], b);
        const int32_t *steps = st->steps[k];
        for (int c = 0; c < st->lanes; c++) /* the lanes beyond nch: level and step 0 */
            s[c] = deq_sum(s[c], q[c] * steps[c], fresh); /* |level| <= mmax: exact in int32 */
        fresh = 0;
    }
    flag(&l->sum)[b] = (uint8_t)!fresh;
}

/* Quantise one block of nch latents into every tier (tier k quantises what tiers < k left), then
 * the optional rate-distortion decisions on each tier's levels. */
SNIS_HOT static void quant_block(snis_encoder *e, const snis_latent_tensor *t, const int8_t *src, int stride,
                                 size_t b, int16_t *(*dst)(latents_t *, size_t), uint8_t *(*flag)(latents_t *),
                                 const step_table *st, int pm)
{
    loop_t *l = &e->l;
    int nch = st->nch, lanes = st->lanes, any = 0;
    int32_t r[64];
    /* first only whether some latent reaches a tier's zero threshold: a block that codes nothing
       in any tier costs no multiplication. The dummy lanes beyond nch have multiplier 0 and
       threshold 256 (make_table): 0, and never above the threshold. */
    for (int c = 0; c < nch; c++) {
        int32_t d = src[c] - t->zp[c];
        any |= (d < 0 ? -d : d) >= st->thr8[c];
    }
    if (!any) {
        for (int k = 0; k < st->tiers; k++)
            flag(&l->q[k])[b] = 0;
        flag(&l->sum)[b] = 0;
        return;
    }
    for (int c = 0; c < nch; c++)
        r[c] = to16(src[c] - t->zp[c], st->mult8[c]);
    for (int c = nch; c < lanes; c++)
        r[c] = 0;
    int32_t v0[64];
    for (int k = 0; k < st->tiers; k++) {
        int16_t *q = dst(&l->q[k], b);
        int32_t nz = 0;
        if (e->t.decimate > 0 || e->t.rdoq)
            memcpy(v0, r, sizeof(int32_t) * (size_t)lanes);
        const uint32_t *inv = st->inv[k], *off = st->off[k];
        const int32_t *steps = st->steps[k], *mmax = st->mmax[k];
        if (k == 0 && st->base_round)
            nz = quant_lanes(r, q, lanes, off, st->off_base, inv, steps, mmax, 1);
        else
            nz = quant_lanes(r, q, lanes, off, off, inv, steps, mmax, 0);
        if (nz && e->t.rdoq)
            nz = rd_round(e, st, k, q, r, v0, b, dst, flag);
        if (nz && e->t.decimate > 0 && decimate_block(e, st, k, q, r, v0, pm, b, dst, flag))
            nz = 0;
        flag(&l->q[k])[b] = (uint8_t)(nz != 0);
    }
    if (e->frame_type == SNIS_FRAME_P)
        sum_block(l, st, b, dst, flag);
}

static int16_t *d_yac(latents_t *q, size_t b) { return q->y_ac + b * LAT_Y; }
static int16_t *d_yk(latents_t *q, size_t b) { return q->y_k + b * LAT_K; }
static int16_t *d_c0(latents_t *q, size_t b) { return q->c_ac[0] + b * LAT_C; }
static int16_t *d_c1(latents_t *q, size_t b) { return q->c_ac[1] + b * LAT_C; }
static int16_t *d_k0(latents_t *q, size_t b) { return q->c_k[0] + b * LAT_K; }
static int16_t *d_k1(latents_t *q, size_t b) { return q->c_k[1] + b * LAT_K; }
static uint8_t *f_yac(latents_t *q) { return q->f_y_ac; }
static uint8_t *f_yk(latents_t *q) { return q->f_y_k; }
static uint8_t *f_c0(latents_t *q) { return q->f_c_ac[0]; }
static uint8_t *f_c1(latents_t *q) { return q->f_c_ac[1]; }
static uint8_t *f_k0(latents_t *q) { return q->f_c_k[0]; }
static uint8_t *f_k1(latents_t *q) { return q->f_c_k[1]; }

/* One kind of block of a macroblock for mb_rd_drop(): where its latents, levels and flags are. */
typedef struct {
    const snis_latent_tensor *t;
    ptrdiff_t plane;
    const step_table *st;
    int16_t *(*dst)(latents_t *, size_t);
    uint8_t *(*flag)(latents_t *);
    int grid; /* blocks per macroblock side: 4 (AC) or 2 (coarse) */
} mb_part;

/* Lambda-based skip of a macroblock after quantisation: when its levels in all tiers are few
 * (at most mb_rd) and the distortion they remove, tier by tier, is worth less than each tier's
 * lambda times the bits the entropy model estimates for their blocks, the macroblock codes
 * nothing in any tier (what its prediction gives stays). Returns 1 if it was dropped. */
static int mb_rd_drop(snis_encoder *e, quant_job *j, const quant_set *qs, int mby, int mbx, int pm)
{
    loop_t *l = &e->l;
    const snis_latents *lat = j->lat;
    mb_part parts[6] = {{&lat->y_ac, 0, &qs->ac_y, d_yac, f_yac, 4},
                        {&lat->c_ac, 0, &qs->ac_c, d_c0, f_c0, 4},
                        {&lat->c_ac, lat->c_ac.stride_p, &qs->ac_c, d_c1, f_c1, 4},
                        {&lat->y_coarse, 0, &qs->coarse, d_yk, f_yk, 2},
                        {&lat->c_coarse, 0, &qs->coarse_c, d_k0, f_k0, 2},
                        {&lat->c_coarse, lat->c_coarse.stride_p, &qs->coarse_c, d_k1, f_k1, 2}};
    int tiers = l->p.tiers, count = 0;
    for (int pi = 0; pi < 6; pi++) {
        const mb_part *mp = &parts[pi];
        int wg = l->wb * mp->grid / 4;
        for (int yy = 0; yy < mp->grid; yy++)
            for (int xx = 0; xx < mp->grid; xx++) {
                size_t b = (size_t)(mby * mp->grid + yy) * wg + mbx * mp->grid + xx;
                for (int k = 0; k < tiers; k++) {
                    if (!mp->flag(&l->q[k])[b])
                        continue;
                    const int16_t *q = mp->dst(&l->q[k], b);
                    for (int c = 0; c < mp->st->nch; c++)
                        count += q[c] != 0;
                    if (count > e->t.mb_rd) /* most coded macroblocks stop here */
                        return 0;
                }
            }
    }
    if (count == 0)
        return 0;
    int64_t gain = 0; /* sum over tiers of 256 x distortion removed - lambda x bits */
    for (int pi = 0; pi < 6; pi++) {
        const mb_part *mp = &parts[pi];
        const step_table *st = mp->st;
        int wg = l->wb * mp->grid / 4;
        for (int yy = 0; yy < mp->grid; yy++)
            for (int xx = 0; xx < mp->grid; xx++) {
                int bi = mby * mp->grid + yy, bj = mbx * mp->grid + xx;
                size_t b = (size_t)bi * wg + bj;
                int any = 0;
                for (int k = 0; k < tiers; k++)
                    any |= mp->flag(&l->q[k])[b];
                if (!any)
                    continue;
                int ti = bi - j->row0 * mp->grid; /* the row in the latents (a band's: row0) */
                const int8_t *src = mp->t->data + mp->plane + ti * mp->t->stride_i + bj * mp->t->stride_j;
                int32_t r[64];
                for (int c = 0; c < st->nch; c++)
                    r[c] = to16(src[c] - mp->t->zp[c], st->mult8[c]);
                for (int k = 0; k < tiers; k++) {
                    if (!mp->flag(&l->q[k])[b])
                        continue;
                    const int16_t *q = mp->dst(&l->q[k], b);
                    int64_t dd = 0;
                    for (int c = 0; c < st->nch; c++) {
                        if (!q[c])
                            continue;
                        int32_t m = q[c] < 0 ? -q[c] : q[c];
                        int32_t dq = 4 * ((m * st->steps[k][c]) >> 2);
                        int64_t a = r[c], rr = q[c] < 0 ? a + dq : a - dq;
                        dd += a * a - rr * rr;
                        r[c] = (int32_t)rr;
                    }
                    const int16_t *lower = k > 0 && mp->flag(&l->q[k - 1])[b] ? mp->dst(&l->q[k - 1], b) : NULL;
                    int r0, r1 = block_rate_q8(&l->ctx[k], st->cls, q, lower, pm, &r0);
                    gain += dd * 256 - st->lam[k] * (r1 - r0);
                }
            }
    }
    if (gain >= 0)
        return 0;
    for (int pi = 0; pi < 6; pi++) {
        const mb_part *mp = &parts[pi];
        int wg = l->wb * mp->grid / 4;
        for (int yy = 0; yy < mp->grid; yy++)
            for (int xx = 0; xx < mp->grid; xx++) {
                size_t b = (size_t)(mby * mp->grid + yy) * wg + mbx * mp->grid + xx;
                for (int k = 0; k < tiers; k++)
                    mp->flag(&l->q[k])[b] = 0;
                mp->flag(&l->sum)[b] = 0;
            }
    }
    return 1;
}

static void quant_row(void *arg, int mby)
{
    quant_job *j = (quant_job *)arg;
    snis_encoder *e = j->e;
    loop_t *l = &e->l;
    const snis_latents *lat = j->lat;
    int wb = l->wb;
    for (int mbx = 0; mbx < l->mbw; mbx++) {
        if (mbx + 2 < l->mbw) { /* prefetch the AC latents of the macroblock after next: waiting for
                                   their loads is most of quant_block's time (perf, 1080p) */
            const snis_latent_tensor *ty = &lat->y_ac, *tc = &lat->c_ac;
            for (int yy = 0; yy < 4; yy++) {
                int bi = (mby - j->row0) * 4 + yy, bj = (mbx + 2) * 4;
                const int8_t *py = ty->data + bi * ty->stride_i + bj * ty->stride_j;
                for (int o = 0; o < 4 * ty->stride_j; o += 64)
                    __builtin_prefetch(py + o);
                const int8_t *pc = tc->data + bi * tc->stride_i + bj * tc->stride_j;
                __builtin_prefetch(pc);
                __builtin_prefetch(pc + 4 * tc->stride_j - 1);
                __builtin_prefetch(pc + tc->stride_p);
                __builtin_prefetch(pc + tc->stride_p + 4 * tc->stride_j - 1);
            }
        }
        int skip = l->motion.skip[mby * l->mbw + mbx], pm = l->motion.intra[mby * l->mbw + mbx];
        const quant_set *qs = j->set[l->motion.aq ? l->motion.dqp[mby * l->mbw + mbx] + AQ_MAX : AQ_MAX];
        for (int yy = 0; yy < 4; yy++)
            for (int xx = 0; xx < 4; xx++) {
                int bi = mby * 4 + yy, bj = mbx * 4 + xx;
                size_t b = (size_t)bi * wb + bj;
                if (skip) {
                    for (int k = 0; k < l->p.tiers; k++)
                        l->q[k].f_y_ac[b] = l->q[k].f_c_ac[0][b] = l->q[k].f_c_ac[1][b] = 0;
                    l->sum.f_y_ac[b] = l->sum.f_c_ac[0][b] = l->sum.f_c_ac[1][b] = 0;
                    continue;
                }
                const snis_latent_tensor *t = &lat->y_ac;
                bi -= 4 * j->row0; /* the row in the latents */
                quant_block(e, t, t->data + bi * t->stride_i + bj * t->stride_j, LAT_Y, b, d_yac, f_yac, &qs->ac_y, pm);
                t = &lat->c_ac;
                const int8_t *s0 = t->data + bi * t->stride_i + bj * t->stride_j;
                quant_block(e, t, s0, LAT_C, b, d_c0, f_c0, &qs->ac_c, pm);
                quant_block(e, t, s0 + t->stride_p, LAT_C, b, d_c1, f_c1, &qs->ac_c, pm);
            }
        for (int yy = 0; yy < 2; yy++)
            for (int xx = 0; xx < 2; xx++) {
                int bi = mby * 2 + yy, bj = mbx * 2 + xx;
                size_t b = (size_t)bi * (wb / 2) + bj;
                if (skip) {
                    for (int k = 0; k < l->p.tiers; k++)
                        l->q[k].f_y_k[b] = l->q[k].f_c_k[0][b] = l->q[k].f_c_k[1][b] = 0;
                    l->sum.f_y_k[b] = l->sum.f_c_k[0][b] = l->sum.f_c_k[1][b] = 0;
                    continue;
                }
                const snis_latent_tensor *t = &lat->y_coarse;
                bi -= 2 * j->row0;
                quant_block(e, t, t->data + bi * t->stride_i + bj * t->stride_j, LAT_K, b, d_yk, f_yk, &qs->coarse, pm);
                t = &lat->c_coarse;
                const int8_t *s0 = t->data + bi * t->stride_i + bj * t->stride_j;
                quant_block(e, t, s0, LAT_K, b, d_k0, f_k0, &qs->coarse_c, pm);
                quant_block(e, t, s0 + t->stride_p, LAT_K, b, d_k1, f_k1, &qs->coarse_c, pm);
            }
        if (e->t.mb_rd > 0 && !skip)
            mb_rd_drop(e, j, qs, mby, mbx, pm);
    }
}

typedef struct {
    snis_encoder *e;
    int status[SNIS_MAX_TIERS];
} entropy_job;

static void entropy_tier(void *arg, int k)
{
    entropy_job *j = (entropy_job *)arg;
    snis_encoder *e = j->e;
    loop_t *l = &e->l;
    rangecoder rc;
    memset(&rc, 0, sizeof(rc));
    rc.buf = e->buf[k];
    rc.cap = e->cap[k];
    rc.range = 0xFFFFFFFFu;
    rc.cache_size = 1;
    tier_job tj = {k, e->frame_type, &l->motion, &l->q[k], k ? &l->q[k - 1] : NULL, &l->ctx[k], 0, 0};
    int st = code_tier(&rc, &tj);
    l->stats.nz_levels[k] = tj.nz;
    if (k == 0)
        l->stats.motion_bits = (double)tj.motion_q8 / 256.0;
    size_t len = 0;
    if (st == SNIS_OK)
        st = rc_finish(&rc, &len);
    e->buf[k] = rc.buf; /* the coder may have grown it */
    e->cap[k] = rc.cap;
    e->len[k] = st == SNIS_OK ? len : 0;
    j->status[k] = st;
}

/* The tables of a keyframe in bands: offset 0 only (no adaptive quantisation on keyframes). */
static void make_tables(quant_job *qj, const snis_latents *lat)
{
    snis_encoder *e = qj->e;
    quant_set *qs = &e->qsets[AQ_MAX];
    make_table(&qs->ac_y, 8, e, e->qp, 0, &lat->y_ac, 0);
    make_table(&qs->ac_c, 4, e, e->qp, 0, &lat->c_ac, 1);
    make_table(&qs->coarse, 4, e, e->qp, 1, &lat->y_coarse, 2);
    make_table(&qs->coarse_c, 4, e, e->qp, 1, &lat->c_coarse, 3);
    qj->set[AQ_MAX] = qs;
}

/* ------------------------------------------------------------------------------------------ */
/* Keyframes in bands (snis.h): each band is predicted from the tier-0 reconstruction above it. */

int snis_encoder_intra_begin(snis_encoder *e, const snis_image_in *frame, int qp)
{
    if (!e || !frame || qp < 0 || qp > 63)
        return SNIS_E_ARG;
    loop_t *l = &e->l;
    if (e->band_open)
        loop_clear_synthesis(l);
    double t0 = now_us();
    e->frame_type = SNIS_FRAME_I;
    e->qp = qp;
    load_input(e, frame);
    int n = l->mbw * l->mbh;
    memset(l->motion.intra, 1, (size_t)n);
    memset(l->motion.imode, INTRA_GREY, (size_t)n);
    memset(l->motion.mv, 0, (size_t)n * 2 * sizeof(int16_t));
    memset(l->motion.skip, 0, (size_t)n);
    memset(l->motion.sad, 0, (size_t)n * sizeof(uint32_t));
    l->motion.aq = 0; /* as stage 1 of a keyframe */
    int ratio = snis_frame_ratio(&l->p, SNIS_FRAME_I);
    e->lambda = frame_lambda(e, snis_step16(qp, l->p.tiers - 1, l->p.tiers, ratio), snis_step16(qp, 0, l->p.tiers, ratio));
    e->band = 0;
    e->band_open = 1;
    e->predicted = 0;
    l->ipred_valid = 0;
    l->stats.frame_type = SNIS_FRAME_I;
    l->stats.skipped_mbs = 0;
    l->stats.intra_mbs = n;
    l->stats.motion_us = 0;
    l->stats.predict_us = now_us() - t0;
    l->stats.quantize_us = 0;
    return SNIS_OK;
}

/* Quantise band b's latents (all tiers), and its tier 0 into the band synthesis. */
static int band_latents(snis_encoder *e, int b, const snis_latents *lat)
{
    loop_t *l = &e->l;
    if (!lat || !lat->y_ac.data || !lat->y_coarse.data || !lat->c_ac.data || !lat->c_coarse.data)
        return SNIS_E_ARG;
    double t0 = now_us();
    if (!e->bq) {
        e->bq = (quant_job *)calloc(1, sizeof(quant_job));
        if (!e->bq)
            return SNIS_E_NOMEM;
    }
    quant_job *qj = e->bq;
    qj->e = e;
    qj->lat = lat;
    qj->row0 = b;
    if (b == 0) /* the tables depend on the qp and the model's scales: once per keyframe */
        make_tables(qj, lat);
    quant_row(qj, b);
    int ratio = snis_frame_ratio(&l->p, SNIS_FRAME_I);
    dequantize_mb_row(&l->sum, &l->q[0], &l->motion, snis_step16(e->qp, 0, l->p.tiers, ratio), b);
    double t1 = now_us();
    loop_intra_band(l, b);
    l->stats.quantize_us += t1 - t0;
    l->stats.predict_us += now_us() - t1;
    return SNIS_OK;
}

/* The residual of band b with its analysis context: symmetric extension at the picture's sides,
 * top and bottom; above the band the residual of the band above, below it the residual of the
 * next band's guessed prediction. Both neighbours' analyses must see the same residual where
 * their lapped windows overlap, or the synthesis does not cancel there (a wrong guess, or the
 * reconstruction error instead of the residual above, cost 3..7 dB on a test keyframe). */
static void write_strip(snis_encoder *e, int b, int8_t *ystrip, ptrdiff_t ys, int8_t *uvstrip, ptrdiff_t uvs,
                        ptrdiff_t uvps)
{
    loop_t *l = &e->l;
    for (int c = 0; c < 3; c++) {
        const plane_t *x = &e->cur.p[c], *pr = &l->pred.p[c];
        int size = c ? MB / 2 : MB, ctx = c ? SNIS_CHROMA_CTX : SNIS_LUMA_CTX, w = x->w;
        int8_t *base = c ? uvstrip + (c - 1) * uvps : ystrip;
        ptrdiff_t rs = c ? uvs : ys;
        int y0 = b * size, y1 = y0 + size;
        for (int r = 0; r < size + 2 * ctx; r++) {
            int y = y0 - ctx + r;
            int last = b + 1 == l->mbh;
            y = y < 0 ? -1 - y : (last && y >= y1 ? 2 * y1 - 1 - y : y);
            const uint8_t *xr = x->data + y * x->stride, *pp = pr->data + y * pr->stride;
            int8_t *o = base + r * rs;
            for (int xx = 0; xx < w; xx++) {
                int d = xr[xx] - pp[xx];
                o[ctx + xx] = (int8_t)(d < -128 ? -128 : (d > 127 ? 127 : d));
            }
            for (int m = 0; m < ctx; m++) {
                o[ctx - 1 - m] = o[ctx + m];
                o[ctx + w + m] = o[ctx + w - 1 - m];
            }
        }
    }
}

int snis_encoder_intra_band(snis_encoder *e, int band, const snis_latents *lat, int8_t *ystrip, ptrdiff_t ys,
                            int8_t *uvstrip, ptrdiff_t uvs, ptrdiff_t uvps)
{
    if (!e || !e->band_open || band != e->band || band >= e->l.mbh || !ystrip || !uvstrip)
        return SNIS_E_ARG;
    loop_t *l = &e->l;
    if (ys < l->wp + 2 * SNIS_LUMA_CTX || uvs < l->wp / 2 + 2 * SNIS_CHROMA_CTX ||
        uvps < uvs * (MB / 2 + 2 * SNIS_CHROMA_CTX))
        return SNIS_E_ARG;
    if (band > 0) {
        int st = band_latents(e, band - 1, lat);
        if (st != SNIS_OK)
            return st;
    }
    double t0 = now_us();
    intra_predict_band(&l->motion, band, &l->pred, &l->keynew, &e->cur, e->lambda);
    /* the band below is not predicted yet, but the analysis of this band sees 12 of its rows:
       give it a guess, the prediction from the source instead of the reconstruction (so the
       lapped windows of the two bands see nearly the same residual in their overlap) */
    if (band + 1 < l->mbh)
        intra_predict_band(&l->motion, band + 1, &l->pred, &e->cur, &e->cur, e->lambda);
    write_strip(e, band, ystrip, ys, uvstrip, uvs, uvps);
    e->band++;
    e->predicted = e->band == l->mbh;
    l->stats.predict_us += now_us() - t0;
    return SNIS_OK;
}

int snis_encoder_code(snis_encoder *e, const snis_latents *lat)
{
    if (!e || !lat || !e->predicted || !lat->y_ac.data || !lat->y_coarse.data || !lat->c_ac.data ||
        !lat->c_coarse.data)
        return SNIS_E_ARG;
    loop_t *l = &e->l;
    double t0 = now_us();
    if (e->band_open) {
        if (e->band != l->mbh)
            return SNIS_E_ARG;
        int st = band_latents(e, l->mbh - 1, lat);
        if (st != SNIS_OK)
            return st;
        picture_copy(&l->ipred, &l->pred);
        l->ipred_valid = 1;
        e->band_open = 0;
    } else {
        quant_job qj;
        memset(&qj, 0, sizeof(qj));
        qj.e = e;
        qj.lat = lat;
        {
            uint8_t used[AQ_N] = {0};
            used[AQ_MAX] = 1;
            for (int i = 0; l->motion.aq && i < l->mbw * l->mbh; i++)
                used[l->motion.dqp[i] + AQ_MAX] = 1;
            for (int a = 0; a < AQ_N; a++) {
                if (!used[a])
                    continue;
                quant_set *qs = &e->qsets[a];
                int qp = mb_qp(e->qp, a - AQ_MAX);
                make_table(&qs->ac_y, 8, e, qp, 0, &lat->y_ac, 0);
                make_table(&qs->ac_c, 4, e, qp, 0, &lat->c_ac, 1);
                make_table(&qs->coarse, 4, e, qp, 1, &lat->y_coarse, 2);
                make_table(&qs->coarse_c, 4, e, qp, 1, &lat->c_coarse, 3);
                qj.set[a] = qs;
            }
        }
        pool_run(l->pool, l->mbh, quant_row, &qj);
    }
    double t1 = now_us();
    if (e->frame_type != SNIS_FRAME_P)
        for (int k = 0; k < l->p.tiers; k++)
            contexts_reset(&l->ctx[k], k);
    entropy_job ej;
    memset(&ej, 0, sizeof(ej));
    ej.e = e;
    /* the tiers' coding reads the levels and the motion, which the reconstruction only reads:
       it runs alongside a P-frame's synthesis (loop_reconstruct's side job) */
    double entropy_us;
    /* a P-frame's tiers were summed by the quantiser (sum_block) */
    loop_reconstruct(l, e->frame_type, e->qp, l->p.tiers, e->frame_type == SNIS_FRAME_P, entropy_tier, &ej,
                     l->p.tiers, &entropy_us);
    for (int k = 0; k < l->p.tiers; k++)
        if (ej.status[k] != SNIS_OK)
            return ej.status[k];
    motion_t t = l->prev_motion;
    l->prev_motion = l->motion;
    l->motion = t;
    if (e->frame_type == SNIS_FRAME_I)
        memset(l->prev_motion.mv, 0, (size_t)l->mbw * l->mbh * 2 * sizeof(int16_t));
    l->stats.quantize_us = e->frame_type == SNIS_FRAME_I && l->ipred_valid ? l->stats.quantize_us + (t1 - t0) : t1 - t0;
    l->stats.entropy_us = entropy_us;
    e->predicted = 0;
    return SNIS_OK;
}

const uint8_t *snis_encoder_payload(const snis_encoder *e, int tier, size_t *len)
{
    if (!e || tier < 0 || tier >= e->l.p.tiers) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = e->len[tier];
    return e->buf[tier];
}

int snis_encoder_reconstruction(snis_encoder *e, int tiers, snis_image_out *out)
{
    if (!e || !out || tiers < 1 || tiers > e->l.p.tiers)
        return SNIS_E_ARG;
    if (tiers == e->l.p.tiers) {
        loop_output(&e->l.ref, &e->l.p, out);
        return SNIS_OK;
    }
    loop_picture_of_tiers(&e->l, &e->l.prev_motion, tiers, &e->l.recon); /* prev_motion: the last frame's */
    loop_output(&e->l.recon, &e->l.p, out);
    return SNIS_OK;
}

int snis_encoder_contexts(const snis_encoder *e, int tier, uint16_t *out, size_t n)
{
    if (tier < 0 || tier >= e->l.p.tiers)
        return -1;
    uint16_t all[N_CONTEXTS];
    contexts_export(&e->l.ctx[tier], all);
    if (n)
        memcpy(out, all, (n < N_CONTEXTS ? n : N_CONTEXTS) * sizeof(uint16_t));
    return N_CONTEXTS;
}

void snis_encoder_stats(const snis_encoder *e, snis_stats *s)
{
    if (e && s)
        *s = e->l.stats;
}
