"""SNIS-896 analysis transform (LiteRT int8 model) and float reference synthesis.

The codec's transform is a learned *linear lapped* transform with 896 parameters
(see models/README.md for the full contract).  This module provides

* :class:`AnalysisTransform` -- runs the shipped full-integer int8 TFLite model on a
  residual frame (tiles of 64x64 luma + context, all tiles in one interpreter call).
  The model's int8 input is the residual itself (scale 1.0, zero point 0): residuals are
  **clipped to [-128, 127]** before the call.  Keyframe residuals (pixel - 128) are always
  in range; P-frame / enhancement residuals almost always are, and a clipped sample only
  leaves a larger residual for the next tier / frame;
* :func:`analyze_reference` -- the same analysis in float numpy (used by the tools and
  tests, and as documentation of the semantics);
* :func:`load_synthesis_weights` / :func:`synthesize_reference` -- the float synthesis
  reference in numpy, including the edge folding (adjoint of the symmetric reflection
  the analysis applies at frame edges).  The integer synthesis is tested against it.

Only numpy and LiteRT are needed here; TensorFlow is never imported.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from snisd.errors import ModelError

try:  # LiteRT first, the legacy tflite-runtime wheel as fallback
    from ai_edge_litert.interpreter import Interpreter as _Interpreter
except ImportError:  # pragma: no cover - depends on the installation
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter
    except ImportError:
        _Interpreter = None

# ---------------------------------------------------------------------------
# geometry constants (contract shared with the tools and the integer synthesis)
# ---------------------------------------------------------------------------
TILE = 64  # luma tile (pixels); chroma tile is TILE // 2
LUMA_CTX = 12  # context on each side of a luma tile (4 overlap + 8 for one block)
CHROMA_CTX = 6
LUMA_GROUPS = (0, 1, 2, 2, 3, 3, 3, 3)  # g(u): column-filter group of row frequency u
CHROMA_GROUPS = (0, 1, 2, 2)  # h(u)
WEIGHT_NAMES = ("luma_row", "luma_col", "luma_coarse", "chroma_row", "chroma_col", "chroma_coarse")
WEIGHT_SHAPES = {
    "luma_row": (8, 16),
    "luma_col": (4, 8, 16),
    "luma_coarse": (4, 4, 4),
    "chroma_row": (4, 8),
    "chroma_col": (3, 4, 8),
    "chroma_coarse": (4, 4, 4),
}
MODEL_FILE = "snis896.tflite"
SYNTHESIS_FILE = "snis896_synthesis.npz"

# Row frequencies u of each column-filter group (g(u) = group index).
GROUP_ROWS = {"luma": ((0,), (1,), (2, 3), (4, 5, 6, 7)), "chroma": ((0,), (1,), (2, 3))}


def output_spec() -> list[tuple[str, str, tuple[int, ...] | None, tuple[int, ...] | None]]:
    """int8 output tensors of the model: (signature name, plane, us, vs).

    Per plane (block n): ``<plane>_coarse`` (batch, 4, 4, 4), and one AC tensor per
    column-filter group g and part: ``<plane>_ac_g<g>_v0`` holds (u, 0) for the u of group
    g, ``<plane>_ac_g<g>_vac`` holds (u, v), v >= 1; (0, 0) is the DC and not an output.
    An AC tensor has shape (batch*c, 10, 10, len(vs)) with c = len(us): batch index
    tile*c + k is row frequency us[k], the 10x10 blocks include one border block on each
    side (dropped by the runtime), the channel is v.  Each tensor has its own int8 scale, so
    the large low frequencies do not set the step of the small high ones.
    """
    spec = []
    for prefix, n in (("luma", 8), ("chroma", 4)):
        spec.append((f"{prefix}_coarse", prefix, None, None))
        for g, us in enumerate(GROUP_ROWS[prefix]):
            for tag, vs in (("v0", (0,)), ("vac", tuple(range(1, n)))):
                if g == 0 and tag == "v0":
                    continue
                spec.append((f"{prefix}_ac_g{g}_{tag}", prefix, tuple(us), vs))
    return spec


OUTPUT_NAMES = tuple(spec[0] for spec in output_spec())


@dataclass
class Latents:
    """Dequantised latents of one frame, in pixel units (float32).

    y_coarse: (Hp/16, Wp/16, 4); y_ac: (Hp/8, Wp/8, 63), channel u*8+v-1;
    c_coarse: (2, Hp/16, Wp/16, 4); c_ac: (2, Hp/8, Wp/8, 15), channel u*4+v-1
    (index 0 of the leading axis is U, 1 is V).
    """

    y_coarse: np.ndarray
    y_ac: np.ndarray
    c_coarse: np.ndarray
    c_ac: np.ndarray


# ---------------------------------------------------------------------------
# DCT initialisation (also the "dct8" ablation weights)
# ---------------------------------------------------------------------------
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix, rows are basis functions."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * t + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def dct_weights() -> dict[str, np.ndarray]:
    """Analysis weights equal to the block DCT (taps in the overlap are zero) + Haar coarse.

    The synthesis initialisation is the same dictionary (the transforms are orthonormal,
    and the synthesis arrays are indexed like the analysis ones, so "transpose" is identity
    on the stored arrays).
    """
    w: dict[str, np.ndarray] = {}
    for prefix, n, ngroups in (("luma", 8, 4), ("chroma", 4, 3)):
        d = dct_matrix(n)
        row = np.zeros((n, 2 * n), np.float32)
        row[:, n // 2 : n // 2 + n] = d
        w[f"{prefix}_row"] = row
        w[f"{prefix}_col"] = np.repeat(row[None], ngroups, axis=0).astype(np.float32)
        h = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
        coarse = np.zeros((4, 4, 4), np.float32)
        for ka in range(2):
            for kb in range(2):
                coarse[2 * ka + kb, 1:3, 1:3] = np.outer(h[ka], h[kb])
        w[f"{prefix}_coarse"] = coarse
    return w


def _plane_params(prefix: str):
    if prefix == "luma":
        return 8, LUMA_GROUPS
    return 4, CHROMA_GROUPS


# ---------------------------------------------------------------------------
# float reference analysis (numpy)
# ---------------------------------------------------------------------------
def analyze_plane_reference(x: np.ndarray, w: dict[str, np.ndarray], prefix: str):
    """Float analysis of one plane (H, W multiples of 2*block) -> (coarse, ac)."""
    n, groups = _plane_params(prefix)
    taps, pad = 2 * n, 3 * n // 2
    a_row = np.asarray(w[f"{prefix}_row"], np.float64)
    a_col = np.asarray(w[f"{prefix}_col"], np.float64)[list(groups)]  # (u, v, t)
    a_coarse = np.asarray(w[f"{prefix}_coarse"], np.float64)
    xp = np.pad(np.asarray(x, np.float64), pad, mode="symmetric")
    # block j (j = -1 .. W/n) reads padded columns n*(j+1) + t
    win = sliding_window_view(xp, taps, axis=1)[:, ::n]  # (H+2p, nbx, t)
    r = np.einsum("yjt,ut->yju", win, a_row)
    win = sliding_window_view(r, taps, axis=0)[::n]  # (nby, nbx, u, t)
    coef = np.einsum("ijut,uvt->ijuv", win, a_col)  # blocks -1 .. H/n
    dc = coef[..., 0, 0]
    win = sliding_window_view(dc, (4, 4))[::2, ::2]
    coarse = np.einsum("IJab,kab->IJk", win, a_coarse)
    nby, nbx = coef.shape[:2]
    ac = coef[1:-1, 1:-1].reshape(nby - 2, nbx - 2, n * n)[..., 1:]
    return coarse.astype(np.float32), ac.astype(np.float32)


def analyze_reference(y, u, v, weights) -> Latents:
    """Float analysis of a frame with the semantics of the int8 model."""
    yc, ya = analyze_plane_reference(y, weights, "luma")
    cs = [analyze_plane_reference(p, weights, "chroma") for p in (u, v)]
    return Latents(yc, ya, np.stack([c[0] for c in cs]), np.stack([c[1] for c in cs]))


# ---------------------------------------------------------------------------
# float reference synthesis (numpy)
# ---------------------------------------------------------------------------
def _fold(xe: np.ndarray, pad: int) -> np.ndarray:
    """Adjoint of np.pad(x, pad, mode='symmetric') (rows and columns)."""
    h, w = xe.shape[0] - 2 * pad, xe.shape[1] - 2 * pad
    rows = xe[pad : pad + h].copy()
    rows[:pad] += xe[:pad][::-1]
    rows[h - pad :] += xe[pad + h :][::-1]
    out = rows[:, pad : pad + w].copy()
    out[:, :pad] += rows[:, :pad][:, ::-1]
    out[:, w - pad :] += rows[:, pad + w :][:, ::-1]
    return out


def synthesize_plane_reference(coarse: np.ndarray, ac: np.ndarray, w: dict[str, np.ndarray], prefix: str):
    """Float synthesis of one plane from its coarse (H/2n, W/2n, 4) and AC (H/n, W/n, n*n-1) latents."""
    n, groups = _plane_params(prefix)
    taps, pad = 2 * n, 3 * n // 2
    s_row = np.asarray(w[f"{prefix}_row"], np.float64)
    s_col = np.asarray(w[f"{prefix}_col"], np.float64)[list(groups)]
    s_coarse = np.asarray(w[f"{prefix}_coarse"], np.float64)
    nI, nJ = coarse.shape[:2]
    nby, nbx = ac.shape[0] + 2, ac.shape[1] + 2  # blocks -1 .. H/n (extended index i+1)
    # coarse -> DC plane: D^[2I-1+a] (extended index 2I+a) += S_coarse[k, a, b] C[I, J, k]
    dc = np.zeros((nby, nbx))
    for a in range(4):
        for b in range(4):
            dc[a : a + 2 * nI : 2, b : b + 2 * nJ : 2] += np.einsum("IJk,k->IJ", coarse, s_coarse[:, a, b])
    coef = np.zeros((nby, nbx, n * n))
    coef[1:-1, 1:-1, 1:] = ac
    coef[..., 0] = dc
    coef = coef.reshape(nby, nbx, n, n)
    # column synthesis: r^[n*i + t] (padded rows) += S_col[g(u)][v, t] Y^[i, j, u, v]
    contrib = np.einsum("ijuv,uvt->ijut", coef, s_col)
    r = np.zeros((n * (nby - 1) + taps, nbx, n))
    for t in range(taps):
        r[t : t + n * nby : n] += contrib[..., t]
    # row synthesis
    contrib = np.einsum("yju,ut->yjt", r, s_row)
    xe = np.zeros((r.shape[0], n * (nbx - 1) + taps))
    for t in range(taps):
        xe[:, t : t + n * nbx : n] += contrib[..., t]
    return _fold(xe, pad).astype(np.float32)


def synthesize_reference(latents: Latents, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float reference synthesis: latents -> (y, u, v) float32 residual planes (pixel units)."""
    y = synthesize_plane_reference(latents.y_coarse, latents.y_ac, weights, "luma")
    u = synthesize_plane_reference(latents.c_coarse[0], latents.c_ac[0], weights, "chroma")
    v = synthesize_plane_reference(latents.c_coarse[1], latents.c_ac[1], weights, "chroma")
    return y, u, v


def _resource_path(name: str) -> str:
    try:
        return str(importlib.resources.files("snisd.models").joinpath(name))
    except (ModuleNotFoundError, TypeError) as exc:  # pragma: no cover - broken install
        raise ModelError(f"cannot locate package snisd.models for {name}: {exc}") from exc


def load_synthesis_weights(path=None) -> dict[str, np.ndarray]:
    """Load the float synthesis weights (default: the shipped snis896_synthesis.npz)."""
    path = os.fspath(path) if path is not None else _resource_path(SYNTHESIS_FILE)
    try:
        with np.load(path) as z:
            w = {k: np.asarray(z[k], np.float32) for k in WEIGHT_NAMES}
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: synthesis weights not found") from exc
    except KeyError as exc:
        raise ModelError(f"{path}: missing synthesis array {exc}") from exc
    except Exception as exc:  # zip/pickle/format errors
        raise ModelError(f"{path}: cannot read synthesis weights ({exc})") from exc
    for k, shape in WEIGHT_SHAPES.items():
        if w[k].shape != shape:
            raise ModelError(f"{path}: array {k} has shape {w[k].shape}, expected {shape}")
    return w


# ---------------------------------------------------------------------------
# LiteRT int8 analysis
# ---------------------------------------------------------------------------
class AnalysisTransform:
    """Runs the int8 analysis model on a whole frame (one interpreter call per frame).

    Residual samples are clipped to [-128, 127] (the int8 input range of the model, scale
    1.0, zero point 0); the AC latents are reassembled from the per-group output tensors
    (see :func:`output_spec`) into the 63 / 15 channel :class:`Latents` layout.
    """

    def __init__(self, model_path=None, num_threads: int = 1) -> None:
        if _Interpreter is None:
            raise ModelError(
                "no TFLite interpreter available: install ai-edge-litert (or tflite-runtime)"
            )
        self.model_path = os.fspath(model_path) if model_path is not None else _resource_path(MODEL_FILE)
        if not os.path.isfile(self.model_path):
            raise ModelError(f"{self.model_path}: analysis model not found")
        try:
            self._interp = _Interpreter(model_path=self.model_path, num_threads=num_threads)
            self._interp.allocate_tensors()
        except Exception as exc:
            raise ModelError(f"{self.model_path}: cannot load TFLite model ({exc})") from exc
        self._find_tensors()
        self._tiles = None  # (tiles_y, tiles_x) the interpreter is currently sized for

    # -- model introspection -------------------------------------------------
    def _find_tensors(self) -> None:
        path = self.model_path
        ins = self._interp.get_input_details()
        outs = self._interp.get_output_details()
        if len(ins) != 2 or len(outs) != len(OUTPUT_NAMES):
            raise ModelError(
                f"{path}: expected 2 inputs and {len(OUTPUT_NAMES)} outputs, found {len(ins)} and {len(outs)}"
            )
        self._in = {}
        for d in ins:
            shape = tuple(d["shape"][1:])
            key = "luma" if shape == (88, 88, 1) else "chroma" if shape == (44, 44, 1) else None
            if key is None or d["dtype"] != np.int8:
                raise ModelError(f"{path}: unexpected input {d['name']} shape {tuple(d['shape'])} {d['dtype']}")
            self._in[key] = d
        if set(self._in) != {"luma", "chroma"}:
            raise ModelError(f"{path}: inputs must be luma (N,88,88,1) and chroma (2N,44,44,1)")
        # outputs by signature name (the tensor names are opaque, e.g. StatefulPartitionedCall:2)
        self._out = {}
        try:
            sig = self._interp._get_full_signature_list()
            sig_out = next(iter(sig.values()))["outputs"] if len(sig) == 1 else {}
        except Exception:  # pragma: no cover - interpreter without signature support
            sig_out = {}
        by_index = {d["index"]: d for d in outs}
        for name in OUTPUT_NAMES:
            if name not in sig_out or sig_out[name] not in by_index:
                raise ModelError(f"{path}: no output named {name} in the serving signature")
            d = by_index[sig_out[name]]
            if d["dtype"] != np.int8 or not d["quantization"][0]:
                raise ModelError(f"{path}: output {name} is not int8-quantised")
            self._out[name] = d
        self._ac = {"luma": [], "chroma": []}
        for name, prefix, us, vs in output_spec():
            shape = tuple(self._out[name]["shape"])
            if us is None:
                expect = (int(self._in[prefix]["shape"][0]), 4, 4, 4)
            else:
                expect = (int(self._in[prefix]["shape"][0]) * len(us), 10, 10, len(vs))
            if shape != expect:
                raise ModelError(f"{path}: output {name} has shape {shape}, expected {expect}")
            if us is not None:
                n = 8 if prefix == "luma" else 4
                self._ac[prefix].append((name, len(us), np.array([u * n + v - 1 for u in us for v in vs])))
        # input quantisation: the model expects scale 1.0, zero point 0 (int8 = residual,
        # clipped to [-128, 127])
        for key, d in self._in.items():
            scale, zp = d["quantization"]
            if abs(scale - 1.0) > 1e-6 or zp != 0:
                raise ModelError(f"{path}: input {key} quantisation ({scale}, {zp}), expected (1.0, 0)")
        self._deq = {n: d["quantization"] for n, d in self._out.items()}
        # per latent channel dequantisation (scale, zero point of the tensor holding it)
        self._ac_scale, self._ac_zp = {}, {}
        for prefix, parts in self._ac.items():
            channels = 63 if prefix == "luma" else 15
            scale = np.zeros(channels, np.float32)
            zp = np.zeros(channels, np.float32)
            for name, _, idx in parts:
                scale[idx], zp[idx] = self._deq[name]
            if not np.all(scale):
                raise ModelError(f"{path}: the AC outputs do not cover all {prefix} channels")
            self._ac_scale[prefix], self._ac_zp[prefix] = scale, zp

    # -- running ---------------------------------------------------------------
    @staticmethod
    def _tiles_of(q: np.ndarray, step: int, size: int) -> np.ndarray:
        win = sliding_window_view(q, (size, size))[::step, ::step]
        return win.reshape(-1, size, size, 1)

    @staticmethod
    def _quantised_padded(plane: np.ndarray, pad: int) -> np.ndarray:
        # residual -> int8 input (scale 1.0, zero point 0): clip to [-128, 127]
        q = np.clip(np.asarray(plane), -128, 127).astype(np.int8)
        return np.pad(q, pad, mode="symmetric")

    def __call__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> Latents:
        y = np.asarray(y)
        hp, wp = y.shape
        if y.ndim != 2 or hp % TILE or wp % TILE or hp == 0 or wp == 0:
            raise ModelError(f"{self.model_path}: luma residual must be (Hp, Wp) multiples of {TILE}, got {y.shape}")
        for name, c in (("u", u), ("v", v)):
            if np.shape(c) != (hp // 2, wp // 2):
                raise ModelError(f"{self.model_path}: {name} residual must be {(hp // 2, wp // 2)}, got {np.shape(c)}")
        ty, tx = hp // TILE, wp // TILE
        n = ty * tx
        interp = self._interp
        if self._tiles != (ty, tx):
            interp.resize_tensor_input(self._in["luma"]["index"], [n, 88, 88, 1])
            interp.resize_tensor_input(self._in["chroma"]["index"], [2 * n, 44, 44, 1])
            interp.allocate_tensors()
            self._tiles = (ty, tx)
        ly = self._tiles_of(self._quantised_padded(y, LUMA_CTX), TILE, TILE + 2 * LUMA_CTX)
        ct = TILE // 2
        lu = self._tiles_of(self._quantised_padded(u, CHROMA_CTX), ct, ct + 2 * CHROMA_CTX)
        lv = self._tiles_of(self._quantised_padded(v, CHROMA_CTX), ct, ct + 2 * CHROMA_CTX)
        interp.set_tensor(self._in["luma"]["index"], np.ascontiguousarray(ly))
        interp.set_tensor(self._in["chroma"]["index"], np.concatenate([lu, lv], axis=0))
        interp.invoke()

        def get(name):
            scale, zp = self._deq[name]
            q = interp.get_tensor(self._out[name]["index"])
            return (q.astype(np.float32) - np.float32(zp)) * np.float32(scale)

        def assemble(t, batch_tiles):
            # (B*ty*tx, h, w, c) -> (B, ty*h, tx*w, c)
            _, h, w, c = t.shape
            t = t.reshape(batch_tiles, ty, tx, h, w, c).transpose(0, 1, 3, 2, 4, 5)
            return t.reshape(batch_tiles, ty * h, tx * w, c)

        def ac(prefix, channels, batch_tiles):
            # int8 parts (tiles*c, 10, 10, k) -> int8 (B, ty, tx, 8, 8, channels) without the
            # border blocks, then one transposing cast to float and per-channel dequantisation
            t = np.empty((batch_tiles, ty, tx, 8, 8, channels), np.int8)
            for name, c, idx in self._ac[prefix]:
                q = interp.get_tensor(self._out[name]["index"])
                k = q.shape[-1]
                q = q.reshape(batch_tiles, ty, tx, c, 10, 10, k)[:, :, :, :, 1:-1, 1:-1]
                for m in range(c):
                    ch = idx[m * k]  # the k channels of one u are consecutive
                    t[..., ch : ch + k] = q[:, :, :, m]
            out = t.transpose(0, 1, 3, 2, 4, 5).astype(np.float32)
            out -= self._ac_zp[prefix]
            out *= self._ac_scale[prefix]
            return out.reshape(batch_tiles, ty * 8, tx * 8, channels)

        return Latents(
            y_coarse=assemble(get("luma_coarse"), 1)[0],
            y_ac=ac("luma", 63, 1)[0],
            c_coarse=assemble(get("chroma_coarse"), 2),
            c_ac=ac("chroma", 15, 2),
        )
