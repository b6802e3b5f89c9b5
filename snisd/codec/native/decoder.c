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
    for (int k = 0; k < ntiers; k++) {
        rangecoder rc;
        rc_decoder_init(&rc, payload[k], len[k]);
        tier_job tj = {k, frame_type, &l->motion, &l->q[k], k ? &l->q[k - 1] : NULL, &l->ctx[k]};
        int st = code_tier(&rc, &tj);
        if (st == SNIS_OK && rc.overrun > MAX_OVERRUN)
            st = SNIS_E_TRUNCATED;
        if (st != SNIS_OK) {
            memcpy(l->ctx, d->saved, sizeof(d->saved));
            l->stats.error_tier = k;
            return st;
        }
    }
    double t1 = now_us();
    /* A decoder of fewer tiers than the stream has predicts its P-frames without the overlapped
       blend: its reference has drifted from the encoder's, and blending spreads the drift (more
       loss of VMAF than the blend gains, docs/BENCHMARKS.md). Key pictures keep it: their
       reference, the last key picture's base tier, is the encoder's in every decoder. */
    if (frame_type == SNIS_FRAME_P && ntiers < l->p.tiers)
        l->motion.tools &= ~MT_OBMC;
    loop_predict(l, frame_type, NULL, 0, 0);
    if (frame_type == SNIS_FRAME_I)
        loop_intra_frame(l, qp);
    double t2 = now_us();
    double none;
    loop_reconstruct(l, frame_type, qp, ntiers, NULL, NULL, 0, &none);
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
