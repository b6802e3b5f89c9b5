"""SNIS-896 analysis transform at run time: the int8 LiteRT model on a whole frame, one call.

The model (models/README.md, written by tools/export_model.py) takes the symmetric-padded int8
residual of a frame -- luma (1, Hp+24, Wp+24, 1) and chroma U, V as a batch (2, Hp/2+12,
Wp/2+12, 1), scale 1.0, zero point 0 -- and returns per plane the column-stage output (all 64 /
16 coefficients of every block, one border block on each side) and the coarse latents.  Every
activation has one int8 scale per tensor; the per-channel gains are folded into the weights and
the per-channel dequantisation steps that undo them are stored in the model's metadata.

:class:`AnalysisTransform` returns :class:`AnalysisOutput`: int8 views into the interpreter's
output buffers (no copies), valid until the next call, with the per-channel steps and zero points.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
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
_TENSORS = {"luma": (1, 8, 64), "chroma": (2, 4, 16)}  # input -> (batch, block, column-stage channels)


@dataclass
class AnalysisOutput:
    """Latents of one frame as int8 (channel axis contiguous), plus how to dequantise them.

    latent (pixel units, as the float reference) = (q - zp[channel]) * scale[channel].
    The arrays are views into the interpreter's buffers, valid until the next call.
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

        return (deq(self.y_coarse, self.y_coarse_scale, self.y_coarse_zp),
                deq(self.y_ac, self.y_ac_scale, self.y_ac_zp),
                deq(self.c_coarse, self.c_coarse_scale, self.c_coarse_zp),
                deq(self.c_ac, self.c_ac_scale, self.c_ac_zp))


def pad_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model input from residual planes: clip to [-128, 127], int8, symmetric padding 12 / 6.

    The numpy statement of what the caller of :class:`AnalysisTransform` supplies.
    """
    def q(p, pad):
        return np.pad(np.clip(np.asarray(p), -128, 127).astype(np.int8), pad, mode="symmetric")

    return q(y, LUMA_PAD), np.stack([q(u, CHROMA_PAD), q(v, CHROMA_PAD)])


def model_metadata(data: bytes, name: str) -> bytes | None:
    """The bytes of metadata entry `name` of a .tflite flatbuffer (None if absent).

    A minimal reader of the TFLite schema (Model.metadata -> Metadata{name, buffer} ->
    Model.buffers[buffer].data), so the runtime needs nothing beyond the interpreter.
    """
    def u32(pos):
        return struct.unpack_from("<I", data, pos)[0]

    def field(table, index):  # absolute position of a table field, or None
        vtable = table - struct.unpack_from("<i", data, table)[0]
        vsize = struct.unpack_from("<H", data, vtable)[0]
        if 4 + 2 * index >= vsize:
            return None
        off = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
        return table + off if off else None

    def vector(pos):  # (length, position of element 0)
        vec = pos + u32(pos)
        return u32(vec), vec + 4

    try:
        root = u32(0)
        meta_pos, buffers_pos = field(root, 6), field(root, 4)
        if meta_pos is None or buffers_pos is None:
            return None
        count, first = vector(meta_pos)
        for i in range(count):
            entry = first + 4 * i + u32(first + 4 * i)
            name_pos, buf_pos = field(entry, 0), field(entry, 1)
            if name_pos is None:
                continue
            nlen, nstart = vector(name_pos)
            if data[nstart : nstart + nlen].decode("utf-8", "replace") != name:
                continue
            index = u32(buf_pos) if buf_pos is not None else 0
            bcount, bfirst = vector(buffers_pos)
            if index >= bcount:
                return None
            buf = bfirst + 4 * index + u32(bfirst + 4 * index)
            data_pos = field(buf, 0)
            if data_pos is not None:
                dlen, dstart = vector(data_pos)
                return bytes(data[dstart : dstart + dlen])
            off_pos, size_pos = field(buf, 1), field(buf, 2)  # large models: data after the flatbuffer
            if off_pos is None or size_pos is None:
                return None
            off, size = struct.unpack_from("<Q", data, off_pos)[0], struct.unpack_from("<Q", data, size_pos)[0]
            return bytes(data[off : off + size])
    except (struct.error, IndexError):
        return None
    return None


def _steps_from(data: bytes, where: str) -> dict[str, dict[str, np.ndarray]]:
    raw = model_metadata(data, DEQUANT_METADATA)
    if raw is None:
        raise ModelError(f"{where}: no {DEQUANT_METADATA} metadata (not a whole-frame SNIS-896 analysis model)")
    try:
        steps = json.loads(raw)["steps"]
        out = {p: {k: np.asarray(steps[p][k], np.float64) for k in ("row", "col", "coarse")}
               for p in ("luma", "chroma")}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{where}: malformed {DEQUANT_METADATA} metadata ({exc})") from None
    for p, ch in (("luma", 64), ("chroma", 16)):
        s = out[p]
        if s["col"].shape != (ch,) or s["coarse"].shape != (4,) or not all(
                np.all(np.isfinite(a) & (a > 0)) for a in s.values()):
            raise ModelError(f"{where}: {DEQUANT_METADATA}: bad {p} steps")
    return out


class AnalysisTransform:
    """The int8 analysis model, one interpreter call per frame (see module docstring).

    Not thread-safe: one instance per encoding thread.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, num_threads: int = 1) -> None:
        if _Interpreter is None:
            raise ModelError("no TFLite interpreter available: install ai-edge-litert (or tflite-runtime)")
        self._data, path = read_model_bytes(model_path, ANALYSIS_MODEL)
        self.model_path = str(path)
        self.num_threads = int(num_threads)
        steps = _steps_from(self._data, self.model_path)
        self._scales = {
            "y_ac": steps["luma"]["col"][1:], "y_coarse": steps["luma"]["coarse"],
            "c_ac": steps["chroma"]["col"][1:], "c_coarse": steps["chroma"]["coarse"],
        }
        self._size: tuple[int, int] | None = None
        self._open()

    # -- interpreter -------------------------------------------------------------
    def _open(self) -> None:
        path = self.model_path
        try:
            interp = _Interpreter(model_content=self._data, num_threads=self.num_threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # what the interpreter raises on a bad flatbuffer
            raise ModelError(f"{path}: cannot load TFLite model ({exc})") from None
        ins = {d["name"]: d for d in interp.get_input_details()}
        outs = {d["name"]: d for d in interp.get_output_details()}
        if set(ins) != set(_TENSORS) or set(outs) != {f"{p}_{k}" for p in _TENSORS for k in ("ac", "coarse")}:
            raise ModelError(f"{path}: expected inputs luma, chroma and outputs <plane>_ac, <plane>_coarse; "
                             f"found {sorted(ins)} -> {sorted(outs)}")
        for name, (batch, n, ch) in _TENSORS.items():
            for d, want in ((ins[name], n), (outs[f"{name}_ac"], ch), (outs[f"{name}_coarse"], 4)):
                if d["dtype"] != np.int8 or d["shape"][0] != batch or d["shape"][3] != want:
                    raise ModelError(f"{path}: tensor {d['name']} is {d['dtype'].__name__} {tuple(d['shape'])}")
                if tuple(d["quantization"]) != (1.0, 0):
                    raise ModelError(f"{path}: tensor {d['name']} quantisation {d['quantization']}, expected (1.0, 0)")
        self._interp = interp
        self._in = {k: d["index"] for k, d in ins.items()}
        self._out = {k: d["index"] for k, d in outs.items()}
        self._size = None

    def _resize(self, hp: int, wp: int) -> None:
        # a fresh interpreter per frame size: views handed out for the old size keep the old
        # interpreter (and its buffers) alive instead of pointing into freed memory
        if self._size is not None:
            self._open()
        interp = self._interp
        # inputs: the padded planes as runs of n pixels, (batch, rows, cols / n, n)
        ly, lx = hp + 2 * LUMA_PAD, wp + 2 * LUMA_PAD
        cy, cx = hp // 2 + 2 * CHROMA_PAD, wp // 2 + 2 * CHROMA_PAD
        interp.resize_tensor_input(self._in["luma"], [1, ly, lx // 8, 8], strict=False)
        interp.resize_tensor_input(self._in["chroma"], [2, cy, cx // 4, 4], strict=False)
        interp.allocate_tensors()
        self._y_in = interp.tensor(self._in["luma"])().reshape(ly, lx)
        self._uv_in = interp.tensor(self._in["chroma"])().reshape(2, cy, cx)
        ya, yc = interp.tensor(self._out["luma_ac"])()[0], interp.tensor(self._out["luma_coarse"])()[0]
        ca, cc = interp.tensor(self._out["chroma_ac"])(), interp.tensor(self._out["chroma_coarse"])()
        if ya.shape != (hp // 8 + 2, wp // 8 + 2, 64) or yc.shape != (hp // 16, wp // 16, 4):
            raise ModelError(f"{self.model_path}: luma outputs {ya.shape}, {yc.shape} for a {hp}x{wp} frame")
        if ca.shape != (2, hp // 8 + 2, wp // 8 + 2, 16) or cc.shape != (2, hp // 16, wp // 16, 4):
            raise ModelError(f"{self.model_path}: chroma outputs {ca.shape}, {cc.shape} for a {hp}x{wp} frame")
        zeros = {k: np.zeros(len(s), np.int32) for k, s in self._scales.items()}
        self._output = AnalysisOutput(
            y_ac=ya[1:-1, 1:-1, 1:], y_coarse=yc, c_ac=ca[:, 1:-1, 1:-1, 1:], c_coarse=cc,
            y_ac_scale=self._scales["y_ac"], y_coarse_scale=self._scales["y_coarse"],
            c_ac_scale=self._scales["c_ac"], c_coarse_scale=self._scales["c_coarse"],
            y_ac_zp=zeros["y_ac"], y_coarse_zp=zeros["y_coarse"], c_ac_zp=zeros["c_ac"],
            c_coarse_zp=zeros["c_coarse"])
        self._size = (hp, wp)

    def input_buffers(self, hp: int, wp: int) -> tuple[np.ndarray, np.ndarray]:
        """Writable int8 views of the model inputs for an Hp x Wp frame: (y, uv) as __call__ takes.

        A caller that writes the padded residual straight into them saves the input copy;
        __call__ recognises them.  Valid until the frame size changes.
        """
        if hp <= 0 or wp <= 0 or hp % ALIGN or wp % ALIGN:
            raise ModelError(f"{self.model_path}: frame {hp}x{wp} is not a positive multiple of {ALIGN}")
        if self._size != (hp, wp):
            self._resize(hp, wp)
        return self._y_in, self._uv_in

    # -- running -------------------------------------------------------------------
    def __call__(self, y: np.ndarray, uv: np.ndarray) -> AnalysisOutput:
        """Analyse one frame: y int8 (Hp+24, Wp+24), uv int8 (2, Hp/2+12, Wp/2+12), both padded."""
        if not isinstance(y, np.ndarray) or y.ndim != 2 or y.dtype != np.int8:
            raise ModelError(f"luma input must be a 2-D int8 array, got {getattr(y, 'dtype', type(y))} "
                             f"{np.shape(y)}")
        hp, wp = y.shape[0] - 2 * LUMA_PAD, y.shape[1] - 2 * LUMA_PAD
        want = (2, hp // 2 + 2 * CHROMA_PAD, wp // 2 + 2 * CHROMA_PAD)
        if not isinstance(uv, np.ndarray) or uv.dtype != np.int8 or uv.shape != want:
            raise ModelError(f"chroma input must be int8 {want} for luma {y.shape}, got "
                             f"{getattr(uv, 'dtype', type(uv))} {np.shape(uv)}")
        y_in, uv_in = self.input_buffers(hp, wp)
        if not (y.ctypes.data == y_in.ctypes.data and y.strides == y_in.strides):
            y_in[...] = y
        if not (uv.ctypes.data == uv_in.ctypes.data and uv.strides == uv_in.strides):
            uv_in[...] = uv
        # Interpreter.invoke() refuses to run while numpy views of its buffers exist (a guard
        # for calls that may reallocate); invoking does not reallocate once tensors are
        # allocated, and the views are the point of this class, so call the wrapped Invoke.
        try:
            self._interp._interpreter.Invoke()
        except RuntimeError as exc:  # pragma: no cover - interpreter failure
            raise ModelError(f"{self.model_path}: invoke failed ({exc})") from None
        return self._output
