/* The shared prediction loop (see loop.h). */
#include <stdlib.h>

#include "intra.h"
#include "loop.h"

static int weights_valid(const snis_weights *w)
{
    const int32_t *a = (const int32_t *)w;
    size_t n = sizeof(*w) / sizeof(int32_t);
    for (size_t i = 0; i < n; i++)
        if (a[i] <= -(2 << SNIS_FRAC) || a[i] >= (2 << SNIS_FRAC))
            return 0;
    return 1;
}

int loop_init(loop_t *l, const snis_params *p, const snis_weights *w)
{
    memset(l, 0, sizeof(*l));
    if (!p || !w || p->width < 16 || p->height < 16 || p->width > 8192 || p->height > 8192 || p->width % 2 ||
        p->height % 2 || p->tiers < 1 || p->tiers > SNIS_MAX_TIERS || p->tier_step_log2 < 0 ||
        p->tier_step_log2 > 64 || p->key_step_log2 < 0 || p->key_step_log2 > 64 || p->threads < 1 || p->threads > SNIS_MAX_THREADS || !weights_valid(w))
        return SNIS_E_ARG;
    l->p = *p;
    l->wp = (p->width + SNIS_ALIGN - 1) / SNIS_ALIGN * SNIS_ALIGN;
    l->hp = (p->height + SNIS_ALIGN - 1) / SNIS_ALIGN * SNIS_ALIGN;
    l->hb = l->hp / 8;
    l->wb = l->wp / 8;
    l->mbw = l->wp / MB;
    l->mbh = l->hp / MB;
    weights_expand(w, &l->wl, &l->wc);
    int err = 0;
    l->pool = pool_create(p->threads);
    err |= !l->pool;
    err |= picture_alloc(&l->ref, l->wp, l->hp) || picture_alloc(&l->keyref, l->wp, l->hp) ||
           picture_alloc(&l->pred, l->wp, l->hp) || picture_alloc(&l->recon, l->wp, l->hp) ||
           picture_alloc(&l->keynew, l->wp, l->hp) || picture_alloc(&l->ipred, l->wp, l->hp);
    for (int k = 0; k < p->tiers && !err; k++)
        err |= latents_alloc(&l->q[k], l->hb, l->wb) != 0;
    err |= latents_alloc(&l->sum, l->hb, l->wb) != 0;
    l->act = (uint32_t *)calloc((size_t)l->mbw * l->mbh, sizeof(uint32_t));
    err |= !l->act;
    err |= motion_alloc(&l->motion, l->mbw, l->mbh) || motion_alloc(&l->prev_motion, l->mbw, l->mbh);
    err |= synth_plane_alloc(&l->sy, l->wp, l->hp, 8) || synth_plane_alloc(&l->su, l->wp / 2, l->hp / 2, 4) ||
           synth_plane_alloc(&l->sv, l->wp / 2, l->hp / 2, 4);
    if (err) {
        loop_free(l);
        return SNIS_E_NOMEM;
    }
    picture_fill(&l->ref, 128);
    picture_fill(&l->keyref, 128);
    picture_fill(&l->pred, 128);
    for (int k = 0; k < SNIS_MAX_TIERS; k++)
        contexts_reset(&l->ctx[k], k);
    l->stats.total_mbs = l->mbw * l->mbh;
    return SNIS_OK;
}

void loop_free(loop_t *l)
{
    pool_destroy(l->pool);
    l->pool = NULL;
    free(l->act);
    l->act = NULL;
    picture_free(&l->ref);
    picture_free(&l->keyref);
    picture_free(&l->pred);
    picture_free(&l->recon);
    picture_free(&l->keynew);
    picture_free(&l->ipred);
    for (int k = 0; k < SNIS_MAX_TIERS; k++)
        if (l->q[k].y_ac)
            latents_free(&l->q[k]);
    if (l->sum.y_ac)
        latents_free(&l->sum);
    motion_free(&l->motion);
    motion_free(&l->prev_motion);
    synth_plane_free(&l->sy);
    synth_plane_free(&l->su);
    synth_plane_free(&l->sv);
}

typedef struct {
    const motion_t *m;
    const picture_t *ref;
    picture_t *dst;
} mc_job;

static void mc_row(void *arg, int mby)
{
    mc_job *j = (mc_job *)arg;
    motion_compensate_row(j->m, j->ref, j->dst, mby);
}

static void compensate_on(loop_t *l, pool_t *pool, const motion_t *m, const picture_t *ref, picture_t *dst)
{
    mc_job j = {m, ref, dst};
    pool_run(pool, l->mbh, mc_row, &j);
}

static void compensate(loop_t *l, const motion_t *m, const picture_t *ref, picture_t *dst)
{
    compensate_on(l, l->pool, m, ref, dst);
}

/* ------------------------------------------------------------------------------------------ */
/* Adaptive quantisation. A macroblock's qp offset follows the log2 of the luma variance of its
 * prediction relative to the frame's mean (x264's variance AQ measures the source; the prediction
 * is what the decoder has before any residual, so the offsets cost no bits): strength > 0 gives
 * flat areas finer steps and busy ones coarser, < 0 the reverse. The offsets average about 0, so
 * the frame's qp keeps its meaning for a rate controller. Intra macroblocks predict flat grey,
 * which says nothing: they keep offset 0 and stay out of the mean. Integer throughout. */

/* log2(v) in 1/256, exact bits by repeated squaring (0 for v = 0). */
static uint32_t ilog2_q8(uint64_t v)
{
    if (!v)
        return 0;
    int n = 63;
    while (!(v >> n))
        n--;
    uint64_t x = n >= 31 ? v >> (n - 31) : v << (31 - n); /* [2^31, 2^32): the mantissa in Q31 */
    uint32_t r = (uint32_t)n << 8;
    for (int b = 7; b >= 0; b--) {
        x = (x * x) >> 31;
        if (x >= ((uint64_t)1 << 32)) {
            x >>= 1;
            r |= 1u << b;
        }
    }
    return r;
}

static void act_row(void *arg, int mby)
{
    loop_t *l = (loop_t *)arg;
    const plane_t *x = &l->pred.p[0];
    for (int mbx = 0; mbx < l->mbw; mbx++) {
        uint32_t sum = 0;
        uint64_t sq = 0;
        for (int y = 0; y < MB; y++) {
            const uint8_t *r = x->data + (mby * MB + y) * x->stride + mbx * MB;
            uint32_t s1 = 0, s2 = 0;
            for (int i = 0; i < MB; i++) {
                s1 += r[i];
                s2 += (uint32_t)r[i] * r[i];
            }
            sum += s1;
            sq += s2;
        }
        uint64_t energy = (uint64_t)MB * MB * sq - (uint64_t)sum * sum; /* MB^4 x variance */
        l->act[mby * l->mbw + mbx] = ilog2_q8(energy + 1);
    }
}

static void aq_offsets(loop_t *l, pool_t *pool, motion_t *m)
{
    int n = l->mbw * l->mbh, inter = 0;
    pool_run(pool, l->mbh, act_row, l);
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        if (!m->intra[i]) {
            total += l->act[i];
            inter++;
        }
    int32_t mean = inter ? (int32_t)((total + inter / 2) / inter) : 0;
    for (int i = 0; i < n; i++) {
        int64_t num = (int64_t)m->aq * ((int32_t)l->act[i] - mean); /* in 1/4096 qp */
        int64_t d = num >= 0 ? (num + 2048) / 4096 : -((-num + 2048) / 4096);
        m->dqp[i] = m->intra[i] ? 0 : (int8_t)(d > AQ_MAX ? AQ_MAX : (d < -AQ_MAX ? -AQ_MAX : d));
    }
}

static void predict_on(loop_t *l, pool_t *pool, int frame_type, const picture_t *src, int lambda, int enable)
{
    if (frame_type == SNIS_FRAME_I) {
        memset(l->motion.intra, 1, (size_t)l->mbw * l->mbh);
        memset(l->motion.mv, 0, (size_t)l->mbw * l->mbh * 2 * sizeof(int16_t));
        memset(l->motion.smv, 0, (size_t)l->mbw * l->mbh * 32 * sizeof(int16_t));
        memset(l->motion.split, 0, (size_t)l->mbw * l->mbh);
        memset(l->motion.merge, 0, (size_t)l->mbw * l->mbh);
    }
    l->stats.motion_tools = frame_type == SNIS_FRAME_I ? 0 : l->motion.tools;
    compensate_on(l, pool, &l->motion, SNIS_IS_KEY_PICTURE(frame_type) ? &l->keyref : &l->ref, &l->pred);
    if (frame_type != SNIS_FRAME_I)
        intra_predict_frame(&l->motion, &l->pred, src, lambda, enable);
    if (l->motion.aq)
        aq_offsets(l, pool, &l->motion);
}

void loop_predict(loop_t *l, int frame_type, const picture_t *src, int lambda, int enable)
{
    predict_on(l, l->pool, frame_type, src, lambda, enable);
}

void loop_predict_serial(loop_t *l, int frame_type)
{
    predict_on(l, NULL, frame_type, NULL, 0, 0);
}

typedef struct {
    loop_t *l;
    picture_t *dst;
    /* tiers from..to-1 of the motion m's frame are dequantised into the plane's sum first (none
       if from == to): each plane's task its own, so they run in parallel too */
    const motion_t *m;
    int from, to, qp, frame_type;
    /* a caller's tasks run in the same pool call (loop_reconstruct's side job), with the time
       each kind of task took, summed over its tasks */
    void (*side)(void *, int);
    void *side_arg;
    int nside;
    int64_t side_ns, synth_ns;
} synth_sum_job;

static void synth_sum_plane(void *arg, int c)
{
    synth_sum_job *j = (synth_sum_job *)arg;
    loop_t *l = j->l;
    latents_t *s = &l->sum;
    int ratio = snis_frame_ratio(&l->p, j->frame_type);
    for (int k = j->from; k < j->to; k++)
        dequantize_add_plane(s, &l->q[k], j->m, j->qp, k, l->p.tiers, ratio, k == 0, c);
    if (c == 0)
        synthesize_add(&l->sy, &l->wl, s->y_ac, s->f_y_ac, LAT_Y, s->y_k, s->f_y_k, &j->dst->p[0]);
    else
        synthesize_add(c == 1 ? &l->su : &l->sv, &l->wc, s->c_ac[c - 1], s->f_c_ac[c - 1], LAT_C, s->c_k[c - 1],
                       s->f_c_k[c - 1], &j->dst->p[c]);
}

/* The three planes' syntheses over dst, in parallel with several threads (luma is two thirds of
 * the work: one thread takes it, another both chroma planes), each plane's task dequantising
 * tiers from..to-1 of the frame (motion m) into its sum first (tier 0 starts it afresh). Each
 * runs its rows in order through a ring that stays in cache, which beat splitting one plane's
 * rows between threads (docs/CODEC.md). */
static void synth_tiers(loop_t *l, picture_t *dst, const motion_t *m, int from, int to, int qp, int frame_type)
{
    synth_sum_job j = {l, dst, m, from, to, qp, frame_type, NULL, NULL, 0, 0, 0};
    pool_run(l->pool, 3, synth_sum_plane, &j);
}

/* The luma synthesis, the side tasks, then the chroma planes: the longest first, so that two
 * threads finish together (luma is about two thirds of the synthesis, the side tasks are an
 * encoder's tier codings). Each task adds its own duration to its kind's total. */
static void synth_with_side(void *arg, int i)
{
    synth_sum_job *j = (synth_sum_job *)arg;
    double t0 = now_us();
    int side = i >= 1 && i <= j->nside;
    if (side)
        j->side(j->side_arg, i - 1);
    else
        synth_sum_plane(arg, i ? i - j->nside : 0);
    int64_t ns = (int64_t)((now_us() - t0) * 1000.0);
    __atomic_fetch_add(side ? &j->side_ns : &j->synth_ns, ns, __ATOMIC_RELAXED);
}

void loop_picture_of_tiers(loop_t *l, const motion_t *m, int tiers, picture_t *dst)
{
    /* the last frame's prediction again: its reference is now in l->pred (P) or l->keynew (K) */
    if (l->frame_type == SNIS_FRAME_I && l->ipred_valid) {
        picture_copy(dst, &l->ipred);
    } else {
        compensate(l, m, SNIS_IS_KEY_PICTURE(l->frame_type) ? &l->keynew : &l->pred, dst);
        if (l->frame_type != SNIS_FRAME_I)
            intra_predict_frame((motion_t *)m, dst, NULL, 0, 0);
    }
    synth_tiers(l, dst, m, 0, tiers, l->qp, l->frame_type);
}

void loop_reconstruct(loop_t *l, int frame_type, int qp, int ntiers, int summed, void (*side)(void *, int),
                      void *side_arg, int nside, double *side_us)
{
    double t0 = now_us(), side_t = 0;
    int key = frame_type != SNIS_FRAME_P;
    l->frame_type = frame_type;
    l->qp = qp;
    if (key && nside > 0) { /* two syntheses, one after the other: the side job first, alone */
        pool_run(l->pool, nside, side, side_arg);
        side_t = now_us() - t0;
        t0 = now_us();
    }
    /* a keyframe predicted in bands has its tier-0 picture in l->keynew already, and its tier 0
       in the sum */
    int banded = frame_type == SNIS_FRAME_I && l->ipred_valid;
    if (key && ntiers == 1) {
        if (banded) {
            picture_copy(&l->pred, &l->keynew);
        } else {
            synth_tiers(l, &l->pred, &l->motion, 0, 1, qp, frame_type);
            picture_copy(&l->keynew, &l->pred);
        }
    } else {
        int from = banded ? 1 : 0;
        if (summed && frame_type == SNIS_FRAME_P)
            from = ntiers;
        if (key && !banded) { /* the key reference: the prediction plus the base tier alone */
            picture_copy(&l->keynew, &l->pred);
            synth_tiers(l, &l->keynew, &l->motion, 0, 1, qp, frame_type);
            from = 1;
        }
        if (key || nside == 0) { /* in place: the prediction becomes the reconstruction */
            synth_tiers(l, &l->pred, &l->motion, from, ntiers, qp, frame_type);
        } else { /* a P-frame: the synthesis and the side job in one pool call */
            synth_sum_job j = {l, &l->pred, &l->motion, from, ntiers, qp, frame_type, side, side_arg, nside, 0, 0};
            double t1 = now_us();
            pool_run(l->pool, 3 + nside, synth_with_side, &j);
            /* the call's time split between the two in proportion to their tasks' durations
               (with one thread, exactly each one's time) */
            double wall = now_us() - t1, work = (double)(j.side_ns + j.synth_ns);
            side_t = work > 0 ? wall * (double)j.side_ns / work : 0;
            t0 += side_t;
        }
    }
    picture_t t = l->ref;
    l->ref = l->pred;
    l->pred = t;
    picture_extend(&l->ref);
    if (key) {
        t = l->keyref;
        l->keyref = l->keynew;
        l->keynew = t;
        picture_extend(&l->keyref);
    }
    l->stats.synthesis_us = now_us() - t0;
    if (side_us)
        *side_us = side_t;
    l->stats.synth_blocks = l->sy.blocks;
    l->stats.total_blocks = l->hb * l->wb;
}

void loop_intra_band(loop_t *l, int band)
{
    latents_t *s = &l->sum;
    synthesize_band(&l->sy, &l->wl, s->y_ac, s->f_y_ac, LAT_Y, s->y_k, s->f_y_k, band, &l->pred.p[0], &l->keynew.p[0]);
    for (int c = 0; c < 2; c++) {
        synth_plane *sp = c ? &l->sv : &l->su;
        synthesize_band(sp, &l->wc, s->c_ac[c], s->f_c_ac[c], LAT_C, s->c_k[c], s->f_c_k[c], band, &l->pred.p[c + 1],
                        &l->keynew.p[c + 1]);
    }
}

void loop_intra_frame(loop_t *l, int qp)
{
    int any = 0;
    for (int i = 0; i < l->mbw * l->mbh && !any; i++)
        any = l->motion.imode[i] != INTRA_GREY;
    l->ipred_valid = any;
    if (!any)
        return;
    dequantize_add(&l->sum, &l->q[0], &l->motion, qp, 0, l->p.tiers, snis_frame_ratio(&l->p, SNIS_FRAME_I), 1);
    for (int b = 0; b < l->mbh; b++) {
        intra_predict_band(&l->motion, b, &l->pred, &l->keynew, NULL, 0);
        loop_intra_band(l, b);
    }
    picture_copy(&l->ipred, &l->pred);
}

void loop_clear_synthesis(loop_t *l)
{
    synth_plane *sp[3] = {&l->sy, &l->su, &l->sv};
    for (int c = 0; c < 3; c++) /* the canvas is (h + n) x (w + n), n = cstride - w */
        memset(sp[c]->canvas, 0,
               (size_t)(sp[c]->h + sp[c]->cstride - sp[c]->w) * (size_t)sp[c]->cstride * sizeof(int32_t));
}

void loop_output(const picture_t *pic, const snis_params *p, snis_image_out *out)
{
    for (int c = 0; c < 3; c++) {
        int w = c ? p->width / 2 : p->width, h = c ? p->height / 2 : p->height;
        const plane_t *s = &pic->p[c];
        for (int y = 0; y < h; y++)
            memcpy(out->plane[c] + y * out->stride[c], s->data + y * s->stride, (size_t)w);
    }
}
