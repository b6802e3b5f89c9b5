"""SNIS-896 analysis transform at run time: the int8 LiteRT model on a whole frame, one call.

The model (models/README.md, written by tools/export_model.py) takes the symmetric-padded int8
residual of a frame (the int8 value is the residual: scale 1.0, zero point 0) and returns per
plane all n*n coefficients of every block (one border block on each side) and the coarse
latents.  Every activation has one int8 scale per tensor; the per-channel gains are folded into
the weights, and the per-channel dequantisation steps that undo them are stored in the model's
metadata.  Graph inputs: luma as (Hp/8+3, 8, (Wp+24)/8, 8) -- the padded plane as runs of 8
pixels, block rows in the batch -- and chroma U, V as (2, Hp/2+12, Wp/2+12, 1); both are views of
the plain row-major padded planes, so the caller's arrays are copied in as they are.

:class:`AnalysisTransform` returns :class:`AnalysisOutput`: int8 views into the interpreter's
output buffers (no copies), valid until the next call at that frame size, with the per-channel
steps and zero points.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError
from .amx import refuse_amx
from .tflite_file import TFLiteFile
from .weights import ANALYSIS_MODEL, read_model_bytes

try:  # LiteRT first, the legacy tflite-runtime wheel as fallback
    from ai_edge_litert.interpreter import Interpreter as _Interpreter
except ImportError:  # pragma: no cover - depends on the installation
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter
    except ImportError:
        _Interpreter = None

LUMA_PAD = 12  # symmetric padding of the luma residual on every side (3n/2, n = 8)
CHROMA_PAD = 6  # chroma (n = 4)
ALIGN = 16  # Hp and Wp must be multiples of this (one coarse latent per 16x16 luma pixels)
DEQUANT_METADATA = "snis896.dequant"  # model metadata entry: per-channel dequantisation steps (JSON)
_CHANNELS = {"luma": 64, "chroma": 16}  # coefficients per block
# constant shape of the graph's one RESHAPE (luma rows of a block into the channels); it depends
# on the frame width, so it is written into the model bytes for each frame size
LUMA_BLOCKS_SHAPE = "luma_blocks/shape"


@dataclass
class AnalysisOutput:
    """Latents of one frame as int8 (channel axis contiguous), plus how to dequantise them.

    latent (pixel units, as the float reference) = (q - zp[channel]) * scale[channel].
    The arrays are views into the interpreter's buffers, valid until the next call at that size.
    """

    y_ac: np.ndarray  # (Hp/8, Wp/8, 63), channel u*8+v-1
    y_coarse: np.ndarray  # (Hp/16, Wp/16, 4)
    c_ac: np.ndarray  # (2, Hp/8, Wp/8, 15), channel u*4+v-1, index 0 = U, 1 = V
    c_coarse: np.ndarray  # (2, Hp/16, Wp/16, 4)
    y_ac_scale: np.ndarray  # float64 per channel
    y_coarse_scale: np.ndarray
    c_ac_scale: np.ndarray
    c_coarse_scale: np.ndarray
    y_ac_zp: np.ndarray  # int32 per channel
    y_coarse_zp: np.ndarray
    c_ac_zp: np.ndarray
    c_coarse_zp: np.ndarray

    def dequantized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(y_coarse, y_ac, c_coarse, c_ac) as float32 pixel units (copies), for tools and tests."""

        def deq(q, scale, zp):
            return ((q.astype(np.float64) - zp) * scale).astype(np.float32)

        return (
            deq(self.y_coarse, self.y_coarse_scale, self.y_coarse_zp),
            deq(self.y_ac, self.y_ac_scale, self.y_ac_zp),
            deq(self.c_coarse, self.c_coarse_scale, self.c_coarse_zp),
            deq(self.c_ac, self.c_ac_scale, self.c_ac_zp),
        )


def pad_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model input from residual planes: clip to [-128, 127], int8, symmetric padding 12 / 6.

    The numpy statement of what the caller of :class:`AnalysisTransform` supplies.
    """

    def q(p, pad):
        return np.pad(np.clip(np.asarray(p), -128, 127).astype(np.int8), pad, mode="symmetric")

    return q(y, LUMA_PAD), np.stack([q(u, CHROMA_PAD), q(v, CHROMA_PAD)])


def _steps_from(data: bytes, where: str) -> dict[str, dict[str, np.ndarray]]:
    raw = TFLiteFile(data, where).metadata(DEQUANT_METADATA)
    if raw is None:
        raise ModelError(f"{where}: no {DEQUANT_METADATA} metadata (not a whole-frame SNIS-896 analysis model)")
    try:
        steps = json.loads(raw)["steps"]
        out = {p: {k: np.asarray(v, np.float64) for k, v in steps[p].items()} for p in ("luma", "chroma")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{where}: malformed {DEQUANT_METADATA} metadata ({exc})") from None
    for p, ch in _CHANNELS.items():
        s = out[p]
        if (
            s.get("col", np.zeros(0)).shape != (ch,)
            or s.get("coarse", np.zeros(0)).shape != (4,)
            or not all(np.all(np.isfinite(a) & (a > 0)) for a in s.values())
        ):
            raise ModelError(f"{where}: {DEQUANT_METADATA}: bad {p} steps {sorted(s)}")
    return out


@dataclass
class _Sized:
    """The interpreter of one frame size with its input and output views."""

    interp: Any  # ai_edge_litert (or tflite_runtime) Interpreter
    y_in: np.ndarray
    uv_in: np.ndarray
    output: AnalysisOutput


class AnalysisTransform:
    """The int8 analysis model, one interpreter call per frame (see module docstring).

    One interpreter per frame size, the last SIZES_KEPT sizes kept (an encoder and a small
    warm-up encoder may share an instance).  Not thread-safe: one instance per encoding thread.
    """

    SIZES_KEPT = 4

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 1) -> None:
        if _Interpreter is None:
            raise ModelError("no TFLite interpreter available: install ai-edge-litert (or tflite-runtime)")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.amx = refuse_amx()  # before XNNPACK starts: its AMX kernels are the slow ones here
        self._data, path = read_model_bytes(model_path, ANALYSIS_MODEL)
        self.model_path = str(path)
        self.num_threads = num_threads
        steps = _steps_from(self._data, self.model_path)
        self._scales = {
            "y_ac": steps["luma"]["col"][1:],
            "y_coarse": steps["luma"]["coarse"],
            "c_ac": steps["chroma"]["col"][1:],
            "c_coarse": steps["chroma"]["coarse"],
        }
        self._sizes: dict[tuple[int, int], _Sized] = {}  # insertion order = least recently used first
        self._model_for(ALIGN, ALIGN)  # the model is checked now, not at the first frame
        self._interp = self._open(self._data)[0]

    # -- interpreter -------------------------------------------------------------
    def _open(self, data: bytes, shapes: dict[str, list[int]] | None = None):
        """A new interpreter on `data`, inputs resized to `shapes` (name -> shape), allocated and
        checked; returns (interpreter, input indices by name, output indices by name)."""
        path = self.model_path
        try:
            interp = _Interpreter(model_content=data, num_threads=self.num_threads)
            for d in interp.get_input_details():
                if shapes and d["name"] in shapes:
                    interp.resize_tensor_input(d["index"], shapes[d["name"]], strict=False)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # what the interpreter raises on a bad flatbuffer
            raise ModelError(f"{path}: cannot load TFLite model ({exc})") from None
        ins = {d["name"]: d for d in interp.get_input_details()}
        outs = {d["name"]: d for d in interp.get_output_details()}
        if set(ins) != set(_CHANNELS) or set(outs) != {f"{p}_{k}" for p in _CHANNELS for k in ("ac", "coarse")}:
            raise ModelError(
                f"{path}: expected inputs luma, chroma and outputs <plane>_ac, <plane>_coarse; "
                f"found {sorted(ins)} -> {sorted(outs)}"
            )
        for d, last in (
            (ins["luma"], 8),
            (ins["chroma"], 1),
            (outs["luma_ac"], 64),
            (outs["chroma_ac"], 16),
            (outs["luma_coarse"], 4),
            (outs["chroma_coarse"], 4),
        ):
            if d["dtype"] != np.int8 or len(d["shape"]) != 4 or d["shape"][3] != last:
                raise ModelError(f"{path}: tensor {d['name']} is {d['dtype'].__name__} {tuple(d['shape'])}")
            if tuple(d["quantization"]) != (1.0, 0):
                raise ModelError(f"{path}: tensor {d['name']} quantisation {d['quantization']}, expected (1.0, 0)")
        return interp, {k: d["index"] for k, d in ins.items()}, {k: d["index"] for k, d in outs.items()}

    def _model_for(self, hp: int, wp: int) -> bytes:
        """The model bytes with the frame-size dependent RESHAPE target filled in."""
        span = TFLiteFile(self._data, self.model_path).tensor_data_span(LUMA_BLOCKS_SHAPE)
        if span is None or span[1] != 16:
            raise ModelError(f"{self.model_path}: no 4-element constant {LUMA_BLOCKS_SHAPE} tensor")
        data = bytearray(self._data)
        struct.pack_into("<4i", data, span[0], 1, hp // 8 + 3, wp // 8 + 2, 64)
        return bytes(data)

    def _sized(self, hp: int, wp: int) -> _Sized:
        """The interpreter for an hp x wp frame (made on first use; the RESHAPE target is part of
        the model bytes).  Views of an evicted size keep its interpreter and buffers alive."""
        if hp <= 0 or wp <= 0 or hp % ALIGN or wp % ALIGN:
            raise ModelError(f"{self.model_path}: frame {hp}x{wp} is not a positive multiple of {ALIGN}")
        key = (hp, wp)
        state = self._sizes.pop(key, None)
        if state is None:
            state = self._make(hp, wp)
            while len(self._sizes) >= self.SIZES_KEPT:
                self._sizes.pop(next(iter(self._sizes)))
        self._sizes[key] = state  # most recently used last
        self._interp = state.interp
        return state

    def _make(self, hp: int, wp: int) -> _Sized:
        ly, lx = hp + 2 * LUMA_PAD, wp + 2 * LUMA_PAD
        cy, cx = hp // 2 + 2 * CHROMA_PAD, wp // 2 + 2 * CHROMA_PAD
        interp, ins, outs = self._open(
            self._model_for(hp, wp), {"luma": [ly // 8, 8, lx // 8, 8], "chroma": [2, cy, cx, 1]}
        )
        y_in = interp.tensor(ins["luma"])().reshape(ly, lx)
        uv_in = interp.tensor(ins["chroma"])().reshape(2, cy, cx)
        ya, yc = interp.tensor(outs["luma_ac"])()[0], interp.tensor(outs["luma_coarse"])()[0]
        ca, cc = interp.tensor(outs["chroma_ac"])(), interp.tensor(outs["chroma_coarse"])()
        if ya.shape != (hp // 8 + 2, wp // 8 + 2, 64) or yc.shape != (hp // 16, wp // 16, 4):
            raise ModelError(f"{self.model_path}: luma outputs {ya.shape}, {yc.shape} for a {hp}x{wp} frame")
        if ca.shape != (2, hp // 8 + 2, wp // 8 + 2, 16) or cc.shape != (2, hp // 16, wp // 16, 4):
            raise ModelError(f"{self.model_path}: chroma outputs {ca.shape}, {cc.shape} for a {hp}x{wp} frame")
        if not (
            np.shares_memory(y_in, interp.tensor(ins["luma"])())
            and np.shares_memory(uv_in, interp.tensor(ins["chroma"])())
        ):
            raise ModelError(f"{self.model_path}: input tensors are not contiguous")  # pragma: no cover
        zeros = {k: np.zeros(len(s), np.int32) for k, s in self._scales.items()}
        output = AnalysisOutput(
            y_ac=ya[1:-1, 1:-1, 1:],
            y_coarse=yc,
            c_ac=ca[:, 1:-1, 1:-1, 1:],
            c_coarse=cc,
            y_ac_scale=self._scales["y_ac"],
            y_coarse_scale=self._scales["y_coarse"],
            c_ac_scale=self._scales["c_ac"],
            c_coarse_scale=self._scales["c_coarse"],
            y_ac_zp=zeros["y_ac"],
            y_coarse_zp=zeros["y_coarse"],
            c_ac_zp=zeros["c_ac"],
            c_coarse_zp=zeros["c_coarse"],
        )
        return _Sized(interp, y_in, uv_in, output)

    def input_buffers(self, hp: int, wp: int) -> tuple[np.ndarray, np.ndarray]:
        """Writable int8 views of the model inputs for an Hp x Wp frame: (y, uv) as __call__ takes.

        A caller that writes the padded residual straight into them saves the input copy;
        __call__ recognises them.  They stay the inputs of that frame size while it is kept.
        """
        state = self._sized(hp, wp)
        return state.y_in, state.uv_in

    # -- running -------------------------------------------------------------------
    def __call__(self, y: np.ndarray, uv: np.ndarray) -> AnalysisOutput:
        """Analyse one frame: y int8 (Hp+24, Wp+24), uv int8 (2, Hp/2+12, Wp/2+12), both padded."""
        if not isinstance(y, np.ndarray) or y.ndim != 2 or y.dtype != np.int8:
            raise ModelError(f"luma input must be a 2-D int8 array, got {getattr(y, 'dtype', type(y))} {np.shape(y)}")
        hp, wp = y.shape[0] - 2 * LUMA_PAD, y.shape[1] - 2 * LUMA_PAD
        if hp <= 0 or wp <= 0 or hp % ALIGN or wp % ALIGN:
            raise ModelError(
                f"luma input {y.shape} is not (Hp+{2 * LUMA_PAD}, Wp+{2 * LUMA_PAD}) with Hp, Wp "
                f"positive multiples of {ALIGN}"
            )
        want = (2, hp // 2 + 2 * CHROMA_PAD, wp // 2 + 2 * CHROMA_PAD)
        if not isinstance(uv, np.ndarray) or uv.dtype != np.int8 or uv.shape != want:
            raise ModelError(
                f"chroma input must be int8 {want} for luma {y.shape}, got "
                f"{getattr(uv, 'dtype', type(uv))} {np.shape(uv)}"
            )
        state = self._sized(hp, wp)
        if not (y.ctypes.data == state.y_in.ctypes.data and y.strides == state.y_in.strides):
            state.y_in[...] = y
        if not (uv.ctypes.data == state.uv_in.ctypes.data and uv.strides == state.uv_in.strides):
            state.uv_in[...] = uv
        # Interpreter.invoke() refuses to run while numpy views of its buffers exist (a guard
        # for calls that may reallocate); invoking does not reallocate once tensors are
        # allocated, and the views are the point of this class, so call the wrapped Invoke.
        try:
            state.interp._interpreter.Invoke()
        except RuntimeError as exc:  # pragma: no cover - interpreter failure
            raise ModelError(f"{self.model_path}: invoke failed ({exc})") from None
        return state.output
