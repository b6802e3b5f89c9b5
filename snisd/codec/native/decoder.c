/* SNIS decoder: entropy decoding of the received tiers, then the loop the encoder runs. */
#include <stdlib.h>

#include "loop.h"
#include "rangecoder.h"

struct snis_decoder {
    loop_t l;
    tier_contexts saved[SNIS_MAX_TIERS];
};

snis_decoder *snis_decoder_create(const snis_params *p, const snis_weights *w, int *status)
{
    snis_decoder *d = (snis_decoder *)calloc(1, sizeof(*d));
    int st = d ? loop_init(&d->l, p, w) : SNIS_E_NOMEM;
    if (st != SNIS_OK) {
        free(d);
        if (status)
            *status = st;
        return NULL;
    }
    if (status)
        *status = SNIS_OK;
    return d;
}

void snis_decoder_destroy(snis_decoder *d)
{
    if (!d)
        return;
    loop_free(&d->l);
    free(d);
}

/* Tiers from..to-1 of the frame, in order (each tier's contexts read the tier below's levels);
 * on an error, *failed is the tier it came from. */
static int decode_tiers(loop_t *l, int from, int to, int frame_type, const uint8_t *const payload[],
                        const size_t len[], int *failed)
{
    for (int k = from; k < to; k++) {
        rangecoder rc;
        rc_decoder_init(&rc, payload[k], len[k]);
        tier_job tj = {k, frame_type, &l->motion, &l->q[k], k ? &l->q[k - 1] : NULL, &l->ctx[k]};
        int st = code_tier(&rc, &tj);
        if (st == SNIS_OK && rc.overrun > MAX_OVERRUN)
            st = SNIS_E_TRUNCATED;
        if (st != SNIS_OK) {
            *failed = k;
            return st;
        }
    }
    return SNIS_OK;
}

typedef struct {
    loop_t *l;
    int frame_type, ntiers;
    const uint8_t *const *payload;
    const size_t *len;
    int status, failed;
} upper_job;

/* Once tier 0 has given the modes and vectors, the prediction needs nothing of the upper tiers,
 * and their decoding reads of the motion only the macroblocks' kinds: one task decodes tiers 1..,
 * the other predicts (on its own thread: no pool call inside a pool's task). */
static void upper_or_predict(void *arg, int i)
{
    upper_job *j = (upper_job *)arg;
    if (i == 1) {
        loop_predict_serial(j->l, j->frame_type);
        return;
    }
    j->status = decode_tiers(j->l, 1, j->ntiers, j->frame_type, j->payload, j->len, &j->failed);
}

int snis_decoder_decode(snis_decoder *d, int frame_type, int qp, int ntiers, const uint8_t *const payload[],
                        const size_t len[], int show_tiers, snis_image_out *out)
{
    if (!d || !payload || !len || frame_type < 0 || frame_type > SNIS_FRAME_KC || qp < 0 || qp > 63)
        return SNIS_E_ARG;
    loop_t *l = &d->l;
    if (ntiers < 1 || ntiers > l->p.tiers || show_tiers < 1 || show_tiers > ntiers)
        return SNIS_E_ARG;
    for (int k = 0; k < ntiers; k++)
        if (!payload[k] && len[k])
            return SNIS_E_ARG;
    double t0 = now_us();
    memcpy(d->saved, l->ctx, sizeof(d->saved));
    if (frame_type != SNIS_FRAME_P)
        for (int k = 0; k < l->p.tiers; k++)
            contexts_reset(&l->ctx[k], k);
    l->stats.error_tier = -1;
    int failed = 0, st = decode_tiers(l, 0, 1, frame_type, payload, len, &failed);
    /* A decoder of fewer tiers than the stream has predicts its P-frames without the overlapped
       blend: its reference has drifted from the encoder's, and blending spreads the drift (more
       loss of VMAF than the blend gains, docs/BENCHMARKS.md). Key pictures keep it: their
       reference, the last key picture's base tier, is the encoder's in every decoder. */
    if (st == SNIS_OK && frame_type == SNIS_FRAME_P && ntiers < l->p.tiers)
        l->motion.tools &= ~MT_OBMC;
    /* with several threads the upper tiers decode while the prediction runs (not on keyframes,
       whose prediction sets the macroblocks' kinds the upper tiers read) */
    int overlap = st == SNIS_OK && ntiers > 1 && frame_type != SNIS_FRAME_I && pool_threads(l->pool) > 1;
    if (overlap) { /* (the prediction's time is then counted in the entropy stage's) */
        upper_job j = {l, frame_type, ntiers, payload, len, SNIS_OK, 0};
        pool_run(l->pool, 2, upper_or_predict, &j);
        st = j.status;
        failed = j.failed;
    } else if (st == SNIS_OK) {
        st = decode_tiers(l, 1, ntiers, frame_type, payload, len, &failed);
    }
    if (st != SNIS_OK) {
        memcpy(l->ctx, d->saved, sizeof(d->saved));
        l->stats.error_tier = failed;
        return st;
    }
    double t1 = now_us();
    if (!overlap)
        loop_predict(l, frame_type, NULL, 0, 0);
    if (frame_type == SNIS_FRAME_I)
        loop_intra_frame(l, qp);
    double t2 = now_us();
    loop_reconstruct(l, frame_type, qp, ntiers, 0, NULL, NULL, 0, NULL);
    if (out) {
        if (show_tiers == ntiers) {
            loop_output(&l->ref, &l->p, out);
        } else {
            loop_picture_of_tiers(l, &l->motion, show_tiers, &l->recon);
            loop_output(&l->recon, &l->p, out);
        }
    }
    l->stats.entropy_us = t1 - t0;
    l->stats.predict_us = t2 - t1;
    int intra = 0;
    for (int i = 0; i < l->mbw * l->mbh; i++)
        intra += l->motion.intra[i];
    l->stats.intra_mbs = intra;
    return SNIS_OK;
}

void snis_decoder_stats(const snis_decoder *d, snis_stats *s)
{
    if (d && s)
        *s = d->l.stats;
}
