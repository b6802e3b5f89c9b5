/* snisd.codec._native: the thin CPython binding of the native core.
 *
 * Arrays cross as buffers (numpy arrays, bytes), never copied; every call into the core
 * releases the GIL, so capture and transport keep running while a frame is coded. An instance
 * refuses to be entered from two threads at once (the core's instances are not re-entrant).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "rangecoder.h"
#include "simd.h"
#include "snis.h"

static PyObject *NativeError;

static PyObject *raise_status(int st, int tier)
{
    const char *what = st == SNIS_E_NOMEM       ? "out of memory"
                       : st == SNIS_E_ARG       ? "invalid argument"
                       : st == SNIS_E_CORRUPT   ? "corrupt payload"
                       : st == SNIS_E_TRUNCATED ? "truncated payload"
                                                : "error";
    PyObject *args = Py_BuildValue("(isi)", st, what, tier);
    if (args) {
        PyErr_SetObject(NativeError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* A buffer of 1-byte items with `ndim` dimensions, the last one contiguous. */
static int get_view(PyObject *obj, Py_buffer *v, int ndim, int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, v, PyBUF_STRIDES | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (v->itemsize != 1 || v->ndim != ndim || v->strides[ndim - 1] != 1) {
        PyErr_Format(PyExc_ValueError, "%s: expected a %d-d array of bytes with a contiguous last axis", name, ndim);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static int parse_weights(PyObject *obj, snis_weights *w)
{
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0)
        return -1;
    if ((size_t)v.len != sizeof(*w)) {
        PyErr_Format(PyExc_ValueError, "weights: %zd bytes, expected %zu", v.len, sizeof(*w));
        PyBuffer_Release(&v);
        return -1;
    }
    memcpy(w, v.buf, sizeof(*w));
    PyBuffer_Release(&v);
    return 0;
}

static PyObject *stats_dict(const snis_stats *s)
{
    PyObject *d = Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:d,s:i}", "motion_us", s->motion_us, "predict_us",
                         s->predict_us, "quantize_us", s->quantize_us, "entropy_us", s->entropy_us, "synthesis_us",
                         s->synthesis_us, "skipped_mbs", s->skipped_mbs, "intra_mbs", s->intra_mbs, "total_mbs",
                         s->total_mbs, "error_tier", s->error_tier, "synth_blocks", s->synth_blocks, "total_blocks",
                         s->total_blocks, "frame_type", s->frame_type, "motion_bits", s->motion_bits,
                         "motion_tools", s->motion_tools);
    if (!d)
        return NULL;
    PyObject *nz = PyTuple_New(SNIS_MAX_TIERS);
    if (!nz) {
        Py_DECREF(d);
        return NULL;
    }
    int bad = 0;
    for (int k = 0; k < SNIS_MAX_TIERS && !bad; k++) {
        PyObject *n = PyLong_FromLong(s->nz_levels[k]);
        bad = n == NULL;
        if (n)
            PyTuple_SET_ITEM(nz, k, n);
    }
    bad = bad || PyDict_SetItemString(d, "nz_levels", nz) < 0;
    Py_DECREF(nz);
    if (bad) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static int planes_out(PyObject *y, PyObject *u, PyObject *v, Py_buffer views[3], snis_image_out *img, int w, int h)
{
    PyObject *objs[3] = {y, u, v};
    for (int c = 0; c < 3; c++) {
        if (get_view(objs[c], &views[c], 2, 1, "plane") < 0) {
            for (int i = 0; i < c; i++)
                PyBuffer_Release(&views[i]);
            return -1;
        }
        int pw = c ? w / 2 : w, ph = c ? h / 2 : h;
        if (views[c].shape[0] != ph || views[c].shape[1] != pw) {
            PyErr_Format(PyExc_ValueError, "plane %d: shape (%zd, %zd), expected (%d, %d)", c, views[c].shape[0],
                         views[c].shape[1], ph, pw);
            for (int i = 0; i <= c; i++)
                PyBuffer_Release(&views[i]);
            return -1;
        }
        img->plane[c] = (uint8_t *)views[c].buf;
        img->stride[c] = views[c].strides[0];
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD snis_encoder *enc;
    snis_params p;
    int busy;
    int banded; /* a keyframe in bands is open: code() takes one band's latents */
} EncoderObject;

static int Encoder_init(EncoderObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"width", "height", "tiers", "tier_step_log2", "threads", "weights", "tuning",
                            "key_step_log2", NULL};
    PyObject *wobj, *tobj = Py_None;
    snis_params p;
    p.key_step_log2 = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiiiiO|Oi", names, &p.width, &p.height, &p.tiers, &p.tier_step_log2,
                                     &p.threads, &wobj, &tobj, &p.key_step_log2))
        return -1;
    if (p.key_step_log2 < 0)
        p.key_step_log2 = p.tier_step_log2;
    snis_weights w;
    if (parse_weights(wobj, &w) < 0)
        return -1;
    snis_tuning t;
    snis_default_tuning(&t);
    if (tobj != Py_None && !PyArg_ParseTuple(tobj, "iiiiiiiiiiiiiiiiiiiiiiiiii", &t.round_intra, &t.round_inter, &t.round_lower,
                                             &t.lambda_q4, &t.intra_bias, &t.skip_sad_q8, &t.search_range,
                                             &t.key_sad_q4, &t.me_exit_q4, &t.decimate, &t.rd_lambda_q8, &t.rdoq,
                                             &t.mb_rd, &t.aq_strength, &t.qpel, &t.merge, &t.split, &t.rd_rates,
                                             &t.intra_pred, &t.split8, &t.subpel, &t.obmc,
                                             &t.round_base, &t.round_key, &t.key_intra_bias, &t.aq_still))
        return -1;
    int st;
    snis_encoder *e;
    Py_BEGIN_ALLOW_THREADS
    e = snis_encoder_create(&p, &w, &t, &st);
    Py_END_ALLOW_THREADS
    if (!e) {
        raise_status(st, -1);
        return -1;
    }
    if (self->enc)
        snis_encoder_destroy(self->enc);
    self->enc = e;
    self->p = p;
    return 0;
}

static void Encoder_dealloc(EncoderObject *self)
{
    snis_encoder_destroy(self->enc);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int enter(int *busy)
{
    if (*busy) {
        PyErr_SetString(PyExc_RuntimeError, "codec instance used from two threads at once");
        return -1;
    }
    *busy = 1;
    return 0;
}

static void release(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* After an entry point has released its views: -1 with the exception set if a step failed (a
 * Python error, or a core status that is not SNIS_OK), else 0. */
static int check(int st)
{
    if (PyErr_Occurred())
        return -1;
    if (st != SNIS_OK) {
        raise_status(st, -1);
        return -1;
    }
    return 0;
}

/* The result of an entry point that returns nothing. */
static PyObject *none_or_error(int st)
{
    if (check(st) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Width or height padded to the core's alignment. */
static int padded(int v) { return (v + SNIS_ALIGN - 1) / SNIS_ALIGN * SNIS_ALIGN; }

/* The three planes of an input frame as an snis_image_in; views released by the caller on success. */
static int frame_in(EncoderObject *self, PyObject *objs[3], Py_buffer in[3], snis_image_in *img)
{
    for (int got = 0; got < 3; got++) {
        if (get_view(objs[got], &in[got], 2, 0, "frame plane") < 0) {
            release(in, got);
            return -1;
        }
        int pw = got ? self->p.width / 2 : self->p.width, ph = got ? self->p.height / 2 : self->p.height;
        if (in[got].shape[0] != ph || in[got].shape[1] != pw) {
            PyErr_Format(PyExc_ValueError, "frame plane %d: shape (%zd, %zd), expected (%d, %d)", got,
                         in[got].shape[0], in[got].shape[1], ph, pw);
            release(in, got + 1);
            return -1;
        }
        img->plane[got] = (const uint8_t *)in[got].buf;
        img->stride[got] = in[got].strides[0];
    }
    return 0;
}

/* The padded int8 residual buffers the analysis reads, luma (rows + context, wp + context) and
 * both chroma planes, for `rows` picture rows (the frame, or one band); 0 with both views held,
 * or -1 with an exception set and nothing held. */
static int residual_views(PyObject *ybuf, PyObject *uvbuf, int rows, int wp, Py_buffer *yp, Py_buffer *uvp)
{
    if (get_view(ybuf, yp, 2, 1, "luma residual buffer") < 0)
        return -1;
    if (get_view(uvbuf, uvp, 3, 1, "chroma residual buffer") < 0) {
        PyBuffer_Release(yp);
        return -1;
    }
    if (yp->shape[0] == rows + 2 * SNIS_LUMA_CTX && yp->shape[1] == wp + 2 * SNIS_LUMA_CTX && uvp->shape[0] == 2 &&
        uvp->shape[1] == rows / 2 + 2 * SNIS_CHROMA_CTX && uvp->shape[2] == wp / 2 + 2 * SNIS_CHROMA_CTX)
        return 0;
    PyErr_Format(PyExc_ValueError, "residual buffers have the wrong shape for %d rows of width %d", rows, wp);
    PyBuffer_Release(yp);
    PyBuffer_Release(uvp);
    return -1;
}

static PyObject *Encoder_predict(EncoderObject *self, PyObject *args)
{
    PyObject *objs[3], *ypad, *uvpad;
    int ftype, qp;
    if (!PyArg_ParseTuple(args, "OOOiiOO", &objs[0], &objs[1], &objs[2], &ftype, &qp, &ypad, &uvpad))
        return NULL;
    if (!self->enc)
        return PyErr_Format(PyExc_RuntimeError, "encoder not initialised");
    Py_buffer in[3], yp, uvp;
    snis_image_in img;
    if (frame_in(self, objs, in, &img) < 0)
        return NULL;
    if (residual_views(ypad, uvpad, padded(self->p.height), padded(self->p.width), &yp, &uvp) < 0) {
        release(in, 3);
        return NULL;
    }
    int st = SNIS_E_ARG;
    if (enter(&self->busy) == 0) {
        Py_BEGIN_ALLOW_THREADS
        st = snis_encoder_predict(self->enc, &img, ftype, qp, (int8_t *)yp.buf, yp.strides[0], (int8_t *)uvp.buf,
                                  uvp.strides[1], uvp.strides[0]);
        Py_END_ALLOW_THREADS
        self->busy = 0;
        self->banded = 0;
    }
    PyBuffer_Release(&yp);
    PyBuffer_Release(&uvp);
    release(in, 3);
    return none_or_error(st);
}

static int latent_tensor(PyObject *arr, PyObject *mult, PyObject *zp, int ndim, int nch, snis_latent_tensor *t,
                         Py_buffer *v, const char *name)
{
    if (get_view(arr, v, ndim, 0, name) < 0)
        return -1;
    if (v->shape[ndim - 1] != nch) {
        PyErr_Format(PyExc_ValueError, "%s: %zd channels, expected %d", name, v->shape[ndim - 1], nch);
        PyBuffer_Release(v);
        return -1;
    }
    t->data = (const int8_t *)v->buf;
    t->stride_p = ndim == 4 ? v->strides[0] : 0;
    t->stride_i = v->strides[ndim - 3];
    t->stride_j = v->strides[ndim - 2];
    Py_buffer m, z;
    if (PyObject_GetBuffer(mult, &m, PyBUF_SIMPLE) < 0)
        goto bad;
    if (PyObject_GetBuffer(zp, &z, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&m);
        goto bad;
    }
    if (m.len != (Py_ssize_t)(nch * sizeof(int32_t)) || z.len != (Py_ssize_t)(nch * sizeof(int32_t))) {
        PyErr_Format(PyExc_ValueError, "%s: multipliers and zero points must be %d int32 each", name, nch);
        PyBuffer_Release(&m);
        PyBuffer_Release(&z);
        goto bad;
    }
    memset(t->mult, 0, sizeof(t->mult));
    memset(t->zp, 0, sizeof(t->zp));
    memcpy(t->mult, m.buf, (size_t)m.len);
    memcpy(t->zp, z.buf, (size_t)z.len);
    PyBuffer_Release(&m);
    PyBuffer_Release(&z);
    return 0;
bad:
    PyBuffer_Release(v);
    return -1;
}

/* The four latent tensors of an hp-row picture (a whole frame, or one band); 0 and the views
 * acquired, or -1 with an exception set and nothing held. */
static int parse_latents(PyObject *lats, PyObject *mults, PyObject *zps, int hp, int wp, snis_latents *lat,
                         Py_buffer views[4])
{
    PyObject *a[4], *m[4], *z[4];
    if (!PyArg_ParseTuple(lats, "OOOO", &a[0], &a[1], &a[2], &a[3]) ||
        !PyArg_ParseTuple(mults, "OOOO", &m[0], &m[1], &m[2], &m[3]) ||
        !PyArg_ParseTuple(zps, "OOOO", &z[0], &z[1], &z[2], &z[3]))
        return -1;
    static const int ndims[4] = {3, 3, 4, 4}, nchs[4] = {63, 4, 15, 4};
    static const char *names[4] = {"y_ac", "y_coarse", "c_ac", "c_coarse"};
    snis_latent_tensor *ts[4] = {&lat->y_ac, &lat->y_coarse, &lat->c_ac, &lat->c_coarse};
    for (int got = 0; got < 4; got++) {
        if (latent_tensor(a[got], m[got], z[got], ndims[got], nchs[got], ts[got], &views[got], names[got]) < 0) {
            release(views, got);
            return -1;
        }
        int div = got % 2 ? 16 : 8, nd = ndims[got];
        const Py_ssize_t *sh = views[got].shape;
        if (sh[nd - 3] != hp / div || sh[nd - 2] != wp / div || (nd == 4 && sh[0] != 2)) {
            PyErr_Format(PyExc_ValueError, "%s: wrong shape for a %dx%d picture", names[got], wp, hp);
            release(views, got + 1);
            return -1;
        }
    }
    return 0;
}

static PyObject *Encoder_code(EncoderObject *self, PyObject *args)
{
    PyObject *lats, *mults, *zps;
    if (!PyArg_ParseTuple(args, "OOO", &lats, &mults, &zps))
        return NULL;
    if (!self->enc)
        return PyErr_Format(PyExc_RuntimeError, "encoder not initialised");
    snis_latents lat;
    Py_buffer views[4];
    int rows = self->banded ? SNIS_ALIGN : padded(self->p.height);
    if (parse_latents(lats, mults, zps, rows, padded(self->p.width), &lat, views) < 0)
        return NULL;
    int st = SNIS_E_ARG;
    if (enter(&self->busy) == 0) {
        Py_BEGIN_ALLOW_THREADS
        st = snis_encoder_code(self->enc, &lat);
        Py_END_ALLOW_THREADS
        self->busy = 0;
        self->banded = 0;
    }
    release(views, 4);
    if (check(st) < 0)
        return NULL;
    PyObject *out = PyTuple_New(self->p.tiers);
    if (!out)
        return NULL;
    for (int k = 0; k < self->p.tiers; k++) {
        size_t len;
        const uint8_t *b = snis_encoder_payload(self->enc, k, &len);
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)b, (Py_ssize_t)len);
        if (!bytes) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, k, bytes);
    }
    return out;
}

static PyObject *Encoder_intra_begin(EncoderObject *self, PyObject *args)
{
    PyObject *objs[3];
    int qp;
    if (!PyArg_ParseTuple(args, "OOOi", &objs[0], &objs[1], &objs[2], &qp))
        return NULL;
    if (!self->enc)
        return PyErr_Format(PyExc_RuntimeError, "encoder not initialised");
    Py_buffer in[3];
    snis_image_in img;
    if (frame_in(self, objs, in, &img) < 0)
        return NULL;
    int st = SNIS_E_ARG;
    if (enter(&self->busy) == 0) {
        Py_BEGIN_ALLOW_THREADS
        st = snis_encoder_intra_begin(self->enc, &img, qp);
        Py_END_ALLOW_THREADS
        self->busy = 0;
        self->banded = st == SNIS_OK;
    }
    release(in, 3);
    return none_or_error(st);
}

static PyObject *Encoder_intra_band(EncoderObject *self, PyObject *args)
{
    int band;
    PyObject *lats, *mults, *zps, *ystrip, *uvstrip;
    if (!PyArg_ParseTuple(args, "iOOOOO", &band, &lats, &mults, &zps, &ystrip, &uvstrip))
        return NULL;
    if (!self->enc || !self->banded)
        return PyErr_Format(PyExc_RuntimeError, "no keyframe in bands open (intra_begin)");
    int wp = padded(self->p.width);
    snis_latents lat;
    Py_buffer views[4], yp, uvp;
    int nviews = lats != Py_None ? 4 : 0;
    if (nviews && parse_latents(lats, mults, zps, SNIS_ALIGN, wp, &lat, views) < 0)
        return NULL;
    if (residual_views(ystrip, uvstrip, SNIS_ALIGN, wp, &yp, &uvp) < 0) {
        release(views, nviews);
        return NULL;
    }
    int st = SNIS_E_ARG;
    if (enter(&self->busy) == 0) {
        Py_BEGIN_ALLOW_THREADS
        st = snis_encoder_intra_band(self->enc, band, nviews ? &lat : NULL, (int8_t *)yp.buf, yp.strides[0],
                                     (int8_t *)uvp.buf, uvp.strides[1], uvp.strides[0]);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    PyBuffer_Release(&yp);
    PyBuffer_Release(&uvp);
    release(views, nviews);
    return none_or_error(st);
}

static PyObject *Encoder_reconstruction(EncoderObject *self, PyObject *args)
{
    int tiers;
    PyObject *y, *u, *v;
    if (!PyArg_ParseTuple(args, "iOOO", &tiers, &y, &u, &v))
        return NULL;
    Py_buffer views[3];
    snis_image_out img;
    if (planes_out(y, u, v, views, &img, self->p.width, self->p.height) < 0)
        return NULL;
    int st = SNIS_E_ARG;
    if (enter(&self->busy) == 0) {
        Py_BEGIN_ALLOW_THREADS
        st = snis_encoder_reconstruction(self->enc, tiers, &img);
        Py_END_ALLOW_THREADS
        self->busy = 0;
    }
    release(views, 3);
    return none_or_error(st);
}

static PyObject *Encoder_contexts(EncoderObject *self, PyObject *args)
{
    int tier;
    if (!PyArg_ParseTuple(args, "i", &tier))
        return NULL;
    if (!self->enc)
        return PyErr_Format(PyExc_RuntimeError, "encoder not initialised");
    int n = snis_encoder_contexts(self->enc, tier, NULL, 0);
    if (n < 0)
        return PyErr_Format(PyExc_ValueError, "tier %d: the stream has %d tiers", tier, self->p.tiers);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n * 2);
    if (out)
        snis_encoder_contexts(self->enc, tier, (uint16_t *)PyBytes_AS_STRING(out), (size_t)n);
    return out;
}

static PyObject *Encoder_stats(EncoderObject *self, PyObject *Py_UNUSED(ignored))
{
    snis_stats s;
    memset(&s, 0, sizeof(s));
    snis_encoder_stats(self->enc, &s);
    return stats_dict(&s);
}

static PyMethodDef Encoder_methods[] = {
    {"predict", (PyCFunction)Encoder_predict, METH_VARARGS,
     "predict(y, u, v, frame_type, qp, ypad, uvpad): motion, prediction and the padded int8 residual"},
    {"code", (PyCFunction)Encoder_code, METH_VARARGS,
     "code((y_ac, y_coarse, c_ac, c_coarse), multipliers, zero_points) -> one payload per tier"},
    {"intra_begin", (PyCFunction)Encoder_intra_begin, METH_VARARGS,
     "intra_begin(y, u, v, qp): start a keyframe coded in bands of one macroblock row"},
    {"intra_band", (PyCFunction)Encoder_intra_band, METH_VARARGS,
     "intra_band(band, latents of band-1 or None, multipliers, zero_points, ystrip, uvstrip): quantise the band "
     "above, predict this band and write its residual strip"},
    {"reconstruction", (PyCFunction)Encoder_reconstruction, METH_VARARGS,
     "reconstruction(tiers, y, u, v): the last frame's picture with that many tiers"},
    {"stats", (PyCFunction)Encoder_stats, METH_NOARGS, "stage times (us) and counters of the last frame"},
    {"contexts", (PyCFunction)Encoder_contexts, METH_VARARGS,
     "contexts(tier): the tier's context probabilities of a 0 (uint16, native order, 1/32768)"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "snisd.codec._native.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Native SNIS encoder instance",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
};

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD snis_decoder *dec;
    snis_params p;
    int busy;
} DecoderObject;

static int Decoder_init(DecoderObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"width", "height", "tiers", "tier_step_log2", "threads", "weights", "key_step_log2",
                            NULL};
    PyObject *wobj;
    snis_params p;
    p.key_step_log2 = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiiiiO|i", names, &p.width, &p.height, &p.tiers, &p.tier_step_log2,
                                     &p.threads, &wobj, &p.key_step_log2))
        return -1;
    if (p.key_step_log2 < 0)
        p.key_step_log2 = p.tier_step_log2;
    snis_weights w;
    if (parse_weights(wobj, &w) < 0)
        return -1;
    int st;
    snis_decoder *d;
    Py_BEGIN_ALLOW_THREADS
    d = snis_decoder_create(&p, &w, &st);
    Py_END_ALLOW_THREADS
    if (!d) {
        raise_status(st, -1);
        return -1;
    }
    if (self->dec)
        snis_decoder_destroy(self->dec);
    self->dec = d;
    self->p = p;
    return 0;
}

static void Decoder_dealloc(DecoderObject *self)
{
    snis_decoder_destroy(self->dec);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Decoder_decode(DecoderObject *self, PyObject *args)
{
    int ftype, qp, show;
    PyObject *payloads, *y, *u, *v;
    if (!PyArg_ParseTuple(args, "iiOiOOO", &ftype, &qp, &payloads, &show, &y, &u, &v))
        return NULL;
    if (!self->dec)
        return PyErr_Format(PyExc_RuntimeError, "decoder not initialised");
    if (!PyTuple_Check(payloads) || PyTuple_GET_SIZE(payloads) < 1 || PyTuple_GET_SIZE(payloads) > SNIS_MAX_TIERS)
        return PyErr_Format(PyExc_ValueError, "payloads must be a tuple of 1..%d buffers", SNIS_MAX_TIERS);
    int n = (int)PyTuple_GET_SIZE(payloads);
    Py_buffer pv[SNIS_MAX_TIERS];
    const uint8_t *ptr[SNIS_MAX_TIERS];
    size_t len[SNIS_MAX_TIERS];
    int got = 0;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(payloads, got), &pv[got], PyBUF_SIMPLE) < 0)
            break;
        ptr[got] = (const uint8_t *)pv[got].buf;
        len[got] = (size_t)pv[got].len;
    }
    Py_buffer views[3];
    snis_image_out img;
    int st = SNIS_E_ARG, have_out = 0;
    if (got == n && planes_out(y, u, v, views, &img, self->p.width, self->p.height) == 0) {
        have_out = 1;
        if (enter(&self->busy) == 0) {
            Py_BEGIN_ALLOW_THREADS
            st = snis_decoder_decode(self->dec, ftype, qp, n, ptr, len, show, &img);
            Py_END_ALLOW_THREADS
            self->busy = 0;
        }
    }
    release(pv, got);
    if (have_out)
        release(views, 3);
    if (PyErr_Occurred())
        return NULL;
    if (st != SNIS_OK) {
        snis_stats s;
        snis_decoder_stats(self->dec, &s);
        return raise_status(st, s.error_tier);
    }
    Py_RETURN_NONE;
}

static PyObject *Decoder_stats(DecoderObject *self, PyObject *Py_UNUSED(ignored))
{
    snis_stats s;
    memset(&s, 0, sizeof(s));
    snis_decoder_stats(self->dec, &s);
    return stats_dict(&s);
}

static PyMethodDef Decoder_methods[] = {
    {"decode", (PyCFunction)Decoder_decode, METH_VARARGS,
     "decode(frame_type, qp, payloads, show_tiers, y, u, v): decode one frame into the planes"},
    {"stats", (PyCFunction)Decoder_stats, METH_NOARGS, "stage times (us) and counters of the last frame"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "snisd.codec._native.Decoder",
    .tp_basicsize = sizeof(DecoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Native SNIS decoder instance",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
};

static PyObject *py_step16(PyObject *self, PyObject *args)
{
    int qp, tier, tiers, ratio;
    if (!PyArg_ParseTuple(args, "iiii", &qp, &tier, &tiers, &ratio))
        return NULL;
    return PyLong_FromLong(snis_step16(qp, tier, tiers, ratio));
}

/* The range coder on its own, for property tests: symbol i has kind[i] (0 adaptive bit,
 * 1 bypass bit, 2 Exp-Golomb value), context ctx[i] (0..63) and value[i] (int32). */
static PyObject *py_rc_code(PyObject *self, PyObject *args)
{
    Py_buffer kinds, ctxs, vals, data, init = {0};
    int decoding;
    if (!PyArg_ParseTuple(args, "py*y*y*y*|y*", &decoding, &kinds, &ctxs, &vals, &data, &init))
        return NULL;
    Py_ssize_t n = kinds.len;
    PyObject *result = NULL;
    if (ctxs.len != n || vals.len != n * (Py_ssize_t)sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "kinds, ctxs and values must describe the same symbols");
        goto done;
    }
    if (init.buf && init.len != 64 * (Py_ssize_t)sizeof(uint16_t)) {
        PyErr_SetString(PyExc_ValueError, "init must hold 64 uint16 probabilities");
        goto done;
    }
    uint16_t probs[64 + 8][2];
    for (int i = 0; i < 72; i++) {
        uint16_t p0 = PROB_ONE / 2;
        if (init.buf && i < 64)
            memcpy(&p0, (const uint8_t *)init.buf + 2 * i, 2);
        probs[i][0] = probs[i][1] = p0 >= 1 && p0 < PROB_ONE ? p0 : PROB_ONE / 2;
    }
    rangecoder rc;
    if (decoding) {
        rc_decoder_init(&rc, (const uint8_t *)data.buf, (size_t)data.len);
    } else if (rc_encoder_init(&rc, 256) != SNIS_OK) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *k = (const uint8_t *)kinds.buf, *c = (const uint8_t *)ctxs.buf;
    int32_t *out = (int32_t *)PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    const int32_t *v = (const int32_t *)vals.buf;
    for (Py_ssize_t i = 0; out && i < n; i++) {
        int ctx = c[i] & 63;
        if (k[i] == 0)
            out[i] = rc_bit(&rc, probs[ctx], v[i] & 1);
        else if (k[i] == 1)
            out[i] = rc_bypass(&rc, v[i] & 1);
        else
            out[i] = (int32_t)rc_expgolomb(&rc, &probs[ctx], 8, (uint32_t)v[i]);
    }
    if (!out) {
        PyErr_NoMemory();
    } else if (decoding) {
        result = PyBytes_FromStringAndSize((const char *)out, n * (Py_ssize_t)sizeof(int32_t));
    } else {
        size_t len = 0;
        if (rc_finish(&rc, &len) == SNIS_OK)
            result = PyBytes_FromStringAndSize((const char *)rc.buf, (Py_ssize_t)len);
        else
            PyErr_NoMemory();
        rc_free(&rc);
    }
    PyMem_Free(out);
done:
    PyBuffer_Release(&kinds);
    PyBuffer_Release(&ctxs);
    PyBuffer_Release(&vals);
    PyBuffer_Release(&data);
    if (init.buf)
        PyBuffer_Release(&init);
    return result;
}

static PyMethodDef module_methods[] = {
    {"rc_code", py_rc_code, METH_VARARGS,
     "rc_code(decoding, kinds, ctxs, values, data[, init]): the range coder alone (tests): payload or int32 "
     "values; init: the 64 contexts' starting probabilities (uint16, 1/32768; default one half)"},
    {"step16", py_step16, METH_VARARGS, "step16(qp, tier, tiers, tier_step_log2): quantiser step in 1/16 pixel"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "SNIS-896 native core (C, SIMD)", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__native(void)
{
    if (PyType_Ready(&EncoderType) < 0 || PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    NativeError = PyErr_NewException("snisd.codec._native.NativeError", NULL, NULL);
    Py_INCREF(NativeError);
    Py_INCREF(&EncoderType);
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "NativeError", NativeError) < 0 ||
        PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0 ||
        PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0 ||
        PyModule_AddStringConstant(m, "SIMD", SNIS_SIMD) < 0 || PyModule_AddIntConstant(m, "ALIGN", SNIS_ALIGN) < 0 ||
        PyModule_AddIntConstant(m, "LUMA_CTX", SNIS_LUMA_CTX) < 0 ||
        PyModule_AddIntConstant(m, "CHROMA_CTX", SNIS_CHROMA_CTX) < 0 ||
        PyModule_AddIntConstant(m, "FRAC", SNIS_FRAC) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
