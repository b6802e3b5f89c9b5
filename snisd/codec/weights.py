"""SNIS-896 model files: where they are, the float weight arrays, and the model identity.

One loader for every part of the codec that needs the 896 transform parameters (the analysis
export, the synthesis, the reference transforms), so the names, shapes and groupings live here
once.  The shipped files sit in the package ``snisd.models`` when installed (pyproject maps the
repository's ``models/`` folder onto it); in a source checkout run without installing, that
package does not exist and the ``models/`` folder beside the ``snisd/`` package is used instead.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ModelError

WEIGHT_NAMES = ("luma_row", "luma_col", "luma_coarse", "chroma_row", "chroma_col", "chroma_coarse")
WEIGHT_SHAPES = {
    "luma_row": (8, 16),
    "luma_col": (4, 8, 16),
    "luma_coarse": (4, 4, 4),
    "chroma_row": (4, 8),
    "chroma_col": (3, 4, 8),
    "chroma_coarse": (4, 4, 4),
}
PARAMETERS = 896  # sum of the sizes in WEIGHT_SHAPES
# column-filter group of each row frequency u (the u of one group share their column filters)
LUMA_GROUPS = (0, 1, 2, 2, 3, 3, 3, 3)
CHROMA_GROUPS = (0, 1, 2, 2)
PLANES = {"luma": (8, LUMA_GROUPS), "chroma": (4, CHROMA_GROUPS)}  # prefix -> (block size, groups)

ANALYSIS_MODEL = "snis896.tflite"
SYNTHESIS_WEIGHTS = "snis896_synthesis.npz"
ANALYSIS_FLOAT_WEIGHTS = "snis896_analysis_float.npz"


def model_file(name: str) -> Path:
    """Path of a shipped model file by name; ModelError if it is not there.

    Looks in the installed package ``snisd.models`` first, then in the ``models/`` folder of
    the source checkout this module was imported from.
    """
    tried = []
    try:
        path = Path(str(importlib.resources.files("snisd.models").joinpath(name)))
        if path.is_file():
            return path
        tried.append(str(path))
    except (ModuleNotFoundError, TypeError):  # source checkout: no snisd.models package
        tried.append("package snisd.models")
    path = Path(__file__).resolve().parents[2] / "models" / name
    if path.is_file():
        return path
    tried.append(str(path))
    raise ModelError(f"shipped model file {name} is missing (looked in {', '.join(tried)})")


def _resolve(path: str | os.PathLike | None, default: str) -> Path:
    return model_file(default) if path is None else Path(os.fspath(path))


def read_model_bytes(path: str | os.PathLike | None, default: str) -> tuple[bytes, Path]:
    """The bytes of a model file (``default`` shipped file when path is None)."""
    p = _resolve(path, default)
    try:
        return p.read_bytes(), p
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise ModelError(f"{p}: model file not found") from None
        raise ModelError(f"{p}: cannot read model file ({exc.strerror})") from None


def weights_from_bytes(data: bytes, where: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse a weights .npz: the six float32 arrays, shapes and finiteness checked."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            w = {k: np.asarray(z[k], np.float32) for k in WEIGHT_NAMES}
    except KeyError as exc:
        raise ModelError(f"{where}: missing weight array {exc}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{where}: unreadable weights file ({exc})") from None
    for k, shape in WEIGHT_SHAPES.items():
        if w[k].shape != shape:
            raise ModelError(f"{where}: array {k} has shape {w[k].shape}, expected {shape}")
        if not np.all(np.isfinite(w[k])):
            raise ModelError(f"{where}: array {k} holds non-finite values")
    return w


def load_weights(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The six weight arrays of a .npz (default: the shipped synthesis weights)."""
    data, p = read_model_bytes(path, SYNTHESIS_WEIGHTS)
    return weights_from_bytes(data, str(p))


def model_hash(path: str | os.PathLike | None = None) -> bytes:
    """Identity of a model in streams: the first 8 bytes of SHA-256 of its synthesis file."""
    data, _ = read_model_bytes(path, SYNTHESIS_WEIGHTS)
    return hashlib.sha256(data).digest()[:8]
