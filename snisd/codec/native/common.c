/* Pictures, latent stores, motion fields and the thread pool of the native core. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

double now_us(void)
{
    struct timespec ts;
#ifdef SNIS_CPU_CLOCK /* stage times in CPU time of the calling thread: steadier on a shared machine */
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int plane_alloc(plane_t *p, int w, int h, int border)
{
    p->w = w;
    p->h = h;
    p->border = border;
    p->stride = (ptrdiff_t)((w + 2 * border + 31) & ~31);
    size_t rows = (size_t)h + 2 * (size_t)border + 1; /* +1: interpolation reads one row past */
    p->alloc = (uint8_t *)calloc(rows * (size_t)p->stride + 64, 1);
    if (!p->alloc)
        return SNIS_E_NOMEM;
    p->data = p->alloc + (size_t)border * (size_t)p->stride + (size_t)border;
    return SNIS_OK;
}

int picture_alloc(picture_t *pic, int wp, int hp)
{
    memset(pic, 0, sizeof(*pic));
    if (plane_alloc(&pic->p[0], wp, hp, BORDER) || plane_alloc(&pic->p[1], wp / 2, hp / 2, BORDER / 2) ||
        plane_alloc(&pic->p[2], wp / 2, hp / 2, BORDER / 2)) {
        picture_free(pic);
        return SNIS_E_NOMEM;
    }
    return SNIS_OK;
}

void picture_free(picture_t *pic)
{
    for (int i = 0; i < 3; i++) {
        free(pic->p[i].alloc);
        pic->p[i].alloc = pic->p[i].data = NULL;
    }
}

void picture_fill(picture_t *pic, int value)
{
    for (int i = 0; i < 3; i++) {
        plane_t *p = &pic->p[i];
        for (int y = -p->border; y < p->h + p->border; y++)
            memset(p->data + y * p->stride - p->border, value, (size_t)(p->w + 2 * p->border));
    }
}

void picture_extend(picture_t *pic)
{
    for (int i = 0; i < 3; i++) {
        plane_t *p = &pic->p[i];
        int b = p->border;
        for (int y = 0; y < p->h; y++) {
            uint8_t *row = p->data + y * p->stride;
            memset(row - b, row[0], (size_t)b);
            memset(row + p->w, row[p->w - 1], (size_t)b);
        }
        for (int y = 1; y <= b; y++) {
            memcpy(p->data - y * p->stride - b, p->data - b, (size_t)(p->w + 2 * b));
            memcpy(p->data + (p->h - 1 + y) * p->stride - b, p->data + (p->h - 1) * p->stride - b,
                   (size_t)(p->w + 2 * b));
        }
    }
}

void picture_copy(picture_t *dst, const picture_t *src)
{
    for (int i = 0; i < 3; i++) {
        const plane_t *s = &src->p[i];
        plane_t *d = &dst->p[i];
        for (int y = 0; y < s->h; y++)
            memcpy(d->data + y * d->stride, s->data + y * s->stride, (size_t)s->w);
    }
}

int latents_alloc(latents_t *l, int hb, int wb)
{
    memset(l, 0, sizeof(*l));
    l->hb = hb;
    l->wb = wb;
    size_t nb = (size_t)hb * wb, nk = (size_t)(hb / 2) * (wb / 2);
    l->y_ac = (int16_t *)calloc(nb * LAT_Y, sizeof(int16_t));
    l->y_k = (int16_t *)calloc(nk * LAT_K, sizeof(int16_t));
    l->f_y_ac = (uint8_t *)calloc(nb, 1);
    l->f_y_k = (uint8_t *)calloc(nk, 1);
    int ok = l->y_ac && l->y_k && l->f_y_ac && l->f_y_k;
    for (int p = 0; p < 2; p++) {
        l->c_ac[p] = (int16_t *)calloc(nb * LAT_C, sizeof(int16_t));
        l->c_k[p] = (int16_t *)calloc(nk * LAT_K, sizeof(int16_t));
        l->f_c_ac[p] = (uint8_t *)calloc(nb, 1);
        l->f_c_k[p] = (uint8_t *)calloc(nk, 1);
        ok = ok && l->c_ac[p] && l->c_k[p] && l->f_c_ac[p] && l->f_c_k[p];
    }
    if (!ok) {
        latents_free(l);
        return SNIS_E_NOMEM;
    }
    return SNIS_OK;
}

void latents_free(latents_t *l)
{
    free(l->y_ac);
    free(l->y_k);
    free(l->f_y_ac);
    free(l->f_y_k);
    for (int p = 0; p < 2; p++) {
        free(l->c_ac[p]);
        free(l->c_k[p]);
        free(l->f_c_ac[p]);
        free(l->f_c_k[p]);
    }
    memset(l, 0, sizeof(*l));
}

void latents_clear_flags(latents_t *l)
{
    size_t nb = (size_t)l->hb * l->wb, nk = (size_t)(l->hb / 2) * (l->wb / 2);
    memset(l->f_y_ac, 0, nb);
    memset(l->f_y_k, 0, nk);
    for (int p = 0; p < 2; p++) {
        memset(l->f_c_ac[p], 0, nb);
        memset(l->f_c_k[p], 0, nk);
    }
}

int motion_alloc(motion_t *m, int mbw, int mbh)
{
    m->mbw = mbw;
    m->mbh = mbh;
    size_t n = (size_t)mbw * mbh;
    m->intra = (uint8_t *)calloc(n, 1);
    m->imode = (uint8_t *)calloc(n, 1);
    m->mv = (int16_t *)calloc(n * 2, sizeof(int16_t));
    m->skip = (uint8_t *)calloc(n, 1);
    m->sad = (uint32_t *)calloc(n, sizeof(uint32_t));
    m->aq = 0;
    m->dqp = (int8_t *)calloc(n, 1);
    m->split = (uint8_t *)calloc(n, 1);
    m->merge = (uint8_t *)calloc(n, 1);
    m->smv = (int16_t *)calloc(n * 32, sizeof(int16_t));
    if (!m->intra || !m->imode || !m->mv || !m->skip || !m->sad || !m->dqp || !m->split || !m->merge || !m->smv) {
        motion_free(m);
        return SNIS_E_NOMEM;
    }
    return SNIS_OK;
}

void motion_free(motion_t *m)
{
    free(m->intra);
    free(m->imode);
    m->imode = NULL;
    free(m->mv);
    free(m->skip);
    free(m->sad);
    free(m->dqp);
    m->dqp = NULL;
    free(m->split);
    free(m->merge);
    free(m->smv);
    m->split = m->merge = NULL;
    m->smv = NULL;
    m->sad = NULL;
    m->intra = NULL;
    m->mv = NULL;
    m->skip = NULL;
}

static int median3(int a, int b, int c)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    return c < lo ? lo : (c > hi ? hi : c);
}

/* Vector component of cell (qy, qx); intra macroblocks count as zero. */
static inline int part_mv(const motion_t *m, int qy, int qx, int comp)
{
    return m->intra[(qy >> 2) * m->mbw + (qx >> 2)] ? 0 : sub_mv(m, qy, qx)[comp];
}

/* Coding order of cell (ry, rx) inside its macroblock: 16x16 partitions in z-order, their 8x8
 * cells in z-order. */
static inline int cell_order(int ry, int rx) { return ((ry >> 1) * 2 + (rx >> 1)) * 4 + (ry & 1) * 2 + (rx & 1); }

int part_predictor(const motion_t *m, int qy, int qx, int size, int comp)
{
    /* macroblocks in raster order, cells in z-order: the top-right cell is coded unless it lies
       in a later macroblock (right of this one in its row) or later in this macroblock */
    int a = qx > 0 ? part_mv(m, qy, qx - 1, comp) : 0;
    if (qy == 0)
        return a;
    int b = part_mv(m, qy - 1, qx, comp);
    int ty = qy - 1, tx = qx + size, tr_ok;
    if (tx >= 4 * m->mbw)
        tr_ok = 0;
    else if ((ty >> 2) < (qy >> 2))
        tr_ok = 1;
    else if ((tx >> 2) != (qx >> 2))
        tr_ok = 0;
    else
        tr_ok = cell_order(ty & 3, tx & 3) < cell_order(qy & 3, qx & 3);
    int c = tr_ok ? part_mv(m, ty, tx, comp) : (qx > 0 ? part_mv(m, qy - 1, qx - 1, comp) : b);
    return median3(a, b, c);
}

/* The macroblock's predictor is that of a partition of all its cells. */
int mv_predictor(const motion_t *m, int y, int x, int comp) { return part_predictor(m, 4 * y, 4 * x, 4, comp); }

int mv_zero_ctx(const motion_t *m, int qy, int qx, int comp, int pred)
{
    return (qx > 0 && part_mv(m, qy, qx - 1, comp) != pred) + (qy > 0 && part_mv(m, qy - 1, qx, comp) != pred);
}

void set_part_mv(motion_t *m, int qy, int qx, int size, const int16_t *v)
{
    int16_t vy = v[0], vx = v[1];
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int16_t *d = sub_mv(m, qy + y, qx + x);
            d[0] = vy;
            d[1] = vx;
        }
}

void set_mb_mv(motion_t *m, int i) { set_part_mv(m, 4 * (i / m->mbw), 4 * (i % m->mbw), 4, m->mv + 2 * i); }

void merge_candidates(const motion_t *m, int y, int x, int out[3][2])
{
    for (int c = 0; c < 2; c++) {
        out[0][c] = mv_predictor(m, y, x, c);
        out[1][c] = x > 0 ? part_mv(m, 4 * y, 4 * x - 1, c) : 0;
        out[2][c] = y > 0 ? part_mv(m, 4 * y - 1, 4 * x, c) : 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Thread pool: a fixed set of workers; pool_run hands out indices from a shared counter and
 * returns when all are done. With one thread everything runs on the caller. */

struct pool {
    int threads;
    pthread_t tid[SNIS_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    void (*fn)(void *, int);
    void *arg;
    int n, next, active, generation, quit;
};

static void *worker(void *vp)
{
    pool_t *p = (pool_t *)vp;
    int seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->quit)
            break;
        seen = p->generation;
        while (p->next < p->n) {
            int i = p->next++;
            pthread_mutex_unlock(&p->mu);
            p->fn(p->arg, i);
            pthread_mutex_lock(&p->mu);
        }
        if (--p->active == 0)
            pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

pool_t *pool_create(int threads)
{
    pool_t *p = (pool_t *)calloc(1, sizeof(pool_t));
    if (!p)
        return NULL;
    p->threads = clampi(threads, 1, SNIS_MAX_THREADS);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < p->threads; i++) {
        if (pthread_create(&p->tid[i], NULL, worker, p) != 0) {
            p->threads = i;
            break;
        }
    }
    return p;
}

void pool_destroy(pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++)
        pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}

int pool_threads(const pool_t *p) { return p->threads; }

void pool_run(pool_t *p, int n, void (*fn)(void *, int), void *arg)
{
    if (!p || p->threads == 1 || n <= 1) { /* no pool: on the caller, e.g. inside another pool's task */
        for (int i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->next = 0;
    p->active = p->threads; /* the workers plus the caller */
    p->generation++;
    pthread_cond_broadcast(&p->start);
    while (p->next < p->n) {
        int i = p->next++;
        pthread_mutex_unlock(&p->mu);
        fn(arg, i);
        pthread_mutex_lock(&p->mu);
    }
    if (--p->active > 0) {
        while (p->active > 0)
            pthread_cond_wait(&p->done, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}
