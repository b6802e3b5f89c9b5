/* The prediction loop that encoder and decoder share: one motion compensation, one synthesis
 * of the summed tiers and one reference per frame, whatever the tier count.
 *
 * The loop is closed on the top tier that a decoder receives. Key pictures (K frames, the
 * switch points) predict from the key reference instead: the base-tier picture of the last I or
 * K frame, which every decoder has whatever tiers it dropped. So a decoder that lacks tiers
 * drifts from the encoder's picture only until the next key picture, and any decoder can add
 * tiers, or resume after a loss, there.
 */
#ifndef SNIS_LOOP_H
#define SNIS_LOOP_H

#include "internal.h"

typedef struct {
    snis_params p;
    int wp, hp, hb, wb, mbw, mbh;
    plane_weights wl, wc;
    pool_t *pool;
    picture_t ref, keyref, pred, recon, keynew;
    picture_t ipred;  /* the prediction of the last keyframe if it was intra-predicted in bands */
    int ipred_valid;
    latents_t q[SNIS_MAX_TIERS];
    latents_t sum;
    motion_t motion, prev_motion;
    synth_plane sy, su, sv;
    tier_contexts ctx[SNIS_MAX_TIERS];
    uint32_t *act; /* per macroblock: log2 of the prediction's luma variance, 1/256 */
    snis_stats stats;
    int frame_type, qp; /* of the last frame */
} loop_t;

int loop_init(loop_t *l, const snis_params *p, const snis_weights *w);
void loop_free(loop_t *l);
/* The prediction of a frame of this type into l->pred (motion in l->motion), the
 * macroblocks' adaptive-quantisation offsets (l->motion.dqp) if l->motion.aq is set; the intra
 * macroblocks of P-frames with their modes chosen on src (encoder, enable = 0: grey) or decoded
 * (src = NULL). Keyframes: flat grey here; loop_intra_frame() predicts them in bands. */
void loop_predict(loop_t *l, int frame_type, const picture_t *src, int lambda, int enable);
/* The decoder's loop_predict (src NULL) on the calling thread alone: inside a pool task. */
void loop_predict_serial(loop_t *l, int frame_type);
/* Decoder, keyframe with intra modes: tier 0 decoded into l->q[0]; predicts l->pred band by band
 * from the tier-0 reconstruction (into l->keynew). */
void loop_intra_frame(loop_t *l, int qp);
/* One band of the tier-0 reconstruction of a keyframe: l->sum's tier-0 latents of band b over
 * l->pred into l->keynew (synthesize_band()). */
void loop_intra_band(loop_t *l, int band);
/* Clear the synthesis canvases (after a band-sequential frame that was abandoned). */
void loop_clear_synthesis(loop_t *l);
/* Reconstruct from l->pred and tiers 0..ntiers-1 of l->q; update the references. summed: a
 * P-frame's tiers are already dequantised and summed in l->sum (the encoder's quantiser forms the
 * sum while each block's levels are at hand), so they are not dequantised again. The side job
 * (nside tasks of side(side_arg, i), none if nside is 0; the encoder's tier codings) runs in the
 * pool alongside a P-frame's synthesis, and before the synthesis of other frames; it must not
 * touch what the reconstruction uses (l->sum, l->pred, the references, the canvases). *side_us
 * (if not NULL): the side job's share of the time; the rest is the synthesis'
 * (l->stats.synthesis_us). */
void loop_reconstruct(loop_t *l, int frame_type, int qp, int ntiers, int summed, void (*side)(void *, int),
                      void *side_arg, int nside, double *side_us);
/* The picture of the first `tiers` tiers of the last frame (motion m) over its prediction. */
void loop_picture_of_tiers(loop_t *l, const motion_t *m, int tiers, picture_t *dst);
void loop_output(const picture_t *pic, const snis_params *p, snis_image_out *out);

#endif
