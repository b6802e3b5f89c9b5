/* Block motion: estimation (encoder) and compensation (both sides).
 *
 * Vectors belong to 32x32 macroblocks, in half-pels of luma (quarter-pels of chroma). The
 * estimate is a 3DRS-like candidate search (zero, the median predictor, the left / top /
 * top-right vectors of this frame and three of the previous frame), a shrinking diamond at full
 * pel and a half-pel refinement; every candidate pays lambda times its vector-coding bits. A
 * macroblock whose predicted vector already matches almost exactly stops searching at once.
 * Compensation is bilinear in integers; references carry an edge-replicated border, so vectors
 * inside it need no clamping, and any other vector takes the clamped path with the same result.
 */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>

#include "internal.h"
#include "simd.h"

static int mv_bits(int d)
{
    if (d == 0)
        return 1;
    int a = d < 0 ? -d : d, n = 0;
    while (a) {
        n++;
        a >>= 1;
    }
    return 2 * n + 2;
}

/* One row of a luma block at a half-pel offset (fy, fx) from source row r (r + rs below it). */
static inline void half_pel_row(const uint8_t *r, ptrdiff_t rs, int fy, int fx, int size, uint8_t *dst)
{
    const uint8_t *r1 = r + rs;
    if (!fy && !fx)
        memcpy(dst, r, (size_t)size);
    else if (!fy)
        for (int x = 0; x < size; x++)
            dst[x] = (uint8_t)((r[x] + r[x + 1] + 1) >> 1);
    else if (!fx)
        for (int x = 0; x < size; x++)
            dst[x] = (uint8_t)((r[x] + r1[x] + 1) >> 1);
    else
        for (int x = 0; x < size; x++)
            dst[x] = (uint8_t)((r[x] + r[x + 1] + r1[x] + r1[x + 1] + 2) >> 2);
}

/* Luma block at half-pel vector: fast path inside the border. */
static void luma_block(const plane_t *ref, int x0, int y0, int mvy, int mvx, int size, uint8_t *dst,
                       ptrdiff_t ds)
{
    int iy = mvy >> 1, ix = mvx >> 1, fy = mvy & 1, fx = mvx & 1;
    int sy = y0 + iy, sx = x0 + ix;
    int b = ref->border;
    ptrdiff_t rs = ref->stride;
    if (sy >= -b && sx >= -b && sy + size + 1 <= ref->h + b && sx + size + 1 <= ref->w + b) {
        const uint8_t *r = ref->data + sy * rs + sx;
        for (int y = 0; y < size; y++, r += rs, dst += ds)
            half_pel_row(r, rs, fy, fx, size, dst);
        return;
    }
    int h1 = ref->h - 1, w1 = ref->w - 1;
    for (int y = 0; y < size; y++, dst += ds) {
        const uint8_t *ra = ref->data + clampi(sy + y, 0, h1) * rs;
        const uint8_t *rb = ref->data + clampi(sy + y + 1, 0, h1) * rs;
        for (int x = 0; x < size; x++) {
            int xa = clampi(sx + x, 0, w1), xb = clampi(sx + x + 1, 0, w1);
            int a = ra[xa], bb = ra[xb], c = rb[xa], d = rb[xb];
            int v = !fy && !fx ? a : (!fy ? (a + bb + 1) >> 1 : (!fx ? (a + c + 1) >> 1 : (a + bb + c + d + 2) >> 2));
            dst[x] = (uint8_t)v;
        }
    }
}

/* Chroma block at quarter-pel vector (the luma half-pel vector), bilinear in 1/16. */
static void chroma_block(const plane_t *ref, int x0, int y0, int mvy, int mvx, int size, uint8_t *dst,
                         ptrdiff_t ds)
{
    int iy = mvy >> 2, ix = mvx >> 2, fy = mvy & 3, fx = mvx & 3;
    int sy = y0 + iy, sx = x0 + ix;
    int b = ref->border;
    ptrdiff_t rs = ref->stride;
    int w00 = (4 - fx) * (4 - fy), w01 = fx * (4 - fy), w10 = (4 - fx) * fy, w11 = fx * fy;
    if (sy >= -b && sx >= -b && sy + size + 1 <= ref->h + b && sx + size + 1 <= ref->w + b) {
        const uint8_t *r = ref->data + sy * rs + sx;
        for (int y = 0; y < size; y++, r += rs, dst += ds) {
            const uint8_t *r1 = r + rs;
            for (int x = 0; x < size; x++)
                dst[x] = (uint8_t)((w00 * r[x] + w01 * r[x + 1] + w10 * r1[x] + w11 * r1[x + 1] + 8) >> 4);
        }
        return;
    }
    int h1 = ref->h - 1, w1 = ref->w - 1;
    for (int y = 0; y < size; y++, dst += ds) {
        const uint8_t *ra = ref->data + clampi(sy + y, 0, h1) * rs;
        const uint8_t *rb = ref->data + clampi(sy + y + 1, 0, h1) * rs;
        for (int x = 0; x < size; x++) {
            int xa = clampi(sx + x, 0, w1), xb = clampi(sx + x + 1, 0, w1);
            dst[x] = (uint8_t)((w00 * ra[xa] + w01 * ra[xb] + w10 * rb[xa] + w11 * rb[xb] + 8) >> 4);
        }
    }
}

void motion_compensate_row(const motion_t *m, const picture_t *ref, picture_t *dst, int mby)
{
    for (int mbx = 0; mbx < m->mbw; mbx++) {
        int i = mby * m->mbw + mbx;
        int x0 = mbx * MB, y0 = mby * MB;
        if (m->intra[i]) {
            for (int y = 0; y < MB; y++)
                memset(dst->p[0].data + (y0 + y) * dst->p[0].stride + x0, 128, MB);
            for (int c = 1; c < 3; c++)
                for (int y = 0; y < MB / 2; y++)
                    memset(dst->p[c].data + (y0 / 2 + y) * dst->p[c].stride + x0 / 2, 128, MB / 2);
            continue;
        }
        int mvy = m->mv[2 * i], mvx = m->mv[2 * i + 1];
        luma_block(&ref->p[0], x0, y0, mvy, mvx, MB, dst->p[0].data + y0 * dst->p[0].stride + x0, dst->p[0].stride);
        for (int c = 1; c < 3; c++)
            chroma_block(&ref->p[c], x0 / 2, y0 / 2, mvy, mvx, MB / 2,
                         dst->p[c].data + (y0 / 2) * dst->p[c].stride + x0 / 2, dst->p[c].stride);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Estimation. SADs use every other row (the full row width, which SIMD handles in one go). */

static uint32_t sad_int(const plane_t *cur, const plane_t *ref, int x0, int y0, int dy, int dx)
{
    const uint8_t *c = cur->data + y0 * cur->stride + x0;
    const uint8_t *r = ref->data + (y0 + dy) * ref->stride + x0 + dx;
    return 2 * sad32(c, cur->stride, r, ref->stride, MB, 2);
}

static uint32_t sad_half(const plane_t *cur, const plane_t *ref, int x0, int y0, int mvy, int mvx)
{
    /* interpolate only the rows the SAD reads (every other one); the encoder's vectors stay
       inside the reference border, so no clamping is needed */
    uint8_t tmp[MB / 2 * MB];
    const uint8_t *c = cur->data + y0 * cur->stride + x0;
    int iy = mvy >> 1, ix = mvx >> 1, fy = mvy & 1, fx = mvx & 1;
    const uint8_t *r = ref->data + (y0 + iy) * ref->stride + x0 + ix;
    ptrdiff_t rs = ref->stride;
    for (int y = 0; y < MB / 2; y++)
        half_pel_row(r + 2 * y * rs, rs, fy, fx, MB, tmp + y * MB);
    return 2 * sad32(c, 2 * cur->stride, tmp, MB, MB / 2, 1);
}

static void wait_row(volatile int *row_done, int row, int need)
{
    /* spin a little (the row above is usually just ahead), then yield the core: on a busy board
       the thread we wait for may be the one the scheduler has to run */
    for (int spins = 0; __atomic_load_n(&row_done[row], __ATOMIC_ACQUIRE) < need; spins++)
        if (spins > 256)
            sched_yield();
}

void motion_estimate_row(me_job *job, int mby)
{
    motion_t *m = job->out;
    const motion_t *prev = job->prev;
    const plane_t *cur = &job->cur->p[0], *ref = &job->ref->p[0];
    int mbw = m->mbw, mbh = m->mbh, lam = job->lambda, range = job->range;
    for (int mbx = 0; mbx < mbw; mbx++) {
        if (mby > 0)
            wait_row(job->row_done, mby - 1, mbx + 2 < mbw ? mbx + 2 : mbw);
        int i = mby * mbw + mbx, x0 = mbx * MB, y0 = mby * MB;
        m->intra[i] = 0;
        int py = mv_predictor(m, mby, mbx, 0), px = mv_predictor(m, mby, mbx, 1);
        int cand[9][2], n = 0;
#define CAND(a, b)                                                                                                      \
    do {                                                                                                               \
        cand[n][0] = (a);                                                                                              \
        cand[n][1] = (b);                                                                                              \
        n++;                                                                                                           \
    } while (0)
        CAND(py, px);
        CAND(0, 0);
        if (mbx > 0)
            CAND(m->mv[2 * (i - 1)], m->mv[2 * (i - 1) + 1]);
        if (mby > 0) {
            CAND(m->mv[2 * (i - mbw)], m->mv[2 * (i - mbw) + 1]);
            if (mbx + 1 < mbw)
                CAND(m->mv[2 * (i - mbw + 1)], m->mv[2 * (i - mbw + 1) + 1]);
        }
        CAND(prev->mv[2 * i], prev->mv[2 * i + 1]);
        if (mby + 1 < mbh)
            CAND(prev->mv[2 * (i + mbw)], prev->mv[2 * (i + mbw) + 1]);
        if (mbx + 1 < mbw)
            CAND(prev->mv[2 * (i + 1)], prev->mv[2 * (i + 1) + 1]);
#undef CAND
        int by = 0, bx = 0;
        uint32_t best = UINT32_MAX;
        int hy = 0, hx = 0, done = 0;
        for (int c = 0; c < n; c++) {
            int cy = clampi(cand[c][0] >> 1, -range, range), cx = clampi(cand[c][1] >> 1, -range, range);
            uint32_t s = sad_int(cur, ref, x0, y0, cy, cx);
            if (c == 0 && (cand[0][0] & 1 || cand[0][1] & 1) && cand[0][0] >> 1 == cy && cand[0][1] >> 1 == cx) {
                uint32_t sh = sad_half(cur, ref, x0, y0, cand[0][0], cand[0][1]);
                if (sh < (uint32_t)job->exit_sad) { /* the predicted half-pel vector is already right */
                    hy = cand[0][0];
                    hx = cand[0][1];
                    done = 1;
                    break;
                }
            }
            if (c == 0 && s < (uint32_t)job->exit_sad) {
                hy = 2 * cy;
                hx = 2 * cx;
                done = 1;
                break;
            }
            uint32_t cost = s + (uint32_t)(lam * (mv_bits(2 * cy - py) + mv_bits(2 * cx - px)));
            if (cost < best) {
                best = cost;
                by = cy;
                bx = cx;
            }
        }
        if (!done) {
            for (int step = 4; step >= 1; step >>= 1) {
                for (int it = 0; it < 2; it++) {
                    int moved = 0;
                    static const int dirs[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
                    for (int d = 0; d < 4; d++) {
                        int ny = by + dirs[d][0] * step, nx = bx + dirs[d][1] * step;
                        if (ny > range || ny < -range || nx > range || nx < -range)
                            continue;
                        uint32_t cost = sad_int(cur, ref, x0, y0, ny, nx) +
                                        (uint32_t)(lam * (mv_bits(2 * ny - py) + mv_bits(2 * nx - px)));
                        if (cost < best) {
                            best = cost;
                            by = ny;
                            bx = nx;
                            moved = 1;
                        }
                    }
                    if (!moved)
                        break;
                }
            }
            hy = 2 * by;
            hx = 2 * bx;
            best = sad_half(cur, ref, x0, y0, hy, hx) + (uint32_t)(lam * (mv_bits(hy - py) + mv_bits(hx - px)));
            int cy0 = hy, cx0 = hx;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    if (!dy && !dx)
                        continue;
                    int ny = cy0 + dy, nx = cx0 + dx;
                    uint32_t cost = sad_half(cur, ref, x0, y0, ny, nx) +
                                    (uint32_t)(lam * (mv_bits(ny - py) + mv_bits(nx - px)));
                    if (cost < best) {
                        best = cost;
                        hy = ny;
                        hx = nx;
                    }
                }
            /* intra if the block's own texture is cheaper than the motion-compensated residual */
            const uint8_t *c = cur->data + y0 * cur->stride + x0;
            uint32_t sum = 0;
            for (int y = 0; y < MB; y++)
                for (int x = 0; x < MB; x++)
                    sum += c[y * cur->stride + x];
            int mean = (int)(sum / (MB * MB));
            uint32_t sad_intra = 0;
            for (int y = 0; y < MB; y += 2)
                for (int x = 0; x < MB; x += 2) {
                    int d = c[y * cur->stride + x] - mean;
                    sad_intra += (uint32_t)(d < 0 ? -d : d);
                }
            if ((uint64_t)sad_intra * 4 + (uint64_t)job->intra_bias * lam < best) {
                m->intra[i] = 1;
                hy = hx = 0;
            }
        }
        m->mv[2 * i] = (int16_t)hy;
        m->mv[2 * i + 1] = (int16_t)hx;
        __atomic_store_n(&job->row_done[mby], mbx + 1, __ATOMIC_RELEASE);
    }
}
