/* Intra prediction (see intra.h). All integer; the decoder runs the same code on decoded modes. */
#include "intra.h"

#define MAXN MB
#define MAXD KEY_GAP_Y
#define CLIP_SAFE 127 /* the int8 residual the analysis reads is clipped beyond this */
#define MEAN_WEIGHT 64 /* price of a unit of residual mean over a macroblock */
#define TOPLEN (3 * MAXN + 2 * MAXD + 2)

typedef struct {
    uint8_t buf[TOPLEN];
    uint8_t *top;    /* top[t] for t in [-(n + d) - 1, 2n + d], at distance d above row 0 */
    uint8_t left[MAXN];
    int n, d;
} refs_t;

/* The reference samples of an n x n block at (x0, y0): the top line from row ty of tp (ty < 0:
 * none), the left column from lp (x0 == 0: none); missing ones are substituted. */
static void gather(refs_t *r, const plane_t *tp, int ty, const plane_t *lp, int x0, int y0, int n, int d)
{
    r->n = n;
    r->d = d;
    r->top = r->buf + n + d + 1;
    int lo = -(n + d) - 1, hi = 2 * n + d;
    int has_top = ty >= 0, has_left = x0 > 0;
    if (has_top) {
        const uint8_t *row = tp->data + ty * tp->stride;
        for (int t = lo; t <= hi; t++)
            r->top[t] = row[clampi(x0 + t, 0, tp->w - 1)];
    }
    if (has_left)
        for (int y = 0; y < n; y++)
            r->left[y] = lp->data[(y0 + y) * lp->stride + x0 - 1];
    if (!has_top)
        for (int t = lo; t <= hi; t++)
            r->top[t] = has_left ? r->left[0] : 128;
    if (!has_left)
        for (int y = 0; y < n; y++)
            r->left[y] = has_top ? r->top[0] : 128;
}

static inline int smooth(const uint8_t *t, int i) { return (t[i - 1] + 2 * t[i] + t[i + 1] + 2) >> 2; }

/* One n x n prediction (n = 32 or 16) into dst. */
static void predict(const refs_t *r, int mode, uint8_t *dst, ptrdiff_t ds)
{
    int n = r->n, d = r->d, lg = n == 32 ? 5 : 4;
    const uint8_t *top = r->top, *left = r->left;
    switch (mode) {
    case INTRA_DC: {
        int s = 0;
        for (int i = 0; i < n; i++)
            s += top[i] + left[i];
        int v = (s + n) >> (lg + 1);
        for (int y = 0; y < n; y++)
            memset(dst + y * ds, v, (size_t)n);
        break;
    }
    case INTRA_V:
        for (int y = 0; y < n; y++)
            memcpy(dst + y * ds, top, (size_t)n);
        break;
    case INTRA_H:
        for (int y = 0; y < n; y++)
            memset(dst + y * ds, left[y], (size_t)n);
        break;
    case INTRA_PLANAR: {
        /* ((n-1-x) left[y] + (x+1) top[n] + (n-1-y) top[x] + (y+1) left[n-1] + n) >> log2(2n), row by
           row in 16 bits (at most 2n * 255 + n): the vertical part is carried from row to row */
        int tr = top[n], bl = left[n - 1];
        int16_t vert[MAXN];
        for (int x = 0; x < n; x++)
            vert[x] = (int16_t)((n - 1) * top[x] + bl + n);
        for (int y = 0; y < n; y++) {
            uint8_t *row = dst + y * ds;
            for (int x = 0; x < n; x++)
                row[x] = (uint8_t)(((n - 1 - x) * left[y] + (x + 1) * tr + vert[x]) >> (lg + 1));
            for (int x = 0; x < n; x++)
                vert[x] = (int16_t)(vert[x] - top[x] + bl);
        }
        break;
    }
    case INTRA_DDL:
    case INTRA_DDR: {
        /* each row is a window of the smoothed top line: x + y + d (down-left), x - y - d
           (down-right) */
        uint8_t sm[TOPLEN];
        int lo = -(n + d), hi = 2 * n + d - 1; /* the indices smooth() can read around */
        for (int t = lo; t <= hi; t++)
            sm[t - lo] = (uint8_t)smooth(top, t);
        for (int y = 0; y < n; y++)
            memcpy(dst + y * ds, sm + ((mode == INTRA_DDL ? y + d : -y - d) - lo), (size_t)n);
        break;
    }
    default: /* INTRA_GREY */
        for (int y = 0; y < n; y++)
            memset(dst + y * ds, 128, (size_t)n);
        break;
    }
}

/* The price of a 32x32 residual: its SAD around its mean (the transform codes a block's mean and
 * slow gradients cheaply in its coarse latents, so a mode pays off only where it predicts
 * texture), a little for the mean, and a heavy price on the part beyond the int8 range the
 * analysis reads (it is clipped there, and no latent can bring it back). */
SNIS_HOT static uint64_t cost_of(const uint8_t *s, ptrdiff_t ss, const uint8_t *p)
{
    /* 16-bit lanes: a row's sums fit (32 x 255), the block's do not and are carried in 32 bits */
    int16_t dd[MB * MB];
    int32_t sum = 0;
    uint32_t over = 0;
    for (int y = 0; y < MB; y++) {
        int16_t rs = 0, ro = 0;
        for (int x = 0; x < MB; x++) {
            int16_t d = (int16_t)(s[y * ss + x] - p[y * MB + x]);
            int16_t a = d < 0 ? (int16_t)-d : d;
            dd[y * MB + x] = d;
            rs = (int16_t)(rs + d);
            ro = (int16_t)(ro + (a > CLIP_SAFE ? a - CLIP_SAFE : 0));
        }
        sum += rs;
        over += (uint32_t)ro;
    }
    int mean = (sum + (sum >= 0 ? MB * MB / 2 : -MB * MB / 2)) / (MB * MB);
    uint32_t sad = 0;
    for (int y = 0; y < MB; y++) {
        uint16_t rsad = 0;
        for (int x = 0; x < MB; x++) {
            int16_t d = (int16_t)(dd[y * MB + x] - mean);
            rsad = (uint16_t)(rsad + (d < 0 ? -d : d));
        }
        sad += rsad;
    }
    return (uint64_t)sad + (uint64_t)(mean < 0 ? -mean : mean) * MEAN_WEIGHT + 4096 * (uint64_t)over;
}

int intra_mpm(const motion_t *m, int i)
{
    int mbx = i % m->mbw;
    if (mbx > 0 && m->intra[i - 1])
        return m->imode[i - 1];
    if (i >= m->mbw && m->intra[i - m->mbw])
        return m->imode[i - m->mbw];
    return INTRA_DC;
}

/* Predict macroblock i (mode chosen with src, else m->imode[i]): luma and both chroma planes. */
static void predict_mb(motion_t *m, int i, picture_t *pred, const picture_t *tsrc, int key, const picture_t *src,
                       int lambda, int enable)
{
    int mbx = i % m->mbw, mby = i / m->mbw;
    int x0 = mbx * MB, y0 = mby * MB;
    refs_t r;
    int ty = key ? (mby > 0 ? y0 - KEY_GAP_Y : -1) : y0 - 1;
    int d = key ? KEY_GAP_Y : 1;
    gather(&r, &tsrc->p[0], ty, &pred->p[0], x0, y0, MB, d);
    uint8_t *dst = pred->p[0].data + y0 * pred->p[0].stride + x0;
    ptrdiff_t ds = pred->p[0].stride;
    int mode;
    if (src) {
        mode = INTRA_GREY;
        if (enable) {
            int mpm = intra_mpm(m, i);
            uint8_t tmp[MB * MB];
            uint64_t best = UINT64_MAX;
            const uint8_t *s = src->p[0].data + y0 * src->p[0].stride + x0;
            for (int k = 0; k < INTRA_MODES; k++) {
                predict(&r, k, tmp, MB);
                uint64_t cost = cost_of(s, src->p[0].stride, tmp) + (uint64_t)lambda * (k == mpm ? 1 : 4);
                if (cost < best) {
                    best = cost;
                    mode = k;
                }
            }
        }
        m->imode[i] = (uint8_t)mode;
    } else {
        mode = m->imode[i];
    }
    predict(&r, mode, dst, ds);
    for (int c = 1; c < 3; c++) {
        int cx = x0 / 2, cy = y0 / 2;
        int cty = key ? (mby > 0 ? cy - KEY_GAP_C : -1) : cy - 1;
        gather(&r, &tsrc->p[c], cty, &pred->p[c], cx, cy, MB / 2, key ? KEY_GAP_C : 1);
        predict(&r, mode, pred->p[c].data + cy * pred->p[c].stride + cx, pred->p[c].stride);
    }
}

void intra_predict_frame(motion_t *m, picture_t *pred, const picture_t *src, int lambda, int enable)
{
    for (int i = 0; i < m->mbw * m->mbh; i++)
        if (m->intra[i])
            predict_mb(m, i, pred, pred, 0, src, lambda, enable);
}

void intra_predict_band(motion_t *m, int band, picture_t *pred, const picture_t *recon0, const picture_t *src,
                        int lambda)
{
    for (int mbx = 0; mbx < m->mbw; mbx++)
        predict_mb(m, band * m->mbw + mbx, pred, recon0, 1, src, lambda, 1);
}
