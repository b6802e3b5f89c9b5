"""Shipped SNIS-896 models: the 896 parameters inside the int8 graph, int8 fidelity, runtime contract.

Runs the real LiteRT interpreter on the models in models/ and natural frames from tests/data.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import struct
from pathlib import Path

import numpy as np
import pytest

from snisd.codec import analysis as ana
from snisd.codec import reference as ref
from snisd.codec import weights as wts
from snisd.codec.tflite_file import TFLiteFile
from snisd.errors import ModelError

MODELS = Path(__file__).resolve().parents[1] / "models"
DATA = Path(__file__).parent / "data"
PAIRS = [
    ("snis896.tflite", "snis896_analysis_float.npz", "snis896_synthesis.npz"),
    ("dct8.tflite", None, "dct8_synthesis.npz"),
]


def _analysis_weights(npz):
    return ref.dct_weights() if npz is None else wts.load_weights(MODELS / npz)


def _filters(model: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every conv operator's filter as stored: name -> (dequantised float filter, per-channel scale).

    Also asserts the model's conv operators have all-zero biases (the transform has none).
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(MODELS / model))
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    out = {}
    for op in it._get_ops_details():
        if op["op_name"] in ("DELEGATE",):
            continue
        assert op["op_name"] in ("CONV_2D", "STRIDED_SLICE", "TRANSPOSE", "RESHAPE", "SPACE_TO_DEPTH"), op
        if op["op_name"] != "CONV_2D":
            continue
        w = details[op["inputs"][1]]
        q = w["quantization_parameters"]
        axis = q["quantized_dimension"]
        shape = [1] * len(w["shape"])
        shape[axis] = -1
        assert not np.any(q["zero_points"])
        out[w["name"].split("/")[0]] = (it.get_tensor(w["index"]) * q["scales"].reshape(shape), q["scales"])
        assert not np.any(it.get_tensor(op["inputs"][2])), "conv bias must be zero (the transform has no biases)"
    return out


def _steps(model: str):
    return ana._steps_from((MODELS / model).read_bytes(), model)


def _expected_filters(w, steps):
    """The relation the export promises: the 896 parameters, group-shared, times folded gains.

    Luma row u: A_row[u] / step_row[u]; luma column (u, v): A_col[g(u)][v] * step_row[u] /
    step_col[u, v]; chroma coefficient (u, v): the 2-D filter A_col[h(u)][v] (x) A_row[u] /
    step_col[u, v]; coarse k: A_coarse[k] * step_col[DC] / step_coarse[k].
    Returned in the operators' filter layouts (see tools/export_model.py).
    """
    out = {}
    for prefix, (n, groups) in wts.PLANES.items():
        s = steps[prefix]
        a_row = np.asarray(w[f"{prefix}_row"], np.float64)
        a_col = np.asarray(w[f"{prefix}_col"], np.float64)
        a_coarse = np.asarray(w[f"{prefix}_coarse"], np.float64)
        if prefix == "luma":
            row = np.zeros((n, 1, 2, n))
            col = np.zeros((n * n, 2 * n))
            for u in range(n):
                row[u, 0] = (a_row[u] / s["row"][u]).reshape(2, n)  # [p, q]: tap n*p + q
                for v in range(n):
                    col[u * n + v] = a_col[groups[u]][v] * s["row"][u] / s["col"][u * n + v]
            out["luma_row"] = row
            out["luma_ac"] = col.reshape(n * n, 2, 1, n)  # [u*n+v, p, 0, t]: tap n*p + t
        else:
            f = np.zeros((n * n, 2, 2, n * n))
            for u in range(n):
                for v in range(n):
                    full = np.outer(a_col[groups[u]][v], a_row[u]) / s["col"][u * n + v]  # [row tap, column tap]
                    for p in range(2):
                        for q in range(2):
                            f[u * n + v, p, q] = full[n * p : n * p + n, n * q : n * q + n].reshape(-1)
            out["chroma_ac"] = f  # [u*n+v, p, q, n*t+s] (SPACE_TO_DEPTH cell order)
        coarse = a_coarse * (s["col"][0] / s["coarse"])[:, None, None]
        out[f"{prefix}_coarse"] = coarse[..., None]
    return out


@pytest.mark.parametrize("model,npz,_synth", PAIRS)
def test_tflite_filters_are_the_896_parameters(model, npz, _synth):
    """Every filter element of the graph is one of the 896 parameters (or, for the chroma 2-D
    filters, a product of a column and a row parameter) times a folded gain, within half an
    int8 weight step: the int8 model has exactly the 896 free parameters of the float arrays."""
    w = _analysis_weights(npz)
    assert sum(w[k].size for k in wts.WEIGHT_NAMES) == wts.PARAMETERS == 896
    stored = _filters(model)
    expected = _expected_filters(w, _steps(model))
    assert set(stored) == set(expected) == {"luma_row", "luma_ac", "luma_coarse", "chroma_ac", "chroma_coarse"}
    for name, want in expected.items():
        got, scale = stored[name]
        assert got.shape == want.shape, name
        tol = 0.5 * scale.reshape((-1,) + (1,) * (got.ndim - 1)) + 1e-9
        assert np.all(np.abs(got - want) <= tol), name


def test_filter_relation_tells_the_models_apart():
    """The check above is not vacuous: the learned graph does not match the DCT parameters."""
    stored = _filters("snis896.tflite")
    expected = _expected_filters(ref.dct_weights(), _steps("snis896.tflite"))
    for name in ("luma_row", "luma_ac", "chroma_ac"):
        got, scale = stored[name]
        assert np.any(np.abs(got - expected[name]) > 0.5 * scale.reshape((-1,) + (1,) * (got.ndim - 1))), name


@pytest.mark.parametrize("name", ["snis896_synthesis.npz", "dct8_synthesis.npz", "snis896_analysis_float.npz"])
def test_npz_has_896_parameters(name):
    w = wts.load_weights(MODELS / name)
    assert sum(a.size for a in w.values()) == 896
    for k, shape in wts.WEIGHT_SHAPES.items():
        assert w[k].shape == shape


def _natural_residuals():
    """Two natural test cases from tests/data: an intra frame (pixel - 128) and a frame difference."""
    from snisd.capture.file import iter_frames

    frames = list(iter_frames(DATA / "bikes_12f.mp4", max_frames=6))

    def planes(f):
        return [np.asarray(p, np.int16) for p in (f.y, f.u, f.v)]

    cur, prev = planes(frames[5]), planes(frames[4])
    h, w = (cur[0].shape[0] // 16) * 16, (cur[0].shape[1] // 16) * 16

    def crop(ps):
        return [np.clip(ps[0][:h, :w], -128, 127), *(np.clip(p[: h // 2, : w // 2], -128, 127) for p in ps[1:])]

    return {"intra": crop([p - 128 for p in cur]), "residual": crop([a - b for a, b in zip(cur, prev, strict=True)])}


@pytest.fixture(scope="module")
def natural():
    return _natural_residuals()


def _psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize("model,npz,synth", PAIRS)
def test_int8_latents_match_float_reference(natural, model, npz, synth):
    """Dequantised int8 latents stay within ~an int8 step of the float analysis, on natural frames."""
    w = _analysis_weights(npz)
    tr = ana.AnalysisTransform(MODELS / model)
    for kind, (y, u, v) in natural.items():
        out = tr(*ana.pad_planes(y, u, v))
        want = ref.analyze_reference(y, u, v, w)
        got = out.dequantized()
        scales = (out.y_coarse_scale, out.y_ac_scale, out.c_coarse_scale, out.c_ac_scale)
        for g, f, s in zip(got, ("y_coarse", "y_ac", "c_coarse", "c_ac"), scales, strict=True):
            ref_arr = getattr(want, f)
            err = np.sqrt(np.mean((g - ref_arr) ** 2, axis=tuple(range(g.ndim - 1))))  # per channel
            assert np.all(err < 1.0 * s + 0.1), (kind, f, np.max(err / s))
        # and the frame comes back through the float synthesis (int8 analysis ceiling ~50 dB)
        rec = ref.synthesize_reference(ref.Latents(*got), wts.load_weights(MODELS / synth))
        assert _psnr(rec[0], y) > 46.0, kind
        assert min(_psnr(rec[1], u), _psnr(rec[2], v)) > 50.0, kind


def test_output_layout_views_and_resize(natural):
    y, u, v = natural["intra"]
    h, w = y.shape
    tr = ana.AnalysisTransform()
    yp, uvp = ana.pad_planes(y, u, v)
    out = tr(yp, uvp)
    assert out.y_ac.shape == (h // 8, w // 8, 63) and out.y_ac.dtype == np.int8
    assert out.y_coarse.shape == (h // 16, w // 16, 4)
    assert out.c_ac.shape == (2, h // 8, w // 8, 15)
    assert out.c_coarse.shape == (2, h // 16, w // 16, 4)
    for a in (out.y_ac, out.y_coarse, out.c_ac, out.c_coarse):
        assert a.strides[-1] == 1
    for s, zp, ch in (
        (out.y_ac_scale, out.y_ac_zp, 63),
        (out.c_ac_scale, out.c_ac_zp, 15),
        (out.y_coarse_scale, out.y_coarse_zp, 4),
        (out.c_coarse_scale, out.c_coarse_zp, 4),
    ):
        assert s.shape == zp.shape == (ch,) and s.dtype == np.float64 and zp.dtype == np.int32
    first = out.y_ac.copy()
    # the same buffers again (views, no copies) and the same result for the same input
    out2 = tr(yp, uvp)
    assert np.shares_memory(out2.y_ac, out.y_ac)
    np.testing.assert_array_equal(out2.y_ac, first)
    # zero-copy input: writing into the interpreter's input views gives the same latents
    yin, uvin = tr.input_buffers(h, w)
    yin[...], uvin[...] = yp, uvp
    np.testing.assert_array_equal(tr(yin, uvin).y_ac, first)
    # non-contiguous inputs are accepted (copied in)
    big = np.zeros((yp.shape[0], 2 * yp.shape[1]), np.int8)
    big[:, ::2] = yp
    np.testing.assert_array_equal(tr(big[:, ::2], uvp).y_ac, first)
    # another size on the same instance (a warm-up encoder sharing it), then back: each size
    # keeps its interpreter, so the first size's input views and output object stay live
    small = tr(*ana.pad_planes(y[:64, :96], u[:32, :48], v[:32, :48]))
    assert small.y_ac.shape == (8, 12, 63)
    np.testing.assert_array_equal(small.y_ac, ref_int8_ac(y[:64, :96], u[:32, :48], v[:32, :48]))
    yin2, uvin2 = tr.input_buffers(h, w)
    assert np.shares_memory(yin2, yin) and np.shares_memory(uvin2, uvin)
    yin[...] = 0
    yin[...] = yp
    again = tr(yin, uvin)
    assert again is out
    np.testing.assert_array_equal(again.y_ac, first)


def test_many_frame_sizes_evict_the_oldest(natural):
    """More sizes than are kept: the oldest interpreter is dropped and remade on its next use;
    views of a dropped size stay readable."""
    y, u, v = natural["residual"]
    tr = ana.AnalysisTransform(MODELS / "dct8.tflite")
    sizes = [(16 * (i + 1), 32) for i in range(tr.SIZES_KEPT + 1)]
    outs = {}
    for h, w in sizes:
        outs[(h, w)] = tr(*ana.pad_planes(y[:h, :w], u[: h // 2, : w // 2], v[: h // 2, : w // 2])).y_ac
    assert len(tr._sizes) == tr.SIZES_KEPT and sizes[0] not in tr._sizes
    h, w = sizes[0]
    again = tr(*ana.pad_planes(y[:h, :w], u[: h // 2, : w // 2], v[: h // 2, : w // 2])).y_ac
    np.testing.assert_array_equal(again, outs[sizes[0]])  # the dropped size's old view is intact
    assert not np.shares_memory(again, outs[sizes[0]])


def ref_int8_ac(y, u, v):
    """The luma AC of a fresh transform (no resize history)."""
    return ana.AnalysisTransform()(*ana.pad_planes(y, u, v)).y_ac.copy()


def test_zero_residual_gives_zero_latents():
    tr = ana.AnalysisTransform()
    out = tr(np.zeros((64 + 24, 64 + 24), np.int8), np.zeros((2, 32 + 12, 32 + 12), np.int8))
    for a in (out.y_ac, out.y_coarse, out.c_ac, out.c_coarse):
        assert not np.any(a)


def test_bad_inputs_raise_model_error():
    tr = ana.AnalysisTransform(MODELS / "dct8.tflite")
    uv = np.zeros((2, 32 + 12, 32 + 12), np.int8)
    with pytest.raises(ModelError, match="int8"):
        tr(np.zeros((88, 88), np.int16), uv)
    with pytest.raises(ModelError, match="chroma"):
        tr(np.zeros((88, 88), np.int8), uv[:, :-2])
    with pytest.raises(ModelError, match="multiples of 16"):
        tr(np.zeros((84 + 24, 64 + 24), np.int8), np.zeros((2, 42 + 12, 32 + 12), np.int8))
    with pytest.raises(ModelError, match="multiples of 16"):
        tr(np.zeros((8, 8), np.int8), np.zeros((2, 6, 6), np.int8))
    with pytest.raises(ModelError, match="int8"):
        tr([[0] * 88] * 88, uv)
    with pytest.raises(ValueError, match="num_threads"):
        ana.AnalysisTransform(num_threads=0)


def test_corrupt_and_foreign_models_raise(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="bad.tflite"):
        ana.AnalysisTransform(bad)
    with pytest.raises(ModelError, match="not found"):
        ana.AnalysisTransform(tmp_path / "missing.tflite")
    # a valid flatbuffer without the dequantisation steps (metadata renamed)
    data = (MODELS / "snis896.tflite").read_bytes()
    assert data.count(ana.DEQUANT_METADATA.encode()) == 1
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(data.replace(ana.DEQUANT_METADATA.encode(), b"x" * len(ana.DEQUANT_METADATA)))
    with pytest.raises(ModelError, match="metadata"):
        ana.AnalysisTransform(foreign)
    # truncated at any point: a typed error naming the file, never a crash or a hang
    for cut in (3, 16, 200, len(data) // 2, len(data) - 40):
        short = tmp_path / f"short{cut}.tflite"
        short.write_bytes(data[:cut])
        with pytest.raises(ModelError, match=f"short{cut}.tflite"):
            ana.AnalysisTransform(short)
    # a vector whose length field claims 2^31 elements is refused before anything is built
    crafted = struct.pack("<II", 4, 0x7FFFFFFF) + bytes(8)
    with pytest.raises(ModelError, match="malformed"):
        TFLiteFile(crafted, "crafted")._tables(0)


def test_weights_loader(tmp_path):
    w = wts.load_weights()
    assert set(w) == set(wts.WEIGHT_NAMES)
    data = (MODELS / wts.SYNTHESIS_WEIGHTS).read_bytes()
    assert wts.model_hash() == hashlib.sha256(data).digest()[:8]
    assert wts.model_hash(MODELS / "dct8_synthesis.npz") != wts.model_hash()
    badnpz = tmp_path / "bad.npz"
    badnpz.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.npz"):
        wts.load_weights(badnpz)
    with pytest.raises(ModelError, match="not found"):
        wts.load_weights(tmp_path / "missing.npz")
    short = dict(w)
    del short["chroma_coarse"]
    np.savez(tmp_path / "short.npz", **short)
    with pytest.raises(ModelError, match="chroma_coarse"):
        wts.load_weights(tmp_path / "short.npz")
    wrong = dict(w, luma_row=np.zeros((8, 15), np.float32))
    np.savez(tmp_path / "wrong.npz", **wrong)
    with pytest.raises(ModelError, match="luma_row"):
        wts.load_weights(tmp_path / "wrong.npz")
    with pytest.raises(ModelError, match="nothing.bin"):
        wts.model_file("nothing.bin")


def test_model_files_found_without_the_models_package(monkeypatch):
    """A source checkout run without installing has no snisd.models: models/ beside snisd/ is used."""
    if not (Path(wts.__file__).resolve().parents[2] / "models").is_dir():
        pytest.skip("snisd is imported from an installed copy here, not from a source checkout")

    def no_package(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib.resources, "files", no_package)
    path = wts.model_file(wts.ANALYSIS_MODEL)
    assert path == MODELS / wts.ANALYSIS_MODEL
    assert wts.load_weights()["luma_row"].shape == (8, 16)
    ana.AnalysisTransform()  # the default model loads too
