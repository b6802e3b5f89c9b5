"""Frame: one picture as YUV 4:2:0 planes, the unit that flows from capture to the codec."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Frame:
    """An I420 picture: full-resolution luma, half-resolution chroma, timestamp in µs."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pts_us: int = 0

    def __post_init__(self) -> None:
        h, w = self.y.shape[:2] if self.y.ndim == 2 else (None, None)
        if h is None or self.y.dtype != np.uint8:
            raise InputError(f"luma plane must be a 2-D uint8 array, got {self.y.dtype} {self.y.shape}")
        if h % 2 or w % 2 or h < 16 or w < 16:
            raise InputError(f"frame size must be even and at least 16x16, got {w}x{h}")
        for name, plane in (("u", self.u), ("v", self.v)):
            if plane.shape != (h // 2, w // 2) or plane.dtype != np.uint8:
                raise InputError(
                    f"{name} plane must be uint8 {(h // 2, w // 2)} for a {w}x{h} frame, "
                    f"got {plane.dtype} {plane.shape}"
                )

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    def to_i420(self) -> bytes:
        return self.y.tobytes() + self.u.tobytes() + self.v.tobytes()
