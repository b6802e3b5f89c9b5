/* Intra prediction: a macroblock predicted from samples of its own frame.
 *
 * Modes (coded per intra macroblock in tier 0, docs/BITSTREAM.md): grey (flat 128), DC, vertical,
 * horizontal, planar and the two 45-degree diagonals (down-left from the top-right, down-right
 * from the top-left). Luma and chroma use the macroblock's one mode.
 *
 * The samples come from a top line (a row above the macroblock, reaching one macroblock beyond it
 * on both sides) and a left column (the column left of it). Which samples those are depends on
 * the frame, because a sample is final only once the latents of every block whose synthesis
 * window reaches it are known:
 *  - P-frames (one analysis of the whole frame): the prediction of the neighbours, i.e. the
 *    motion-compensated prediction of inter neighbours and the intra prediction of intra ones
 *    (raster order), the row and column adjacent to the macroblock. Known before any latent.
 *  - Keyframes (coded in bands of one macroblock row, one analysis per band): the top line is
 *    the tier-0 reconstruction KEY_GAP rows above the macroblock, the last row that no latent of
 *    this band or later reaches; the left column is the left neighbour's prediction.
 * Both depend only on tier 0 (keyframes) or on no latent at all (P), so every decoder, whatever
 * tiers it receives, predicts a keyframe and a key picture exactly as the encoder.
 */
#ifndef SNIS_INTRA_H
#define SNIS_INTRA_H

#include "internal.h"

enum {
    INTRA_GREY = 0,
    INTRA_DC = 1,
    INTRA_V = 2,
    INTRA_H = 3,
    INTRA_PLANAR = 4,
    INTRA_DDL = 5, /* down-left: from the top line to the upper right */
    INTRA_DDR = 6, /* down-right: from the top line to the upper left */
    INTRA_MODES = 7,
};

#define KEY_GAP_Y 13 /* keyframe: the top line is this many rows above the band (luma) */
#define KEY_GAP_C 7  /* chroma */

/* The most probable mode of macroblock i: the left neighbour's if intra, else the top one's,
 * else DC (the context of the mode syntax). */
int intra_mpm(const motion_t *m, int i);

/* P-frame: predict every intra macroblock of pred (which holds the motion-compensated prediction
 * of the others) in raster order. With src (encoder) the mode is chosen (enable = 0: always
 * grey) by SAD + lambda * bits and stored in m->imode; without, m->imode is used. */
void intra_predict_frame(motion_t *m, picture_t *pred, const picture_t *src, int lambda, int enable);

/* Keyframe: predict macroblock row `band` of pred from the final rows of recon0 (the tier-0
 * reconstruction so far) and the left neighbours in pred; src as above. */
void intra_predict_band(motion_t *m, int band, picture_t *pred, const picture_t *recon0, const picture_t *src,
                        int lambda);

#endif
