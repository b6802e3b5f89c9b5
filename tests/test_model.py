"""Shipped SNIS-896 models: parameter counts, int8 analysis + float synthesis fidelity, errors.

Runs the real LiteRT interpreter on the models in models/ (no mocks, no clip files).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from snisd.codec import analysis as ana
from snisd.errors import ModelError

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


def _conv_weight_count(model_path: str) -> int:
    """Trainable parameters of a .tflite analysis model, read from the model itself.

    The interpreter lists every operator with its input tensor indices.  For CONV_2D and
    DEPTHWISE_CONV_2D the TFLite operator layout is (input, filter, bias): input 1 is the
    weight (filter) tensor, input 2 the optional bias.  The model has no biases by design,
    but the converter may attach an all-zero int32 bias tensor; we assert those are zero
    (so they are not parameters) and count the filter elements.
    """
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=model_path)
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    total = 0
    n_conv = 0
    for op in it._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        n_conv += 1
        inputs = list(op["inputs"])
        total += int(np.prod(details[inputs[1]]["shape"]))
        if len(inputs) > 2 and inputs[2] >= 0:
            bias = it.get_tensor(inputs[2])
            assert not np.any(bias), "conv bias must be zero (the transform has no biases)"
    assert n_conv > 0
    return total


@pytest.mark.parametrize("name", ["snis896.tflite", "dct8.tflite"])
def test_tflite_has_896_parameters(name):
    assert _conv_weight_count(os.path.join(MODELS, name)) == 896


@pytest.mark.parametrize("name", ["snis896_synthesis.npz", "dct8_synthesis.npz", "snis896_analysis_float.npz"])
def test_npz_has_896_parameters(name):
    w = ana.load_synthesis_weights(os.path.join(MODELS, name))
    assert sum(a.size for a in w.values()) == 896
    for k, shape in ana.WEIGHT_SHAPES.items():
        assert w[k].shape == shape


def _smooth_image(h: int, w: int, seed: int, amp: float = 90.0) -> np.ndarray:
    """A natural-ish smooth residual: sum of low-frequency sinusoids plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for _ in range(6):
        fy, fx = rng.uniform(-0.06, 0.06, 2)
        img += rng.uniform(0.3, 1.0) * np.cos(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    img *= amp / np.abs(img).max()
    img += rng.normal(0.0, 1.5, (h, w))
    return np.clip(np.rint(img), -255, 255).astype(np.int16)


def _psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize(
    "model,synth", [("snis896.tflite", "snis896_synthesis.npz"), ("dct8.tflite", "dct8_synthesis.npz")]
)
def test_int8_analysis_float_synthesis_reconstructs(model, synth):
    h, w = 192, 256
    y = _smooth_image(h, w, 1)
    u = _smooth_image(h // 2, w // 2, 2, amp=50.0)
    v = _smooth_image(h // 2, w // 2, 3, amp=50.0)
    tr = ana.AnalysisTransform(os.path.join(MODELS, model))
    lat = tr(y, u, v)
    assert lat.y_coarse.shape == (h // 16, w // 16, 4)
    assert lat.y_ac.shape == (h // 8, w // 8, 63)
    assert lat.c_coarse.shape == (2, h // 16, w // 16, 4)
    assert lat.c_ac.shape == (2, h // 8, w // 8, 15)
    weights = ana.load_synthesis_weights(os.path.join(MODELS, synth))
    ry, ru, rv = ana.synthesize_reference(lat, weights)
    assert _psnr(ry, y) > 40.0
    assert _psnr(ru, u) > 40.0 and _psnr(rv, v) > 40.0
    # frame edges included: the 8-pixel border alone is reconstructed well too
    border = np.ones((h, w), bool)
    border[8:-8, 8:-8] = False
    assert _psnr(ry[border], y[border]) > 38.0
    # the same frame size again (no resize) and a new size both work
    lat2 = tr(y, u, v)
    np.testing.assert_array_equal(lat2.y_ac, lat.y_ac)
    lat3 = tr(y[:64, :128], u[:32, :64], v[:32, :64])
    assert lat3.y_ac.shape == (8, 16, 63)


def test_int8_model_matches_float_reference():
    y = _smooth_image(128, 128, 4)
    u = _smooth_image(64, 64, 5, amp=40.0)
    v = _smooth_image(64, 64, 6, amp=40.0)
    with np.load(os.path.join(MODELS, "snis896_analysis_float.npz")) as z:
        wa = {k: z[k] for k in ana.WEIGHT_NAMES}
    ref = ana.analyze_reference(y, u, v, wa)
    lat = ana.AnalysisTransform(os.path.join(MODELS, "snis896.tflite"))(y, u, v)
    for f in ("y_coarse", "y_ac", "c_coarse", "c_ac"):
        a, b = getattr(lat, f), getattr(ref, f)
        err = np.sqrt(np.mean((a - b) ** 2))
        assert err < 0.05 * np.sqrt(np.mean(b**2)) + 4.0, f


def test_default_model_loads():
    tr = ana.AnalysisTransform()
    lat = tr(np.zeros((64, 64), np.int16), np.zeros((32, 32), np.int16), np.zeros((32, 32), np.int16))
    assert np.abs(lat.y_ac).max() < 8
    assert set(ana.load_synthesis_weights()) == set(ana.WEIGHT_NAMES)


def test_corrupt_model_raises(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="bad.tflite"):
        ana.AnalysisTransform(bad)
    with pytest.raises(ModelError, match="not found"):
        ana.AnalysisTransform(tmp_path / "missing.tflite")
    badnpz = tmp_path / "bad.npz"
    badnpz.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="bad.npz"):
        ana.load_synthesis_weights(badnpz)


def test_wrong_frame_size_raises():
    tr = ana.AnalysisTransform(os.path.join(MODELS, "dct8.tflite"))
    with pytest.raises(ModelError):
        tr(np.zeros((60, 64), np.int16), np.zeros((30, 32), np.int16), np.zeros((30, 32), np.int16))


@pytest.mark.parametrize("name", ["snis896.tflite", "dct8.tflite"])
def test_input_is_the_residual_and_clipped(name):
    """int8 input scale 1.0 / zero point 0; residuals beyond [-128, 127] are clipped."""
    tr = ana.AnalysisTransform(os.path.join(MODELS, name))
    for d in tr._interp.get_input_details():
        assert d["quantization"] == (1.0, 0)
    y = _smooth_image(64, 128, 7, amp=250.0)
    u = _smooth_image(32, 64, 8, amp=200.0)
    v = _smooth_image(32, 64, 9, amp=60.0)
    a = tr(y, u, v)
    b = tr(*(np.clip(p, -128, 127) for p in (y, u, v)))
    for f in ("y_coarse", "y_ac", "c_coarse", "c_ac"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_output_spec_covers_all_channels():
    for prefix, channels in (("luma", 63), ("chroma", 15)):
        n = 8 if prefix == "luma" else 4
        got = []
        for _, p, us, vs in ana.output_spec():
            if p == prefix and us is not None:
                got += [u * n + v - 1 for u in us for v in vs]
        assert sorted(got) == list(range(channels))
